//! The `otlp` (gRPC) exporter against an independent gRPC stack: the Python grpcio server with
//! the opentelemetry-proto servicer (tests/peers/python/otlp_sink.py), standing in for Jaeger,
//! which takes OTLP on 4317 but cannot be installed here. The story of DESIGN.md: the Python
//! SDK sends to switchyard, which sends every span to that backend and to a vendor's OTLP/HTTP
//! endpoint at once; swapping the vendor is a configuration edit. Faults: UNAVAILABLE is retried,
//! INVALID_ARGUMENT drops only its batch, and a hanging backend stalls nobody else.

mod common;

use common::sink::Sink;
use common::vendor::Vendor;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn config(exporters: &str, names: &str) -> String {
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
{exporters}
service:
  shutdown_timeout: 3s
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [{names}]
"#
    )
}

fn grpc_exporter(port: u16) -> String {
    format!(
        "  otlp/jaeger:\n    endpoint: 127.0.0.1:{port}\n    tls:\n      insecure: true\n    headers:\n      x-team: checkout\n    retry_on_failure:\n      initial_interval: 100ms\n      max_interval: 200ms\n"
    )
}

fn http_exporter(name: &str, port: u16) -> String {
    format!("  otlphttp/{name}:\n    endpoint: http://127.0.0.1:{port}\n    headers:\n      api-key: secret-123\n")
}

