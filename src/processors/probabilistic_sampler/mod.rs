//! The `probabilistic_sampler` processor (PROTOCOLS.md §6.3): keeps a share of traces (and log
//! records), trace by trace, the same way on every instance.
//! - `hash_seed` mode: 32-bit FNV-1a over the 4-byte little-endian seed and the 16 trace-id bytes;
//!   kept when the low 14 bits are below `sampling_percentage` × 16384 / 100. A fleet with one
//!   seed agrees on every trace.
//! - `proportional` and `equalizing` modes: OpenTelemetry consistent sampling. The randomness is
//!   `rv` from the `ot=` tracestate entry or the trace id's last 56 bits; the rejection threshold
//!   `th` is multiplied with an earlier sampler's (`proportional`) or raised to this one's
//!   (`equalizing`); kept when randomness ≥ threshold, and the new `th` is written.
//!
//! `sampling.priority` on a span (or `sampling_priority`'s attribute on a log record) overrides:
//! 0 drops, anything else keeps.

use crate::pipeline::{Batch, Processor, Request, Signal};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    HashSeed,
    Proportional,
    Equalizing,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum AttributeSource {
    #[default]
    #[serde(rename = "traceID")]
    TraceId,
    #[serde(rename = "record")]
    Record,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbabilisticSamplerConfig {
    pub sampling_percentage: f64,
    pub hash_seed: u32,
    pub mode: Mode,
    /// Hex digits of `th` written (1–14).
    pub sampling_precision: u8,
    /// Drop items that carry no randomness (an all-zero trace id) instead of keeping them.
    pub fail_closed: bool,
    /// Logs: sample by the record's trace id, or by the attribute `from_attribute`.
    pub attribute_source: AttributeSource,
    pub from_attribute: String,
    /// Logs: the attribute whose value overrides the decision (0 drops, other values keep).
    pub sampling_priority: String,
}

impl Default for ProbabilisticSamplerConfig {
    fn default() -> Self {
        ProbabilisticSamplerConfig {
            sampling_percentage: 0.0,
            hash_seed: 0,
            mode: Mode::HashSeed,
            sampling_precision: 4,
            fail_closed: true,
            attribute_source: AttributeSource::TraceId,
            from_attribute: String::new(),
            sampling_priority: String::new(),
        }
    }
}

impl ProbabilisticSamplerConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=100.0).contains(&self.sampling_percentage) || self.sampling_percentage.is_nan() {
            return Err(("sampling_percentage".into(), "must be between 0 and 100".into()));
        }
        if !(1..=14).contains(&self.sampling_precision) {
            return Err(("sampling_precision".into(), "must be between 1 and 14".into()));
        }
        if self.attribute_source == AttributeSource::Record && self.from_attribute.is_empty() {
            return Err(("from_attribute".into(), "is required with attribute_source: record".into()));
        }
        Ok(())
    }
}

/// 2^56: the randomness and threshold space of consistent sampling.
const MAX_ADJUSTED: u64 = 1 << 56;

