//! Writes the seeds of the fuzz corpus that are binary (Thrift, protobuf, snappy, msgpack, Kafka
//! responses) or copied from fixtures, as `fuzz/corpus/<target>/seed-*`:
//! `cargo test --lib fuzzing::seeds -- --ignored`. The text seeds (JSON, expositions, syslog,
//! YAML) are kept in the repository as written by hand.

use crate::kafka::wire::Writer;
use crate::proto::{jaeger as jpb, prometheus as rw1, prometheus_v2 as rw2, zipkin as zpb};
use crate::receivers::jaeger::model::{Batch, Log, Process, RefType, Span, SpanRef, Tag, Value};
use crate::receivers::jaeger::thrift::Protocol;
use crate::receivers::jaeger::thrift_encode::{agent_datagram, binary_batch};
use prost::Message;
use std::path::Path;

fn write(target: &str, name: &str, first: &[u8], body: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let mut data = first.to_vec();
    data.extend_from_slice(body);
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn fixture(name: &str) -> Vec<u8> {
    crate::pipeline::tests_support::fixture(name)
}

#[test]
#[ignore = "writes the fuzz corpus; run by hand when a decoder's format changes"]
fn write_binary_seeds() {
    // OTLP: the Python and Node SDKs' requests; the first byte is the signal.
    for (i, signal) in ["traces", "metrics", "logs"].iter().enumerate() {
        let first = [i as u8];
        write("otlp_protobuf", &format!("python-sdk-{signal}"), &first, &fixture(&format!("python-sdk-{signal}.pb")));
        write("otlp_json", &format!("node-sdk-{signal}"), &first, &fixture(&format!("node-sdk-{signal}.json")));
    }

    // Jaeger: one batch in each wire form.
    let batch = jaeger_batch();
    write("jaeger_thrift", "agent-compact", &[0], &agent_datagram(Protocol::Compact, &batch).unwrap());
    write("jaeger_thrift", "agent-binary", &[1], &agent_datagram(Protocol::Binary, &batch).unwrap());
    write("jaeger_thrift", "collector-batch", &[2], &binary_batch(&batch).unwrap());
    write("jaeger_proto", "post-spans", &[], &jaeger_proto().encode_to_vec());

    // Zipkin protobuf.
    write("zipkin_proto", "list-of-spans", &[1], &zipkin_proto().encode_to_vec());

    // Remote write 1.0 and 2.0, as protobuf (compressed by the target) and as snappy blocks.
    let v1 = remote_write_v1().encode_to_vec();
    let v2 = remote_write_v2().encode_to_vec();
    write("remote_write", "v1", &[0], &v1);
    write("remote_write", "v2", &[1], &v2);
    write("remote_write", "v1-snappy", &[2], &snap::raw::Encoder::new().compress_vec(&v1).unwrap());
    write("remote_write", "v2-snappy", &[3], &snap::raw::Encoder::new().compress_vec(&v2).unwrap());

    // Fluent Forward: the four message modes, in one stream and one at a time.
    let modes = fluent_messages();
    let mut stream = Vec::new();
    for (name, m) in &modes {
        write("fluent_forward", name, &[0, 2], m);
        stream.extend_from_slice(m);
    }
    write("fluent_forward", "stream-in-pieces", &[7, 2], &stream);

    // Kafka: one well-formed response of each kind the client reads.
    for (api, name, body) in kafka_responses() {
        write("kafka_responses", name, &[api], &body);
    }
}

fn jaeger_batch() -> Batch {
    let tag = |k: &str, v: Value| Tag::new(k, v);
    Batch {
        process: Some(Process {
            service_name: "checkout".into(),
            tags: vec![tag("hostname", Value::Str("web-1".into())), tag("ip", Value::Long(167772161))],
        }),
        spans: vec![Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: [3; 8],
            operation_name: "GET /cart".into(),
            references: vec![SpanRef { ref_type: RefType::FollowsFrom, trace_id: [1; 16], span_id: [4; 8] }],
            flags: 1,
            start_unix_nano: 1_700_000_000_000_000_000,
            duration_nano: 1_500_000,
            tags: vec![
                tag("span.kind", Value::Str("server".into())),
                tag("error", Value::Bool(true)),
                tag("ratio", Value::Double(0.25)),
                tag("blob", Value::Binary(vec![0, 1, 2])),
            ],
            logs: vec![Log {
                time_unix_nano: 1_700_000_000_000_500_000,
                fields: vec![tag("event", Value::Str("retry".into()))],
            }],
            process: None,
        }],
    }
}

