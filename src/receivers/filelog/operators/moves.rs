//! `move`: takes the value at `from` out and writes it at `to` (no copy is made).

use super::field::Field;
use super::{Invalid, Op, Record};

super::operator_config!(Config { from: Option<String>, to: Option<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let (from, to) = from_to(key, &self.from, &self.to)?;
        Ok(Box::new(Move { from, to }))
    }
}

/// The `from` and `to` fields, both required.
pub fn from_to(key: &str, from: &Option<String>, to: &Option<String>) -> Result<(Field, Field), Invalid> {
    let field = |v: &Option<String>, k: &str| {
        let s = v.as_deref().ok_or_else(|| (format!("{key}.{k}"), "required".to_string()))?;
        Field::parse(s).map_err(|e| (format!("{key}.{k}"), e))
    };
    Ok((field(from, "from")?, field(to, "to")?))
}

#[derive(Debug)]
struct Move {
    from: Field,
    to: Field,
}

impl Op for Move {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        let v = self.from.take(rec).ok_or_else(|| format!("the entry has no {}", self.from))?;
        // Written first to a copy's place: a value that cannot go to `to` goes back to `from`.
        if let Err(e) = self.to.set(rec, v.clone()) {
            let _ = self.from.set(rec, v);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_value_that_cannot_be_written_stays_where_it_was() {
        use super::super::tests::{pipeline, run};
        let p = pipeline("- type: move\n  from: body\n  to: attributes").unwrap();
        let out = run(&p, &["a string body cannot become the attributes"]);
        assert_eq!(out.failures.len(), 1);
        let body = out.records[0].log.body.as_ref().and_then(|b| crate::attributes::as_str(b));
        assert_eq!(body, Some("a string body cannot become the attributes"), "not lost");
    }

    use super::super::tests::{attr, pipeline, run};
    use crate::attributes::as_str;

    #[test]
    fn moves_fields() {
        let p = pipeline(
            "- type: json_parser\n  parse_to: body\n- type: move\n  from: body.msg\n  to: body\n- type: move\n  from: attributes.none\n  to: attributes.x",
        )
        .unwrap();
        let out = run(&p, &[r#"{"msg":"hello","level":"info"}"#]);
        let r = &out.records[0];
        assert_eq!(as_str(r.log.body.as_ref().unwrap()), Some("hello"));
        assert_eq!(attr(r, "x"), None);
        assert!(out.failures[0].message.contains("no attributes.none"));
    }
}
