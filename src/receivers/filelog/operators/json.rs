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
            match serde_json::from_str::<serde_json::Value>(&s) {
                Ok(serde_json::Value::Object(o)) => Ok(object(o, self.parse_ints)),
                Ok(_) => Err("the JSON is not an object".into()),
                Err(e) => Err(format!("not JSON: {e}")),
            }
        })
    }
}

fn object(o: serde_json::Map<String, serde_json::Value>, ints: bool) -> AnyValue {
    let values = o.into_iter().map(|(key, v)| KeyValue { key, value: Some(value(v, ints)), ..Default::default() });
    AnyValue { value: Some(Value::KvlistValue(KeyValueList { values: values.collect() })) }
}

fn value(j: serde_json::Value, ints: bool) -> AnyValue {
    use serde_json::Value as J;
    let value = match j {
        J::Null => None,
        J::Bool(b) => Some(Value::BoolValue(b)),
        J::Number(n) => match n.as_i64() {
            Some(i) if ints => Some(Value::IntValue(i)),
            _ => Some(Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN))),
        },
        J::String(s) => Some(Value::StringValue(s)),
        J::Array(a) => Some(Value::ArrayValue(ArrayValue { values: a.into_iter().map(|v| value(v, ints)).collect() })),
        J::Object(o) => return object(o, ints),
    };
    AnyValue { value }
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
