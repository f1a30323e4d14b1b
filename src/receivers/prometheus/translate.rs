//! Prometheus samples → OTLP metrics, per PROTOCOLS.md §4.6 and the Collector's receiver: counters
//! → monotonic cumulative sums, gauges and untyped → gauges, histograms (bucket differences),
//! summaries, info/stateset → non-monotonic sums, gaugehistograms dropped. `job`/`instance` and
//! `target_info` make the resource, `otel_scope_*` labels the scope. Start times of cumulative
//! series come from `_created`, else from the first time the series was seen (and again after a
//! reset); a series that vanishes gets one point flagged "no recorded value", then no more.

use super::parse::{Family, Kind, Sample};
use crate::attributes::{kv, string};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar, metric, number_data_point,
    summary_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::collections::{BTreeMap, HashMap};

/// The bits of the NaN Prometheus writes as a staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

type Labels = Vec<(String, String)>;

/// A series: its metric name and point labels.
type SeriesKey = (String, Labels);

/// How a series is ended: its shape, start time and scope.
type Ending = (Shape, Option<u64>, Option<InstrumentationScope>);

/// The series of one scrape, with how to end them.
type Seen = HashMap<SeriesKey, Ending>;

/// The most cumulative series remembered per target (start times); past it, memory is reset.
const MAX_SERIES: usize = 1_000_000;

/// What is remembered of a cumulative series between scrapes.
#[derive(Debug, Clone)]
struct Cumulative {
    start_ns: u64,
    /// The value (sums), or the count and sum (histograms, summaries), at the last scrape.
    last: (f64, f64),
}

/// How a series that vanished is ended: its metric's shape.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Gauge,
    Sum { monotonic: bool },
    Histogram,
    Summary,
}

/// Per-target memory: start times, and the series of the last scrape (for staleness).
#[derive(Debug, Default)]
pub struct SeriesState {
    cumulative: HashMap<SeriesKey, Cumulative>,
    previous: Seen,
    /// Remote write: requests carry any subset of series, so absence means nothing.
    no_staleness: bool,
}

impl SeriesState {
    /// Memory of start times only: a series missing from a request has not ended.
    pub fn without_staleness() -> SeriesState {
        SeriesState { no_staleness: true, ..Default::default() }
    }
}

/// The target a scrape came from.
pub struct Target<'a> {
    /// The target's labels (`job`, `instance` and any others), without `__` labels.
    pub labels: &'a Labels,
    pub scheme: &'a str,
}

fn label<'a>(labels: &'a Labels, name: &str) -> &'a str {
    labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// The resource of a target: `service.name` = job, `service.instance.id` = instance, the address
/// parts of the instance, `url.scheme`, and the labels of `target_info`.
fn resource(target: &Target, info: Option<&Sample>) -> Resource {
    let job = label(target.labels, "job");
    let instance = label(target.labels, "instance");
    let mut attributes = vec![kv("service.name", string(job)), kv("service.instance.id", string(instance))];
    if let Some((host, port)) = instance.rsplit_once(':') {
        let discernible = !matches!(host, "localhost" | "127.0.0.1" | "[::1]" | "0.0.0.0" | "::" | "[::]");
        if discernible && !host.is_empty() {
            attributes.push(kv("server.address", string(host.trim_start_matches('[').trim_end_matches(']'))));
        }
        attributes.push(kv("server.port", string(port)));
    }
    if !target.scheme.is_empty() {
        attributes.push(kv("url.scheme", string(target.scheme)));
    }
    if let Some(info) = info {
        for (name, value) in &info.labels {
            if !matches!(name.as_str(), "job" | "instance" | "__name__") && !value.is_empty() {
                attributes.push(kv(name, string(value)));
            }
        }
    }
    Resource { attributes, ..Default::default() }
}

/// The scope a sample's `otel_scope_*` labels name, if any.
fn scope_of(labels: &Labels) -> Option<InstrumentationScope> {
    let mut scope = InstrumentationScope::default();
    let mut any = false;
    for (name, value) in labels {
        match name.as_str() {
            "otel_scope_name" => scope.name = value.clone(),
            "otel_scope_version" => scope.version = value.clone(),
            "otel_scope_schema_url" => {}
            n if n.starts_with("otel_scope_") => {
                scope.attributes.push(kv(&n["otel_scope_".len()..], string(value)));
            }
            _ => continue,
        }
        any = true;
    }
    any.then_some(scope)
}

