//! Jaeger → OTLP, per PROTOCOLS.md §2.4 (the rules of the Collector's Jaeger translator): ids,
//! times, process → resource, parent and links from references, `span.kind`, status, logs →
//! events, scope and tracestate tags. Both wire forms (Thrift and api_v2 protobuf) go through
//! this one translation, so a span means the same whichever way it arrived.

use super::model::{self, Batch, Process, RefType};
use crate::attributes::{as_str, get, kv, put, string, take, take_scope};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

/// A process with this service name stands for "no resource" (what OTLP → Jaeger writes for a
/// resource without `service.name`).
const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

/// Translates one batch. Spans that carry their own process get a resource of their own.
pub fn batch_to_otlp(batch: Batch) -> ExportTraceServiceRequest {
    // (process, spans of it, grouped by scope); the batch's own process is `None` here, so that
    // it is not copied for every span.
    let mut groups: Vec<(Option<Process>, Vec<ScopeSpans>)> = Vec::new();
    for mut span in batch.spans {
        let process = span.process.take().filter(|p| Some(p) != batch.process.as_ref());
        let (scope, otlp) = span_to_otlp(span);
        let at = match groups.iter().position(|(p, _)| *p == process) {
            Some(i) => i,
            None => {
                groups.push((process, Vec::new()));
                groups.len() - 1
            }
        };
        let scopes = &mut groups[at].1;
        match scopes.iter_mut().find(|s| s.scope.as_ref() == scope.as_ref()) {
            Some(s) => s.spans.push(otlp),
            None => scopes.push(ScopeSpans { scope, spans: vec![otlp], schema_url: String::new() }),
        }
    }
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(process, scope_spans)| ResourceSpans {
                resource: process.as_ref().or(batch.process.as_ref()).and_then(process_to_resource),
                scope_spans,
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// The process as a resource: `service.name`, its tags, `hostname` → `host.name` (unless set),
/// `jaeger.version` → `opencensus.exporterversion`.
fn process_to_resource(process: &Process) -> Option<Resource> {
    let mut attributes = Vec::with_capacity(process.tags.len() + 1);
    if !process.service_name.is_empty() && process.service_name != NO_SERVICE_NAME {
        attributes.push(kv("service.name", string(&process.service_name)));
    }
    for tag in &process.tags {
        put(&mut attributes, &tag.key, value(tag.value.clone()));
    }
    // Renamed only when the new key is free; otherwise both stay, as in the collector.
    if get(&attributes, "host.name").is_none()
        && let Some(host) = take(&mut attributes, "hostname")
    {
        attributes.push(kv("host.name", host));
    }
    if get(&attributes, "opencensus.exporterversion").is_none()
        && let Some(version) = take(&mut attributes, "jaeger.version")
    {
        let v = as_str(&version).unwrap_or("");
        attributes.push(kv("opencensus.exporterversion", string(&format!("Jaeger-{v}"))));
    }
    if attributes.is_empty() && process.service_name.is_empty() {
        return None;
    }
    Some(Resource { attributes, ..Default::default() })
}

/// Tags as attributes, moving their strings (a later tag with the same key wins).
fn tags_to_attributes(tags: Vec<model::Tag>) -> Vec<KeyValue> {
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(tags.len());
    for tag in tags {
        let value = Some(value(tag.value));
        match attributes.iter_mut().find(|a| a.key == tag.key) {
            Some(a) => a.value = value,
            None => attributes.push(KeyValue { key: tag.key, value, ..Default::default() }),
        }
    }
    attributes
}

fn span_to_otlp(mut span: model::Span) -> (Option<InstrumentationScope>, Span) {
    let mut attributes = tags_to_attributes(std::mem::take(&mut span.tags));
    let kind = match take(&mut attributes, "span.kind").as_ref().and_then(as_str) {
        Some("client") => SpanKind::Client,
        Some("server") => SpanKind::Server,
        Some("producer") => SpanKind::Producer,
        Some("consumer") => SpanKind::Consumer,
        Some("internal") => SpanKind::Internal,
        _ => SpanKind::Unspecified,
    };
    let status = status(&mut attributes, kind);
    let scope = take_scope(&mut attributes);
    let trace_state = take(&mut attributes, "w3c.tracestate").as_ref().and_then(as_str).unwrap_or("").to_string();
    let (parent, links) = parent_and_links(&span);
    let events = span.logs.into_iter().map(log_to_event).collect();
    let otlp = Span {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        trace_state,
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: span.operation_name,
        kind: kind as i32,
        start_time_unix_nano: span.start_unix_nano,
        end_time_unix_nano: span.start_unix_nano.saturating_add(span.duration_nano),
        attributes,
        events,
        links,
        status,
        ..Default::default()
    };
    (scope, otlp)
}

/// The status, by the first rule that applies: a `true` bool `error` tag; `otel.status_code`;
/// `http.status_code`. Tags that only carried the status are removed.
fn status(attributes: &mut Vec<KeyValue>, kind: SpanKind) -> Option<Status> {
    let mut found: Option<(StatusCode, String)> = None;
    let error_true = attributes.iter().any(|a| {
        a.key == "error"
            && matches!(a.value.as_ref().and_then(|v| v.value.as_ref()), Some(any_value::Value::BoolValue(true)))
    });
    if error_true {
        take(attributes, "error");
        let message = match take(attributes, "otel.status_description") {
            Some(d) => as_str(&d).unwrap_or("").to_string(),
            None => get(attributes, "http.status_message").and_then(as_str).unwrap_or("").to_string(),
        };
        found = Some((StatusCode::Error, message));
    }
    if let Some(code) = take(attributes, "otel.status_code") {
        if found.is_none() {
            let code = match as_str(&code).map(str::to_ascii_uppercase).as_deref() {
                Some("OK") => StatusCode::Ok,
                Some("ERROR") => StatusCode::Error,
                _ => StatusCode::Unset,
            };
            let message =
                take(attributes, "otel.status_description").as_ref().and_then(as_str).unwrap_or("").to_string();
            found = Some((code, message));
        }
    } else if found.is_none()
        && let Some(http) = get(attributes, "http.status_code").and_then(http_status)
    {
        let code = match http {
            400..=499 if kind == SpanKind::Client => StatusCode::Error,
            400..=499 if kind == SpanKind::Server => StatusCode::Unset,
            100..=399 => StatusCode::Unset,
            _ => StatusCode::Error,
        };
        // An HTTP code that means success leaves the status unset (no message either).
        if code != StatusCode::Unset {
            let message = get(attributes, "http.status_message").and_then(as_str).unwrap_or("").to_string();
            found = Some((code, message));
        }
    }
    found.map(|(code, message)| Status { code: code as i32, message })
}

/// `http.status_code` as a number, whether sent as an int or as a string holding one.
fn http_status(v: &AnyValue) -> Option<i64> {
    match v.value.as_ref()? {
        any_value::Value::IntValue(i) => Some(*i),
        any_value::Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The parent: `parentSpanId` if set, else the first CHILD_OF reference in the same trace, else
/// the first FOLLOWS_FROM one. Every reference except a CHILD_OF to the parent becomes a link
/// (as in the collector, a FOLLOWS_FROM parent stays a link too: the relation is kept).
fn parent_and_links(span: &model::Span) -> (Option<[u8; 8]>, Vec<Link>) {
    let parent = if span.parent_span_id != [0; 8] {
        Some(span.parent_span_id)
    } else {
        let first = |t: RefType| span.references.iter().find(|r| r.trace_id == span.trace_id && r.ref_type == t);
        first(RefType::ChildOf).or_else(|| first(RefType::FollowsFrom)).map(|r| r.span_id)
    };
    let links = span
        .references
        .iter()
        .filter(|r| !(r.ref_type == RefType::ChildOf && Some(r.span_id) == parent))
        .map(|r| Link {
            trace_id: r.trace_id.to_vec(),
            span_id: r.span_id.to_vec(),
            attributes: vec![kv(
                "opentracing.ref_type",
                string(if r.ref_type == RefType::ChildOf { "child_of" } else { "follows_from" }),
            )],
            ..Default::default()
        })
        .collect();
    (parent, links)
}

/// A log as an event: its fields as attributes, the `event` field as the name. A log without one
/// is named by its `message` field (what OTel's Jaeger exporters write the event name into).
fn log_to_event(log: model::Log) -> Event {
    let mut attributes = tags_to_attributes(log.fields);
    let named = |attributes: &mut Vec<KeyValue>, key: &str| {
        let i = attributes.iter().position(|a| a.key == key && a.value.as_ref().and_then(as_str).is_some())?;
        attributes.remove(i).value.as_ref().and_then(as_str).map(str::to_string)
    };
    let name = named(&mut attributes, "event").or_else(|| named(&mut attributes, "message")).unwrap_or_default();
    Event { time_unix_nano: log.time_unix_nano, name, attributes, dropped_attributes_count: 0 }
}

fn value(v: model::Value) -> AnyValue {
    let value = match v {
        model::Value::Str(s) => any_value::Value::StringValue(s),
        model::Value::Double(d) => any_value::Value::DoubleValue(d),
        model::Value::Bool(b) => any_value::Value::BoolValue(b),
        model::Value::Long(l) => any_value::Value::IntValue(l),
        model::Value::Binary(b) => any_value::Value::BytesValue(b),
    };
    AnyValue { value: Some(value) }
}

/// Tags as a test writes them.
#[cfg(test)]
fn tags(list: &[(&str, model::Value)]) -> Vec<model::Tag> {
    list.iter().map(|(k, v)| model::Tag::new(k, v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::jaeger::model::{Log, SpanRef, Value, trace_id};

    fn span_with(tags_: &[(&str, Value)]) -> model::Span {
        model::Span {
            trace_id: trace_id(1, 2),
            span_id: 3i64.to_be_bytes(),
            operation_name: "op".into(),
            start_unix_nano: 1_000_000,
            duration_nano: 5_000,
            tags: tags(tags_),
            ..Default::default()
        }
    }

    fn one(span: model::Span) -> Span {
        let mut req = batch_to_otlp(Batch {
            process: Some(Process { service_name: "svc".into(), tags: vec![] }),
            spans: vec![span],
        });
        req.resource_spans.remove(0).scope_spans.remove(0).spans.remove(0)
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        get(attrs, key).and_then(|v| v.value.as_ref())
    }

    fn code(s: &Span) -> (i32, &str) {
        s.status.as_ref().map(|st| (st.code, st.message.as_str())).unwrap_or((StatusCode::Unset as i32, ""))
    }

    #[test]
    fn ids_are_the_trace_id_halves_and_the_span_id_big_endian() {
        let s = one(span_with(&[]));
        assert_eq!(s.trace_id, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(s.span_id, [0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn end_time_is_start_plus_duration() {
        let s = one(span_with(&[]));
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (1_000_000, 1_005_000));
    }

    #[test]
    fn the_process_becomes_the_resource() {
        let process = Process {
            service_name: "shop".into(),
            tags: tags(&[
                ("hostname", Value::Str("box".into())),
                ("jaeger.version", Value::Str("Python-4.8.0".into())),
                ("ip", Value::Str("10.0.0.1".into())),
                ("pid", Value::Long(7)),
                ("ratio", Value::Double(0.5)),
                ("canary", Value::Bool(true)),
                ("blob", Value::Binary(vec![1, 2])),
            ]),
        };
        let r = process_to_resource(&process).unwrap().attributes;
        let expect = |k: &str, v: any_value::Value| assert_eq!(attr(&r, k), Some(&v), "{k}");
        expect("service.name", any_value::Value::StringValue("shop".into()));
        expect("host.name", any_value::Value::StringValue("box".into()));
        expect("opencensus.exporterversion", any_value::Value::StringValue("Jaeger-Python-4.8.0".into()));
        expect("ip", any_value::Value::StringValue("10.0.0.1".into()));
        expect("pid", any_value::Value::IntValue(7));
        expect("ratio", any_value::Value::DoubleValue(0.5));
        expect("canary", any_value::Value::BoolValue(true));
        expect("blob", any_value::Value::BytesValue(vec![1, 2]));
        assert!(attr(&r, "hostname").is_none() && attr(&r, "jaeger.version").is_none());
    }

    #[test]
    fn hostname_does_not_replace_an_existing_host_name() {
        let process = Process {
            service_name: "shop".into(),
            tags: tags(&[("host.name", Value::Str("real".into())), ("hostname", Value::Str("other".into()))]),
        };
        let r = process_to_resource(&process).unwrap().attributes;
        assert_eq!(attr(&r, "host.name"), Some(&any_value::Value::StringValue("real".into())));
        assert_eq!(attr(&r, "hostname"), Some(&any_value::Value::StringValue("other".into())), "kept, not lost");
    }

    #[test]
    fn the_no_service_name_marker_means_no_service_name() {
        let r = process_to_resource(&Process { service_name: NO_SERVICE_NAME.into(), tags: vec![] });
        assert!(r.is_none_or(|r| attr(&r.attributes, "service.name").is_none()));
    }

    #[test]
    fn spans_with_their_own_process_get_their_own_resource() {
        let mut other = span_with(&[]);
        other.process = Some(Process { service_name: "other".into(), tags: vec![] });
        let req = batch_to_otlp(Batch {
            process: Some(Process { service_name: "svc".into(), tags: vec![] }),
            spans: vec![span_with(&[]), other, span_with(&[])],
        });
        let names: Vec<(String, usize)> = req
            .resource_spans
            .iter()
            .map(|rs| {
                let r = rs.resource.as_ref().unwrap();
                let name = match attr(&r.attributes, "service.name") {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                };
                (name, rs.scope_spans[0].spans.len())
            })
            .collect();
        assert_eq!(names, vec![("svc".to_string(), 2), ("other".to_string(), 1)]);
    }

    #[test]
    fn the_parent_is_parent_span_id_first() {
        let mut s = span_with(&[]);
        s.parent_span_id = 9i64.to_be_bytes();
        s.references = vec![SpanRef { ref_type: RefType::ChildOf, trace_id: s.trace_id, span_id: 9i64.to_be_bytes() }];
        let out = one(s);
        assert_eq!(out.parent_span_id, 9i64.to_be_bytes());
        assert!(out.links.is_empty(), "the reference that is the parent is not also a link");
    }

    #[test]
    fn without_parent_span_id_the_first_same_trace_child_of_is_the_parent() {
        let mut s = span_with(&[]);
        let other_trace = trace_id(5, 5);
        s.references = vec![
            SpanRef { ref_type: RefType::ChildOf, trace_id: other_trace, span_id: 1i64.to_be_bytes() },
            SpanRef { ref_type: RefType::FollowsFrom, trace_id: s.trace_id, span_id: 2i64.to_be_bytes() },
            SpanRef { ref_type: RefType::ChildOf, trace_id: s.trace_id, span_id: 3i64.to_be_bytes() },
        ];
        let out = one(s);
        assert_eq!(out.parent_span_id, 3i64.to_be_bytes());
        let links: Vec<(Vec<u8>, Option<&any_value::Value>)> =
            out.links.iter().map(|l| (l.span_id.clone(), attr(&l.attributes, "opentracing.ref_type"))).collect();
        assert_eq!(
            links,
            vec![
                (1i64.to_be_bytes().to_vec(), Some(&any_value::Value::StringValue("child_of".into()))),
                (2i64.to_be_bytes().to_vec(), Some(&any_value::Value::StringValue("follows_from".into()))),
            ]
        );
    }

    #[test]
    fn a_same_trace_follows_from_is_the_parent_when_there_is_no_child_of() {
        let mut s = span_with(&[]);
        s.references =
            vec![SpanRef { ref_type: RefType::FollowsFrom, trace_id: s.trace_id, span_id: 4i64.to_be_bytes() }];
        let out = one(s);
        assert_eq!(out.parent_span_id, 4i64.to_be_bytes());
        assert_eq!(out.links.len(), 1, "a FOLLOWS_FROM parent is also kept as a link");
        assert_eq!(out.links[0].span_id, 4i64.to_be_bytes());
    }

    #[test]
    fn span_kind_tag_is_consumed() {
        for (tag, kind) in [
            ("client", SpanKind::Client),
            ("server", SpanKind::Server),
            ("producer", SpanKind::Producer),
            ("consumer", SpanKind::Consumer),
            ("internal", SpanKind::Internal),
            ("SERVER", SpanKind::Unspecified),
            ("rpc", SpanKind::Unspecified),
        ] {
            let s = one(span_with(&[("span.kind", Value::Str(tag.into()))]));
            assert_eq!(s.kind, kind as i32, "{tag}");
            assert!(s.attributes.is_empty(), "{tag}");
        }
    }

    #[test]
    fn error_true_is_an_error_with_the_description() {
        let s = one(span_with(&[
            ("error", Value::Bool(true)),
            ("otel.status_description", Value::Str("card declined".into())),
            ("otel.status_code", Value::Str("OK".into())),
        ]));
        assert_eq!(code(&s), (StatusCode::Error as i32, "card declined"));
        assert!(s.attributes.is_empty(), "error, the description and otel.status_code are removed: {:?}", s.attributes);
    }

    #[test]
    fn error_true_takes_http_status_message_when_there_is_no_description() {
        let s =
            one(span_with(&[("error", Value::Bool(true)), ("http.status_message", Value::Str("Bad Gateway".into()))]));
        assert_eq!(code(&s), (StatusCode::Error as i32, "Bad Gateway"));
        assert!(attr(&s.attributes, "http.status_message").is_some(), "kept: it is an HTTP attribute");
    }

    #[test]
    fn error_false_or_a_string_is_just_an_attribute() {
        for v in [Value::Bool(false), Value::Str("true".into())] {
            let s = one(span_with(&[("error", v.clone())]));
            assert_eq!(code(&s), (StatusCode::Unset as i32, ""), "{v:?}");
            assert!(attr(&s.attributes, "error").is_some());
        }
    }

    #[test]
    fn otel_status_code_is_case_insensitive_and_always_removed() {
        for (v, want) in [("ok", StatusCode::Ok), ("Error", StatusCode::Error), ("weird", StatusCode::Unset)] {
            let s = one(span_with(&[
                ("otel.status_code", Value::Str(v.into())),
                ("otel.status_description", Value::Str("why".into())),
            ]));
            assert_eq!(s.status.as_ref().map(|st| st.code), Some(want as i32), "{v}");
            assert_eq!(s.status.as_ref().map(|st| st.message.as_str()), Some("why"));
            assert!(s.attributes.is_empty());
        }
    }

    #[test]
    fn http_status_code_decides_when_nothing_else_does() {
        let cases = [
            (Value::Long(200), "server", StatusCode::Unset),
            (Value::Long(404), "client", StatusCode::Error),
            (Value::Long(404), "server", StatusCode::Unset),
            (Value::Long(404), "internal", StatusCode::Error),
            (Value::Str("503".into()), "server", StatusCode::Error),
            (Value::Long(302), "client", StatusCode::Unset),
            (Value::Long(99), "client", StatusCode::Error),
        ];
        for (v, kind, want) in cases {
            let s = one(span_with(&[
                ("span.kind", Value::Str(kind.into())),
                ("http.status_code", v.clone()),
                ("http.status_message", Value::Str("msg".into())),
            ]));
            assert_eq!(code(&s).0, want as i32, "{v:?} {kind}");
            let want_message = if want == StatusCode::Unset { "" } else { "msg" };
            assert_eq!(code(&s).1, want_message, "{v:?} {kind}");
            assert!(attr(&s.attributes, "http.status_code").is_some(), "kept");
        }
        let s = one(span_with(&[("http.status_code", Value::Str("n/a".into()))]));
        assert!(s.status.is_none(), "not a number: no status");
    }

    #[test]
    fn logs_become_events_named_by_their_event_field() {
        let mut s = span_with(&[]);
        s.logs = vec![
            Log {
                time_unix_nano: 7_000,
                fields: tags(&[("event", Value::Str("retry".into())), ("attempt", Value::Long(2))]),
            },
            Log { time_unix_nano: 8_000, fields: tags(&[("message", Value::Str("hi".into()))]) },
            Log { time_unix_nano: 9_000, fields: tags(&[("level", Value::Str("info".into()))]) },
        ];
        let out = one(s);
        assert_eq!(out.events.len(), 3);
        assert_eq!((out.events[0].time_unix_nano, out.events[0].name.as_str()), (7_000, "retry"));
        assert_eq!(
            out.events[0].attributes,
            vec![kv("attempt", AnyValue { value: Some(any_value::Value::IntValue(2)) })]
        );
        assert_eq!(out.events[1].name, "hi", "without an event field, message names it");
        assert!(out.events[1].attributes.is_empty());
        assert_eq!(out.events[2].name, "");
        assert_eq!(out.events[2].attributes.len(), 1);
    }

    #[test]
    fn scope_tags_become_the_scope_and_spans_group_by_it() {
        let a = span_with(&[
            ("otel.scope.name", Value::Str("lib".into())),
            ("otel.scope.version", Value::Str("1.2".into())),
        ]);
        let b = span_with(&[("otel.library.name", Value::Str("old".into()))]);
        let c = span_with(&[]);
        let req = batch_to_otlp(Batch { process: None, spans: vec![a, b, c] });
        let scopes: Vec<Option<(String, String)>> = req.resource_spans[0]
            .scope_spans
            .iter()
            .map(|s| s.scope.as_ref().map(|sc| (sc.name.clone(), sc.version.clone())))
            .collect();
        assert_eq!(scopes, vec![Some(("lib".into(), "1.2".into())), Some(("old".into(), String::new())), None]);
        assert!(req.resource_spans[0].scope_spans.iter().all(|s| s.spans[0].attributes.is_empty()));
    }

    #[test]
    fn w3c_tracestate_becomes_the_trace_state() {
        let s = one(span_with(&[("w3c.tracestate", Value::Str("vendor=1".into()))]));
        assert_eq!(s.trace_state, "vendor=1");
        assert!(s.attributes.is_empty());
    }

    #[test]
    fn tag_types_map_to_attribute_types_and_a_later_duplicate_wins() {
        let s = one(span_with(&[
            ("s", Value::Str("x".into())),
            ("d", Value::Double(1.5)),
            ("b", Value::Bool(false)),
            ("l", Value::Long(-1)),
            ("bin", Value::Binary(vec![9])),
            ("s", Value::Str("y".into())),
        ]));
        assert_eq!(attr(&s.attributes, "s"), Some(&any_value::Value::StringValue("y".into())));
        assert_eq!(attr(&s.attributes, "d"), Some(&any_value::Value::DoubleValue(1.5)));
        assert_eq!(attr(&s.attributes, "b"), Some(&any_value::Value::BoolValue(false)));
        assert_eq!(attr(&s.attributes, "l"), Some(&any_value::Value::IntValue(-1)));
        assert_eq!(attr(&s.attributes, "bin"), Some(&any_value::Value::BytesValue(vec![9])));
        assert_eq!(s.attributes.len(), 5);
    }
}
