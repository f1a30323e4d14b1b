//! The `filelog` receiver tailing real files while the test writes, rotates and appends, with
//! switchyard killed by SIGKILL mid-stream and restarted on the same `file_storage` directory.
//! The destination is an OTLP/HTTP logs backend run by the test (a stand-in: any OTLP backend
//! would do; this one records every record it answered 200 for, so the test can tell what was
//! delivered before the kill).

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A received log record: body, attributes and resource attributes as strings.
#[derive(Clone, Debug)]
struct Got {
    body: String,
    attrs: BTreeMap<String, String>,
    resource: BTreeMap<String, String>,
    time: u64,
    severity: i32,
    severity_text: String,
}

/// An OTLP/HTTP backend that decodes every POST /v1/logs, records it and answers 200.
fn logs_backend() -> (u16, Arc<Mutex<Vec<Got>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let shared = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                while let Some(request) = read_request(&mut reader) {
                    let (first, body) = (&request.line, &request.body);
                    assert!(first.starts_with("POST /v1/logs "), "{first}");
                    let req = ExportLogsServiceRequest::decode(&body[..]).expect("a valid logs request");
                    let s = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                    {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    let mut records = Vec::new();
                    for rl in &req.resource_logs {
                        let resource: BTreeMap<String, String> = rl
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .map(|a| (a.key.clone(), s(&a.value)))
                            .collect();
                        for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                            records.push(Got {
                                body: s(&r.body),
                                attrs: r.attributes.iter().map(|a| (a.key.clone(), s(&a.value))).collect(),
                                resource: resource.clone(),
                                time: r.time_unix_nano,
                                severity: r.severity_number,
                                severity_text: r.severity_text.clone(),
                            });
                        }
                    }
                    // Recorded before the answer: what the gateway sees acknowledged is here.
                    shared.lock().unwrap().extend(records);
                    let answer = ExportLogsServiceRequest::default().encode_to_vec();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    let _ = stream.write_all(&answer);
                }
            });
        }
    });
    (port, got)
}

fn config(include: &str, storage: &Path, backend: u16, extra: &str) -> String {
    format!(
        r#"
extensions:
  file_storage:
    directory: {storage}
    create_directory: true
    fsync: {fsync}
receivers:
  filelog:
    include: ["{include}"]
    start_at: beginning
    poll_interval: 50ms
    storage: file_storage
{extra}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{backend}
    compression: none
    sending_queue:
      num_consumers: 1
service:
  extensions: [file_storage]
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlphttp]
"#,
        storage = storage.display(),
        fsync = extra.is_empty()
    )
}

fn line(n: usize) -> String {
    format!("line-{n:06} the quick brown fox jumps over the lazy dog\n")
}

