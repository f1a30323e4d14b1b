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
  file/copy: {{path: "{{dir}}/copy.jsonl"}}
connectors:
  forward:
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [file, otlp/jaeger, forward]}}
    traces/copy: {{receivers: [forward], exporters: [file/copy]}}
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
    // The connector is drawn at the end of the pipeline it takes from and the start of the one
    // it feeds, naming the other.
    assert_eq!(first.matches("data-component=\"connector:forward\"").count(), 2, "{first}");
    assert!(first.contains("to traces/copy") && first.contains("from traces"), "{first}");
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

/// Runs `switchyard tap` against `metrics_port` with `args`; its stdout lines as JSON, and stderr.
/// A tap that shows nothing runs until interrupted: it is killed after 20 s (and fails).
fn tap(metrics_port: u16, args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("tap")
        .args(args)
        .args(["--address", &format!("127.0.0.1:{metrics_port}")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watching = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        if !watching.load(std::sync::atomic::Ordering::Relaxed) {
            signal(pid, "KILL");
        }
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a JSON line ({e}): {l}")))
        .collect();
    (out.status.success(), lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn span_attribute<'a>(line: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    line["span"]["attributes"].as_array()?.iter().find(|a| a["key"] == key)?["value"]["stringValue"].as_str()
}

#[test]
fn switchyard_tap_prints_the_items_passing_a_component_while_the_sdk_sends() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{grpc}"}
processors:
  attributes/tag:
    actions: [{key: seen.by, value: switchyard, action: insert}]
exporters:
  file: {path: "{dir}/out.jsonl"}
  otlp:
    endpoint: 127.0.0.1:{http}
    tls: {insecure: true}
service:
  telemetry: {metrics: {address: "127.0.0.1:{metrics}"}}
  pipelines:
    traces: {receivers: [otlp], processors: [attributes/tag], exporters: [file, otlp]}
"#,
    );
    let summary = gw.dir.path().join("stream.json");
    let stream = python_stream(&python, gw.grpc, "tapped", 3000, 12.0, &summary);
    assert!(eventually(Duration::from_secs(10), || !span_names(&gw.path("out.jsonl")).is_empty()), "{}", gw.log());

    // What the processor lets out: the SDK's spans with the attribute it added.
    let (ok, lines, err) = tap(gw.metrics, &["attributes/tag", "--count", "5"]);
    assert!(ok, "{err}");
    assert_eq!(lines.len(), 5, "{err}");
    for line in &lines {
        assert_eq!((line["component"].as_str(), line["kind"].as_str()), (Some("attributes/tag"), Some("processor")));
        assert_eq!((line["pipeline"].as_str(), line["signal"].as_str()), (Some("traces"), Some("traces")));
        assert!(line["span"]["name"].as_str().is_some_and(|n| n.starts_with("tapped")), "{line}");
        assert_eq!(line["span"]["traceId"].as_str().map(str::len), Some(32), "hex ids: {line}");
        assert_eq!(span_attribute(line, "seen.by"), Some("switchyard"), "{line}");
        let service =
            line["resource"]["attributes"].as_array().and_then(|a| a.iter().find(|a| a["key"] == "service.name"));
        assert!(service.is_some(), "the resource comes with it: {line}");
    }
    assert!(err.contains("tapping processor attributes/tag"), "{err}");

    // `otlp` names a receiver and an exporter: before the processor, and after it.
    let (ok, lines, err) = tap(gw.metrics, &["otlp", "--limit", "10", "--count", "30"]);
    assert!(ok, "{err}");
    let by_kind = |kind: &str| lines.iter().filter(|l| l["kind"] == kind).collect::<Vec<_>>();
    let (received, exported) = (by_kind("receiver"), by_kind("exporter"));
    assert!(!received.is_empty() && !exported.is_empty(), "both components: {err}");
    assert!(received.iter().all(|l| span_attribute(l, "seen.by").is_none()), "the receiver shows what came in");
    assert!(exported.iter().all(|l| span_attribute(l, "seen.by") == Some("switchyard")), "the exporter what goes out");
    let (ok, lines, _) = tap(gw.metrics, &["otlp", "--kind", "exporter", "--count", "3"]);
    assert!(ok && lines.iter().all(|l| l["kind"] == "exporter"));

    // Clear refusals: a component that does not run, a kind that does not exist.
    let (ok, _, err) = tap(gw.metrics, &["jaeger"]);
    assert!(!ok && err.contains("no running component \"jaeger\"") && err.contains("exporter file"), "{err}");
    let (ok, _, err) = tap(gw.metrics, &["otlp", "--kind", "sink"]);
    assert!(!ok && err.contains("HTTP 400") && err.contains("receiver, processor, exporter"), "{err}");
    let _ = stream_summary(stream, &summary);
}
