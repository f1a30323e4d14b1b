//! The `kafka` exporter and receiver through a real Kafka-compatible broker: tansu (crates.io,
//! built with `--features dynostore` by scripts/install-peers.sh, memory storage), started by
//! the test on loopback. One switchyard takes the Python SDK's traces over OTLP and produces them
//! (a message per trace, keyed by trace id); a second switchyard consumes them as a consumer
//! group and writes what it gets to a file; the real `kafka-python` client reads the same
//! messages and the group's committed offsets. A consumer whose exporter cannot deliver (OTLP
//! to a port nothing listens on) commits nothing past what is undelivered, so a successor in
//! its group reads it all; and `encoding: otlp_json` carries OTLP/JSON from producer to consumer.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Tansu {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Tansu {
    fn start() -> Option<Tansu> {
        let bin = peer(&repo().join("target/peers/tansu/bin/tansu"), "the tansu broker")?;
        let port = free_port();
        // An IP address in both URLs: a host name makes tansu bind every interface, and the
        // advertised address is where clients (and group coordinators) connect.
        let url = format!("tcp://127.0.0.1:{port}");
        // tansu reads a .env file in its working directory and these variables: keep them out.
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .current_dir(dir.path())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/", "--cluster-id", "switchyard-test", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        assert!(
            eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "tansu did not listen"
        );
        Some(Tansu { child, port, _dir: dir })
    }

    fn create_topic(&self, name: &str, partitions: i32) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{}", self.port)])
                .build()
                .await
                .expect("connect to tansu");
            client.controller_client().unwrap().create_topic(name, partitions, 1, 5_000).await.expect("create topic");
        });
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Produces `values` to `partition` of `topic` with rskafka (as any producer would).
fn produce(port: u16, topic: &str, partition: i32, values: Vec<Vec<u8>>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")]).build().await.unwrap();
        let pc = client
            .partition_client(topic, partition, rskafka::client::partition::UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let records = values
            .into_iter()
            .map(|v| rskafka::record::Record {
                key: None,
                value: Some(v),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            })
            .collect();
        pc.produce(records, Default::default()).await.unwrap();
    });
}

/// An OTLP trace export request of one span named `name`.
fn one_span(name: &str) -> Vec<u8> {
    let mut id = [0u8; 16];
    id[..name.len().min(16)].copy_from_slice(&name.as_bytes()[..name.len().min(16)]);
    id[15] = 1;
    ExportTraceServiceRequest {
        resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
            scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                spans: vec![span(name, id.to_vec())],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// The partitions of the last "kafka partitions assigned" line of a switchyard log.
fn assigned(log: &str) -> Option<Vec<i32>> {
    let line = log.lines().rev().find(|l| l.contains("kafka partitions assigned"))?;
    let list = line.split("partitions=[").nth(1)?.split(']').next()?;
    Some(list.split(',').filter_map(|p| p.trim().parse().ok()).collect())
}

/// Produces `per` one-span messages to each of the 4 partitions, named `{round}p{p}-m{i}`.
fn produce_round(port: u16, round: &str, per: usize) {
    for p in 0..4 {
        produce(port, "otlp_spans", p, (0..per).map(|i| one_span(&format!("{round}p{p}-m{i}"))).collect());
    }
}

/// The span names `produce_round` wrote to `partitions`, sorted.
fn round_names(round: &str, partitions: &[i32], per: usize) -> Vec<String> {
    let mut v: Vec<String> =
        partitions.iter().flat_map(|p| (0..per).map(move |i| format!("{round}p{p}-m{i}"))).collect();
    v.sort();
    v
}

/// What kafka-python sees: (messages, end offsets, the group's committed offsets).
fn kafka_python(python: &Path, port: u16, topic: &str, group: &str) -> serde_json::Value {
    let out = Command::new(python)
        .arg(repo().join("tests/peers/python/kafka_read.py"))
        .args([&format!("127.0.0.1:{port}"), topic, group])
        .output()
        .expect("run kafka_read.py");
    assert!(out.status.success(), "kafka_read.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("kafka_read.py prints JSON")
}

fn producer_config(port: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
exporters:
  kafka:
    brokers: [127.0.0.1:{port}]
    partition_traces_by_id: true
    producer:
      compression: gzip
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [kafka]
"#
    )
}

fn consumer_config(port: u16, out: &Path) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: [127.0.0.1:{port}]
    group_id: switchyard-test
    initial_offset: earliest
    autocommit:
      interval: 200ms
exporters:
  file:
    path: {out}
    flush_interval: 50ms
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [file]
"#,
        out = out.display()
    )
}

