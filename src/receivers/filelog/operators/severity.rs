//! Severities: the parsers' `severity` block and the `severity_parser` operator. A value is
//! looked up, lower-cased, in a mapping that starts from the `default` preset (the level names,
//! `warning`, `err`, and the numbers 1–24) or from nothing (`preset: none`), plus `mapping`:
//! per level a value, a list of values, `{min, max}` ranges and `2xx`…`5xx`.

use super::Record;
use super::field::Field;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub parse_from: Option<String>,
    pub preset: Option<String>,
    #[serde(default)]
    pub mapping: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub overwrite_text: bool,
}

super::operator_config!(
    /// `type: severity_parser`: the `severity` keys at the top level.
    OperatorConfig {
        parse_from: Option<String>,
        preset: Option<String>,
        mapping: BTreeMap<String, serde_json::Value>,
        overwrite_text: bool,
    }
);

impl OperatorConfig {
    pub fn build(&self, key: &str) -> Result<Box<dyn super::Op>, Invalid> {
        let c = SeverityConfig {
            parse_from: self.parse_from.clone(),
            preset: self.preset.clone(),
            mapping: self.mapping.clone(),
            overwrite_text: self.overwrite_text,
        };
        Ok(Box::new(SeverityParser::build(&c, key)?))
    }
}

impl super::Op for SeverityParser {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.parse(rec)
    }
}

/// The level names in number order (1 = trace … 24 = fatal4).
const LEVELS: [&str; 24] = [
    "trace", "trace2", "trace3", "trace4", "debug", "debug2", "debug3", "debug4", "info", "info2", "info3", "info4",
    "warn", "warn2", "warn3", "warn4", "error", "error2", "error3", "error4", "fatal", "fatal2", "fatal3", "fatal4",
];

#[derive(Debug)]
pub struct SeverityParser {
    from: Field,
    mapping: HashMap<String, i32>,
    overwrite_text: bool,
}

type Invalid = (String, String);

/// The level a mapping key names: `error`, `warn2`, `default`, or its number.
fn level(name: &str) -> Option<i32> {
    let lower = name.to_ascii_lowercase();
    if lower == "default" {
        return Some(0);
    }
    if let Some(i) = LEVELS.iter().position(|l| *l == lower) {
        return Some(i as i32 + 1);
    }
    lower.parse::<i32>().ok().filter(|n| (1..=24).contains(n))
}

/// The short name of a level (`ERROR`, `INFO3`), as `overwrite_text` writes it.
pub fn short_name(n: i32) -> String {
    LEVELS.get((n - 1) as usize).map(|l| l.to_ascii_uppercase()).unwrap_or_default()
}

impl SeverityParser {
    pub fn build(c: &SeverityConfig, key: &str) -> Result<SeverityParser, Invalid> {
        let at = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
        let from = c.parse_from.as_deref().ok_or_else(|| (at("parse_from"), "required".to_string()))?;
        let from = Field::parse(from).map_err(|e| (at("parse_from"), e))?;
        let mut mapping = HashMap::new();
        match c.preset.as_deref() {
            None | Some("default") => {
                for (i, l) in LEVELS.iter().enumerate() {
                    mapping.insert(l.to_string(), i as i32 + 1);
                    mapping.insert((i + 1).to_string(), i as i32 + 1);
                }
                for (extra, n) in [("warning", 13), ("warning2", 14), ("warning3", 15), ("warning4", 16)] {
                    mapping.insert(extra.to_string(), n);
                }
                for (extra, n) in [("err", 17), ("err2", 18), ("err3", 19), ("err4", 20)] {
                    mapping.insert(extra.to_string(), n);
                }
            }
            Some("none") => {}
            Some(other) => return Err((at("preset"), format!("\"{other}\": use default or none"))),
        }
        for (name, values) in &c.mapping {
            let n = level(name).ok_or_else(|| {
                (at("mapping"), format!("\"{name}\" is not a severity: use trace, debug, info, warn, error, fatal (with 2 to 4 after them) or default"))
            })?;
            let list = match values {
                serde_json::Value::Array(items) => items.as_slice(),
                one => std::slice::from_ref(one),
            };
            for v in list {
                for text in values_of(v).map_err(|e| (format!("{}.{name}", at("mapping")), e))? {
                    mapping.insert(text, n);
                }
            }
        }
        Ok(SeverityParser { from, mapping, overwrite_text: c.overwrite_text })
    }

