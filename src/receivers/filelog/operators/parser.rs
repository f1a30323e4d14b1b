//! What the parsers share: read `parse_from` (default `body`), write the parsed map to
//! `parse_to` (default `attributes`, where it is merged), then the `timestamp` and `severity`
//! blocks; the entry keeps its `parse_from` value.

use super::field::Field;
use super::severity::{SeverityConfig, SeverityParser};
use super::time::{TimeConfig, TimeParser};
use super::{Invalid, Record};
use opentelemetry_proto::tonic::common::v1::AnyValue;

#[derive(Debug)]
pub struct ParserCore {
    from: Field,
    to: Field,
    time: Option<TimeParser>,
    severity: Option<SeverityParser>,
}

impl ParserCore {
    pub fn build(
        parse_from: Option<&str>,
        parse_to: Option<&str>,
        timestamp: Option<&TimeConfig>,
        severity: Option<&SeverityConfig>,
        key: &str,
    ) -> Result<ParserCore, Invalid> {
        let field = |v: Option<&str>, default: Field, k: &str| match v {
            None => Ok(default),
            Some(s) => Field::parse(s).map_err(|e| (format!("{key}.{k}"), e)),
        };
        Ok(ParserCore {
            from: field(parse_from, Field::body(), "parse_from")?,
            to: field(parse_to, Field::attributes(), "parse_to")?,
            time: timestamp.map(|t| TimeParser::build(t, &format!("{key}.timestamp"))).transpose()?,
            severity: severity.map(|s| SeverityParser::build(s, &format!("{key}.severity"))).transpose()?,
        })
    }

    /// Parses `parse_from` with `parse`, then the time and the severity (all are tried; the
    /// first failure is the answer).
    pub fn apply(
        &self,
        rec: &mut Record,
        parse: impl FnOnce(&AnyValue) -> Result<AnyValue, String>,
    ) -> Result<(), String> {
        let value = self.from.get(rec).ok_or_else(|| format!("the entry has no {} to parse", self.from))?;
        let parsed = parse(value)?;
        self.to.set(rec, parsed)?;
        let time = self.time.as_ref().map_or(Ok(()), |t| t.parse(rec));
        let severity = self.severity.as_ref().map_or(Ok(()), |s| s.parse(rec));
        time.map_err(|e| format!("time: {e}"))?;
        severity.map_err(|e| format!("severity: {e}"))
    }
}

/// The string to parse (bytes are read as UTF-8).
pub fn text<'a>(v: &'a AnyValue, what: &str) -> Result<std::borrow::Cow<'a, str>, String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &v.value {
        Some(Value::StringValue(s)) => Ok(std::borrow::Cow::Borrowed(s)),
        Some(Value::BytesValue(b)) => Ok(String::from_utf8_lossy(b)),
        _ => Err(format!("{what} parses a string, not a {}", type_name(v))),
    }
}

pub fn type_name(v: &AnyValue) -> &'static str {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match &v.value {
        None => "nil",
        Some(Value::StringValue(_)) => "string",
        Some(Value::BoolValue(_)) => "bool",
        Some(Value::IntValue(_)) => "int",
        Some(Value::DoubleValue(_)) => "double",
        Some(Value::ArrayValue(_)) => "list",
        Some(Value::KvlistValue(_)) => "map",
        Some(Value::BytesValue(_)) => "bytes",
        #[allow(unreachable_patterns)]
        Some(_) => "value",
    }
}
