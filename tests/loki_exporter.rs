//! The `loki` exporter against a strict in-test Loki: no Loki can be installed here, so this
//! server checks every push against the documented format (PROTOCOLS.md §5.1: snappy block +
//! `logproto.PushRequest`, or the JSON shape with string nanosecond timestamps; label selectors
//! `{name="value", …}` with valid names; entries of a stream in time order; the tenant header)
//! and answers as Loki does (204; a scripted 429 first, which must be retried). The logs come
//! from the real Python SDK.

mod common;

use common::*;
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(Pushed::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut headers = Vec::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some((k, v)) = line.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
                line.clear();
            }
            let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let len: usize = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
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
                    .decompress_vec(&body)
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
                Some("application/json") => match serde_json::from_slice::<serde_json::Value>(&body) {
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
            let status = if s.answered.len() < refuse { 429 } else { 204 };
            s.answered.push(status);
            if status == 204 {
                s.entries.extend(entries);
            }
            drop(s);
            let reason = if status == 204 { "No Content" } else { "Too Many Requests" };
            let body = if status == 429 { "Ingestion rate limit exceeded" } else { "" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
