#!/usr/bin/env python3
# switchyard test peer: OpenTelemetry Python SDK 1.21.0 + opentelemetry-exporter-jaeger-thrift
# 1.21.0 (the last release line that shipped the Jaeger exporter) sends ONE known trace
# (see known_trace.py) to 127.0.0.1:PORT:
#   agent      agent_host_name/agent_port: one UDP datagram, Agent.emitBatch as a Thrift COMPACT
#              oneway message (first bytes 0x82 0x81), like a jaeger-agent's 6831 expects;
#   collector  collector_endpoint http://127.0.0.1:PORT/api/traces: one POST whose body is a bare
#              Thrift BINARY Batch struct, `Content-Type: application/x-thrift`, Content-Length
#              (not chunked), User-Agent "Python/THttpClient (jaeger_send.py)".
#
# Usage (after scripts/install-peers.sh):
#   target/peers/venv-otel121/bin/python tests/peers/python-otel121/jaeger_send.py agent|collector PORT \
#       [--service NAME] [--timeout SECS]
#
# Prints exactly one JSON line on stdout describing what was sent:
#   {"service": ..., "spans": [{"name", "trace_id" (32 hex), "span_id" (16 hex),
#    "parent_span_id" (16 hex or ""), "kind", "links"}]}
# Exit status: 0 = sent (collector: 2xx response), 1 = export failed (reason on stderr), 2 = bad usage.
#
# What the exporter puts on the wire on its own: the Process has only serviceName (no process
# tags); resource attributes (deployment.environment, telemetry.sdk.*, service.name) are copied
# into EVERY span's tags, plus span.kind (server/client/producer), otel.library.name/version,
# otel.scope.name/version, and for the error span otel.status_code="ERROR",
# otel.status_description="card declined", error=true. Events become logs with a "message"
# field holding the event name. The link becomes a FOLLOWS_FROM reference; the parent is only
# in parentSpanId (no CHILD_OF reference).

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import known_trace  # noqa: E402

known_trace.sanitize_env()

PROG = "jaeger_send.py (otel121)"


def main():
    ap = argparse.ArgumentParser(prog="jaeger_send.py", description="OTel 1.21 Jaeger Thrift exporter test peer")
    ap.add_argument("mode", choices=("agent", "collector"))
    ap.add_argument("port", type=int)
    ap.add_argument("--service", help="service name (default otel121-jaeger-<mode>)")
    ap.add_argument("--timeout", type=int, default=10, help="exporter timeout in whole seconds (default 10)")
    args = ap.parse_args()
    if not 0 < args.port < 65536:
        known_trace.die(PROG, f"bad port {args.port}", 2)
    if args.timeout <= 0:
        known_trace.die(PROG, "bad --timeout", 2)
    service = args.service or f"otel121-jaeger-{args.mode}"

    provider = known_trace.setup_provider(service)
    import warnings

    # JaegerExporter.__init__ is marked deprecated (DeprecationWarning on stderr); that is expected.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)
    from opentelemetry.exporter.jaeger.thrift import JaegerExporter

    after_export = None
    if args.mode == "agent":
        exporter = JaegerExporter(agent_host_name="127.0.0.1", agent_port=args.port, timeout=args.timeout)
    else:
        exporter = JaegerExporter(
            collector_endpoint=f"http://127.0.0.1:{args.port}/api/traces",
            timeout=args.timeout,
            # keep the agent client pointed at the same place; it is not used in collector mode
            agent_host_name="127.0.0.1",
            agent_port=args.port,
        )

        def after_export():
            # JaegerExporter.export() returns SUCCESS whatever the collector answered.
            collector = exporter._collector  # noqa: SLF001
            code = getattr(getattr(collector, "http_transport", None), "code", None)
            if code is None:
                return "no HTTP response from the collector"
            if not 200 <= code < 300:
                return f"collector answered HTTP {code}"
            return None

    summary = known_trace.send_known_trace(PROG, provider, exporter, service, args.timeout, after_export)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
