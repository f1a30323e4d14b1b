//! The real OpenTelemetry SDKs send to a running switchyard, and what its `file` exporter wrote
//! is decoded (as plain JSON, independently of switchyard's own decoder) and compared field by
//! field with what each SDK says it sent: ids, names, kinds, timestamps, attributes, events,
//! status, metric values and log records.
//!
//! Python SDK: OTLP/gRPC, OTLP/gRPC with gzip, OTLP/HTTP protobuf. JS SDK: OTLP/HTTP JSON.

mod common;

use common::*;
use serde_json::{Map, Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// An OTLP/JSON `AnyValue` as a plain JSON value (int64 may be a string on the wire).
fn any(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = v.get("arrayValue") {
        return Value::Array(a["values"].as_array().map(|vs| vs.iter().map(any).collect()).unwrap_or_default());
    }
    if let Some(k) = v.get("kvlistValue") {
        return Value::Object(attrs(&k["values"]));
    }
    Value::Null
}

fn attrs(list: &Value) -> Map<String, Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| (kv["key"].as_str().unwrap_or_default().to_string(), any(&kv["value"])))
        .collect()
}

fn u64_of(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn i64_of(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(i64::MIN),
        Value::Number(n) => n.as_i64().unwrap_or(i64::MIN),
        _ => i64::MIN,
    }
}

fn nums_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

/// Resources written by the file exporter whose `test.run` attribute is `run`, with the list
/// under `scope_key`/`items_key` flattened.
fn items_for_run(
    out: &Path,
    resource_key: &str,
    scope_key: &str,
    items_key: &str,
    run: &str,
) -> Vec<(Map<String, Value>, Value)> {
    let mut found = Vec::new();
    for line in json_lines(out) {
        for r in line[resource_key].as_array().into_iter().flatten() {
            let resource = attrs(&r["resource"]["attributes"]);
            if resource.get("test.run").and_then(Value::as_str) != Some(run) {
                continue;
            }
            for s in r[scope_key].as_array().into_iter().flatten() {
                for item in s[items_key].as_array().into_iter().flatten() {
                    // The scope's name rides along with each item as `_scope`.
                    let mut item = item.clone();
                    item["_scope"] = s["scope"]["name"].clone();
                    found.push((resource.clone(), item));
                }
            }
        }
    }
    found
}

fn check_resource(got: &Map<String, Value>, want: &Value) {
    for (k, v) in want.as_object().into_iter().flatten() {
        assert!(got.get(k).is_some_and(|g| nums_equal(g, v)), "resource attribute {k}: got {:?}, sent {v}", got.get(k));
    }
}

