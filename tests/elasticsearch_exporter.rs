//! The `elasticsearch` exporter against a strict in-test `_bulk` endpoint: no Elasticsearch or
//! OpenSearch can be installed here, so this server checks every request against the documented
//! `_bulk` format (PROTOCOLS.md §5.2: POST `/_bulk`, `application/x-ndjson`, action line then
//! source line, every line JSON, the body ending in a newline, the credentials) and answers in
//! Elasticsearch's per-item shape: a scripted first answer refuses one item with 429
//! (`es_rejected_execution_exception`, must be sent again, alone) and one with 400
//! (`mapper_parsing_exception`, must be dropped and counted). The logs come from the real
//! Python SDK.

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Bulk {
    /// Stored documents: (index, source).
    stored: Vec<(String, serde_json::Value)>,
    /// Documents per request, and the body size of each.
    requests: Vec<(usize, usize)>,
    problems: Vec<String>,
    /// The `_id`s of stored documents that came with one.
    ids: std::collections::BTreeSet<String>,
}

/// What the endpoint does besides storing.
#[derive(Clone, Copy, PartialEq)]
enum Script {
    /// Every item is stored.
    Store,
    /// The first request gets 429 for its first item and 400 for its second.
    RefuseItems,
    /// The second request is answered 503 as a whole (nothing of it stored).
    SecondUnavailable,
    /// The first request is stored, but its connection closes before the answer.
    LoseFirstAnswer,
}

/// A strict `_bulk` endpoint expecting `auth`, answering as `script` says.
fn elasticsearch(auth: &'static str, script: Script) -> (u16, Arc<Mutex<Bulk>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(Bulk::default()));
    let shared = state.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            while let Some(request) = read_request(&mut reader) {
                let (first, body) = (&request.line, &request.body);
                let get = |k: &str| request.header(k);
                let mut s = shared.lock().unwrap();
                let mut problems = Vec::new();
                if !first.starts_with(
                    "POST /_bulk?filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason ",
                ) {
                    problems.push(format!("request line {first}"));
                }
                if get("content-type").as_deref() != Some("application/x-ndjson") {
                    problems.push(format!("content type {:?}", get("content-type")));
                }
                if get("authorization").as_deref() != Some(auth) {
                    problems.push(format!("authorization {:?}", get("authorization")));
                }
                let text = String::from_utf8(body.clone()).unwrap_or_default();
                if !text.ends_with('\n') {
                    problems.push("the body must end with a newline".into());
                }
                let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
                if !lines.len().is_multiple_of(2) {
                    problems.push(format!("{} lines: not action/source pairs", lines.len()));
                }
                let mut docs = Vec::new();
                for pair in lines.chunks(2) {
                    let action: serde_json::Value = serde_json::from_str(pair[0]).unwrap_or_default();
                    let Some(index) = action["create"]["_index"].as_str() else {
                        problems.push(format!("action line {}", pair[0]));
                        continue;
                    };
                    let id = action["create"]["_id"].as_str().map(str::to_string);
                    match serde_json::from_str::<serde_json::Value>(pair.get(1).unwrap_or(&"")) {
                        Ok(v) if v["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 30) => {
                            docs.push((index.to_string(), id, v))
                        }
                        other => problems.push(format!("source line {other:?}")),
                    }
                }
                let scripted = script == Script::RefuseItems && s.requests.is_empty();
                let unavailable = script == Script::SecondUnavailable && s.requests.len() == 1;
                s.requests.push((docs.len(), body.len()));
                if unavailable {
                    s.problems.extend(problems);
                    drop(s);
                    let answer = r#"{"error":{"type":"unavailable_shards_exception"},"status":503}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    continue;
                }
                let lose_answer = script == Script::LoseFirstAnswer && s.requests.len() == 1;
                let mut items = Vec::new();
                for (k, (index, id, doc)) in docs.into_iter().enumerate() {
                    let known = id.as_ref().is_some_and(|id| s.ids.contains(id));
                    let (status, error) = match k {
                        _ if known => (
                            409,
                            serde_json::json!({"type": "version_conflict_engine_exception", "reason": "document already exists"}),
                        ),
                        0 if scripted => (
                            429,
                            serde_json::json!({"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}),
                        ),
                        1 if scripted => (
                            400,
                            serde_json::json!({"type": "mapper_parsing_exception", "reason": "failed to parse field [attributes.i]"}),
                        ),
                        _ => (201, serde_json::Value::Null),
                    };
                    let mut item = serde_json::json!({"_index": index, "_id": id.clone().unwrap_or(format!("id{}", s.stored.len())), "status": status});
                    if status == 201 {
                        item["result"] = "created".into();
                        s.stored.push((index, doc));
                        s.ids.extend(id);
                    } else {
                        item["error"] = error;
                    }
                    items.push(serde_json::json!({ "create": item }));
                }
                s.problems.extend(problems);
                drop(s);
                if lose_answer {
                    break; // stored, but the answer never reaches the exporter
                }
                let errors = items.iter().any(|i| i["create"]["status"] != 201);
                let answer = serde_json::json!({"took": 3, "errors": errors, "items": items}).to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
            }
        }
    });
    (port, state)
}

