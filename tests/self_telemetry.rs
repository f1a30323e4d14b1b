//! Self-telemetry in the collector's `service.telemetry.metrics.readers` form, as a user sees it:
//! one switchyard pushes its own metrics as OTLP (`http/protobuf` and `grpc` periodic readers) to
//! a second switchyard, whose `file` exporters show what arrived; pull readers and the older
//! `address` serve the Prometheus text; a push that fails is logged without stopping anything;
//! invalid readers are refused with file:line:column and the key path.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// A switchyard that takes OTLP metrics over HTTP on `{port:h}` and over gRPC on `{port:g}`,
/// each into its own file.
const RECEIVER: &str = r#"
receivers:
  otlp/h:
    protocols:
      http:
        endpoint: 127.0.0.1:{port:h}
  otlp/g:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port:g}
exporters:
  file/h:
    path: {dir}/http.jsonl
    flush_interval: 100ms
  file/g:
    path: {dir}/grpc.jsonl
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    metrics/h:
      receivers: [otlp/h]
      exporters: [file/h]
    metrics/g:
      receivers: [otlp/g]
      exporters: [file/g]
"#;

/// Every data point of metric `name` in the OTLP/JSON lines of `path`, with its resource.
fn points(path: &Path, name: &str) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for line in json_lines(path) {
        for rm in line["resourceMetrics"].as_array().into_iter().flatten() {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten().filter(|m| m["name"] == name) {
                    let data =
                        ["sum", "gauge", "histogram"].iter().find_map(|k| m.get(*k)).cloned().unwrap_or_default();
                    for p in data["dataPoints"].as_array().into_iter().flatten() {
                        let mut p = p.clone();
                        p["_metric"] = m.clone();
                        out.push((rm["resource"].clone(), p));
                    }
                }
            }
        }
    }
    out
}

fn attr<'a>(attrs: &'a Value, key: &str) -> Option<&'a str> {
    attrs.as_array()?.iter().find(|a| a["key"] == key)?["value"]["stringValue"].as_str()
}

/// Whether `path` holds `otelcol_receiver_accepted_spans{receiver=otlp, transport=http} == n`
/// pushed by switchyard.
fn has_accepted_spans(path: &Path, n: f64) -> bool {
    points(path, "otelcol_receiver_accepted_spans").iter().any(|(resource, p)| {
        attr(&p["attributes"], "receiver") == Some("otlp")
            && attr(&p["attributes"], "transport") == Some("http")
            && p["asDouble"].as_f64() == Some(n)
            && attr(&resource["attributes"], "service.name") == Some("switchyard")
    })
}

