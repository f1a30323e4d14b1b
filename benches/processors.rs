//! Processors, per span, on the realistic request of the other benches (100 spans, 10 attributes
//! each): each processor's cost from the received bytes through its work, and what an OTLP
//! exporter then has to encode. A filter or sampler that keeps nothing leaves nothing to encode.

#[path = "support/realistic.rs"]
mod realistic;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use realistic::SPANS_PER_REQUEST as SPANS;
use switchyard::pipeline::{Batch, Processor, Signal};

fn processor(kind: &str, yaml: serde_json::Value) -> Box<dyn Processor> {
    use switchyard::processors::*;
    match kind {
        "filter" => Box::new(
            filter::FilterProcessor::new("f".into(), &serde_json::from_value(yaml).unwrap(), Default::default())
                .unwrap(),
        ),
        "attributes" => Box::new(attributes::AttributesProcessor::new(&serde_json::from_value(yaml).unwrap()).unwrap()),
        "transform" => Box::new(transform::TransformProcessor::new(&serde_json::from_value(yaml).unwrap()).unwrap()),
        "redaction" => Box::new(redaction::RedactionProcessor::new(&serde_json::from_value(yaml).unwrap()).unwrap()),
        "probabilistic_sampler" => Box::new(probabilistic_sampler::ProbabilisticSampler::new(
            "p".into(),
            serde_json::from_value(yaml).unwrap(),
            Default::default(),
        )),
        _ => unreachable!(),
    }
}

fn benches(c: &mut Criterion) {
    let wire = bytes::Bytes::from(realistic::request(1).encode_to_vec());
    let cases: Vec<(&str, &str, serde_json::Value)> = vec![
        (
            "filter_keeps_all",
            "filter",
            serde_json::json!({"traces": {"span": [r#"attributes["http.route"] == "/healthz""#]}}),
        ),
        ("filter_keeps_none", "filter", serde_json::json!({"traces": {"span": [r#"kind == SPAN_KIND_SERVER"#]}})),
        (
            "attributes_upsert_hash",
            "attributes",
            serde_json::json!({"actions": [
                {"key": "env", "value": "prod", "action": "upsert"},
                {"key": "user_agent.original", "action": "hash"},
            ]}),
        ),
        (
            "transform_3_statements",
            "transform",
            serde_json::json!({"trace_statements": [{"context": "span", "statements": [
                r#"set(attributes["env"], "prod")"#,
                r#"delete_key(attributes, "network.protocol.version")"#,
                r#"replace_pattern(attributes["url.path"], "[0-9]+", "{id}")"#,
            ]}]}),
        ),
        (
            "redaction",
            "redaction",
            serde_json::json!({"allowed_keys": ["http.request.method", "http.route", "url.path", "server.port"], "blocked_values": ["[0-9]{5,}"]}),
        ),
        (
            "probabilistic_sampler_10pct",
            "probabilistic_sampler",
            serde_json::json!({"sampling_percentage": 10.0, "hash_seed": 1}),
        ),
        ("probabilistic_sampler_0pct", "probabilistic_sampler", serde_json::json!({"sampling_percentage": 0.0})),
    ];
    let mut g = c.benchmark_group("processors");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("none_passthrough_encode", |b| {
        b.iter_batched(
            || Batch::from_encoded(Signal::Traces, wire.clone(), SPANS),
            |batch| batch.to_encoded(),
            BatchSize::SmallInput,
        )
    });
    for (name, kind, yaml) in cases {
        let mut p = processor(kind, yaml);
        // The processor's work and the encoding an OTLP exporter then needs (if anything is left).
        g.bench_function(name, |b| {
            b.iter_batched(
                || Batch::from_encoded(Signal::Traces, wire.clone(), SPANS),
                |batch| {
                    let mut out = Vec::new();
                    p.process(batch, &mut out);
                    out.iter().map(|b| b.to_encoded().len()).sum::<usize>()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(processors, benches);
criterion_main!(processors);