fn config(port: u16, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
exporters:
  elasticsearch:
    endpoints: [http://127.0.0.1:{port}]
    logs_index: "logs-%{{service.name}}-%Y.%m.%d"
    retry:
      initial_interval: 50ms
{extra}
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [elasticsearch]
"#
    )
}

#[test]
fn a_429_item_is_sent_again_alone_and_a_400_item_is_dropped_and_counted() {
    let Some(python) = python_peer() else { return };
    let (port, state) = elasticsearch("ApiKey c2VjcmV0", Script::RefuseItems);
    let gw = Gateway::start(&config(port, "    api_key: c2VjcmV0"));
    let sent = python_sends(&python, gw.grpc, "logs", 5, &gw.path("sent.json"));
    let records = sent["logs"].as_array().unwrap().len();
    assert_eq!(records, 5);
    let done = eventually(Duration::from_secs(15), || state.lock().unwrap().stored.len() == records - 1);
    let s = state.lock().unwrap();
    assert!(done, "stored {} of {}: {:?}\n{}", s.stored.len(), records - 1, s.requests, gw.log());
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.requests.iter().map(|r| r.0).collect::<Vec<_>>(), vec![5, 1], "only the 429 item is sent again");
    let today = s.stored[0].0.clone();
    assert!(today.starts_with("logs-py-sender-2"), "index from service.name and the date: {today}");
    let bodies: Vec<&str> = s.stored.iter().map(|(_, d)| d["body"].as_str().unwrap_or("")).collect();
    assert!(bodies.contains(&"log-0"), "the 429 item arrived on its second try: {bodies:?}");
    assert!(!bodies.contains(&"log-1"), "the 400 item was dropped: {bodies:?}");
    let doc = &s.stored.iter().find(|(_, d)| d["body"] == "log-4").unwrap().1;
    assert_eq!(doc["severity_text"], "WARN");
    assert_eq!(doc["attributes"]["s"], "v4");
    assert_eq!(doc["attributes"]["i"], 46);
    assert_eq!(doc["resource"]["attributes"]["service.name"], "py-sender");
    assert_eq!(doc["scope"]["name"], "switchyard.peer.python");
    assert_eq!(doc["trace_id"].as_str().unwrap(), sent["logs"][4]["trace_id"].as_str().unwrap());
    drop(s);
    let refused = gw.metric(
        "switchyard_exporter_refused_items_total",
        &[("exporter", "elasticsearch"), ("status", "400"), ("reason", "mapper_parsing_exception")],
    );
    assert_eq!(refused, 1.0);
    assert_eq!(gw.metric("otelcol_exporter_sent_log_records_total", &[("exporter", "elasticsearch")]), 5.0);
}

#[test]
fn large_batches_are_split_by_flush_bytes_and_ecs_names_the_fields() {
    let Some(python) = python_peer() else { return };
    let (port, state) = elasticsearch("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==", Script::Store);
    let extra =
        "    user: elastic\n    password: changeme\n    flush:\n      bytes: 2048\n    mapping:\n      mode: ecs";
    let gw = Gateway::start(&config(port, extra));
    python_sends(&python, gw.grpc, "logs", 40, &gw.path("sent.json"));
    assert!(eventually(Duration::from_secs(15), || state.lock().unwrap().stored.len() == 40), "{}", gw.log());
    let s = state.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert!(s.requests.len() > 2, "split into several requests: {:?}", s.requests);
    assert!(s.requests.iter().all(|(_, bytes)| *bytes <= 2048), "{:?}", s.requests);
    let doc = &s.stored.iter().find(|(_, d)| d["message"] == "log-7").unwrap().1;
    assert_eq!(doc["log.level"], "WARN");
    assert_eq!(doc["service.name"], "py-sender");
    assert_eq!(doc["s"], "v7");
}

