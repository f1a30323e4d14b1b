//! Tail-sampling policies and how their decisions combine (PROTOCOLS.md §6.2): any "drop" means
//! not sampled; else any "sample" means sampled; else an inverted "sample" with no inverted "not
//! sample" means sampled; else not sampled.

use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use regex::Regex;
use serde::Deserialize;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Sampled,
    NotSampled,
    InvertSampled,
    InvertNotSampled,
    Dropped,
}

/// A trace as policies see it: its spans, each with its resource's attributes.
pub struct Trace<'a> {
    pub spans: Vec<(&'a [KeyValue], &'a Span)>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub threshold_ms: u64,
    pub upper_threshold_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StatusCodeConfig {
    pub status_codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StringAttributeConfig {
    pub key: String,
    pub values: Vec<String>,
    pub enabled_regex_matching: bool,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NumericAttributeConfig {
    pub key: String,
    pub min_value: Option<i64>,
    pub max_value: Option<i64>,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BooleanAttributeConfig {
    pub key: String,
    pub value: bool,
    pub invert_match: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticConfig {
    pub hash_salt: String,
    pub sampling_percentage: f64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitingConfig {
    pub spans_per_second: u64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SpanCountConfig {
    pub min_spans: usize,
    /// 0: no upper bound.
    pub max_spans: usize,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TraceStateConfig {
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AndConfig {
    pub and_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DropConfig {
    pub drop_sub_policy: Vec<PolicyConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    pub policy: String,
    pub percent: u64,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CompositeConfig {
    pub max_total_spans_per_second: u64,
    pub policy_order: Vec<String>,
    pub composite_sub_policy: Vec<PolicyConfig>,
    pub rate_allocation: Vec<RateAllocation>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub latency: LatencyConfig,
    pub status_code: StatusCodeConfig,
    pub string_attribute: StringAttributeConfig,
    pub numeric_attribute: NumericAttributeConfig,
    pub boolean_attribute: BooleanAttributeConfig,
    pub probabilistic: ProbabilisticConfig,
    pub rate_limiting: RateLimitingConfig,
    pub span_count: SpanCountConfig,
    pub trace_state: TraceStateConfig,
    pub and: AndConfig,
    pub drop: DropConfig,
    pub composite: CompositeConfig,
}

/// A spans-per-second budget, refilled every second.
#[derive(Debug)]
struct Budget {
    per_second: u64,
    state: Mutex<(Instant, u64)>,
}

impl Budget {
    fn new(per_second: u64) -> Budget {
        Budget { per_second, state: Mutex::new((Instant::now(), 0)) }
    }

    fn take(&self, spans: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.0.elapsed().as_secs() >= 1 {
            *s = (Instant::now(), 0);
        }
        if s.1 + spans <= self.per_second {
            s.1 += spans;
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
enum Kind {
    AlwaysSample,
    Latency(u64, u64),
    StatusCode(Vec<i32>),
    StringAttribute { key: String, values: Vec<String>, regexes: Vec<Regex>, invert: bool },
    NumericAttribute { key: String, min: i64, max: i64, invert: bool },
    BooleanAttribute { key: String, value: bool, invert: bool },
    Probabilistic { salt: Vec<u8>, threshold: u64 },
    RateLimiting(Budget),
    SpanCount(usize, usize),
    TraceState { key: String, values: Vec<String> },
    And(Vec<Policy>),
    Drop(Vec<Policy>),
    Composite(Vec<(Policy, Budget)>),
}

#[derive(Debug)]
pub struct Policy {
    pub name: String,
    kind: Kind,
}

fn attribute<'a>(trace: &'a Trace, key: &str) -> impl Iterator<Item = &'a any_value::Value> + 'a {
    let key = key.to_string();
    trace.spans.iter().flat_map(move |(resource, span)| {
        let key = key.clone();
        span.attributes
            .iter()
            .chain(resource.iter())
            .filter(move |a| a.key == key)
            .filter_map(|a| a.value.as_ref()?.value.as_ref())
    })
}

fn invertible(matched: bool, invert: bool) -> Decision {
    match (matched, invert) {
        (true, false) => Decision::Sampled,
        (false, false) => Decision::NotSampled,
        (true, true) => Decision::InvertNotSampled,
        (false, true) => Decision::InvertSampled,
    }
}

/// FNV-1a 64 over the salt and the trace id, then mixed (the splitmix64 finalizer) so that the
/// whole range is used even when ids differ only in their last bytes.
fn hash(salt: &[u8], trace_id: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in salt.iter().chain(trace_id) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58476d1ce4e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d049bb133111eb);
    h ^ (h >> 31)
}

impl Policy {
    /// Checks and builds a policy; errors name the key (relative to the policy).
    pub fn new(cfg: &PolicyConfig) -> Result<Policy, (String, String)> {
        let sub = |list: &[PolicyConfig], key: &str| -> Result<Vec<Policy>, (String, String)> {
            if list.is_empty() {
                return Err((key.into(), "list at least one sub-policy".into()));
            }
            list.iter()
                .enumerate()
                .map(|(i, p)| Policy::new(p).map_err(|(k, m)| (format!("{key}.{i}.{k}"), m)))
                .collect()
        };
        let kind = match cfg.kind.as_str() {
            "always_sample" => Kind::AlwaysSample,
            "latency" => {
                let l = &cfg.latency;
                if l.upper_threshold_ms > 0 && l.upper_threshold_ms <= l.threshold_ms {
                    return Err(("latency.upper_threshold_ms".into(), "must be above threshold_ms".into()));
                }
                Kind::Latency(l.threshold_ms, l.upper_threshold_ms)
            }
            "status_code" => Kind::StatusCode(
                cfg.status_code
                    .status_codes
                    .iter()
                    .map(|c| match c.as_str() {
                        "UNSET" => Ok(0),
                        "OK" => Ok(1),
                        "ERROR" => Ok(2),
                        other => Err((
                            "status_code.status_codes".to_string(),
                            format!("\"{other}\" is not OK, ERROR or UNSET"),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "string_attribute" => {
                let s = &cfg.string_attribute;
                let regexes = if s.enabled_regex_matching {
                    s.values
                        .iter()
                        .map(|v| {
                            Regex::new(v).map_err(|e| {
                                (
                                    "string_attribute.values".to_string(),
                                    format!("invalid regular expression \"{v}\": {e}"),
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?
                } else {
                    Vec::new()
                };
                Kind::StringAttribute { key: s.key.clone(), values: s.values.clone(), regexes, invert: s.invert_match }
            }
            "numeric_attribute" => {
                let n = &cfg.numeric_attribute;
                Kind::NumericAttribute {
                    key: n.key.clone(),
                    min: n.min_value.unwrap_or(i64::MIN),
                    max: n.max_value.unwrap_or(i64::MAX),
                    invert: n.invert_match,
                }
            }
            "boolean_attribute" => {
                let b = &cfg.boolean_attribute;
                Kind::BooleanAttribute { key: b.key.clone(), value: b.value, invert: b.invert_match }
            }
            "probabilistic" => {
                let p = &cfg.probabilistic;
                if !(0.0..=100.0).contains(&p.sampling_percentage) {
                    return Err(("probabilistic.sampling_percentage".into(), "must be between 0 and 100".into()));
                }
                Kind::Probabilistic {
                    salt: p.hash_salt.as_bytes().to_vec(),
                    threshold: (p.sampling_percentage / 100.0 * u64::MAX as f64) as u64,
                }
            }
            "rate_limiting" => Kind::RateLimiting(Budget::new(cfg.rate_limiting.spans_per_second)),
            "span_count" => Kind::SpanCount(cfg.span_count.min_spans, cfg.span_count.max_spans),
            "trace_state" => {
                Kind::TraceState { key: cfg.trace_state.key.clone(), values: cfg.trace_state.values.clone() }
            }
            "and" => Kind::And(sub(&cfg.and.and_sub_policy, "and.and_sub_policy")?),
            "drop" => Kind::Drop(sub(&cfg.drop.drop_sub_policy, "drop.drop_sub_policy")?),
            "composite" => {
                let c = &cfg.composite;
                let subs = sub(&c.composite_sub_policy, "composite.composite_sub_policy")?;
                let mut ordered = Vec::new();
                let mut subs: Vec<Option<Policy>> = subs.into_iter().map(Some).collect();
                for name in &c.policy_order {
                    let i = subs.iter().position(|p| p.as_ref().is_some_and(|p| p.name == *name)).ok_or_else(|| {
                        ("composite.policy_order".to_string(), format!("\"{name}\" is not one of composite_sub_policy"))
                    })?;
                    let percent = c.rate_allocation.iter().find(|r| r.policy == *name).map(|r| r.percent).unwrap_or(0);
                    let p = subs[i].take().expect("found above");
                    ordered.push((p, Budget::new(c.max_total_spans_per_second * percent / 100)));
                }
                if ordered.is_empty() {
                    return Err(("composite.policy_order".into(), "list the sub-policies in order".into()));
                }
                Kind::Composite(ordered)
            }
            other => {
                return Err((
                    "type".into(),
                    format!(
                        "unknown policy type \"{other}\" (known: always_sample, latency, status_code, string_attribute, numeric_attribute, boolean_attribute, probabilistic, rate_limiting, span_count, trace_state, and, drop, composite)"
                    ),
                ));
            }
        };
        Ok(Policy { name: cfg.name.clone(), kind })
    }

    pub fn evaluate(&self, trace: &Trace, trace_id: &[u8]) -> Decision {
        match &self.kind {
            Kind::AlwaysSample => Decision::Sampled,
            Kind::Latency(low, high) => {
                let start = trace.spans.iter().map(|(_, s)| s.start_time_unix_nano).min().unwrap_or(0);
                let end = trace.spans.iter().map(|(_, s)| s.end_time_unix_nano).max().unwrap_or(0);
                let ms = end.saturating_sub(start) / 1_000_000;
                let hit = ms >= *low && (*high == 0 || ms < *high);
                if hit { Decision::Sampled } else { Decision::NotSampled }
            }
            Kind::StatusCode(codes) => {
                let hit =
                    trace.spans.iter().any(|(_, s)| codes.contains(&s.status.as_ref().map(|st| st.code).unwrap_or(0)));
                if hit { Decision::Sampled } else { Decision::NotSampled }
            }
            Kind::StringAttribute { key, values, regexes, invert } => {
                let hit = attribute(trace, key).any(|v| match v {
                    any_value::Value::StringValue(s) => {
                        if regexes.is_empty() {
                            values.contains(s)
                        } else {
                            regexes.iter().any(|r| r.is_match(s))
                        }
                    }
                    _ => false,
                });
                invertible(hit, *invert)
            }
            Kind::NumericAttribute { key, min, max, invert } => {
                let hit =
                    attribute(trace, key).any(|v| matches!(v, any_value::Value::IntValue(i) if i >= min && i <= max));
                invertible(hit, *invert)
            }
            Kind::BooleanAttribute { key, value, invert } => {
                let hit = attribute(trace, key).any(|v| matches!(v, any_value::Value::BoolValue(b) if b == value));
                invertible(hit, *invert)
            }
            Kind::Probabilistic { salt, threshold } => {
                if hash(salt, trace_id) < *threshold {
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Kind::RateLimiting(budget) => {
                if budget.take(trace.spans.len() as u64) {
                    Decision::Sampled
                } else {
                    Decision::NotSampled
                }
            }
            Kind::SpanCount(min, max) => {
                let n = trace.spans.len();
                if n >= *min && (*max == 0 || n <= *max) { Decision::Sampled } else { Decision::NotSampled }
            }
            Kind::TraceState { key, values } => {
                let hit = trace.spans.iter().any(|(_, s)| {
                    s.trace_state
                        .split(',')
                        .filter_map(|m| m.trim().split_once('='))
                        .any(|(k, v)| k == key && values.iter().any(|x| x == v))
                });
                if hit { Decision::Sampled } else { Decision::NotSampled }
            }
            Kind::And(subs) => {
                let all = subs
                    .iter()
                    .all(|p| matches!(p.evaluate(trace, trace_id), Decision::Sampled | Decision::InvertSampled));
                if all { Decision::Sampled } else { Decision::NotSampled }
            }
            Kind::Drop(subs) => {
                let all = subs
                    .iter()
                    .all(|p| matches!(p.evaluate(trace, trace_id), Decision::Sampled | Decision::InvertSampled));
                if all { Decision::Dropped } else { Decision::NotSampled }
            }
            Kind::Composite(ordered) => {
                for (p, budget) in ordered {
                    if matches!(p.evaluate(trace, trace_id), Decision::Sampled | Decision::InvertSampled)
                        && budget.take(trace.spans.len() as u64)
                    {
                        return Decision::Sampled;
                    }
                }
                Decision::NotSampled
            }
        }
    }
}

/// The final verdict from every policy's decision.
pub fn combine(decisions: &[Decision]) -> bool {
    if decisions.contains(&Decision::Dropped) {
        return false;
    }
    if decisions.contains(&Decision::Sampled) {
        return true;
    }
    decisions.contains(&Decision::InvertSampled) && !decisions.contains(&Decision::InvertNotSampled)
}
