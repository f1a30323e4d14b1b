//! The realistic traces request both benchmarks send: 100 spans, 10 attributes each (strings,
//! ints, a bool, a double), one resource, one scope; about 406 bytes per span on the wire.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

pub const SPANS_PER_REQUEST: usize = 100;

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue { key: k.to_string(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

/// A request whose ids and service name vary with `seed`.
pub fn request(seed: u64) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST as u64)
        .map(|i| Span {
            trace_id: [seed.to_be_bytes(), i.to_be_bytes()].concat(),
            span_id: (seed ^ (i << 32)).to_be_bytes().to_vec(),
            parent_span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("GET /api/v1/items/{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_000_500_000 + i,
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
                    kv("service.name", Value::StringValue(format!("svc-{}", seed % 3))),
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
