//! Backpressure as a client sees it. The `file` exporter writes into a pipe that the test reads
//! only later: a backend that stopped taking data. Once the exporter's queue has no room, the
//! next request gets HTTP 503 with `Retry-After` (gRPC: UNAVAILABLE with RetryInfo, seen by
//! grpcio), is counted, and is not taken; when the backend drains, every request that was
//! answered with success arrives, once. By default a full queue first holds the client for a
//! bounded wait, and takes its data if room appears meanwhile.

mod common;

use common::*;
use std::io::Read;
use std::process::Command;
use std::sync::mpsc;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  file:
    path: PIPE
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"#;

#[test]
fn a_stuck_backend_fills_the_queue_clients_are_told_to_retry_and_nothing_taken_is_lost() {
    let scratch = tempfile::tempdir().unwrap();
    let pipe = scratch.path().join("backend.pipe");
    assert!(Command::new("mkfifo").arg(&pipe).status().unwrap().success(), "mkfifo");
    let (go, wait) = mpsc::channel::<()>();
    let reader_path = pipe.clone();
    // The backend: opens the pipe (switchyard's open waits for it), then reads nothing until told.
    let backend = std::thread::spawn(move || {
        let mut f = std::fs::File::open(&reader_path).expect("open pipe");
        let _ = wait.recv();
        let mut all = String::new();
        f.read_to_string(&mut all).expect("read pipe");
        all
    });
    let mut gw = Gateway::start(&CONFIG.replace("PIPE", &pipe.display().to_string()));
    // About 20 KB a request: the queue holds 16 MiB of data by default.
    let per_request = 500;
    let body = traces_body(spans("s", per_request));
    let pb = [("Content-Type", "application/x-protobuf")];
    let mut accepted = 0;
    let refusal = loop {
        let r = http_request("POST", gw.http, "/v1/traces", &pb, &body).unwrap();
        if r.status != 200 {
            break r;
        }
        accepted += 1;
        assert!(accepted < 5000, "the queue never filled");
    };
    assert!(
        (accepted + 1) * body.len() > 16 << 20,
        "the queue (16 MiB, counting what is being written) took all that fits: {accepted} of {} bytes",
        body.len()
    );
    assert_eq!(refusal.status, 503, "{}", refusal.text());
    assert_eq!(refusal.header("retry-after"), Some("1"));
    assert!(refusal.text().contains("sending queue of exporter file is full"), "{}", refusal.text());
    let json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x"}]}]}]}"#;
    // Small requests still fit in what room is left, until none does.
    let mut small = 0;
    let r = loop {
        let r = http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/json")], json).unwrap();
        if r.status != 200 {
            break r;
        }
        small += 1;
        assert!(small < 1000, "the queue never filled");
    };
    assert_eq!(r.status, 503);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["code"], 14);
    let size = gw.metric("otelcol_exporter_queue_size", &[("exporter", "file")]);
    assert_eq!(gw.metric("otelcol_exporter_queue_capacity", &[("exporter", "file")]), (16 << 20) as f64);
    assert!(size <= (16 << 20) as f64 && size > ((16 << 20) - json.len() * 2) as f64, "full: {size}");

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

    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[]), (accepted * per_request + small) as f64);
    assert!(gw.metric("otelcol_receiver_refused_spans_total", &[]) >= 3.0);
    assert!(gw.metric("otelcol_exporter_enqueue_failed_spans_total", &[("exporter", "file")]) >= 3.0);

    // The backend comes back: everything taken is delivered, then switchyard stops cleanly.
    go.send(()).unwrap();
    assert!(eventually(std::time::Duration::from_secs(20), || gw
        .metric("otelcol_exporter_queue_size", &[("exporter", "file")])
        == 0.0));
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let delivered = backend.join().unwrap();
    let lines: Vec<serde_json::Value> =
        delivered.lines().map(|l| serde_json::from_str(l).expect("whole JSON lines")).collect();
    let spans: usize =
        lines.iter().map(|l| l["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().map_or(0, Vec::len)).sum();
    assert_eq!(spans, accepted * per_request + small, "every span answered with success was delivered, once");
}

#[test]
fn a_full_queue_holds_the_client_and_takes_its_data_when_room_appears() {
    let Some(python) = python_peer() else { return };
    // One request fills the queue; the destination is down, so it stays there, retried.
    let mut gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  otlp:
    endpoint: 127.0.0.1:{port:sink}
    tls:
      insecure: true
    sending_queue:
      queue_size: 1
      num_consumers: 1
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 100ms
      max_elapsed_time: 0
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [otlp]
"#,
    );
    let post = |http: u16, prefix: &str| {
        let body = traces_body(spans(prefix, 3));
        http_request("POST", http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap()
    };
    assert_eq!(post(gw.http, "first-").status, 200);
    let http = gw.http;
    let second = std::thread::spawn(move || post(http, "second-"));
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(!second.is_finished(), "the second request waits for room instead of being refused at once");
    // The destination comes up: the first request leaves the queue, the second takes its place
    // and is answered with success.
    let sink = common::sink::Sink::start_on(&python, gw.dir.path(), gw.port("sink"), &[]);
    let answer = second.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(eventually(std::time::Duration::from_secs(20), || sink.spans().len() == 6), "{:?}", sink.spans());
    assert_eq!(gw.metric("otelcol_exporter_enqueue_failed_spans_total", &[("exporter", "otlp")]), 0.0);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
