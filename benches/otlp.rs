//! Hot paths of the OTLP path, per span: taking in a realistic request (protobuf scan and JSON
//! decode), merging batches (encoded and decoded) including freeing the result, as every batch is
//! freed after export, and encoding for export (pass-through and re-encode).
//! Realistic = 100 spans per request, 10 attributes per span, ~440 bytes per span on the wire.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::hint::black_box;
use switchyard::pipeline::{Batch, Request, Signal};
use switchyard::receivers::otlp::{decode_json, decode_protobuf};

const SPANS: usize = 100;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.to_string(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn realistic(seed: u8) -> ExportTraceServiceRequest {
    let spans = (0..SPANS)
        .map(|i| Span {
            trace_id: vec![seed, i as u8, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
            span_id: vec![i as u8, seed, 3, 4, 5, 6, 7, 8],
            parent_span_id: vec![9, 9, 9, 9, 9, 9, 9, i as u8],
            name: format!("GET /api/v1/items/{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            end_time_unix_nano: 1_700_000_000_000_500_000 + i as u64,
            attributes: vec![
                kv("http.request.method", Value::StringValue("GET".into())),
                kv("http.route", Value::StringValue("/api/v1/items/{id}".into())),
                kv("http.response.status_code", Value::IntValue(200)),
                kv("url.path", Value::StringValue(format!("/api/v1/items/{i}"))),
                kv("server.address", Value::StringValue("items.internal".into())),
                kv("server.port", Value::IntValue(8080)),
                kv("network.protocol.version", Value::StringValue("1.1".into())),
                kv("user_agent.original", Value::StringValue("python-requests/2.31".into())),
                kv("app.cache_hit", Value::BoolValue(i % 2 == 0)),
                kv("app.latency_ratio", Value::DoubleValue(0.25)),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", Value::StringValue("items".into())),
                    kv("service.version", Value::StringValue("1.4.2".into())),
                    kv("host.name", Value::StringValue("node-17".into())),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.flask".into(),
                    version: "0.45b0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn benches(c: &mut Criterion) {
    let request = realistic(1);
    let wire = bytes::Bytes::from(request.encode_to_vec());
    let json = serde_json::to_vec(&request).expect("json");
    eprintln!(
        "request: {SPANS} spans, {} bytes protobuf ({} per span), {} bytes JSON",
        wire.len(),
        wire.len() / SPANS,
        json.len()
    );

    let mut g = c.benchmark_group("otlp_traces");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("decode_protobuf_validate", |b| {
        b.iter(|| decode_protobuf(Signal::Traces, black_box(wire.clone())).ok())
    });
    g.bench_function("decode_json_validate", |b| b.iter(|| decode_json(Signal::Traces, black_box(&json)).ok()));
    g.bench_function("encode_passthrough", |b| {
        let batch = Batch::from_encoded(Signal::Traces, wire.clone(), SPANS);
        b.iter(|| black_box(batch.to_encoded()))
    });
    g.bench_function("encode_after_decode", |b| {
        let batch = Batch::from_request(Request::Traces(request.clone()));
        b.iter(|| black_box(batch.to_encoded()))
    });
    g.finish();

    let mut g = c.benchmark_group("batch_merge_10x100");
    g.throughput(Throughput::Elements(10 * SPANS as u64));
    g.bench_function("encoded", |b| {
        b.iter_batched(
            || (0..10).map(|_| Batch::from_encoded(Signal::Traces, wire.clone(), SPANS)).collect::<Vec<_>>(),
            |parts| black_box(Batch::merge(parts).map(|b| b.items())),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("decoded", |b| {
        b.iter_batched(
            || (0..10).map(|i| Batch::from_request(Request::Traces(realistic(i)))).collect::<Vec<_>>(),
            |parts| black_box(Batch::merge(parts).map(|b| b.items())),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(otlp, benches);
criterion_main!(otlp);
