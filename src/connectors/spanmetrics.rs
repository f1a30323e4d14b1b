//! The `spanmetrics` connector: request, error and duration (RED) metrics from every span, as
//! the collector's spanmetrics connector makes them: `{namespace}.calls` (a monotonic sum) and
//! `{namespace}.duration` (an explicit-bucket histogram), per resource and per set of
//! dimensions (service.name, span.name, span.kind, status.code, then the configured ones),
//! handed on every `metrics_flush_interval`. The number of series is bounded: beyond the
//! limit, spans are counted in one overflow series (`otel.metric.overflow: true`).

use crate::config::{Invalid, deserialize_duration};
use crate::connectors::exponential_histogram::ExponentialHistogram;
use crate::pipeline::component::{ConnectorContext, ConnectorSettings};
use crate::pipeline::connector::Connector;
use crate::pipeline::{Batch, Request};
use crate::signal::Signal;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1 as m;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The instrumentation scope of the metrics it makes.
pub const SCOPE_NAME: &str = "switchyard/connector/spanmetrics";
/// Series kept at most when `aggregation_cardinality_limit` is not set (the collector keeps
/// any number; a flood of distinct values must not take all memory).
pub const DEFAULT_SERIES_LIMIT: usize = 100_000;

/// One dimension: the span's (or, failing that, its resource's) attribute, or `default`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    pub name: String,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Unit {
    #[default]
    #[serde(rename = "ms")]
    Milliseconds,
    #[serde(rename = "s")]
    Seconds,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Explicit {
    /// Bucket bounds, as durations (`2ms`, `1s`).
    #[serde(deserialize_with = "durations")]
    pub buckets: Vec<Duration>,
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let texts: Vec<String> = Vec::deserialize(d)?;
    texts.iter().map(|t| crate::config::parse_duration(t).map_err(serde::de::Error::custom)).collect()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistogramConfig {
    pub disable: bool,
    pub unit: Unit,
    pub explicit: Option<Explicit>,
    pub exponential: Option<Exponential>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exponential {
    /// Buckets at most (positive values); the scale falls as needed to fit.
    pub max_size: usize,
}

impl Default for Exponential {
    fn default() -> Self {
        Exponential { max_size: 160 }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExemplarsConfig {
    pub enabled: bool,
    /// Exemplars kept per duration data point between flushes (the latest ones).
    pub max_per_data_point: Option<usize>,
}

/// `{namespace}.events`: span events counted per series and event dimensions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    pub enabled: bool,
    /// Event attributes (with an optional default) that tell event counts apart.
    pub dimensions: Vec<Dimension>,
}

/// Exemplars kept per data point when `max_per_data_point` is not set (the collector keeps
/// every span's until the flush).
pub const DEFAULT_EXEMPLARS: usize = 10;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub enum Temporality {
    #[default]
    #[serde(rename = "AGGREGATION_TEMPORALITY_CUMULATIVE")]
    Cumulative,
    #[serde(rename = "AGGREGATION_TEMPORALITY_DELTA")]
    Delta,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanMetricsConfig {
    pub dimensions: Vec<Dimension>,
    pub exclude_dimensions: Vec<String>,
    pub namespace: String,
    pub histogram: HistogramConfig,
    pub aggregation_temporality: Temporality,
    #[serde(deserialize_with = "deserialize_duration")]
    pub metrics_flush_interval: Duration,
    /// Series not updated for this long are forgotten (0: kept for ever).
    #[serde(deserialize_with = "deserialize_duration")]
    pub metrics_expiration: Duration,
    /// The resource attributes that tell resources apart (none: all of them).
    pub resource_metrics_key_attributes: Vec<String>,
    /// Series kept at most (0: `DEFAULT_SERIES_LIMIT`).
    pub aggregation_cardinality_limit: usize,
    /// Accepted for compatibility (the collector's key caches); the series limit is
    /// `aggregation_cardinality_limit`.
    pub dimensions_cache_size: usize,
    pub resource_metrics_cache_size: usize,
    pub exemplars: ExemplarsConfig,
    pub events: EventsConfig,
}

impl Default for SpanMetricsConfig {
    fn default() -> Self {
        SpanMetricsConfig {
            dimensions: Vec::new(),
            exclude_dimensions: Vec::new(),
            namespace: "traces.span.metrics".into(),
            histogram: HistogramConfig::default(),
            aggregation_temporality: Temporality::Cumulative,
            metrics_flush_interval: Duration::from_secs(60),
            metrics_expiration: Duration::ZERO,
            resource_metrics_key_attributes: Vec::new(),
            aggregation_cardinality_limit: 0,
            dimensions_cache_size: 1000,
            resource_metrics_cache_size: 1000,
            exemplars: ExemplarsConfig::default(),
            events: EventsConfig::default(),
        }
    }
}

/// The collector's default bounds, in milliseconds.
const DEFAULT_BUCKETS_MS: [f64; 16] =
    [2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0, 10_000.0, 15_000.0];

const BUILT_IN: [&str; 4] = ["service.name", "span.name", "span.kind", "status.code"];

impl ConnectorSettings for SpanMetricsConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        for (i, d) in self.dimensions.iter().enumerate() {
            if BUILT_IN.contains(&d.name.as_str()) || self.dimensions[..i].iter().any(|e| e.name == d.name) {
                return Err(Invalid::new(
                    format!("dimensions.{i}.name"),
                    format!("duplicate dimension name {}", d.name),
                ));
            }
        }
        if self.metrics_flush_interval.is_zero() {
            return Err(Invalid::new("metrics_flush_interval", "must be greater than 0, such as 60s"));
        }
        if self.histogram.exponential.is_some() && self.histogram.explicit.is_some() {
            return Err(Invalid::new("histogram", "use either explicit or exponential, not both"));
        }
        if self.histogram.exponential.as_ref().is_some_and(|e| e.max_size < 3) {
            return Err(Invalid::new("histogram.exponential.max_size", "must be at least 3, such as 160"));
        }
        if self.exemplars.max_per_data_point == Some(0) {
            return Err(Invalid::new("exemplars.max_per_data_point", "must be greater than 0"));
        }
        if self.events.enabled && self.events.dimensions.is_empty() {
            return Err(Invalid::new("events.dimensions", "at least one dimension is needed when events are enabled"));
        }
        if let Some(e) = &self.histogram.explicit
            && e.buckets.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(Invalid::new("histogram.explicit.buckets", "bucket bounds must increase"));
        }
        Ok(())
    }

    fn build(&self, _ctx: &ConnectorContext) -> Result<Arc<dyn Connector>, String> {
        let scale = match self.histogram.unit {
            Unit::Milliseconds => 1.0,
            Unit::Seconds => 0.001,
        };
        let bounds: Vec<f64> = match &self.histogram.explicit {
            Some(e) => e.buckets.iter().map(|b| b.as_secs_f64() * 1000.0 * scale).collect(),
            None => DEFAULT_BUCKETS_MS.iter().map(|b| b * scale).collect(),
        };
        let limit = if self.aggregation_cardinality_limit == 0 {
            DEFAULT_SERIES_LIMIT
        } else {
            self.aggregation_cardinality_limit
        };
        Ok(Arc::new(SpanMetrics {
            cfg: self.clone(),
            bounds,
            scale,
            limit,
            state: Mutex::new(State { last_flush: crate::timefmt::now_unix_nanos(), ..State::default() }),
        }))
    }
}

/// What one series has gathered.
struct Series {
    calls: u64,
    count: u64,
    sum: f64,
    /// Explicit buckets (empty with an exponential histogram).
    buckets: Vec<u64>,
    exponential: Option<ExponentialHistogram>,
    /// The latest spans' exemplars since the last flush (a ring of `exemplars_max`).
    exemplars: Vec<m::Exemplar>,
    next_exemplar: usize,
    /// Span events by their dimension values (`None` for the overflow), with `events` on.
    events: HashMap<Option<Vec<Option<String>>>, u64>,
    start: u64,
    seen: Instant,
}

/// What tells one series from another: the built-in dimensions (those excluded stay empty)
/// and the configured ones in order (missing ones without default: `None`), or the overflow.
#[derive(Clone, PartialEq, Eq, Hash)]
enum SeriesKey {
    Dims { service: Option<Arc<str>>, name: String, kind: i32, status: i32, extra: Vec<Option<String>> },
    Overflow,
}

/// One resource's series.
struct PerResource {
    resource: Option<Resource>,
    /// Its `service.name`, shared by the keys of its series.
    service: Option<Arc<str>>,
    series: HashMap<SeriesKey, Series>,
}

struct SpanMetrics {
    cfg: SpanMetricsConfig,
    /// Bucket bounds in the histogram's unit.
    bounds: Vec<f64>,
    /// Milliseconds to the histogram's unit.
    scale: f64,
    limit: usize,
    state: Mutex<State>,
}

/// Everything gathered: the series of each resource (at most `resource_metrics_cache_size`
/// resources; the spans of others go to one overflow resource), how many series there are in
/// all, and when the last flush was (the start of delta intervals).
#[derive(Default)]
struct State {
    resources: HashMap<Vec<u8>, PerResource>,
    total: usize,
    last_flush: u64,
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

fn string_kv(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }),
        ..Default::default()
    }
}

