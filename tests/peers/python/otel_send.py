#!/usr/bin/env python3
# switchyard test peer: sends traces, metrics or logs with the real OpenTelemetry
# Python SDK + OTLP exporter (gRPC, gRPC+gzip or HTTP/protobuf) to a switchyard
# receiver, and writes a JSON summary of exactly what the SDK handed to the
# exporter so the Rust integration tests can compare it with what came out.
# Exit status: 0 = every export succeeded, 1 = an export failed, 2 = bad usage.
#
# Usage (after scripts/install-peers.sh):
#   target/peers/venv/bin/python tests/peers/python/otel_send.py \
#       --signal traces|metrics|logs --protocol grpc|grpc-gzip|http-protobuf \
#       --endpoint http://127.0.0.1:PORT --out SUMMARY.json [--count N] [--timeout SECS]
#       [--ca-file CA.pem [--client-cert C.pem --client-key K.pem]] [--header KEY=VALUE ...]
# With --ca-file the exporter speaks TLS (gRPC channel credentials; HTTP certificate_file).

import argparse
import json
import math
import os
import sys
import threading
import time
import uuid


def _sanitize_env():
    """Make the peer deterministic: ignore OTEL_* settings inherited from the
    test environment, and never route loopback traffic through an HTTP proxy."""
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]
    # requests lets these override a session's own CA (certificate_file): --ca-file must win.
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(key, None)
    for key in ("no_proxy", "NO_PROXY", "no_grpc_proxy"):
        cur = os.environ.get(key, "")
        os.environ[key] = ",".join(x for x in (cur, "127.0.0.1,localhost,::1") if x)


_sanitize_env()

from opentelemetry.sdk.resources import Resource  # noqa: E402  (after _sanitize_env on purpose)

SERVICE_NAME = "py-sender"
SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
PROTOCOLS = ("grpc", "grpc-gzip", "http-protobuf", "http-protobuf-gzip")


def die(msg, code=1):
    print(f"otel_send.py: {msg}", file=sys.stderr)
    sys.exit(code)


# --------------------------------------------------------------------------
# helpers for the summary
# --------------------------------------------------------------------------


def plain(value):
    """Attribute / body value -> JSON-able python value."""
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return str(value)


def attrs(attributes):
    return {str(k): plain(v) for k, v in (attributes or {}).items()}


def trace_hex(i):
    return format(i, "032x") if i else ""


def span_hex(i):
    return format(i, "016x") if i else ""


def int_or_zero(v):
    return int(v) if v is not None else 0


# --------------------------------------------------------------------------
# exporter construction
# --------------------------------------------------------------------------


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_otlp_exporter(signal, protocol, endpoint, timeout, tls=None, headers=None):
    """tls: None (plaintext) or dict(ca_file, client_cert, client_key); headers: dict."""
    if protocol in ("grpc", "grpc-gzip"):
        import grpc
        from grpc import Compression

        kw = dict(
            endpoint=endpoint,
            insecure=tls is None,
            timeout=timeout,
            compression=Compression.Gzip if protocol == "grpc-gzip" else Compression.NoCompression,
        )
        if tls is not None:
            kw["credentials"] = grpc.ssl_channel_credentials(
                root_certificates=read(tls["ca_file"]),
                private_key=read(tls["client_key"]) if tls.get("client_key") else None,
                certificate_chain=read(tls["client_cert"]) if tls.get("client_cert") else None,
            )
        if headers:
            kw["headers"] = headers
        if signal == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as E
        elif signal == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as E
        else:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as E
        return E(**kw)

    from opentelemetry.exporter.otlp.proto.http import Compression

    kw = dict(
        endpoint=endpoint.rstrip("/") + SIGNAL_PATHS[signal],
        timeout=timeout,
        compression=Compression.Gzip if protocol == "http-protobuf-gzip" else Compression.NoCompression,
    )
    if tls is not None:
        kw["certificate_file"] = tls["ca_file"]
        if tls.get("client_cert"):
            kw["client_certificate_file"] = tls["client_cert"]
            kw["client_key_file"] = tls["client_key"]
    if headers:
        kw["headers"] = headers
    if signal == "traces":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as E
    elif signal == "metrics":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as E
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as E
    return E(**kw)


