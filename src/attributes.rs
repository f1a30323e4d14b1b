//! Building OTLP attribute lists in the translating receivers: set (a later key wins), get, take
//! out, and the common value constructors.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};

pub fn string(s: &str) -> AnyValue {
    AnyValue { value: Some(any_value::Value::StringValue(s.to_string())) }
}

pub fn boolean(b: bool) -> AnyValue {
    AnyValue { value: Some(any_value::Value::BoolValue(b)) }
}

/// `otel.metric.overflow: true`: what marks the series (or resource) that counts what went
/// past a cardinality limit, as the collector's connectors mark it.
pub fn overflow() -> KeyValue {
    kv("otel.metric.overflow", boolean(true))
}

pub fn int(i: i64) -> AnyValue {
    AnyValue { value: Some(any_value::Value::IntValue(i)) }
}

pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(value), ..Default::default() }
}

/// The value as a string, if it is one.
pub fn as_str(v: &AnyValue) -> Option<&str> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// Sets `key`, replacing an earlier value (as the collector's attribute maps do).
pub fn put(attributes: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    match attributes.iter_mut().find(|a| a.key == key) {
        Some(a) => a.value = Some(value),
        None => attributes.push(kv(key, value)),
    }
}

pub fn get<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref())
}

/// Removes `key`, returning its value.
pub fn take(attributes: &mut Vec<KeyValue>, key: &str) -> Option<AnyValue> {
    let i = attributes.iter().position(|a| a.key == key)?;
    attributes.remove(i).value
}

/// Takes the tags `otel.scope.name`/`otel.scope.version` (or the older `otel.library.*`, which
/// are removed too) out as the instrumentation scope they describe.
pub fn take_scope(attributes: &mut Vec<KeyValue>) -> Option<InstrumentationScope> {
    let mut pick = |new: &str, old: &str| {
        let a = take(attributes, new);
        let b = take(attributes, old);
        a.or(b).as_ref().and_then(as_str).map(str::to_string)
    };
    let name = pick("otel.scope.name", "otel.library.name");
    let version = pick("otel.scope.version", "otel.library.version");
    if name.is_none() && version.is_none() {
        return None;
    }
    Some(InstrumentationScope {
        name: name.unwrap_or_default(),
        version: version.unwrap_or_default(),
        ..Default::default()
    })
}
