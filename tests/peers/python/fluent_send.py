"""switchyard test peer: sends Fluent Forward events with the real `fluent-logger` package.

Usage: fluent_send.py PORT TAG COUNT
Sends COUNT events (Message mode, EventTime with nanoseconds) with records
{"message": "event-<i>", "i": <i>, "ok": true} under tag TAG.<i % 2 == 0 and "even" or "odd">,
then prints one JSON line: {"sent": COUNT}. Exit 1 if the sender reports an error.
"""
import json
import sys

from fluent import sender


def main():
    port, tag, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    s = sender.FluentSender(tag, host="127.0.0.1", port=port, nanosecond_precision=True, timeout=5.0)
    for i in range(count):
        sub = "even" if i % 2 == 0 else "odd"
        if not s.emit(sub, {"message": f"event-{i}", "i": i, "ok": True}):
            print(f"fluent_send.py: emit failed: {s.last_error}", file=sys.stderr)
            sys.exit(1)
    s.close()
    print(json.dumps({"sent": count}))


if __name__ == "__main__":
    main()
