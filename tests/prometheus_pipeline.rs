//! Prometheus in and out with the real peers from Debian: switchyard scrapes node exporter 1.5
//! (its /proc collectors plus a fixed histogram, summary, counter and gauge served through the
//! textfile collector) and remote-writes into VictoriaMetrics 1.79; what VictoriaMetrics holds
//! must be what node exporter served: the same series (names and labels, with job and
//! instance), and the same values. Node exporter's values move from one read to the next, so
//! switchyard scrapes it through a recording hop in the test that fetches node exporter's answer
//! and passes it on whole: what was served at each scrape is then known exactly.

mod common;

use common::prom::{NodeExporter, VictoriaMetrics};
use common::*;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Serves node exporter's current answer for every request, and records each body served.
fn recording_hop(node_port: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(Mutex::new(Vec::new()));
    let record = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let Ok(r) = http_request("GET", node_port, "/metrics", &[], b"") else { continue };
            let content_type = r.header("content-type").unwrap_or("text/plain").to_string();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                r.body.len()
            );
            record.lock().unwrap().push(String::from_utf8(r.body.clone()).unwrap());
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&r.body));
        }
    });
    (port, served)
}

type Labels = BTreeMap<String, String>;

/// Reads node exporter's text exposition independently of switchyard's parser: every sample as
/// its labels (with `__name__`) and value. Node exporter writes one sample per line, label
/// values with `\\`, `\"` and `\n` escapes.
fn samples(text: &str) -> HashMap<Labels, f64> {
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let mut labels = Labels::new();
        let name = match series.split_once('{') {
            None => series.to_string(),
            Some((name, rest)) => {
                let mut chars = rest.chars().peekable();
                loop {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if key.is_empty() || key == "}" {
                        break;
                    }
                    assert_eq!(chars.next(), Some('"'));
                    let mut v = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => v.push('\n'),
                                Some(other) => v.push(other),
                                None => {}
                            },
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    labels.insert(key.trim_start_matches(',').to_string(), v);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                name.to_string()
            }
        };
        labels.insert("__name__".into(), name);
        out.insert(labels, value.parse::<f64>().unwrap_or_else(|_| panic!("value in {line}")));
    }
    out
}

