#!/usr/bin/env python3
# switchyard test peer: sends a stream of spans named PREFIX-0 .. PREFIX-(N-1) with the real
# OpenTelemetry Python SDK (TracerProvider + BatchSpanProcessor + OTLP/gRPC exporter), spread
# over --seconds, and writes a JSON summary of how many spans the SDK exported and how many
# exports failed (after the exporter's own retries). Used by the reload tests: spans keep
# flowing while switchyard changes its configuration.
# Exit status: 0 = every export succeeded, 1 = an export failed, 2 = bad usage.
#
# Usage (after scripts/install-peers.sh):
#   target/peers/venv/bin/python tests/peers/python/otel_stream.py \
#       --endpoint http://127.0.0.1:PORT --prefix p --count N --out SUMMARY.json \
#       [--batch 200] [--seconds 0] [--attribute key=value] [--acked IDS.txt]
#
# With --acked, the span ids (hex) of every export switchyard answered OK are appended to that
# file, one per line, as the answer arrives: the spans switchyard acknowledged.

import argparse
import json
import os
import sys
import threading
import time


def _sanitize_env():
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    for key in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
        cur = os.environ.get(key, "")
        os.environ[key] = ",".join(x for x in (cur, "127.0.0.1,localhost,::1") if x)


_sanitize_env()

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402


class Counting(SpanExporter):
    """Passes spans to the OTLP exporter and counts what it reports."""

    def __init__(self, inner, acked=None):
        self.inner = inner
        self.acked = open(acked, "a") if acked else None
        self.lock = threading.Lock()
        self.exported = 0
        self.failed_exports = 0
        self.failed_spans = 0

    def export(self, spans):
        res = self.inner.export(spans)
        with self.lock:
            if res == SpanExportResult.SUCCESS:
                self.exported += len(spans)
                if self.acked:
                    self.acked.write("".join(f"{s.context.span_id:016x}\n" for s in spans))
                    self.acked.flush()
            else:
                self.failed_exports += 1
                self.failed_spans += len(spans)
        return res

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    ap = argparse.ArgumentParser(description="streams spans with the OpenTelemetry Python SDK")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=0.0, help="spread the spans over this long")
    ap.add_argument("--attribute", action="append", default=[], help="key=value on every span")
    ap.add_argument("--acked", help="append the span ids of acknowledged exports to this file")
    args = ap.parse_args()
    if args.count < 1 or args.batch < 1:
        print("otel_stream.py: --count and --batch must be >= 1", file=sys.stderr)
        sys.exit(2)

    exporter = Counting(OTLPSpanExporter(endpoint=args.endpoint, insecure=True, timeout=10), args.acked)
    provider = TracerProvider(resource=Resource.create({"service.name": "py-stream"}), shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=max(args.count, args.batch) + 1,
            max_export_batch_size=args.batch,
            schedule_delay_millis=50,
        )
    )
    tracer = provider.get_tracer("switchyard.peer.python.stream", "1.0.0")
    attributes = dict(a.split("=", 1) for a in args.attribute)
    chunks = max(1, (args.count + args.batch - 1) // args.batch)
    pause = args.seconds / chunks
    started = time.time()
    for k in range(args.count):
        with tracer.start_as_current_span(f"{args.prefix}-{k}") as span:
            for key, value in attributes.items():
                span.set_attribute(key, value)
        if pause and (k + 1) % args.batch == 0:
            time.sleep(pause)
    provider.force_flush(60_000)
    provider.shutdown()
    summary = {
        "sent": args.count,
        "exported": exporter.exported,
        "failed_exports": exporter.failed_exports,
        "failed_spans": exporter.failed_spans,
        "seconds": round(time.time() - started, 3),
    }
    with open(args.out, "w") as f:
        json.dump(summary, f)
    sys.exit(0 if exporter.failed_exports == 0 and exporter.exported == args.count else 1)


if __name__ == "__main__":
    main()
