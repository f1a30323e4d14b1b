//! The `loki` exporter against a strict in-test Loki: no Loki can be installed here, so this
//! server checks every push against the documented format (PROTOCOLS.md §5.1: snappy block +
//! `logproto.PushRequest`, or the JSON shape with string nanosecond timestamps; label selectors
//! `{name="value", …}` with valid names; entries of a stream in time order; the tenant header)
//! and answers as Loki does: 204, or scripted errors first — 429, 500 and 503, which must be
//! retried and the data stored once, and a 400 with Loki's reason, which drops the batch (counted
//! and logged with the reason) without a retry. The logs come from the real Python SDK; the
//! collector's `loki.attribute.labels` hint is added by the `attributes` processor, as the
//! collector's documentation does it.

mod common;

use common::*;
use prost::Message;
use std::collections::BTreeSet;
use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard::proto::loki as pb;

/// An accepted entry: its stream's labels, its line, its structured metadata.
type Pushed1 = (String, String, Vec<(String, String)>);

#[derive(Default)]
struct Pushed {
    entries: Vec<Pushed1>,
    answered: Vec<u16>,
    problems: Vec<String>,
}

fn valid_selector(s: &str) -> bool {
    let re = regex::Regex::new(
        r#"^\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")(, [a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\}$"#,
    )
    .unwrap();
    re.is_match(s)
}

/// A strict Loki push endpoint; the first `refuse` pushes get 429.
fn loki(refuse: usize, tenant: &'static str) -> (u16, Arc<Mutex<Pushed>>) {
    loki_answering(vec![(429, "Ingestion rate limit exceeded"); refuse], tenant)
}