#[test]
fn node_exporter_series_arrive_in_victoriametrics_as_served() {
    let Some(node) = NodeExporter::start() else { return };
    let Some(vm) = VictoriaMetrics::start() else { return };
    let (hop, served) = recording_hop(node.port());
    let target = format!("127.0.0.1:{hop}");
    let gw = Gateway::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: node
          scrape_interval: 2s
          static_configs:
            - targets: ["{target}"]
exporters:
  prometheusremotewrite:
    endpoint: {write}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [prometheusremotewrite]
"#,
        write = vm.write_url(),
    ));
    let arrived = eventually(Duration::from_secs(20), || {
        vm.export(r#"{job="node",__name__="up"}"#).iter().any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty()))
    });
    assert!(arrived, "no up series in VictoriaMetrics:\n{}\n{}", gw.log(), vm.log());
    let first = served.lock().unwrap()[0].clone();
    let served_samples = samples(&first);
    let stored = vm.export(r#"{job="node"}"#);
    let mut by_labels: HashMap<Labels, Vec<f64>> = HashMap::new();
    for s in &stored {
        let labels: Labels = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let values = s["values"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
        by_labels.insert(labels, values);
    }
    let instance = target.clone();
    assert!(served_samples.len() > 150, "node exporter served {} samples", served_samples.len());
    for (labels, value) in &served_samples {
        let mut want = labels.clone();
        want.insert("job".into(), "node".into());
        want.insert("instance".into(), instance.clone());
        let values = by_labels.get(&want).unwrap_or_else(|| {
            panic!("{want:?} is not in VictoriaMetrics; it has e.g. {:?}", by_labels.keys().take(3).collect::<Vec<_>>())
        });
        // The first scrape's value is among the samples stored for the series. VictoriaMetrics
        // keeps about 15 significant digits (2^64 comes back one ulp off), hence the tolerance.
        let same = |v: &f64| v == value || (v - value).abs() <= value.abs() * 1e-14;
        assert!(values.iter().any(same), "{want:?}: served {value}, stored {values:?}");
    }
    // The fixture's histogram, summary, counter and gauge, exactly.
    for (name, labels, value) in [
        ("switchyard_fixture_request_duration_seconds_bucket", vec![("path", "/a"), ("le", "0.5")], 5.0),
        ("switchyard_fixture_request_duration_seconds_bucket", vec![("path", "/a"), ("le", "+Inf")], 7.0),
        ("switchyard_fixture_request_duration_seconds_sum", vec![("path", "/a")], 4.25),
        ("switchyard_fixture_rpc_duration_seconds", vec![("quantile", "0.99")], 0.9),
        ("switchyard_fixture_rpc_duration_seconds_count", vec![], 40.0),
        ("switchyard_fixture_events_total", vec![("kind", "b \"quoted\"")], 7.0),
        ("switchyard_fixture_temperature_celsius", vec![], -3.5),
    ] {
        let mut want: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        want.insert("__name__".into(), name.into());
        want.insert("job".into(), "node".into());
        want.insert("instance".into(), instance.clone());
        assert_eq!(by_labels.get(&want).and_then(|v| v.last()), Some(&value), "{want:?}");
    }
    // Prometheus's own per-target series come along.
    for name in [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        assert!(by_labels.keys().any(|l| l["__name__"] == name), "{name} missing");
    }
    let up: Labels = [("__name__", "up"), ("job", "node"), ("instance", instance.as_str())]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(by_labels[&up].last(), Some(&1.0));
    let scraped = served_samples.len() as f64;
    let stored_count: Labels =
        [("__name__", "scrape_samples_scraped"), ("job", "node"), ("instance", instance.as_str())]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let counts = &by_labels[&stored_count];
    assert_eq!(counts.first(), Some(&scraped), "scrape_samples_scraped of the first scrape");
}

/// Every series an instant query returns, as its labels (with `__name__`) and value.
fn instant(prom: &common::prom::Prometheus, promql: &str) -> HashMap<Labels, f64> {
    let answer = prom.query(promql);
    assert_eq!(answer["status"], "success", "{promql}: {answer}");
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels: Labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (labels, r["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn prometheus_remote_writes_through_switchyard_into_prometheus_and_the_series_are_the_same() {
    use common::prom::Prometheus;
    let Some(node) = NodeExporter::start() else { return };
    // B: the destination, Prometheus's own remote-write receiver.
    let Some(destination) = Prometheus::start("global:\n  scrape_interval: 1h\n") else { return };
    let gw = Gateway::start(&format!(
        r#"
receivers:
  prometheusremotewrite:
    endpoint: 127.0.0.1:{{port:rw}}
exporters:
  prometheusremotewrite:
    endpoint: {write}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    metrics:
      receivers: [prometheusremotewrite]
      exporters: [prometheusremotewrite]
"#,
        write = destination.remote_write_url(),
    ));
    // A: scrapes node exporter and remote-writes everything to switchyard.
    let Some(source) = Prometheus::start(&format!(
        r#"
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["{target}"]
remote_write:
  - url: http://127.0.0.1:{rw}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
"#,
        target = node.target(),
        rw = gw.port("rw"),
    )) else {
        return;
    };
    // The same series (names and labels) at both ends; target_info is the resource switchyard
    // carried along (PROTOCOLS.md §4.7) and only at the destination.
    let series = |p: &Prometheus| -> Vec<Labels> {
        let mut v: Vec<Labels> =
            instant(p, r#"{job="node"}"#).into_keys().filter(|l| l["__name__"] != "target_info").collect();
        v.sort();
        v
    };
    let mut at_source = Vec::new();
    let same = eventually(Duration::from_secs(40), || {
        at_source = series(&source);
        !at_source.is_empty() && series(&destination) == at_source
    });
    assert!(
        same,
        "source has {} series, destination {}; missing e.g. {:?}\n{}",
        at_source.len(),
        series(&destination).len(),
        at_source.iter().find(|l| !series(&destination).contains(l)),
        gw.log()
    );
    assert!(at_source.len() > 150, "{} series", at_source.len());
    // Fixed values, and a histogram that still works as one.
    for promql in [
        r#"switchyard_fixture_temperature_celsius"#,
        r#"switchyard_fixture_events_total{kind="a"}"#,
        r#"switchyard_fixture_request_duration_seconds_bucket{le="0.5"}"#,
        r#"histogram_quantile(0.5, switchyard_fixture_request_duration_seconds_bucket)"#,
        r#"switchyard_fixture_rpc_duration_seconds{quantile="0.99"}"#,
        r#"node_memory_MemTotal_bytes"#,
    ] {
        let values = |p: &Prometheus| instant(p, promql).into_values().collect::<Vec<f64>>();
        assert_eq!(values(&destination), values(&source), "{promql}");
        assert_eq!(values(&source).len(), 1, "{promql}");
    }
    assert!(gw.metric("otelcol_receiver_accepted_metric_points_total", &[("receiver", "prometheusremotewrite")]) > 0.0);
}

#[test]
fn prometheus_scrapes_what_the_python_sdk_recorded_from_the_prometheus_exporter() {
    use common::prom::Prometheus;
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
exporters:
  prometheus:
    endpoint: 127.0.0.1:{port:prom}
    const_labels:
      gateway: switchyard
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [prometheus]
"#,
    );
    let summary = gw.path("sdk.json");
    let out = std::process::Command::new(&python)
        .arg(repo().join("tests/peers/python/otel_send.py"))
        .args([
            "--signal",
            "metrics",
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("http://127.0.0.1:{}", gw.grpc),
            "--out",
        ])
        .arg(&summary)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recorded: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let Some(prom) = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
        gw.port("prom")
    )) else {
        return;
    };
    let has_data = eventually(Duration::from_secs(30), || !instant(&prom, "py_requests_total").is_empty());
    assert!(has_data, "Prometheus never got py_requests_total:\n{}", prom.log());

    // What the SDK recorded, point by point, as PromQL answers it.
    let metric =
        |name: &str| recorded["metrics"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
    let attr = |p: &serde_json::Value, k: &str| p["attributes"][k].to_string().trim_matches('"').to_string();
    for p in metric("py.requests")["points"].as_array().unwrap() {
        let q = format!(r#"py_requests_total{{route="{}",ok="{}"}}"#, attr(p, "route"), attr(p, "ok"));
        let got: Vec<f64> = instant(&prom, &q).into_values().collect();
        assert_eq!(got, vec![p["value"].as_f64().unwrap()], "{q}");
        let series = instant(&prom, &q).into_keys().next().unwrap();
        assert_eq!(series["gateway"], "switchyard", "const_labels");
        assert_eq!(series["job"], "py-sender", "service.name is the job");
        assert_eq!(series["otel_scope_name"], "switchyard.peer.python");
    }
    for p in metric("py.inflight")["points"].as_array().unwrap() {
        let q = format!(r#"py_inflight{{pool="{}"}}"#, attr(p, "pool"));
        assert_eq!(instant(&prom, &q).into_values().collect::<Vec<_>>(), vec![p["value"].as_f64().unwrap()], "{q}");
    }
    for p in metric("py.gauge")["points"].as_array().unwrap() {
        let q = format!(r#"py_gauge_celsius{{room="{}"}}"#, attr(p, "room"));
        assert_eq!(instant(&prom, &q).into_values().collect::<Vec<_>>(), vec![p["value"].as_f64().unwrap()], "{q}");
    }
    let h = &metric("py.latency")["points"][0];
    let one = |q: &str| instant(&prom, q).into_values().collect::<Vec<f64>>();
    assert_eq!(one("py_latency_milliseconds_count"), vec![h["count"].as_f64().unwrap()]);
    assert_eq!(one("py_latency_milliseconds_sum"), vec![h["sum"].as_f64().unwrap()]);
    let mut cumulative = 0;
    for (i, bound) in h["explicit_bounds"].as_array().unwrap().iter().enumerate() {
        cumulative += h["bucket_counts"][i].as_u64().unwrap();
        let le = bound.as_f64().unwrap();
        let q = format!(r#"py_latency_milliseconds_bucket{{le="{le}"}}"#);
        assert_eq!(one(&q), vec![cumulative as f64], "{q}");
    }
    assert_eq!(one(r#"py_latency_milliseconds_bucket{le="+Inf"}"#), vec![h["count"].as_f64().unwrap()]);
    // The resource travels as target_info.
    let info = instant(&prom, "target_info");
    assert!(info.keys().any(|l| l.get("telemetry_sdk_language").map(String::as_str) == Some("python")), "{info:?}");
}
