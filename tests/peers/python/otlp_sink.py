"""An independent OTLP/gRPC backend for switchyard's exporter tests, standing in for Jaeger
(which takes OTLP on 4317 but cannot be installed here): grpcio with the opentelemetry-proto
package's TraceService servicer. Every Export it answers OK is appended to --out as one JSON
line: {"spans": [names], "span_ids": [hex], "metadata": {key: value}, "request_hex": hex}; it
takes logs too (LogsService), recorded as {"logs": [bodies as strings], "metadata": {...}}. With --fail-first N it
answers the first N calls with --fail-code instead (and records nothing for them).

Usage: otlp_sink.py --port PORT --out FILE [--fail-first N --fail-code UNAVAILABLE]
                    [--tls-cert PEM --tls-key PEM [--client-ca PEM]]   (TLS; mutual with --client-ca)
Prints "ready" on stdout once listening; stops on SIGTERM.
"""
import argparse
import json
import signal
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out, fail_first, fail_code):
        self.out = out
        self.fail_left = fail_first
        self.fail_code = fail_code
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            if self.fail_left > 0:
                self.fail_left -= 1
                context.abort(self.fail_code, "sink told to fail")
            spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
            line = {
                "spans": [s.name for s in spans],
                "span_ids": [s.span_id.hex() for s in spans],
                "metadata": {k: v for k, v in context.invocation_metadata()},
                # The whole request, so that a test can compare it field by field.
                "request_hex": request.SerializeToString().hex(),
            }
            with open(self.out, "a") as f:
                f.write(json.dumps(line) + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


class LogSink(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, traces):
        self.traces = traces

    def Export(self, request, context):
        t = self.traces
        with t.lock:
            if t.fail_left > 0:
                t.fail_left -= 1
                context.abort(t.fail_code, "sink told to fail")
            records = [r for rl in request.resource_logs for sl in rl.scope_logs for r in sl.log_records]
            line = {
                "logs": [r.body.string_value for r in records],
                "metadata": {k: v for k, v in context.invocation_metadata()},
            }
            with open(t.out, "a") as f:
                f.write(json.dumps(line) + "\n")
        return logs_service_pb2.ExportLogsServiceResponse()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--fail-code", default="UNAVAILABLE")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--client-ca")
    a = p.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    traces = Sink(a.out, a.fail_first, grpc.StatusCode[a.fail_code])
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(traces, server)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(LogSink(traces), server)
    if a.tls_cert:
        read = lambda path: open(path, "rb").read()
        creds = grpc.ssl_server_credentials(
            [(read(a.tls_key), read(a.tls_cert))],
            root_certificates=read(a.client_ca) if a.client_ca else None,
            require_client_auth=bool(a.client_ca),
        )
        bound = server.add_secure_port(f"127.0.0.1:{a.port}", creds)
    else:
        bound = server.add_insecure_port(f"127.0.0.1:{a.port}")
    if bound == 0:
        sys.exit(f"otlp_sink.py: cannot listen on 127.0.0.1:{a.port}")
    server.start()
    print("ready", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(1)


if __name__ == "__main__":
    main()
