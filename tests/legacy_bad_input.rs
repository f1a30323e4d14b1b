//! Bad input to the `jaeger` and `zipkin` receivers: random, truncated and mistyped datagrams, a
//! datagram over `max_packet_size`, HTTP bodies that are not Thrift, Zipkin spans with malformed
//! ids. Each is counted and answered (or, over UDP, dropped) without harm, the log is not flooded,
//! and the next good input is served. The good datagram is one the real Python jaeger-client sent.
//!
//! Jaeger api_v2 gRPC has no client in the package registries: `PostSpans` is driven by a tonic
//! client sending messages encoded from proto/jaeger/api_v2.proto (prost), which stands in for
//! jaeger-agent.

mod common;

use common::*;
use prost::Message;
use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;
use switchyard::proto::jaeger as pb;

const CONFIG: &str = r#"
receivers:
  jaeger:
    protocols:
      thrift_compact:
        endpoint: 127.0.0.1:{port:compact}
      thrift_binary:
        endpoint: 127.0.0.1:{port:binary}
        max_packet_size: 3000
      thrift_http:
        endpoint: 127.0.0.1:{port:thrift_http}
      grpc:
        endpoint: 127.0.0.1:{port:jaeger_grpc}
  zipkin:
    endpoint: 127.0.0.1:{port:zipkin}
exporters:
  file:
    path: {dir}/out.jsonl
service:
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [jaeger, zipkin]
      exporters: [file]
"#;

/// One datagram as the real Python jaeger-client sends it (Thrift compact emitBatch).
fn real_compact_datagram(python: &std::path::Path) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let port = socket.local_addr().unwrap().port();
    let out = Command::new(python)
        .arg(repo().join("tests/peers/python/jaeger_send.py"))
        .arg(port.to_string())
        .args(["--service", "captured"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut buf = vec![0u8; 65_536];
    let n = socket.recv(&mut buf).expect("the client sent a datagram");
    buf.truncate(n);
    assert_eq!(&buf[..2], &[0x82, 0x81], "compact, oneway");
    buf
}

fn invalid(gw: &Gateway, transport: &str, code: &str) -> f64 {
    gw.metric(
        "switchyard_receiver_invalid_requests_total",
        &[("receiver", "jaeger"), ("transport", transport), ("code", code)],
    )
}

#[test]
fn bad_datagrams_are_counted_and_dropped_and_the_next_good_one_arrives() {
    let Some(python) = python_peer() else { return };
    let good = real_compact_datagram(&python);
    let gw = Gateway::start(CONFIG);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let compact = format!("127.0.0.1:{}", gw.port("compact"));
    let binary = format!("127.0.0.1:{}", gw.port("binary"));

    let mut bad = 0;
    // Every truncation of the real datagram.
    for cut in (1..good.len()).step_by(7) {
        socket.send_to(&good[..cut], &compact).unwrap();
        bad += 1;
    }
    // Random bytes.
    let mut seed = 0x2545f4914f6cdd1du64;
    for _ in 0..40 {
        let noise: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        socket.send_to(&noise, &compact).unwrap();
        bad += 1;
    }
    // A well-formed emitBatch whose batch field (1) is an i32 instead of a struct.
    let mut mistyped = vec![0x82, 0x81, 0x01, 0x09];
    mistyped.extend_from_slice(b"emitBatch");
    mistyped.extend_from_slice(&[0x15, 0x02, 0x00]);
    socket.send_to(&mistyped, &compact).unwrap();
    bad += 1;
    // Over max_packet_size (3000) on the binary port.
    socket.send_to(&vec![0x80; 4000], &binary).unwrap();

    let counted = eventually(Duration::from_secs(10), || {
        invalid(&gw, "udp_thrift_compact", "malformed") == bad as f64
            && invalid(&gw, "udp_thrift_binary", "too_large") == 1.0
    });
    assert!(
        counted,
        "malformed {} of {bad}, too_large {}",
        invalid(&gw, "udp_thrift_compact", "malformed"),
        invalid(&gw, "udp_thrift_binary", "too_large")
    );

    // Still serving: the real datagram arrives whole.
    socket.send_to(&good, &compact).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || span_names(&gw.path("out.jsonl")).len() == 3),
        "the good datagram after the bad ones was not exported:\n{}",
        gw.log()
    );
    assert_eq!(
        gw.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "jaeger"), ("transport", "udp_thrift_compact")]
        ),
        3.0
    );
    // Rate-limited: about one warning per second, not one per datagram.
    let warnings = gw.log().lines().filter(|l| l.contains("undecodable")).count();
    assert!((1..=5).contains(&warnings), "{warnings} warnings for {bad} bad datagrams:\n{}", gw.log());
    assert!(gw.log().contains("suppressed_since_last_warning"), "{}", gw.log());
}

