#!/usr/bin/env python3
# switchyard test peer: two "services" in one process, each with its own OpenTelemetry
# Python SDK TracerProvider and OTLP/HTTP exporter, calling each other: the client service
# makes a CLIENT span, injects its context (W3C traceparent) into a carrier, and the server
# service extracts it and makes a SERVER span as its child, as instrumented HTTP libraries do.
# Calls numbered below --failures end with the server span's status ERROR.
# Exit status: 0 = every export succeeded, 1 = an export failed, 2 = bad usage.
#
# Usage: python otel_calls.py --endpoint http://127.0.0.1:PORT --client frontend \
#            --server backend --calls N [--failures F] [--server-ms MS]

import argparse
import os
import sys
import time

for key in [k for k in os.environ if k.startswith("OTEL_")]:
    del os.environ[key]
for key in ("no_proxy", "NO_PROXY"):
    cur = os.environ.get(key, "")
    os.environ[key] = ",".join(x for x in (cur, "127.0.0.1,localhost,::1") if x)

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.propagate import extract, inject  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult  # noqa: E402
from opentelemetry.trace import SpanKind, Status, StatusCode  # noqa: E402

failed_exports = []


class Checked(OTLPSpanExporter):
    def export(self, spans):
        result = super().export(spans)
        if result != SpanExportResult.SUCCESS:
            failed_exports.append(len(spans))
        return result


def provider(endpoint, service):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(SimpleSpanProcessor(Checked(endpoint=endpoint + "/v1/traces", timeout=10)))
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--calls", type=int, required=True)
    ap.add_argument("--failures", type=int, default=0)
    ap.add_argument("--server-ms", type=float, default=0.0)
    a = ap.parse_args()
    client_p, server_p = provider(a.endpoint, a.client), provider(a.endpoint, a.server)
    client, server = client_p.get_tracer("calls"), server_p.get_tracer("calls")
    for i in range(a.calls):
        with client.start_as_current_span("GET /api", kind=SpanKind.CLIENT):
            carrier = {}
            inject(carrier)
            # The server side: a fresh context, only what the request carried.
            with server.start_as_current_span("GET /api", context=extract(carrier), kind=SpanKind.SERVER) as s:
                if a.server_ms:
                    time.sleep(a.server_ms / 1000.0)
                if i < a.failures:
                    s.set_status(Status(StatusCode.ERROR, "boom"))
    client_p.shutdown()
    server_p.shutdown()
    if failed_exports:
        print(f"otel_calls.py: {len(failed_exports)} exports failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
