//! Decode memory is a budget: with a plain configuration (no memory_limiter, a file exporter so
//! that data is decoded), the request bodies that used to cost gigabytes — millions of empty
//! spans, attributes, Zipkin objects or remote-write series in a few megabytes — are answered
//! (400 or 413) without being built, four at once too, and switchyard's peak resident memory
//! (VmHWM) stays at or below 200 MiB. The next valid request is taken.

mod common;

use common::*;
use std::io::{Read, Write};
use std::time::Duration;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
  zipkin:
    endpoint: 127.0.0.1:{port:zipkin}
  prometheusremotewrite:
    endpoint: 127.0.0.1:{port:rw}
  fluentforward:
    endpoint: 127.0.0.1:{port:forward}
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp, zipkin]
      exporters: [file]
    metrics:
      receivers: [prometheusremotewrite]
      exporters: [file]
    logs:
      receivers: [fluentforward]
      exporters: [file]
"#;

const PB: (&str, &str) = ("Content-Type", "application/x-protobuf");
const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A traces request of one resource and scope holding `spans` (encoded spans, concatenated).
fn traces_request(spans: &[u8]) -> Vec<u8> {
    wrap(1, &wrap(2, spans))
}

fn vm_hwm_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kib / 1024
}

fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let r = http_request("POST", port, path, headers, body).expect("an answer");
    (r.status, r.text())
}

#[test]
fn hostile_bodies_are_answered_within_200_mib() {
    let gw = Gateway::start(CONFIG);
    let pid = gw.pid();

    // OTLP/HTTP protobuf, 10 MB: one scope with 5,000,000 empty spans (all invalid ids).
    let body = traces_request(&[0x12, 0x00].repeat(5_000_000));
    let (status, text) = post(gw.http, "/v1/traces", &[PB], &body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid trace or span id"), "{text}");
    drop(body);
    eprintln!("VmHWM after 10 MB OTLP protobuf of 5,000,000 empty spans: {} MiB", vm_hwm_mib(pid));

    // OTLP/HTTP protobuf, 8 MB: one valid span with 4,000,000 empty attributes, four at once.
    let mut span = prost::Message::encode_to_vec(&common::span("many-attributes", vec![1; 16]));
    span.extend([0x4a, 0x00].repeat(4_000_000));
    let body = std::sync::Arc::new(wrap(1, &wrap(2, &wrap(2, &span))));
    drop(span);
    let port = gw.http;
    let answers: Vec<(u16, String)> = (0..4)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || post(port, "/v1/traces", &[PB], &body))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for (status, text) in &answers {
        assert_eq!(*status, 413, "{text}");
        assert!(text.contains("decoding it would take"), "{text}");
    }
    drop(body);
    eprintln!("VmHWM after 4 x 8 MB OTLP protobuf of 4,000,000 empty attributes: {} MiB", vm_hwm_mib(pid));

    // Zipkin v2 JSON, 18 MB: an array of 6,000,000 `{}`.
    let mut zipkin = b"[".to_vec();
    zipkin.extend(b"{},".repeat(5_999_999));
    zipkin.extend(b"{}]");
    let (status, text) = post(gw.port("zipkin"), "/api/v2/spans", &[JSON], &zipkin);
    assert_eq!(status, 413, "{text}");
    drop(zipkin);
    eprintln!("VmHWM after 18 MB Zipkin JSON of 6,000,000 {{}}: {} MiB", vm_hwm_mib(pid));

    // OTLP/JSON, 18 MB: 6,000,000 empty spans.
    let mut json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
    json.extend(b"{},".repeat(5_999_999));
    json.extend(br#"{}]}]}]}"#);
    let (status, text) = post(gw.http, "/v1/traces", &[JSON], &json);
    assert_eq!(status, 413, "{text}");
    drop(json);
    eprintln!("VmHWM after 18 MB OTLP/JSON of 6,000,000 empty spans: {} MiB", vm_hwm_mib(pid));

    // Remote write, 32 MB decompressed: 16,000,000 empty series.
    let raw = [0x0a, 0x00].repeat(16_000_000);
    let compressed = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    drop(raw);
    let (status, text) = post(
        gw.port("rw"),
        "/api/v1/write",
        &[PB, ("Content-Encoding", "snappy"), ("X-Prometheus-Remote-Write-Version", "0.1.0")],
        &compressed,
    );
    assert_eq!(status, 413, "{text}");
    eprintln!("VmHWM after 32 MB remote write of 16,000,000 empty series: {} MiB", vm_hwm_mib(pid));

    // Remote write, 1 MiB: one series whose 1 MiB label would be copied into each of its
    // 10,000 empty samples (10 GB).
    let label = wrap(1, &[wrap(1, b"__name__"), wrap(2, &vec![b'x'; 1 << 20])].concat());
    let series = wrap(1, &[label, [0x12, 0x00].repeat(10_000)].concat());
    let compressed = snap::raw::Encoder::new().compress_vec(&series).unwrap();
    let (status, text) = post(
        gw.port("rw"),
        "/api/v1/write",
        &[PB, ("Content-Encoding", "snappy"), ("X-Prometheus-Remote-Write-Version", "0.1.0")],
        &compressed,
    );
    assert_eq!(status, 413, "{text}");
    eprintln!("VmHWM after 1 MiB remote write of a 1 MiB label on 10,000 samples: {} MiB", vm_hwm_mib(pid));

    // Fluent Forward, 8 MB: one Forward-mode message of 2,600,000 tiny entries (refused for its
    // number of values, the connection closed), then one of 78,000 entries of 100-byte strings
    // (taken and acknowledged).
    let forward = |entries: usize, value: &str| -> Vec<u8> {
        let entry = rmpv::Value::Array(vec![
            rmpv::Value::from(1),
            rmpv::Value::Map(vec![(rmpv::Value::from("k"), rmpv::Value::from(value))]),
        ]);
        let message = rmpv::Value::Array(vec![
            rmpv::Value::from("hostile"),
            rmpv::Value::Array(vec![entry; entries]),
            rmpv::Value::Map(vec![(rmpv::Value::from("chunk"), rmpv::Value::from("c1"))]),
        ]);
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, &message).unwrap();
        out
    };
    let send = |bytes: &[u8]| -> Vec<u8> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port("forward"))).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answer
    };
    let tiny = forward(2_600_000, "");
    assert!(tiny.len() > 7_000_000, "{}", tiny.len());
    assert!(send(&tiny).is_empty(), "no ack for a message of too many values");
    drop(tiny);
    eprintln!("VmHWM after 7.8 MB Fluent Forward of 2,600,000 tiny entries: {} MiB", vm_hwm_mib(pid));
    let large = forward(78_000, &"v".repeat(100));
    assert!(large.len() > 8_000_000, "{}", large.len());
    let ack = send(&large);
    assert!(String::from_utf8_lossy(&ack).contains("c1"), "acknowledged: {ack:?}");
    drop(large);
    eprintln!("VmHWM after 8 MB Fluent Forward of 78,000 100-byte entries (taken): {} MiB", vm_hwm_mib(pid));

    // Still serving, and peak memory bounded throughout.
    let (status, text) = post(gw.http, "/v1/traces", &[PB], &traces_body(vec![common::span("after", vec![1; 16])]));
    assert_eq!(status, 200, "{text}");
    let out = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(20), || span_names(&out).contains(&"after".to_string())));
    let peak = vm_hwm_mib(pid);
    eprintln!("switchyard peak RSS (VmHWM) after the hostile bodies: {peak} MiB");
    assert!(peak <= 200, "peak RSS {peak} MiB");
}