/// A strict Loki push endpoint whose first pushes get the `script`ed (status, body) answers, in
/// order; the later ones 204. Only a 204 stores the entries.
fn loki_answering(script: Vec<(u16, &'static str)>, tenant: &'static str) -> (u16, Arc<Mutex<Pushed>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(Pushed::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let Some(request) = read_request(&mut reader) else { continue };
            let (first, body) = (&request.line, &request.body);
            let get = |k: &str| request.header(k);
            let mut s = shared.lock().unwrap();
            let mut problem = |p: String| s.problems.push(p);
            if !first.starts_with("POST /loki/api/v1/push ") {
                problem(format!("request line {first}"));
            }
            if get("x-scope-orgid").as_deref() != Some(tenant) {
                problem(format!("tenant header {:?}", get("x-scope-orgid")));
            }
            let mut entries = Vec::new();
            match get("content-type").as_deref() {
                Some("application/x-protobuf") => match snap::raw::Decoder::new()
                    .decompress_vec(body)
                    .map_err(|e| e.to_string())
                    .and_then(|raw| pb::PushRequest::decode(&raw[..]).map_err(|e| e.to_string()))
                {
                    Ok(push) => {
                        for st in push.streams {
                            let times: Vec<i128> = st
                                .entries
                                .iter()
                                .map(|e| {
                                    e.timestamp
                                        .map(|t| i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
                                        .unwrap_or(-1)
                                })
                                .collect();
                            if times.windows(2).any(|w| w[0] > w[1]) {
                                problem(format!("entries out of order in {}", st.labels));
                            }
                            if !valid_selector(&st.labels) {
                                problem(format!("invalid selector {}", st.labels));
                            }
                            for e in st.entries {
                                entries.push((
                                    st.labels.clone(),
                                    e.line,
                                    e.structured_metadata.into_iter().map(|m| (m.name, m.value)).collect(),
                                ));
                            }
                        }
                    }
                    Err(e) => problem(format!("body is not snappy protobuf: {e}")),
                },
                Some("application/json") => match serde_json::from_slice::<serde_json::Value>(body) {
                    Ok(v) => {
                        for st in v["streams"].as_array().cloned().unwrap_or_default() {
                            let labels: Vec<String> =
                                st["stream"].as_object().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect();
                            for value in st["values"].as_array().cloned().unwrap_or_default() {
                                if !value[0].is_string() || value[0].as_str().unwrap().parse::<u64>().is_err() {
                                    problem(format!("timestamp must be a string of nanoseconds: {}", value[0]));
                                }
                                entries.push((
                                    labels.join(","),
                                    value[1].as_str().unwrap_or("").to_string(),
                                    Vec::new(),
                                ));
                            }
                        }
                    }
                    Err(e) => problem(format!("body is not JSON: {e}")),
                },
                other => problem(format!("content type {other:?}")),
            }
            let (status, body) = script.get(s.answered.len()).copied().unwrap_or((204, ""));
            s.answered.push(status);
            if status == 204 {
                s.entries.extend(entries);
            }
            drop(s);
            let reason = match status {
                204 => "No Content",
                400 => "Bad Request",
                429 => "Too Many Requests",
                500 => "Internal Server Error",
                503 => "Service Unavailable",
                _ => "Scripted",
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, state)
}

fn config(port: u16, encoding: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
exporters:
  loki:
    endpoint: http://127.0.0.1:{port}/loki/api/v1/push
    encoding: {encoding}
    tenant_id: team-a
    labels:
      resource:
        service.name: service
    retry_on_failure:
      initial_interval: 100ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [loki]
"#
    )
}

#[test]
fn python_sdk_logs_reach_loki_as_streams_after_a_retried_429() {
    let Some(python) = python_peer() else { return };
    let (port, state) = loki(1, "team-a");
    let gw = Gateway::start(&config(port, "protobuf"));
    let sent = python_sends(&python, gw.grpc, "logs", 3, &gw.path("sent.json"));
    let records = sent["logs"].as_array().or(sent["records"].as_array()).map(|a| a.len()).unwrap_or(0);
    assert!(records > 0, "{sent}");
    let arrived = eventually(Duration::from_secs(15), || state.lock().unwrap().entries.len() == records);
    let s = state.lock().unwrap();
    assert!(
        arrived,
        "{} of {records} entries; answered {:?}; problems {:?}\n{}",
        s.entries.len(),
        s.answered,
        s.problems,
        gw.log()
    );
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.answered[0], 429, "the first push was refused and then retried");
    for (labels, line, md) in &s.entries {
        assert!(labels.contains(r#"service="py-sender""#), "{labels}");
        assert!(labels.contains(r#"exporter="OTLP""#), "{labels}");
        assert!(!line.is_empty());
        assert!(
            md.iter().any(|(k, _)| k.starts_with("resource.")),
            "the rest of the resource as structured metadata: {md:?}"
        );
    }
}

#[test]
fn json_encoding_sends_string_nanosecond_timestamps() {
    let Some(python) = python_peer() else { return };
    let (port, state) = loki(0, "team-a");
    let gw = Gateway::start(&config(port, "json"));
    python_sends(&python, gw.grpc, "logs", 2, &gw.path("sent.json"));
    assert!(eventually(Duration::from_secs(15), || !state.lock().unwrap().entries.is_empty()), "{}", gw.log());
    let s = state.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
}

/// The number of log records in a summary of tests/peers/python/otel_send.py.
fn records(sent: &serde_json::Value) -> usize {
    sent["logs"].as_array().map_or(0, Vec::len)
}

#[test]
fn a_500_and_a_503_are_retried_and_every_entry_is_stored_once() {
    let Some(python) = python_peer() else { return };
    let (port, state) = loki_answering(vec![(500, "internal server error"), (503, "ingester not ready")], "team-a");
    let gw = Gateway::start(&config(port, "protobuf"));
    let sent = records(&python_sends(&python, gw.grpc, "logs", 3, &gw.path("sent.json")));
    assert_eq!(sent, 3);
    let arrived = eventually(Duration::from_secs(15), || state.lock().unwrap().entries.len() >= sent);
    assert!(arrived, "answered {:?}\n{}", state.lock().unwrap().answered, gw.log());
    assert!(eventually(Duration::from_secs(5), || gw
        .metric("otelcol_exporter_sent_log_records_total", &[("exporter", "loki")])
        == 3.0));
    std::thread::sleep(Duration::from_millis(500));
    let s = state.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.answered, [500, 503, 204], "each error retried, then stored");
    let mut lines: Vec<&str> = s.entries.iter().map(|(_, line, _)| line.as_str()).collect();
    lines.sort();
    assert_eq!(lines, ["log-0", "log-1", "log-2"], "every entry once");
    assert_eq!(gw.metric("switchyard_exporter_dropped_log_records_total", &[("exporter", "loki")]), 0.0);
    assert!(
        gw.log().contains("failing since") && gw.log().contains("HTTP 500"),
        "the outage is logged with the status: {}",
        gw.log()
    );
}

#[test]
fn a_400_drops_the_batch_without_retrying_and_says_why() {
    let Some(python) = python_peer() else { return };
    let why = "entry for stream '{service=\"py-sender\"}' has timestamp too old: 2020-01-01T00:00:00Z, \
               oldest acceptable timestamp is: 2024-01-01T00:00:00Z";
    let (port, state) = loki_answering(vec![(400, why)], "team-a");
    let mut gw = Gateway::start(&config(port, "protobuf"));
    let sent = records(&python_sends(&python, gw.grpc, "logs", 2, &gw.path("sent.json")));
    assert!(
        eventually(Duration::from_secs(15), || gw
            .metric("switchyard_exporter_dropped_log_records_total", &[("exporter", "loki")])
            == sent as f64),
        "answered {:?}\n{}",
        state.lock().unwrap().answered,
        gw.log()
    );
    // Well past the 100 ms retry interval: no second attempt.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state.lock().unwrap().answered, [400], "not retried");
    assert!(state.lock().unwrap().entries.is_empty());
    // The next batch flows.
    let more = records(&python_sends(&python, gw.grpc, "logs", 3, &gw.path("more.json")));
    assert!(eventually(Duration::from_secs(15), || state.lock().unwrap().entries.len() == more), "{}", gw.log());
    assert_eq!(state.lock().unwrap().answered, [400, 204]);
    assert_eq!(gw.metric("otelcol_exporter_sent_log_records_total", &[("exporter", "loki")]), more as f64);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let dropped = log.lines().find(|l| l.contains("data dropped")).unwrap_or_else(|| panic!("{log}"));
    assert!(dropped.contains("HTTP 400"), "{dropped}");
    assert!(dropped.contains("has timestamp too old"), "Loki's reason is in the log: {dropped}");
}

#[test]
fn attributes_named_in_the_loki_attribute_labels_hint_become_stream_labels() {
    let Some(python) = python_peer() else { return };
    let (port, state) = loki_answering(Vec::new(), "team-a");
    // As the collector's documentation adds the hint: with the attributes processor.
    let hint = "processors:\n  attributes:\n    actions:\n      - key: loki.attribute.labels\n        value: s, i\n        action: insert\nservice:\n";
    let cfg = config(port, "protobuf")
        .replacen("service:\n", hint, 1)
        .replace("      exporters: [loki]", "      processors: [attributes]\n      exporters: [loki]");
    let gw = Gateway::start(&cfg);
    let sent = records(&python_sends(&python, gw.grpc, "logs", 3, &gw.path("sent.json")));
    assert!(eventually(Duration::from_secs(15), || state.lock().unwrap().entries.len() == sent), "{}", gw.log());
    let s = state.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    for (labels, line, md) in &s.entries {
        // The SDK peer sends record k as "log-k" with attributes s = "vk", i = 42 + k.
        let k: u32 = line.strip_prefix("log-").unwrap().parse().unwrap();
        assert!(labels.contains(&format!(r#"s="v{k}""#)), "{line}: {labels}");
        assert!(labels.contains(&format!(r#"i="{}""#, 42 + k)), "{line}: {labels}");
        assert!(labels.contains(r#"service="py-sender""#), "{labels}");
        let keys: Vec<&str> = md.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!keys.contains(&"s") && !keys.contains(&"i"), "a label is not repeated as metadata: {keys:?}");
        assert!(!keys.contains(&"loki.attribute.labels"), "the hint itself is not sent: {keys:?}");
        assert!(md.contains(&("f".to_string(), "1.5".to_string())), "the other attributes stay metadata: {md:?}");
    }
    let streams: BTreeSet<&str> = s.entries.iter().map(|(l, _, _)| l.as_str()).collect();
    assert_eq!(streams.len(), 3, "one stream per distinct label set: {streams:?}");
}
