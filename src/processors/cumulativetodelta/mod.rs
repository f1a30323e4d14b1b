//! The `cumulativetodelta` processor: turns monotonic cumulative sums and explicit-bucket
//! histograms into deltas, stream by stream, as the collector's processor does, for backends
//! that take deltas. Each stream remembers its last cumulative point; the next point becomes the
//! difference from it, starting at its time. A point lower than the last (a restarted counter)
//! or with a later start time starts the stream again: its delta is its whole value. What a
//! stream's first point becomes is `initial_value`'s choice. Non-monotonic sums, gauges,
//! summaries, exponential histograms and delta data pass through as they are.

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, Processor, Request};
use crate::processors::attributes::matcher::MatchType;
use crate::processors::metric_stream;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, NumberDataPoint, metric::Data, number_data_point,
};
use regex::Regex;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Sum,
    Histogram,
}

/// Which metrics `include` / `exclude` name: by name (exact or regex) and type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricMatch {
    pub match_type: Option<MatchType>,
    pub metrics: Vec<String>,
    pub metric_types: Vec<MetricType>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialValue {
    /// The first point is sent when its series started after switchyard did (so nothing of it
    /// was seen before), and held back otherwise.
    #[default]
    Auto,
    /// The first point is sent as it is: its whole cumulative value is the first delta.
    Keep,
    /// The first point is only remembered.
    Drop,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CumulativeToDeltaConfig {
    pub include: Option<MetricMatch>,
    pub exclude: Option<MetricMatch>,
    /// How long a stream without a point is remembered (0: for ever, the collector's default).
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_staleness: Duration,
    pub initial_value: InitialValue,
    /// Streams remembered at most (0: no limit, as in the collector); points of new streams
    /// over the limit are dropped and counted.
    pub max_streams: usize,
}

/// `include` / `exclude`, compiled.
struct Matcher {
    names: Vec<NamePattern>,
    types: Vec<MetricType>,
}

enum NamePattern {
    Exact(String),
    Regex(Regex),
}

impl Matcher {
    fn compile(m: &MetricMatch, key: &str) -> Result<Matcher, crate::config::Invalid> {
        if !m.metrics.is_empty() && m.match_type.is_none() {
            return Err(crate::config::Invalid::new(
                format!("{key}.match_type"),
                "must be strict or regexp when metrics are named",
            ));
        }
        let names = m
            .metrics
            .iter()
            .enumerate()
            .map(|(i, name)| match m.match_type {
                Some(MatchType::Regexp) => Regex::new(name).map(NamePattern::Regex).map_err(|e| {
                    crate::config::Invalid::new(format!("{key}.metrics.{i}"), format!("invalid regex: {e}"))
                }),
                _ => Ok(NamePattern::Exact(name.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Matcher { names, types: m.metric_types.clone() })
    }

    /// Whether the metric is named (no names: any) and of a listed type (none listed: any).
    fn matches(&self, name: &str, kind: MetricType) -> bool {
        let named = self.names.is_empty()
            || self.names.iter().any(|p| match p {
                NamePattern::Exact(n) => n == name,
                NamePattern::Regex(r) => r.is_match(name),
            });
        named && (self.types.is_empty() || self.types.contains(&kind))
    }
}

/// A stream's last cumulative point.
struct Stream {
    start: u64,
    time: u64,
    last: Last,
    seen: Instant,
}

enum Last {
    Int(i64),
    Double(f64),
    Histogram { count: u64, sum: Option<f64>, bounds: Vec<f64>, buckets: Vec<u64> },
}

pub struct CumulativeToDelta {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
    max_staleness: Duration,
    initial_value: InitialValue,
    max_streams: usize,
    /// When switchyard started (unix nanoseconds), for `initial_value: auto`.
    started: u64,
    streams: HashMap<Vec<u8>, Stream>,
    next_sweep: Option<Instant>,
}

/// The data point flag of a point without a value (a Prometheus staleness marker).
const NO_RECORDED_VALUE: u32 = 1;

/// What a point becomes: sent as a delta, or held back (a first point), or dropped (out of
/// order, over the stream limit).
enum Outcome {
    Send,
    Hold,
    Drop,
}

impl CumulativeToDelta {
    fn converts(&self, name: &str, kind: MetricType) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(name, kind))
            && !self.exclude.as_ref().is_some_and(|m| m.matches(name, kind))
    }

    /// The outcome of a stream's first point (`start`, `time`).
    fn first(&self, start: u64, time: u64) -> Outcome {
        match self.initial_value {
            InitialValue::Keep => Outcome::Send,
            InitialValue::Drop => Outcome::Hold,
            InitialValue::Auto if start > 0 && start >= self.started && start != time => Outcome::Send,
            InitialValue::Auto => Outcome::Hold,
        }
    }

    fn full(&self, key: &[u8]) -> bool {
        self.max_streams > 0 && self.streams.len() >= self.max_streams && !self.streams.contains_key(key)
    }

    fn number(&mut self, key: Vec<u8>, p: &mut NumberDataPoint) -> Outcome {
        if p.flags & NO_RECORDED_VALUE != 0 {
            // A staleness marker: no delta to give.
            return Outcome::Hold;
        }
        let value = match p.value {
            Some(number_data_point::Value::AsInt(v)) => Last::Int(v),
            // NaN goes on as it is and is not remembered (it would make every later delta NaN).
            Some(number_data_point::Value::AsDouble(v)) if v.is_nan() => return Outcome::Send,
            Some(number_data_point::Value::AsDouble(v)) => Last::Double(v),
            None => return Outcome::Drop,
        };
        if self.full(&key) {
            return Outcome::Drop;
        }
        let now = Instant::now();
        let Some(s) = self.streams.get_mut(&key) else {
            let outcome = self.first(p.start_time_unix_nano, p.time_unix_nano);
            let stream = Stream { start: p.start_time_unix_nano, time: p.time_unix_nano, last: value, seen: now };
            self.streams.insert(key, stream);
            return outcome;
        };
        if p.time_unix_nano <= s.time {
            return Outcome::Drop;
        }
        let as_f64 = |l: &Last| match l {
            Last::Int(v) => *v as f64,
            Last::Double(v) => *v,
            Last::Histogram { .. } => 0.0,
        };
        let reset = p.start_time_unix_nano > s.start || as_f64(&value) < as_f64(&s.last);
        let delta = match (&value, &s.last) {
            _ if reset => p.value,
            (Last::Int(v), Last::Int(prev)) => Some(number_data_point::Value::AsInt(v.saturating_sub(*prev))),
            (v, prev) => Some(number_data_point::Value::AsDouble(as_f64(v) - as_f64(prev))),
        };
        // A reset's delta is what was counted since the restart, which came after the last point
        // (and at its new start time, when it gives one): intervals never overlap.
        let start = if reset { p.start_time_unix_nano.max(s.time) } else { s.time };
        (s.start, s.time, s.last, s.seen) = (p.start_time_unix_nano.max(s.start), p.time_unix_nano, value, now);
        p.value = delta;
        p.start_time_unix_nano = start;
        Outcome::Send
    }

    fn histogram(&mut self, key: Vec<u8>, p: &mut HistogramDataPoint) -> Outcome {
        if p.flags & NO_RECORDED_VALUE != 0 {
            return Outcome::Hold;
        }
        if self.full(&key) {
            return Outcome::Drop;
        }
        let now = Instant::now();
        let value = Last::Histogram {
            count: p.count,
            sum: p.sum,
            bounds: p.explicit_bounds.clone(),
            buckets: p.bucket_counts.clone(),
        };
        let Some(s) = self.streams.get_mut(&key) else {
            let outcome = self.first(p.start_time_unix_nano, p.time_unix_nano);
            let stream = Stream { start: p.start_time_unix_nano, time: p.time_unix_nano, last: value, seen: now };
            self.streams.insert(key, stream);
            if matches!(outcome, Outcome::Send) {
                // Minimum and maximum describe the whole cumulative window, not a delta.
                (p.min, p.max) = (None, None);
            }
            return outcome;
        };
        if p.time_unix_nano <= s.time {
            return Outcome::Drop;
        }
        let Last::Histogram { count, sum, bounds, buckets } = &s.last else { return Outcome::Drop };
        if *bounds != p.explicit_bounds || buckets.len() != p.bucket_counts.len() {
            // Other buckets: no difference to take; this point is the new baseline.
            (s.start, s.time, s.last, s.seen) = (p.start_time_unix_nano, p.time_unix_nano, value, now);
            return Outcome::Hold;
        }
        let reset = p.start_time_unix_nano > s.start
            || p.count < *count
            || buckets.iter().zip(&p.bucket_counts).any(|(prev, b)| b < prev);
        let start = if reset { p.start_time_unix_nano.max(s.time) } else { s.time };
        // A NaN sum keeps the last one (the next difference is taken from it).
        let sum_now = p.sum.filter(|v| !v.is_nan());
        let kept_sum = if p.sum.is_some() && sum_now.is_none() { *sum } else { sum_now };
        if !reset {
            p.count -= count;
            p.sum = match (sum_now, sum) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            };
            for (b, prev) in p.bucket_counts.iter_mut().zip(buckets) {
                *b -= prev;
            }
        }
        let value = match value {
            Last::Histogram { count, bounds, buckets, .. } => Last::Histogram { count, sum: kept_sum, bounds, buckets },
            other => other,
        };
        (s.start, s.time, s.last, s.seen) = (p.start_time_unix_nano.max(s.start), p.time_unix_nano, value, now);
        (p.min, p.max) = (None, None);
        p.start_time_unix_nano = start;
        Outcome::Send
    }

    /// Turns the cumulative points of `request` that it converts into deltas; returns the
    /// points dropped (not those held back).
    fn convert(&mut self, request: &mut Request) -> usize {
        let Request::Metrics(r) = request else { return 0 };
        let mut dropped = 0;
        let cumulative = AggregationTemporality::Cumulative as i32;
        let delta = AggregationTemporality::Delta as i32;
        for rm in &mut r.resource_metrics {
            let resource = metric_stream::resource_prefix(rm.resource.as_ref());
            for sm in &mut rm.scope_metrics {
                let prefix = metric_stream::scope_prefix(&resource, sm.scope.as_ref());
                for metric in &mut sm.metrics {
                    let converts = match &metric.data {
                        Some(Data::Sum(s)) => {
                            s.aggregation_temporality == cumulative
                                && s.is_monotonic
                                && self.converts(&metric.name, MetricType::Sum)
                        }
                        Some(Data::Histogram(h)) => {
                            h.aggregation_temporality == cumulative
                                && self.converts(&metric.name, MetricType::Histogram)
                        }
                        _ => false,
                    };
                    if !converts {
                        continue;
                    }
                    let names = (metric.name.clone(), metric.unit.clone());
                    let id = (names.0.as_str(), names.1.as_str());
                    match &mut metric.data {
                        Some(Data::Sum(sum)) => {
                            let points = std::mem::take(&mut sum.data_points);
                            for mut p in points {
                                let key = metric_stream::identity(&prefix, id, 1, true, &p.attributes);
                                match self.number(key, &mut p) {
                                    Outcome::Send => sum.data_points.push(p),
                                    Outcome::Hold => {}
                                    Outcome::Drop => dropped += 1,
                                }
                            }
                            sum.aggregation_temporality = delta;
                        }
                        Some(Data::Histogram(h)) => {
                            let points = std::mem::take(&mut h.data_points);
                            for mut p in points {
                                let key = metric_stream::identity(&prefix, id, 2, false, &p.attributes);
                                match self.histogram(key, &mut p) {
                                    Outcome::Send => h.data_points.push(p),
                                    Outcome::Hold => {}
                                    Outcome::Drop => dropped += 1,
                                }
                            }
                            h.aggregation_temporality = delta;
                        }
                        _ => {}
                    }
                }
                sm.metrics.retain(|m| crate::pipeline::metric_points(m.data.as_ref()) > 0 || m.data.is_none());
            }
            rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
        }
        r.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
        dropped
    }
}

impl Processor for CumulativeToDelta {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        if batch.signal() != crate::signal::Signal::Metrics {
            out.push(batch);
            return;
        }
        let telemetry = self.telemetry.clone();
        let name = self.name.clone();
        crate::processors::drop_items(&telemetry, &name, batch, out, |request| self.convert(request));
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.next_sweep
    }

    fn on_deadline(&mut self, now: Instant, _out: &mut Vec<Batch>) {
        let stale = self.max_staleness;
        self.streams.retain(|_, s| now.duration_since(s.seen) < stale);
        self.next_sweep = Some(now + stale.min(Duration::from_secs(60)));
    }
}