    /// Sets the record's severity number and text from its field. A value not in the mapping
    /// leaves the number unset (0) and becomes the text.
    pub fn parse(&self, rec: &mut Record) -> Result<(), String> {
        let v =
            self.from.get(rec).ok_or_else(|| format!("the entry has no {} to parse the severity from", self.from))?;
        let text = match &v.value {
            Some(Value::StringValue(s)) => s.clone(),
            Some(Value::IntValue(i)) => i.to_string(),
            Some(Value::DoubleValue(d)) if d.fract() == 0.0 && d.is_finite() => (*d as i64).to_string(),
            Some(Value::DoubleValue(_)) => return Err("a severity number must be whole".into()),
            Some(Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => return Err(format!("the value of {} cannot be a severity", self.from)),
        };
        let n = match self.mapping.get(&text) {
            Some(n) => *n,
            None => self.mapping.get(&text.to_lowercase()).copied().unwrap_or(0),
        };
        rec.log.severity_number = n;
        rec.log.severity_text = if self.overwrite_text && n != 0 { short_name(n) } else { text };
        Ok(())
    }
}

/// What one mapping value matches, lower-cased: a string, a number, `2xx`…`5xx`, `{min, max}`.
fn values_of(v: &serde_json::Value) -> Result<Vec<String>, String> {
    let range = |lo: i64, hi: i64| (lo.min(hi)..=lo.max(hi)).map(|i| i.to_string()).collect();
    Ok(match v {
        serde_json::Value::String(s) => match s.as_str() {
            "2xx" => range(200, 299),
            "3xx" => range(300, 399),
            "4xx" => range(400, 499),
            "5xx" => range(500, 599),
            s => vec![s.to_lowercase()],
        },
        serde_json::Value::Number(n) if n.is_i64() => vec![n.to_string()],
        serde_json::Value::Object(m) => {
            match (m.get("min").and_then(|v| v.as_i64()), m.get("max").and_then(|v| v.as_i64())) {
                (Some(lo), Some(hi))
                    if m.len() == 2 && hi.checked_sub(lo).and_then(i64::checked_abs).is_some_and(|d| d <= 100_000) =>
                {
                    range(lo, hi)
                }
                _ => return Err("a range is {min: <integer>, max: <integer>} (at most 100000 apart)".into()),
            }
        }
        other => return Err(format!("{other} cannot be a severity value")),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_range_too_wide_to_subtract_is_refused_not_expanded() {
        let bad = super::super::tests::pipeline(
            "- type: severity_parser\n  mapping:\n    error: {min: -9223372036854775808, max: 9223372036854775807}",
        );
        assert!(bad.is_err());
    }

    use super::*;
    use crate::attributes::{int, string};
    use opentelemetry_proto::tonic::common::v1::AnyValue;

    fn parser(yaml_mapping: serde_json::Value, preset: Option<&str>) -> SeverityParser {
        let c = SeverityConfig {
            parse_from: Some("body".into()),
            preset: preset.map(str::to_string),
            mapping: serde_json::from_value(yaml_mapping).unwrap(),
            overwrite_text: false,
        };
        SeverityParser::build(&c, "severity").unwrap()
    }

    fn run(p: &SeverityParser, v: AnyValue) -> (i32, String) {
        let mut rec = Record::default();
        rec.log.body = Some(v);
        p.parse(&mut rec).unwrap();
        (rec.log.severity_number, rec.log.severity_text)
    }

    #[test]
    fn default_preset_and_mapping() {
        let p = parser(
            serde_json::json!({"error": ["nooo!", {"min": 9001, "max": 9050}, "5xx"], "info": "HEY", "debug": 1234, "warn": "4xx"}),
            None,
        );
        let cases: &[(AnyValue, i32, &str)] = &[
            (string("ERROR"), 17, "ERROR"),
            (string("warning"), 13, "warning"),
            (string("Err"), 17, "Err"),
            (string("info3"), 11, "info3"),
            (string("fatal"), 21, "fatal"),
            (string("hey"), 9, "hey"),
            (string("NOOO!"), 17, "NOOO!"),
            (int(9010), 17, "9010"),
            (int(503), 17, "503"),
            (int(404), 13, "404"),
            (int(1234), 5, "1234"),
            (int(9), 9, "9"),
            (AnyValue { value: Some(Value::DoubleValue(17.0)) }, 17, "17"),
            (string("unknown"), 0, "unknown"),
        ];
        for (v, n, text) in cases {
            assert_eq!(run(&p, v.clone()), (*n, text.to_string()), "{v:?}");
        }
    }

    #[test]
    fn preset_none_and_overwrite_text() {
        let p = parser(serde_json::json!({"error": "nooo!"}), Some("none"));
        assert_eq!(run(&p, string("ERROR")).0, 0);
        assert_eq!(run(&p, string("nooo!")).0, 17);
        let c = SeverityConfig { parse_from: Some("body".into()), overwrite_text: true, ..Default::default() };
        let p = SeverityParser::build(&c, "").unwrap();
        assert_eq!(run(&p, string("warning")), (13, "WARN".into()));
    }

    #[test]
    fn bad_configuration_is_named() {
        let bad = |m: serde_json::Value, preset: Option<&str>| {
            let c = SeverityConfig {
                parse_from: Some("body".into()),
                preset: preset.map(str::to_string),
                mapping: serde_json::from_value(m).unwrap(),
                overwrite_text: false,
            };
            SeverityParser::build(&c, "operators.0.severity").unwrap_err()
        };
        assert_eq!(bad(serde_json::json!({"loud": "x"}), None).0, "operators.0.severity.mapping");
        assert_eq!(bad(serde_json::json!({"error": [{"min": 1}]}), None).0, "operators.0.severity.mapping.error");
        assert_eq!(bad(serde_json::json!({}), Some("syslog")).0, "operators.0.severity.preset");
        let mut rec = Record::default();
        rec.log.body = Some(AnyValue { value: Some(Value::DoubleValue(1.5)) });
        assert!(parser(serde_json::json!({}), None).parse(&mut rec).is_err());
    }
}