fn compare_traces(out: &Path, summary: &Value) -> usize {
    let run = summary["resource"]["test.run"].as_str().expect("test.run in summary");
    let sent = summary["spans"].as_array().expect("spans in summary");
    let got = items_for_run(out, "resourceSpans", "scopeSpans", "spans", run);
    assert_eq!(got.len(), sent.len(), "span count for run {run}");
    for want in sent {
        let (resource, span) = got
            .iter()
            .find(|(_, s)| s["spanId"].as_str() == want["span_id"].as_str())
            .unwrap_or_else(|| panic!("span {} not written", want["span_id"]));
        check_resource(resource, &summary["resource"]);
        assert_eq!(span["traceId"], want["trace_id"]);
        if let Some(scope) = want.get("scope") {
            assert_eq!(&span["_scope"], scope, "scope of {}", want["name"]);
        }
        assert_eq!(span["parentSpanId"].as_str().unwrap_or(""), want["parent_span_id"].as_str().unwrap_or(""));
        assert_eq!(span["name"], want["name"]);
        assert_eq!(span["kind"].as_i64(), want["kind"].as_i64(), "kind of {}", want["name"]);
        assert_eq!(u64_of(&span["startTimeUnixNano"]), u64_of(&want["start_time_unix_nano"]));
        assert_eq!(u64_of(&span["endTimeUnixNano"]), u64_of(&want["end_time_unix_nano"]));
        let got_attrs = attrs(&span["attributes"]);
        for (k, v) in want["attributes"].as_object().into_iter().flatten() {
            assert!(
                got_attrs.get(k).is_some_and(|g| nums_equal(g, v) || g == v),
                "attribute {k} of {}: got {:?}, sent {v}",
                want["name"],
                got_attrs.get(k)
            );
        }
        assert_eq!(got_attrs.len(), want["attributes"].as_object().map_or(0, |m| m.len()));
        let events = span["events"].as_array().cloned().unwrap_or_default();
        let want_events = want["events"].as_array().cloned().unwrap_or_default();
        assert_eq!(events.len(), want_events.len());
        for (e, w) in events.iter().zip(&want_events) {
            assert_eq!(e["name"], w["name"]);
            assert_eq!(u64_of(&e["timeUnixNano"]), u64_of(&w["time_unix_nano"]));
            assert_eq!(Value::Object(attrs(&e["attributes"])), w["attributes"]);
        }
        assert_eq!(span["status"]["code"].as_i64().unwrap_or(0), want["status"]["code"].as_i64().unwrap_or(0));
        assert_eq!(span["status"]["message"].as_str().unwrap_or(""), want["status"]["message"].as_str().unwrap_or(""));
    }
    sent.len()
}

fn compare_metrics(out: &Path, summary: &Value) -> usize {
    let run = summary["resource"]["test.run"].as_str().expect("test.run in summary");
    let got = items_for_run(out, "resourceMetrics", "scopeMetrics", "metrics", run);
    let mut points = 0;
    for want in summary["metrics"].as_array().expect("metrics in summary") {
        let name = want["name"].as_str().unwrap();
        let instances: Vec<&Value> = got.iter().map(|(_, m)| m).filter(|m| m["name"] == want["name"]).collect();
        assert!(!instances.is_empty(), "metric {name} not written");
        let m = instances[0];
        assert_eq!(m["unit"].as_str().unwrap_or(""), want["unit"].as_str().unwrap_or(""), "unit of {name}");
        assert_eq!(
            m["description"].as_str().unwrap_or(""),
            want["description"].as_str().unwrap_or(""),
            "description of {name}"
        );
        let kind = want["type"].as_str().unwrap();
        if let Some(scope) = want.get("scope") {
            assert_eq!(&m["_scope"], scope, "scope of {name}");
        }
        if let Some(t) = want.get("aggregation_temporality") {
            assert_eq!(m[kind]["aggregationTemporality"].as_i64(), t.as_i64(), "temporality of {name}");
        }
        if let Some(mono) = want.get("is_monotonic") {
            assert_eq!(
                m[kind]["isMonotonic"].as_bool().unwrap_or(false),
                mono.as_bool().unwrap_or(false),
                "monotonic {name}"
            );
        }
        let got_points: Vec<Value> =
            instances.iter().flat_map(|m| m[kind]["dataPoints"].as_array().cloned().unwrap_or_default()).collect();
        let want_points = want["points"].as_array().cloned().unwrap_or_default();
        assert_eq!(got_points.len(), want_points.len(), "points of {name}");
        for w in &want_points {
            let p = got_points
                .iter()
                .find(|p| Value::Object(attrs(&p["attributes"])) == w["attributes"])
                .unwrap_or_else(|| panic!("{name}: no point with attributes {}", w["attributes"]));
            assert_eq!(u64_of(&p["timeUnixNano"]), u64_of(&w["time_unix_nano"]), "{name} time");
            assert_eq!(u64_of(&p["startTimeUnixNano"]), u64_of(&w["start_time_unix_nano"]), "{name} start time");
            if kind == "histogram" {
                assert_eq!(u64_of(&p["count"]), u64_of(&w["count"]), "{name} count");
                for key in ["min", "max"] {
                    if let Some(v) = w.get(key).filter(|v| !v.is_null()) {
                        assert!(nums_equal(&p[key], v), "{name} {key}: {} vs {v}", p[key]);
                    }
                }
                assert!(nums_equal(&p["sum"], &w["sum"]), "{name} sum {} vs {}", p["sum"], w["sum"]);
                let buckets: Vec<u64> = p["bucketCounts"].as_array().into_iter().flatten().map(u64_of).collect();
                let want_buckets: Vec<u64> = w["bucket_counts"].as_array().into_iter().flatten().map(u64_of).collect();
                assert_eq!(buckets, want_buckets, "{name} buckets");
                let bounds = p["explicitBounds"].as_array().cloned().unwrap_or_default();
                let want_bounds = w["explicit_bounds"].as_array().cloned().unwrap_or_default();
                assert_eq!(bounds.len(), want_bounds.len(), "{name} bounds");
                assert!(
                    bounds.iter().zip(&want_bounds).all(|(a, b)| nums_equal(a, b)),
                    "{name} bounds {bounds:?} vs {want_bounds:?}"
                );
            } else {
                let value = p
                    .get("asInt")
                    .map(|v| json!(i64_of(v)))
                    .or_else(|| p.get("asDouble").cloned())
                    .unwrap_or(Value::Null);
                assert!(nums_equal(&value, &w["value"]), "{name} value: got {value}, sent {}", w["value"]);
            }
            points += 1;
        }
    }
    points
}

