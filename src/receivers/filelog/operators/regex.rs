//! `regex_parser`: the named groups of `regex` (compiled once) become a map of strings; a
//! value that does not match fails.

use super::parser::{ParserCore, text};
use super::{Invalid, Op, Record};
use crate::attributes::string;
use opentelemetry_proto::tonic::common::v1::KeyValue;

super::parser_config!(Config { regex: Option<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let at = format!("{key}.regex");
        let pattern = self.regex.as_deref().ok_or_else(|| (at.clone(), "required".to_string()))?;
        let regex = regex::Regex::new(pattern).map_err(|e| (at.clone(), format!("invalid regex: {e}")))?;
        let names: Vec<(usize, String)> =
            regex.capture_names().enumerate().filter_map(|(i, n)| Some((i, n?.to_string()))).collect();
        if names.is_empty() {
            return Err((at, "the regex has no named group, such as (?P<level>\\w+)".into()));
        }
        let core = ParserCore::build(
            self.parse_from.as_deref(),
            self.parse_to.as_deref(),
            self.timestamp.as_ref(),
            self.severity.as_ref(),
            key,
        )?;
        Ok(Box::new(RegexParser { core, regex, names }))
    }
}

#[derive(Debug)]
struct RegexParser {
    core: ParserCore,
    regex: regex::Regex,
    /// Group index and name of the named groups.
    names: Vec<(usize, String)>,
}

impl Op for RegexParser {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.core.apply(rec, |v| {
            let s = text(v, "regex_parser")?;
            let caps = self.regex.captures(&s).ok_or("the regex does not match")?;
            // A group that took no part is an empty string, as in the collector.
            let values = self
                .names
                .iter()
                .map(|(i, n)| crate::attributes::kv(n, string(caps.get(*i).map_or("", |m| m.as_str()))))
                .collect::<Vec<KeyValue>>();
            Ok(super::field::map_value(values))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run};

    #[test]
    fn named_groups_timestamp_and_severity() {
        let p = pipeline(
            r#"
- type: regex_parser
  regex: '^(?P<time>\S+ \S+) (?P<level>\w+) (?P<msg>.*?)(?: trace=(?P<trace>\w+))?$'
  timestamp:
    parse_from: attributes.time
    layout: '%Y-%m-%d %H:%M:%S'
    location: UTC
  severity:
    parse_from: attributes.level
"#,
        )
        .unwrap();
        let out = run(&p, &["2024-03-01 10:00:00 WARN disk almost full", "no match here"]);
        let r = &out.records[0];
        assert_eq!(attr(r, "msg"), Some("disk almost full"));
        assert_eq!(attr(r, "trace"), Some(""), "a group that took no part");
        assert_eq!(r.log.time_unix_nano, 1_709_287_200_000_000_000);
        assert_eq!((r.log.severity_number, r.log.severity_text.as_str()), (13, "WARN"));
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].message, "the regex does not match");
        assert_eq!(out.records.len(), 2);
    }

    #[test]
    fn a_failed_time_still_keeps_what_was_parsed() {
        let p = pipeline(
            "- type: regex_parser\n  regex: '^(?P<t>\\S+) (?P<rest>.*)'\n  on_error: send_quiet\n  timestamp:\n    parse_from: attributes.t\n    layout: '%Y'",
        )
        .unwrap();
        let out = run(&p, &["yesterday hello"]);
        assert_eq!(attr(&out.records[0], "rest"), Some("hello"));
        assert!(out.failures[0].message.starts_with("time:"), "{:?}", out.failures);
        assert!(out.failures[0].quiet);
    }

    #[test]
    fn a_regex_without_named_groups_is_refused() {
        let (k, e) = pipeline("- type: regex_parser\n  regex: '(\\w+)'").unwrap_err();
        assert_eq!(k, "operators.0.regex");
        assert!(e.contains("named group"));
        assert_eq!(pipeline("- type: regex_parser").unwrap_err().0, "operators.0.regex");
    }
}