/// 32-bit FNV-1a over the seed (little-endian) and `data`, as the collector's hash_seed mode.
pub fn seeded_hash(seed: u32, data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in seed.to_le_bytes().iter().chain(data) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// The `ot=` entry of a W3C tracestate, as its `key:value` pairs.
fn ot_fields(tracestate: &str) -> Vec<(String, String)> {
    tracestate
        .split(',')
        .map(str::trim)
        .find_map(|m| m.strip_prefix("ot="))
        .map(|ot| {
            ot.split(';').filter_map(|kv| kv.split_once(':')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
        })
        .unwrap_or_default()
}

/// Decodes `th` (1–14 hex digits, trailing zeros dropped) to a threshold.
fn decode_th(th: &str) -> Option<u64> {
    if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{th:0<14}");
    u64::from_str_radix(&padded, 16).ok()
}

/// Encodes a threshold as `th`, keeping `precision` significant hex digits (rounded up, so the
/// probability written is never above the one applied... and trailing zeros removed).
fn encode_th(t: u64, precision: u8) -> String {
    if t == 0 {
        return "0".into();
    }
    let full = format!("{t:014x}");
    let leading = full.bytes().take_while(|b| *b == b'0').count();
    let keep = (leading + usize::from(precision)).min(14);
    let mut digits: Vec<u8> = full.as_bytes()[..keep].to_vec();
    // Round up when anything was cut, so the threshold only grows (probability only shrinks).
    if full.as_bytes()[keep..].iter().any(|b| *b != b'0') {
        let mut i = digits.len();
        loop {
            if i == 0 {
                // Every kept digit was f: rounding up would overflow to 100% dropped. Write the
                // threshold in full instead (still exact, just longer).
                return full.trim_end_matches('0').to_string();
            }
            i -= 1;
            match digits[i] {
                b'f' => digits[i] = b'0',
                b'9' => {
                    digits[i] = b'a';
                    break;
                }
                d => {
                    digits[i] = d + 1;
                    break;
                }
            }
        }
    }
    let s = String::from_utf8(digits).unwrap_or_default();
    let trimmed = s.trim_end_matches('0');
    if trimmed.is_empty() { "0".into() } else { trimmed.to_string() }
}

/// Writes `th` into the tracestate's `ot=` entry, keeping everything else.
fn with_th(tracestate: &str, th: &str) -> String {
    let mut fields = ot_fields(tracestate);
    fields.retain(|(k, _)| k != "th");
    fields.insert(0, ("th".into(), th.to_string()));
    let ot = format!("ot={}", fields.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(";"));
    let others: Vec<&str> =
        tracestate.split(',').map(str::trim).filter(|m| !m.is_empty() && !m.starts_with("ot=")).collect();
    std::iter::once(ot.as_str()).chain(others).collect::<Vec<_>>().join(",")
}

/// Removes `th` from the tracestate's `ot=` entry (and the entry if nothing is left in it).
fn without_th(tracestate: &str) -> String {
    let fields: Vec<(String, String)> = ot_fields(tracestate).into_iter().filter(|(k, _)| k != "th").collect();
    let others = tracestate.split(',').map(str::trim).filter(|m| !m.is_empty() && !m.starts_with("ot="));
    let ot = (!fields.is_empty())
        .then(|| format!("ot={}", fields.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(";")));
    ot.into_iter().chain(others.map(str::to_string)).collect::<Vec<_>>().join(",")
}

pub struct ProbabilisticSampler {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    cfg: ProbabilisticSamplerConfig,
    /// hash_seed mode: keep when the low 14 bits are below this.
    scaled: u32,
    /// Consistent modes: this sampler's own rejection threshold.
    threshold: u64,
}

/// A decision with, for consistent modes, the `th` to write.
enum Decision {
    Drop,
    Keep(Option<String>),
}

impl ProbabilisticSampler {
    pub fn new(
        name: String,
        cfg: ProbabilisticSamplerConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> ProbabilisticSampler {
        let scaled = (cfg.sampling_percentage * 16384.0 / 100.0) as u32;
        let p = cfg.sampling_percentage / 100.0;
        let threshold = ((1.0 - p) * MAX_ADJUSTED as f64).round().clamp(0.0, MAX_ADJUSTED as f64) as u64;
        ProbabilisticSampler { name, telemetry, cfg, scaled, threshold }
    }

    fn decide(&self, trace_id: &[u8], tracestate: &str) -> Decision {
        let has_randomness = trace_id.iter().any(|b| *b != 0);
        match self.cfg.mode {
            Mode::HashSeed => {
                if !has_randomness && self.cfg.fail_closed {
                    return Decision::Drop;
                }
                if (seeded_hash(self.cfg.hash_seed, trace_id) & 0x3FFF) < self.scaled {
                    // A th from an earlier stage no longer states the probability: erase it.
                    Decision::Keep(if ot_fields(tracestate).iter().any(|(k, _)| k == "th") {
                        Some(String::new())
                    } else {
                        None
                    })
                } else {
                    Decision::Drop
                }
            }
            Mode::Proportional | Mode::Equalizing => {
                let fields = ot_fields(tracestate);
                let rv = fields
                    .iter()
                    .find(|(k, _)| k == "rv")
                    .and_then(|(_, v)| (v.len() == 14).then(|| u64::from_str_radix(v, 16).ok()).flatten());
                let randomness = match rv {
                    Some(r) => r,
                    None if has_randomness && trace_id.len() == 16 => {
                        let mut b = [0u8; 8];
                        b[1..].copy_from_slice(&trace_id[9..16]);
                        u64::from_be_bytes(b)
                    }
                    None => {
                        return if self.cfg.fail_closed { Decision::Drop } else { Decision::Keep(None) };
                    }
                };
                let incoming = fields.iter().find(|(k, _)| k == "th").and_then(|(_, v)| decode_th(v)).unwrap_or(0);
                let t = match self.cfg.mode {
                    Mode::Proportional => {
                        // Probabilities multiply: (2^56 - T_out) = (2^56 - T_in) * p.
                        let p = self.cfg.sampling_percentage / 100.0;
                        let kept = ((MAX_ADJUSTED - incoming) as f64 * p).round() as u64;
                        MAX_ADJUSTED - kept.min(MAX_ADJUSTED)
                    }
                    _ => incoming.max(self.threshold),
                };
                if t >= MAX_ADJUSTED || randomness < t {
                    return Decision::Drop;
                }
                // Round `th` to the configured precision (never below the threshold applied).
                let th = encode_th(t, self.cfg.sampling_precision);
                if decode_th(&th).is_some_and(|written| randomness < written) {
                    return Decision::Drop;
                }
                Decision::Keep(Some(th))
            }
        }
    }

    fn priority(attrs: &[KeyValue], key: &str) -> Option<bool> {
        let v = attrs.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
        Some(match v {
            any_value::Value::IntValue(i) => *i != 0,
            any_value::Value::DoubleValue(d) => *d != 0.0,
            any_value::Value::StringValue(s) => s.trim() != "0" && !s.trim().is_empty(),
            any_value::Value::BoolValue(b) => *b,
            _ => return None,
        })
    }

    fn sample(&self, request: &mut Request) -> usize {
        let before = request.item_count();
        match request {
            Request::Traces(t) => {
                for rs in &mut t.resource_spans {
                    for ss in &mut rs.scope_spans {
                        ss.spans.retain_mut(|span| {
                            if let Some(keep) = Self::priority(&span.attributes, "sampling.priority") {
                                return keep;
                            }
                            match self.decide(&span.trace_id, &span.trace_state) {
                                Decision::Drop => false,
                                Decision::Keep(th) => {
                                    match th.as_deref() {
                                        Some("") => span.trace_state = without_th(&span.trace_state),
                                        Some(th) => span.trace_state = with_th(&span.trace_state, th),
                                        None => {}
                                    }
                                    true
                                }
                            }
                        });
                    }
                    rs.scope_spans.retain(|ss| !ss.spans.is_empty());
                }
                t.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
            }
            Request::Logs(l) => {
                for rl in &mut l.resource_logs {
                    for sl in &mut rl.scope_logs {
                        sl.log_records.retain_mut(|log| {
                            if !self.cfg.sampling_priority.is_empty()
                                && let Some(keep) = Self::priority(&log.attributes, &self.cfg.sampling_priority)
                            {
                                return keep;
                            }
                            let key: Vec<u8> = match self.cfg.attribute_source {
                                AttributeSource::TraceId => log.trace_id.clone(),
                                AttributeSource::Record => log
                                    .attributes
                                    .iter()
                                    .find(|a| a.key == self.cfg.from_attribute)
                                    .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                                        any_value::Value::StringValue(s) => Some(s.as_bytes().to_vec()),
                                        any_value::Value::IntValue(i) => Some(i.to_string().into_bytes()),
                                        _ => None,
                                    })
                                    .unwrap_or_default(),
                            };
                            if key.is_empty() || key.iter().all(|b| *b == 0) {
                                return !self.cfg.fail_closed;
                            }
                            (seeded_hash(self.cfg.hash_seed, &key) & 0x3FFF) < self.scaled
                        });
                    }
                    rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
                }
                l.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
            }
            Request::Metrics(_) => {}
        }
        before - request.item_count()
    }
}

impl Processor for ProbabilisticSampler {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let signal: Signal = batch.signal();
        if signal == Signal::Metrics {
            out.push(batch);
            return;
        }
        super::drop_items(&self.telemetry, &self.name, batch, out, |request| self.sample(request));
    }
}

