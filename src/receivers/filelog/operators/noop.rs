//! `noop`: passes entries on unchanged (a place for `output` and router edges to point at).

use super::{Op, Record};

super::operator_config!(Config {});

#[derive(Debug)]
pub struct Noop;

impl Op for Noop {
    fn apply(&self, _rec: &mut Record) -> Result<(), String> {
        Ok(())
    }
}
