"""switchyard test peer: reads a Kafka topic with the real `kafka-python` client.

Usage: kafka_read.py BOOTSTRAP TOPIC GROUP
Reads every message of TOPIC from the beginning of each partition up to its end (no group
membership: the partitions are assigned), and asks the broker for GROUP's committed offsets.
Prints one JSON object: {"messages": [{"partition", "offset", "key_hex", "value_hex"}...],
"end_offsets": {partition: offset}, "committed": {partition: offset or null}}.
"""
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def main():
    bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    parts = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or [])]
    reader.assign(parts)
    reader.seek_to_beginning(*parts)
    ends = reader.end_offsets(parts)
    messages = []
    deadline = time.time() + 20
    while time.time() < deadline and any(reader.position(tp) < ends[tp] for tp in parts):
        for tp, records in reader.poll(timeout_ms=500).items():
            for r in records:
                messages.append(
                    {
                        "partition": r.partition,
                        "offset": r.offset,
                        "key_hex": r.key.hex() if r.key is not None else None,
                        "value_hex": r.value.hex(),
                    }
                )
    reader.close()
    grouped = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    committed = {tp.partition: grouped.committed(tp) for tp in parts}
    grouped.close()
    print(
        json.dumps(
            {
                "messages": messages,
                "end_offsets": {tp.partition: ends[tp] for tp in parts},
                "committed": committed,
            }
        )
    )


if __name__ == "__main__":
    main()
