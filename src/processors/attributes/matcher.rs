//! `include` / `exclude` of the `attributes` processor: which spans, log records and data points
//! its actions apply to. Every property given must match (services, span names, span kinds, log
//! bodies, log severity texts, metric names, attributes, resource attributes, libraries); within a
//! property, any one value. `match_type` says whether values are exact strings or regexes.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use regex::Regex;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    #[default]
    Strict,
    Regexp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValueMatch {
    pub key: String,
    /// Without a value, the key being present is enough.
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryMatch {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MatchConfig {
    pub match_type: MatchType,
    pub services: Vec<String>,
    pub span_names: Vec<String>,
    pub span_kinds: Vec<String>,
    pub log_bodies: Vec<String>,
    pub log_severity_texts: Vec<String>,
    pub metric_names: Vec<String>,
    pub attributes: Vec<KeyValueMatch>,
    pub resources: Vec<KeyValueMatch>,
    pub libraries: Vec<LibraryMatch>,
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Re(Regex),
}

impl Pattern {
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Exact(e) => e == s,
            Pattern::Re(r) => r.is_match(s),
        }
    }
}

/// What a matcher looks at in one item.
pub struct View<'a> {
    pub resource: &'a [KeyValue],
    pub scope: Option<&'a InstrumentationScope>,
    pub attributes: &'a [KeyValue],
    pub span_name: Option<&'a str>,
    pub span_kind: Option<i32>,
    pub log_body: Option<&'a AnyValue>,
    pub log_severity_text: Option<&'a str>,
    pub metric_name: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    services: Vec<Pattern>,
    span_names: Vec<Pattern>,
    span_kinds: Vec<i32>,
    log_bodies: Vec<Pattern>,
    log_severity_texts: Vec<Pattern>,
    metric_names: Vec<Pattern>,
    attributes: Vec<(String, Option<Pattern>)>,
    resources: Vec<(String, Option<Pattern>)>,
    libraries: Vec<(Pattern, Option<Pattern>)>,
}

fn text(v: Option<&AnyValue>) -> Option<String> {
    Some(match v?.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        _ => return None,
    })
}

fn lookup(attrs: &[KeyValue], key: &str) -> Option<Option<String>> {
    attrs.iter().find(|a| a.key == key).map(|a| text(a.value.as_ref()))
}

impl Matcher {
    /// Checks and compiles a match configuration; errors name the key.
    pub fn new(cfg: &MatchConfig) -> Result<Matcher, (String, String)> {
        let pattern = |key: &str, s: &str| -> Result<Pattern, (String, String)> {
            match cfg.match_type {
                MatchType::Strict => Ok(Pattern::Exact(s.to_string())),
                MatchType::Regexp => Regex::new(s)
                    .map(Pattern::Re)
                    .map_err(|e| (key.to_string(), format!("invalid regular expression \"{s}\": {e}"))),
            }
        };
        let list = |key: &str, l: &[String]| l.iter().map(|s| pattern(key, s)).collect::<Result<Vec<_>, _>>();
        let pairs = |key: &str, l: &[KeyValueMatch]| {
            l.iter()
                .map(|m| Ok((m.key.clone(), m.value.as_deref().map(|v| pattern(key, v)).transpose()?)))
                .collect::<Result<Vec<_>, (String, String)>>()
        };
        let span_kinds = cfg
            .span_kinds
            .iter()
            .map(|k| match k.as_str() {
                "SPAN_KIND_UNSPECIFIED" => Ok(0),
                "SPAN_KIND_INTERNAL" => Ok(1),
                "SPAN_KIND_SERVER" => Ok(2),
                "SPAN_KIND_CLIENT" => Ok(3),
                "SPAN_KIND_PRODUCER" => Ok(4),
                "SPAN_KIND_CONSUMER" => Ok(5),
                other => {
                    Err(("span_kinds".to_string(), format!("\"{other}\" is not a span kind such as SPAN_KIND_SERVER")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let m = Matcher {
            services: list("services", &cfg.services)?,
            span_names: list("span_names", &cfg.span_names)?,
            span_kinds,
            log_bodies: list("log_bodies", &cfg.log_bodies)?,
            log_severity_texts: list("log_severity_texts", &cfg.log_severity_texts)?,
            metric_names: list("metric_names", &cfg.metric_names)?,
            attributes: pairs("attributes", &cfg.attributes)?,
            resources: pairs("resources", &cfg.resources)?,
            libraries: cfg
                .libraries
                .iter()
                .map(|l| {
                    Ok((
                        pattern("libraries", &l.name)?,
                        l.version.as_deref().map(|v| pattern("libraries", v)).transpose()?,
                    ))
                })
                .collect::<Result<Vec<_>, (String, String)>>()?,
        };
        Ok(m)
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
            && self.span_names.is_empty()
            && self.span_kinds.is_empty()
            && self.log_bodies.is_empty()
            && self.log_severity_texts.is_empty()
            && self.metric_names.is_empty()
            && self.attributes.is_empty()
            && self.resources.is_empty()
            && self.libraries.is_empty()
    }

    pub fn matches(&self, v: &View) -> bool {
        let any = |patterns: &[Pattern], value: Option<&str>| {
            patterns.is_empty() || value.is_some_and(|x| patterns.iter().any(|p| p.matches(x)))
        };
        let pairs = |wanted: &[(String, Option<Pattern>)], attrs: &[KeyValue]| {
            wanted.iter().all(|(k, p)| match (lookup(attrs, k), p) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(value), Some(p)) => value.is_some_and(|v| p.matches(&v)),
            })
        };
        let service = lookup(v.resource, "service.name").flatten();
        any(&self.services, service.as_deref())
            && any(&self.span_names, v.span_name)
            && (self.span_kinds.is_empty() || v.span_kind.is_some_and(|k| self.span_kinds.contains(&k)))
            && any(&self.log_bodies, text(v.log_body).as_deref())
            && any(&self.log_severity_texts, v.log_severity_text)
            && any(&self.metric_names, v.metric_name)
            && pairs(&self.attributes, v.attributes)
            && pairs(&self.resources, v.resource)
            && (self.libraries.is_empty()
                || v.scope.is_some_and(|s| {
                    self.libraries
                        .iter()
                        .any(|(n, ver)| n.matches(&s.name) && ver.as_ref().is_none_or(|p| p.matches(&s.version)))
                }))
    }
}
