//! Backpressure as a client sees it: when an exporter's sending queue has no room (here 1000
//! requests held by a batch processor that waits a minute), the next request gets HTTP 503 with
//! `Retry-After` (gRPC: UNAVAILABLE with RetryInfo, seen by grpcio), is counted, and is not
//! taken; everything that was answered with success is delivered at shutdown.

mod common;

use common::*;
use std::process::Command;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    send_batch_size: 1000000
    timeout: 60s
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
"#;

#[test]
fn a_full_queue_refuses_with_retryable_answers_and_loses_nothing_taken() {
    let mut gw = Gateway::start(CONFIG);
    let body = traces_body(spans("s", 2));
    let pb = [("Content-Type", "application/x-protobuf")];
    for i in 0..1000 {
        let r = http_request("POST", gw.http, "/v1/traces", &pb, &body).unwrap();
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let r = http_request("POST", gw.http, "/v1/traces", &pb, &body).unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.text().contains("sending queue of exporter file is full"), "{}", r.text());
    let json = http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/json")], br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x"}]}]}]}"#).unwrap();
    assert_eq!(json.status, 503);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&json.body).unwrap()["code"], 14);

    if let Some(python) = python_peer() {
        let file = gw.path("body.bin");
        std::fs::write(&file, &body).unwrap();
        let out = Command::new(python)
            .arg(repo().join("tests/peers/python/grpc_raw.py"))
            .args(["--target", &format!("127.0.0.1:{}", gw.grpc), "--signal", "traces", "--body"])
            .arg(&file)
            .output()
            .unwrap();
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("grpc_raw.py output");
        assert_eq!(r["code"], "UNAVAILABLE", "{r}");
        assert_eq!(r["retry_delay_s"], 1.0, "RetryInfo asks the client to wait: {r}");
    }

    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[]), 2000.0);
    assert!(gw.metric("otelcol_receiver_refused_spans_total", &[]) >= 3.0);
    assert!(gw.metric("otelcol_exporter_enqueue_failed_spans_total", &[("exporter", "file")]) >= 3.0);
    let out = gw.path("out.jsonl");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(span_names(&out).len(), 2000, "every span that was answered with success was delivered");
}