/// Span ids (hex) in a file exporter's output.
fn span_ids(path: &Path) -> Vec<String> {
    json_lines(path)
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["spanId"].as_str().map(|id| id.to_ascii_lowercase()))
        .collect()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

fn fnv1a(key: &[u8]) -> u32 {
    key.iter().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x01000193))
}

#[test]
fn traces_cross_kafka_between_two_switchyards_and_offsets_are_committed_after_delivery() {
    let Some(python) = python_peer() else { return };
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("otlp_spans", 3);
    let producer = Gateway::start(&producer_config(tansu.port));
    let mut sent: Vec<serde_json::Value> = Vec::new();
    for i in 0..4 {
        let s = python_sends(&python, producer.grpc, "traces", 5, &producer.path(&format!("sent{i}.json")));
        sent.extend(s["spans"].as_array().cloned().unwrap());
    }
    let sent_ids: BTreeSet<String> = sent.iter().map(|s| s["span_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(sent_ids.len(), 20);

    let work = tempfile::tempdir().unwrap();
    let out: PathBuf = work.path().join("consumed.jsonl");
    let mut consumer = Gateway::start(&consumer_config(tansu.port, &out));
    let got = || span_ids(&out).into_iter().collect::<BTreeSet<String>>();
    assert!(
        eventually(Duration::from_secs(20), || got() == sent_ids),
        "consumed {} of 20\nproducer:\n{}\nconsumer:\n{}",
        got().len(),
        producer.log(),
        consumer.log()
    );

    // kafka-python reads the same messages: one per trace, keyed by trace id, on its partition.
    let seen = kafka_python(&python, tansu.port, "otlp_spans", "switchyard-test");
    let messages = seen["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "one message per trace: {seen}");
    let mut from_kafka = BTreeSet::new();
    for m in messages {
        let key = hex(m["key_hex"].as_str().unwrap());
        assert_eq!(key.len(), 16, "the key is the trace id");
        assert_eq!(m["partition"].as_u64().unwrap() as u32, fnv1a(&key) % 3, "partitioned by the key's hash");
        let request = ExportTraceServiceRequest::decode(&hex(m["value_hex"].as_str().unwrap())[..]).unwrap();
        for span in request.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            assert_eq!(span.trace_id, key, "every span of the message is of the key's trace");
            from_kafka.insert(span.span_id.iter().map(|b| format!("{b:02x}")).collect::<String>());
        }
    }
    assert_eq!(from_kafka, sent_ids);
    // The consumer committed everything it delivered.
    assert!(
        eventually(Duration::from_secs(10), || {
            let s = kafka_python(&python, tansu.port, "otlp_spans", "switchyard-test");
            s["committed"].as_object().unwrap().iter().all(|(p, c)| s["end_offsets"][p] == *c)
        }),
        "{}",
        kafka_python(&python, tansu.port, "otlp_spans", "switchyard-test")
    );

    // Restarted with the same group, it reads only what came after.
    let (status, _) = consumer.stop();
    assert!(status.success());
    let more = python_sends(&python, producer.grpc, "traces", 3, &producer.path("sent-more.json"));
    let more_ids: BTreeSet<String> =
        more["spans"].as_array().unwrap().iter().map(|s| s["span_id"].as_str().unwrap().to_string()).collect();
    let out2 = work.path().join("consumed-again.jsonl");
    let again = Gateway::start(&consumer_config(tansu.port, &out2));
    let got2 = || span_ids(&out2).into_iter().collect::<BTreeSet<String>>();
    assert!(eventually(Duration::from_secs(20), || got2() == more_ids), "{:?}\n{}", got2(), again.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(got2(), more_ids, "nothing already delivered came again");
}

#[test]
fn a_message_that_is_not_otlp_is_counted_and_skipped() {
    let Some(_python) = python_peer() else { return };
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("otlp_spans", 1);
    produce(tansu.port, "otlp_spans", 0, vec![b"\xff\xff not protobuf".to_vec(), one_span("after-the-bad-one")]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("consumed.jsonl");
    let consumer = Gateway::start(&consumer_config(tansu.port, &out));
    assert!(eventually(Duration::from_secs(15), || span_names(&out) == ["after-the-bad-one"]), "{}", consumer.log());
    assert_eq!(
        consumer.metric("switchyard_receiver_invalid_requests_total", &[("receiver", "kafka"), ("code", "malformed")]),
        1.0
    );
}

#[test]
fn two_switchyards_in_one_group_share_the_partitions_and_one_leaving_hands_them_over() {
    let Some(_python) = python_peer() else { return };
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("otlp_spans", 4);
    let work = tempfile::tempdir().unwrap();
    let (out_a, out_b) = (work.path().join("a.jsonl"), work.path().join("b.jsonl"));
    let a = Gateway::start(&consumer_config(tansu.port, &out_a));
    assert!(
        eventually(Duration::from_secs(20), || assigned(&a.log()) == Some(vec![0, 1, 2, 3])),
        "alone, A reads every partition:\n{}",
        a.log()
    );
    let mut b = Gateway::start(&consumer_config(tansu.port, &out_b));
    // The group settles when A has given up what B was given (A hears of B at a heartbeat).
    let settled = || split_between(assigned(&a.log()), assigned(&b.log()));
    assert!(eventually(Duration::from_secs(30), settled), "A:\n{}\nB:\n{}", a.log(), b.log());
    let (mine_a, mine_b) = (assigned(&a.log()).unwrap(), assigned(&b.log()).unwrap());
    produce_round(tansu.port, "", 5);
    let names = |ps: &[i32], round: &str| round_names(round, ps, 5);
    // Each message is read once, by the member that holds its partition.
    assert!(
        eventually(Duration::from_secs(20), || span_names(&out_a).len() + span_names(&out_b).len() >= 20),
        "A:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(span_names(&out_a), names(&mine_a, ""), "A holds {mine_a:?}");
    assert_eq!(span_names(&out_b), names(&mine_b, ""), "B holds {mine_b:?}");

    // B stops (and leaves the group): A takes every partition and goes on from B's commits.
    let (status, _) = b.stop();
    assert!(status.success());
    assert!(
        eventually(Duration::from_secs(30), || assigned(&a.log()) == Some(vec![0, 1, 2, 3])),
        "A takes over:\n{}",
        a.log()
    );
    produce_round(tansu.port, "again-", 5);
    let mut want: Vec<String> = names(&mine_a, "").into_iter().chain(names(&[0, 1, 2, 3], "again-")).collect();
    want.sort();
    assert!(
        eventually(Duration::from_secs(20), || span_names(&out_a) == want),
        "{:?}\n{}",
        span_names(&out_a),
        a.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(span_names(&out_a), want, "nothing B delivered came again");
}

/// A kafka-python group member (tests/peers/python/kafka_member.py) and what it printed.
struct PythonMember {
    child: Child,
    stopfile: PathBuf,
    log: PathBuf,
    lines: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl PythonMember {
    fn start(python: &Path, port: u16, group: &str, dir: &Path, name: &str) -> PythonMember {
        let stopfile = dir.join(format!("{name}.stop"));
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(python)
            .arg(repo().join("tests/peers/python/kafka_member.py"))
            .args([&format!("127.0.0.1:{port}"), "otlp_spans", group, stopfile.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run kafka_member.py");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(serde_json::from_str(&line).expect("kafka_member.py prints JSON"));
            }
        });
        PythonMember { child, stopfile, log, lines }
    }

    /// What kafka-python logged (joins, syncs, leaves).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its latest assignment.
    fn assigned(&self) -> Option<Vec<i32>> {
        let lines = self.lines.lock().unwrap();
        let last = lines.iter().rev().find(|l| l.get("assigned").is_some())?;
        Some(last["assigned"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap() as i32).collect())
    }

    /// The span names of the messages it read, sorted.
    fn names(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        let mut names: Vec<String> = lines
            .iter()
            .filter_map(|l| l["value_hex"].as_str())
            .flat_map(|v| ExportTraceServiceRequest::decode(&hex(v)[..]).unwrap().resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.name)
            .collect();
        names.sort();
        names
    }

    /// Tells it to stop; returns its log once it has closed (and so left the group).
    fn stop(mut self) -> String {
        std::fs::write(&self.stopfile, b"").unwrap();
        assert!(eventually(Duration::from_secs(20), || matches!(self.child.try_wait(), Ok(Some(_)))));
        self.log()
    }
}

/// Both sides of one group are settled when they hold disjoint, non-empty parts of all 4.
fn split_between(x: Option<Vec<i32>>, y: Option<Vec<i32>>) -> bool {
    match (x, y) {
        (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => {
            let mut all: Vec<i32> = x.into_iter().chain(y).collect();
            all.sort();
            all == [0, 1, 2, 3]
        }
        _ => false,
    }
}

#[test]
fn switchyard_shares_a_group_with_kafka_python_as_follower_and_as_leader() {
    let Some(python) = python_peer() else { return };
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("otlp_spans", 4);
    let work = tempfile::tempdir().unwrap();
    let spans = |round: &str, ps: &[i32]| round_names(round, ps, 3);
    let produce_round = |round: &str| produce_round(tansu.port, round, 3);

    // kafka-python first, so it leads; switchyard follows and reads the assignment it is sent.
    let first = PythonMember::start(&python, tansu.port, "mixed", work.path(), "first");
    assert!(eventually(Duration::from_secs(30), || first.assigned() == Some(vec![0, 1, 2, 3])));
    let out = work.path().join("switchyard.jsonl");
    let a = Gateway::start(&consumer_config(tansu.port, &out).replace("switchyard-test", "mixed"));
    assert!(
        eventually(Duration::from_secs(30), || split_between(first.assigned(), assigned(&a.log()))),
        "python {:?}\n{}\n{}",
        first.assigned(),
        first.log(),
        a.log()
    );
    let (py, sy) = (first.assigned().unwrap(), assigned(&a.log()).unwrap());
    produce_round("");
    assert!(
        eventually(Duration::from_secs(20), || first.names().len() + span_names(&out).len() >= 12),
        "python {:?}\n{}",
        first.names(),
        a.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(first.names(), spans("", &py), "kafka-python read its partitions {py:?}");
    assert_eq!(span_names(&out), spans("", &sy), "switchyard read its partitions {sy:?}");

    // kafka-python leaves; switchyard takes every partition and leads; a new kafka-python member
    // joins and reads the partitions switchyard assigns it, from the group's commits.
    let first_log = first.stop();
    assert!(
        eventually(Duration::from_secs(30), || assigned(&a.log()) == Some(vec![0, 1, 2, 3])),
        "kafka-python:\n{first_log}\nswitchyard:\n{}",
        a.log()
    );
    let second = PythonMember::start(&python, tansu.port, "mixed", work.path(), "second");
    assert!(
        eventually(Duration::from_secs(30), || split_between(second.assigned(), assigned(&a.log()))),
        "python {:?}\n{}\n{}",
        second.assigned(),
        second.log(),
        a.log()
    );
    assert!(a.log().contains("assigned the group's partitions as leader"), "{}", a.log());
    let (py2, sy2) = (second.assigned().unwrap(), assigned(&a.log()).unwrap());
    produce_round("again-");
    let mut want_sy = spans("", &sy);
    want_sy.extend(spans("again-", &sy2));
    want_sy.sort();
    assert!(
        eventually(Duration::from_secs(20), || second.names() == spans("again-", &py2) && span_names(&out) == want_sy),
        "python {:?}\nswitchyard {:?}\n{}",
        second.names(),
        span_names(&out),
        a.log()
    );
    let _ = second.stop();
}

/// A consumer in `group` whose exporter cannot deliver: OTLP/gRPC to a port nothing listens on,
/// retried for ever, so what it reads stays in flight.
fn stuck_consumer_config(port: u16, group: &str) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: [127.0.0.1:{port}]
    group_id: {group}
    initial_offset: earliest
    session_timeout: 3s
    heartbeat_interval: 1s
    autocommit:
      interval: 200ms
exporters:
  otlp:
    endpoint: 127.0.0.1:{{port:nowhere}}
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
      max_elapsed_time: 0
service:
  shutdown_timeout: 2s
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [otlp]
"#
    )
}

#[test]
fn offsets_of_undelivered_messages_are_not_committed_so_the_next_member_reads_them() {
    let Some(python) = python_peer() else { return };
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("otlp_spans", 1);
    let names: Vec<String> = (0..3).map(|i| format!("undelivered-{i}")).collect();
    produce(tansu.port, "otlp_spans", 0, names.iter().map(|n| one_span(n)).collect());

    let mut stuck = Gateway::start(&stuck_consumer_config(tansu.port, "G"));
    // It read all three (the queue took them) and keeps trying to deliver them.
    assert!(
        eventually(Duration::from_secs(20), || stuck
            .metric("otelcol_receiver_accepted_spans_total", &[("receiver", "kafka")])
            == 3.0),
        "{}",
        stuck.log()
    );
    assert!(eventually(Duration::from_secs(10), || stuck.log().contains("failing since")));
    // Many commit intervals later, the group's offset has not moved past the first of them.
    std::thread::sleep(Duration::from_secs(3));
    let seen = kafka_python(&python, tansu.port, "otlp_spans", "G");
    assert_eq!(seen["messages"].as_array().map(Vec::len), Some(3), "{seen}");
    let committed = &seen["committed"]["0"];
    assert!(
        committed.is_null() || committed.as_i64().is_some_and(|c| c <= 0),
        "nothing delivered, nothing committed past offset 0: {seen}\n{}",
        stuck.log()
    );
    assert_eq!(stuck.metric("otelcol_exporter_sent_spans_total", &[]), 0.0);

    // It stops without having delivered anything (its shutdown deadline drops the data); a new
    // member of the group, whose exporter works, gets all three messages.
    let _ = stuck.stop();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("consumed.jsonl");
    let next = Gateway::start(&consumer_config(tansu.port, &out).replace("switchyard-test", "G"));
    assert!(
        eventually(Duration::from_secs(40), || span_names(&out) == names),
        "{:?}\n{}",
        span_names(&out),
        next.log()
    );
    let done = || {
        let s = kafka_python(&python, tansu.port, "otlp_spans", "G");
        s["committed"]["0"] == 3
    };
    assert!(eventually(Duration::from_secs(10), done), "once delivered, committed");
}

#[test]
fn otlp_json_encoding_crosses_kafka_between_two_switchyards() {
    let Some(python) = python_peer() else { return };
    let Some(tansu) = Tansu::start() else { return };
    tansu.create_topic("otlp_spans", 2);
    let json = "    encoding: otlp_json\n";
    let producer = Gateway::start(
        &producer_config(tansu.port)
            .replace("    partition_traces_by_id", &format!("{json}    partition_traces_by_id")),
    );
    let sent = python_sends(&python, producer.grpc, "traces", 4, &producer.path("sent.json"));
    let sent_ids: BTreeSet<String> =
        sent["spans"].as_array().unwrap().iter().map(|s| s["span_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(sent_ids.len(), 4);

    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("consumed.jsonl");
    let consumer =
        Gateway::start(&consumer_config(tansu.port, &out).replace("    group_id:", &format!("{json}    group_id:")));
    let got = || span_ids(&out).into_iter().collect::<BTreeSet<String>>();
    assert!(
        eventually(Duration::from_secs(20), || got() == sent_ids),
        "consumed {:?}\nproducer:\n{}\nconsumer:\n{}",
        got(),
        producer.log(),
        consumer.log()
    );
    assert_eq!(consumer.metric("switchyard_receiver_invalid_requests_total", &[]), 0.0);

    // On the wire: OTLP/JSON, one request per trace, trace ids in hex as OTLP/JSON wants.
    let seen = kafka_python(&python, tansu.port, "otlp_spans", "switchyard-test");
    let messages = seen["messages"].as_array().unwrap();
    assert!(!messages.is_empty(), "{seen}");
    let mut from_kafka = BTreeSet::new();
    for m in messages {
        let value = hex(m["value_hex"].as_str().unwrap());
        assert_eq!(value.first(), Some(&b'{'), "{}", String::from_utf8_lossy(&value));
        let request: serde_json::Value = serde_json::from_slice(&value).expect("the value is JSON");
        for span in request["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .flat_map(|s| s["spans"].as_array().unwrap())
        {
            assert_eq!(span["traceId"].as_str().unwrap().to_ascii_lowercase(), m["key_hex"], "{request}");
            from_kafka.insert(span["spanId"].as_str().unwrap().to_ascii_lowercase());
        }
    }
    assert_eq!(from_kafka, sent_ids);
}