/// The `probabilistic_sampler` processor's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::processor::<ProbabilisticSamplerConfig>(
        "probabilistic_sampler",
        &[crate::signal::Signal::Traces, crate::signal::Signal::Logs],
        "keeps a share of traces and logs, trace by trace, the same on every instance",
    );

impl crate::pipeline::component::ProcessorSettings for ProbabilisticSamplerConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        ProbabilisticSamplerConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(ProbabilisticSampler::new(ctx.name.clone(), self.clone(), ctx.telemetry.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn ids(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                (0..2)
                    .flat_map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x.to_be_bytes()
                    })
                    .collect()
            })
            .collect()
    }

    fn request(trace_ids: &[Vec<u8>], tracestate: &str) -> Request {
        Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: trace_ids
                        .iter()
                        .map(|t| Span {
                            trace_id: t.clone(),
                            span_id: vec![1; 8],
                            trace_state: tracestate.into(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn kept(req: &Request) -> Vec<Span> {
        let Request::Traces(t) = req else { panic!() };
        t.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| s.spans.clone()).collect()
    }

    fn sampler(pct: f64, seed: u32, mode: Mode) -> ProbabilisticSampler {
        let cfg = ProbabilisticSamplerConfig { sampling_percentage: pct, hash_seed: seed, mode, ..Default::default() };
        cfg.validate().unwrap();
        ProbabilisticSampler::new("p".into(), cfg, Default::default())
    }

    #[test]
    fn the_fnv_hash_is_fnv1a_32() {
        // FNV-1a 32 of "a" is 0xe40c292c; with the seed bytes in front the input is seed ‖ data.
        let mut h: u32 = 0x811c9dc5;
        h ^= u32::from(b'a');
        h = h.wrapping_mul(0x01000193);
        assert_eq!(h, 0xe40c292c);
        assert_eq!(
            seeded_hash(0x64636261, b""),
            {
                let mut h: u32 = 0x811c9dc5;
                for b in b"abcd" {
                    h ^= u32::from(*b);
                    h = h.wrapping_mul(0x01000193);
                }
                h
            },
            "the seed goes first, little-endian"
        );
    }

    #[test]
    fn two_instances_with_one_seed_agree_on_100000_traces_and_keep_the_share() {
        let traces = ids(100_000, 7);
        let (a, b) = (sampler(25.0, 42, Mode::HashSeed), sampler(25.0, 42, Mode::HashSeed));
        let mut ra = request(&traces, "");
        let mut rb = request(&traces, "");
        a.sample(&mut ra);
        b.sample(&mut rb);
        let (ka, kb) = (kept(&ra), kept(&rb));
        assert_eq!(ka, kb, "identical per-trace decisions");
        // Binomial(100000, 0.25): sd ≈ 137; allow 5 sd.
        assert!((ka.len() as f64 - 25_000.0).abs() < 700.0, "{} kept", ka.len());
        let mut other = request(&traces, "");
        sampler(25.0, 43, Mode::HashSeed).sample(&mut other);
        assert_ne!(kept(&other), ka, "another seed decides otherwise");
    }

    #[test]
    fn consistent_modes_write_th_and_keep_by_randomness() {
        let traces = ids(20_000, 3);
        let s = sampler(25.0, 0, Mode::Proportional);
        let mut r = request(&traces, "vendor=x");
        s.sample(&mut r);
        let k = kept(&r);
        assert!((k.len() as f64 - 5_000.0).abs() < 350.0, "{} kept", k.len());
        for span in &k {
            assert_eq!(span.trace_state, "ot=th:c,vendor=x", "25% is th:c and the other members stay");
        }
        // Proportional after 50%: 12.5% overall, th = 1 - 1/8 = 0xe.
        let mut r = request(&traces, "ot=th:8");
        s.sample(&mut r);
        for span in kept(&r) {
            assert_eq!(span.trace_state, "ot=th:e");
        }
        // Equalizing after 50% to 25%: th:c, and the kept set is exactly what 25% alone keeps.
        let e = sampler(25.0, 0, Mode::Equalizing);
        let mut r = request(&traces, "ot=th:8");
        e.sample(&mut r);
        let eq: Vec<Vec<u8>> = kept(&r).iter().map(|s| s.trace_id.clone()).collect();
        let alone: Vec<Vec<u8>> = k.iter().map(|s| s.trace_id.clone()).collect();
        assert_eq!(eq, alone);
        // An explicit rv decides instead of the trace id.
        let mut r = request(&traces[..1], "ot=rv:ffffffffffffff");
        s.sample(&mut r);
        assert_eq!(kept(&r).len(), 1);
        let mut r = request(&traces[..1], "ot=rv:00000000000000");
        s.sample(&mut r);
        assert_eq!(kept(&r).len(), 0);
    }

    #[test]
    fn th_encoding() {
        assert_eq!(encode_th(0, 4), "0");
        assert_eq!(encode_th(MAX_ADJUSTED / 2, 4), "8");
        assert_eq!(encode_th(MAX_ADJUSTED / 4 * 3, 4), "c");
        // 1/3 kept: threshold 2/3 of 2^56 = 0xaaaaaaaaaaaaab (rounded), 4 digits → "aaab".
        assert_eq!(encode_th(0xaaaaaaaaaaaaab, 4), "aaab");
        assert_eq!(decode_th("c"), Some(0xc0000000000000));
        // 0.001% kept: every leading digit is f; written in full rather than overflowing.
        assert_eq!(encode_th(0xfffff5c28f5c29, 4), "fffff5c28f5c29");
        assert_eq!(decode_th("xyz"), None);
    }

    #[test]
    fn priority_and_zero_ids() {
        let s = sampler(0.0, 1, Mode::HashSeed);
        let mut r = request(&ids(3, 9), "");
        if let Request::Traces(t) = &mut r {
            t.resource_spans[0].scope_spans[0].spans[1].attributes.push(KeyValue {
                key: "sampling.priority".into(),
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(any_value::Value::IntValue(1)),
                }),
                ..Default::default()
            });
        }
        s.sample(&mut r);
        assert_eq!(kept(&r).len(), 1, "0% keeps only the prioritised span");
        let all = sampler(100.0, 1, Mode::HashSeed);
        let mut r = request(&[vec![0; 16]], "");
        all.sample(&mut r);
        assert_eq!(kept(&r).len(), 0, "fail_closed drops a trace id without randomness");
    }
}
