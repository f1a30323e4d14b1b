//! Graceful shutdown as an operator sees it: SIGTERM while a batch is still being gathered
//! flushes it to the exporter before switchyard exits 0, so data a client was told was taken is
//! delivered; the health check answers 200 while running.

mod common;

use common::*;
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch:
    send_batch_size: 100000
    timeout: 60s
exporters:
  file:
    path: {dir}/out.jsonl
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
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
fn sigterm_flushes_held_batches_before_exit() {
    let mut gw = Gateway::start(CONFIG);
    let health = http_request("GET", gw.health, "/", &[], b"").unwrap();
    assert_eq!(health.status, 200);
    assert!(health.text().contains("Server available"), "{}", health.text());

    let body = traces_body(spans("held-", 5));
    // The client is answered at once: room for its data is held in the exporter queue while
    // the batch processor gathers; the data itself waits for the batch to leave.
    let answer =
        http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    std::thread::sleep(Duration::from_millis(300));
    let out = gw.path("out.jsonl");
    assert!(span_names(&out).is_empty(), "the batch is still being gathered");
    let (status, log) = gw.stop();
    assert!(status.success(), "exit status {status}: {log}");
    let names = span_names(&out);
    assert_eq!(names, (0..5).map(|i| format!("held-{i}")).collect::<Vec<_>>());
    assert!(log.contains("shutdown complete"), "{log}");
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut gw = Gateway::start(CONFIG);
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(spans("int-", 2)),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    signal(gw.pid(), "INT");
    assert!(eventually(Duration::from_secs(20), || gw.log().contains("shutdown complete")), "{}", gw.log());
    let out = gw.path("out.jsonl");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("SIGINT received"), "{log}");
    assert_eq!(span_names(&out), vec!["int-0", "int-1"]);
}

#[test]
fn sighup_keeps_running_and_loses_nothing() {
    let mut gw = Gateway::start(CONFIG);
    let post = |gw: &Gateway, prefix: &str| {
        let body = traces_body(spans(prefix, 3));
        http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap()
    };
    assert_eq!(post(&gw, "before-").status, 200);
    signal(gw.pid(), "HUP");
    assert!(
        eventually(Duration::from_secs(10), || gw.log().contains("SIGHUP received")),
        "the signal is logged: {}",
        gw.log()
    );
    // Still running: the held batch was not lost and new data is taken.
    assert_eq!(post(&gw, "after-").status, 200, "{}", gw.log());
    let out = gw.path("out.jsonl");
    let (status, log) = gw.stop();
    assert!(status.success(), "exit status {status}: {log}");
    assert!(log.contains("configuration reloaded: nothing changed"), "{log}");
    let mut names = span_names(&out);
    names.sort();
    assert_eq!(names, ["after-0", "after-1", "after-2", "before-0", "before-1", "before-2"]);
}

#[test]
fn shutdown_says_what_it_waits_for_and_a_second_signal_stops_at_once() {
    let dead = free_port();
    let mut gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{http}}"}}
exporters:
  otlp/jaeger:
    endpoint: 127.0.0.1:{dead}
    tls: {{insecure: true}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 10m}}
service:
  shutdown_timeout: 60s
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], exporters: [otlp/jaeger]}}
"#
    ));
    post_spans(&gw, "stuck-", 15);
    signal(gw.pid(), "INT");
    // While draining it says what it waits for, and for how much longer.
    assert!(eventually(Duration::from_secs(10), || gw.log().contains("waiting up to")), "{}", gw.log());
    let line = gw.log().lines().find(|l| l.contains("waiting up to")).unwrap_or_default().to_string();
    assert!(line.contains("otlp/jaeger") && line.contains("failing"), "{line}");
    // The second signal (Gateway::stop sends SIGTERM) stops it well before the 60 s deadline.
    let started = std::time::Instant::now();
    let (status, log) = gw.stop();
    assert!(started.elapsed() < Duration::from_secs(20), "stopped at once, not after shutdown_timeout");
    assert!(!status.success(), "data was lost, so the exit status says so: {log}");
    assert!(log.contains("second stop signal"), "{log}");
    assert!(log.lines().any(|l| l.contains("otlp/jaeger") && l.contains("it is lost")), "{log}");
}
