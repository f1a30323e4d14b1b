# Shared by jaeger_send.py and zipkin_send.py (switchyard test peers, OpenTelemetry Python SDK 1.21):
# builds the known trace with the real SDK, exports it through a BatchSpanProcessor in ONE export
# call, and returns the JSON summary line. Must be imported after sanitize_env().
#
# The trace (same shape as the legacy Jaeger-client peers):
#   "GET /checkout"  SERVER, http.method="GET", http.status_code=200 (int), cart.items=3 (int),
#                    cart.total=12.5 (double), cart.gift=True (bool), event "cache-miss" {sku: "sku-42"}
#   "charge-card"    CLIENT, child of the root, status ERROR "card declined", event "retry" {attempt: 2}
#   "send-receipt"   PRODUCER, child of the root, with a Link to "charge-card" (the OTel stand-in for
#                    FOLLOWS_FROM; the Jaeger exporter turns links into FOLLOWS_FROM references,
#                    Zipkin has no links and drops it)
# Resource: service.name=<service>, deployment.environment="test" (+ the SDK's telemetry.sdk.*).

import os
import sys

SCOPE_NAME = "switchyard.peer.otel121"
SCOPE_VERSION = "1.0.0"


def sanitize_env():
    """Ignore OTEL_* settings inherited from the test environment and never send loopback
    traffic through an HTTP proxy (requests and thrift's THttpClient both honour *_proxy)."""
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    for key in ("no_proxy", "NO_PROXY"):
        cur = os.environ.get(key, "")
        os.environ[key] = ",".join(x for x in (cur, "127.0.0.1,localhost,::1") if x)


def die(prog, msg, code=1):
    print(f"{prog}: {msg}", file=sys.stderr)
    sys.exit(code)


def setup_provider(service):
    """Creates the global TracerProvider (the Jaeger exporter reads the service name from the
    global provider when it is constructed, so call this before creating the exporter)."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    trace.set_tracer_provider(provider)
    return provider


class CheckedExporter:
    """Delegates to the real exporter and records failures that the SDK would only log
    (the BatchSpanProcessor swallows exceptions; JaegerExporter.export returns SUCCESS even
    when the collector answers with an error status)."""

    def __init__(self, inner, after_export=None):
        self.inner = inner
        self.after_export = after_export
        self.exports = 0
        self.errors = []

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.exports += 1
        try:
            result = self.inner.export(spans)
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"{type(e).__name__}: {e}")
            return SpanExportResult.FAILURE
        if result != SpanExportResult.SUCCESS:
            self.errors.append(f"exporter returned {result.name}")
        if self.after_export is not None:
            problem = self.after_export()
            if problem:
                self.errors.append(problem)
                return SpanExportResult.FAILURE
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.inner.force_flush(timeout_millis)


def _summary(span, kind, links=()):
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent else "",
        "kind": kind,
        "links": [
            {"trace_id": format(c.trace_id, "032x"), "span_id": format(c.span_id, "016x")} for c in links
        ],
    }


def send_known_trace(prog, provider, exporter, service, timeout, after_export=None):
    """Records the known trace, exports it in one batch, shuts the provider down.
    after_export() may return a problem string (checked after every export call).
    Returns the summary dict; exits 1 on any export failure."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    checked = CheckedExporter(exporter, after_export)
    # The worker never exports on its own schedule before force_flush(): one batch, one request.
    provider.add_span_processor(
        BatchSpanProcessor(
            checked,
            schedule_delay_millis=3_600_000,
            max_export_batch_size=512,
            export_timeout_millis=int(timeout * 1000),
        )
    )
    tracer = provider.get_tracer(SCOPE_NAME, SCOPE_VERSION)

    root = tracer.start_span(
        "GET /checkout",
        kind=SpanKind.SERVER,
        attributes={
            "http.method": "GET",
            "http.status_code": 200,
            "cart.items": 3,
            "cart.total": 12.5,
            "cart.gift": True,
        },
    )
    root.add_event("cache-miss", {"sku": "sku-42"})
    root_ctx = trace.set_span_in_context(root)

    charge = tracer.start_span("charge-card", context=root_ctx, kind=SpanKind.CLIENT)
    charge.add_event("retry", {"attempt": 2})
    charge.set_status(Status(StatusCode.ERROR, "card declined"))
    charge.end()

    receipt = tracer.start_span(
        "send-receipt",
        context=root_ctx,
        kind=SpanKind.PRODUCER,
        links=[Link(charge.get_span_context())],
    )
    receipt.end()
    root.end()

    flushed = provider.force_flush(timeout_millis=int(timeout * 1000))
    provider.shutdown()
    if not flushed:
        die(prog, f"force_flush did not complete within {timeout} s")
    if checked.errors:
        die(prog, "export failed: " + "; ".join(checked.errors))
    if checked.exports == 0:
        die(prog, "nothing was exported")

    return {
        "service": service,
        "spans": [
            _summary(root, "server"),
            _summary(charge, "client"),
            _summary(receipt, "producer", [charge.get_span_context()]),
        ],
    }
