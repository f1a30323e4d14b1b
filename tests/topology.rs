//! Pipeline topology as configured: fan-in from two receivers, one receiver feeding two
//! pipelines, one exporter serving two pipelines, and fan-out to two exporters — each exporter
//! gets exactly the copies its pipelines route to it.

mod common;

use common::*;
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  otlp/second:
    protocols:
      http:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
    timeout: 20ms
exporters:
  file/all:
    path: {dir}/all.jsonl
  file/one:
    path: {dir}/one.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces/one:
      receivers: [otlp, otlp/second]
      processors: [batch]
      exporters: [file/all, file/one]
    traces/two:
      receivers: [otlp]
      exporters: [file/all]
"#;

fn send(port: u16, name: &str) {
    let r = http_request(
        "POST",
        port,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(vec![span(name, vec![5; 16])]),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn fan_in_fan_out_and_shared_components() {
    let mut gw = Gateway::start(CONFIG);
    send(gw.http, "via-first");
    send(gw.grpc, "via-second");
    let (all, one) = (gw.path("all.jsonl"), gw.path("one.jsonl"));
    assert!(eventually(Duration::from_secs(10), || span_names(&all).len() == 3 && span_names(&one).len() == 2));
    assert_eq!(span_names(&gw.path("one.jsonl")), vec!["via-first", "via-second"]);
    // traces/one brings both; traces/two brings the first receiver's span once more.
    assert_eq!(span_names(&gw.path("all.jsonl")), vec!["via-first", "via-first", "via-second"]);
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp")]), 1.0);
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "otlp/second")]), 1.0);
    assert_eq!(gw.metric("otelcol_exporter_sent_spans_total", &[("exporter", "file/all")]), 3.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
