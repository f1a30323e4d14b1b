//! `add`: writes a literal `value` (a string, number, bool, map or list) at `field`.

use super::field::Field;
use super::{Invalid, Op, Record};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value};

super::operator_config!(Config { field: Option<String>, value: Option<serde_json::Value> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let f = self.field.as_deref().ok_or_else(|| (format!("{key}.field"), "required".to_string()))?;
        let field = Field::parse(f).map_err(|e| (format!("{key}.field"), e))?;
        let v = self.value.as_ref().ok_or_else(|| (format!("{key}.value"), "required".to_string()))?;
        if let serde_json::Value::String(s) = v
            && s.starts_with("EXPR(")
        {
            return Err((format!("{key}.value"), "EXPR(...) values are not supported; give a literal value".into()));
        }
        Ok(Box::new(Add { field, value: any(v) }))
    }
}

fn any(v: &serde_json::Value) -> AnyValue {
    use serde_json::Value as J;
    let value = match v {
        J::Null => None,
        J::Bool(b) => Some(Value::BoolValue(*b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::IntValue(i),
            None => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        J::String(s) => Some(Value::StringValue(s.clone())),
        J::Array(a) => Some(Value::ArrayValue(ArrayValue { values: a.iter().map(any).collect() })),
        J::Object(o) => {
            return super::field::map_value(
                o.iter().map(|(k, v)| KeyValue { key: k.clone(), value: Some(any(v)), ..Default::default() }).collect(),
            );
        }
    };
    AnyValue { value }
}

#[derive(Debug)]
struct Add {
    field: Field,
    value: AnyValue,
}

impl Op for Add {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.field.set(rec, self.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::super::field::Field;
    use super::super::tests::{attr, pipeline, run};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    #[test]
    fn literal_values() {
        let p = pipeline(
            "- type: add\n  field: attributes.team\n  value: payments\n- type: add\n  field: attributes.n\n  value: 3\n- type: add\n  field: body.extra\n  value: {a: [1, true]}",
        )
        .unwrap();
        let out = run(&p, &["text body"]);
        let r = &out.records[0];
        assert_eq!(attr(r, "team"), Some("payments"));
        assert_eq!(Field::parse("attributes.n").unwrap().get(r).unwrap().value, Some(Value::IntValue(3)));
        assert!(Field::parse("body.extra.a").unwrap().get(r).is_some(), "the string body became a map");
        let (k, e) = pipeline("- type: add\n  field: attributes.x\n  value: EXPR(body.a)").unwrap_err();
        assert_eq!(k, "operators.0.value");
        assert!(e.contains("not supported"));
        assert_eq!(pipeline("- type: add\n  value: x").unwrap_err().0, "operators.0.field");
    }
}
