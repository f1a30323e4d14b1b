#!/usr/bin/env python3
# switchyard test peer: OpenTelemetry Python SDK 1.21.0 + the Zipkin v2 exporters sends ONE known
# trace (see known_trace.py) as one POST to http://127.0.0.1:PORT/api/v2/spans:
#   json   opentelemetry-exporter-zipkin-json 1.21.0 (Protocol.V2): `Content-Type: application/json`,
#          a JSON array of Zipkin v2 spans;
#   proto  opentelemetry-exporter-zipkin-proto-http 1.21.0: `Content-Type: application/x-protobuf`,
#          a zipkin.proto3 ListOfSpans.
# Both go through `requests` (Content-Length, not chunked; User-Agent python-requests/...).
#
# Usage (after scripts/install-peers.sh):
#   target/peers/venv-otel121/bin/python tests/peers/python-otel121/zipkin_send.py json|proto PORT \
#       [--service NAME] [--timeout SECS]
#
# Prints exactly one JSON line on stdout describing what was sent:
#   {"service": ..., "spans": [{"name", "trace_id" (32 hex), "span_id" (16 hex),
#    "parent_span_id" (16 hex or ""), "kind", "links"}]}
#   ("links" lists what the SDK span had; Zipkin v2 has no links, so the exporter drops them.)
# Exit status: 0 = 2xx response, 1 = export failed (reason on stderr), 2 = bad usage.
#
# What the exporter puts on the wire on its own (observed): localEndpoint {serviceName} only;
# every resource attribute (deployment.environment, service.name, telemetry.sdk.*) is copied into
# every span's tags; all tag values are strings (200 -> "200", 12.5 -> "12.5", True -> "true");
# plus otel.library.name/version and otel.scope.name/version, and for the error span
# otel.status_code="ERROR" and error="card declined"; kind SERVER/CLIENT/PRODUCER; events become
# annotations whose value is JSON text {"<event name>": {<attributes>}}; debug=true on every span
# (sampled flag); 128-bit traceId; spans in end order (charge-card, send-receipt, root).

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import known_trace  # noqa: E402

known_trace.sanitize_env()

PROG = "zipkin_send.py"


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="OTel 1.21 Zipkin v2 (JSON / protobuf) exporter test peer")
    ap.add_argument("mode", choices=("json", "proto"))
    ap.add_argument("port", type=int)
    ap.add_argument("--service", help="service name (default otel121-zipkin-<mode>)")
    ap.add_argument("--timeout", type=int, default=10, help="exporter timeout in whole seconds (default 10)")
    args = ap.parse_args()
    if not 0 < args.port < 65536:
        known_trace.die(PROG, f"bad port {args.port}", 2)
    if args.timeout <= 0:
        known_trace.die(PROG, "bad --timeout", 2)
    service = args.service or f"otel121-zipkin-{args.mode}"
    endpoint = f"http://127.0.0.1:{args.port}/api/v2/spans"

    provider = known_trace.setup_provider(service)
    if args.mode == "json":
        from opentelemetry.exporter.zipkin.json import Protocol, ZipkinExporter

        exporter = ZipkinExporter(version=Protocol.V2, endpoint=endpoint, timeout=args.timeout)
    else:
        from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter

        exporter = ZipkinExporter(endpoint=endpoint, timeout=args.timeout)

    summary = known_trace.send_known_trace(PROG, provider, exporter, service, args.timeout)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
