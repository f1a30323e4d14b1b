//! Graceful shutdown as an operator sees it: SIGTERM while a batch is still being gathered
//! flushes it to the exporter, answers the waiting client with success, and exits 0; the health
//! check answers 200 while running.

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
fn sigterm_flushes_held_batches_and_answers_waiting_clients() {
    let mut gw = Gateway::start(CONFIG);
    let health = http_request("GET", gw.health, "/", &[], b"").unwrap();
    assert_eq!(health.status, 200);
    assert!(
        health.text().contains("Server available"),
        "{}",
        health.text()
    );

    let body = traces_body(spans("held-", 5));
    let port = gw.http;
    // The client waits: its data sits in the batch processor until the batch leaves.
    let client = std::thread::spawn(move || {
        http_request(
            "POST",
            port,
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        )
    });
    assert!(eventually(Duration::from_secs(5), || gw
        .metric("otelcol_exporter_queue_size", &[])
        == 0.0));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !client.is_finished(),
        "the client is answered only once its data left the batch"
    );
    let out = gw.path("out.jsonl");
    let (status, log) = gw.stop();
    let answer = client.join().unwrap().expect("the client got an answer");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(status.success(), "exit status {status}: {log}");
    let names = span_names(&out);
    assert_eq!(
        names,
        (0..5).map(|i| format!("held-{i}")).collect::<Vec<_>>()
    );
    assert!(log.contains("shutdown complete"), "{log}");
}
