//! The `fluentforward` receiver: the real Python `fluent-logger` sends events (Message mode,
//! EventTime), and a gzip CompressedPackedForward message with a `chunk` built in the test is
//! acknowledged only after its events were handed on. Bad input (invalid msgpack, a frame that
//! declares 1 GiB) closes that connection and is counted; other connections keep working.

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
