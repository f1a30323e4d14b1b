//! OTLP metrics as Prometheus time series (PROTOCOLS.md §4.7, as the Collector's exporters do it):
//! gauges; monotonic cumulative sums as counters; non-monotonic sums as gauges; cumulative
//! histograms as `_bucket{le}`/`_sum`/`_count`; summaries as quantiles plus `_sum`/`_count`.
//! `job`/`instance` come from the resource, other resource attributes go to `target_info` (or,
//! with `resource_to_telemetry_conversion`, onto every series). Delta data and exponential
//! histograms cannot be written cumulatively here and are dropped (and counted). A point flagged
//! "no recorded value" becomes Prometheus's stale marker.

use super::naming::{NameKind, label_name, metric_name};
use crate::exporters::values::text;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, DataPointFlags, metric, number_data_point};
use std::collections::{BTreeMap, HashMap};

/// Prometheus's stale marker.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

pub type Labels = Vec<(String, String)>;

/// One series: labels sorted by name (`__name__` among them) and samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    /// (value, milliseconds since the epoch).
    pub samples: Vec<(f64, i64)>,
    /// The family's type and help (Remote Write 2.0 sends them with the series).
    pub kind: FamilyKind,
    pub help: String,
    /// Start of the cumulative series, in milliseconds; 0 if unknown or not cumulative.
    pub start_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub add_metric_suffixes: bool,
    pub resource_to_telemetry: bool,
    pub target_info: bool,
    /// Added to every series unless it already has the label.
    pub external_labels: BTreeMap<String, String>,
}

/// Series built from a request, and how many data points could not be written.
#[derive(Debug, Default)]
pub struct Converted {
    pub series: Vec<Series>,
    pub dropped_points: usize,
}

