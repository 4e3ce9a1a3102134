"""The facts of a miner API's interface, one per line, from a FileDescriptorSet: every
message's fields (number, name, type, repeated or not), every enum value, every rpc
(request, answer, streaming). Comments and options are left out: what the wire needs.

Made once per reference release, kept as tests/data/bos-plus-api-<version>.facts:

    git clone https://github.com/braiins/bos-plus-api && cd bos-plus-api
    git checkout <the release's commit>
    python -m grpc_tools.protoc -Iproto --include_imports \\
        --descriptor_set_out=/tmp/ref.pb $(find proto -name '*.proto')
    python tests/py/reference_facts.py /tmp/ref.pb > tests/data/bos-plus-api-<version>.facts

rigtap's own protos are compared with the facts by the `agree_with_the_reference`
test in src/toolkit/proto.rs; tests/py/encode_reference.py encodes messages from them.

Usage: reference_facts.py DESCRIPTOR_SET
"""
import sys

from google.protobuf import descriptor_pb2

TYPES = {
    v: k.removeprefix("TYPE_").lower()
    for k, v in descriptor_pb2.FieldDescriptorProto.Type.items()
}
REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED


def field_type(field) -> str:
    if field.type_name:
        return field.type_name
    return TYPES[field.type]


def main() -> None:
    fds = descriptor_pb2.FileDescriptorSet()
    with open(sys.argv[1], "rb") as f:
        fds.ParseFromString(f.read())
    lines = []

    def message(prefix: str, m) -> None:
        name = f"{prefix}.{m.name}"
        lines.append(f"message {name}")
        for f in m.field:
            repeated = " repeated" if f.label == REPEATED else ""
            lines.append(f"field {name} {f.number} {f.name} {field_type(f)}{repeated}")
        for nested in m.nested_type:
            message(name, nested)
        for e in m.enum_type:
            enum(name, e)

    def enum(prefix: str, e) -> None:
        name = f"{prefix}.{e.name}"
        for v in e.value:
            lines.append(f"enum {name} {v.number} {v.name}")

    for f in fds.file:
        if f.package.startswith("google."):
            continue
        package = f".{f.package}"
        for m in f.message_type:
            message(package, m)
        for e in f.enum_type:
            enum(package, e)
        for s in f.service:
            for m in s.method:
                request = ("stream " if m.client_streaming else "") + m.input_type
                answer = ("stream " if m.server_streaming else "") + m.output_type
                lines.append(f"rpc {package}.{s.name}/{m.name} {request} -> {answer}")
    print("\n".join(sorted(set(lines))))


if __name__ == "__main__":
    main()
