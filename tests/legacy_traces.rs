//! Legacy trace clients, unchanged except for the address they send to: the Python and Node
//! `jaeger-client`s (agent UDP compact and binary, collector HTTP chunked), OpenTelemetry's
//! Jaeger Thrift exporter 1.21 (agent UDP and collector HTTP) and its Zipkin JSON and protobuf
//! exporters each send one known trace to switchyard; the test reads what switchyard exported
//! (OTLP/JSON from the file exporter) and checks every translated field.
//!
//! Jaeger api_v2 gRPC has no client in the package registries: that path is driven by a tonic
//! client encoding the messages compiled from proto/jaeger/api_v2.proto, and the test says so.

mod common;

use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
processors:
  batch:
    timeout: 50ms
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
      processors: [batch]
      exporters: [file]
"#;

fn otel121_peer() -> Option<PathBuf> {
    peer(&repo().join("target/peers/venv-otel121/bin/python"), "the OpenTelemetry 1.21 Jaeger/Zipkin exporter venv")
}

fn jaeger_client_peer() -> Option<PathBuf> {
    let python = python_peer()?;
    peer(&repo().join("tests/peers/node/node_modules/jaeger-client"), "the Node jaeger-client")?;
    Some(python)
}

/// Runs a sender and returns the JSON line it printed about what it sent.
fn send(cmd: &mut Command) -> Value {
    let out = cmd.output().expect("run sender");
    assert!(
        out.status.success(),
        "sender failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// One exported span with its resource and scope, from the file exporter's OTLP/JSON lines.
#[derive(Debug, Clone)]
struct Exported {
    resource: Vec<Value>,
    scope: Value,
    span: Value,
}

fn exported(path: &Path) -> Vec<Exported> {
    let mut out = Vec::new();
    for line in json_lines(path) {
        for rs in line["resourceSpans"].as_array().cloned().unwrap_or_default() {
            let resource = rs["resource"]["attributes"].as_array().cloned().unwrap_or_default();
            for ss in rs["scopeSpans"].as_array().cloned().unwrap_or_default() {
                for span in ss["spans"].as_array().cloned().unwrap_or_default() {
                    out.push(Exported { resource: resource.clone(), scope: ss["scope"].clone(), span });
                }
            }
        }
    }
    out
}

/// The OTLP/JSON value of attribute `key`, if present.
fn attr(list: &[Value], key: &str) -> Option<Value> {
    list.iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
}

fn attrs(v: &Value) -> Vec<Value> {
    v["attributes"].as_array().cloned().unwrap_or_default()
}

/// How a client types numbers and booleans on the wire, and so what switchyard must export.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Typing {
    /// Ints as LONG, decimals as DOUBLE, booleans as BOOL (Python clients).
    Native,
    /// Every number a DOUBLE (the Node client).
    Doubles,
    /// Every tag a string (Zipkin), but event attributes keep JSON types.
    Strings,
}

fn int(t: Typing, i: i64) -> Value {
    match t {
        Typing::Native => json!({"intValue": i.to_string()}),
        Typing::Doubles => json!({"doubleValue": i as f64}),
        Typing::Strings => json!({"stringValue": i.to_string()}),
    }
}

fn double(t: Typing, d: f64) -> Value {
    match t {
        Typing::Strings => json!({"stringValue": d.to_string()}),
        _ => json!({"doubleValue": d}),
    }
}

fn boolean(t: Typing, b: bool) -> Value {
    match t {
        Typing::Strings => json!({"stringValue": b.to_string()}),
        _ => json!({"boolValue": b}),
    }
}

fn string(s: &str) -> Value {
    json!({"stringValue": s})
}

/// What differs between clients in how the known trace reaches switchyard.
struct Expect {
    typing: Typing,
    /// `deployment.environment` is a resource attribute (a process tag or a resource-convention
    /// Zipkin tag), rather than a span attribute (the OTel Jaeger exporter copies the resource
    /// into every span's tags).
    environment_on_resource: bool,
    /// The client sets a hostname process tag, which becomes `host.name`.
    host_name: bool,
    /// The status message of the failed span.
    error_message: &'static str,
    /// The OTel SDK's instrumentation scope is carried as tags and must come back as the scope.
    scope: bool,
    /// Event attributes keep the client's types (Zipkin's JSON annotations do).
    event_typing: Typing,
}

/// Checks every translated field of the known trace `sent` against what was exported.
fn check_known_trace(sent: &Value, all: &[Exported], expect: &Expect) {
    let service = sent["service"].as_str().unwrap();
    let spans: Vec<&Exported> =
        all.iter().filter(|e| attr(&e.resource, "service.name") == Some(string(service))).collect();
    assert_eq!(spans.len(), 3, "{service}: three spans under service.name={service}: {all:#?}");
    let find = |name: &str| -> (&Exported, &Value) {
        let s = sent["spans"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap();
        let e = spans
            .iter()
            .find(|e| e.span["spanId"] == s["span_id"])
            .unwrap_or_else(|| panic!("{service}: {name} ({}) not exported: {spans:#?}", s["span_id"]));
        (e, s)
    };
    let t = expect.typing;
    for (name, kind) in [("GET /checkout", 2), ("charge-card", 3), ("send-receipt", 4)] {
        let (e, s) = find(name);
        let ctx = format!("{service} {name}");
        assert_eq!(e.span["name"], name, "{ctx}");
        assert_eq!(e.span["traceId"], s["trace_id"], "{ctx}: trace id");
        let parent = e.span["parentSpanId"].as_str().unwrap_or("");
        assert_eq!(parent, s["parent_span_id"].as_str().unwrap(), "{ctx}: parent");
        assert_eq!(e.span["kind"], kind, "{ctx}: kind");
        assert!(e.span["startTimeUnixNano"].as_str().unwrap().parse::<u64>().unwrap() > 1_600_000_000_000_000_000);
        let a = attrs(&e.span);
        for gone in [
            "span.kind",
            "error",
            "otel.status_code",
            "otel.status_description",
            "otel.library.name",
            "otel.scope.name",
        ] {
            assert!(attr(&a, gone).is_none(), "{ctx}: {gone} should have been consumed: {a:#?}");
        }
        let env = if expect.environment_on_resource {
            attr(&e.resource, "deployment.environment")
        } else {
            attr(&a, "deployment.environment")
        };
        assert_eq!(env, Some(string("test")), "{ctx}: deployment.environment");
        if expect.host_name {
            assert!(
                attr(&e.resource, "host.name")
                    .is_some_and(|h| h["stringValue"].as_str().is_some_and(|h| !h.is_empty())),
                "{ctx}: host.name from the hostname tag"
            );
            assert!(attr(&e.resource, "hostname").is_none());
        }
        if expect.scope {
            assert_eq!(e.scope["name"], "switchyard.peer.otel121", "{ctx}: scope");
            assert_eq!(e.scope["version"], "1.0.0", "{ctx}: scope version");
        }
    }
    let (root, _) = find("GET /checkout");
    let a = attrs(&root.span);
    assert_eq!(attr(&a, "http.method"), Some(string("GET")), "{service}");
    assert_eq!(attr(&a, "http.status_code"), Some(int(t, 200)), "{service}");
    assert_eq!(attr(&a, "cart.items"), Some(int(t, 3)), "{service}");
    assert_eq!(attr(&a, "cart.total"), Some(double(t, 12.5)), "{service}");
    assert_eq!(attr(&a, "cart.gift"), Some(boolean(t, true)), "{service}");
    assert!(
        root.span["status"].get("code").is_none_or(|c| c == 0),
        "{service}: root status unset: {}",
        root.span["status"]
    );
    let events = root.span["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{service}: {events:#?}");
    assert_eq!(events[0]["name"], "cache-miss", "{service}");
    assert_eq!(attr(&attrs(&events[0]), "sku"), Some(string("sku-42")), "{service}");

    let (charge, _) = find("charge-card");
    assert_eq!(charge.span["status"]["code"], 2, "{service}: charge-card is an error");
    assert_eq!(charge.span["status"]["message"].as_str().unwrap_or(""), expect.error_message, "{service}");
    let events = charge.span["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{service}: {events:#?}");
    assert_eq!(events[0]["name"], "retry", "{service}");
    assert_eq!(attr(&attrs(&events[0]), "attempt"), Some(int(expect.event_typing, 2)), "{service}");

    let (receipt, sent_receipt) = find("send-receipt");
    let links = receipt.span["links"].as_array().cloned().unwrap_or_default();
    let want: Vec<(Value, Value)> = sent_receipt["references"]
        .as_array()
        .or(sent_receipt["links"].as_array())
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| (r["trace_id"].clone(), r["span_id"].clone()))
        .collect();
    if t == Typing::Strings {
        assert!(links.is_empty(), "{service}: Zipkin carries no links");
    } else {
        let got: Vec<(Value, Value)> = links.iter().map(|l| (l["traceId"].clone(), l["spanId"].clone())).collect();
        assert_eq!(got, want, "{service}: the FOLLOWS_FROM reference is a link");
        for l in &links {
            assert_eq!(attr(&attrs(l), "opentracing.ref_type"), Some(string("follows_from")), "{service}");
        }
    }
}

fn wait_for_service(gw: &Gateway, service: &str) -> Vec<Exported> {
    let path = gw.path("out.jsonl");
    let mut all = Vec::new();
    let arrived = eventually(Duration::from_secs(10), || {
        all = exported(&path);
        all.iter().filter(|e| attr(&e.resource, "service.name") == Some(string(service))).count() >= 3
    });
    assert!(arrived, "spans of {service} never arrived:\n{}", gw.log());
    all
}

#[test]
fn legacy_jaeger_clients_arrive_as_otlp_with_every_field_translated() {
    let Some(python) = jaeger_client_peer() else { return };
    let gw = Gateway::start(CONFIG);
    let node_script = repo().join("tests/peers/node/jaeger_send.js");
    let jaeger_client = Expect {
        typing: Typing::Native,
        environment_on_resource: true,
        host_name: true,
        error_message: "",
        scope: false,
        event_typing: Typing::Native,
    };
    let node = Expect { typing: Typing::Doubles, event_typing: Typing::Doubles, ..jaeger_client };

    let sent = send(
        Command::new(&python)
            .arg(repo().join("tests/peers/python/jaeger_send.py"))
            .arg(gw.port("compact").to_string())
            .arg("--trace-id-128"),
    );
    check_known_trace(&sent, &wait_for_service(&gw, "py-jaeger-client"), &jaeger_client);

    let sent = send(Command::new("node").arg(&node_script).args(["udp", &gw.port("binary").to_string()]));
    check_known_trace(&sent, &wait_for_service(&gw, "node-jaeger-udp"), &node);

    let sent = send(Command::new("node").arg(&node_script).args(["http", &gw.port("thrift_http").to_string()]));
    check_known_trace(&sent, &wait_for_service(&gw, "node-jaeger-http"), &node);

    assert_eq!(
        gw.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "jaeger"), ("transport", "udp_thrift_compact")]
        ),
        3.0
    );
    assert_eq!(
        gw.metric(
            "otelcol_receiver_accepted_spans_total",
            &[("receiver", "jaeger"), ("transport", "udp_thrift_binary")]
        ),
        3.0
    );
    assert_eq!(
        gw.metric("otelcol_receiver_accepted_spans_total", &[("receiver", "jaeger"), ("transport", "collector_http")]),
        3.0
    );
}

