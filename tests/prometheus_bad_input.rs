//! Bad input to the Prometheus receivers. Scraping: malformed exposition lines, duplicate labels,
//! invalid UTF-8, a body over `body_size_limit` fail the scrape (`up` = 0, a warning naming the
//! problem), while NaN and ±Inf are values like any other. Remote write: corrupt snappy, a
//! non-protobuf body, a series without a name (400), a 2.0 request to a 1.0-only receiver and a
//! wrong encoding (415). Remote Write 2.0 has no sender in the package registries (Prometheus
//! 2.42 speaks 1.0): switchyard's own 2.0 exporter sends to its own receiver, and a 2.0 request
//! is also built here from proto/prometheus/write_v2.proto.

mod common;

use common::*;
use prost::Message;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;
use switchyard::proto::{prometheus as v1, prometheus_v2 as v2};

/// Serves a fixed exposition per path (`text/plain; version=0.0.4`).
fn targets(bodies: HashMap<&'static str, Vec<u8>>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let path = first.split(' ').nth(1).unwrap_or("/").to_string();
            let body = bodies.get(path.as_str()).cloned().unwrap_or_default();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&body));
        }
    });
    port
}

/// The last `up` value exported for each job.
fn up_by_job(path: &std::path::Path) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in json_lines(path) {
        for rm in line["resourceMetrics"].as_array().cloned().unwrap_or_default() {
            let job = rm["resource"]["attributes"]
                .as_array()
                .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
                .and_then(|kv| kv["value"]["stringValue"].as_str())
                .unwrap_or("")
                .to_string();
            for sm in rm["scopeMetrics"].as_array().cloned().unwrap_or_default() {
                for m in sm["metrics"].as_array().cloned().unwrap_or_default() {
                    if m["name"] == "up"
                        && let Some(v) = m["gauge"]["dataPoints"][0]["asDouble"].as_f64()
                    {
                        out.insert(job.clone(), v);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn a_bad_exposition_fails_its_scrape_with_up_0_and_special_values_are_values() {
    let good = b"# TYPE g gauge\ng 1\n".to_vec();
    let port = targets(HashMap::from([
        ("/malformed", b"# TYPE a gauge\na{x=\"1\" 2\n".to_vec()),
        ("/duplicate", b"a{x=\"1\",x=\"2\"} 2\n".to_vec()),
        ("/utf8", b"a{x=\"\xff\xfe\"} 2\n".to_vec()),
        ("/large", format!("# TYPE big gauge\n{}", "big{i=\"0123456789\"} 1\n".repeat(200)).into_bytes()),
        ("/special", b"nan_value NaN\npos_inf +Inf\nneg_inf -Inf\n".to_vec()),
        ("/good", good),
    ]));
    let job = |name: &str, extra: &str| {
        format!(
            "        - job_name: {name}\n          scrape_interval: 1s\n          metrics_path: /{name}\n{extra}          static_configs:\n            - targets: [\"127.0.0.1:{port}\"]\n"
        )
    };
    let jobs: String =
        ["malformed", "duplicate", "utf8", "special", "good"].iter().map(|n| job(n, "")).collect::<String>()
            + &job("large", "          body_size_limit: 1KB\n");
    let gw = Gateway::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
{jobs}
exporters:
  file:
    path: {{dir}}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [file]
"#
    ));
    let path = gw.path("out.jsonl");
    let all = eventually(Duration::from_secs(15), || up_by_job(&path).len() == 6);
    assert!(all, "up of every job: {:?}\n{}", up_by_job(&path), gw.log());
    let up = up_by_job(&path);
    for bad in ["malformed", "duplicate", "utf8", "large"] {
        assert_eq!(up[bad], 0.0, "{bad}");
    }
    assert_eq!(up["good"], 1.0);
    assert_eq!(up["special"], 1.0, "NaN and ±Inf are valid values");
    let log = gw.log();
    for reason in ["expected , or }", "duplicate label x", "invalid UTF-8", "body over body_size_limit (1024 bytes)"] {
        assert!(log.contains(reason), "the log names \"{reason}\":\n{log}");
    }
    // The special values arrive as values.
    let text = std::fs::read_to_string(&path).unwrap();
    for name in ["nan_value", "pos_inf", "neg_inf"] {
        assert!(text.contains(&format!("\"name\":\"{name}\"")), "{name} exported");
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn v1_request() -> Vec<u8> {
    v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![
                v1::Label { name: "__name__".into(), value: "rw_test".into() },
                v1::Label { name: "job".into(), value: "rw".into() },
            ],
            samples: vec![v1::Sample { value: 4.5, timestamp: 1_700_000_000_000 }],
        }],
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn remote_write_refuses_what_it_cannot_take_with_the_spec_codes() {
    let gw = Gateway::start(
        r#"
receivers:
  prometheusremotewrite:
    endpoint: 127.0.0.1:{port:rw}
    accepted_protobuf_messages: [prometheus.WriteRequest]
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    metrics:
      receivers: [prometheusremotewrite]
      exporters: [file]
"#,
    );
    let port = gw.port("rw");
    let post = |content_type: &str, encoding: &str, body: &[u8]| {
        http_request(
            "POST",
            port,
            "/api/v1/write",
            &[
                ("Content-Type", content_type),
                ("Content-Encoding", encoding),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            body,
        )
        .unwrap()
    };
    let pb = "application/x-protobuf";
    // A snappy header that claims 4 GiB: refused before anything is allocated.
    let r = post(pb, "snappy", b"\xff\xff\xff\xff\x0f not snappy");
    assert_eq!(r.status, 413, "{}", r.text());
    // Snappy cut short: corrupt.
    let good = snappy(&v1_request());
    let r = post(pb, "snappy", &good[..good.len() - 4]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("corrupt snappy body"), "{}", r.text());
    let r = post(pb, "snappy", &snappy(b"\xff\xff\xff"));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not a prometheus.WriteRequest"), "{}", r.text());
    let nameless = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![v1::Label { name: "job".into(), value: "x".into() }],
            samples: vec![],
        }],
        ..Default::default()
    };
    let r = post(pb, "snappy", &snappy(&nameless.encode_to_vec()));
    assert_eq!((r.status, r.text().trim()), (400, "series 0 has no __name__ label"));
    let v2_request = v2::Request { symbols: vec!["".into()], timeseries: vec![] }.encode_to_vec();
    let r = post("application/x-protobuf;proto=io.prometheus.write.v2.Request", "snappy", &snappy(&v2_request));
    assert_eq!(r.status, 415, "a 2.0 request to a 1.0-only receiver: {}", r.text());
    assert!(r.text().contains("accepted: prometheus.WriteRequest"), "{}", r.text());
    let r = post(pb, "gzip", &snappy(&v1_request()));
    assert_eq!(r.status, 415);
    // And a good one is written.
    let r = post(pb, "snappy", &snappy(&v1_request()));
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(eventually(Duration::from_secs(10), || std::fs::read_to_string(gw.path("out.jsonl"))
        .is_ok_and(|t| t.contains("rw_test"))));
    assert_eq!(
        gw.metric(
            "switchyard_receiver_invalid_requests_total",
            &[("receiver", "prometheusremotewrite"), ("code", "400")]
        ),
        3.0
    );
    assert_eq!(
        gw.metric(
            "switchyard_receiver_invalid_requests_total",
            &[("receiver", "prometheusremotewrite"), ("code", "415")]
        ),
        2.0
    );
}

#[test]
fn remote_write_2_round_trips_through_switchyard() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
  prometheusremotewrite:
    endpoint: 127.0.0.1:{port:rw}
exporters:
  prometheusremotewrite:
    endpoint: http://127.0.0.1:{port:rw}/api/v1/write
    protobuf_message: io.prometheus.write.v2.Request
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    metrics/in:
      receivers: [otlp]
      exporters: [prometheusremotewrite]
    metrics/out:
      receivers: [prometheusremotewrite]
      exporters: [file]
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
    let path = gw.path("out.jsonl");
    let arrived = eventually(Duration::from_secs(15), || {
        std::fs::read_to_string(&path)
            .is_ok_and(|t| t.contains("py_latency_milliseconds") && t.contains("py_requests_total"))
    });
    assert!(arrived, "{}", gw.log());
    // Types travel in 2.0 metadata: the histogram and the counter come back as such, with starts.
    let lines = json_lines(&path);
    let metrics: Vec<serde_json::Value> = lines
        .iter()
        .flat_map(|l| l["resourceMetrics"].as_array().cloned().unwrap_or_default())
        .flat_map(|rm| rm["scopeMetrics"].as_array().cloned().unwrap_or_default())
        .flat_map(|sm| sm["metrics"].as_array().cloned().unwrap_or_default())
        .collect();
    let find =
        |n: &str| metrics.iter().find(|m| m["name"] == n).cloned().unwrap_or_else(|| panic!("{n}: {metrics:#?}"));
    let h = find("py_latency_milliseconds");
    assert_eq!(h["histogram"]["dataPoints"][0]["count"], "4", "{h:#}");
    let c = find("py_requests_total");
    assert_eq!(c["sum"]["isMonotonic"], true, "{c:#}");
    // The SDK's own start time, to the millisecond remote write keeps (it may equal the point's
    // time on a fast run, so compare with what the SDK says, not with the point's time).
    let sdk: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let sdk_counter = sdk["metrics"].as_array().unwrap().iter().find(|m| m["name"] == "py.requests").unwrap();
    // Each series has its own start (its first measurement): compare series by series.
    // (The series may come in different requests: gather the points of every copy.)
    let points: Vec<serde_json::Value> = metrics
        .iter()
        .filter(|m| m["name"] == "py_requests_total")
        .flat_map(|m| m["sum"]["dataPoints"].as_array().cloned().unwrap_or_default())
        .collect();
    let mut routes: Vec<String> = points
        .iter()
        .map(|p| {
            p["attributes"].as_array().unwrap().iter().find(|a| a["key"] == "route").unwrap()["value"]["stringValue"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    routes.sort();
    routes.dedup();
    assert_eq!(routes, ["/a", "/b"], "{points:#?}");
    for point in &points {
        let route = point["attributes"].as_array().unwrap().iter().find(|a| a["key"] == "route").unwrap()["value"]
            ["stringValue"]
            .clone();
        let sdk_point =
            sdk_counter["points"].as_array().unwrap().iter().find(|p| p["attributes"]["route"] == route).unwrap();
        let sdk_start = sdk_point["start_time_unix_nano"].as_u64().unwrap();
        assert_eq!(
            point["startTimeUnixNano"],
            (sdk_start / 1_000_000 * 1_000_000).to_string(),
            "start_timestamp carried for route {route}: {c:#}"
        );
    }
    assert_eq!(
        gw.metric("switchyard_exporter_dropped_metric_points_total", &[("exporter", "prometheusremotewrite")]),
        0.0
    );
}
