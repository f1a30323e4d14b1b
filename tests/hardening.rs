//! The front line as a hostile client meets it: gRPC frames that are truncated, corrupt or
//! declare more than they send; HTTP bodies that lie about their length or trickle in; idle and
//! surplus connections on every kind of listener; values nested as deep as the Go collector
//! takes. Each gets the protocol's answer and a counter, and valid requests keep working.
//! gRPC is spoken here with the `h2` crate directly, since no gRPC client sends broken frames.

mod common;

use common::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        keepalive:
          server_parameters:
            max_connection_idle: 1s
            # Pings from the server are not requests: they do not keep a connection busy.
            time: 300ms
      http:
        endpoint: 127.0.0.1:{http}
        read_timeout: 2s
        idle_timeout: 1s
        max_connections: 4
  syslog:
    protocol: rfc5424
    tcp:
      listen_address: 127.0.0.1:{port:syslog}
      idle_timeout: 1s
  fluentforward:
    endpoint: 127.0.0.1:{port:forward}
    idle_timeout: 1s
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [syslog, fluentforward]
      exporters: [file]
"#;

const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC frame: compression flag, big-endian length, message.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    f
}

/// Sends `body` as one unary call (with `headers`) and returns the grpc-status and message.
async fn grpc_call(port: u16, headers: &[(&str, &str)], body: Vec<u8>) -> (String, String) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::post(format!("http://127.0.0.1:{port}{TRACES_EXPORT}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (response, mut stream) = client.send_request(req.body(()).unwrap(), false).unwrap();
    stream.send_data(body.into(), true).unwrap();
    let response = response.await.unwrap();
    let (parts, mut body) = response.into_parts();
    let status_of = |h: &http::HeaderMap| {
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (get("grpc-status"), get("grpc-message"))
    };
    if parts.headers.contains_key("grpc-status") {
        return status_of(&parts.headers);
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    status_of(&trailers)
}

fn invalid_grpc(gw: &Gateway) -> f64 {
    gw.metric(
        "switchyard_receiver_invalid_requests_total",
        &[("receiver", "otlp"), ("transport", "grpc"), ("code", "INVALID_ARGUMENT")],
    )
}

fn valid_traces(name: &str) -> Vec<u8> {
    traces_body(vec![span(name, vec![1; 16])])
}

#[test]
fn bad_grpc_framing_and_compression_are_invalid_argument_and_counted() {
    let gw = Gateway::start(CONFIG);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let message = valid_traces("framing-ok");

    let mut truncated = frame(0, &message);
    truncated.truncate(truncated.len() - 5);
    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], truncated));
    assert_eq!(code, "3", "a truncated frame: {msg}");
    assert!(msg.contains("truncated"), "{msg}");

    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], vec![0, 0, 0]));
    assert_eq!(code, "3", "a truncated header: {msg}");

    let corrupt = frame(1, b"\x1f\x8b\x08\x00 definitely not gzip data");
    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[("grpc-encoding", "gzip")], corrupt));
    assert_eq!(code, "3", "a corrupt gzip message: {msg}");

    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], frame(7, &message)));
    assert_eq!(code, "3", "an unknown compression flag: {msg}");

    assert!(eventually(Duration::from_secs(5), || invalid_grpc(&gw) >= 4.0), "counted: {}", invalid_grpc(&gw));

    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], frame(0, &message)));
    assert_eq!(code, "0", "a valid request afterwards: {msg}");
    assert!(eventually(Duration::from_secs(10), || span_names(&gw.path("out.jsonl")).contains(&"framing-ok".into())));
}

