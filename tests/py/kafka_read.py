"""An independent Kafka reader: the pure-Python kafka-python client (zstd via zstandard).

Usage: kafka_read.py BOOTSTRAP PROTO_DIR TOPIC [TOPIC...]
Reads every partition of each topic from the beginning until nothing new arrives for
3 s (tansu's ListOffsets answers are not exact end offsets, so they are not used), and
prints
one JSON object per message: topic, partition, offset, key, headers, and the value
(decoded from JSON, or from protobuf `rigtap.v1.Sample` with stubs generated from
PROTO_DIR when the message's content-type says so). Also checks, with kafka-python's
own Java-compatible partitioner, which partition each key should have gone to.
"""
import json
import sys

from google.protobuf import json_format
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import DefaultPartitioner

import stubs


def sample_class(proto_dir: str):
    stubs.generate(proto_dir, under="rigtap")
    from rigtap.v1 import sample_pb2
    return sample_pb2.Sample


def main() -> None:
    bootstrap, proto_dir, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
    sample = sample_class(proto_dir)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=5000, request_timeout_ms=20000)
    partitions = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic) or set()
        partitions += [TopicPartition(topic, p) for p in sorted(ids)]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    counts = {tp: len(consumer.partitions_for_topic(tp.topic)) for tp in partitions}
    while True:
        batch = consumer.poll(timeout_ms=3000)
        if not batch:
            break
        for tp, records in batch.items():
            for r in records:
                headers = {k: v.decode() for k, v in r.headers}
                if headers.get("content-type") == "application/x-protobuf":
                    message = sample()
                    message.ParseFromString(r.value)
                    value = json_format.MessageToDict(message, preserving_proto_field_name=True)
                else:
                    value = json.loads(r.value)
                expected = DefaultPartitioner()(r.key, list(range(counts[tp])), list(range(counts[tp])))
                print(json.dumps({"topic": r.topic, "partition": r.partition, "offset": r.offset,
                                  "key": r.key.decode() if r.key is not None else None,
                                  "expected_partition": expected,
                                  "headers": headers, "value": value}))


if __name__ == "__main__":
    main()
