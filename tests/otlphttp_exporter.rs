//! The `otlphttp` exporter delivering to a backend, as DESIGN's story goes: the real Python SDK
//! sends to switchyard, which sends every span both to a file and to a vendor's OTLP/HTTP
//! endpoint that requires an API key. And the faults a backend has: a 503 with `Retry-After`
//! (switchyard waits, then delivers once), a 400 (the batch is dropped and counted, the next
//! ones flow), a backend down for 20 s (delivered once it is back), and a full queue that blocks
//! on overflow (clients are told to retry, and nothing they sent is lost). The vendor is a
//! strict in-test server (tests/common/vendor.rs): no vendor's server can be installed here.

mod common;

use common::vendor::Vendor;
use common::*;
use std::process::Command;
use std::time::Duration;

fn config(vendor_port: u16, extra_exporters: &str, pipeline_exporters: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
      http:
        endpoint: 127.0.0.1:{{http}}
exporters:
  otlphttp/vendor:
    endpoint: http://127.0.0.1:{vendor_port}
    headers:
      api-key: secret-123
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
      max_elapsed_time: 60s
{extra_exporters}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{pipeline_exporters}]
"#
    )
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    v.sort();
    v
}

#[test]
fn python_sdk_spans_reach_the_vendor_and_the_file_alike() {
    let Some(python) = python_peer() else { return };
    let vendor = Vendor::start(0, Some("secret-123"));
    let file = "  file:\n    path: {dir}/out.jsonl\n";
    let mut gw = Gateway::start(&config(vendor.port, file, "otlphttp/vendor, file"));
    let summary_path = gw.path("py.json");
    let out = Command::new(&python)
        .arg(repo().join("tests/peers/python/otel_send.py"))
        .args(["--signal", "traces", "--protocol", "grpc", "--count", "5"])
        .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.grpc), "--out"])
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary_path).unwrap()).unwrap();
    let mut sent: Vec<String> =
        summary["spans"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    sent.sort();
    assert!(
        eventually(Duration::from_secs(15), || vendor.accepted_spans().len() == sent.len()),
        "{:?}",
        vendor.received()
    );
    assert_eq!(vendor.accepted_spans(), sent);
    let out = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&out) == sent), "both destinations got every span");
    let first = &vendor.received()[0];
    assert!(first.headers.iter().any(|(k, v)| k == "api-key" && v == "secret-123"), "{:?}", first.headers);
    assert!(first.headers.iter().any(|(k, v)| k == "content-encoding" && v == "gzip"));
    let counted =
        || gw.metric("otelcol_exporter_sent_spans_total", &[("exporter", "otlphttp/vendor")]) == sent.len() as f64;
    assert!(eventually(Duration::from_secs(10), counted));
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn retry_after_is_honoured_and_a_400_drops_only_its_batch() {
    let vendor = Vendor::start(0, Some("secret-123"));
    let mut gw = Gateway::start(&config(vendor.port, "", "otlphttp/vendor"));

    vendor.script(&[(503, &[("Retry-After", "2")])]);
    post_spans(&gw, "later-", 3);
    assert!(eventually(Duration::from_secs(15), || vendor.accepted_spans().len() == 3), "{:?}", vendor.received());
    let received = vendor.received();
    assert_eq!(received.len(), 2, "one refused attempt, one delivery: {received:?}");
    let waited = received[1].at.duration_since(received[0].at);
    assert!(waited >= Duration::from_millis(1900), "switchyard waited as asked: {waited:?}");
    assert_eq!(vendor.accepted_spans(), names("later-", 3));

    vendor.script(&[(400, &[])]);
    post_spans(&gw, "bad-", 2);
    assert!(eventually(Duration::from_secs(10), || gw
        .metric("switchyard_exporter_dropped_spans_total", &[("exporter", "otlphttp/vendor")])
        == 2.0));
    post_spans(&gw, "next-", 4);
    assert!(eventually(Duration::from_secs(10), || vendor.accepted_spans().len() == 7));
    let mut want = [names("later-", 3), names("next-", 4)].concat();
    want.sort();
    assert_eq!(vendor.accepted_spans(), want, "the 400 batch was not retried; the next one flowed");
    assert_eq!(vendor.received().len(), 4);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("permanent error: HTTP 400"), "the drop is logged with the status: {log}");
}

#[test]
fn a_backend_down_for_20_seconds_gets_everything_once_it_is_back() {
    let port = free_port();
    let mut gw = Gateway::start(&config(port, "", "otlphttp/vendor"));
    // Data keeps coming while the backend is down.
    let started = std::time::Instant::now();
    let mut sent = Vec::new();
    for round in 0..5 {
        post_spans(&gw, &format!("down{round}-"), 3);
        sent.extend(names(&format!("down{round}-"), 3));
        std::thread::sleep(Duration::from_secs(4));
    }
    std::thread::sleep(Duration::from_secs(20).saturating_sub(started.elapsed()));
    let vendor = Vendor::start(port, Some("secret-123"));
    sent.sort();
    assert!(eventually(Duration::from_secs(20), || vendor.accepted_spans().len() >= sent.len()), "{}", gw.log());
    assert_eq!(vendor.accepted_spans(), sent, "every span arrived, and once");
    assert_eq!(gw.metric("switchyard_exporter_dropped_spans_total", &[]), 0.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("retrying"), "{log}");
}

#[test]
fn a_full_blocking_queue_makes_clients_retry_and_nothing_is_lost() {
    let port = free_port();
    let exporter = "    sending_queue:\n      queue_size: 5\n      block_on_overflow: true\n";
    let cfg = config(port, "", "otlphttp/vendor")
        .replace("      max_elapsed_time: 60s\n", &format!("      max_elapsed_time: 60s\n{exporter}"));
    let mut gw = Gateway::start(&cfg);
    let http = gw.http;
    // A client that retries refused requests, as OTLP clients do, counting the refusals.
    let client = std::thread::spawn(move || {
        let mut refusals = 0;
        for i in 0..10 {
            let body = traces_body(spans(&format!("q{i}-"), 1));
            loop {
                let r = http_request("POST", http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body)
                    .unwrap();
                match r.status {
                    200 => break,
                    503 => {
                        refusals += 1;
                        let wait: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(1);
                        std::thread::sleep(Duration::from_secs(wait));
                    }
                    other => panic!("unexpected {other}: {}", r.text()),
                }
            }
        }
        refusals
    });
    // The backend comes up only after the fifth request has filled the queue and the sixth has
    // waited its five seconds and been refused.
    std::thread::sleep(Duration::from_secs(8));
    let vendor = Vendor::start(port, Some("secret-123"));
    let refusals = client.join().unwrap();
    assert!(refusals >= 1, "the client was told to retry");
    let want = {
        let mut v: Vec<String> = (0..10).map(|i| format!("q{i}-0")).collect();
        v.sort();
        v
    };
    assert!(eventually(Duration::from_secs(20), || vendor.accepted_spans().len() >= 10), "{}", gw.log());
    assert_eq!(vendor.accepted_spans(), want, "everything the client sent arrived, once");
    assert!(gw.metric("otelcol_exporter_enqueue_failed_spans_total", &[("exporter", "otlphttp/vendor")]) >= 1.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
