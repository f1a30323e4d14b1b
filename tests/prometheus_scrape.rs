//! The real Prometheus (2.42, Debian) scrapes switchyard's self-metrics: the accepted and sent
//! counters it stores equal the items the test sent, and `promtool check metrics` accepts the
//! exposition.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn logs(n: usize) -> Vec<u8> {
    let log_records = (0..n).map(|i| LogRecord { severity_text: format!("l{i}"), ..Default::default() }).collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The value Prometheus returns for an instant query, if any.
fn query(port: u16, q: &str) -> Option<f64> {
    let r = http_request("GET", port, &format!("/api/v1/query?query={q}"), &[], b"").ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_reads_the_counters_the_test_caused() {
    let Some(prometheus) = peer(Path::new("/usr/bin/prometheus"), "Prometheus (Debian package prometheus)") else {
        return;
    };
    let Some(promtool) = peer(Path::new("/usr/bin/promtool"), "promtool (Debian package prometheus)") else {
        return;
    };
    let mut gw = Gateway::start(FILE_PIPELINE);
    for n in [10, 20, 7] {
        let r = http_request(
            "POST",
            gw.http,
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &traces_body(spans("s", n)),
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    let r = http_request("POST", gw.http, "/v1/logs", &[("Content-Type", "application/x-protobuf")], &logs(5)).unwrap();
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(10), || gw.metric("otelcol_exporter_sent_spans_total", &[]) == 37.0));

    // promtool lints the exposition exactly as served.
    let exposition = http_request("GET", gw.metrics, "/metrics", &[], b"").unwrap().body;
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&exposition).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let prom_port = free_port();
    let config = gw.path("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n", gw.metrics),
    )
    .unwrap();
    let mut prom = Command::new(&prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", gw.path("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(gw.path("prometheus.log")).unwrap())
        .spawn()
        .unwrap();
    let accepted = "otelcol_receiver_accepted_spans_total";
    let seen = eventually(Duration::from_secs(60), || query(prom_port, accepted) == Some(37.0));
    let sent = query(prom_port, "otelcol_exporter_sent_spans_total");
    let logs_accepted = query(prom_port, "otelcol_receiver_accepted_log_records_total");
    let labels = http_request("GET", prom_port, &format!("/api/v1/query?query={accepted}"), &[], b"")
        .map(|r| r.text())
        .unwrap_or_default();
    let _ = prom.kill();
    let _ = prom.wait();
    let prom_log = std::fs::read_to_string(gw.path("prometheus.log")).unwrap_or_default();
    assert!(seen, "Prometheus never stored {accepted} = 37; last answer {labels}\n{prom_log}");
    assert_eq!(sent, Some(37.0));
    assert_eq!(logs_accepted, Some(5.0));
    assert!(labels.contains("\"receiver\":\"otlp\"") && labels.contains("\"transport\":\"http\""), "{labels}");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