fn jaeger_proto() -> jpb::PostSpansRequest {
    let kv = |key: &str, v_type: i32| jpb::KeyValue {
        key: key.into(),
        v_type,
        v_str: "v".into(),
        v_bool: true,
        v_int64: 7,
        v_float64: 1.5,
        v_binary: vec![9],
    };
    jpb::PostSpansRequest {
        batch: Some(jpb::Batch {
            spans: vec![jpb::Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                operation_name: "query".into(),
                references: vec![jpb::SpanRef { trace_id: vec![1; 16], span_id: vec![3; 8], ref_type: 0 }],
                flags: 1,
                tags: (0..5).map(|t| kv(&format!("k{t}"), t)).collect(),
                logs: vec![jpb::Log { timestamp: None, fields: vec![kv("event", 0)] }],
                process: Some(jpb::Process { service_name: "db".into(), tags: vec![kv("host", 0)] }),
                ..Default::default()
            }],
            process: Some(jpb::Process { service_name: "api".into(), tags: vec![] }),
        }),
    }
}

fn zipkin_proto() -> zpb::ListOfSpans {
    let endpoint = |name: &str| zpb::Endpoint {
        service_name: name.into(),
        ipv4: vec![10, 0, 0, 1],
        ipv6: vec![0; 16],
        port: 8080,
    };
    zpb::ListOfSpans {
        spans: vec![zpb::Span {
            trace_id: vec![1; 16],
            parent_id: vec![2; 8],
            id: vec![3; 8],
            kind: 2,
            name: "get".into(),
            timestamp: 1_700_000_000_000_000,
            duration: 1500,
            local_endpoint: Some(endpoint("frontend")),
            remote_endpoint: Some(endpoint("backend")),
            annotations: vec![zpb::Annotation { timestamp: 1_700_000_000_000_100, value: "ws".into() }],
            tags: [("http.status_code".to_string(), "200".to_string()), ("error".into(), "true".into())]
                .into_iter()
                .collect(),
            debug: true,
            shared: false,
        }],
    }
}

fn remote_write_v1() -> rw1::WriteRequest {
    let label = |n: &str, v: &str| rw1::Label { name: n.into(), value: v.into() };
    let series = |name: &str, extra: Vec<rw1::Label>, value: f64| rw1::TimeSeries {
        labels: [vec![label("__name__", name), label("job", "node"), label("instance", "h:9100")], extra].concat(),
        samples: vec![rw1::Sample { value, timestamp: 1_700_000_000_000 }],
    };
    rw1::WriteRequest {
        timeseries: vec![
            series("http_requests_total", vec![label("code", "200")], 1027.0),
            series("latency_seconds_bucket", vec![label("le", "0.5")], 3.0),
            series("latency_seconds_bucket", vec![label("le", "+Inf")], 4.0),
            series("latency_seconds_count", vec![], 4.0),
            series("latency_seconds_sum", vec![], 1.25),
        ],
        metadata: vec![
            rw1::MetricMetadata {
                r#type: 1,
                metric_family_name: "http_requests_total".into(),
                help: "Requests.".into(),
                unit: String::new(),
            },
            rw1::MetricMetadata {
                r#type: 3,
                metric_family_name: "latency_seconds".into(),
                help: "Latency.".into(),
                unit: "seconds".into(),
            },
        ],
    }
}

