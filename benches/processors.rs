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

/// Connectors, per span, on the same request: where each part goes, and the encoding the
/// exporters behind the pipelines downstream then need.
fn connectors(c: &mut Criterion) {
    use switchyard::pipeline::component::{ConnectorContext, ConnectorSettings};
    let wire = bytes::Bytes::from(realistic::request(1).encode_to_vec());
    let downstream: Vec<String> = ["traces/a", "traces/b", "traces/rest"].map(String::from).to_vec();
    let routing = |yaml: &str| {
        let cfg: switchyard::connectors::routing::RoutingConfig =
            switchyard::config::parse_yaml("r.yaml", yaml).unwrap();
        cfg.build(&ConnectorContext { name: "routing".into(), telemetry: Default::default() }).unwrap()
    };
    let cases = [
        (
            "routing_by_resource",
            routing(
                "table:\n  - condition: attributes[\"service.name\"] == \"svc-1\"\n    pipelines: [traces/a]\ndefault_pipelines: [traces/rest]\n",
            ),
            None,
        ),
        (
            "routing_by_span_half_each_way",
            routing(
                "table:\n  - condition: attributes[\"app.cache_hit\"] == true\n    context: span\n    pipelines: [traces/a]\ndefault_pipelines: [traces/b]\n",
            ),
            None,
        ),
        (
            "routing_by_request_header",
            routing(
                "table:\n  - condition: request[\"x-tenant\"] == \"acme\"\n    context: request\n    pipelines: [traces/a]\ndefault_pipelines: [traces/rest]\n",
            ),
            Some(std::sync::Arc::new(vec![("x-tenant".to_string(), "acme".to_string())])),
        ),
        (
            "count_spans_by_service_and_route",
            {
                let cfg: switchyard::connectors::count::CountConfig = switchyard::config::parse_yaml(
                    "c.yaml",
                    "spans:\n  app.spans:\n    attributes: [{key: service.name}, {key: http.route}]\n",
                )
                .unwrap();
                cfg.build(&ConnectorContext { name: "count".into(), telemetry: Default::default() }).unwrap()
            },
            None,
        ),
        (
            "spanmetrics_default_dimensions",
            switchyard::connectors::spanmetrics::SpanMetricsConfig::default()
                .build(&ConnectorContext { name: "spanmetrics".into(), telemetry: Default::default() })
                .unwrap(),
            None,
        ),
        (
            "spanmetrics_with_http_route",
            {
                let cfg: switchyard::connectors::spanmetrics::SpanMetricsConfig = switchyard::config::parse_yaml(
                    "s.yaml",
                    "dimensions: [{name: http.route}, {name: http.request.method}]\n",
                )
                .unwrap();
                cfg.build(&ConnectorContext { name: "spanmetrics".into(), telemetry: Default::default() }).unwrap()
            },
            None,
        ),
        (
            "forward_to_two",
            switchyard::connectors::forward::ForwardConfig::default()
                .build(&ConnectorContext { name: "forward".into(), telemetry: Default::default() })
                .unwrap(),
            None,
        ),
    ];
    let mut g = c.benchmark_group("connectors");
    g.throughput(Throughput::Elements(SPANS as u64));
    // Decoding the request alone, which every connector but a request route needs first.
    g.bench_function("decode_only", |b| {
        b.iter_batched(
            || Batch::from_encoded(Signal::Traces, wire.clone(), SPANS),
            |batch| batch.request().map(|r| r.item_count()).unwrap_or(0),
            BatchSize::SmallInput,
        )
    });
    // The connector's own work on a request already decoded (by an earlier processor).
    let decoded = switchyard::pipeline::Request::Traces(realistic::request(1));
    for (name, yaml) in [
        ("spanmetrics_default_dimensions_decoded", "{}"),
        ("spanmetrics_with_http_route_decoded", "dimensions: [{name: http.route}, {name: http.request.method}]\n"),
    ] {
        let cfg: switchyard::connectors::spanmetrics::SpanMetricsConfig =
            switchyard::config::parse_yaml("s.yaml", yaml).unwrap();
        let connector =
            cfg.build(&ConnectorContext { name: "spanmetrics".into(), telemetry: Default::default() }).unwrap();
        g.bench_function(name, |b| {
            b.iter_batched(
                || Batch::from_request(decoded.clone()),
                |batch| {
                    let mut out = Vec::new();
                    connector.route(batch, &downstream, &mut out);
                    out.len()
                },
                BatchSize::SmallInput,
            )
        });
    }
    // servicegraph on decoded input: the spans paired, each client span (the even ones) with
    // the server span after it, under two services.
    {
        let mut paired = realistic::request(1);
        let resource_spans = &mut paired.resource_spans;
        for (r, rs) in resource_spans.iter_mut().enumerate() {
            if let Some(res) = rs.resource.as_mut() {
                for kv in res.attributes.iter_mut().filter(|kv| kv.key == "service.name") {
                    kv.value = Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                        value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(format!(
                            "svc-{}",
                            r % 2
                        ))),
                    });
                }
            }
        }
        let spans: Vec<&mut opentelemetry_proto::tonic::trace::v1::Span> = resource_spans
            .iter_mut()
            .flat_map(|rs| rs.scope_spans.iter_mut())
            .flat_map(|ss| ss.spans.iter_mut())
            .collect();
        let mut last_client: Option<Vec<u8>> = None;
        for (i, span) in spans.into_iter().enumerate() {
            span.trace_id = vec![(i / 2) as u8 + 1; 16];
            span.span_id = vec![i as u8 + 1; 8];
            if i % 2 == 0 {
                span.kind = 3;
                last_client = Some(span.span_id.clone());
            } else {
                span.kind = 2;
                span.parent_span_id = last_client.clone().unwrap_or_default();
            }
        }
        let paired = switchyard::pipeline::Request::Traces(paired);
        let cfg: switchyard::connectors::servicegraph::ServiceGraphConfig =
            switchyard::config::parse_yaml("g.yaml", "dimensions: [http.route]\n").unwrap();
        let connector =
            cfg.build(&ConnectorContext { name: "servicegraph".into(), telemetry: Default::default() }).unwrap();
        g.bench_function("servicegraph_decoded", |b| {
            b.iter_batched(
                || Batch::from_request(paired.clone()),
                |batch| {
                    let mut out = Vec::new();
                    connector.route(batch, &downstream, &mut out);
                    out.len()
                },
                BatchSize::SmallInput,
            )
        });
    }
    for (name, connector, context) in cases {
        let to: &[String] = if name == "forward_to_two" { &downstream[..2] } else { &downstream };
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let batch = Batch::from_encoded(Signal::Traces, wire.clone(), SPANS);
                    match &context {
                        Some(c) => batch.with_context(c.clone()),
                        None => batch,
                    }
                },
                |batch| {
                    let mut out = Vec::new();
                    connector.route(batch, to, &mut out);
                    out.iter().map(|(_, b)| b.to_encoded().len()).sum::<usize>()
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The loadbalancing exporter's routing by trace id: the realistic request (100 spans of 100
/// traces) split by backend straight from its bytes, against decoding it alone.
fn loadbalancing(c: &mut Criterion) {
    use switchyard::exporters::loadbalancing::{ring::Ring, split::split_traces};
    let wire = realistic::request(1).encode_to_vec();
    let ring = Ring::new((1..=3).map(|i| format!("backend-{i}:4317")));
    let mut g = c.benchmark_group("loadbalancing");
    g.throughput(Throughput::Elements(SPANS as u64));
    g.bench_function("split_by_trace_id_three_backends", |b| {
        b.iter(|| split_traces(&wire, 3, |id| ring.index_of(id).unwrap_or(0)).unwrap())
    });
    g.bench_function("decode_only", |b| {
        b.iter(|| {
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(&wire[..]).unwrap()
        })
    });
    g.finish();
}

criterion_group!(processors, benches, connectors, loadbalancing);
criterion_main!(processors);
