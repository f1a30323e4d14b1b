//! `remove`: deletes the value at `field` (`attributes` or `resource` empties them; `body`
//! clears the body).

use super::field::Field;
use super::{Invalid, Op, Record};

super::operator_config!(Config { field: Option<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let f = self.field.as_deref().ok_or_else(|| (format!("{key}.field"), "required".to_string()))?;
        Ok(Box::new(Remove { field: Field::parse(f).map_err(|e| (format!("{key}.field"), e))? }))
    }
}

#[derive(Debug)]
struct Remove {
    field: Field,
}

impl Op for Remove {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.field.take(rec).map(drop).ok_or_else(|| format!("the entry has no {}", self.field))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run};

    #[test]
    fn removes_fields() {
        let p = pipeline(
            "- type: key_value_parser\n- type: remove\n  field: attributes.secret\n- type: remove\n  field: attributes.secret\n  on_error: send_quiet",
        )
        .unwrap();
        let out = run(&p, &["user=ann secret=hunter2"]);
        assert_eq!(attr(&out.records[0], "user"), Some("ann"));
        assert_eq!(attr(&out.records[0], "secret"), None);
        assert_eq!(out.failures.len(), 1, "the second remove found nothing");
        let out = run(&pipeline("- type: remove\n  field: attributes\n- type: remove\n  field: body").unwrap(), &["x"]);
        assert!(out.records[0].log.body.is_none());
        assert!(out.failures.is_empty());
    }
}
