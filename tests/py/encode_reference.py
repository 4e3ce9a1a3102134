"""An independent encoder of the miner API: Python's protobuf runtime, with the message
built from the reference's facts (tests/data/bos-plus-api-*.facts, made from
braiins/bos-plus-api's protos), not from rigtap's protos.

Usage: encode_reference.py FACTS MESSAGE JSON. Builds MESSAGE (e.g.
.braiins.bos.v1.GetMinerDetailsResponse) with its scalar fields as the reference
declares them, sets the fields of JSON, and prints the encoded message in hex.
"""
import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto


def main() -> None:
    facts_path, name, values = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    package, _, short = name.lstrip(".").rpartition(".")
    file = descriptor_pb2.FileDescriptorProto(
        name="reference.proto", package=package, syntax="proto3"
    )
    message = file.message_type.add(name=short)
    with open(facts_path) as facts:
        for line in facts:
            parts = line.split()
            if parts[:2] != ["field", name]:
                continue
            number, field, kind = int(parts[2]), parts[3], parts[4]
            if kind.startswith("."):
                continue  # messages and enums: not needed for the scalars tested
            label = F.LABEL_REPEATED if parts[5:] == ["repeated"] else F.LABEL_OPTIONAL
            message.field.add(
                name=field, number=number, type=F.Type.Value(f"TYPE_{kind.upper()}"), label=label
            )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(name.lstrip(".")))
    print(cls(**values).SerializeToString().hex())


if __name__ == "__main__":
    main()