fn remote_write_v2() -> rw2::Request {
    let symbols = ["", "__name__", "up", "job", "node", "instance", "h:9100", "Whether up.", "requests_total"];
    rw2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: vec![
            rw2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4, 5, 6],
                samples: vec![rw2::Sample { value: 1.0, timestamp: 1_700_000_000_000, start_timestamp: 0 }],
                metadata: Some(rw2::Metadata { r#type: 2, help_ref: 7, ..Default::default() }),
            },
            rw2::TimeSeries {
                labels_refs: vec![1, 8, 3, 4, 5, 6],
                samples: vec![rw2::Sample {
                    value: 12.0,
                    timestamp: 1_700_000_000_000,
                    start_timestamp: 1_699_000_000_000,
                }],
                metadata: Some(rw2::Metadata { r#type: 1, ..Default::default() }),
            },
        ],
    }
}

fn fluent_messages() -> Vec<(&'static str, Vec<u8>)> {
    use rmpv::Value as V;
    let encode = |v: &V| {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    };
    let record = V::Map(vec![(V::from("log"), V::from("hello")), (V::from("level"), V::from(3))]);
    let event_time = V::Ext(0, vec![0x65, 0x53, 0xf1, 0x00, 0x00, 0x00, 0x00, 0x01]);
    let entry = V::Array(vec![V::from(1_700_000_000), record.clone()]);
    let packed = encode(&entry).repeat(2);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &packed).unwrap();
    let gzipped = gz.finish().unwrap();
    let chunk = V::Map(vec![(V::from("chunk"), V::from("p8n9gmxTQVC8/nh2wlKKeQ=="))]);
    let gzip_option = V::Map(vec![(V::from("compressed"), V::from("gzip")), (V::from("size"), V::from(2))]);
    vec![
        ("message", encode(&V::Array(vec![V::from("app.web"), event_time, record.clone(), chunk.clone()]))),
        ("forward", encode(&V::Array(vec![V::from("app.web"), V::Array(vec![entry.clone(), entry]), chunk]))),
        ("packed-forward", encode(&V::Array(vec![V::from("app.web"), V::Binary(packed)]))),
        ("compressed-packed-forward", encode(&V::Array(vec![V::from("app.web"), V::Binary(gzipped), gzip_option]))),
    ]
}

fn kafka_responses() -> Vec<(u8, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut w = Writer::default();
    w.i16(0).i32(1).string("broker-1").i32(9092);
    out.push((0, "find-coordinator", w.0));
    let subscription = crate::kafka::assign::subscription(&["otlp_logs", "otlp_spans"]);
    let mut w = Writer::default();
    w.i32(0).i16(0).i32(3).string("range").string("m-1").string("m-1").i32(2);
    w.string("m-1").bytes(&subscription).string("m-2").bytes(&subscription);
    out.push((1, "join-leader", w.0));
    let mut w = Writer::default();
    w.i32(0).i16(79).i32(-1).string("").string("").string("m-7").i32(0);
    out.push((1, "join-member-id-required", w.0));
    let assignment = crate::kafka::assign::assignment(
        &[("otlp_logs".to_string(), vec![0, 1, 2]), ("otlp_spans".to_string(), vec![3])].into_iter().collect(),
    );
    let mut w = Writer::default();
    w.i32(0).i16(0).bytes(&assignment);
    out.push((2, "sync", w.0));
    let mut w = Writer::default();
    w.i32(0).i16(27);
    out.push((3, "heartbeat-rebalance", w.0));
    let mut w = Writer::default();
    w.i32(1).string("otlp_logs").i32(2);
    w.i32(0).i64(42).string("").i16(0);
    w.i32(1).i64(-1).i16(-1).i16(3);
    out.push((4, "offset-fetch", w.0));
    let mut w = Writer::default();
    w.i32(1).string("otlp_logs").i32(2).i32(0).i16(0).i32(1).i16(22);
    out.push((5, "offset-commit", w.0));
    out.push((6, "subscription", subscription));
    out.push((7, "assignment", assignment));
    out
}