/// Sends `count` spans with the Python SDK over gRPC; returns their names, sorted.
fn python_sends(python: &Path, gw: &Gateway, count: usize) -> Vec<String> {
    let summary = gw.path(&format!("py-{}.json", free_port()));
    let out = Command::new(python)
        .arg(repo().join("tests/peers/python/otel_send.py"))
        .args(["--signal", "traces", "--protocol", "grpc", "--count", &count.to_string()])
        .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.grpc), "--out"])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let mut names: Vec<String> =
        v["spans"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

#[test]
fn every_span_reaches_the_grpc_backend_and_the_vendor_and_the_vendor_swaps_by_config() {
    let Some(python) = python_peer() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let sink = Sink::start(&python, scratch.path(), &[]);
    let vendor_a = Vendor::start(0, Some("secret-123"));
    let exporters = format!("{}{}", grpc_exporter(sink.port), http_exporter("vendor", vendor_a.port));
    let mut gw = Gateway::start(&config(&exporters, "otlp/jaeger, otlphttp/vendor"));
    let sent = python_sends(&python, &gw, 5);
    assert!(eventually(Duration::from_secs(15), || sink.spans().len() == 5 && vendor_a.accepted_spans().len() == 5));
    assert_eq!(sink.spans(), sent, "the gRPC backend got every span");
    assert_eq!(vendor_a.accepted_spans(), sent, "the vendor got every span");
    assert_eq!(sink.lines()[0]["metadata"]["x-team"], "checkout", "headers travel as gRPC metadata");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");

    // Swap the vendor: same client, a configuration naming another one.
    let vendor_b = Vendor::start(0, Some("secret-123"));
    let exporters = format!("{}{}", grpc_exporter(sink.port), http_exporter("vendor", vendor_b.port));
    let mut gw = Gateway::start(&config(&exporters, "otlp/jaeger, otlphttp/vendor"));
    let sent_b = python_sends(&python, &gw, 3);
    assert!(eventually(Duration::from_secs(15), || vendor_b.accepted_spans().len() == 3));
    assert_eq!(vendor_b.accepted_spans(), sent_b);
    assert!(eventually(Duration::from_secs(15), || sink.spans().len() == 8));
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn unavailable_is_retried_and_invalid_argument_drops_only_its_batch() {
    let Some(python) = python_peer() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let flaky = Sink::start(&python, scratch.path(), &["--fail-first", "2", "--fail-code", "UNAVAILABLE"]);
    let mut gw = Gateway::start(&config(&grpc_exporter(flaky.port), "otlp/jaeger"));
    post_spans(&gw, "retried-", 3);
    assert!(eventually(Duration::from_secs(15), || flaky.spans().len() == 3), "{}", gw.log());
    assert_eq!(flaky.spans(), vec!["retried-0", "retried-1", "retried-2"], "delivered once after two refusals");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");

    let strict = Sink::start(&python, scratch.path(), &["--fail-first", "1", "--fail-code", "INVALID_ARGUMENT"]);
    let mut gw = Gateway::start(&config(&grpc_exporter(strict.port), "otlp/jaeger"));
    post_spans(&gw, "rejected-", 2);
    assert!(eventually(Duration::from_secs(10), || gw
        .metric("switchyard_exporter_dropped_spans_total", &[("exporter", "otlp/jaeger")])
        == 2.0));
    post_spans(&gw, "next-", 2);
    assert!(eventually(Duration::from_secs(10), || strict.spans().len() == 2));
    assert_eq!(strict.spans(), vec!["next-0", "next-1"]);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("InvalidArgument"), "the drop names the status: {log}");
}

#[test]
fn sending_queue_batch_gathers_requests_into_exports_behind_the_queue() {
    let Some(python) = python_peer() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let (gathered, defaults) = (Sink::start(&python, scratch.path(), &[]), Sink::start(&python, scratch.path(), &[]));
    // One exporter gathers 1000 spans per export and has 60 s to get them; the other has
    // `batch:` with no value, as the OpenTelemetry demo writes it: the defaults (200 ms).
    let exporters = format!(
        "  otlp/gathered:\n    endpoint: 127.0.0.1:{}\n    tls:\n      insecure: true\n    sending_queue:\n      batch:\n        min_size: 1000\n        max_size: 1000\n        flush_timeout: 60s\n  otlp/defaults:\n    endpoint: 127.0.0.1:{}\n    tls:\n      insecure: true\n    sending_queue:\n      batch:\n",
        gathered.port, defaults.port
    );
    let mut gw = Gateway::start(&config(&exporters, "otlp/gathered, otlp/defaults"));
    for r in 0..15 {
        post_spans(&gw, &format!("r{r}-"), 100);
    }
    assert!(eventually(Duration::from_secs(20), || gathered.spans().len() == 1000), "{}", gw.log());
    let sizes = |sink: &Sink| sink.lines().iter().map(|l| l["spans"].as_array().unwrap().len()).collect::<Vec<_>>();
    assert_eq!(sizes(&gathered), vec![1000], "one export of max_size; the rest waits for more");
    assert!(eventually(Duration::from_secs(20), || defaults.spans().len() == 1500), "{}", gw.log());
    // The rest of the gathered exporter's batch leaves at shutdown.
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(sizes(&gathered), vec![1000, 500], "{log}");
}

#[test]
fn a_hanging_backend_stalls_only_its_own_queue() {
    let Some(python) = python_peer() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let sink = Sink::start(&python, scratch.path(), &[]);
    let hung = Vendor::start_hanging();
    let exporters = format!(
        "{}  otlphttp/hung:\n    endpoint: http://127.0.0.1:{}\n    timeout: 60s\n",
        grpc_exporter(sink.port),
        hung.port
    );
    let mut gw = Gateway::start(&config(&exporters, "otlp/jaeger, otlphttp/hung"));
    for i in 0..20 {
        let r = http_request(
            "POST",
            gw.http,
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &traces_body(spans(&format!("r{i}-"), 2)),
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(
        eventually(Duration::from_secs(15), || sink.spans().len() == 40),
        "the healthy backend kept receiving: {}",
        sink.spans().len()
    );
    assert!(
        gw.metric("otelcol_exporter_queue_size", &[("exporter", "otlphttp/hung")]) >= 10.0,
        "the hung backend's requests wait in its own queue"
    );
    // Shutdown cannot drain a backend that never answers: it stops at service.shutdown_timeout
    // and says how much was left.
    let (status, log) = gw.stop();
    assert!(!status.success(), "a drain cut short by the deadline exits non-zero");
    let report =
        log.lines().find(|l| l.contains("with data still queued; it is lost")).unwrap_or_else(|| panic!("{log}"));
    assert!(report.contains("exporter=\"otlphttp/hung\"") && report.contains("left="), "{report}");
    assert!(
        !log.lines().any(|l| l.contains("it is lost") && l.contains("otlp/jaeger")),
        "the healthy exporter had nothing left"
    );
}
