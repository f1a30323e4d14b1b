//! The `kafka` exporter and receiver through a real Kafka-compatible broker: tansu (crates.io,
//! built with `--features dynostore` by scripts/install-peers.sh, memory storage), started by
//! the test on loopback. One switchyard takes the Python SDK's traces over OTLP and produces them
//! (a message per trace, keyed by trace id); a second switchyard consumes them as a consumer
//! group and writes what it gets to a file; the real `kafka-python` client reads the same
//! messages and the group's committed offsets.

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
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let good = {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans: vec![span("after-the-bad-one", vec![7; 16])],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        request.encode_to_vec()
    };
    rt.block_on(async {
        let client =
            rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{}", tansu.port)]).build().await.unwrap();
        let pc = client
            .partition_client("otlp_spans", 0, rskafka::client::partition::UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let record = |v: Vec<u8>| rskafka::record::Record {
            key: None,
            value: Some(v),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        pc.produce(vec![record(b"\xff\xff not protobuf".to_vec()), record(good)], Default::default()).await.unwrap();
    });
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("consumed.jsonl");
    let consumer = Gateway::start(&consumer_config(tansu.port, &out));
    assert!(eventually(Duration::from_secs(15), || span_names(&out) == ["after-the-bad-one"]), "{}", consumer.log());
    assert_eq!(
        consumer.metric("switchyard_receiver_invalid_requests_total", &[("receiver", "kafka"), ("code", "malformed")]),
        1.0
    );
}