fn compare_logs(out: &Path, summary: &Value) -> usize {
    let run = summary["resource"]["test.run"].as_str().expect("test.run in summary");
    let sent = summary["logs"].as_array().expect("logs in summary");
    let got = items_for_run(out, "resourceLogs", "scopeLogs", "logRecords", run);
    assert_eq!(got.len(), sent.len(), "log count for run {run}");
    for want in sent {
        let (resource, rec) = got
            .iter()
            .find(|(_, r)| any(&r["body"]) == want["body"])
            .unwrap_or_else(|| panic!("log {} not written", want["body"]));
        check_resource(resource, &summary["resource"]);
        assert_eq!(rec["severityNumber"].as_i64().unwrap_or(0), want["severity_number"].as_i64().unwrap_or(0));
        if let Some(scope) = want.get("scope") {
            assert_eq!(&rec["_scope"], scope, "scope of log {}", want["body"]);
        }
        assert_eq!(rec["severityText"].as_str().unwrap_or(""), want["severity_text"].as_str().unwrap_or(""));
        assert_eq!(rec["traceId"].as_str().unwrap_or(""), want["trace_id"].as_str().unwrap_or(""));
        assert_eq!(rec["spanId"].as_str().unwrap_or(""), want["span_id"].as_str().unwrap_or(""));
        assert_eq!(u64_of(&rec["timeUnixNano"]), u64_of(&want["time_unix_nano"]));
        assert_eq!(u64_of(&rec["observedTimeUnixNano"]), u64_of(&want["observed_time_unix_nano"]));
        let got_attrs = attrs(&rec["attributes"]);
        for (k, v) in want["attributes"].as_object().into_iter().flatten() {
            assert!(
                got_attrs.get(k).is_some_and(|g| nums_equal(g, v) || g == v),
                "log attribute {k}: got {:?}, sent {v}",
                got_attrs.get(k)
            );
        }
    }
    sent.len()
}

fn compare(signal: &str, out: &Path, summary: &Value) -> usize {
    match signal {
        "traces" => compare_traces(out, summary),
        "metrics" => compare_metrics(out, summary),
        _ => compare_logs(out, summary),
    }
}

fn run_peer(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_summary(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("summary written")).expect("summary is JSON")
}

