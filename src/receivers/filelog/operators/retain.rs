//! `retain`: keeps only the listed `fields`; a root (body, attributes, resource) none of the
//! fields is in is left as it is.

use super::field::{Field, Root};
use super::{Invalid, Op, Record};

super::operator_config!(Config { fields: Vec<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        if self.fields.is_empty() {
            return Err((format!("{key}.fields"), "list at least one field".into()));
        }
        let fields = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| Field::parse(f).map_err(|e| (format!("{key}.fields.{i}"), e)))
            .collect::<Result<Vec<_>, _>>()?;
        if fields.iter().any(|f| f.path.is_empty()) {
            return Err((format!("{key}.fields"), "name fields inside body, attributes or resource".into()));
        }
        Ok(Box::new(Retain { fields }))
    }
}

#[derive(Debug)]
struct Retain {
    fields: Vec<Field>,
}

impl Op for Retain {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        for root in [Root::Body, Root::Attributes, Root::Resource] {
            if !self.fields.iter().any(|f| f.root == root) {
                continue;
            }
            let mut kept = Record::default();
            for f in self.fields.iter().filter(|f| f.root == root) {
                if let Some(v) = f.take(rec) {
                    f.set(&mut kept, v)?;
                }
            }
            match root {
                Root::Body => rec.log.body = kept.log.body,
                Root::Attributes => rec.log.attributes = kept.log.attributes,
                Root::Resource => rec.resource = kept.resource,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run};

    #[test]
    fn keeps_listed_fields() {
        let p = pipeline("- type: key_value_parser\n- type: retain\n  fields: [attributes.a, attributes.c]").unwrap();
        let out = run(&p, &["a=1 b=2 c=3"]);
        let r = &out.records[0];
        assert_eq!((attr(r, "a"), attr(r, "b"), attr(r, "c")), (Some("1"), None, Some("3")));
        assert!(r.log.body.is_some(), "the body is not listed: kept");
    }
}