class ExportLedger:
    """Shared record of every export call made through a checking wrapper."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0
        self.failures = []

    def record(self, ok, detail):
        with self.lock:
            self.calls += 1
            if not ok:
                self.failures.append(detail)


# --------------------------------------------------------------------------
# traces
# --------------------------------------------------------------------------


def send_traces(args, resource, ledger):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, Status, StatusCode

    class CheckedSpanExporter(SpanExporter):
        def __init__(self, inner):
            self.inner = inner

        def export(self, spans):
            try:
                res = self.inner.export(spans)
            except Exception as e:  # noqa: BLE001 - any exception is a failed export
                ledger.record(False, f"span export raised {e!r}")
                raise
            ledger.record(res == SpanExportResult.SUCCESS, f"span export returned {res}")
            return res

        def shutdown(self, timeout_millis=30000, **kwargs):
            self.inner.shutdown()

        def force_flush(self, timeout_millis=30000):
            return self.inner.force_flush(timeout_millis)

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    # One batch, exported on force_flush -> one OTLP request for all spans.
    provider.add_span_processor(
        BatchSpanProcessor(
            CheckedSpanExporter(make_otlp_exporter("traces", args.protocol, args.endpoint, args.timeout, *security(args))),
            schedule_delay_millis=3_600_000,
            max_export_batch_size=max(512, args.count + 1),
            max_queue_size=max(2048, args.count + 1),
        )
    )
    tracer = provider.get_tracer("switchyard.peer.python", "1.0.0")

    n = args.count
    with tracer.start_as_current_span("root", kind=SpanKind.SERVER) as root:
        root.set_attribute("s", "root")
        for k in range(max(n - 1, 0)):
            with tracer.start_as_current_span(f"child-{k}", kind=SpanKind.CLIENT) as child:
                child.set_attribute("s", f"child-{k}")
                child.set_attribute("i", 42 + k)
                child.set_attribute("f", 1.5)
                child.set_attribute("b", True)
                child.set_attribute("arr", ["a", "b"])
                if k == 0:
                    child.add_event("ev", {"k": "v"})
                if k == n - 2:  # the last child fails
                    child.set_status(Status(StatusCode.ERROR, "boom"))
        root.set_attribute("i", 42 + n)
        root.set_attribute("f", 1.5)
        root.set_attribute("b", True)
        root.set_attribute("arr", ["a", "b"])

    provider.force_flush(int(args.timeout * 1000) + 5000)
    provider.shutdown()

    spans = []
    for s in memory.get_finished_spans():
        spans.append(
            {
                "trace_id": trace_hex(s.context.trace_id),
                "span_id": span_hex(s.context.span_id),
                "parent_span_id": span_hex(s.parent.span_id) if s.parent is not None else "",
                "name": s.name,
                "kind": s.kind.value + 1,  # SDK enum is 0-based, OTLP is 1-based
                "start_time_unix_nano": int_or_zero(s.start_time),
                "end_time_unix_nano": int_or_zero(s.end_time),
                "attributes": attrs(s.attributes),
                "events": [
                    {
                        "name": ev.name,
                        "time_unix_nano": int_or_zero(ev.timestamp),
                        "attributes": attrs(ev.attributes),
                    }
                    for ev in s.events
                ],
                "status": {
                    "code": s.status.status_code.value,
                    "message": s.status.description or "",
                },
                "scope": s.instrumentation_scope.name if s.instrumentation_scope else "",
            }
        )
    return {"spans": spans}


# --------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------


def send_metrics(args, resource, ledger):
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        Gauge,
        Histogram,
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
        Sum,
    )

    exported = []

    class CheckedMetricExporter(MetricExporter):
        def __init__(self, inner):
            super().__init__(
                preferred_temporality=inner._preferred_temporality,
                preferred_aggregation=inner._preferred_aggregation,
            )
            self.inner = inner

        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            exported.append(metrics_data)
            try:
                res = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
            except Exception as e:  # noqa: BLE001
                ledger.record(False, f"metric export raised {e!r}")
                raise
            ledger.record(res == MetricExportResult.SUCCESS, f"metric export returned {res}")
            return res

        def force_flush(self, timeout_millis=10_000):
            return self.inner.force_flush(timeout_millis=timeout_millis)

        def shutdown(self, timeout_millis=30_000, **kwargs):
            self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)

    # math.inf interval: no background thread, so exactly one export happens,
    # when we call force_flush (shutdown does not collect again).
    reader = PeriodicExportingMetricReader(
        CheckedMetricExporter(make_otlp_exporter("metrics", args.protocol, args.endpoint, args.timeout, *security(args))),
        export_interval_millis=math.inf,
        export_timeout_millis=args.timeout * 1000 + 5000,
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("switchyard.peer.python", "1.0.0")

    n = args.count
    counter = meter.create_counter("py.requests", unit="1", description="requests handled by py-sender")
    for k in range(n):
        counter.add(k + 1, {"route": "/a", "ok": True})
    counter.add(10, {"route": "/b", "ok": False})

    hist = meter.create_histogram("py.latency", unit="ms", description="request latency")
    for v in (1.0, 7.5, 30.0, 250.0):
        hist.record(v, {"route": "/a"})

    updown = meter.create_up_down_counter("py.inflight", unit="{request}", description="in-flight requests")
    updown.add(5, {"pool": "p1"})
    updown.add(-2, {"pool": "p1"})

    def observe_gauge(_options):
        return [Observation(21.5, {"room": "lab"}), Observation(-3, {"room": "fridge"})]

    meter.create_observable_gauge("py.gauge", callbacks=[observe_gauge], unit="Cel", description="temperature")

    reader.force_flush(timeout_millis=args.timeout * 1000 + 5000)
    provider.shutdown()

    metrics = []
    for md in exported:
        for rm in md.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    d = m.data
                    entry = {"name": m.name, "unit": m.unit or "", "description": m.description or ""}
                    if isinstance(d, Sum):
                        entry["type"] = "sum"
                        entry["is_monotonic"] = bool(d.is_monotonic)
                        entry["aggregation_temporality"] = int(d.aggregation_temporality.value)
                    elif isinstance(d, Gauge):
                        entry["type"] = "gauge"
                    elif isinstance(d, Histogram):
                        entry["type"] = "histogram"
                        entry["aggregation_temporality"] = int(d.aggregation_temporality.value)
                    else:
                        entry["type"] = type(d).__name__.lower()
                    points = []
                    for p in d.data_points:
                        pt = {
                            "attributes": attrs(p.attributes),
                            "start_time_unix_nano": int_or_zero(getattr(p, "start_time_unix_nano", None)),
                            "time_unix_nano": int_or_zero(p.time_unix_nano),
                        }
                        if isinstance(d, Histogram):
                            pt["count"] = int(p.count)
                            # OTLP histogram sum/min/max/bounds are doubles
                            pt["sum"] = float(p.sum)
                            pt["bucket_counts"] = [int(c) for c in p.bucket_counts]
                            pt["explicit_bounds"] = [float(b) for b in p.explicit_bounds]
                            pt["min"] = float(p.min)
                            pt["max"] = float(p.max)
                        else:
                            pt["value"] = p.value
                        points.append(pt)
                    entry["points"] = points
                    entry["scope"] = sm.scope.name if sm.scope else ""
                    metrics.append(entry)
    return {"metrics": metrics}


# --------------------------------------------------------------------------
# logs
# --------------------------------------------------------------------------


def send_logs(args, resource, ledger):
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        InMemoryLogRecordExporter,
        LogRecordExporter,
        LogRecordExportResult,
        SimpleLogRecordProcessor,
    )
    from opentelemetry.sdk.trace import TracerProvider

    class CheckedLogExporter(LogRecordExporter):
        def __init__(self, inner):
            self.inner = inner

        def export(self, batch):
            try:
                res = self.inner.export(batch)
            except Exception as e:  # noqa: BLE001
                ledger.record(False, f"log export raised {e!r}")
                raise
            # the OTLP log exporters return LogRecordExportResult (older ones LogExportResult)
            ok = getattr(res, "name", None) == "SUCCESS"
            ledger.record(ok, f"log export returned {res}")
            return res

        def shutdown(self):
            self.inner.shutdown()

        def force_flush(self, timeout_millis=30000):
            return self.inner.force_flush(timeout_millis)

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            CheckedLogExporter(make_otlp_exporter("logs", args.protocol, args.endpoint, args.timeout, *security(args))),
            schedule_delay_millis=3_600_000,
            max_export_batch_size=max(512, args.count + 1),
            max_queue_size=max(2048, args.count + 1),
        )
    )
    logger = provider.get_logger("switchyard.peer.python", "1.0.0")

    # A tracer whose spans go nowhere; only used to have an active span context.
    tracer = TracerProvider(resource=resource, shutdown_on_exit=False).get_tracer("switchyard.peer.python")

    n = args.count
    for k in range(n):
        fields = dict(
            # the SDK leaves time_unix_nano at 0 unless a timestamp is given
            timestamp=time.time_ns(),
            body=f"log-{k}",
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            attributes={"s": f"v{k}", "i": 42 + k, "f": 1.5, "b": k % 2 == 0, "arr": ["a", "b"]},
        )
        if k == n - 1:
            # last record is emitted inside an active span -> carries trace_id/span_id
            with tracer.start_as_current_span("log-parent"):
                logger.emit(**fields)
        else:
            logger.emit(**fields)

    provider.force_flush(int(args.timeout * 1000) + 5000)
    provider.shutdown()

    logs = []
    for r in memory.get_finished_logs():
        lr = r.log_record
        sev = lr.severity_number
        logs.append(
            {
                "body": plain(lr.body),
                "severity_number": sev.value if sev is not None else 0,
                "severity_text": lr.severity_text or "",
                "attributes": attrs(lr.attributes),
                "trace_id": trace_hex(lr.trace_id),
                "span_id": span_hex(lr.span_id),
                "time_unix_nano": int_or_zero(lr.timestamp),
                "observed_time_unix_nano": int_or_zero(lr.observed_timestamp),
                "scope": r.instrumentation_scope.name if r.instrumentation_scope else "",
            }
        )
    return {"logs": logs}


# --------------------------------------------------------------------------


def security(args):
    """The exporter's TLS settings and headers from the command line."""
    tls = None
    if args.ca_file:
        tls = dict(ca_file=args.ca_file, client_cert=args.client_cert, client_key=args.client_key)
    headers = {}
    for h in args.header:
        key, sep, value = h.partition("=")
        if not sep:
            die(f"--header {h!r}: expected KEY=VALUE", 2)
        headers[key.strip().lower()] = value
    return tls, headers or None