#[test]
fn thrift_http_refuses_what_is_not_a_thrift_batch() {
    let gw = Gateway::start(CONFIG);
    let port = gw.port("thrift_http");
    let r = http_request(
        "POST",
        port,
        "/api/traces",
        &[("Content-Type", "application/x-thrift")],
        b"{\"not\": \"thrift\"}",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not a Thrift-binary Batch"), "{}", r.text());
    let r = http_request("POST", port, "/api/traces", &[("Content-Type", "application/json")], b"[]").unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("unsupported content type \"application/json\""), "{}", r.text());
    let r = http_request("GET", port, "/api/traces", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(invalid(&gw, "collector_http", "400"), 2.0);
    assert!(span_names(&gw.path("out.jsonl")).is_empty());
}

#[test]
fn a_zipkin_span_with_a_malformed_id_fails_its_request_whole() {
    let gw = Gateway::start(CONFIG);
    let port = gw.port("zipkin");
    let body = br#"[{"traceId":"5af7183fb1d4cf5f","id":"6b221d5bc9e6496c","name":"good","timestamp":1700000000000000},
                    {"traceId":"5af7183fb1d4cf5f","id":"6b221d5b","name":"short-id","timestamp":1700000000000000}]"#;
    let r = http_request("POST", port, "/api/v2/spans", &[("Content-Type", "application/json")], body).unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.text().trim(), "span 1: id \"6b221d5b\" is not 16 hex digits");
    let r = http_request("POST", port, "/api/v2/spans", &[("Content-Type", "application/x-protobuf")], b"\x0a\xff\xff")
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not a Zipkin ListOfSpans"), "{}", r.text());
    assert_eq!(
        gw.metric("switchyard_receiver_invalid_requests_total", &[("receiver", "zipkin"), ("code", "400")]),
        2.0
    );
    // The next good request is taken.
    let good = &body[..body.iter().position(|b| *b == b'}').unwrap() + 1];
    let good = [good, b"]"].concat();
    let r = http_request("POST", port, "/api/v2/spans", &[("Content-Type", "application/json")], &good).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(eventually(Duration::from_secs(10), || span_names(&gw.path("out.jsonl")) == ["good"]));
}

fn post_spans_request(trace_id: Vec<u8>) -> Vec<u8> {
    let tag = |key: &str, v: &str| pb::KeyValue { key: key.into(), v_str: v.into(), ..Default::default() };
    pb::PostSpansRequest {
        batch: Some(pb::Batch {
            process: Some(pb::Process { service_name: "agent-batch".into(), tags: vec![tag("hostname", "node-1")] }),
            spans: vec![
                pb::Span {
                    trace_id: trace_id.clone(),
                    span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
                    operation_name: "from-batch-process".into(),
                    start_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5 }),
                    duration: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                    tags: vec![tag("span.kind", "server")],
                    ..Default::default()
                },
                pb::Span {
                    trace_id,
                    span_id: vec![0, 0, 0, 0, 0, 0, 0, 2],
                    operation_name: "own-process".into(),
                    references: vec![pb::SpanRef {
                        trace_id: vec![1; 16],
                        span_id: vec![0, 0, 0, 0, 0, 0, 0, 1],
                        ref_type: pb::SpanRefType::ChildOf as i32,
                    }],
                    process: Some(pb::Process { service_name: "other".into(), tags: vec![] }),
                    ..Default::default()
                },
            ],
        }),
    }
    .encode_to_vec()
}

async fn post_spans(port: u16, body: Vec<u8>) -> Result<(), tonic::Status> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap();
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/jaeger.api_v2.CollectorService/PostSpans");
    client.unary(tonic::Request::new(bytes::Bytes::from(body)), path, switchyard::grpc::RawCodec).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_grpc_post_spans_is_translated_and_bad_ids_are_invalid_argument() {
    let gw = Gateway::start(CONFIG);
    let port = gw.port("jaeger_grpc");
    let status = post_spans(port, post_spans_request(vec![1; 8])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "span 0: trace_id must be 16 bytes, got 8");
    post_spans(port, post_spans_request(vec![1; 16])).await.unwrap();
    let path = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || span_names(&path).len() == 2), "{}", gw.log());
    let line = &json_lines(&path)[0];
    let services: Vec<String> = line["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            let attrs = rs["resource"]["attributes"].as_array().unwrap();
            let name = attrs.iter().find(|a| a["key"] == "service.name").unwrap();
            name["value"]["stringValue"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(services, ["agent-batch", "other"], "a span's own process is a resource of its own");
    let first = &line["resourceSpans"][0];
    assert_eq!(first["resource"]["attributes"][1]["key"], "host.name");
    let span = &first["scopeSpans"][0]["spans"][0];
    assert_eq!(span["kind"], 2);
    assert_eq!(span["startTimeUnixNano"], "1700000000000000005");
    assert_eq!(span["endTimeUnixNano"], "1700000001000000005");
    let child = &line["resourceSpans"][1]["scopeSpans"][0]["spans"][0];
    assert_eq!(child["parentSpanId"], "0000000000000001");
    assert_eq!(invalid(&gw, "grpc", "INVALID_ARGUMENT"), 1.0);
}
