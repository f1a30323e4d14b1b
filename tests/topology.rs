//! Pipeline topology as configured: fan-in from two receivers, one receiver feeding two
//! pipelines, one exporter serving two pipelines, and fan-out to two exporters — each exporter
//! gets exactly the copies its pipelines route to it.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
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
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: name.into(),
                    trace_id: vec![5; 16],
                    span_id: vec![6; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let r = http_request(
        "POST",
        port,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

fn names(gw: &Gateway, file: &str) -> Vec<String> {
    let mut v: Vec<String> = json_lines(&gw.path(file))
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[test]
fn fan_in_fan_out_and_shared_components() {
    let mut gw = Gateway::start(CONFIG);
    send(gw.http, "via-first");
    send(gw.grpc, "via-second");
    assert!(eventually(Duration::from_secs(10), || names(
        &gw,
        "all.jsonl"
    )
    .len()
        == 3
        && names(&gw, "one.jsonl").len() == 2));
    assert_eq!(names(&gw, "one.jsonl"), vec!["via-first", "via-second"]);
    // traces/one brings both; traces/two brings the first receiver's span once more.
    assert_eq!(
        names(&gw, "all.jsonl"),
        vec!["via-first", "via-first", "via-second"]
    );
    assert_eq!(
        gw.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp")]
        ),
        1.0
    );
    assert_eq!(
        gw.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp/second")]
        ),
        1.0
    );
    assert_eq!(
        gw.metric(
            "otelcol_exporter_sent_spans_total",
            &[("exporter", "file/all")]
        ),
        3.0
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
