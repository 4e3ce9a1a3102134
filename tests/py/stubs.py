"""Python stubs generated from proto/ for the test readers, with grpcio-tools' protoc.

The stubs go to a temporary directory put first on sys.path, and removed when the
script ends (the modules are imported by then).
"""
import atexit
import importlib.resources
import pathlib
import shutil
import sys
import tempfile

from grpc_tools import protoc


def generate(proto_dir: str, under: str = "", grpc: bool = False) -> None:
    """Generates the messages of every .proto below PROTO_DIR/UNDER (and with GRPC,
    the service stubs), importable by their package paths."""
    out = tempfile.mkdtemp(prefix="rigtap-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    files = sorted(str(p.relative_to(proto_dir))
                   for p in pathlib.Path(proto_dir, under).rglob("*.proto"))
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    outputs = [f"--python_out={out}"] + ([f"--grpc_python_out={out}"] if grpc else [])
    code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{well_known}", *outputs, *files])
    if code != 0:
        sys.exit(f"protoc failed with {code}")
    sys.path.insert(0, out)
