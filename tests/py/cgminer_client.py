"""An independent client of the CGMiner-style API (TCP 4028): Python sockets, one
connection per command, as the firmwares expect.

Usage: cgminer_client.py HOST:PORT COMMAND... Prints one JSON object: each command's
answer as parsed (after dropping the NUL terminator and mending `}{`, the two defects
real firmware has), and `raw_defects`, which of the two each raw answer had.
"""
import json
import socket
import sys


def ask(address: str, command: str) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(json.dumps({"command": command, "parameter": ""}).encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\0"):
                break
    return b"".join(chunks)


def main() -> None:
    address, commands = sys.argv[1], sys.argv[2:]
    out = {"answers": {}, "raw_defects": {}}
    for command in commands:
        raw = ask(address, command)
        text = raw.decode().rstrip("\0")
        out["raw_defects"][command] = {"nul": raw.endswith(b"\0"), "missing_comma": "}{" in text}
        out["answers"][command] = json.loads(text.replace("}{", "},{"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