def main():
    ap = argparse.ArgumentParser(description="OpenTelemetry Python SDK test peer for switchyard")
    ap.add_argument("--signal", required=True, choices=sorted(SIGNAL_PATHS))
    ap.add_argument("--protocol", required=True, choices=PROTOCOLS)
    ap.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4317")
    ap.add_argument("--out", required=True, help="where to write the JSON summary")
    ap.add_argument("--count", type=int, default=3, help="spans / log records / counter increments (default 3)")
    ap.add_argument("--timeout", type=float, default=10.0, help="exporter timeout in seconds (default 10)")
    ap.add_argument("--ca-file", help="speak TLS, trusting this CA (PEM)")
    ap.add_argument("--client-cert", help="client certificate (PEM) for mutual TLS")
    ap.add_argument("--client-key", help="client key (PEM) for mutual TLS")
    ap.add_argument("--header", action="append", default=[], help="KEY=VALUE sent with every export")
    ap.add_argument("--resource", action="append", default=[], help="KEY=VALUE added to the resource")
    args = ap.parse_args()
    if args.count < 1:
        die("--count must be >= 1", 2)
    if not args.endpoint.startswith(("http://", "https://")):
        die("--endpoint must be a URL like http://127.0.0.1:PORT", 2)

    extra = dict(kv.split("=", 1) for kv in args.resource)
    resource = Resource.create({"service.name": SERVICE_NAME, "test.run": str(uuid.uuid4()), **extra})
    ledger = ExportLedger()

    if args.signal == "traces":
        body = send_traces(args, resource, ledger)
    elif args.signal == "metrics":
        body = send_metrics(args, resource, ledger)
    else:
        body = send_logs(args, resource, ledger)

    summary = {"resource": attrs(resource.attributes)}
    summary.update(body)
    summary["exports"] = ledger.calls
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=False)
        f.write("\n")

    if ledger.calls == 0:
        die(f"no {args.signal} export was attempted")
    if ledger.failures:
        die(f"{args.signal} export to {args.endpoint} via {args.protocol} failed: " + "; ".join(ledger.failures))


if __name__ == "__main__":
    main()