impl SpanMetrics {
    fn excluded(&self, name: &str) -> bool {
        self.cfg.exclude_dimensions.iter().any(|e| e == name)
    }

    /// The series of `span` (of a resource with `service` and attributes `resource`).
    fn key(&self, span: &Span, service: &Option<Arc<str>>, resource: &[KeyValue]) -> SeriesKey {
        let extra = self
            .cfg
            .dimensions
            .iter()
            .map(|d| {
                let found = crate::attributes::get(&span.attributes, &d.name)
                    .or_else(|| crate::attributes::get(resource, &d.name));
                match found {
                    Some(v) => Some(crate::exporters::values::text(Some(v))),
                    None => d.default.clone(),
                }
            })
            .collect();
        SeriesKey::Dims {
            service: if self.excluded("service.name") { None } else { service.clone() },
            name: if self.excluded("span.name") { String::new() } else { span.name.clone() },
            kind: if self.excluded("span.kind") { -1 } else { span.kind },
            status: if self.excluded("status.code") { -1 } else { span.status.as_ref().map_or(0, |s| s.code) },
            extra,
        }
    }

    /// The attributes of a series' points.
    fn attributes(&self, key: &SeriesKey) -> Vec<KeyValue> {
        let SeriesKey::Dims { service, name, kind, status, extra } = key else {
            return vec![crate::attributes::overflow()];
        };
        let mut out = Vec::with_capacity(4 + extra.len());
        let status_text = match status {
            1 => "STATUS_CODE_OK",
            2 => "STATUS_CODE_ERROR",
            _ => "STATUS_CODE_UNSET",
        };
        let built_in = [
            ("service.name", service.as_deref().unwrap_or("").to_string()),
            ("span.name", name.clone()),
            ("span.kind", kind_name(*kind).to_string()),
            ("status.code", status_text.to_string()),
        ];
        for (k, v) in built_in {
            if !self.excluded(k) {
                out.push(string_kv(k, v));
            }
        }
        for (d, v) in self.cfg.dimensions.iter().zip(extra) {
            if let Some(v) = v {
                out.push(string_kv(&d.name, v.clone()));
            }
        }
        out
    }