/// The `cumulativetodelta` processor's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::processor::<CumulativeToDeltaConfig>(
        "cumulativetodelta",
        &[crate::signal::Signal::Metrics],
        "turns monotonic cumulative sums and histograms into deltas, stream by stream",
    );

impl crate::pipeline::component::ProcessorSettings for CumulativeToDeltaConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        for (m, key) in [(&self.include, "include"), (&self.exclude, "exclude")] {
            if let Some(m) = m {
                Matcher::compile(m, key)?;
            }
        }
        Ok(())
    }

    fn build(&self, ctx: &crate::pipeline::component::ProcessorContext) -> Result<Box<dyn Processor>, String> {
        let compile = |m: &Option<MetricMatch>, key: &str| {
            m.as_ref().map(|m| Matcher::compile(m, key)).transpose().map_err(|e| e.to_string())
        };
        Ok(Box::new(CumulativeToDelta {
            name: ctx.name.clone(),
            telemetry: ctx.telemetry.clone(),
            include: compile(&self.include, "include")?,
            exclude: compile(&self.exclude, "exclude")?,
            max_staleness: self.max_staleness,
            initial_value: self.initial_value,
            max_streams: self.max_streams,
            started: crate::timefmt::now_unix_nanos(),
            streams: HashMap::new(),
            next_sweep: (!self.max_staleness.is_zero())
                .then(|| Instant::now() + self.max_staleness.min(Duration::from_secs(60))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use crate::pipeline::component::{ProcessorContext, ProcessorSettings};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum};

    fn processor(yaml: &str) -> Box<dyn Processor> {
        let cfg: CumulativeToDeltaConfig = crate::config::parse_yaml("c.yaml", yaml).unwrap();
        cfg.validate().unwrap();
        let ctx = ProcessorContext { name: "c".into(), telemetry: Default::default(), stop: Default::default() };
        cfg.build(&ctx).unwrap()
    }

    fn request(metrics: Vec<Metric>) -> Batch {
        Batch::from_request(Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            }],
        }))
    }

    fn sum(name: &str, monotonic: bool, points: &[(&str, u64, u64, i64)]) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: points
                    .iter()
                    .map(|(series, start, time, v)| NumberDataPoint {
                        attributes: vec![kv("series", string(series))],
                        start_time_unix_nano: *start,
                        time_unix_nano: *time,
                        value: Some(number_data_point::Value::AsInt(*v)),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        }
    }

    /// (metric, series, start, time, value, delta?) of every int sum point.
    fn points(batches: &[Batch]) -> Vec<(String, String, u64, u64, i64, bool)> {
        let mut out = Vec::new();
        for b in batches {
            let Some(Request::Metrics(r)) = b.decoded() else { continue };
            for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
                let Some(Data::Sum(s)) = &m.data else { continue };
                let delta = s.aggregation_temporality == AggregationTemporality::Delta as i32;
                for p in &s.data_points {
                    let Some(number_data_point::Value::AsInt(v)) = p.value else { continue };
                    let series = crate::exporters::values::text(p.attributes[0].value.as_ref());
                    out.push((m.name.clone(), series, p.start_time_unix_nano, p.time_unix_nano, v, delta));
                }
            }
        }
        out
    }

    fn run(p: &mut dyn Processor, batches: Vec<Vec<Metric>>) -> Vec<Batch> {
        let mut out = Vec::new();
        for b in batches {
            p.process(request(b), &mut out);
        }
        out
    }

    #[test]
    fn cumulative_sums_become_differences_per_stream_and_restart_on_a_reset() {
        let mut p = processor("initial_value: keep\n");
        let out = run(
            &mut *p,
            vec![
                vec![sum("calls", true, &[("a", 10, 20, 5), ("b", 10, 20, 1)])],
                vec![sum("calls", true, &[("a", 10, 30, 8), ("b", 10, 30, 1)])],
                // Out of order: dropped. A lower value: the counter restarted.
                vec![sum("calls", true, &[("a", 10, 25, 9), ("b", 10, 40, 0)])],
                // A later start time: restarted too.
                vec![sum("calls", true, &[("a", 35, 45, 2)])],
            ],
        );
        let c = |s: &str, start, time, v| ("calls".to_string(), s.to_string(), start, time, v, true);
        // A reset's delta starts at the last point (or the new start time): no overlap.
        assert_eq!(
            points(&out),
            [
                c("a", 10, 20, 5),
                c("b", 10, 20, 1),
                c("a", 20, 30, 3),
                c("b", 20, 30, 0),
                c("b", 30, 40, 0),
                c("a", 35, 45, 2),
            ]
        );
    }

    #[test]
    fn initial_value_decides_what_a_first_point_becomes() {
        let now = crate::timefmt::now_unix_nanos();
        let first = |yaml: &str, start: u64| {
            let mut p = processor(yaml);
            let out = run(&mut *p, vec![vec![sum("calls", true, &[("a", start, start + 10, 7)])]]);
            points(&out).len()
        };
        // auto: a series that started before switchyard did was partly seen by no one: held.
        assert_eq!(first("", 1_000), 0);
        assert_eq!(first("", now + 1_000_000_000), 1, "started after switchyard: all of it is new");
        assert_eq!(first("", 0), 0, "no start time");
        assert_eq!(first("initial_value: keep\n", 1_000), 1);
        assert_eq!(first("initial_value: drop\n", now + 1_000_000_000), 0);
    }

    #[test]
    fn include_exclude_and_what_passes_untouched() {
        let mut p = processor(
            "initial_value: keep\ninclude:\n  match_type: regexp\n  metrics: ['^http_']\nexclude:\n  match_type: strict\n  metrics: [http_skip]\n",
        );
        let gauge = Metric {
            name: "http_gauge".into(),
            data: Some(Data::Gauge(Gauge { data_points: vec![NumberDataPoint::default()] })),
            ..Default::default()
        };
        let out = run(
            &mut *p,
            vec![vec![
                sum("http_calls", true, &[("a", 1, 2, 4)]),
                sum("http_skip", true, &[("a", 1, 2, 4)]),
                sum("other", true, &[("a", 1, 2, 4)]),
                sum("http_updown", false, &[("a", 1, 2, 4)]),
                gauge,
            ]],
        );
        let kinds: Vec<(String, bool)> = points(&out).into_iter().map(|p| (p.0, p.5)).collect();
        assert_eq!(
            kinds,
            [
                ("http_calls".into(), true),
                ("http_skip".into(), false),
                ("other".into(), false),
                ("http_updown".into(), false),
            ]
        );
        let Some(Request::Metrics(r)) = out[0].decoded() else { panic!() };
        assert_eq!(r.resource_metrics[0].scope_metrics[0].metrics.len(), 5, "the gauge passes");
    }

    #[test]
    fn histograms_become_bucket_differences() {
        let mut p = processor("initial_value: keep\n");
        let h = |time: u64, count: u64, buckets: Vec<u64>| Metric {
            name: "latency".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    start_time_unix_nano: 1,
                    time_unix_nano: time,
                    count,
                    sum: Some(count as f64 * 2.0),
                    bucket_counts: buckets,
                    explicit_bounds: vec![1.0, 5.0],
                    min: Some(0.5),
                    max: Some(9.0),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let out = run(&mut *p, vec![vec![h(10, 3, vec![1, 1, 1])], vec![h(20, 7, vec![2, 3, 2])]]);
        let Some(Request::Metrics(r)) = out[1].decoded() else { panic!() };
        let Some(Data::Histogram(d)) = &r.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!() };
        let pt = &d.data_points[0];
        assert_eq!(d.aggregation_temporality, AggregationTemporality::Delta as i32);
        assert_eq!(
            (pt.start_time_unix_nano, pt.count, pt.sum, pt.bucket_counts.clone()),
            (10, 4, Some(8.0), vec![1, 2, 1])
        );
        assert_eq!((pt.min, pt.max), (None, None), "min and max are of the whole window");
    }

    #[test]
    fn streams_are_bounded_and_forgotten_when_stale() {
        let mut p = processor("initial_value: keep\nmax_streams: 1\nmax_staleness: 1ms\n");
        let out = run(&mut *p, vec![vec![sum("calls", true, &[("a", 1, 2, 4), ("b", 1, 2, 4)])]]);
        assert_eq!(points(&out).len(), 1, "the second stream is over the limit");
        std::thread::sleep(Duration::from_millis(5));
        let mut none = Vec::new();
        p.on_deadline(Instant::now(), &mut none);
        let out = run(&mut *p, vec![vec![sum("calls", true, &[("b", 1, 3, 6)])]]);
        assert_eq!(points(&out).len(), 1, "a forgotten stream makes room");
    }

    #[test]
    fn settings_are_checked() {
        let err = |yaml: &str| {
            let cfg: CumulativeToDeltaConfig = crate::config::parse_yaml("c.yaml", yaml).unwrap();
            cfg.validate().unwrap_err().to_string()
        };
        assert!(err("include:\n  metrics: [a]\n").contains("include.match_type"));
        assert!(err("exclude:\n  match_type: regexp\n  metrics: ['(']\n").contains("exclude.metrics.0"));
        assert!(crate::config::parse_yaml::<CumulativeToDeltaConfig>("c.yaml", "initial_value: maybe\n").is_err());
    }

    #[test]
    fn staleness_markers_and_nan_do_not_spoil_the_stream() {
        let mut p = processor("initial_value: keep\n");
        let double = |time: u64, v: f64, flags: u32| Metric {
            name: "bytes".into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: 1,
                    time_unix_nano: time,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    flags,
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let out = run(
            &mut *p,
            vec![
                vec![double(10, 10.0, 0)],
                vec![double(20, f64::NAN, 1)],
                vec![double(30, f64::NAN, 0)],
                vec![double(40, 15.0, 0)],
            ],
        );
        let values: Vec<f64> = out
            .iter()
            .filter_map(|b| match b.decoded() {
                Some(Request::Metrics(r)) => Some(r.clone()),
                _ => None,
            })
            .flat_map(|r| r.resource_metrics)
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
            .filter_map(|m| match m.data {
                Some(Data::Sum(s)) => Some(s.data_points),
                _ => None,
            })
            .flatten()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                _ => -1.0,
            })
            .collect();
        assert_eq!(values.len(), 3, "the marker is held back: {values:?}");
        assert_eq!(values[0], 10.0);
        assert!(values[1].is_nan(), "NaN goes on as it is");
        assert_eq!(values[2], 5.0, "15 after 10: the NaN was not remembered");
    }
}
