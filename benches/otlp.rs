//! Hot paths of the OTLP path, per span: taking in a realistic request (protobuf scan and JSON
//! decode), merging batches (encoded and decoded) including freeing the result, as every batch is
//! freed after export, and encoding for export (pass-through and re-encode).
//! Realistic = 100 spans per request, 10 attributes per span, ~440 bytes per span on the wire.

#[path = "support/realistic.rs"]
mod realistic;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use realistic::SPANS_PER_REQUEST as SPANS;
use std::hint::black_box;
use switchyard::pipeline::{Batch, Request, Signal};
use switchyard::receivers::otlp::{decode_json, decode_protobuf};

fn realistic(seed: u8) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    realistic::request(u64::from(seed))
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