/// Attributes as labels: names sanitised, values of names that collide joined with `;` in the
/// order of the original keys.
fn attribute_labels(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for kv in sorted {
        let value = text(kv.value.as_ref());
        if value.is_empty() {
            continue;
        }
        out.entry(label_name(&kv.key))
            .and_modify(|v| {
                v.push(';');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

/// Formats a bound as Prometheus writes `le` and `quantile` (shortest round-trip form).
pub fn float_label(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// What a family is, for the `# TYPE` line and the series it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

/// A data point's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram { bounds: Vec<f64>, counts: Vec<u64>, sum: Option<f64>, count: u64 },
    Summary { quantiles: Vec<(f64, f64)>, sum: f64, count: u64 },
}

/// One OTLP data point as Prometheus sees it.
#[derive(Debug, Clone)]
pub struct Point {
    /// The family name (`http_server_requests_total`, `rpc_duration_seconds`).
    pub family: String,
    pub kind: FamilyKind,
    pub help: String,
    /// Labels without `__name__` (and without `le`/`quantile`).
    pub labels: BTreeMap<String, String>,
    pub value: Value,
    /// The point says "no recorded value": the series ended.
    pub stale: bool,
    /// A delta point: to be added to what came before, not replace it.
    pub delta: bool,
    pub time_ms: i64,
    /// Start of a cumulative series (counters, histograms, summaries), in milliseconds; 0 if none.
    pub start_ms: i64,
}

/// Walks every data point of `request` (and one `target_info` per resource, when enabled).
/// Returns how many points cannot be expressed (exponential histograms).
pub fn walk(request: &ExportMetricsServiceRequest, settings: &Settings, mut visit: impl FnMut(Point)) -> usize {
    let mut dropped = 0;
    for rm in &request.resource_metrics {
        let resource = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
        let get =
            |k: &str| resource.iter().find(|a| a.key == k).map(|a| text(a.value.as_ref())).filter(|v| !v.is_empty());
        let job = match (get("service.namespace"), get("service.name")) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            (None, Some(name)) => Some(name),
            _ => None,
        };
        let instance = get("service.instance.id");
        // Labels every series of this resource gets.
        let mut base: BTreeMap<String, String> = BTreeMap::new();
        if settings.resource_to_telemetry {
            base = attribute_labels(resource);
        }
        if let Some(j) = &job {
            base.insert("job".into(), j.clone());
        }
        if let Some(i) = &instance {
            base.insert("instance".into(), i.clone());
        }
        for (k, v) in &settings.external_labels {
            base.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut latest_ms = 0i64;
        for sm in &rm.scope_metrics {
            let mut scoped = base.clone();
            if let Some(scope) = &sm.scope {
                if !scope.name.is_empty() {
                    scoped.insert("otel_scope_name".into(), scope.name.clone());
                }
                if !scope.version.is_empty() {
                    scoped.insert("otel_scope_version".into(), scope.version.clone());
                }
            }
            if !sm.schema_url.is_empty() {
                scoped.insert("otel_scope_schema_url".into(), sm.schema_url.clone());
            }
            for m in &sm.metrics {
                let labels_for = |attrs: &[KeyValue]| {
                    let mut l = attribute_labels(attrs);
                    for (k, v) in &scoped {
                        // The resource's job and instance win over attributes of those names.
                        if k == "job" || k == "instance" {
                            l.insert(k.clone(), v.clone());
                        } else {
                            l.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                    l
                };
                let name =
                    |kind| metric_name(&m.name, &m.unit, kind, &settings.namespace, settings.add_metric_suffixes);
                let stale = |flags: u32| flags & DataPointFlags::NoRecordedValueMask as u32 != 0;
                let cumulative = |t: i32| t == AggregationTemporality::Cumulative as i32;
                let point = |family: &str, kind, labels, value, flags, (start_ns, time_ns): (u64, u64), delta| Point {
                    family: family.to_string(),
                    kind,
                    help: m.description.clone(),
                    labels,
                    value,
                    stale: stale(flags),
                    delta,
                    time_ms: ms(time_ns),
                    start_ms: if kind == FamilyKind::Gauge { 0 } else { ms(start_ns) },
                };
                match m.data.as_ref() {
                    Some(metric::Data::Gauge(g)) => {
                        let n = name(NameKind::Gauge);
                        for p in &g.data_points {
                            latest_ms = latest_ms.max(ms(p.time_unix_nano));
                            let v = Value::Number(number(p.value.as_ref()));
                            visit(point(
                                &n,
                                FamilyKind::Gauge,
                                labels_for(&p.attributes),
                                v,
                                p.flags,
                                (p.start_time_unix_nano, p.time_unix_nano),
                                false,
                            ));
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        // `_ratio` is for gauges only: a non-monotonic sum gets no type suffix.
                        let (kind, n) = if s.is_monotonic {
                            (FamilyKind::Counter, name(NameKind::Counter))
                        } else {
                            (FamilyKind::Gauge, name(NameKind::Other))
                        };
                        for p in &s.data_points {
                            latest_ms = latest_ms.max(ms(p.time_unix_nano));
                            let v = Value::Number(number(p.value.as_ref()));
                            let delta = !cumulative(s.aggregation_temporality);
                            visit(point(
                                &n,
                                kind,
                                labels_for(&p.attributes),
                                v,
                                p.flags,
                                (p.start_time_unix_nano, p.time_unix_nano),
                                delta,
                            ));
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        let n = name(NameKind::Other);
                        for p in &h.data_points {
                            latest_ms = latest_ms.max(ms(p.time_unix_nano));
                            let v = Value::Histogram {
                                bounds: p.explicit_bounds.clone(),
                                counts: p.bucket_counts.clone(),
                                sum: p.sum,
                                count: p.count,
                            };
                            let delta = !cumulative(h.aggregation_temporality);
                            visit(point(
                                &n,
                                FamilyKind::Histogram,
                                labels_for(&p.attributes),
                                v,
                                p.flags,
                                (p.start_time_unix_nano, p.time_unix_nano),
                                delta,
                            ));
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        let n = name(NameKind::Other);
                        for p in &s.data_points {
                            latest_ms = latest_ms.max(ms(p.time_unix_nano));
                            let v = Value::Summary {
                                quantiles: p.quantile_values.iter().map(|q| (q.quantile, q.value)).collect(),
                                sum: p.sum,
                                count: p.count,
                            };
                            visit(point(
                                &n,
                                FamilyKind::Summary,
                                labels_for(&p.attributes),
                                v,
                                p.flags,
                                (p.start_time_unix_nano, p.time_unix_nano),
                                false,
                            ));
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(e)) => dropped += e.data_points.len(),
                    None => {}
                }
            }
        }
        // target_info: the resource attributes that are not job and instance.
        if settings.target_info
            && !settings.resource_to_telemetry
            && latest_ms > 0
            && (job.is_some() || instance.is_some())
        {
            let others: Vec<KeyValue> = resource
                .iter()
                .filter(|a| !matches!(a.key.as_str(), "service.name" | "service.namespace" | "service.instance.id"))
                .cloned()
                .collect();
            if !others.is_empty() {
                let mut l = attribute_labels(&others);
                for (k, v) in &base {
                    if k == "job" || k == "instance" {
                        l.insert(k.clone(), v.clone());
                    } else {
                        l.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                let n = if settings.namespace.is_empty() {
                    "target_info".to_string()
                } else {
                    format!("{}_target_info", settings.namespace)
                };
                visit(Point {
                    family: n,
                    kind: FamilyKind::Gauge,
                    help: "Target metadata".into(),
                    labels: l,
                    value: Value::Number(1.0),
                    stale: false,
                    delta: false,
                    time_ms: latest_ms,
                    start_ms: 0,
                });
            }
        }
    }
    dropped
}

/// One sample line of a point: the series name, its extra label (`le`, `quantile`), the value.
pub type SampleLine = (String, Option<(&'static str, String)>, f64);

/// The samples a point makes.
pub fn samples(p: &Point) -> Vec<SampleLine> {
    let v = |x: f64| if p.stale { STALE_NAN } else { x };
    match &p.value {
        Value::Number(x) => vec![(p.family.clone(), None, v(*x))],
        Value::Histogram { bounds, counts, sum, count } => {
            let mut out = Vec::with_capacity(bounds.len() + 3);
            if let Some(sum) = sum {
                out.push((format!("{}_sum", p.family), None, v(*sum)));
            }
            out.push((format!("{}_count", p.family), None, v(*count as f64)));
            let mut cumulative = 0u64;
            for (i, bound) in bounds.iter().enumerate() {
                cumulative += counts.get(i).copied().unwrap_or(0);
                out.push((format!("{}_bucket", p.family), Some(("le", float_label(*bound))), v(cumulative as f64)));
            }
            out.push((format!("{}_bucket", p.family), Some(("le", "+Inf".to_string())), v(*count as f64)));
            out
        }
        Value::Summary { quantiles, sum, count } => {
            let mut out = vec![
                (format!("{}_sum", p.family), None, v(*sum)),
                (format!("{}_count", p.family), None, v(*count as f64)),
            ];
            for (q, x) in quantiles {
                out.push((p.family.clone(), Some(("quantile", float_label(*q))), v(*x)));
            }
            out
        }
    }
}

/// Converts a whole request to series for remote write: cumulative data only (delta points
/// are counted as dropped).
pub fn to_series(request: &ExportMetricsServiceRequest, settings: &Settings) -> Converted {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut out = Converted::default();
    let mut deltas = 0;
    let cannot = walk(request, settings, |p| {
        if p.delta {
            deltas += 1;
            return;
        }
        for (name, extra, value) in samples(&p) {
            let mut labels = p.labels.clone();
            if let Some((k, v)) = extra {
                labels.insert(k.to_string(), v);
            }
            labels.insert("__name__".into(), name);
            let labels: Labels = labels.into_iter().collect();
            match index.get(&labels) {
                Some(i) => out.series[*i].samples.push((value, p.time_ms)),
                None => {
                    index.insert(labels.clone(), out.series.len());
                    out.series.push(Series {
                        labels,
                        samples: vec![(value, p.time_ms)],
                        kind: p.kind,
                        help: p.help.clone(),
                        start_ms: p.start_ms,
                    });
                }
            }
        }
    });
    out.dropped_points = cannot + deltas;
    for s in &mut out.series {
        s.samples.sort_by_key(|(_, t)| *t);
    }
    out
}

fn number(v: Option<&number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => *d,
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn settings() -> Settings {
        Settings {
            namespace: String::new(),
            add_metric_suffixes: true,
            resource_to_telemetry: false,
            target_info: true,
            external_labels: [("cluster".to_string(), "eu-1".to_string())].into(),
        }
    }

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", string("checkout")),
                        kv("service.namespace", string("shop")),
                        kv("service.instance.id", string("pod-1")),
                        kv("host.name", string("node-7")),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "meter".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn point(v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: 1_700_000_000_123_000_000,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn labels(s: &Series) -> BTreeMap<&str, &str> {
        s.labels.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
    }

    #[test]
    fn a_counter_carries_job_instance_scope_and_external_labels() {
        let m = Metric {
            name: "http.server.requests".into(),
            unit: "{request}".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(7.0, vec![kv("http.method", string("GET"))])],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let out = to_series(&request(vec![m]), &settings());
        let s = out.series.iter().find(|s| labels(s)["__name__"] == "http_server_requests_total").unwrap();
        let l = labels(s);
        assert_eq!(l["job"], "shop/checkout");
        assert_eq!(l["instance"], "pod-1");
        assert_eq!(l["http_method"], "GET");
        assert_eq!(l["otel_scope_name"], "meter");
        assert_eq!(l["cluster"], "eu-1");
        assert_eq!(s.samples, vec![(7.0, 1_700_000_000_123)]);
        let names: Vec<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "labels sorted by name");
        let info = out.series.iter().find(|s| labels(s)["__name__"] == "target_info").unwrap();
        assert_eq!(labels(info)["host_name"], "node-7");
        assert_eq!(labels(info)["job"], "shop/checkout");
        assert_eq!(info.samples, vec![(1.0, 1_700_000_000_123)]);
    }

    #[test]
    fn histograms_become_cumulative_buckets() {
        let m = Metric {
            name: "rpc.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: 2_000_000,
                    count: 6,
                    sum: Some(1.5),
                    bucket_counts: vec![2, 3, 1],
                    explicit_bounds: vec![0.1, 0.5],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let out = to_series(&request(vec![m]), &settings());
        let value = |name: &str, le: Option<&str>| {
            out.series
                .iter()
                .find(|s| labels(s)["__name__"] == name && labels(s).get("le").copied() == le)
                .map(|s| s.samples[0].0)
        };
        assert_eq!(value("rpc_duration_seconds_bucket", Some("0.1")), Some(2.0));
        assert_eq!(value("rpc_duration_seconds_bucket", Some("0.5")), Some(5.0));
        assert_eq!(value("rpc_duration_seconds_bucket", Some("+Inf")), Some(6.0));
        assert_eq!(value("rpc_duration_seconds_sum", None), Some(1.5));
        assert_eq!(value("rpc_duration_seconds_count", None), Some(6.0));
    }

    #[test]
    fn deltas_are_dropped_and_no_recorded_value_is_stale() {
        let delta = Metric {
            name: "d".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(1.0, vec![]), point(2.0, vec![])],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let mut p = point(0.0, vec![]);
        p.flags = DataPointFlags::NoRecordedValueMask as u32;
        let gauge = Metric {
            name: "g".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![p] })),
            ..Default::default()
        };
        let out = to_series(&request(vec![delta, gauge]), &settings());
        assert_eq!(out.dropped_points, 2);
        let g = out.series.iter().find(|s| labels(s)["__name__"] == "g").unwrap();
        assert_eq!(g.samples[0].0.to_bits(), STALE_NAN.to_bits());
    }

    #[test]
    fn colliding_attribute_names_join_their_values() {
        let l = attribute_labels(&[kv("a.b", string("1")), kv("a_b", string("2"))]);
        assert_eq!(l["a_b"], "1;2");
    }
}