/// A sample's point attributes: its labels without the resource and scope ones, `__name__`, and
/// `skip` (`le`, `quantile`); empty values are left out. Sorted by name.
fn point_labels(labels: &Labels, skip: &str) -> Labels {
    let mut out: Labels = labels
        .iter()
        .filter(|(n, v)| {
            !v.is_empty()
                && n != skip
                && !matches!(n.as_str(), "job" | "instance" | "__name__")
                && !n.starts_with("otel_scope_")
        })
        .cloned()
        .collect();
    out.sort();
    out
}

fn attributes(labels: &Labels) -> Vec<KeyValue> {
    labels.iter().map(|(n, v)| kv(n, string(v))).collect()
}

/// Prometheus units in OpenMetrics `UNIT` lines, as UCUM where they differ.
fn ucum(unit: &str) -> String {
    match unit {
        "seconds" => "s",
        "milliseconds" => "ms",
        "bytes" => "By",
        "ratio" => "1",
        "percent" => "%",
        "celsius" => "Cel",
        "meters" => "m",
        "volts" => "V",
        "amperes" => "A",
        "joules" => "J",
        "grams" => "g",
        other => other,
    }
    .to_string()
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN
}

/// Collects the metrics of one scrape.
struct Builder {
    scopes: BTreeMap<(String, String), (Option<InstrumentationScope>, Vec<Metric>)>,
}

impl Builder {
    fn push(&mut self, scope: Option<InstrumentationScope>, metric: Metric) {
        let key = scope.as_ref().map(|s| (s.name.clone(), s.version.clone())).unwrap_or_default();
        let entry = self.scopes.entry(key).or_insert_with(|| (scope, Vec::new()));
        // Points of one metric (same name and type) go into one Metric.
        if let Some(existing) = entry.1.iter_mut().find(|m| m.name == metric.name && same_kind(m, &metric)) {
            merge_points(existing, metric);
        } else {
            entry.1.push(metric);
        }
    }
}

fn same_kind(a: &Metric, b: &Metric) -> bool {
    std::mem::discriminant(a.data.as_ref().expect("built with data"))
        == std::mem::discriminant(b.data.as_ref().expect("built with data"))
}

fn merge_points(into: &mut Metric, from: Metric) {
    match (into.data.as_mut(), from.data) {
        (Some(metric::Data::Gauge(a)), Some(metric::Data::Gauge(b))) => a.data_points.extend(b.data_points),
        (Some(metric::Data::Sum(a)), Some(metric::Data::Sum(b))) => a.data_points.extend(b.data_points),
        (Some(metric::Data::Histogram(a)), Some(metric::Data::Histogram(b))) => a.data_points.extend(b.data_points),
        (Some(metric::Data::Summary(a)), Some(metric::Data::Summary(b))) => a.data_points.extend(b.data_points),
        _ => {}
    }
}

fn metric(name: &str, family: &Family, data: metric::Data) -> Metric {
    let kind = match family.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
        Kind::GaugeHistogram => "gaugehistogram",
        Kind::Summary => "summary",
        Kind::Info => "info",
        Kind::StateSet => "stateset",
        Kind::Unknown => "unknown",
    };
    Metric {
        name: name.to_string(),
        description: family.help.clone().unwrap_or_default(),
        unit: family.unit.as_deref().map(ucum).unwrap_or_default(),
        metadata: vec![kv("prometheus.type", string(kind))],
        data: Some(data),
    }
}

fn gauge_point(labels: &Labels, value: f64, time_ns: u64) -> NumberDataPoint {
    let stale = is_stale(value);
    NumberDataPoint {
        attributes: attributes(labels),
        time_unix_nano: time_ns,
        value: (!stale).then_some(number_data_point::Value::AsDouble(value)),
        flags: if stale { DataPointFlags::NoRecordedValueMask as u32 } else { 0 },
        ..Default::default()
    }
}