#[test]
fn periodic_readers_push_over_http_and_grpc_and_pull_readers_serve_prometheus() {
    let receiver = Gateway::start(RECEIVER);
    let sender = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
exporters:
  debug:
service:
  telemetry:
    metrics:
      level: detailed
      address: 127.0.0.1:{{metrics}}
      readers:
        - periodic:
            interval: 200
            exporter:
              otlp:
                protocol: http/protobuf
                endpoint: http://127.0.0.1:{h}/v1/metrics
                compression: gzip
                headers:
                  - name: x-api-key
                    value: secret-value
        - periodic:
            interval: 200
            timeout: 1000
            exporter:
              otlp:
                protocol: grpc
                endpoint: 127.0.0.1:{g}
                insecure: true
                headers_list: "x-team=core"
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {{port:prom}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#,
        h = receiver.port("h"),
        g = receiver.port("g"),
    ));
    post_spans(&sender, "s", 3);

    for file in ["http.jsonl", "grpc.jsonl"] {
        let path = receiver.path(file);
        assert!(
            eventually(Duration::from_secs(10), || has_accepted_spans(&path, 3.0)),
            "{file}: no otelcol_receiver_accepted_spans = 3 arrived\n{:?}\nsender log:\n{}",
            std::fs::read_to_string(&path).unwrap_or_default().lines().last(),
            sender.log()
        );
        // The collector's names for OTLP: no `_total`, and units instead of unit suffixes.
        let all = std::fs::read_to_string(&path).unwrap();
        assert!(!all.contains("_total\""), "{file} holds a _total name");
        let (resource, uptime) = points(&path, "otelcol_process_uptime").pop().expect("uptime");
        assert_eq!(uptime["_metric"]["unit"], "s");
        assert_eq!(uptime["_metric"]["sum"]["isMonotonic"], true);
        assert!(attr(&resource["attributes"], "service.version").is_some());
        assert!(attr(&resource["attributes"], "service.instance.id").is_some());
        let (_, rss) = points(&path, "otelcol_process_memory_rss").pop().expect("rss");
        assert_eq!(rss["_metric"]["unit"], "By");
        assert!(rss["asDouble"].as_f64().unwrap() > 0.0);
    }
    assert!(!sender.log().contains("secret-value"), "a header value was logged");

    // The pull reader and the older `address` both serve the Prometheus text.
    for port in [sender.port("prom"), sender.metrics] {
        let text = http_request("GET", port, "/metrics", &[], b"").unwrap().text();
        assert_eq!(
            metric_value(
                &text,
                "otelcol_receiver_accepted_spans_total",
                &[("receiver", "otlp"), ("transport", "http")]
            ),
            3.0,
            "port {port}:\n{text}"
        );
    }
    assert_eq!(http_request("GET", sender.port("prom"), "/other", &[], b"").unwrap().status, 404);
    // Both protocols delivered, as the receiving side counts them.
    for (receiver_id, transport) in [("otlp/h", "http"), ("otlp/g", "grpc")] {
        assert!(
            receiver.metric(
                "otelcol_receiver_accepted_metric_points_total",
                &[("receiver", receiver_id), ("transport", transport)]
            ) > 0.0
        );
    }
}

#[test]
fn a_periodic_reader_pushes_once_more_at_shutdown() {
    let receiver = Gateway::start(RECEIVER);
    let mut sender = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
exporters:
  debug:
service:
  telemetry:
    metrics:
      readers:
        - periodic:
            exporter:
              otlp:
                protocol: http/protobuf
                endpoint: http://127.0.0.1:{h}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#,
        h = receiver.port("h"),
    ));
    post_spans(&sender, "s", 2);
    // The default interval is a minute: nothing arrives before the shutdown.
    std::thread::sleep(Duration::from_millis(300));
    assert!(points(&receiver.path("http.jsonl"), "otelcol_receiver_accepted_spans").is_empty());
    let (status, log) = sender.stop();
    assert!(status.success(), "{log}");
    let path = receiver.path("http.jsonl");
    assert!(eventually(Duration::from_secs(5), || has_accepted_spans(&path, 2.0)), "no final push:\n{log}");
}

#[test]
fn a_failing_push_is_logged_once_per_interval_and_level_none_runs_no_reader() {
    let dead = free_port();
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
exporters:
  debug:
service:
  telemetry:
    metrics:
      readers:
        - periodic:
            interval: 100
            exporter:
              otlp:
                protocol: grpc
                endpoint: http://127.0.0.1:{dead}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#
    ));
    assert!(eventually(Duration::from_secs(5), || gw.log().contains("cannot push self-metrics")), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(gw.log().matches("cannot push self-metrics").count(), 1, "{}", gw.log());
    post_spans(&gw, "still-running", 1);

    let off = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  debug:
service:
  telemetry:
    metrics:
      level: none
      address: 127.0.0.1:{metrics}
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {port:prom}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#,
    );
    for port in [off.port("prom"), off.metrics] {
        assert!(http_request("GET", port, "/metrics", &[], b"").is_err(), "port {port} serves with level: none");
    }
}

/// Validates `telemetry` (the lines under `service.telemetry.metrics:`) in a file named
/// `bad.yaml`; returns the exit code and stderr.
fn validate(metrics: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let yaml = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\nservice:\n  telemetry:\n    metrics:\n{metrics}  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
    );
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), "DIR");
    (out.status.code().unwrap_or(-1), err)
}