    /// The key telling resources apart.
    fn resource_key(&self, resource: Option<&Resource>) -> Vec<u8> {
        use prost::Message;
        let attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
        let mut chosen: Vec<&KeyValue> = if self.cfg.resource_metrics_key_attributes.is_empty() {
            attrs.iter().collect()
        } else {
            attrs.iter().filter(|a| self.cfg.resource_metrics_key_attributes.contains(&a.key)).collect()
        };
        chosen.sort_by(|a, b| a.key.cmp(&b.key));
        chosen.iter().flat_map(|a| a.encode_length_delimited_to_vec()).collect()
    }

    /// Adds `span` to its series in `per`; `total` counts the series of every resource.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        per: &mut PerResource,
        total: &mut usize,
        resource: &[KeyValue],
        span: &Span,
        now: Instant,
        wall: u64,
        delta_start: u64,
    ) {
        let mut key = self.key(span, &per.service, resource);
        if !per.series.contains_key(&key) {
            if *total >= self.limit {
                key = SeriesKey::Overflow;
            }
            if !per.series.contains_key(&key) {
                *total += 1;
            }
        }
        let millis = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e6;
        let value = millis * self.scale;
        let buckets = if self.cfg.histogram.exponential.is_some() { 0 } else { self.bounds.len() + 1 };
        // A cumulative series starts when it is first seen (one that expired and comes back
        // starts again, visibly); a delta one at the previous flush.
        let start = if self.cfg.aggregation_temporality == Temporality::Delta { delta_start } else { wall };
        let series = per.series.entry(key).or_insert_with(|| Series {
            calls: 0,
            count: 0,
            sum: 0.0,
            buckets: vec![0; buckets],
            exponential: self.cfg.histogram.exponential.as_ref().map(|e| ExponentialHistogram::new(e.max_size)),
            exemplars: Vec::new(),
            next_exemplar: 0,
            events: HashMap::new(),
            start,
            seen: now,
        });
        series.calls += 1;
        series.count += 1;
        series.sum += value;
        match &mut series.exponential {
            Some(h) => h.record(value),
            None => {
                let at = self.bounds.partition_point(|b| *b < value);
                series.buckets[at] += 1;
            }
        }
        // Only well-formed ids: a forged megabyte-long id must not be kept per series.
        if self.cfg.exemplars.enabled && span.trace_id.len() == 16 && span.span_id.len() == 8 {
            let exemplar = m::Exemplar {
                time_unix_nano: span.end_time_unix_nano,
                span_id: span.span_id.clone(),
                trace_id: span.trace_id.clone(),
                value: Some(m::exemplar::Value::AsDouble(value)),
                ..Default::default()
            };
            let max = self.cfg.exemplars.max_per_data_point.unwrap_or(DEFAULT_EXEMPLARS);
            if series.exemplars.len() < max {
                series.exemplars.push(exemplar);
            } else {
                series.exemplars[series.next_exemplar % max] = exemplar;
            }
            series.next_exemplar = (series.next_exemplar + 1) % max;
        }
        if self.cfg.events.enabled {
            for event in &span.events {
                let dims: Vec<Option<String>> = self
                    .cfg
                    .events
                    .dimensions
                    .iter()
                    .map(|d| match crate::attributes::get(&event.attributes, &d.name) {
                        Some(v) => Some(crate::exporters::values::text(Some(v))),
                        None => d.default.clone(),
                    })
                    .collect();
                let mut key = Some(dims);
                if !series.events.contains_key(&key) {
                    // Every distinct set of event values is a series of its own, within the limit.
                    if *total >= self.limit {
                        key = None;
                    }
                    if !series.events.contains_key(&key) {
                        *total += 1;
                    }
                }
                *series.events.entry(key).or_insert(0) += 1;
            }
        }
        series.seen = now;
    }

    /// What has been gathered, as metrics; with delta temporality the series start again.
    fn collect(&self) -> Option<Request> {
        let now_nanos = crate::timefmt::now_unix_nanos();
        let now = Instant::now();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let expiration = self.cfg.metrics_expiration;
        let delta = self.cfg.aggregation_temporality == Temporality::Delta;
        let temporality =
            if delta { m::AggregationTemporality::Delta } else { m::AggregationTemporality::Cumulative } as i32;
        let unit = match self.cfg.histogram.unit {
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
        };
        let mut resources = Vec::new();
        for per in state.resources.values_mut() {
            if !expiration.is_zero() {
                per.series.retain(|_, s| now.duration_since(s.seen) < expiration);
            }
            if per.series.is_empty() {
                continue;
            }
            let mut calls = Vec::with_capacity(per.series.len());
            let mut durations = Vec::with_capacity(per.series.len());
            let mut exponential = Vec::new();
            let mut events = Vec::new();
            for (key, s) in per.series.iter_mut() {
                let exemplars = std::mem::take(&mut s.exemplars);
                s.next_exemplar = 0;
                let attributes = self.attributes(key);
                for (dims, n) in &s.events {
                    let mut a = attributes.clone();
                    match dims {
                        Some(dims) => {
                            for (d, v) in self.cfg.events.dimensions.iter().zip(dims) {
                                if let Some(v) = v {
                                    a.push(string_kv(&d.name, v.clone()));
                                }
                            }
                        }
                        None => a.push(crate::attributes::overflow()),
                    }
                    events.push(m::NumberDataPoint {
                        attributes: a,
                        start_time_unix_nano: s.start,
                        time_unix_nano: now_nanos,
                        value: Some(m::number_data_point::Value::AsInt(i64::try_from(*n).unwrap_or(i64::MAX))),
                        ..Default::default()
                    });
                }
                calls.push(m::NumberDataPoint {
                    attributes: attributes.clone(),
                    start_time_unix_nano: s.start,
                    time_unix_nano: now_nanos,
                    value: Some(m::number_data_point::Value::AsInt(i64::try_from(s.calls).unwrap_or(i64::MAX))),
                    ..Default::default()
                });
                if self.cfg.histogram.disable {
                    continue;
                }
                if let Some(h) = &s.exponential {
                    exponential.push(m::ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: s.start,
                        time_unix_nano: now_nanos,
                        exemplars,
                        ..h.to_point()
                    });
                } else {
                    durations.push(m::HistogramDataPoint {
                        attributes,
                        start_time_unix_nano: s.start,
                        time_unix_nano: now_nanos,
                        count: s.count,
                        sum: Some(s.sum),
                        bucket_counts: s.buckets.clone(),
                        explicit_bounds: self.bounds.clone(),
                        exemplars,
                        ..Default::default()
                    });
                }
            }
            let ns = &self.cfg.namespace;
            let name = |n: &str| if ns.is_empty() { n.to_string() } else { format!("{ns}.{n}") };
            let mut metrics = vec![m::Metric {
                name: name("calls"),
                data: Some(m::metric::Data::Sum(m::Sum {
                    data_points: calls,
                    aggregation_temporality: temporality,
                    is_monotonic: true,
                })),
                ..Default::default()
            }];
            if !events.is_empty() {
                metrics.push(m::Metric {
                    name: name("events"),
                    data: Some(m::metric::Data::Sum(m::Sum {
                        data_points: events,
                        aggregation_temporality: temporality,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                });
            }
            if !exponential.is_empty() {
                metrics.push(m::Metric {
                    name: name("duration"),
                    unit: unit.to_string(),
                    data: Some(m::metric::Data::ExponentialHistogram(m::ExponentialHistogram {
                        data_points: exponential,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            }
            if !durations.is_empty() {
                metrics.push(m::Metric {
                    name: name("duration"),
                    unit: unit.to_string(),
                    data: Some(m::metric::Data::Histogram(m::Histogram {
                        data_points: durations,
                        aggregation_temporality: temporality,
                    })),
                    ..Default::default()
                });
            }
            resources.push(m::ResourceMetrics {
                resource: per.resource.clone(),
                scope_metrics: vec![m::ScopeMetrics {
                    scope: Some(InstrumentationScope { name: SCOPE_NAME.to_string(), ..Default::default() }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            });
            if delta {
                // The next interval starts now, from nothing.
                per.series.clear();
            }
        }
        state.resources.retain(|_, per| !per.series.is_empty());
        state.total = state.resources.values().flat_map(|r| r.series.values()).map(|s| 1 + s.events.len()).sum();
        state.last_flush = now_nanos;
        (!resources.is_empty()).then_some(Request::Metrics(ExportMetricsServiceRequest { resource_metrics: resources }))
    }
}

impl Connector for SpanMetrics {
    fn derives(&self) -> bool {
        true
    }

    fn route(&self, batch: Batch, _downstream: &[String], _out: &mut Vec<(usize, Batch)>) {
        let Ok(Request::Traces(r)) = batch.request() else { return };
        let now = Instant::now();
        let wall = crate::timefmt::now_unix_nanos();
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let delta_start = state.last_flush;
        let cap = if self.cfg.resource_metrics_cache_size == 0 { 1000 } else { self.cfg.resource_metrics_cache_size };
        for rs in &r.resource_spans {
            if rs.scope_spans.iter().all(|ss| ss.spans.is_empty()) {
                continue;
            }
            let mut key = self.resource_key(rs.resource.as_ref());
            let mut resource = rs.resource.as_ref();
            if !state.resources.contains_key(&key) && state.resources.len() >= cap {
                // Too many resources: this one's spans are counted under an overflow resource.
                key = b"\0overflow".to_vec();
                resource = None;
            }
            let per = state.resources.entry(key).or_insert_with(|| PerResource {
                resource: resource.cloned().or_else(|| {
                    Some(Resource { attributes: vec![crate::attributes::overflow()], ..Default::default() })
                        .filter(|_| rs.resource.is_some())
                }),
                service: resource
                    .and_then(|r| crate::attributes::get(&r.attributes, "service.name"))
                    .map(|v| Arc::from(crate::exporters::values::text(Some(v)))),
                series: HashMap::new(),
            });
            let attrs = resource.map(|r| r.attributes.as_slice()).unwrap_or_default();
            for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                self.record(per, &mut state.total, attrs, span, now, wall, delta_start);
            }
        }
    }

    fn flush_interval(&self) -> Option<Duration> {
        Some(self.cfg.metrics_flush_interval)
    }

    fn flush(&self, out: &mut Vec<Batch>, _last: bool) {
        if let Some(request) = self.collect() {
            out.push(Batch::from_request(request));
        }
    }
}

/// The `spanmetrics` connector's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::connector::<SpanMetricsConfig>(
    "spanmetrics",
    &[Signal::Traces, Signal::Metrics],
    &[(Signal::Traces, Signal::Metrics)],
    "request, error and duration metrics (calls and a duration histogram) from every span, by dimension",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn build(yaml: &str) -> Arc<dyn Connector> {
        let cfg: SpanMetricsConfig = crate::config::parse_yaml("s.yaml", yaml).unwrap();
        cfg.validate().unwrap();
        cfg.build(&ConnectorContext { name: "spanmetrics".into(), telemetry: Default::default() }).unwrap()
    }

    /// Spans of service `checkout`: (name, milliseconds, failed, route).
    fn spans(list: &[(&str, u64, bool, Option<&str>)]) -> Batch {
        let spans = list
            .iter()
            .map(|(name, ms, failed, route)| Span {
                name: name.to_string(),
                kind: 2,
                start_time_unix_nano: 1_000_000_000,
                end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
                status: failed.then(|| Status { code: 2, ..Default::default() }),
                attributes: route.map(|r| vec![kv("http.route", string(r))]).unwrap_or_default(),
                ..Default::default()
            })
            .collect();
        Batch::from_request(Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string("checkout"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }))
    }

    /// Per metric name: (sorted "k=v" dimensions, calls or histogram count, histogram buckets).
    fn flushed(c: &dyn Connector) -> Vec<(String, String, u64, Vec<u64>)> {
        let mut out = Vec::new();
        c.flush(&mut out, false);
        let mut rows = Vec::new();
        for b in out {
            let Some(Request::Metrics(r)) = b.decoded() else { panic!("metrics") };
            for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
                let dims = |attrs: &[KeyValue]| {
                    let mut d: Vec<String> = attrs
                        .iter()
                        .map(|a| format!("{}={}", a.key, crate::exporters::values::text(a.value.as_ref())))
                        .collect();
                    d.sort();
                    d.join(",")
                };
                match &m.data {
                    Some(m::metric::Data::Sum(s)) => {
                        for p in &s.data_points {
                            let Some(m::number_data_point::Value::AsInt(n)) = p.value else { panic!() };
                            rows.push((m.name.clone(), dims(&p.attributes), n as u64, Vec::new()));
                        }
                    }
                    Some(m::metric::Data::Histogram(h)) => {
                        for p in &h.data_points {
                            rows.push((m.name.clone(), dims(&p.attributes), p.count, p.bucket_counts.clone()));
                        }
                    }
                    _ => {}
                }
            }
        }
        rows.sort();
        rows
    }

    #[test]
    fn calls_and_durations_per_dimension_set_under_the_collector_names() {
        let c = build(
            "dimensions: [{name: http.route, default: none}]\nhistogram: {explicit: {buckets: [10ms, 100ms, 1s]}}\n",
        );
        let mut out = Vec::new();
        c.route(
            spans(&[("GET", 5, false, Some("/a")), ("GET", 50, false, Some("/a")), ("GET", 500, true, None)]),
            &[],
            &mut out,
        );
        assert!(out.is_empty(), "nothing goes on until the flush");
        let rows = flushed(&*c);
        let ok = "http.route=/a,service.name=checkout,span.kind=SPAN_KIND_SERVER,span.name=GET,status.code=STATUS_CODE_UNSET";
        let failed = "http.route=none,service.name=checkout,span.kind=SPAN_KIND_SERVER,span.name=GET,status.code=STATUS_CODE_ERROR";
        assert_eq!(
            rows,
            [
                ("traces.span.metrics.calls".into(), ok.into(), 2, vec![]),
                ("traces.span.metrics.calls".into(), failed.into(), 1, vec![]),
                ("traces.span.metrics.duration".into(), ok.into(), 2, vec![1, 1, 0, 0]),
                ("traces.span.metrics.duration".into(), failed.into(), 1, vec![0, 0, 1, 0]),
            ]
        );
        // Cumulative (the default): the next flush still has them, added to.
        c.route(spans(&[("GET", 5, false, Some("/a"))]), &[], &mut out);
        assert_eq!(flushed(&*c)[0].2, 3);
    }

    #[test]
    fn delta_starts_again_after_each_flush_and_excluded_dimensions_are_left_out() {
        let c = build(
            "aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\nexclude_dimensions: [status.code, span.kind]\nnamespace: ''\n",
        );
        c.route(spans(&[("GET", 5, false, None), ("GET", 7, true, None)]), &[], &mut Vec::new());
        let rows = flushed(&*c);
        assert_eq!(rows[0], ("calls".into(), "service.name=checkout,span.name=GET".into(), 2, vec![]));
        assert!(flushed(&*c).is_empty(), "delta: nothing new, nothing sent");
    }

    #[test]
    fn a_flood_of_distinct_values_is_capped_into_one_overflow_series() {
        let c =
            build("dimensions: [{name: http.route}]\naggregation_cardinality_limit: 10\nhistogram: {disable: true}\n");
        let routes: Vec<String> = (0..1000).map(|i| format!("/item/{i}")).collect();
        let list: Vec<(&str, u64, bool, Option<&str>)> =
            routes.iter().map(|r| ("GET", 1, false, Some(r.as_str()))).collect();
        c.route(spans(&list), &[], &mut Vec::new());
        let rows = flushed(&*c);
        assert_eq!(rows.len(), 11, "ten series and the overflow");
        let overflow: Vec<&(String, String, u64, Vec<u64>)> =
            rows.iter().filter(|r| r.1 == "otel.metric.overflow=true").collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].2, 990, "every span counted");
    }

    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let err = |yaml: &str| {
            let cfg: SpanMetricsConfig = crate::config::parse_yaml("s.yaml", yaml).unwrap();
            cfg.validate().unwrap_err().key
        };
        assert_eq!(err("dimensions: [{name: span.name}]\n"), "dimensions.0.name");
        assert_eq!(err("histogram: {exponential: {max_size: 1}}\n"), "histogram.exponential.max_size");
        assert_eq!(err("histogram: {exponential: {}, explicit: {buckets: [1s]}}\n"), "histogram");
        assert_eq!(err("exemplars: {enabled: true, max_per_data_point: 0}\n"), "exemplars.max_per_data_point");
        assert_eq!(err("events: {enabled: true}\n"), "events.dimensions");
        assert_eq!(err("histogram: {explicit: {buckets: [1s, 10ms]}}\n"), "histogram.explicit.buckets");
    }

    /// Gives every span of `batch` trace id [t; 16] and span id [i; 8] (i counting from 1).
    fn with_ids(batch: Batch, t: u8) -> Batch {
        let Ok(Request::Traces(mut r)) = batch.into_request() else { panic!() };
        for (i, span) in r.resource_spans[0].scope_spans[0].spans.iter_mut().enumerate() {
            span.trace_id = vec![t; 16];
            span.span_id = vec![i as u8 + 1; 8];
        }
        Batch::from_request(Request::Traces(r))
    }

    fn metrics_of(c: &dyn Connector) -> Vec<m::Metric> {
        let mut out = Vec::new();
        c.flush(&mut out, false);
        out.iter()
            .flat_map(|b| {
                let Some(Request::Metrics(r)) = b.decoded() else { panic!("metrics") };
                r.resource_metrics
                    .iter()
                    .flat_map(|rm| &rm.scope_metrics)
                    .flat_map(|sm| sm.metrics.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn exponential_durations_with_the_latest_exemplars() {
        let c = build("histogram: {exponential: {max_size: 20}}\nexemplars: {enabled: true, max_per_data_point: 2}\n");
        let mut out = Vec::new();
        c.route(
            with_ids(spans(&[("GET", 3, false, None), ("GET", 30, false, None), ("GET", 300, false, None)]), 7),
            &[],
            &mut out,
        );
        let metrics = metrics_of(&*c);
        let duration = metrics.iter().find(|m| m.name == "traces.span.metrics.duration").unwrap();
        assert_eq!(duration.unit, "ms");
        let Some(m::metric::Data::ExponentialHistogram(h)) = &duration.data else { panic!("{duration:?}") };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum, p.min, p.max), (3, Some(333.0), Some(3.0), Some(300.0)));
        let buckets = p.positive.as_ref().unwrap();
        assert!(buckets.bucket_counts.len() <= 20);
        assert_eq!(buckets.bucket_counts.iter().sum::<u64>(), 3);
        // The two latest spans' exemplars, with their trace and span ids and durations.
        let mut ex: Vec<(Vec<u8>, Vec<u8>, f64)> = p
            .exemplars
            .iter()
            .map(|e| {
                let Some(m::exemplar::Value::AsDouble(v)) = e.value else { panic!() };
                (e.trace_id.clone(), e.span_id.clone(), v)
            })
            .collect();
        ex.sort_by(|a, b| a.2.total_cmp(&b.2));
        assert_eq!(ex, vec![(vec![7; 16], vec![2; 8], 30.0), (vec![7; 16], vec![3; 8], 300.0)]);
        // Exemplars are of one flush interval; the histogram (cumulative) stays.
        let again = metrics_of(&*c);
        let Some(m::metric::Data::ExponentialHistogram(h)) =
            &again.iter().find(|m| m.name == "traces.span.metrics.duration").unwrap().data
        else {
            panic!()
        };
        assert!(h.data_points[0].exemplars.is_empty());
        assert_eq!(h.data_points[0].count, 3);
    }

    #[test]
    fn span_events_are_counted_per_series_and_event_dimensions() {
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        let c = build("events: {enabled: true, dimensions: [{name: exception.type}, {name: level, default: none}]}\n");
        let Ok(Request::Traces(mut r)) = spans(&[("GET", 5, true, None), ("GET", 5, true, None)]).into_request() else {
            panic!()
        };
        let event = |t: &str| Event {
            name: "exception".into(),
            attributes: vec![kv("exception.type", string(t))],
            ..Default::default()
        };
        let list = &mut r.resource_spans[0].scope_spans[0].spans;
        list[0].events = vec![event("Timeout"), event("Timeout")];
        list[1].events = vec![event("Refused")];
        let mut out = Vec::new();
        c.route(Batch::from_request(Request::Traces(r)), &[], &mut out);
        let metrics = metrics_of(&*c);
        let events = metrics.iter().find(|m| m.name == "traces.span.metrics.events").expect("an events metric");
        let Some(m::metric::Data::Sum(sum)) = &events.data else { panic!() };
        let mut got: Vec<(String, String, i64)> = sum
            .data_points
            .iter()
            .map(|p| {
                let get = |k: &str| {
                    crate::exporters::values::text(
                        p.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.as_ref()),
                    )
                };
                let Some(m::number_data_point::Value::AsInt(v)) = p.value else { panic!() };
                (get("exception.type"), get("level"), v)
            })
            .collect();
        got.sort();
        assert_eq!(got, [("Refused".into(), "none".into(), 1), ("Timeout".into(), "none".into(), 2)]);
        assert!(sum.is_monotonic);
    }
}