/// An OpenMetrics exemplar as an OTLP one: `trace_id`/`span_id` labels (hex) become the ids, the
/// other labels its filtered attributes; without its own timestamp it is at the point's time.
fn exemplar_of(s: &Sample, point_ns: u64) -> Option<Exemplar> {
    let e = s.exemplar.as_ref()?;
    let hex = |v: &str, len: usize| -> Vec<u8> {
        if v.len() != len * 2 {
            return Vec::new();
        }
        (0..len)
            .map(|i| u8::from_str_radix(v.get(i * 2..i * 2 + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_default()
    };
    let mut out = Exemplar {
        time_unix_nano: e
            .timestamp_ms
            .map(|ms| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000))
            .unwrap_or(point_ns),
        value: Some(exemplar::Value::AsDouble(e.value)),
        ..Default::default()
    };
    for (name, value) in &e.labels {
        match name.as_str() {
            "trace_id" if !hex(value, 16).is_empty() => out.trace_id = hex(value, 16),
            "span_id" if !hex(value, 8).is_empty() => out.span_id = hex(value, 8),
            _ => out.filtered_attributes.push(kv(name, string(value))),
        }
    }
    Some(out)
}

impl SeriesState {
    /// The start time of a cumulative series now at `values` (see the module comment).
    fn start(&mut self, key: SeriesKey, time_ns: u64, created_ns: Option<u64>, values: (f64, f64)) -> u64 {
        let reset = |last: (f64, f64)| values.0 < last.0 || values.1 < last.1;
        match self.cumulative.get_mut(&key) {
            Some(c) if created_ns.is_none() && !reset(c.last) => {
                c.last = values;
                c.start_ns
            }
            _ => {
                let start_ns = created_ns.unwrap_or(time_ns);
                self.cumulative.insert(key, Cumulative { start_ns, last: values });
                start_ns
            }
        }
    }
}

/// Translates one scrape's families (after relabeling), remembering what staleness and start
/// times need. `scrape_ns` stamps samples without a timestamp (all of them unless
/// `honor_timestamps`); `extra` are the scrape's own series (`up`, `scrape_*`).
pub fn to_otlp(
    families: &[Family],
    target: &Target,
    scrape_ns: u64,
    honor_timestamps: bool,
    state: &mut SeriesState,
    extra: &[(&str, &str, f64)],
) -> ExportMetricsServiceRequest {
    let time = |s: &Sample| match s.timestamp_ms {
        Some(ms) if honor_timestamps => u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000),
        _ => scrape_ns,
    };
    let mut b = Builder { scopes: BTreeMap::new() };
    let mut seen: Seen = HashMap::new();
    let mut info = None;
    for family in families {
        match family.kind {
            Kind::Gauge | Kind::Unknown => {
                for s in &family.samples {
                    if s.name == "target_info" {
                        info = Some(s);
                        continue;
                    }
                    let labels = point_labels(&s.labels, "");
                    seen.insert((s.name.clone(), labels.clone()), (Shape::Gauge, None, scope_of(&s.labels)));
                    let point = gauge_point(&labels, s.value, time(s));
                    b.push(
                        scope_of(&s.labels),
                        metric(&s.name, family, metric::Data::Gauge(Gauge { data_points: vec![point] })),
                    );
                }
            }
            Kind::Counter | Kind::Info | Kind::StateSet => {
                let monotonic = family.kind == Kind::Counter;
                let created: HashMap<Labels, u64> = family
                    .samples
                    .iter()
                    .filter(|s| s.name.ends_with("_created") && s.name != family.name)
                    .map(|s| (point_labels(&s.labels, ""), created_ns(s.value)))
                    .collect();
                for s in family.samples.iter().filter(|s| !(s.name.ends_with("_created") && s.name != family.name)) {
                    if s.name == "target_info" {
                        info = Some(s);
                        continue;
                    }
                    let labels = point_labels(&s.labels, "");
                    let t = time(s);
                    let key = (s.name.clone(), labels.clone());
                    let stale = is_stale(s.value);
                    let start = if stale {
                        state.cumulative.get(&key).map(|c| c.start_ns).unwrap_or(t)
                    } else if monotonic {
                        state.start(key.clone(), t, created.get(&labels).copied(), (s.value, 0.0))
                    } else {
                        t
                    };
                    seen.insert(key, (Shape::Sum { monotonic }, Some(start), scope_of(&s.labels)));
                    let mut point = gauge_point(&labels, s.value, t);
                    point.start_time_unix_nano = start;
                    point.exemplars.extend(exemplar_of(s, t));
                    let sum = Sum {
                        data_points: vec![point],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: monotonic,
                    };
                    b.push(scope_of(&s.labels), metric(&s.name, family, metric::Data::Sum(sum)));
                }
            }
            Kind::Histogram => histogram(family, &time, state, &mut seen, &mut b),
            Kind::Summary => summary(family, &time, state, &mut seen, &mut b),
            Kind::GaugeHistogram => {}
        }
    }
    // The scrape's own series, gauges under the same resource.
    let target_attrs = point_labels(target.labels, "");
    for (name, unit, value) in extra {
        seen.insert((name.to_string(), target_attrs.clone()), (Shape::Gauge, None, None));
        let point = gauge_point(&target_attrs, *value, scrape_ns);
        b.push(
            None,
            Metric {
                name: name.to_string(),
                unit: unit.to_string(),
                data: Some(metric::Data::Gauge(Gauge { data_points: vec![point] })),
                ..Default::default()
            },
        );
    }
    // Series of the last scrape that are gone now: one point that says so, then nothing more.
    let gone: Vec<(SeriesKey, Ending)> = if state.no_staleness {
        Vec::new()
    } else {
        state.previous.drain().filter(|(k, _)| !seen.contains_key(k)).collect()
    };
    for ((name, labels), (shape, start, scope)) in gone {
        state.cumulative.remove(&(name.clone(), labels.clone()));
        let flags = DataPointFlags::NoRecordedValueMask as u32;
        let attrs = attributes(&labels);
        let start = start.unwrap_or(0);
        let data = match shape {
            Shape::Gauge => metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: attrs,
                    time_unix_nano: scrape_ns,
                    flags,
                    ..Default::default()
                }],
            }),
            Shape::Sum { monotonic } => metric::Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    attributes: attrs,
                    start_time_unix_nano: start,
                    time_unix_nano: scrape_ns,
                    flags,
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            }),
            Shape::Histogram => metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attrs,
                    start_time_unix_nano: start,
                    time_unix_nano: scrape_ns,
                    flags,
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
            Shape::Summary => metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attrs,
                    start_time_unix_nano: start,
                    time_unix_nano: scrape_ns,
                    flags,
                    ..Default::default()
                }],
            }),
        };
        b.push(scope, Metric { name, data: Some(data), ..Default::default() });
    }
    if state.no_staleness {
        if state.cumulative.len() > MAX_SERIES {
            tracing::warn!(
                series = state.cumulative.len(),
                "too many series to remember start times for; starting over"
            );
            state.cumulative.clear();
        }
    } else {
        state.previous = seen;
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(target, info)),
            scope_metrics: b
                .scopes
                .into_values()
                .map(|(scope, metrics)| ScopeMetrics {
                    // Samples without `otel_scope_*` labels get no scope (the collector names its
                    // receiver here): so Prometheus data written back to Prometheus gains no
                    // `otel_scope_*` labels on the way.
                    scope,
                    metrics,
                    schema_url: String::new(),
                })
                .collect(),
            schema_url: String::new(),
        }],
    }
}

