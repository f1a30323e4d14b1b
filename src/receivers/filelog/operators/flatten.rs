//! `flatten`: moves the keys of the map at `field` up into the map that holds it.

use super::field::Field;
use super::{Invalid, Op, Record};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

super::operator_config!(Config { field: Option<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let at = format!("{key}.field");
        let f = self.field.as_deref().ok_or_else(|| (at.clone(), "required".to_string()))?;
        let field = Field::parse(f).map_err(|e| (at.clone(), e))?;
        let Some((_, parent)) = field.path.split_last() else {
            return Err((at, "name a map inside body, attributes or resource, such as body.details".into()));
        };
        let parent = Field { root: field.root, path: parent.to_vec() };
        Ok(Box::new(Flatten { field, parent }))
    }
}

#[derive(Debug)]
struct Flatten {
    field: Field,
    parent: Field,
}

impl Op for Flatten {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        if !matches!(self.field.get(rec).and_then(|v| v.value.as_ref()), Some(Value::KvlistValue(_))) {
            return Err(format!("{} is not a map", self.field));
        }
        let Some(Value::KvlistValue(m)) = self.field.take(rec).and_then(|v| v.value) else { unreachable!() };
        for kv in m.values {
            let mut to = self.parent.clone();
            to.path.push(kv.key);
            to.set(rec, kv.value.unwrap_or_default())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::field::Field;
    use super::super::tests::{pipeline, run};

    #[test]
    fn one_level_up() {
        let p = pipeline("- type: json_parser\n  parse_to: body\n- type: flatten\n  field: body.key1").unwrap();
        let out = run(&p, &[r#"{"key1":{"n1":"v1","n2":{"deep":"x"}},"key2":"v2"}"#, r#"{"key1":"flat"}"#]);
        let r = &out.records[0];
        let get = |f: &str| Field::parse(f).unwrap().get(r).is_some();
        assert!(get("body.n1") && get("body.n2.deep") && get("body.key2") && !get("body.key1"));
        assert!(out.failures[0].message.contains("not a map"));
        assert_eq!(pipeline("- type: flatten\n  field: body").unwrap_err().0, "operators.0.field");
    }
}