/// Items of this run already in the file, and how many the summary says were sent.
fn counts(out: &Path, signal: &str, summary: &Value) -> (usize, usize) {
    let run = summary["resource"]["test.run"].as_str().unwrap_or_default();
    match signal {
        "traces" => (
            items_for_run(out, "resourceSpans", "scopeSpans", "spans", run).len(),
            summary["spans"].as_array().map_or(0, Vec::len),
        ),
        "logs" => (
            items_for_run(out, "resourceLogs", "scopeLogs", "logRecords", run).len(),
            summary["logs"].as_array().map_or(0, Vec::len),
        ),
        _ => {
            let names: Vec<&Value> = summary["metrics"].as_array().into_iter().flatten().map(|m| &m["name"]).collect();
            let got = items_for_run(out, "resourceMetrics", "scopeMetrics", "metrics", run)
                .iter()
                .filter(|(_, m)| names.contains(&&m["name"]))
                .count();
            (got, names.len())
        }
    }
}

/// Waits until the file holds as many items of the run as were sent, then compares.
fn arrived(gw: &Gateway, signal: &str, summary: &Value) -> usize {
    let out = gw.path("out.jsonl");
    let ready = eventually(Duration::from_secs(15), || {
        let (got, sent) = counts(&out, signal, summary);
        got >= sent
    });
    if !ready {
        eprintln!("switchyard log:\n{}", gw.log());
    }
    compare(signal, &out, summary)
}

#[test]
fn python_sdk_over_grpc_grpc_gzip_and_http_protobuf() {
    let Some(python) = python_peer() else { return };
    let mut gw = Gateway::start(FILE_PIPELINE);
    let mut expected = [0usize; 3];
    for protocol in ["grpc", "grpc-gzip", "http-protobuf"] {
        let port = if protocol.starts_with("grpc") { gw.grpc } else { gw.http };
        for (i, signal) in ["traces", "metrics", "logs"].into_iter().enumerate() {
            let summary_path = gw.path(&format!("py-{protocol}-{signal}.json"));
            let mut cmd = Command::new(&python);
            cmd.arg(repo().join("tests/peers/python/otel_send.py"))
                .args(["--signal", signal, "--protocol", protocol, "--count", "4"])
                .args(["--endpoint", &format!("http://127.0.0.1:{port}"), "--out"])
                .arg(&summary_path);
            run_peer(cmd, &format!("python {protocol} {signal}"));
            let summary = read_summary(&summary_path);
            let n = arrived(&gw, signal, &summary);
            assert!(n > 0, "{protocol} {signal}: the SDK sent nothing");
            expected[i] += n;
        }
    }
    let m = |name: &str, transport: &str| gw.metric(name, &[("receiver", "otlp"), ("transport", transport)]);
    let accepted_spans =
        m("otelcol_receiver_accepted_spans_total", "grpc") + m("otelcol_receiver_accepted_spans_total", "http");
    assert_eq!(accepted_spans as usize, expected[0]);
    let accepted_points = m("otelcol_receiver_accepted_metric_points_total", "grpc")
        + m("otelcol_receiver_accepted_metric_points_total", "http");
    assert_eq!(accepted_points as usize, expected[1]);
    let accepted_logs = m("otelcol_receiver_accepted_log_records_total", "grpc")
        + m("otelcol_receiver_accepted_log_records_total", "http");
    assert_eq!(accepted_logs as usize, expected[2]);
    assert_eq!(gw.metric("otelcol_exporter_sent_spans_total", &[("exporter", "file")]) as usize, expected[0]);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn js_sdk_over_http_json() {
    let Some(node) = node_peer() else { return };
    let mut gw = Gateway::start(FILE_PIPELINE);
    for signal in ["traces", "metrics", "logs"] {
        let summary_path = gw.path(&format!("node-{signal}.json"));
        let mut cmd = Command::new(&node);
        cmd.arg(repo().join("tests/peers/node/send.js"))
            .args(["--signal", signal, "--count", "4"])
            .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.http), "--out"])
            .arg(&summary_path);
        run_peer(cmd, &format!("node {signal}"));
        let summary = read_summary(&summary_path);
        assert!(arrived(&gw, signal, &summary) > 0, "node {signal}: the SDK sent nothing");
    }
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
