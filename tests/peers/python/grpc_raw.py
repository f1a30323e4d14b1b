"""Sends raw bytes to one OTLP gRPC Export method with grpcio (an independent gRPC stack) and
prints the outcome as JSON: {"code": "OK"|status name, "details": str, "retry_delay_s": float|null,
"bad_request": [violation descriptions]|null}.

Usage: grpc_raw.py --target 127.0.0.1:PORT --signal traces|metrics|logs --body FILE [--gzip]
"""
import argparse
import json
import sys

import grpc
from google.rpc import status_pb2, error_details_pb2  # noqa: F401  (from googleapis-common-protos)

METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--signal", required=True, choices=METHODS)
    p.add_argument("--body", required=True)
    p.add_argument("--gzip", action="store_true")
    a = p.parse_args()
    body = open(a.body, "rb").read()
    opts = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(a.target, options=opts) as ch:
        call = ch.unary_unary(METHODS[a.signal], request_serializer=None, response_deserializer=None)
        compression = grpc.Compression.Gzip if a.gzip else grpc.Compression.NoCompression
        out = {"code": "OK", "details": "", "retry_delay_s": None, "bad_request": None, "response_len": None}
        try:
            resp = call(body, timeout=20, compression=compression)
            out["response_len"] = len(resp)
        except grpc.RpcError as e:
            out["code"] = e.code().name
            out["details"] = e.details() or ""
            for key, value in e.trailing_metadata() or ():
                if key == "grpc-status-details-bin":
                    st = status_pb2.Status.FromString(value)
                    for d in st.details:
                        if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                            info = error_details_pb2.RetryInfo()
                            d.Unpack(info)
                            out["retry_delay_s"] = info.retry_delay.ToTimedelta().total_seconds()
                        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                            bad = error_details_pb2.BadRequest()
                            d.Unpack(bad)
                            out["bad_request"] = [v.description for v in bad.field_violations]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
