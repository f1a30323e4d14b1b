//! OTLP/gRPC status codes as an independent client (Python grpcio) sees them: a truncated
//! message is INVALID_ARGUMENT, an over-size one RESOURCE_EXHAUSTED (not retried by clients),
//! a gzip bomb is stopped, a signal with no pipeline is UNIMPLEMENTED, and good data is OK.

mod common;

use common::*;
use std::process::Command;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 1
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
      exporters: [file]
"#;

fn call(python: &std::path::Path, gw: &Gateway, signal: &str, body: &[u8], gzip: bool) -> serde_json::Value {
    let file = gw.path(&format!("body-{}.bin", body.len()));
    std::fs::write(&file, body).unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/peers/python/grpc_raw.py"))
        .args(["--target", &format!("127.0.0.1:{}", gw.grpc), "--signal", signal, "--body"])
        .arg(&file);
    if gzip {
        cmd.arg("--gzip");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "grpc_raw.py failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn request(n: usize, name_len: usize) -> Vec<u8> {
    traces_body((0..n).map(|i| span(&format!("{i}-{}", "x".repeat(name_len)), vec![1; 16])).collect())
}

#[test]
fn grpc_errors_use_the_codes_clients_act_on() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(CONFIG);

    let ok = call(&python, &gw, "traces", &request(3, 4), false);
    assert_eq!(ok["code"], "OK", "{ok}");
    let ok = call(&python, &gw, "traces", &request(2, 4), true);
    assert_eq!(ok["code"], "OK", "gzip: {ok}");

    let mut truncated = request(3, 4);
    truncated.truncate(truncated.len() - 3);
    let r = call(&python, &gw, "traces", &truncated, false);
    assert_eq!(r["code"], "INVALID_ARGUMENT", "{r}");
    assert!(r["details"].as_str().unwrap().starts_with("cannot decode OTLP/protobuf traces request"), "{r}");

    let bad_id = traces_body(vec![span("short-id", vec![1; 8])]);
    let r = call(&python, &gw, "traces", &bad_id, false);
    assert_eq!(r["code"], "INVALID_ARGUMENT");
    assert_eq!(r["details"], "invalid trace id length: 8 bytes, expected 16");
    assert_eq!(
        r["bad_request"],
        serde_json::json!(["invalid trace id length: 8 bytes, expected 16"]),
        "BadRequest detail: {r}"
    );

    let big = request(2000, 1000);
    assert!(big.len() > 1024 * 1024);
    let r = call(&python, &gw, "traces", &big, false);
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
    assert!(r["retry_delay_s"].is_null(), "no RetryInfo: clients must not retry");

    // A gzip bomb: grpcio compresses 16 MiB of zeros to a few KiB; switchyard stops
    // decompressing at the 1 MiB limit.
    let r = call(&python, &gw, "traces", &vec![0u8; 16 << 20], true);
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
    assert!(r["details"].as_str().unwrap_or_default().contains("size limit"), "{r}");

    let r = call(&python, &gw, "logs", &request(1, 1), false);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    assert_eq!(r["details"], "receiver otlp is in no logs pipeline");

    let ok = call(&python, &gw, "traces", &request(1, 4), false);
    assert_eq!(ok["code"], "OK");
    assert!(eventually(std::time::Duration::from_secs(10), || gw
        .metric("otelcol_exporter_sent_spans_total", &[("exporter", "file")])
        == 6.0));
    assert_eq!(gw.metric("otelcol_receiver_accepted_spans_total", &[("transport", "grpc")]), 6.0);
    let invalid =
        |code: &str| gw.metric("switchyard_receiver_invalid_requests_total", &[("transport", "grpc"), ("code", code)]);
    assert_eq!(invalid("INVALID_ARGUMENT"), 2.0);
    assert_eq!(invalid("UNIMPLEMENTED"), 1.0);
    assert_eq!(invalid("RESOURCE_EXHAUSTED"), 2.0, "over-size and bomb");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
