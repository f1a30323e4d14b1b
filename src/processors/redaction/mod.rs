//! The `redaction` processor: keeps only allowed attribute keys on spans, log records and data
//! points (unless `allow_all_keys`), and masks values that match `blocked_values` (the matching
//! part) or whose key matches `blocked_key_patterns` (the whole value), with `****` or a hash;
//! `summary` records what it did as `redaction.*` attributes.

use crate::pipeline::{Batch, Processor, Request};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use regex::Regex;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Summary {
    /// Counts and the keys that were redacted or masked.
    #[default]
    Debug,
    /// Counts only.
    Info,
    Silent,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HashFunction {
    Md5,
    Sha1,
    Sha3,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedactionConfig {
    pub allow_all_keys: bool,
    pub allowed_keys: Vec<String>,
    /// Left exactly as they are: neither removed nor masked.
    pub ignored_keys: Vec<String>,
    pub blocked_values: Vec<String>,
    pub blocked_key_patterns: Vec<String>,
    /// Values matching these are never masked.
    pub allowed_values: Vec<String>,
    /// Mask with this hash of what is masked instead of `****`.
    pub hash_function: Option<HashFunction>,
    pub summary: Summary,
}

fn regexes(key: &str, list: &[String]) -> Result<Vec<Regex>, (String, String)> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            Regex::new(p).map_err(|e| (format!("{key}.{i}"), format!("invalid regular expression \"{p}\": {e}")))
        })
        .collect()
}

impl RedactionConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        regexes("blocked_values", &self.blocked_values)?;
        regexes("blocked_key_patterns", &self.blocked_key_patterns)?;
        regexes("allowed_values", &self.allowed_values)?;
        Ok(())
    }
}

pub struct RedactionProcessor {
    cfg: RedactionConfig,
    blocked_values: Vec<Regex>,
    blocked_keys: Vec<Regex>,
    allowed_values: Vec<Regex>,
}

const MASK: &str = "****";

impl RedactionProcessor {
    pub fn new(cfg: &RedactionConfig) -> Result<RedactionProcessor, String> {
        let f = |(k, m): (String, String)| format!("{k}: {m}");
        Ok(RedactionProcessor {
            blocked_values: regexes("blocked_values", &cfg.blocked_values).map_err(f)?,
            blocked_keys: regexes("blocked_key_patterns", &cfg.blocked_key_patterns).map_err(f)?,
            allowed_values: regexes("allowed_values", &cfg.allowed_values).map_err(f)?,
            cfg: cfg.clone(),
        })
    }

    fn mask(&self, text: &str) -> String {
        let hex = crate::hexfmt::hex;
        match self.cfg.hash_function {
            None => MASK.to_string(),
            Some(HashFunction::Md5) => hex(&crate::md5::md5(text.as_bytes())),
            Some(HashFunction::Sha1) => {
                use sha1::Digest;
                hex(&sha1::Sha1::digest(text.as_bytes()))
            }
            Some(HashFunction::Sha3) => {
                use sha3::Digest;
                hex(&sha3::Sha3_256::digest(text.as_bytes()))
            }
        }
    }

