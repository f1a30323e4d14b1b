//! `key_value_parser`: `key=value` pairs (logfmt and the like) become a map of strings.
//! Pairs are split at `pair_delimiter` (default: runs of whitespace) outside quotes, each pair
//! at the first `delimiter` (default `=`); quotes around a key or value are removed, and `\"`
//! inside quotes is a quote.

use super::parser::{ParserCore, text};
use super::{Invalid, Op, Record};
use crate::attributes::string;
use opentelemetry_proto::tonic::common::v1::KeyValue;

super::parser_config!(Config { delimiter: Option<String>, pair_delimiter: Option<String> });

impl Config {
    pub fn build(&self, key: &str) -> Result<Box<dyn Op>, Invalid> {
        let delimiter = self.delimiter.clone().unwrap_or_else(|| "=".into());
        if delimiter.is_empty() {
            return Err((format!("{key}.delimiter"), "must not be empty".into()));
        }
        if let Some(p) = &self.pair_delimiter {
            if p.is_empty() {
                return Err((
                    format!("{key}.pair_delimiter"),
                    "must not be empty (leave it out for whitespace)".into(),
                ));
            }
            if *p == delimiter {
                return Err((format!("{key}.pair_delimiter"), "must differ from delimiter".into()));
            }
        }
        let core = ParserCore::build(
            self.parse_from.as_deref(),
            self.parse_to.as_deref(),
            self.timestamp.as_ref(),
            self.severity.as_ref(),
            key,
        )?;
        Ok(Box::new(KeyValueParser { core, delimiter, pair_delimiter: self.pair_delimiter.clone() }))
    }
}

#[derive(Debug)]
struct KeyValueParser {
    core: ParserCore,
    delimiter: String,
    pair_delimiter: Option<String>,
}

impl Op for KeyValueParser {
    fn apply(&self, rec: &mut Record) -> Result<(), String> {
        self.core.apply(rec, |v| {
            let s = text(v, "key_value_parser")?;
            let mut values = Vec::new();
            let mut pairs = Vec::new();
            for pair in split_pairs(&s, self.pair_delimiter.as_deref())? {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let Some((k, v)) = pair.split_once(self.delimiter.as_str()) else {
                    return Err(format!("\"{pair}\" has no \"{}\" between a key and a value", self.delimiter));
                };
                let k = unquote(k.trim());
                if k.is_empty() {
                    return Err(format!("\"{pair}\" has an empty key"));
                }
                pairs.push(KeyValue { key: k, value: Some(string(&unquote(v.trim()))), ..Default::default() });
            }
            super::field::put_all(&mut values, pairs);
            if values.is_empty() {
                return Err("no key-value pairs".into());
            }
            Ok(super::field::map_value(values))
        })
    }
}

/// The pairs of `s`: split at `delimiter` (or whitespace) where not inside quotes.
fn split_pairs<'a>(s: &'a str, delimiter: Option<&str>) -> Result<Vec<&'a str>, String> {
    let mut out = Vec::new();
    let (mut start, mut quote, mut escaped) = (0, None::<char>, false);
    let mut iter = s.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if escaped {
            escaped = false;
            continue;
        }
        match quote {
            Some(q) => {
                if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                continue;
            }
            None => {}
        }
        let end = match delimiter {
            None if c.is_whitespace() => Some(i + c.len_utf8()),
            Some(d) if s[i..].starts_with(d) => Some(i + d.len()),
            _ => None,
        };
        if let Some(end) = end {
            out.push(&s[start..i]);
            start = end;
            // Skip the rest of a multi-byte delimiter.
            while iter.peek().is_some_and(|(j, _)| *j < end) {
                iter.next();
            }
        }
    }
    if let Some(q) = quote {
        // A quote never closed would swallow the pairs after it.
        return Err(format!("a value opened with {q} never reaches its closing {q}"));
    }
    out.push(&s[start..]);
    Ok(out)
}

/// Removes one pair of surrounding quotes, turning `\"` (or `\'`) inside into the quote.
fn unquote(s: &str) -> String {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            let inner = &s[1..s.len() - 1];
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some(n) if n == q || n == '\\' => out.push(n),
                        Some(n) => {
                            out.push('\\');
                            out.push(n);
                        }
                        None => out.push('\\'),
                    }
                } else {
                    out.push(c);
                }
            }
            return out;
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{attr, pipeline, run};

    #[test]
    fn logfmt_lines() {
        let p = pipeline("- type: key_value_parser\n  severity:\n    parse_from: attributes.level").unwrap();
        let out = run(
            &p,
            &[
                r#"time=2024-03-01T10:00:00Z level=warn msg="cache miss for \"user:42\"" dur=3ms  empty="""#,
                "k='single quoted value' a=b=c",
                "no pairs here",
                "",
            ],
        );
        let r = &out.records[0];
        assert_eq!(attr(r, "msg"), Some(r#"cache miss for "user:42""#));
        assert_eq!(attr(r, "dur"), Some("3ms"));
        assert_eq!(attr(r, "empty"), Some(""));
        assert_eq!(r.log.severity_number, 13);
        assert_eq!(attr(&out.records[1], "k"), Some("single quoted value"));
        assert_eq!(attr(&out.records[1], "a"), Some("b=c"), "split at the first delimiter");
        let messages: Vec<&str> = out.failures.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "severity: the entry has no attributes.level to parse the severity from",
                "\"no\" has no \"=\" between a key and a value",
                "no key-value pairs"
            ]
        );
    }

    #[test]
    fn a_quote_never_closed_is_an_error_not_a_swallowed_line() {
        let p = pipeline("- type: key_value_parser").unwrap();
        let out = run(&p, &["msg=it's broken level=error"]);
        assert_eq!(out.failures.len(), 1, "{:?}", out.records[0].log.attributes);
        assert!(out.failures[0].message.contains("never reaches its closing '"), "{:?}", out.failures);
    }

    #[test]
    fn other_delimiters() {
        let p = pipeline("- type: key_value_parser\n  delimiter: ':'\n  pair_delimiter: ' ! '").unwrap();
        let out = run(&p, &["name:stanza ! org:otel      ! group:dev"]);
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(attr(&out.records[0], "org"), Some("otel"));
        assert_eq!(attr(&out.records[0], "group"), Some("dev"));
        let (k, _) = pipeline("- type: key_value_parser\n  delimiter: ' '\n  pair_delimiter: ' '").unwrap_err();
        assert_eq!(k, "operators.0.pair_delimiter");
    }
}