#[test]
fn a_request_failing_after_part_of_the_batch_is_stored_sends_only_the_rest() {
    let Some(python) = python_peer() else { return };
    let (port, state) = elasticsearch("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==", Script::SecondUnavailable);
    let extra = "    user: elastic\n    password: changeme\n    flush:\n      bytes: 2048\n    retry_on_failure:\n      initial_interval: 100ms";
    let gw = Gateway::start(&config(port, extra));
    python_sends(&python, gw.grpc, "logs", 40, &gw.path("sent.json"));
    assert!(eventually(Duration::from_secs(15), || state.lock().unwrap().stored.len() >= 40), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(500));
    let s = state.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let mut messages: Vec<String> =
        s.stored.iter().map(|(_, d)| d["body"].as_str().unwrap_or("?").to_string()).collect();
    messages.sort_by_key(|m| m.trim_start_matches("log-").parse::<u32>().unwrap_or(u32::MAX));
    let want: Vec<String> = (0..40).map(|i| format!("log-{i}")).collect();
    assert_eq!(messages, want, "every log stored once: the first request's documents were not sent again");
    assert_eq!(s.requests[2].0, s.requests[1].0, "the refused request's documents went again, and only they");
    assert!(gw.log().contains("sending the rest again"), "{}", gw.log());
}

/// An OTLP/HTTP logs request of `n` records with bodies `{prefix}{i}`.
fn logs_body(prefix: &str, n: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            body: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("{prefix}{i}"))) }),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn post_logs(gw: &Gateway, prefix: &str, n: usize) {
    let r =
        http_request("POST", gw.http, "/v1/logs", &[("content-type", "application/x-protobuf")], &logs_body(prefix, n))
            .expect("POST /v1/logs");
    assert_eq!(r.status, 200, "{}", r.text());
}

const HTTP_RECEIVER: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n      http:\n        endpoint: 127.0.0.1:{http}\n";

#[test]
fn batches_arriving_within_flush_interval_go_in_one_request_and_shutdown_sends_them_at_once() {
    let (port, state) = elasticsearch("ApiKey c2VjcmV0", Script::Store);
    let with_interval = |interval: &str| {
        config(port, &format!("    api_key: c2VjcmV0\n    flush:\n      interval: {interval}")).replace(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n",
            HTTP_RECEIVER,
        )
    };
    let mut gw = Gateway::start(&with_interval("1s"));
    for b in 0..3 {
        post_logs(&gw, &format!("b{b}-"), 4);
    }
    assert!(eventually(Duration::from_secs(10), || state.lock().unwrap().stored.len() == 12), "{}", gw.log());
    let docs_per_request: Vec<usize> = state.lock().unwrap().requests.iter().map(|r| r.0).collect();
    assert_eq!(docs_per_request, vec![12], "three batches, one _bulk");

    // (The in-test server serves one connection at a time: the first switchyard goes first.)
    assert!(gw.stop().0.success());

    // With a long interval, stopping sends what is gathered at once instead of waiting it out.
    let mut gw = Gateway::start(&with_interval("1m"));
    post_logs(&gw, "late-", 5);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state.lock().unwrap().stored.len(), 12, "still gathering");
    let started = std::time::Instant::now();
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopping did not wait for the interval");
    let s = state.lock().unwrap();
    assert_eq!(s.stored.len(), 17, "{log}");
    assert!(s.problems.is_empty(), "{:?}", s.problems);
}

#[test]
fn with_logs_dynamic_id_a_batch_sent_again_after_a_lost_answer_is_stored_once() {
    let (port, state) = elasticsearch("ApiKey c2VjcmV0", Script::LoseFirstAnswer);
    let extra = "    api_key: c2VjcmV0\n    logs_dynamic_id:\n      enabled: true\n    retry_on_failure:\n      initial_interval: 100ms";
    let gw = Gateway::start(&config(port, extra).replace(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n",
        HTTP_RECEIVER,
    ));
    // Records carrying their own ids, as an upstream processor would set them.
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;
    let mut request = ExportLogsServiceRequest::decode(&logs_body("dyn-", 4)[..]).unwrap();
    for (i, r) in request.resource_logs[0].scope_logs[0].log_records.iter_mut().enumerate() {
        r.attributes.push(opentelemetry_proto::tonic::common::v1::KeyValue {
            key: "elasticsearch.document_id".into(),
            value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(format!("doc-{i}"))),
            }),
            ..Default::default()
        });
    }
    let r = http_request(
        "POST",
        gw.http,
        "/v1/logs",
        &[("content-type", "application/x-protobuf")],
        &request.encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // The first request is stored but unanswered; the batch goes again, ids and all.
    assert!(eventually(Duration::from_secs(10), || state.lock().unwrap().requests.len() >= 2), "{}", gw.log());
    std::thread::sleep(Duration::from_millis(300));
    let s = state.lock().unwrap();
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    assert_eq!(s.stored.len(), 4, "stored once: the second time every id already existed (409 = stored)");
    assert_eq!(s.ids.iter().cloned().collect::<Vec<_>>(), ["doc-0", "doc-1", "doc-2", "doc-3"]);
    assert!(
        s.stored.iter().all(|(_, d)| d["attributes"].get("elasticsearch.document_id").is_none()),
        "the id attribute is not in the document"
    );
    assert_eq!(gw.metric("switchyard_exporter_refused_items_total", &[("exporter", "elasticsearch")]), 0.0);
}