#[test]
fn opentelemetry_jaeger_and_zipkin_exporters_arrive_as_otlp_with_every_field_translated() {
    let Some(python) = otel121_peer() else { return };
    let gw = Gateway::start(CONFIG);
    let dir = repo().join("tests/peers/python-otel121");
    let jaeger = Expect {
        typing: Typing::Native,
        environment_on_resource: false,
        host_name: false,
        error_message: "card declined",
        scope: true,
        event_typing: Typing::Native,
    };
    for (mode, port) in [("agent", gw.port("compact")), ("collector", gw.port("thrift_http"))] {
        let sent = send(Command::new(&python).arg(dir.join("jaeger_send.py")).args([mode, &port.to_string()]));
        check_known_trace(&sent, &wait_for_service(&gw, &format!("otel121-jaeger-{mode}")), &jaeger);
    }
    let zipkin = Expect {
        typing: Typing::Strings,
        environment_on_resource: true,
        host_name: false,
        error_message: "card declined",
        scope: true,
        event_typing: Typing::Native,
    };
    for mode in ["json", "proto"] {
        let sent =
            send(Command::new(&python).arg(dir.join("zipkin_send.py")).args([mode, &gw.port("zipkin").to_string()]));
        check_known_trace(&sent, &wait_for_service(&gw, &format!("otel121-zipkin-{mode}")), &zipkin);
    }
}
