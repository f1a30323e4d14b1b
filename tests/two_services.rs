//! Two services in one process, as a reload or an embedding program has them: with the same
//! component names, each counts into its own self-metrics, and one giving up on its data at
//! its shutdown deadline does not stop the other's delivery notices (file offsets).

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;
use switchyard::service::RunningService;

fn config(dir: &Path, http: u16, backend: u16) -> switchyard::model::Config {
    let text = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  filelog:
    include: ["{dir}/app.log"]
    start_at: beginning
    poll_interval: 50ms
    storage: file_storage
exporters:
  otlphttp/out:
    endpoint: http://127.0.0.1:{backend}
    retry_on_failure:
      initial_interval: 100ms
      max_elapsed_time: 60s
extensions:
  file_storage:
    directory: {dir}/state
    create_directory: true
service:
  extensions: [file_storage]
  shutdown_timeout: 1s
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlphttp/out]
    logs:
      receivers: [filelog]
      exporters: [otlphttp/out]
"#,
        dir = dir.display()
    );
    switchyard::model::load_sources(&[("two.yaml".into(), text)]).expect("valid configuration")
}

/// The delivered offset the filelog receiver saved for its one file.
fn saved_offset(dir: &Path) -> u64 {
    let Ok(bytes) = std::fs::read(dir.join("state/receiver_filelog_filelog.json")) else { return 0 };
    let saved: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    saved["files"][0]["offset"].as_u64().unwrap_or(0)
}

fn append(dir: &Path, lines: &[&str]) -> u64 {
    use std::io::Write;
    let path = dir.join("app.log");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    std::fs::metadata(&path).unwrap().len()
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_with_the_same_names_keep_their_metrics_and_deliveries_apart() {
    // The backend of B: a third service writing what it receives to a file.
    let backend_dir = tempfile::tempdir().unwrap();
    let backend_port = free_port();
    let backend_cfg = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{backend_port}\nexporters:\n  file:\n    path: {}/got.jsonl\nservice:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n    logs:\n      receivers: [otlp]\n      exporters: [file]\n",
        backend_dir.path().display()
    );
    let backend = RunningService::start(&switchyard::model::load_sources(&[("b.yaml".into(), backend_cfg)]).unwrap())
        .await
        .unwrap();

    // A sends to a port where nothing listens; B to the backend. Same component names.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (http_a, http_b) = (free_port(), free_port());
    let a = RunningService::start(&config(dir_a.path(), http_a, free_port())).await.unwrap();
    let b = RunningService::start(&config(dir_b.path(), http_b, backend_port)).await.unwrap();

    let post = |port: u16, n: usize| {
        let body = traces_body(spans("s-", n));
        http_request("POST", port, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap().status
    };
    let (sa, sb) = tokio::task::spawn_blocking(move || (post(http_a, 3), post(http_b, 5))).await.unwrap();
    assert_eq!((sa, sb), (200, 200));
    let accepted = |s: &RunningService| {
        metric_value(
            &s.telemetry().render(),
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "otlp"), ("transport", "http")],
        )
    };
    assert_eq!(accepted(&a), 3.0, "A counts only its own");
    assert_eq!(accepted(&b), 5.0, "B counts only its own");

    // B's file offsets move as its lines are delivered; A's cannot (its backend is down).
    let len_b = append(dir_b.path(), &["b one", "b two"]);
    append(dir_a.path(), &["a one"]);
    wait_for("B's offset", || saved_offset(dir_b.path()) == len_b).await;
    assert_eq!(saved_offset(dir_a.path()), 0);

    // A gives up at its shutdown deadline: what it still held is not reported as delivered…
    assert!(!a.shutdown().await, "A's deadline passes with data queued");
    assert_eq!(saved_offset(dir_a.path()), 0, "lost data is never checkpointed");
    // …and B, in the same process, goes on checkpointing what it delivers.
    let len_b = append(dir_b.path(), &["b three"]);
    wait_for("B's offset after A gave up", || saved_offset(dir_b.path()) == len_b).await;
    assert!(b.shutdown().await);
    assert!(backend.shutdown().await);
    let got = json_lines(&backend_dir.path().join("got.jsonl"));
    let records: usize = got
        .iter()
        .flat_map(|l| l["resourceLogs"].as_array().cloned().unwrap_or_default())
        .flat_map(|rl| rl["scopeLogs"].as_array().cloned().unwrap_or_default())
        .map(|sl| sl["logRecords"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(records, 3, "B's three lines reached its backend");
}
