#!/usr/bin/env python3
# switchyard test peer: the legacy Python Jaeger client (`jaeger-client` 4.8, OpenTracing API)
# sends ONE known trace as a single UDP datagram to 127.0.0.1:PORT, the way it talks to a
# jaeger-agent on 6831: Agent.emitBatch as a Thrift COMPACT oneway call (first bytes 0x82 0x81).
#
# Usage (after scripts/install-peers.sh):
#   target/peers/venv/bin/python tests/peers/python/jaeger_send.py PORT \
#       [--service NAME] [--trace-id-128] [--timeout SECS]
#
# Prints exactly one JSON line on stdout describing what was sent:
#   {"service": ..., "spans": [{"name", "trace_id" (32 hex, zero-padded when 64-bit),
#    "span_id" (16 hex), "parent_span_id" (16 hex or ""), "kind", "references"}]}
# Exit status: 0 = the datagram was handed to the kernel, 1 = the client reported a failure
# (reason on stderr), 2 = bad usage.
#
# The trace (same shape for every legacy peer):
#   "GET /checkout"  span.kind=server, http.method="GET", http.status_code=200 (long),
#                    cart.items=3 (long), cart.total=12.5 (double), cart.gift=true (bool),
#                    log {event: "cache-miss", sku: "sku-42"}
#   "charge-card"    child of the root, span.kind=client, error=true, log {event: "retry", attempt: 2}
#   "send-receipt"   FOLLOWS_FROM the root (OpenTracing reference; jaeger-client also makes the
#                    first reference the parent, so parentSpanId = root), span.kind=producer
# Process tags: deployment.environment="test" plus what the client adds on its own
# (jaeger.version, hostname, ip).
#
# Only 127.0.0.1:PORT is ever contacted: the const sampler never polls the agent's sampling
# endpoint and no throttler is configured (sampling_port is set to PORT anyway, so nothing
# else could be reached). The client's own `ip` tag lookup may UDP-connect() a socket to
# 10.255.255.255 to read the source address; a connect() on a UDP socket sends no packet.
# Spans are reported from a tornado IOLoop that runs in this thread (asyncio), and
# tracer.close() is awaited, so the datagram has been sent when the script exits.

import argparse
import asyncio
import json
import os
import sys

# Inherited JAEGER_* variables (JAEGER_TAGS, JAEGER_AGENT_PORT, ...) must not change the peer.
for _key in [k for k in os.environ if k.startswith("JAEGER_")]:
    del os.environ[_key]

import opentracing  # noqa: E402
from opentracing.ext import tags as ext_tags  # noqa: E402
from jaeger_client import Config  # noqa: E402
from jaeger_client.metrics import MetricsFactory  # noqa: E402

PROG = "jaeger_send.py"


def die(msg, code=1):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


class FailureCounter(MetricsFactory):
    """Counts the reporter's failed/dropped spans (jaeger:reporter_spans{result=err|dropped})."""

    def __init__(self):
        self.failed = 0

    def create_counter(self, name, tags=None):
        if name == "jaeger:reporter_spans" and (tags or {}).get("result") in ("err", "dropped"):
            def inc(value):
                self.failed += int(value or 0)
            return inc
        return self._noop


class ErrorRecorder:
    """Stands in for jaeger_client.utils.ErrorReporter, which would stay silent for the
    first 15 minutes; keeps the messages so they can be printed on failure."""

    def __init__(self):
        self.messages = []

    def error(self, *args):
        try:
            self.messages.append(args[0] % args[1:] if len(args) > 1 else str(args[0]))
        except Exception:  # noqa: BLE001 - never let reporting a failure fail
            self.messages.append(" ".join(map(str, args)))


def span_summary(span, kind, references=()):
    ctx = span.context
    return {
        "name": span.operation_name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(ctx.parent_id, "016x") if ctx.parent_id else "",
        "kind": kind,
        "references": [
            {"type": ref_type, "trace_id": format(c.trace_id, "032x"), "span_id": format(c.span_id, "016x")}
            for ref_type, c in references
        ],
    }


async def send(args):
    from tornado.ioloop import IOLoop

    failures = FailureCounter()
    errors = ErrorRecorder()
    config = Config(
        config={
            "service_name": args.service,
            "sampler": {"type": "const", "param": 1},
            "local_agent": {
                "reporting_host": "127.0.0.1",
                "reporting_port": args.port,
                "sampling_port": args.port,  # never contacted with the const sampler
            },
            "tags": {"deployment.environment": "test"},
            "generate_128bit_trace_id": args.trace_id_128,
            # one batch: spans are only submitted when the tracer is closed
            "reporter_flush_interval": 3600,
            "reporter_batch_size": 10,
            "logging": False,
        },
        metrics_factory=failures,
        validate=True,
    )
    config._error_reporter = errors  # noqa: SLF001 - see ErrorRecorder
    tracer = config.new_tracer(io_loop=IOLoop.current())

    root = tracer.start_span(
        "GET /checkout",
        tags={
            ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_SERVER,
            "http.method": "GET",
            "http.status_code": 200,
            "cart.items": 3,
            "cart.total": 12.5,
            "cart.gift": True,
        },
    )
    root.log_kv({"event": "cache-miss", "sku": "sku-42"})

    charge = tracer.start_span(
        "charge-card",
        child_of=root,
        tags={ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_RPC_CLIENT, ext_tags.ERROR: True},
    )
    charge.log_kv({"event": "retry", "attempt": 2})
    charge.finish()

    receipt = tracer.start_span(
        "send-receipt",
        references=[opentracing.follows_from(root.context)],
        tags={ext_tags.SPAN_KIND: ext_tags.SPAN_KIND_PRODUCER},
    )
    receipt.finish()
    root.finish()

    # Tracer.close() flushes the reporter queue (one emitBatch) and resolves when it is empty.
    await asyncio.wait_for(tracer.close(), timeout=args.timeout)

    summary = {
        "service": args.service,
        "spans": [
            span_summary(root, "server"),
            span_summary(charge, "client"),
            span_summary(receipt, "producer", [("follows_from", root.context)]),
        ],
    }
    return summary, failures.failed, errors.messages


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="Python jaeger-client test peer (UDP, Thrift compact)")
    ap.add_argument("port", type=int, help="UDP port on 127.0.0.1 (the agent's compact-Thrift port)")
    ap.add_argument("--service", default="py-jaeger-client", help="service name (default py-jaeger-client)")
    ap.add_argument("--trace-id-128", action="store_true", help="128-bit trace id (default: 64-bit, the client default)")
    ap.add_argument("--timeout", type=float, default=10.0, help="give up after SECS (default 10)")
    args = ap.parse_args()
    if not 0 < args.port < 65536:
        die(f"bad port {args.port}", 2)

    try:
        summary, failed, messages = asyncio.run(send(args))
    except asyncio.TimeoutError:
        die(f"tracer.close() did not complete within {args.timeout} s")
    except Exception as e:  # noqa: BLE001
        die(f"{type(e).__name__}: {e}")
    if failed or messages:
        die(f"jaeger-client failed to report {failed} span(s): {'; '.join(messages) or 'no message'}")
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