    /// Redacts one attribute list in place.
    fn redact(&self, attrs: &mut Vec<KeyValue>) {
        let (mut redacted, mut masked, mut ignored) = (Vec::new(), Vec::new(), 0usize);
        attrs.retain(|a| {
            if self.cfg.ignored_keys.contains(&a.key) {
                ignored += 1;
                return true;
            }
            if self.cfg.allow_all_keys || self.cfg.allowed_keys.contains(&a.key) {
                return true;
            }
            redacted.push(a.key.clone());
            false
        });
        for a in attrs.iter_mut() {
            if self.cfg.ignored_keys.contains(&a.key) {
                continue;
            }
            let Some(AnyValue { value: Some(v) }) = a.value.as_mut() else { continue };
            let text = match v {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                _ => continue,
            };
            if self.allowed_values.iter().any(|r| r.is_match(&text)) {
                continue;
            }
            let new = if self.blocked_keys.iter().any(|r| r.is_match(&a.key)) {
                self.mask(&text)
            } else {
                let mut out = text.clone();
                for r in &self.blocked_values {
                    out = r.replace_all(&out, |c: &regex::Captures| self.mask(&c[0])).into_owned();
                }
                out
            };
            if new != text {
                *v = any_value::Value::StringValue(new);
                masked.push(a.key.clone());
            }
        }
        let put = |attrs: &mut Vec<KeyValue>, key: &str, value: any_value::Value| {
            attrs.retain(|a| a.key != key);
            attrs.push(KeyValue {
                key: key.into(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
        };
        if self.cfg.summary != Summary::Silent {
            redacted.sort();
            masked.sort();
            if self.cfg.summary == Summary::Debug {
                if !redacted.is_empty() {
                    put(attrs, "redaction.redacted.keys", any_value::Value::StringValue(redacted.join(",")));
                }
                if !masked.is_empty() {
                    put(attrs, "redaction.masked.keys", any_value::Value::StringValue(masked.join(",")));
                }
            }
            if !redacted.is_empty() {
                put(attrs, "redaction.redacted.count", any_value::Value::IntValue(redacted.len() as i64));
            }
            if !masked.is_empty() {
                put(attrs, "redaction.masked.count", any_value::Value::IntValue(masked.len() as i64));
            }
            if ignored > 0 {
                put(attrs, "redaction.ignored.count", any_value::Value::IntValue(ignored as i64));
            }
        }
    }
}

impl Processor for RedactionProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        if let Ok(request) = batch.request_mut() {
            match request {
                Request::Traces(t) => t
                    .resource_spans
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_spans)
                    .flat_map(|s| &mut s.spans)
                    .for_each(|s| self.redact(&mut s.attributes)),
                Request::Logs(l) => l
                    .resource_logs
                    .iter_mut()
                    .flat_map(|r| &mut r.scope_logs)
                    .flat_map(|s| &mut s.log_records)
                    .for_each(|r| self.redact(&mut r.attributes)),
                Request::Metrics(m) => {
                    for metric in
                        m.resource_metrics.iter_mut().flat_map(|r| &mut r.scope_metrics).flat_map(|s| &mut s.metrics)
                    {
                        match metric.data.as_mut() {
                            Some(metric::Data::Gauge(d)) => {
                                d.data_points.iter_mut().for_each(|p| self.redact(&mut p.attributes))
                            }
                            Some(metric::Data::Sum(d)) => {
                                d.data_points.iter_mut().for_each(|p| self.redact(&mut p.attributes))
                            }
                            Some(metric::Data::Histogram(d)) => {
                                d.data_points.iter_mut().for_each(|p| self.redact(&mut p.attributes))
                            }
                            Some(metric::Data::ExponentialHistogram(d)) => {
                                d.data_points.iter_mut().for_each(|p| self.redact(&mut p.attributes))
                            }
                            Some(metric::Data::Summary(d)) => {
                                d.data_points.iter_mut().for_each(|p| self.redact(&mut p.attributes))
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        out.push(batch);
    }
}

/// The `redaction` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<RedactionConfig>(
    "redaction",
    crate::registry::ALL_SIGNALS,
    "removes attributes not allowed and masks blocked values",
);

impl crate::pipeline::component::ProcessorSettings for RedactionConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        RedactionConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        _ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(RedactionProcessor::new(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        }
    }

    fn get(attrs: &[KeyValue], k: &str) -> Option<any_value::Value> {
        attrs.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value)
    }

    fn s(v: &str) -> Option<any_value::Value> {
        Some(any_value::Value::StringValue(v.into()))
    }

    #[test]
    fn keys_not_allowed_go_and_blocked_values_are_masked() {
        let cfg: RedactionConfig = serde_json::from_value(serde_json::json!({
            "allowed_keys": ["description", "card", "api.key", "note"],
            "ignored_keys": ["trace.note"],
            "blocked_values": ["4[0-9]{12}(?:[0-9]{3})?"],
            "blocked_key_patterns": [".*key.*"],
            "allowed_values": ["^4111111111111111$"],
        }))
        .unwrap();
        cfg.validate().unwrap();
        let p = RedactionProcessor::new(&cfg).unwrap();
        let mut attrs = vec![
            kv("description", "paid with 4012888888881881 today"),
            kv("card", "4111111111111111"),
            kv("api.key", "abc"),
            kv("password", "hunter2"),
            kv("trace.note", "4012888888881881"),
            kv("note", "nothing here"),
        ];
        p.redact(&mut attrs);
        assert_eq!(get(&attrs, "description"), s("paid with **** today"));
        assert_eq!(get(&attrs, "card"), s("4111111111111111"), "an allowed value stays");
        assert_eq!(get(&attrs, "api.key"), s("****"));
        assert_eq!(get(&attrs, "password"), None, "not an allowed key");
        assert_eq!(get(&attrs, "trace.note"), s("4012888888881881"), "ignored keys are left alone");
        assert_eq!(get(&attrs, "redaction.redacted.keys"), s("password"));
        assert_eq!(get(&attrs, "redaction.masked.keys"), s("api.key,description"));
        assert_eq!(get(&attrs, "redaction.masked.count"), Some(any_value::Value::IntValue(2)));
    }

    #[test]
    fn hashes_instead_of_stars() {
        let cfg: RedactionConfig = serde_json::from_value(serde_json::json!({
            "allow_all_keys": true, "blocked_values": ["secret"], "hash_function": "md5", "summary": "silent"
        }))
        .unwrap();
        let p = RedactionProcessor::new(&cfg).unwrap();
        let mut attrs = vec![kv("a", "my secret")];
        p.redact(&mut attrs);
        // MD5("secret").
        assert_eq!(get(&attrs, "a"), s("my 5ebe2294ecd0e0f08eab7690d2a6ee69"));
        assert_eq!(attrs.len(), 1, "silent: no summary attributes");
        let bad: RedactionConfig = serde_json::from_value(serde_json::json!({"blocked_values": ["("]})).unwrap();
        assert_eq!(bad.validate().unwrap_err().0, "blocked_values.0");
    }
}