#[test]
fn a_declared_frame_reserves_nothing() {
    let gw = Gateway::start(CONFIG);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let before = vm_kib(gw.pid(), "VmSize:");
    // 10 connections x 100 streams, each declaring a 4 MiB message and sending 5 bytes of it.
    let held = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..10 {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.grpc)).await.unwrap();
            let (client, conn) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(conn);
            let mut streams = Vec::new();
            for _ in 0..100 {
                let mut client = client.clone().ready().await.unwrap();
                let req = http::Request::post(format!("http://127.0.0.1:{}{TRACES_EXPORT}", gw.grpc))
                    .header("content-type", "application/grpc")
                    .body(())
                    .unwrap();
                let (response, mut stream) = client.send_request(req, false).unwrap();
                let mut start = vec![0u8];
                start.extend_from_slice(&(4u32 * 1024 * 1024 - 10).to_be_bytes());
                start.extend_from_slice(b"\x0a\x03abc");
                stream.send_data(start.into(), false).unwrap();
                streams.push((response, stream));
            }
            held.push((client, streams));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        held
    });
    let after = vm_kib(gw.pid(), "VmSize:");
    let grown_mib = (after.saturating_sub(before)) / 1024;
    assert!(grown_mib < 512, "1,000 declared 4 MiB frames grew virtual memory by {grown_mib} MiB");
    drop(held);
    drop(rt);
    // Still serving.
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &valid_traces("after-streams"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A field of /proc/PID/status in KiB.
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn values_nested_64_levels_deep_are_taken() {
    let gw = Gateway::start(CONFIG);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut value = AnyValue { value: Some(any_value::Value::StringValue("bottom".into())) };
    for _ in 0..64 {
        value = AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![value] })) };
    }
    let mut s = span("deep-grpc", vec![1; 16]);
    s.attributes = vec![KeyValue { key: "deep".into(), value: Some(value.clone()), ..Default::default() }];
    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], frame(0, &traces_body(vec![s.clone()]))));
    assert_eq!(code, "0", "64 levels over gRPC: {msg}");
    s.name = "deep-http".into();
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &traces_body(vec![s]),
    )
    .unwrap();
    assert_eq!(r.status, 200, "64 levels over HTTP: {}", r.text());
    // The file holds them (read as text: serde_json's own nesting limit is 128).
    let out = gw.path("out.jsonl");
    let text = || std::fs::read_to_string(&out).unwrap_or_default();
    assert!(eventually(Duration::from_secs(10), || text().contains("deep-grpc") && text().contains("deep-http")));
    assert_eq!(text().matches("\"bottom\"").count(), 2, "the innermost values arrive");

    // The deepest value taken (the scan's limit of 200 messages: 97 levels under a span) is
    // decoded and written on the gateway's ordinary stacks.
    let mut value = vec![0x0a, 0x04, b'l', b'a', b's', b't'];
    for _ in 0..97 {
        value = wrap(5, &wrap(1, &value));
    }
    let mut span_bytes = prost::Message::encode_to_vec(&span("deepest", vec![1; 16]));
    span_bytes.extend(wrap(9, &[wrap(1, b"deep"), wrap(2, &value)].concat()));
    let body = wrap(1, &wrap(2, &wrap(2, &span_bytes)));
    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], frame(0, &body)));
    assert_eq!(code, "0", "97 levels: {msg}");
    assert!(eventually(Duration::from_secs(10), || text().contains("\"last\"")));

    // Far deeper than any real value: refused, not a crash. Built as bytes (encoding or dropping
    // such a value recursively would overflow this test's own stack).
    let mut value = vec![0x18, 0x01];
    for _ in 0..5000 {
        value = wrap(5, &wrap(1, &value));
    }
    let mut span_bytes = prost::Message::encode_to_vec(&span("too-deep", vec![1; 16]));
    span_bytes.extend(wrap(9, &[wrap(1, b"deep"), wrap(2, &value)].concat()));
    let body = wrap(1, &wrap(2, &wrap(2, &span_bytes)));
    let (code, msg) = rt.block_on(grpc_call(gw.grpc, &[], frame(0, &body)));
    assert_eq!(code, "3", "{msg}");
    let r = http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}

/// Opens a connection and sends `head` (no body).
fn send_head(port: u16, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s
}

fn read_status(s: &mut TcpStream) -> (u16, String) {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn lying_and_trickling_http_bodies_get_answers() {
    let gw = Gateway::start(CONFIG);
    // Ten gigabytes declared, ten bytes sent: refused at once, before any body is read.
    let started = Instant::now();
    let mut s = send_head(
        gw.http,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 10000000000\r\n\r\n0123456789",
    );
    let (status, text) = read_status(&mut s);
    assert_eq!(status, 413, "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered at once, not after reading");

    // A body that trickles in a byte at a time is cut off at read_timeout (2s) with 408.
    let started = Instant::now();
    let mut s = send_head(
        gw.http,
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n",
    );
    let mut trickle = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..40 {
            if trickle.write_all(b"\x0a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    let (status, text) = read_status(&mut s);
    assert_eq!(status, 408, "{text}");
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let _ = writer.join();

    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &valid_traces("after-lies"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Whether the server closes `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn idle_connections_are_closed_on_every_listener() {
    let gw = Gateway::start(CONFIG);
    for (name, port) in [
        ("otlp http", gw.http),
        ("otlp grpc", gw.grpc),
        ("syslog", gw.port("syslog")),
        ("fluentforward", gw.port("forward")),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        if name == "otlp grpc" {
            // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
            s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").unwrap();
        }
        assert!(closed_within(&mut s, Duration::from_secs(6)), "{name}: an idle connection stays open");
    }
    // A connection in use is not idle: a request after 600 ms on a kept-alive connection works.
    let mut s = TcpStream::connect(("127.0.0.1", gw.http)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = valid_traces("kept-alive");
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    std::thread::sleep(Duration::from_millis(600));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
}

#[test]
fn a_listener_holds_at_most_max_connections() {
    let gw = Gateway::start(CONFIG);
    // max_connections: 4 on OTLP/HTTP.
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(("127.0.0.1", gw.http)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = TcpStream::connect(("127.0.0.1", gw.http)).unwrap();
    assert!(closed_within(&mut fifth, Duration::from_millis(900)), "the fifth connection is closed at once");
    let refused = gw.metric("switchyard_listener_refused_connections_total", &[]);
    assert!(refused >= 1.0, "counted: {refused}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let r = http_request(
        "POST",
        gw.http,
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        &valid_traces("after-limit"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "room again once others closed: {}", r.text());
}
