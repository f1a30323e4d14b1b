"""switchyard test peer: a member of a Kafka consumer group, with the real `kafka-python` client.

Usage: kafka_member.py BOOTSTRAP TOPIC GROUP STOPFILE
Subscribes to TOPIC as a member of GROUP (kafka-python's default assignors, `range` first) and
reads until STOPFILE exists, committing what it read; then closes, which leaves the group.
Prints JSON lines: {"assigned": [partitions]} whenever its assignment changes, and
{"partition", "offset", "value_hex"} for every message it reads.
"""
import json
import logging
import os
import sys

from kafka import KafkaConsumer


def say(obj):
    print(json.dumps(obj), flush=True)


def main():
    bootstrap, topic, group, stopfile = sys.argv[1:5]
    # The client's own account of joins, syncs and leaves, on stderr for the test's messages.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        heartbeat_interval_ms=500,
        session_timeout_ms=10000,
    )
    last = None
    while not os.path.exists(stopfile):
        records = consumer.poll(timeout_ms=200)
        mine = sorted(tp.partition for tp in consumer.assignment())
        if mine != last:
            say({"assigned": mine})
            last = mine
        for batch in records.values():
            for r in batch:
                say({"partition": r.partition, "offset": r.offset, "value_hex": r.value.hex()})
        if records:
            consumer.commit()
    consumer.close()


if __name__ == "__main__":
    main()