fn append(path: &Path, from: usize, to: usize, pause_every: usize) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for n in from..=to {
        f.write_all(line(n).as_bytes()).unwrap();
        if n % pause_every == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Line numbers received, with how often each came.
fn counts(got: &Mutex<Vec<Got>>) -> BTreeMap<usize, usize> {
    let mut c = BTreeMap::new();
    for g in got.lock().unwrap().iter() {
        let n: usize =
            g.body.get(5..11).and_then(|d| d.parse().ok()).unwrap_or_else(|| panic!("unexpected body {:?}", g.body));
        *c.entry(n).or_default() += 1;
    }
    c
}

#[test]
fn every_line_arrives_once_through_rotations_and_a_kill_9() {
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let app = logs.join("app.log");
    let storage = work.path().join("storage");
    let (backend, got) = logs_backend();
    let cfg = config(&format!("{}/app.log*", logs.display()), &storage, backend, "");
    let first = Gateway::start(&cfg);

    // Written while switchyard tails; then renamed away (still under the glob) mid-read.
    append(&app, 1, 2000, 100);
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    append(&app, 2001, 4000, 100);
    let all_in = |n: usize| eventually(Duration::from_secs(20), || counts(&got).len() >= n);
    assert!(all_in(4000), "{} of 4000 lines\n{}", counts(&got).len(), first.log());

    // Copy-truncate, as logrotate's copytruncate does.
    std::fs::copy(&app, logs.join("app.log.2")).unwrap();
    std::fs::OpenOptions::new().write(true).open(&app).unwrap().set_len(0).unwrap();
    append(&app, 4001, 5000, 50);
    // Killed mid-stream: lines keep coming while it is down.
    let writer = {
        let app = app.clone();
        std::thread::spawn(move || append(&app, 5001, 8000, 20))
    };
    std::thread::sleep(Duration::from_millis(150));
    signal(first.pid(), "KILL");
    let before_kill = counts(&got);
    let log_first = first.log();
    drop(first);
    writer.join().unwrap();

    let second = Gateway::start(&cfg);
    let arrived = all_in(8000);
    let c = counts(&got);
    assert!(
        arrived,
        "{} of 8000 lines; missing e.g. {:?}\nfirst run:\n{log_first}\nsecond run:\n{}",
        c.len(),
        (1..=8000).filter(|n| !c.contains_key(n)).take(10).collect::<Vec<_>>(),
        second.log()
    );
    assert_eq!(c.keys().copied().collect::<Vec<_>>(), (1..=8000).collect::<Vec<_>>(), "nothing else arrived");
    let repeated: Vec<usize> = c.iter().filter(|(_, k)| **k > 1).map(|(n, _)| *n).collect();
    assert!(
        repeated.len() <= 1000,
        "only the batch in flight at the kill may come twice (a batch is at most 1000 lines): {} repeated",
        repeated.len()
    );
    assert!(repeated.iter().all(|n| c[n] == 2), "nothing came three times");
    eprintln!("delivered before the kill: {} lines; repeated after the restart: {}", before_kill.len(), repeated.len());
    assert!(before_kill.len() < 8000, "the kill came mid-stream");
    if let (Some(lo), Some(hi)) = (repeated.first(), repeated.last()) {
        assert_eq!(hi - lo + 1, repeated.len(), "the repeated lines are one contiguous batch: {lo}..{hi}");
        assert!(before_kill.contains_key(lo), "what is repeated had been delivered before the kill");
    }
    let sample = got.lock().unwrap().iter().find(|g| g.body.starts_with("line-000007")).cloned().unwrap();
    assert_eq!(sample.body, line(7).trim_end());
    assert!(sample.attrs["log.file.name"].starts_with("app.log"), "{:?}", sample.attrs);
}

#[test]
fn kubernetes_container_logs_multiline_and_bad_files() {
    let work = tempfile::tempdir().unwrap();
    let pods = work.path().join("pods");
    let cri_dir = pods.join("shop_checkout-7d9f_0c1f7f7e-2b1a-4d7e-9d61-1c2b3a4d5e6f/server");
    let docker_dir = pods.join("kube-system_dns-5x2_9a8b7c6d-0000-4d7e-9d61-1c2b3a4d5e6f/coredns");
    std::fs::create_dir_all(&cri_dir).unwrap();
    std::fs::create_dir_all(&docker_dir).unwrap();
    // Present before start: start_at end skips it, what is appended later arrives.
    std::fs::write(cri_dir.join("0.log"), "2024-03-01T10:00:00Z stdout F old, not read\n").unwrap();
    let storage = work.path().join("storage");
    let (backend, got) = logs_backend();
    let extra = "    operators:\n      - type: container\n    max_log_size: 1KiB\n    include_file_path: true";
    let cfg = config(&format!("{}/*/*/*.log", pods.display()), &storage, backend, extra)
        .replace("start_at: beginning", "start_at: end");
    let gw = Gateway::start(&cfg);
    std::thread::sleep(Duration::from_millis(300));
    let mut cri = std::fs::OpenOptions::new().append(true).open(cri_dir.join("0.log")).unwrap();
    cri.write_all(b"2024-03-01T10:00:01.5Z stdout P first half, \n2024-03-01T10:00:01.6Z stdout F second half\n")
        .unwrap();
    cri.write_all(b"2024-03-01T10:00:02Z stderr F failed to connect\n").unwrap();
    std::fs::write(
        docker_dir.join("1.log"),
        concat!(
            r#"{"log":"partial ","stream":"stdout","time":"2024-03-01T10:00:03Z"}"#,
            "\n",
            r#"{"log":"joined\n","stream":"stdout","time":"2024-03-01T10:00:03.1Z"}"#,
            "\n"
        ),
    )
    .unwrap();
    // A binary file and an over-long line in the glob.
    let binary: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(docker_dir.join("2.log"), &binary).unwrap();
    std::fs::write(cri_dir.join("1.log"), format!("2024-03-01T10:00:04Z stdout F {}\n", "x".repeat(3000))).unwrap();

    let bodies = || got.lock().unwrap().iter().map(|g| g.body.clone()).collect::<Vec<_>>();
    assert!(
        eventually(Duration::from_secs(15), || {
            let b = bodies();
            b.contains(&"first half, second half".to_string()) && b.contains(&"partial joined".to_string())
        }),
        "{:?}\n{}",
        bodies(),
        gw.log()
    );
    std::thread::sleep(Duration::from_millis(1500));
    let all = got.lock().unwrap().clone();
    assert!(!all.iter().any(|g| g.body.contains("old, not read")), "start_at: end");
    let joined = all.iter().find(|g| g.body == "first half, second half").unwrap();
    assert_eq!(joined.resource["k8s.namespace.name"], "shop");
    assert_eq!(joined.resource["k8s.pod.name"], "checkout-7d9f");
    assert_eq!(joined.resource["k8s.pod.uid"], "0c1f7f7e-2b1a-4d7e-9d61-1c2b3a4d5e6f");
    assert_eq!(joined.resource["k8s.container.name"], "server");
    assert_eq!(joined.resource["k8s.container.restart_count"], "0");
    assert_eq!(joined.attrs["log.iostream"], "stdout");
    assert_eq!(joined.attrs["log.file.path"], cri_dir.join("0.log").display().to_string());
    assert_eq!(joined.time, 1_709_287_201_500_000_000, "the time of the line's first part");
    let err = all.iter().find(|g| g.body == "failed to connect").unwrap();
    assert_eq!(err.attrs["log.iostream"], "stderr");
    assert_eq!(all.iter().find(|g| g.body == "partial joined").unwrap().resource["k8s.container.name"], "coredns");
    let long: Vec<&Got> = all.iter().filter(|g| g.body.starts_with("xxx")).collect();
    assert_eq!(long.iter().map(|g| g.body.len()).sum::<usize>(), 3000, "the over-long entry arrives in pieces, whole");
    let invalid = |code: &str| {
        gw.metric("switchyard_receiver_invalid_requests_total", &[("receiver", "filelog"), ("code", code)])
    };
    assert!(invalid("too_large") >= 1.0, "{}", gw.log());
    assert!(invalid("malformed") >= 1.0, "the binary file is not in a container format");
}

/// The operators an agent runs after `container`: three apps on one node — a JSON app and a
/// Java app in CRI format, a logfmt app in Docker's — with the Java app's stack traces joined
/// by `recombine`, a router choosing the parser, and the time and severity taken from the lines.
#[test]
fn container_logs_parsed_by_operators() {
    let work = tempfile::tempdir().unwrap();
    let pods = work.path().join("pods");
    let uid = "0c1f7f7e-2b1a-4d7e-9d61-1c2b3a4d5e6f";
    let dir = |pod: &str, container: &str| {
        let d = pods.join(format!("shop_{pod}_{uid}/{container}"));
        std::fs::create_dir_all(&d).unwrap();
        d.join("0.log")
    };
    let (checkout, billing, ledger) =
        (dir("checkout-7d9f", "checkout"), dir("billing-5c4d", "billing"), dir("ledger-6b5", "java"));
    let storage = work.path().join("storage");
    let (backend, got) = logs_backend();
    let operators = r#"    include_file_path: true
    operators:
      - type: container
      - type: recombine
        id: java_stack
        if: resource["k8s.container.name"] == "java"
        combine_field: body
        is_first_entry: body matches "^\\d{4}-\\d{2}-\\d{2} "
        force_flush_period: 500ms
      - type: router
        routes:
          - expr: body matches "^\\{"
            output: json
          - expr: resource["k8s.container.name"] == "java"
            output: java
        default: logfmt
      - type: json_parser
        id: json
        timestamp:
          parse_from: attributes.ts
          layout_type: gotime
          layout: 2006-01-02T15:04:05.000Z07:00
        severity:
          parse_from: attributes.level
      - type: move
        from: attributes.msg
        to: body
        on_error: send_quiet
        output: done
      - type: key_value_parser
        id: logfmt
        timestamp:
          parse_from: attributes.time
          layout: '%Y-%m-%dT%H:%M:%SZ'
          location: UTC
        severity:
          parse_from: attributes.level
      - type: move
        from: attributes.msg
        to: body
        output: done
      - type: regex_parser
        id: java
        regex: '^(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) (?P<level>[A-Z]+) +\[(?P<thread>[^\]]+)\] (?P<logger>\S+) - (?P<message>.*)'
        timestamp:
          parse_from: attributes.time
          layout: '%Y-%m-%d %H:%M:%S.%L'
          location: UTC
        severity:
          parse_from: attributes.level
      - type: add
        id: done
        field: resource["deployment.environment"]
        value: prod"#;
    let gw = Gateway::start(&config(&format!("{}/*/*/*.log", pods.display()), &storage, backend, operators));
    let write = |path: &Path, text: &str| {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    write(
        &checkout,
        concat!(
            "2024-03-01T10:00:01.100Z stdout F {\"ts\":\"2024-03-01T10:00:01.000Z\",\"level\":\"info\",\"msg\":\"order placed\",\"order_id\":\"A-1001\",\"amount\":42.5}\n",
            "2024-03-01T10:00:02.200Z stderr F {\"ts\":\"2024-03-01T10:00:02.000Z\",\"level\":\"error\",\"msg\":\"payment declined\",\"order_id\":\"A-1002\"}\n",
            "2024-03-01T10:00:02.300Z stdout P {\"ts\":\"2024-03-01T10:00:02.300Z\",\"level\":\"warn\",\"msg\":\"slow query\",\"query\":\"SELECT\n",
            "2024-03-01T10:00:02.300Z stdout F  * FROM orders\"}\n",
            "2024-03-01T10:00:02.400Z stdout F {\"ts\": broken\n",
        ),
    );
    write(
        &billing,
        concat!(
            r#"{"log":"time=2024-03-01T10:00:03Z level=warn msg=\"cache miss\" key=user:42\n","stream":"stdout","time":"2024-03-01T10:00:03.5Z"}"#,
            "\n",
            r#"{"log":"time=2024-03-01T10:00:04Z level=debug msg=\"refreshed token\" took=3ms\n","stream":"stdout","time":"2024-03-01T10:00:04.5Z"}"#,
            "\n",
        ),
    );
    // The stack trace arrives in two writes, a poll apart, as a logger flushes it.
    write(
        &ledger,
        concat!(
            "2024-03-01T10:00:05.124Z stdout F 2024-03-01 10:00:05.123 ERROR [http-nio-8080-exec-1] c.e.ledger.PostingService - posting failed\n",
            "2024-03-01T10:00:05.125Z stdout F java.lang.IllegalStateException: account locked\n",
            "2024-03-01T10:00:05.125Z stdout F \tat com.example.ledger.PostingService.post(PostingService.java:88)\n",
        ),
    );
    std::thread::sleep(Duration::from_millis(150));
    write(
        &ledger,
        concat!(
            "2024-03-01T10:00:05.126Z stdout F \tat com.example.ledger.Api.handle(Api.java:41)\n",
            "2024-03-01T10:00:05.126Z stdout F Caused by: java.sql.SQLException: lock timeout\n",
            "2024-03-01T10:00:05.126Z stdout F \t... 12 more\n",
            "2024-03-01T10:00:06.001Z stdout F 2024-03-01 10:00:06.000 INFO  [main] c.e.ledger.Health - healthy\n",
        ),
    );

    let arrived = eventually(Duration::from_secs(15), || got.lock().unwrap().len() >= 8);
    std::thread::sleep(Duration::from_millis(700));
    let all = got.lock().unwrap().clone();
    assert!(arrived, "{:#?}\n{}", all, gw.log());
    assert_eq!(all.len(), 8, "each stack trace line is part of one record: {all:#?}");
    let find = |body: &str| {
        all.iter().find(|g| g.body.starts_with(body)).unwrap_or_else(|| panic!("no {body:?} in {all:#?}")).clone()
    };

    // The JSON app: parsed into attributes, the message moved to the body.
    let placed = find("order placed");
    assert_eq!(placed.attrs["order_id"], "A-1001");
    assert!(placed.attrs["amount"].contains("42.5"), "{:?}", placed.attrs);
    assert_eq!((placed.severity, placed.severity_text.as_str()), (9, "info"));
    assert_eq!(placed.time, 1_709_287_201_000_000_000, "from the app's ts, not the container's time");
    assert_eq!(placed.attrs["log.iostream"], "stdout");
    assert_eq!(placed.attrs["log.file.path"], checkout.display().to_string());
    assert_eq!(placed.resource["k8s.container.name"], "checkout");
    assert_eq!(placed.resource["deployment.environment"], "prod");
    let declined = find("payment declined");
    assert_eq!((declined.severity, declined.attrs["log.iostream"].as_str()), (17, "stderr"));
    let slow = find("slow query");
    assert_eq!(slow.attrs["query"], "SELECT * FROM orders", "CRI partial lines joined before parsing");
    assert_eq!((slow.severity, slow.time), (13, 1_709_287_202_300_000_000));
    // A line the JSON parser cannot read arrives as it was (on_error: send), and is counted.
    let broken = find("{\"ts\": broken");
    assert_eq!((broken.severity, broken.attrs.get("level")), (0, None));
    assert_eq!(broken.time, 1_709_287_202_400_000_000, "the container's time stays");

    // The logfmt app, in Docker's format.
    let miss = find("cache miss");
    assert_eq!(miss.attrs["key"], "user:42");
    assert_eq!((miss.severity, miss.severity_text.as_str()), (13, "warn"));
    assert_eq!(miss.time, 1_709_287_203_000_000_000);
    assert_eq!(miss.resource["k8s.container.name"], "billing");
    let token = find("refreshed token");
    assert_eq!((token.severity, token.attrs["took"].as_str()), (5, "3ms"));

    // The Java app: the stack trace is one record, parsed from its first line.
    let failed = find("2024-03-01 10:00:05.123 ERROR");
    assert_eq!(
        failed.body,
        "2024-03-01 10:00:05.123 ERROR [http-nio-8080-exec-1] c.e.ledger.PostingService - posting failed\n\
         java.lang.IllegalStateException: account locked\n\
         \tat com.example.ledger.PostingService.post(PostingService.java:88)\n\
         \tat com.example.ledger.Api.handle(Api.java:41)\n\
         Caused by: java.sql.SQLException: lock timeout\n\
         \t... 12 more"
    );
    assert_eq!(failed.attrs["message"], "posting failed");
    assert_eq!(failed.attrs["thread"], "http-nio-8080-exec-1");
    assert_eq!(failed.attrs["logger"], "c.e.ledger.PostingService");
    assert_eq!((failed.severity, failed.severity_text.as_str()), (17, "ERROR"));
    assert_eq!(failed.time, 1_709_287_205_123_000_000);
    assert_eq!(failed.resource["k8s.container.name"], "java");
    let healthy = find("2024-03-01 10:00:06.000 INFO");
    assert_eq!((healthy.severity, healthy.attrs["message"].as_str()), (9, "healthy"));
    assert!(!healthy.body.contains('\n'), "the last entry is sent after recombine's force_flush_period");

    let invalid = |code: &str| {
        gw.metric("switchyard_receiver_invalid_requests_total", &[("receiver", "filelog"), ("code", code)])
    };
    assert!(invalid("operator_error") >= 1.0, "the broken JSON line is counted\n{}", gw.log());
}

/// Lines that `recombine` still gathers when switchyard is killed are read again after the
/// restart: the saved offset stops before them.
#[test]
fn lines_recombine_holds_survive_a_kill_9() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("java.log");
    let storage = work.path().join("storage");
    let (backend, got) = logs_backend();
    let extra = r#"    operators:
      - type: recombine
        combine_field: body
        is_first_entry: body matches "^\\d{4}-"
        force_flush_period: 1h"#;
    let cfg = config(&file.display().to_string(), &storage, backend, extra);
    let first = Gateway::start(&cfg);
    std::fs::write(&file, "2024-03-01 10:00:00 one\n  at a\n2024-03-01 10:00:01 two\n  at b\n").unwrap();
    assert!(eventually(Duration::from_secs(10), || got.lock().unwrap().len() == 1), "{}", first.log());
    std::thread::sleep(Duration::from_millis(500));
    signal(first.pid(), "KILL");
    drop(first);
    let second = Gateway::start(&cfg.replace("force_flush_period: 1h", "force_flush_period: 200ms"));
    let ok = eventually(Duration::from_secs(10), || got.lock().unwrap().len() >= 2);
    std::thread::sleep(Duration::from_millis(500));
    let bodies: Vec<String> = got.lock().unwrap().iter().map(|g| g.body.clone()).collect();
    assert!(ok, "{bodies:?}\n{}", second.log());
    assert_eq!(bodies, ["2024-03-01 10:00:00 one\n  at a", "2024-03-01 10:00:01 two\n  at b"], "each once");
}

#[test]
fn an_operator_configuration_error_names_its_key() {
    let work = tempfile::tempdir().unwrap();
    let (backend, _got) = logs_backend();
    let extra = "    operators:\n      - type: container\n      - type: regex_parser\n        regex: '(?P<a>unclosed'";
    let cfg = config(&work.path().join("*.log").display().to_string(), &work.path().join("s"), backend, extra);
    let path = work.path().join("bad.yaml");
    std::fs::write(&path, cfg.replace("{metrics}", "0")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["validate", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("operators.1.regex"), "{text}");
}

#[test]
fn multiline_entries_start_at_a_pattern() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("java.log");
    let storage = work.path().join("storage");
    let (backend, got) = logs_backend();
    let extra = "    multiline:\n      line_start_pattern: '^\\d{4}-\\d{2}-\\d{2} '";
    let gw = Gateway::start(&config(&file.display().to_string(), &storage, backend, extra));
    std::fs::write(
        &file,
        "2024-03-01 10:00:00 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat a.b(C.java:1)\n2024-03-01 10:00:01 INFO next\n",
    )
    .unwrap();
    let ok = eventually(Duration::from_secs(10), || got.lock().unwrap().len() == 2);
    let all = got.lock().unwrap().clone();
    assert!(ok, "{all:?}\n{}", gw.log());
    assert_eq!(
        all[0].body,
        "2024-03-01 10:00:00 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat a.b(C.java:1)"
    );
    assert_eq!(all[1].body, "2024-03-01 10:00:01 INFO next", "the last entry is sent after force_flush_period");
}

#[test]
fn a_file_renamed_out_of_the_glob_is_read_while_its_writer_still_writes_to_it() {
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let app = logs.join("app.log");
    let (backend, got) = logs_backend();
    let first = Gateway::start(&config(&format!("{}/app.log", logs.display()), &work.path().join("s"), backend, ""));
    append(&app, 1, 100, 50);
    assert!(eventually(Duration::from_secs(10), || counts(&got).len() == 100), "{}", first.log());
    // Rotation by rename to a name outside the glob; the writer keeps its descriptor and goes on
    // writing for several poll intervals (50 ms) before it reopens the path, as a logger does
    // until it is told to.
    let rotated = logs.join("app.old");
    let mut held = std::fs::OpenOptions::new().append(true).open(&app).unwrap();
    std::fs::rename(&app, &rotated).unwrap();
    for n in 101..=160 {
        held.write_all(line(n).as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    append(&app, 161, 200, 50);
    assert!(
        eventually(Duration::from_secs(10), || counts(&got).len() == 200),
        "missing {:?}\n{}",
        (1..=200).filter(|n| !counts(&got).contains_key(n)).collect::<Vec<_>>(),
        first.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(counts(&got).values().all(|k| *k == 1), "each line once");
}