const PERIODIC: &str = "      readers:\n        - periodic:\n";

#[test]
fn invalid_readers_are_refused_with_position_and_key_path() {
    // Line 10 is the first line under `metrics:`.
    let cases: &[(String, &str)] = &[
        (
            format!(
                "{PERIODIC}            exporter:\n              otlp:\n                protocol: http/json\n                endpoint: http://c:4318\n"
            ),
            "DIR/bad.yaml:14:27: service.telemetry.metrics.readers[0].periodic.exporter.otlp.protocol: unknown value \"http/json\" (expected one of: http/protobuf, grpc)",
        ),
        (
            format!(
                "{PERIODIC}            exporter:\n              otlp:\n                protocol: grpc\n                endpoint: ftp://c:4317\n"
            ),
            "DIR/bad.yaml:15:27: service.telemetry.metrics.readers[0].periodic.exporter.otlp.endpoint: invalid endpoint \"ftp://c:4317\": unsupported scheme \"ftp\" (use http:// or https://)",
        ),
        (
            format!(
                "{PERIODIC}            interval: 0\n            exporter:\n              otlp:\n                protocol: grpc\n                endpoint: http://c:4317\n"
            ),
            "DIR/bad.yaml:12:23: service.telemetry.metrics.readers[0].periodic.interval: must be greater than 0 (milliseconds)",
        ),
        (
            format!("{PERIODIC}            exporter:\n              otlp:\n                endpoint: http://c:4317\n"),
            "DIR/bad.yaml:14:17: service.telemetry.metrics.readers[0].periodic.exporter.otlp: missing required key \"protocol\"",
        ),
        (
            "      readers:\n        - pull:\n            exporter:\n              prometheus:\n                host: localhost\n                prot: 8888\n".into(),
            "DIR/bad.yaml:15:17: service.telemetry.metrics.readers[0].pull.exporter.prometheus.prot: unknown key \"prot\"; did you mean \"port\"?",
        ),
        (
            "      readers: []\n".into(),
            "DIR/bad.yaml:10:16: service.telemetry.metrics.readers: at least one reader is needed while metrics.level is not none (set level: none to turn self-metrics off)",
        ),
    ];
    for (metrics, expected) in cases {
        let (code, err) = validate(metrics);
        assert_eq!(code, 2, "{metrics}\n{err}");
        assert!(err.contains(expected), "expected\n{expected}\nin\n{err}");
    }
    let (code, err) = validate(&format!(
        "      level: detailed\n{PERIODIC}            interval: 250\n            timeout: 100\n            exporter:\n              otlp:\n                protocol: http/protobuf\n                endpoint: https://vendor.example/otlp/v1/metrics\n                headers:\n                  - name: api-key\n                    value: k\n                compression: gzip\n                timeout: 5000\n                temporality_preference: cumulative\n        - pull:\n            exporter:\n              prometheus:\n                host: 0.0.0.0\n                port: 8888\n                without_scope_info: true\n                with_resource_constant_labels:\n                  included: []\n"
    ));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_reload_moves_the_readers() {
    let mut gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  debug:
service:
  telemetry:
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {port:a}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"#,
    );
    let (a, b) = (gw.port("a"), free_port());
    assert_eq!(http_request("GET", a, "/metrics", &[], b"").unwrap().status, 200);
    let config = gw.path("config.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&format!("port: {a}"), &format!("port: {b}"))).unwrap();
    signal(gw.pid(), "HUP");
    assert!(
        eventually(Duration::from_secs(10), || http_request("GET", b, "/metrics", &[], b"")
            .is_ok_and(|r| r.text().contains("otelcol_process_uptime_seconds_total"))),
        "{}",
        gw.log()
    );
    assert!(http_request("GET", a, "/metrics", &[], b"").is_err(), "the old reader still serves");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
