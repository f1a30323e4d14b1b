//! The migration story of config/jaeger-migration.yaml, end to end: services keep their Jaeger
//! clients and change only the address they report to. The example configuration itself is run
//! (its listen addresses moved to free loopback ports, its destinations given by the environment
//! variables it documents); the Python and Node jaeger-clients send to it, and both destinations
//! must receive identical spans: the team's Jaeger, played by the grpcio OTLP backend (Jaeger
//! takes OTLP on 4317 but cannot be installed here), and the vendor, the strict in-test OTLP/HTTP
//! backend that requires the API key.

mod common;

use common::sink::Sink;
use common::vendor::Vendor;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::process::Command;
use std::time::Duration;

/// Every span of `requests` with its resource and scope, encoded, sorted: equal lists mean the
/// destinations got the same spans, whatever batches they came in.
fn flat_spans(requests: &[ExportTraceServiceRequest]) -> Vec<String> {
    let mut out: Vec<String> = requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| rs.scope_spans.iter().map(move |ss| (rs, ss)))
        .flat_map(|(rs, ss)| ss.spans.iter().map(move |s| format!("{:?} {:?} {:?}", rs.resource, ss.scope, s)))
        .collect();
    out.sort();
    out
}

#[test]
fn legacy_clients_change_one_address_and_both_destinations_receive_identical_spans() {
    let Some(python) = python_peer() else { return };
    if peer(&repo().join("tests/peers/node/node_modules/jaeger-client"), "the Node jaeger-client").is_none() {
        return;
    }
    let example = std::fs::read_to_string(repo().join("config/jaeger-migration.yaml")).unwrap();
    let mut template = example.clone();
    for (listen, placeholder) in [
        ("0.0.0.0:6831", "127.0.0.1:{port:compact}"),
        ("0.0.0.0:6832", "127.0.0.1:{port:binary}"),
        ("0.0.0.0:14268", "127.0.0.1:{port:thrift_http}"),
        ("0.0.0.0:14250", "127.0.0.1:{port:jaeger_grpc}"),
        ("0.0.0.0:4317", "127.0.0.1:{grpc}"),
        ("0.0.0.0:4318", "127.0.0.1:{http}"),
        ("0.0.0.0:8888", "127.0.0.1:{metrics}"),
    ] {
        assert!(template.contains(listen), "the example listens on {listen}");
        template = template.replace(listen, placeholder);
    }
    let dir = tempfile::tempdir().unwrap();
    let jaeger = Sink::start(&python, dir.path(), &[]);
    let vendor = Vendor::start(0, Some("secret-123"));
    let gw = Gateway::start_with_env(
        &template,
        &[
            ("JAEGER_OTLP_ENDPOINT", &format!("127.0.0.1:{}", jaeger.port)),
            ("VENDOR_OTLP_ENDPOINT", &format!("http://127.0.0.1:{}", vendor.port)),
            ("VENDOR_API_KEY", "secret-123"),
        ],
    );

    let node = repo().join("tests/peers/node/jaeger_send.js");
    let mut sent_ids = Vec::new();
    for cmd in [
        Command::new(&python)
            .arg(repo().join("tests/peers/python/jaeger_send.py"))
            .arg(gw.port("compact").to_string())
            .arg("--trace-id-128"),
        Command::new("node").arg(&node).args(["udp", &gw.port("binary").to_string()]),
        Command::new("node").arg(&node).args(["http", &gw.port("thrift_http").to_string()]),
    ]
    .iter_mut()
    {
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for s in sent["spans"].as_array().unwrap() {
            sent_ids.push(s["span_id"].as_str().unwrap().to_string());
        }
    }
    sent_ids.sort();

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let ids = |requests: &[ExportTraceServiceRequest]| {
        let mut v: Vec<String> = requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| hex(&s.span_id))
            .collect();
        v.sort();
        v
    };
    let arrived = eventually(Duration::from_secs(15), || {
        ids(&jaeger.requests()) == sent_ids && ids(&vendor.accepted_requests()) == sent_ids
    });
    assert!(
        arrived,
        "sent {sent_ids:?}\njaeger got {:?}\nvendor got {:?}\n{}",
        ids(&jaeger.requests()),
        ids(&vendor.accepted_requests()),
        gw.log()
    );
    let (at_jaeger, at_vendor) = (flat_spans(&jaeger.requests()), flat_spans(&vendor.accepted_requests()));
    assert_eq!(at_jaeger.len(), 9);
    assert_eq!(at_jaeger, at_vendor, "both destinations receive identical spans, resources and scopes");
    assert!(at_jaeger.iter().any(|s| s.contains("py-jaeger-client")), "translated resources arrive");
    assert!(vendor.received().iter().all(|r| r.status == 200), "the API key from VENDOR_API_KEY was sent");
}
