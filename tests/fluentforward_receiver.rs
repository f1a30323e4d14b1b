//! The `fluentforward` receiver: the real Python `fluent-logger` sends events (Message mode,
//! EventTime), and a gzip CompressedPackedForward message with a `chunk` built in the test is
//! acknowledged only after its events were handed on. Bad input (invalid msgpack, a frame that
//! declares 1 GiB) closes that connection and is counted; other connections keep working.
//! Acknowledgements wait for room: with the `otlphttp` exporter's one-request queue held by a
//! batch for a backend that is down, a Forward message built in the test gets no ack (and the
//! refusal is counted and logged) until the backend — a second switchyard taking OTLP/HTTP and
//! writing a file — comes up; then the waiting sender is acknowledged and nothing is lost.

mod common;

use common::*;
use rmpv::Value;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  fluent_forward:
    endpoint: 127.0.0.1:{port:forward}
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    logs:
      receivers: [fluent_forward]
      exporters: [file]
"#;

fn bodies(path: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for line in json_lines(path) {
        for rl in line["resourceLogs"].as_array().cloned().unwrap_or_default() {
            for sl in rl["scopeLogs"].as_array().cloned().unwrap_or_default() {
                for r in sl["logRecords"].as_array().cloned().unwrap_or_default() {
                    out.push((r["body"]["stringValue"].as_str().unwrap_or("").to_string(), r));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn attr(r: &serde_json::Value, key: &str) -> Option<serde_json::Value> {
    r["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
}

#[test]
fn fluent_logger_events_arrive_with_tag_body_attributes_and_nanoseconds() {
    let Some(python) = python_peer() else { return };
    let gw = Gateway::start(CONFIG);
    let out = Command::new(&python)
        .arg(repo().join("tests/peers/python/fluent_send.py"))
        .args([&gw.port("forward").to_string(), "app", "10"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = gw.path("out.jsonl");
    assert!(
        eventually(Duration::from_secs(10), || bodies(&path).len() == 10),
        "{:?}\n{}",
        bodies(&path).len(),
        gw.log()
    );
    let all = bodies(&path);
    let (body, r) = all.iter().find(|(b, _)| b == "event-3").unwrap();
    assert_eq!(body, "event-3");
    assert_eq!(attr(r, "fluent.tag"), Some(serde_json::json!({"stringValue": "app.odd"})));
    assert_eq!(attr(r, "i"), Some(serde_json::json!({"intValue": "3"})));
    assert_eq!(attr(r, "ok"), Some(serde_json::json!({"boolValue": true})));
    let t: u64 = r["timeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(
        all.iter().any(|(_, r)| !r["timeUnixNano"].as_str().unwrap().ends_with("000000000")),
        "EventTime keeps sub-second precision"
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    assert!(now.abs_diff(t) < 60_000_000_000);
}

fn entry(i: u32) -> Value {
    let mut t = 1_700_000_000u32.to_be_bytes().to_vec();
    t.extend_from_slice(&i.to_be_bytes());
    Value::Array(vec![Value::Ext(0, t), Value::Map(vec![(Value::from("log"), Value::from(format!("packed-{i}")))])])
}

#[test]
fn a_compressed_packed_forward_chunk_is_acknowledged_after_hand_off_and_bad_frames_are_refused() {
    let gw = Gateway::start(CONFIG);
    let port = gw.port("forward");
    // gzip CompressedPackedForward with a chunk id.
    let mut packed = Vec::new();
    for i in 0..5 {
        rmpv::encode::write_value(&mut packed, &entry(i)).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&packed).unwrap();
    let message = Value::Array(vec![
        Value::from("packed.tag"),
        Value::Binary(gz.finish().unwrap()),
        Value::Map(vec![
            (Value::from("compressed"), Value::from("gzip")),
            (Value::from("chunk"), Value::from("Y2h1bmstMQ==")),
        ]),
    ]);
    let mut frame = Vec::new();
    rmpv::encode::write_value(&mut frame, &message).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame).unwrap();
    let mut answer = vec![0u8; 256];
    let n = s.read(&mut answer).unwrap();
    let ack = rmpv::decode::read_value(&mut &answer[..n]).unwrap();
    assert_eq!(ack, Value::Map(vec![(Value::from("ack"), Value::from("Y2h1bmstMQ=="))]));
    // The ack came after hand-off: the events are on their way (the file exporter writes them).
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || bodies(&path).len() == 5), "{}", gw.log());
    let all = bodies(&path);
    assert_eq!(all[4].0, "packed-4");
    assert_eq!(all[4].1["timeUnixNano"], "1700000000000000004");
    // Invalid msgpack, and a frame declaring 1 GiB: each closes its connection and is counted.
    for bad in [vec![0xc1u8, 0, 0], vec![0x93, 0xa1, b't', 0xc6, 0x40, 0x00, 0x00, 0x00, 1, 2, 3]] {
        let mut b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        b.write_all(&bad).unwrap();
        let mut rest = Vec::new();
        assert_eq!(b.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0, "closed without an answer");
    }
    assert_eq!(
        gw.metric(
            "switchyard_receiver_invalid_requests_total",
            &[("receiver", "fluent_forward"), ("code", "malformed")]
        ),
        2.0
    );
    // The first connection still works.
    s.write_all(&frame).unwrap();
    let n = s.read(&mut answer).unwrap();
    assert!(n > 0, "acknowledged again");
}

/// A Forward-mode message `[tag, [[time, record], …], {"chunk": chunk}]` of events `{prefix}{i}`.
fn forward_with_chunk(prefix: &str, n: u32, chunk: &str) -> Vec<u8> {
    let entries = (0..n)
        .map(|i| {
            Value::Array(vec![
                Value::from(1_700_000_000u32 + i),
                Value::Map(vec![(Value::from("message"), Value::from(format!("{prefix}{i}")))]),
            ])
        })
        .collect();
    let message = Value::Array(vec![
        Value::from("acked.tag"),
        Value::Array(entries),
        Value::Map(vec![(Value::from("chunk"), Value::from(chunk))]),
    ]);
    let mut frame = Vec::new();
    rmpv::encode::write_value(&mut frame, &message).unwrap();
    frame
}

/// The next answer on `s`, decoded; None if none came within its read timeout.
fn answer(s: &mut std::net::TcpStream) -> Option<Value> {
    let mut buf = vec![0u8; 256];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => Some(rmpv::decode::read_value(&mut &buf[..n]).expect("an ack is msgpack")),
        _ => None,
    }
}

fn ack(chunk: &str) -> Value {
    Value::Map(vec![(Value::from("ack"), Value::from(chunk))])
}

#[test]
fn a_chunk_the_full_queue_cannot_take_is_not_acknowledged_until_there_is_room() {
    // One request fits in the exporter's queue, and the backend is down: the first message
    // stays there (retried), so the second finds no room.
    let gw = Gateway::start(
        r#"
receivers:
  fluent_forward:
    endpoint: 127.0.0.1:{port:forward}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:{port:backend}
    sending_queue:
      queue_size: 1
      block_on_overflow: false
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 200ms
      max_elapsed_time: 0
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    logs:
      receivers: [fluent_forward]
      exporters: [otlphttp]
"#,
    );
    let port = gw.port("forward");
    let mut first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    first.write_all(&forward_with_chunk("first-", 3, "chunk-1")).unwrap();
    assert_eq!(answer(&mut first), Some(ack("chunk-1")), "taken into the queue: acknowledged\n{}", gw.log());

    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    second.write_all(&forward_with_chunk("second-", 2, "chunk-2")).unwrap();
    assert_eq!(answer(&mut second), None, "no ack while the queue is full\n{}", gw.log());
    // The refusal is visible: counted by the exporter and the receiver, and logged.
    assert!(gw.metric("otelcol_exporter_enqueue_failed_log_records_total", &[("exporter", "otlphttp")]) >= 2.0);
    assert!(
        gw.metric(
            "otelcol_receiver_refused_log_records_total",
            &[("receiver", "fluent_forward"), ("transport", "tcp")]
        ) >= 2.0
    );
    assert!(gw.log().contains("sending queue is full"), "{}", gw.log());
    assert_eq!(gw.metric("otelcol_exporter_sent_log_records_total", &[("exporter", "otlphttp")]), 0.0);

    // The backend comes up: the first message is delivered, which makes room; the waiting sender
    // is acknowledged on the same connection, and every event arrives once.
    let backend = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{}
exporters:
  file:
    path: {{dir}}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{{metrics}}
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
"#,
        gw.port("backend")
    ));
    second.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    assert_eq!(answer(&mut second), Some(ack("chunk-2")), "{}\nbackend:\n{}", gw.log(), backend.log());
    let path = backend.path("out.jsonl");
    let names = || bodies(&path).into_iter().map(|(b, _)| b).collect::<Vec<_>>();
    let want = ["first-0", "first-1", "first-2", "second-0", "second-1"];
    assert!(eventually(Duration::from_secs(10), || names() == want), "{:?}\n{}", names(), gw.log());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(names(), want, "each event once");
    assert_eq!(gw.metric("switchyard_exporter_dropped_log_records_total", &[]), 0.0);
}

/// Fluentd, the sender of UDP heartbeats (`heartbeat_type udp`), cannot be installed here (not in
/// Debian or PyPI): the test sends the datagram itself.
#[test]
fn a_udp_heartbeat_on_the_same_port_is_answered() {
    let gw = Gateway::start(CONFIG);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    // What Fluentd's out_forward sends with heartbeat_type udp: any datagram; the answer is a NUL.
    socket.send_to(b"\0", ("127.0.0.1", gw.port("forward"))).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = socket.recv_from(&mut buf).expect("a heartbeat answer");
    assert_eq!(&buf[..n], b"\0");
    assert_eq!(from.port(), gw.port("forward"));
}