/// Samples of one histogram or summary family, grouped into points by their labels without the
/// bucket label (`le`, `quantile`) and by timestamp (remote write may carry several), in order
/// of first appearance.
fn group<'a>(family: &'a Family, skip: &str) -> Vec<(Labels, Vec<&'a Sample>)> {
    let mut groups: Vec<(Labels, Option<i64>, Vec<&Sample>)> = Vec::new();
    let created = |s: &Sample| s.name.ends_with("_created") && s.name != family.name;
    for s in family.samples.iter().filter(|s| !created(s)) {
        let key = point_labels(&s.labels, skip);
        match groups.iter_mut().find(|(k, t, _)| *k == key && *t == s.timestamp_ms) {
            Some((_, _, v)) => v.push(s),
            None => groups.push((key, s.timestamp_ms, vec![s])),
        }
    }
    // `_created` goes with every point of its series, whatever the time.
    for s in family.samples.iter().filter(|s| created(s)) {
        let key = point_labels(&s.labels, skip);
        for (k, _, v) in groups.iter_mut() {
            if *k == key {
                v.push(s);
            }
        }
    }
    groups.into_iter().map(|(k, _, v)| (k, v)).collect()
}

fn le_bound(s: &Sample) -> Option<f64> {
    let le = s.label("le")?;
    match le {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

fn histogram(
    family: &Family,
    time: &dyn Fn(&Sample) -> u64,
    state: &mut SeriesState,
    seen: &mut Seen,
    b: &mut Builder,
) {
    let name = |suffix: &str| format!("{}{suffix}", family.name);
    for (labels, samples) in group(family, "le") {
        let Some(count) = samples.iter().find(|s| s.name == name("_count")) else { continue };
        let sum = samples.iter().find(|s| s.name == name("_sum")).map(|s| s.value);
        let created = samples.iter().find(|s| s.name == name("_created")).map(|s| created_ns(s.value));
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == name("_bucket"))
            .filter_map(|s| Some((le_bound(s)?, s.value)))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let t = time(count);
        let key = (family.name.clone(), labels.clone());
        let stale = is_stale(count.value);
        let start = if stale {
            state.cumulative.get(&key).map(|c| c.start_ns).unwrap_or(t)
        } else {
            state.start(key.clone(), t, created, (count.value, sum.unwrap_or(0.0)))
        };
        seen.insert(key, (Shape::Histogram, Some(start), scope_of(&count.labels)));
        let mut bounds = Vec::new();
        let mut counts = Vec::new();
        let mut previous = 0.0;
        for (le, cumulative) in &buckets {
            if le.is_finite() {
                bounds.push(*le);
            }
            counts.push((cumulative - previous).max(0.0) as u64);
            previous = *cumulative;
        }
        if buckets.last().is_none_or(|(le, _)| le.is_finite()) {
            // No +Inf bucket: what is above the last bound is the rest of the count.
            counts.push((count.value - previous).max(0.0) as u64);
        }
        let exemplars =
            samples.iter().filter(|s| s.name == name("_bucket")).filter_map(|s| exemplar_of(s, t)).collect();
        let point = HistogramDataPoint {
            attributes: attributes(&labels),
            exemplars,
            start_time_unix_nano: start,
            time_unix_nano: t,
            count: if stale { 0 } else { count.value as u64 },
            sum: sum.filter(|_| !stale),
            bucket_counts: if stale { vec![0; counts.len()] } else { counts },
            explicit_bounds: bounds,
            flags: if stale { DataPointFlags::NoRecordedValueMask as u32 } else { 0 },
            ..Default::default()
        };
        let data = metric::Data::Histogram(Histogram {
            data_points: vec![point],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        });
        b.push(scope_of(&count.labels), metric(&family.name, family, data));
    }
}

fn summary(family: &Family, time: &dyn Fn(&Sample) -> u64, state: &mut SeriesState, seen: &mut Seen, b: &mut Builder) {
    let name = |suffix: &str| format!("{}{suffix}", family.name);
    for (labels, samples) in group(family, "quantile") {
        let Some(count) = samples.iter().find(|s| s.name == name("_count")) else { continue };
        let sum = samples.iter().find(|s| s.name == name("_sum")).map(|s| s.value).unwrap_or(0.0);
        let created = samples.iter().find(|s| s.name == name("_created")).map(|s| created_ns(s.value));
        let t = time(count);
        let key = (family.name.clone(), labels.clone());
        let stale = is_stale(count.value);
        let start = if stale {
            state.cumulative.get(&key).map(|c| c.start_ns).unwrap_or(t)
        } else {
            // A summary is only reset when both scrapes have a count (as the collector checks).
            let last = state.cumulative.get(&key).map(|c| c.last);
            let values = match last {
                Some(l) if l.0 == 0.0 || count.value == 0.0 => l,
                _ => (count.value, sum),
            };
            state.start(key.clone(), t, created, values)
        };
        seen.insert(key, (Shape::Summary, Some(start), scope_of(&count.labels)));
        let quantile_values = samples
            .iter()
            .filter(|s| s.name == family.name)
            .filter_map(|s| {
                let q: f64 = s.label("quantile")?.parse().ok()?;
                Some(summary_data_point::ValueAtQuantile { quantile: q, value: if stale { 0.0 } else { s.value } })
            })
            .collect();
        let point = SummaryDataPoint {
            attributes: attributes(&labels),
            start_time_unix_nano: start,
            time_unix_nano: t,
            count: if stale { 0 } else { count.value as u64 },
            sum: if stale { 0.0 } else { sum },
            quantile_values,
            flags: if stale { DataPointFlags::NoRecordedValueMask as u32 } else { 0 },
        };
        let data = metric::Data::Summary(Summary { data_points: vec![point] });
        b.push(scope_of(&count.labels), metric(&family.name, family, data));
    }
}

/// A `_created` value (seconds) in nanoseconds, to the microsecond: seconds since 1970 times
/// 1e9 is past what an f64 holds exactly (a start of …467 ms would come out as …467000064 ns),
/// while microseconds (≈1.8e15) still are, and no exposition gives finer than that.
fn created_ns(seconds: f64) -> u64 {
    ((seconds * 1e6).round().max(0.0) as u64).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_seconds_become_exact_nanoseconds_to_the_microsecond() {
        assert_eq!(created_ns(1_795_707_181.467), 1_795_707_181_467_000_000);
        assert_eq!(created_ns(1_520_430_000.123_456), 1_520_430_000_123_456_000);
        assert_eq!(created_ns(-1.0), 0);
    }
    use crate::receivers::prometheus::parse::{Format, parse};

    const T1: u64 = 1_700_000_000_000_000_000;
    const T2: u64 = T1 + 15_000_000_000;
    const T3: u64 = T2 + 15_000_000_000;

    fn target_labels() -> Labels {
        vec![("env".into(), "prod".into()), ("instance".into(), "10.1.2.3:9100".into()), ("job".into(), "node".into())]
    }

    fn scrape(text: &str, at: u64, state: &mut SeriesState) -> ExportMetricsServiceRequest {
        let families = parse(text.as_bytes(), Format::Text).unwrap();
        let labels = target_labels();
        // As the scraper does: target labels go on every sample.
        let families: Vec<Family> = families
            .into_iter()
            .map(|mut f| {
                for s in &mut f.samples {
                    for (n, v) in &labels {
                        if !s.labels.iter().any(|(k, _)| k == n) {
                            s.labels.push((n.clone(), v.clone()));
                        }
                    }
                }
                f
            })
            .collect();
        to_otlp(&families, &Target { labels: &labels, scheme: "http" }, at, true, state, &[("up", "", 1.0)])
    }

    fn metrics(req: &ExportMetricsServiceRequest) -> Vec<&Metric> {
        req.resource_metrics[0].scope_metrics.iter().flat_map(|s| &s.metrics).collect()
    }

    fn find<'a>(req: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        metrics(req).into_iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} missing: {req:#?}"))
    }

    fn sum_point(m: &Metric) -> &NumberDataPoint {
        match m.data.as_ref() {
            Some(metric::Data::Sum(s)) => &s.data_points[0],
            other => panic!("not a sum: {other:?}"),
        }
    }

    #[test]
    fn counters_are_cumulative_sums_with_start_times_and_resets() {
        let mut state = SeriesState::default();
        let text = |v: u32| format!("# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {v}\n");
        let r1 = scrape(&text(10), T1, &mut state);
        let m = find(&r1, "http_requests_total");
        match m.data.as_ref() {
            Some(metric::Data::Sum(s)) => {
                assert!(s.is_monotonic);
                assert_eq!(s.aggregation_temporality, AggregationTemporality::Cumulative as i32);
            }
            other => panic!("{other:?}"),
        }
        let p = sum_point(m);
        assert_eq!((p.start_time_unix_nano, p.time_unix_nano), (T1, T1), "first sighting starts at itself");
        assert_eq!(p.attributes, vec![kv("code", string("200")), kv("env", string("prod"))]);
        let p2 = sum_point(find(&scrape(&text(15), T2, &mut state), "http_requests_total")).clone();
        assert_eq!(p2.start_time_unix_nano, T1, "keeps its start");
        let p3 = sum_point(find(&scrape(&text(3), T3, &mut state), "http_requests_total")).clone();
        assert_eq!(p3.start_time_unix_nano, T3, "a drop is a reset: a new start");
    }

    #[test]
    fn created_gives_the_start_time() {
        let body = "# TYPE foo counter\nfoo_total 17.0\nfoo_created 1520430000.5\n# EOF\n";
        let families = parse(body.as_bytes(), Format::OpenMetrics).unwrap();
        let labels = target_labels();
        let req =
            to_otlp(&families, &Target { labels: &labels, scheme: "http" }, T1, true, &mut SeriesState::default(), &[]);
        let p = sum_point(find(&req, "foo_total"));
        assert_eq!(p.start_time_unix_nano, 1_520_430_000_500_000_000);
        assert!(metrics(&req).iter().all(|m| m.name != "foo_created"));
    }

    #[test]
    fn histograms_take_bucket_differences() {
        let text = concat!(
            "# HELP rpc_seconds RPC latency.\n# TYPE rpc_seconds histogram\n",
            "rpc_seconds_bucket{le=\"0.1\"} 2\nrpc_seconds_bucket{le=\"0.5\"} 5\nrpc_seconds_bucket{le=\"+Inf\"} 6\n",
            "rpc_seconds_sum 1.75\nrpc_seconds_count 6\n",
        );
        let req = scrape(text, T1, &mut SeriesState::default());
        let m = find(&req, "rpc_seconds");
        assert_eq!(m.description, "RPC latency.");
        let Some(metric::Data::Histogram(h)) = m.data.as_ref() else { panic!() };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, vec![0.1, 0.5]);
        assert_eq!(p.bucket_counts, vec![2, 3, 1]);
        assert_eq!((p.count, p.sum), (6, Some(1.75)));
        assert_eq!(p.attributes, vec![kv("env", string("prod"))], "no le, job or instance");
    }

    #[test]
    fn summaries_keep_quantiles_and_need_a_count() {
        let text = concat!(
            "# TYPE gc summary\ngc{quantile=\"0.5\"} 0.01\ngc{quantile=\"1\"} 0.2\ngc_sum 3\ngc_count 100\n",
            "# TYPE nocount summary\nnocount{quantile=\"0.5\"} 1\n",
        );
        let req = scrape(text, T1, &mut SeriesState::default());
        let Some(metric::Data::Summary(s)) = find(&req, "gc").data.as_ref() else { panic!() };
        let p = &s.data_points[0];
        assert_eq!((p.count, p.sum, p.quantile_values.len()), (100, 3.0, 2));
        assert_eq!(p.quantile_values[1].quantile, 1.0);
        assert!(metrics(&req).iter().all(|m| m.name != "nocount"), "a summary without _count is dropped");
    }

    #[test]
    fn the_resource_comes_from_the_target_and_target_info() {
        let text = "target_info{region=\"eu\"} 1\nload 0.5\n";
        let req = scrape(text, T1, &mut SeriesState::default());
        let r = &req.resource_metrics[0].resource.as_ref().unwrap().attributes;
        for (k, v) in [
            ("service.name", "node"),
            ("service.instance.id", "10.1.2.3:9100"),
            ("server.address", "10.1.2.3"),
            ("server.port", "9100"),
            ("url.scheme", "http"),
            ("region", "eu"),
        ] {
            assert!(r.contains(&kv(k, string(v))), "{k}={v} in {r:#?}");
        }
        assert!(metrics(&req).iter().all(|m| m.name != "target_info"));
        let Some(metric::Data::Gauge(g)) = find(&req, "load").data.as_ref() else { panic!("untyped is a gauge") };
        assert_eq!(g.data_points[0].time_unix_nano, T1);
        assert!(find(&req, "up").data.is_some());
    }

    #[test]
    fn scope_labels_make_the_scope() {
        let text = "x{otel_scope_name=\"lib\",otel_scope_version=\"1.0\",otel_scope_team=\"a\"} 1\ny 2\n";
        let req = scrape(text, T1, &mut SeriesState::default());
        let scopes: Vec<(String, String)> = req.resource_metrics[0]
            .scope_metrics
            .iter()
            .map(|s| {
                (
                    s.scope.as_ref().map(|sc| sc.name.clone()).unwrap_or_default(),
                    s.metrics.iter().map(|m| m.name.clone()).collect::<Vec<_>>().join(","),
                )
            })
            .collect();
        assert!(scopes.contains(&("lib".into(), "x".into())), "{scopes:?}");
        assert!(scopes.contains(&("".into(), "y,up".into())), "no scope labels, no scope: {scopes:?}");
        let x = find(&req, "x");
        let Some(metric::Data::Gauge(g)) = x.data.as_ref() else { panic!() };
        assert_eq!(g.data_points[0].attributes, vec![kv("env", string("prod"))]);
    }

    #[test]
    fn a_vanished_series_ends_once() {
        let mut state = SeriesState::default();
        scrape("# TYPE c counter\nc{a=\"1\"} 5\nc{a=\"2\"} 7\n", T1, &mut state);
        let r2 = scrape("# TYPE c counter\nc{a=\"1\"} 6\n", T2, &mut state);
        let points: Vec<&NumberDataPoint> = metrics(&r2)
            .into_iter()
            .filter(|m| m.name == "c")
            .flat_map(|m| match m.data.as_ref() {
                Some(metric::Data::Sum(s)) => s.data_points.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(points.len(), 2);
        let ended = points.iter().find(|p| p.attributes.contains(&kv("a", string("2")))).unwrap();
        assert_eq!(ended.flags, DataPointFlags::NoRecordedValueMask as u32);
        assert_eq!((ended.start_time_unix_nano, ended.time_unix_nano, ended.value.is_none()), (T1, T2, true));
        let r3 = scrape("# TYPE c counter\nc{a=\"1\"} 6\n", T3, &mut state);
        let count = metrics(&r3)
            .iter()
            .filter(|m| m.name == "c")
            .map(|m| match m.data.as_ref() {
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                _ => 0,
            })
            .sum::<usize>();
        assert_eq!(count, 1, "the ended series does not repeat");
    }

    #[test]
    fn an_ended_series_keeps_its_scope_and_the_scrape_series_end_with_the_target() {
        let mut state = SeriesState::default();
        scrape("x{otel_scope_name=\"lib\"} 1\n", T1, &mut state);
        let labels = target_labels();
        let r = to_otlp(&[], &Target { labels: &labels, scheme: "http" }, T2, true, &mut state, &[]);
        let scopes: Vec<(String, Vec<String>)> = r.resource_metrics[0]
            .scope_metrics
            .iter()
            .map(|s| {
                (
                    s.scope.as_ref().map(|sc| sc.name.clone()).unwrap_or_default(),
                    s.metrics.iter().map(|m| m.name.clone()).collect(),
                )
            })
            .collect();
        assert!(scopes.contains(&("lib".into(), vec!["x".into()])), "{scopes:?}");
        assert!(scopes.iter().any(|(_, names)| names.contains(&"up".to_string())), "up ends too: {scopes:?}");
    }

    #[test]
    fn without_staleness_start_times_carry_over_and_absence_ends_nothing() {
        let mut state = SeriesState::without_staleness();
        let text = |v: u32| format!("# TYPE c counter\nc {v}\n");
        scrape(&text(1), T1, &mut state);
        let r2 = scrape("other 1\n", T2, &mut state);
        assert!(metrics(&r2).iter().all(|m| m.name != "c"), "no end point for c");
        let p = sum_point(find(&scrape(&text(5), T3, &mut state), "c")).clone();
        assert_eq!(p.start_time_unix_nano, T1);
    }

    #[test]
    fn exemplars_carry_trace_and_span_ids() {
        let body = concat!(
            "# TYPE hits counter\n",
            "hits_total 3 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\",user=\"x\"} 1 1700000000.5\n",
            "# EOF\n"
        );
        let families = parse(body.as_bytes(), Format::OpenMetrics).unwrap();
        let labels = target_labels();
        let req =
            to_otlp(&families, &Target { labels: &labels, scheme: "http" }, T1, true, &mut SeriesState::default(), &[]);
        let e = &sum_point(find(&req, "hits_total")).exemplars[0];
        assert_eq!(e.trace_id.len(), 16);
        assert_eq!(e.span_id, vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(e.filtered_attributes, vec![kv("user", string("x"))]);
        assert_eq!(e.time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(e.value, Some(exemplar::Value::AsDouble(1.0)));
    }
}
