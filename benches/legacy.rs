//! Legacy trace ingestion, per span: a Jaeger agent datagram (Thrift compact) and a Zipkin v2
//! request (JSON and protobuf) decoded and translated to OTLP, then encoded as an OTLP exporter
//! sends it; beside them, in the same run, the OTLP receive path for the same spans.
//! The spans are the realistic ones of the other benches (10 attributes each), carried as each
//! format carries them: attributes as Jaeger tags, as Zipkin string tags.

#[path = "support/realistic.rs"]
mod realistic;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use realistic::SPANS_PER_REQUEST as SPANS;
use std::hint::black_box;
use switchyard::pipeline::Signal;
use switchyard::receivers::jaeger::model::{self, Tag, Value};
use switchyard::receivers::jaeger::thrift::{Protocol, decode_agent_message};
use switchyard::receivers::jaeger::thrift_encode::agent_datagram;
use switchyard::receivers::jaeger::translate::batch_to_otlp;
use switchyard::receivers::otlp::{decode_json, decode_protobuf};
use switchyard::receivers::zipkin;

fn tag_value(v: &AnyValue) -> Value {
    match v.value.as_ref() {
        Some(any_value::Value::StringValue(s)) => Value::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Value::Long(*i),
        Some(any_value::Value::DoubleValue(d)) => Value::Double(*d),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        _ => Value::Str(String::new()),
    }
}

fn text(v: &AnyValue) -> String {
    match tag_value(v) {
        Value::Str(s) => s,
        Value::Long(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Binary(_) => String::new(),
    }
}

/// The realistic request as one Jaeger batch (the resource is the process).
fn jaeger_batch(req: &ExportTraceServiceRequest) -> model::Batch {
    let rs = &req.resource_spans[0];
    let resource = rs.resource.clone().unwrap_or_default().attributes;
    let process = model::Process {
        service_name: "svc".into(),
        tags: resource.iter().map(|a| Tag::new(&a.key, tag_value(a.value.as_ref().unwrap()))).collect(),
    };
    let spans = rs.scope_spans[0]
        .spans
        .iter()
        .map(|s| model::Span {
            trace_id: s.trace_id.clone().try_into().unwrap(),
            span_id: s.span_id.clone().try_into().unwrap(),
            parent_span_id: s.parent_span_id.clone().try_into().unwrap(),
            operation_name: s.name.clone(),
            flags: 1,
            start_unix_nano: s.start_time_unix_nano,
            duration_nano: s.end_time_unix_nano - s.start_time_unix_nano,
            tags: std::iter::once(Tag::new("span.kind", Value::Str("server".into())))
                .chain(s.attributes.iter().map(|a| Tag::new(&a.key, tag_value(a.value.as_ref().unwrap()))))
                .collect(),
            ..Default::default()
        })
        .collect();
    model::Batch { process: Some(process), spans }
}

/// The realistic request as a Zipkin v2 JSON array.
fn zipkin_json(req: &ExportTraceServiceRequest) -> Vec<u8> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let spans: Vec<serde_json::Value> = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| {
            let tags: serde_json::Map<String, serde_json::Value> = s
                .attributes
                .iter()
                .map(|a| (a.key.clone(), serde_json::Value::String(text(a.value.as_ref().unwrap()))))
                .collect();
            serde_json::json!({
                "traceId": hex(&s.trace_id), "id": hex(&s.span_id), "parentId": hex(&s.parent_span_id),
                "kind": "SERVER", "name": s.name, "timestamp": s.start_time_unix_nano / 1000,
                "duration": (s.end_time_unix_nano - s.start_time_unix_nano) / 1000,
                "localEndpoint": {"serviceName": "svc", "ipv4": "10.0.0.7", "port": 8080},
                "tags": tags,
            })
        })
        .collect();
    serde_json::to_vec(&spans).unwrap()
}

fn zipkin_proto(json: &[u8]) -> Vec<u8> {
    use switchyard::proto::zipkin as pb;
    let spans = zipkin::json::decode(json).unwrap();
    pb::ListOfSpans {
        spans: spans
            .into_iter()
            .map(|s| pb::Span {
                trace_id: s.trace_id.to_vec(),
                parent_id: s.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
                id: s.id.to_vec(),
                kind: pb::span::Kind::Server as i32,
                name: s.name,
                timestamp: s.timestamp_us.unwrap_or(0),
                duration: s.duration_us.unwrap_or(0),
                local_endpoint: Some(pb::Endpoint {
                    service_name: "svc".into(),
                    ipv4: vec![10, 0, 0, 7],
                    port: 8080,
                    ..Default::default()
                }),
                tags: s.tags.into_iter().collect(),
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

fn benches(c: &mut Criterion) {
    let request = realistic::request(1);
    let otlp = bytes::Bytes::from(request.encode_to_vec());
    let otlp_json = serde_json::to_vec(&request).unwrap();
    let datagram = agent_datagram(Protocol::Compact, &jaeger_batch(&request)).unwrap();
    let zjson = zipkin_json(&request);
    let zproto = zipkin_proto(&zjson);
    eprintln!(
        "{SPANS} spans: OTLP protobuf {} B, OTLP JSON {} B, Jaeger compact datagram {} B, Zipkin JSON {} B, Zipkin protobuf {} B",
        otlp.len(),
        otlp_json.len(),
        datagram.len(),
        zjson.len(),
        zproto.len()
    );

    let mut g = c.benchmark_group("legacy_traces");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("otlp_protobuf_receive", |b| {
        b.iter(|| decode_protobuf(Signal::Traces, black_box(otlp.clone())).ok())
    });
    g.bench_function("otlp_json_receive", |b| b.iter(|| decode_json(Signal::Traces, black_box(&otlp_json)).ok()));
    g.bench_function("jaeger_compact_decode_translate", |b| {
        b.iter(|| batch_to_otlp(decode_agent_message(Protocol::Compact, black_box(&datagram)).unwrap()))
    });
    g.bench_function("jaeger_compact_decode_translate_encode", |b| {
        b.iter(|| batch_to_otlp(decode_agent_message(Protocol::Compact, black_box(&datagram)).unwrap()).encode_to_vec())
    });
    g.bench_function("zipkin_json_decode_translate", |b| {
        b.iter(|| zipkin::translate::to_otlp(zipkin::json::decode(black_box(&zjson)).unwrap(), false))
    });
    g.bench_function("zipkin_json_decode_translate_encode", |b| {
        b.iter(|| zipkin::translate::to_otlp(zipkin::json::decode(black_box(&zjson)).unwrap(), false).encode_to_vec())
    });
    g.bench_function("zipkin_proto_decode_translate_encode", |b| {
        b.iter(|| zipkin::translate::to_otlp(zipkin::proto::decode(black_box(&zproto)).unwrap(), false).encode_to_vec())
    });
    g.finish();
}

criterion_group!(legacy, benches);
criterion_main!(legacy);
