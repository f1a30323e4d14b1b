//! Zipkin v2 → OTLP, per PROTOCOLS.md §3.2 (the rules of the Collector's Zipkin translator):
//! `localEndpoint.serviceName` and resource-convention tags → the resource, ids and times, kind,
//! status from `otel.status_code`/`error`, endpoints → peer and network attributes, annotations →
//! events, `w3c.tracestate`, and the `otlp.link.N` tags OTLP → Zipkin writes → links.

use super::model::{self, Endpoint, Kind};
use crate::attributes::{as_str, kv, put, string, take, take_scope};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// Set on a span that came without a start time (it then starts at the epoch).
pub const ABSENT_START_TIME: &str = "otel.zipkin.absentField.startTime";

/// How many `otlp.link.N` tags are read (0 up to this, stopping at the first gap).
const MAX_LINKS: usize = 128;

/// Whether a tag names a resource attribute in the semantic conventions (and so moves to the
/// resource): the resource namespaces, plus the OpenCensus resource keys.
fn is_resource_key(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "service.",
        "telemetry.",
        "host.",
        "os.",
        "process.",
        "container.",
        "k8s.",
        "cloud.",
        "deployment.",
        "device.",
        "webengine.",
        "aws.ecs.",
        "aws.eks.",
        "aws.log.",
    ];
    const KEYS: &[&str] = &[
        "faas.name",
        "faas.id",
        "faas.version",
        "faas.instance",
        "faas.max_memory",
        "opencensus.starttime",
        "opencensus.exporterversion",
        "opencensus.resourcetype",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

/// Translates spans; those of one service with the same resource tags share a resource.
pub fn to_otlp(spans: Vec<model::Span>, parse_string_tags: bool) -> ExportTraceServiceRequest {
    let mut groups: Vec<(Vec<KeyValue>, Vec<ScopeSpans>)> = Vec::new();
    for span in spans {
        let (resource, scope, otlp) = span_to_otlp(span, parse_string_tags);
        let at = match groups.iter().position(|(r, _)| *r == resource) {
            Some(i) => i,
            None => {
                groups.push((resource, Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[at].1;
        match scopes.iter_mut().find(|s| s.scope == scope) {
            Some(s) => s.spans.push(otlp),
            None => scopes.push(ScopeSpans { scope, spans: vec![otlp], schema_url: String::new() }),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(attributes, scope_spans)| ResourceSpans {
                resource: (!attributes.is_empty()).then(|| Resource { attributes, ..Default::default() }),
                scope_spans,
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// One span: its resource attributes, its scope, and the OTLP span.
fn span_to_otlp(span: model::Span, parse_string_tags: bool) -> (Vec<KeyValue>, Option<InstrumentationScope>, Span) {
    let mut resource = Vec::new();
    if let Some(name) = span.local_endpoint.as_ref().and_then(|e| e.service_name.as_deref()) {
        resource.push(kv("service.name", string(name)));
    }
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(span.tags.len() + 4);
    for (key, value) in span.tags {
        if is_resource_key(&key) {
            put(&mut resource, &key, string(&value));
        } else {
            let v = if parse_string_tags { typed(&value) } else { string(&value) };
            put(&mut attributes, &key, v);
        }
    }
    let scope = take_scope(&mut attributes);
    let kind = match span.kind {
        Some(Kind::Client) => SpanKind::Client,
        Some(Kind::Server) => SpanKind::Server,
        Some(Kind::Producer) => SpanKind::Producer,
        Some(Kind::Consumer) => SpanKind::Consumer,
        None => match take(&mut attributes, "span.kind").as_ref().and_then(as_str) {
            Some("internal") => SpanKind::Internal,
            _ => SpanKind::Unspecified,
        },
    };
    let status = status(&mut attributes);
    let trace_state = take(&mut attributes, "w3c.tracestate").as_ref().and_then(as_str).unwrap_or("").to_string();
    let links = links(&mut attributes);
    if let Some(local) = &span.local_endpoint {
        endpoint_attributes(&mut attributes, local, "network.local");
    }
    if let Some(remote) = &span.remote_endpoint {
        if let Some(name) = &remote.service_name {
            put(&mut attributes, "peer.service", string(name));
        }
        endpoint_attributes(&mut attributes, remote, "network.peer");
    }
    let start = match span.timestamp_us {
        Some(us) => us.saturating_mul(1000),
        None => {
            put(&mut attributes, ABSENT_START_TIME, AnyValue { value: Some(any_value::Value::BoolValue(true)) });
            0
        }
    };
    let end = start.saturating_add(span.duration_us.unwrap_or(0).saturating_mul(1000));
    let parent = span.parent_id.filter(|p| *p != span.id && *p != [0; 8]);
    let otlp = Span {
        trace_id: span.trace_id.to_vec(),
        span_id: span.id.to_vec(),
        trace_state,
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: span.name,
        kind: kind as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        events: span.annotations.into_iter().map(event).collect(),
        links,
        status,
        ..Default::default()
    };
    (resource, scope, otlp)
}

/// `ParseStringTags`: integers, decimals and true/false become typed values.
fn typed(value: &str) -> AnyValue {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    let v = if digits(unsigned) {
        value.parse().map(any_value::Value::IntValue).unwrap_or_else(|_| any_value::Value::StringValue(value.into()))
    } else if unsigned.split_once('.').is_some_and(|(a, b)| digits(a) && digits(b)) {
        value.parse().map(any_value::Value::DoubleValue).unwrap_or_else(|_| any_value::Value::StringValue(value.into()))
    } else if value == "true" || value == "false" {
        any_value::Value::BoolValue(value == "true")
    } else {
        any_value::Value::StringValue(value.into())
    };
    AnyValue { value: Some(v) }
}

/// The status: `otel.status_code` (with `otel.status_description`), then an `error` tag of any
/// value forces ERROR; its value is the message when nothing better says why.
fn status(attributes: &mut Vec<KeyValue>) -> Option<Status> {
    let mut found = None;
    if let Some(code) = take(attributes, "otel.status_code") {
        let name = as_str(&code).unwrap_or("").to_ascii_uppercase();
        let code = match name.strip_prefix("STATUS_CODE_").unwrap_or(&name) {
            "OK" => StatusCode::Ok,
            "ERROR" => StatusCode::Error,
            _ => StatusCode::Unset,
        };
        let message = take(attributes, "otel.status_description").as_ref().and_then(as_str).unwrap_or("").to_string();
        found = Some(Status { code: code as i32, message });
    }
    if let Some(error) = take(attributes, "error") {
        let said = as_str(&error).unwrap_or("");
        let description = if found.is_none() { take(attributes, "otel.status_description") } else { None };
        let message = match (&found, description.as_ref().and_then(as_str)) {
            (Some(s), _) if !s.message.is_empty() => s.message.clone(),
            (_, Some(d)) if !d.is_empty() => d.to_string(),
            _ if said != "true" => said.to_string(),
            _ => String::new(),
        };
        found = Some(Status { code: StatusCode::Error as i32, message });
    }
    found
}

/// The `otlp.link.N` tags (`traceid|spanid|tracestate|attributes JSON|dropped count`) as links.
fn links(attributes: &mut Vec<KeyValue>) -> Vec<Link> {
    let mut links = Vec::new();
    for n in 0..MAX_LINKS {
        let Some(tag) = take(attributes, &format!("otlp.link.{n}")) else { break };
        let text = as_str(&tag).unwrap_or("");
        let parts: Vec<&str> = text.splitn(5, '|').collect();
        let [trace_id, span_id, trace_state, attrs, dropped] = parts[..] else { continue };
        let id = |s: &str, len: usize| -> Option<Vec<u8>> {
            let s = s.trim_matches('"');
            (s.len() == len * 2)
                .then(|| (0..len).map(|i| u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()).collect())
                .flatten()
        };
        let (Some(trace_id), Some(span_id)) = (id(trace_id, 16), id(span_id, 8)) else { continue };
        links.push(Link {
            trace_id,
            span_id,
            trace_state: trace_state.to_string(),
            attributes: json_attributes(attrs),
            dropped_attributes_count: dropped.trim().parse().unwrap_or(0),
            flags: 0,
        });
    }
    links
}

/// A JSON object's scalar members as attributes (what OTLP → Zipkin writes for events and links).
fn json_attributes(text: &str) -> Vec<KeyValue> {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => any_value::Value::StringValue(s),
                serde_json::Value::Bool(b) => any_value::Value::BoolValue(b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => any_value::Value::IntValue(i),
                    None => any_value::Value::DoubleValue(n.as_f64()?),
                },
                _ => return None,
            };
            Some(kv(&k, AnyValue { value: Some(v) }))
        })
        .collect()
}

/// An annotation as an event: its value is the name, unless it is one of the forms OTel's Zipkin
/// exporters write for an event with attributes, which are read back whole:
/// `{"name": {attributes}}` (the OTel SDKs) or `name|{attributes}|dropped` (the collector).
fn event(a: model::Annotation) -> Event {
    let mut e = Event { time_unix_nano: a.timestamp_us.saturating_mul(1000), ..Default::default() };
    if a.value.starts_with('{')
        && let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&a.value)
        && map.len() == 1
        && let Some((name, serde_json::Value::Object(_))) = map.iter().next()
    {
        e.name = name.clone();
        e.attributes = map.get(name).map(|inner| json_attributes(&inner.to_string())).unwrap_or_default();
    } else if let Some((name, rest)) = a.value.split_once('|')
        && let Some((attrs, dropped)) = rest.rsplit_once('|')
        && let Ok(dropped) = dropped.trim().parse::<u32>()
        && attrs.trim_start().starts_with('{')
    {
        e.name = name.to_string();
        e.attributes = json_attributes(attrs);
        e.dropped_attributes_count = dropped;
    } else {
        e.name = a.value;
    }
    e
}

/// An endpoint's address and port under `prefix` (`network.local` or `network.peer`).
fn endpoint_attributes(attributes: &mut Vec<KeyValue>, e: &Endpoint, prefix: &str) {
    if let Some(ip) = e.ipv6.or(e.ipv4) {
        put(attributes, &format!("{prefix}.address"), string(&ip.to_string()));
    }
    if let Some(port) = e.port {
        put(attributes, &format!("{prefix}.port"), crate::attributes::int(i64::from(port)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::get;
    use crate::receivers::zipkin::model::Annotation;

    fn span() -> model::Span {
        model::Span {
            trace_id: [1; 16],
            id: [2; 8],
            name: "get".into(),
            timestamp_us: Some(1_000),
            duration_us: Some(5),
            local_endpoint: Some(Endpoint { service_name: Some("frontend".into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn with_tags(tags: &[(&str, &str)]) -> model::Span {
        model::Span { tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..span() }
    }

    fn one(s: model::Span) -> Span {
        to_otlp(vec![s], false).resource_spans.remove(0).scope_spans.remove(0).spans.remove(0)
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        get(attrs, key).and_then(|v| v.value.as_ref())
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    #[test]
    fn the_local_service_and_resource_tags_make_the_resource() {
        let a = with_tags(&[("deployment.environment", "test"), ("http.method", "GET"), ("host.name", "box")]);
        let mut b = span();
        b.local_endpoint = Some(Endpoint { service_name: Some("backend".into()), ..Default::default() });
        let req = to_otlp(vec![a, b, span()], false);
        assert_eq!(req.resource_spans.len(), 3, "frontend+env, backend, frontend without env");
        let r = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
        assert_eq!(attr(r, "service.name"), Some(&s("frontend")));
        assert_eq!(attr(r, "deployment.environment"), Some(&s("test")));
        assert_eq!(attr(r, "host.name"), Some(&s("box")));
        let span_attrs = &req.resource_spans[0].scope_spans[0].spans[0].attributes;
        assert_eq!(span_attrs.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), vec!["http.method"]);
        let rs = &req.resource_spans[1].resource.as_ref().unwrap().attributes;
        assert_eq!(attr(rs, "service.name"), Some(&s("backend")));
    }

    #[test]
    fn without_a_local_service_there_is_no_resource() {
        let mut x = span();
        x.local_endpoint = None;
        assert!(to_otlp(vec![x], false).resource_spans[0].resource.is_none());
    }

    #[test]
    fn ids_and_times_carry_over_and_a_self_parent_is_ignored() {
        let mut x = span();
        x.parent_id = Some([3; 8]);
        let out = one(x.clone());
        assert_eq!((out.trace_id, out.span_id, out.parent_span_id), (vec![1; 16], vec![2; 8], vec![3; 8]));
        assert_eq!((out.start_time_unix_nano, out.end_time_unix_nano), (1_000_000, 1_005_000));
        x.parent_id = Some([2; 8]);
        assert!(one(x).parent_span_id.is_empty());
    }

    #[test]
    fn a_missing_timestamp_starts_at_the_epoch_with_a_marker() {
        let mut x = span();
        x.timestamp_us = None;
        let out = one(x);
        assert_eq!((out.start_time_unix_nano, out.end_time_unix_nano), (0, 5_000));
        assert_eq!(attr(&out.attributes, ABSENT_START_TIME), Some(&any_value::Value::BoolValue(true)));
    }

    #[test]
    fn kinds_map_and_the_span_kind_tag_gives_internal() {
        for (kind, want) in [
            (Some(Kind::Client), SpanKind::Client),
            (Some(Kind::Server), SpanKind::Server),
            (Some(Kind::Producer), SpanKind::Producer),
            (Some(Kind::Consumer), SpanKind::Consumer),
            (None, SpanKind::Unspecified),
        ] {
            assert_eq!(one(model::Span { kind, ..span() }).kind, want as i32);
        }
        let out = one(with_tags(&[("span.kind", "internal")]));
        assert_eq!(out.kind, SpanKind::Internal as i32);
        assert!(out.attributes.is_empty());
    }

    #[test]
    fn status_comes_from_otel_status_code_and_error_forces_error() {
        let out = one(with_tags(&[("otel.status_code", "ERROR"), ("otel.status_description", "card declined")]));
        assert_eq!(out.status, Some(Status { code: StatusCode::Error as i32, message: "card declined".into() }));
        assert!(out.attributes.is_empty());
        let out = one(with_tags(&[("otel.status_code", "ok")]));
        assert_eq!(out.status.map(|s| s.code), Some(StatusCode::Ok as i32));
        let out = one(with_tags(&[("error", "true"), ("otel.status_description", "why")]));
        assert_eq!(out.status, Some(Status { code: StatusCode::Error as i32, message: "why".into() }));
        assert!(out.attributes.is_empty());
        let out = one(with_tags(&[("error", "true")]));
        assert_eq!(out.status, Some(Status { code: StatusCode::Error as i32, message: String::new() }));
        let out = one(with_tags(&[("error", "timeout")]));
        assert_eq!(out.status, Some(Status { code: StatusCode::Error as i32, message: "timeout".into() }));
        assert!(out.attributes.is_empty());
        assert!(one(span()).status.is_none());
    }

    #[test]
    fn endpoints_become_peer_and_network_attributes() {
        let mut x = span();
        x.local_endpoint = Some(Endpoint {
            service_name: Some("frontend".into()),
            ipv4: Some("10.0.0.1".parse().unwrap()),
            port: Some(8080),
            ..Default::default()
        });
        x.remote_endpoint = Some(Endpoint {
            service_name: Some("db".into()),
            ipv6: Some("::1".parse().unwrap()),
            port: Some(5432),
            ..Default::default()
        });
        let a = one(x).attributes;
        assert_eq!(attr(&a, "peer.service"), Some(&s("db")));
        assert_eq!(attr(&a, "network.peer.address"), Some(&s("::1")));
        assert_eq!(attr(&a, "network.peer.port"), Some(&any_value::Value::IntValue(5432)));
        assert_eq!(attr(&a, "network.local.address"), Some(&s("10.0.0.1")));
        assert_eq!(attr(&a, "network.local.port"), Some(&any_value::Value::IntValue(8080)));
    }

    #[test]
    fn tags_are_strings_unless_parse_string_tags() {
        let x = with_tags(&[("n", "42"), ("f", "1.5"), ("b", "true"), ("t", "1.5.2"), ("neg", "-3")]);
        let plain = one(x.clone()).attributes;
        assert_eq!(attr(&plain, "n"), Some(&s("42")));
        let typed = to_otlp(vec![x], true).resource_spans[0].scope_spans[0].spans[0].attributes.clone();
        assert_eq!(attr(&typed, "n"), Some(&any_value::Value::IntValue(42)));
        assert_eq!(attr(&typed, "neg"), Some(&any_value::Value::IntValue(-3)));
        assert_eq!(attr(&typed, "f"), Some(&any_value::Value::DoubleValue(1.5)));
        assert_eq!(attr(&typed, "b"), Some(&any_value::Value::BoolValue(true)));
        assert_eq!(attr(&typed, "t"), Some(&s("1.5.2")));
    }

    #[test]
    fn annotations_become_events() {
        let mut x = span();
        x.annotations = vec![
            Annotation { timestamp_us: 7, value: "cache-miss".into() },
            Annotation { timestamp_us: 8, value: r#"retry|{"attempt":2,"why":"busy"}|1"#.into() },
            Annotation { timestamp_us: 9, value: "a|b".into() },
            Annotation { timestamp_us: 10, value: r#"{"cache-miss": {"sku": "sku-42"}}"#.into() },
            Annotation { timestamp_us: 11, value: r#"{"not": "an event"}"#.into() },
        ];
        let ev = one(x).events;
        assert_eq!((ev[0].time_unix_nano, ev[0].name.as_str()), (7_000, "cache-miss"));
        assert_eq!(ev[1].name, "retry");
        assert_eq!(attr(&ev[1].attributes, "attempt"), Some(&any_value::Value::IntValue(2)));
        assert_eq!(ev[1].dropped_attributes_count, 1);
        assert_eq!(ev[2].name, "a|b");
        assert_eq!(ev[3].name, "cache-miss");
        assert_eq!(attr(&ev[3].attributes, "sku"), Some(&s("sku-42")));
        assert_eq!(ev[4].name, r#"{"not": "an event"}"#);
    }

    #[test]
    fn tracestate_scope_and_links_come_from_their_tags() {
        let out = to_otlp(
            vec![with_tags(&[
                ("w3c.tracestate", "v=1"),
                ("otel.library.name", "lib"),
                ("otel.library.version", "2.0"),
                ("otlp.link.0", r#"0102030405060708090a0b0c0d0e0f10|0102030405060708|k=v|{"a":"b"}|0"#),
                ("otlp.link.1", "broken"),
            ])],
            false,
        );
        let ss = &out.resource_spans[0].scope_spans[0];
        assert_eq!(ss.scope.as_ref().map(|s| (s.name.as_str(), s.version.as_str())), Some(("lib", "2.0")));
        let sp = &ss.spans[0];
        assert_eq!(sp.trace_state, "v=1");
        assert_eq!(sp.links.len(), 1);
        assert_eq!(sp.links[0].span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(sp.links[0].trace_state, "k=v");
        assert_eq!(attr(&sp.links[0].attributes, "a"), Some(&s("b")));
        assert!(sp.attributes.is_empty(), "{:?}", sp.attributes);
    }
}
