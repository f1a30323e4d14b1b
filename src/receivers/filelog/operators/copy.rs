//! `copy`: writes a copy of the value at `from` to `to`.

use super::field::Field;
use super::{Invalid, Op, Record};

super::operator_config!(Config { from: Option<String>, to: Option<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let (from, to) = super::moves::from_to(key, &self.from, &self.to)?;
        Ok(Box::new(Copy { from, to }))
    }
}

#[derive(Debug)]
struct Copy {
    from: Field,
    to: Field,
}

impl Op for Copy {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        let v = self.from.get(rec).ok_or_else(|| format!("the entry has no {}", self.from))?.clone();
        self.to.set(rec, v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run};

    #[test]
    fn copies_into_the_resource() {
        let p = pipeline("- type: copy\n  from: body\n  to: resource[\"service.name\"]\n- type: copy\n  from: body.x\n  to: attributes.y").unwrap();
        let out = run(&p, &["checkout"]);
        let r = &out.records[0];
        assert_eq!(r.resource[0].key, "service.name");
        assert!(r.log.body.is_some(), "the original stays");
        assert_eq!(attr(r, "y"), None);
        assert_eq!(out.failures.len(), 1);
    }
}
