//! Attribute and body values as the stores without OTLP's typed values want them, with the
//! collector's rules (`pcommon.Value.AsString` and its JSON form): as JSON (strings, numbers,
//! booleans; bytes base64; arrays and maps as JSON arrays and objects), or as text (a string as
//! it is, anything else as its JSON).

use base64::Engine;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// A value as JSON (absent: `null`).
pub fn json(v: Option<&AnyValue>) -> serde_json::Value {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(d)) => (*d).into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        Some(any_value::Value::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        Some(any_value::Value::ArrayValue(a)) => a.values.iter().map(|x| json(Some(x))).collect::<Vec<_>>().into(),
        Some(any_value::Value::KvlistValue(m)) => object(&m.values),
        _ => serde_json::Value::Null,
    }
}

/// Key-values as a JSON object.
pub fn object(attrs: &[KeyValue]) -> serde_json::Value {
    serde_json::Value::Object(attrs.iter().map(|a| (a.key.clone(), json(a.value.as_ref()))).collect())
}

/// A value as text: a string as it is, anything else as its JSON (absent: empty).
pub fn text(v: Option<&AnyValue>) -> String {
    match json(v) {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{int, kv, string};

    #[test]
    fn values_follow_the_collectors_as_string() {
        assert_eq!(text(Some(&string("a b"))), "a b");
        assert_eq!(text(Some(&int(42))), "42");
        assert_eq!(text(None), "");
        let bytes = AnyValue { value: Some(any_value::Value::BytesValue(vec![1, 2, 3])) };
        assert_eq!(text(Some(&bytes)), "AQID");
        let map = AnyValue {
            value: Some(any_value::Value::KvlistValue(opentelemetry_proto::tonic::common::v1::KeyValueList {
                values: vec![kv("k", int(1)), kv("s", string("v"))],
            })),
        };
        assert_eq!(text(Some(&map)), r#"{"k":1,"s":"v"}"#);
        assert_eq!(json(Some(&map))["s"], "v");
    }
}
