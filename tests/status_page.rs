//! The status page in a real browser: headless Chromium (Debian's `chromium`) loads it from the
//! self-metrics port while the real Python SDK sends spans. The test takes a screenshot, and
//! checks through the DOM that the drawn graph is the configuration's (the pipeline, its
//! receiver, processor and both exporters), that the counts move between two loads, that the
//! exporter whose destination is down is shown failing with the cause, and that the
//! configuration shown has its secrets redacted.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn chromium(chromium: &Path, profile: &Path, args: &[&str]) -> String {
    let out = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of attribute `attr` on the element whose `data-component` is `component`.
fn attribute(dom: &str, component: &str, attr: &str) -> Option<String> {
    let at = dom.find(&format!("data-component=\"{component}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("{attr}=\"");
    let from = tag.find(&key)? + key.len();
    Some(tag[from..from + tag[from..].find('"')?].to_string())
}

#[test]
fn the_status_page_draws_the_running_graph_and_its_counts_move() {
    let Some(chromium_bin) = peer(Path::new("/usr/bin/chromium"), "Debian's chromium (headless browser)") else {
        return;
    };
    let Some(python) = python_peer() else { return };
    let dead = free_port();
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{{grpc}}"}}
processors:
  batch: {{timeout: 100ms}}
exporters:
  file: {{path: "{{dir}}/out.jsonl"}}
  otlp/jaeger:
    endpoint: 127.0.0.1:{dead}
    tls: {{insecure: true}}
    headers: {{api-key: s3cr-status-page-key}}
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file, otlp/jaeger]}}
"#
    ));
    let summary = gw.dir.path().join("stream.json");
    let stream = python_stream(&python, gw.grpc, "live", 3000, 8.0, &summary);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/status", gw.metrics);
    assert!(eventually(Duration::from_secs(10), || !span_names(&gw.path("out.jsonl")).is_empty()), "{}", gw.log());

    let load = || chromium(&chromium_bin, profile.path(), &["--virtual-time-budget=3000", "--dump-dom", &url]);
    let first = load();
    for component in ["receiver:otlp", "processor:batch", "exporter:file", "exporter:otlp/jaeger"] {
        assert!(first.contains(&format!("data-component=\"{component}\"")), "{component} is drawn:\n{first}");
    }
    assert!(first.contains("data-pipeline=\"traces\""), "{first}");
    let accepted = |dom: &str| attribute(dom, "receiver:otlp", "data-accepted").and_then(|v| v.parse::<f64>().ok());
    let sent = |dom: &str| attribute(dom, "exporter:file", "data-sent").and_then(|v| v.parse::<f64>().ok());
    let (a1, s1) = (accepted(&first).expect("accepted count"), sent(&first).expect("sent count"));
    std::thread::sleep(Duration::from_millis(1500));
    let second = load();
    let (a2, s2) = (accepted(&second).unwrap_or(0.0), sent(&second).unwrap_or(0.0));
    assert!(a2 > a1 && s2 > s1, "the counts move while the SDK sends: accepted {a1} -> {a2}, sent {s1} -> {s2}");
    // The dead destination: failing, with its cause; the secret header never shown.
    let jaeger = second.split("data-component=\"exporter:otlp/jaeger\"").nth(1).unwrap_or_default();
    let jaeger = &jaeger[..jaeger.find("data-component=").unwrap_or(jaeger.len())];
    assert!(jaeger.contains("state: failing") && jaeger.contains("client error (Connect)"), "{jaeger}");
    assert!(second.contains("Configuration in force"), "{second}");
    assert!(second.contains("OtlpGrpcConfig"), "the configuration is shown: {second}");
    assert!(!second.contains("s3cr"), "secrets are redacted");

    let shot = gw.dir.path().join("status.png");
    chromium(
        &chromium_bin,
        profile.path(),
        &["--virtual-time-budget=3000", "--window-size=1280,900", &format!("--screenshot={}", shot.display()), &url],
    );
    let png = std::fs::read(&shot).expect("a screenshot was taken");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture: {} bytes", png.len());
    let _ = stream_summary(stream, &summary);
}

#[test]
fn switchyard_top_shows_rates_of_a_running_switchyard() {
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{http}"}
exporters:
  file: {path: "{dir}/out.jsonl"}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], exporters: [file]}
"#,
    );
    let http = gw.http;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sending = stop.clone();
    let sender = std::thread::spawn(move || {
        let body = traces_body(spans("top-", 10));
        while !sending.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = http_request("POST", http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let address = format!("127.0.0.1:{}", gw.metrics);
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["top", "--address", &address, "--samples", "2"])
        .output()
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let receiver = text.lines().rfind(|l| l.trim_start().starts_with("receiver otlp")).unwrap_or_default();
    let rate: f64 = receiver.split_whitespace().nth(2).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert!(rate > 0.0, "spans per second into the receiver:\n{text}");
    assert!(text.contains("exporter file"), "{text}");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["top", "--address", "127.0.0.1:1", "--samples", "1"])
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach switchyard"));
}
