//! `json_parser`: a JSON object in a string becomes a map (numbers are doubles, as in the
//! collector, unless `parse_ints`).

use super::parser::{ParserCore, text};
use super::{Invalid, Op, Record};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};

super::parser_config!(Config { parse_ints: bool });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let core = ParserCore::build(
            self.parse_from.as_deref(),
            self.parse_to.as_deref(),
            self.timestamp.as_ref(),
            self.severity.as_ref(),
            key,
        )?;
        Ok(Box::new(JsonParser { core, parse_ints: self.parse_ints }))
    }
}

#[derive(Debug)]
struct JsonParser {
    core: ParserCore,
    parse_ints: bool,
}

impl Op for JsonParser {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.core.apply(rec, |v| {
            let s = text(v, "json_parser")?;
            match parse(&s, self.parse_ints) {
                Ok(v @ AnyValue { value: Some(Value::KvlistValue(_)) }) => Ok(v),
                Ok(_) => Err("the JSON is not an object".into()),
                Err(e) => Err(format!("not JSON: {e}")),
            }
        })
    }
}

/// The JSON text as a value, built straight from the parser's events (no intermediate
/// `serde_json::Value`: a record's keys and strings are allocated once).
fn parse(text: &str, ints: bool) -> Result<AnyValue, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(text);
    let v = Any(ints).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Builds an `AnyValue` of any JSON value; numbers are doubles unless `.0` (parse_ints) and
/// integral.
#[derive(Clone, Copy)]
struct Any(bool);

fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

impl<'de> serde::de::DeserializeSeed<'de> for Any {
    type Value = AnyValue;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Any {
    type Value = AnyValue;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<AnyValue, E> {
        Ok(any(Value::BoolValue(b)))
    }
    fn visit_i64<E>(self, i: i64) -> Result<AnyValue, E> {
        Ok(any(if self.0 { Value::IntValue(i) } else { Value::DoubleValue(i as f64) }))
    }
    fn visit_u64<E>(self, u: u64) -> Result<AnyValue, E> {
        Ok(any(match i64::try_from(u) {
            Ok(i) if self.0 => Value::IntValue(i),
            _ => Value::DoubleValue(u as f64),
        }))
    }
    fn visit_f64<E>(self, f: f64) -> Result<AnyValue, E> {
        Ok(any(Value::DoubleValue(f)))
    }
    fn visit_str<E>(self, s: &str) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<AnyValue, E> {
        Ok(any(Value::StringValue(s)))
    }
    fn visit_unit<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_none<E>(self) -> Result<AnyValue, E> {
        Ok(AnyValue { value: None })
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        let mut values = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(self)? {
            values.push(v);
        }
        Ok(any(Value::ArrayValue(ArrayValue { values })))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        let mut pairs: Vec<KeyValue> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            pairs.push(KeyValue { key, value: Some(value), ..Default::default() });
        }
        // A key written twice: the last value, as JSON parsers give it.
        let mut values = Vec::with_capacity(pairs.len());
        super::field::put_all(&mut values, pairs);
        Ok(any(Value::KvlistValue(KeyValueList { values })))
    }
}

#[cfg(test)]
mod tests {
    use super::super::field::{Field, map_get};
    use super::super::tests::{attr, pipeline, run};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn objects_become_attributes() {
        let p = pipeline("- type: json_parser").unwrap();
        let out = run(&p, &[r#"{"level":"info","n":3,"ok":true,"nested":{"a":"b"},"list":[1]}"#]);
        let r = &out.records[0];
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(attr(r, "level"), Some("info"));
        assert_eq!(map_get(&r.log.attributes, "n").unwrap().value, Some(Value::DoubleValue(3.0)));
        assert_eq!(map_get(&r.log.attributes, "ok").unwrap().value, Some(Value::BoolValue(true)));
        assert!(Field::parse("attributes.nested.a").unwrap().get(r).is_some());
        assert!(matches!(r.log.body.as_ref().unwrap().value, Some(Value::StringValue(_))), "the body stays");
    }

    #[test]
    fn to_body_from_a_field_with_ints() {
        let p = pipeline(
            "- type: json_parser\n  parse_to: body\n  parse_ints: true\n- type: json_parser\n  parse_from: body.inner\n  parse_to: body.parsed",
        )
        .unwrap();
        let out = run(&p, &[r#"{"n":3,"inner":"{\"x\":1.5}"}"#]);
        let r = &out.records[0];
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(Field::parse("body.n").unwrap().get(r).unwrap().value, Some(Value::IntValue(3)));
        assert_eq!(Field::parse("body.parsed.x").unwrap().get(r).unwrap().value, Some(Value::DoubleValue(1.5)));
    }

    #[test]
    fn a_key_written_twice_keeps_its_last_value_in_small_and_large_objects() {
        let p = pipeline("- type: json_parser").unwrap();
        let many: String = (0..40).map(|i| format!("\"k{i}\":{i},")).collect();
        let out = run(&p, &[r#"{"a":"1","a":"2"}"#, &format!("{{{many}\"k3\":\"last\"}}")]);
        assert_eq!(attr(&out.records[0], "a"), Some("2"));
        assert_eq!(attr(&out.records[1], "k3"), Some("last"));
        assert_eq!(out.records[1].log.attributes.len(), 40);
    }

    #[test]
    fn malformed_input_fails() {
        let p = pipeline("- type: json_parser\n- type: json_parser\n  id: second\n  parse_from: body.missing").unwrap();
        let out = run(&p, &["{\"a\":", "[1,2]", "plain"]);
        let messages: Vec<&str> = out.failures.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(out.records.len(), 3, "on_error send passes them on");
        assert!(messages[0].starts_with("not JSON"), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("not an object")), "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("no body.missing")), "{messages:?}");
    }
}
