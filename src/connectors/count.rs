//! The `count` connector: counts spans, span events, metrics, data points and log records and
//! hands the counts on as metrics, as the collector's count connector does: per batch and per
//! resource, one delta, monotonic sum per configured metric, with a data point per set of
//! attribute values. Without settings for a kind of item it counts all of them under the
//! collector's default names (`trace.span.count`, …).

use crate::config::Invalid;
use crate::pipeline::component::{ConnectorContext, ConnectorSettings};
use crate::pipeline::connector::Connector;
use crate::pipeline::{Batch, Request};
use crate::processors::ottl::expr::{Context, Expr, Item, compile, matches};
use crate::processors::ottl::items::{
    DataPointItem, LogItem, MetricItem, Origin, SpanEventItem, SpanItem, data_points,
};
use crate::signal::Signal;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1 as m;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The instrumentation scope of the counts it makes.
pub const SCOPE_NAME: &str = "switchyard/connector/count";

/// One attribute a count is split by.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub key: String,
    /// The value for items without the attribute; without one, those items are not counted.
    #[serde(default)]
    pub default_value: Option<String>,
}

/// One count metric.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricInfo {
    pub description: String,
    /// An item is counted when it matches any of them (all, when there are none).
    pub conditions: Vec<String>,
    pub attributes: Vec<AttributeConfig>,
}

/// The count metrics per kind of item; a kind left out is counted under its default metric.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CountConfig {
    pub spans: Option<BTreeMap<String, MetricInfo>>,
    pub spanevents: Option<BTreeMap<String, MetricInfo>>,
    pub metrics: Option<BTreeMap<String, MetricInfo>>,
    pub datapoints: Option<BTreeMap<String, MetricInfo>>,
    pub logs: Option<BTreeMap<String, MetricInfo>>,
}

/// The kinds of item, with their key, condition context and default metric.
const KINDS: [(&str, Context, &str, &str); 5] = [
    ("spans", Context::Span, "trace.span.count", "The number of spans observed."),
    ("spanevents", Context::SpanEvent, "trace.span.event.count", "The number of span events observed."),
    ("metrics", Context::Metric, "metric.count", "The number of metrics observed."),
    ("datapoints", Context::DataPoint, "metric.datapoint.count", "The number of data points observed."),
    ("logs", Context::LogRecord, "log.record.count", "The number of log records observed."),
];

/// A compiled count metric.
#[derive(Debug)]
struct Def {
    name: String,
    description: String,
    conditions: Vec<Expr>,
    attributes: Vec<AttributeConfig>,
}

impl CountConfig {
    fn section(&self, i: usize) -> &Option<BTreeMap<String, MetricInfo>> {
        [&self.spans, &self.spanevents, &self.metrics, &self.datapoints, &self.logs][i]
    }

    /// The metrics of each kind of item, in `KINDS` order.
    fn compile(&self) -> Result<[Vec<Def>; 5], Invalid> {
        let mut out: [Vec<Def>; 5] = Default::default();
        for (i, (key, context, default_name, default_description)) in KINDS.iter().enumerate() {
            let Some(section) = self.section(i) else {
                out[i].push(Def {
                    name: default_name.to_string(),
                    description: default_description.to_string(),
                    conditions: Vec::new(),
                    attributes: Vec::new(),
                });
                continue;
            };
            for (name, info) in section {
                let at = format!("{key}.{name}");
                if name.is_empty() {
                    return Err(Invalid::new(*key, "a metric needs a name"));
                }
                if *key == "metrics" && !info.attributes.is_empty() {
                    return Err(Invalid::new(
                        format!("{at}.attributes"),
                        "metrics are counted without attributes (count data points by attribute instead)",
                    ));
                }
                if let Some(j) = info.attributes.iter().position(|a| a.key.is_empty()) {
                    return Err(Invalid::new(format!("{at}.attributes.{j}.key"), "an attribute needs a key"));
                }
                let conditions = info
                    .conditions
                    .iter()
                    .enumerate()
                    .map(|(j, c)| {
                        compile(c, *context)
                            .map_err(|e| Invalid::new(format!("{at}.conditions.{j}"), format!("\"{c}\": {e}")))
                    })
                    .collect::<Result<Vec<Expr>, Invalid>>()?;
                out[i].push(Def {
                    name: name.clone(),
                    description: info.description.clone(),
                    conditions,
                    attributes: info.attributes.clone(),
                });
            }
        }
        Ok(out)
    }
}

impl ConnectorSettings for CountConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        self.compile().map(|_| ())
    }

    fn build(&self, _ctx: &ConnectorContext) -> Result<Arc<dyn Connector>, String> {
        let defs = self.compile().map_err(|i| format!("{}: {}", i.key, i.message))?;
        Ok(Arc::new(Count { defs }))
    }
}

struct Count {
    defs: [Vec<Def>; 5],
}

/// Counts per metric (by name), per set of attribute values, and the latest item time seen.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<usize, BTreeMap<Vec<(String, String)>, u64>>,
    earliest: u64,
    latest: u64,
}

impl Tally {
    /// Counts one item for every metric of `defs` it qualifies for.
    fn add(&mut self, defs: &[Def], base: usize, item: &dyn Item, levels: [&[KeyValue]; 3], time: u64) {
        self.latest = self.latest.max(time);
        if time > 0 {
            self.earliest = if self.earliest == 0 { time } else { self.earliest.min(time) };
        }
        for (k, def) in defs.iter().enumerate() {
            if !def.conditions.is_empty() && !def.conditions.iter().any(|c| matches(c, item)) {
                continue;
            }
            let mut values = Vec::with_capacity(def.attributes.len());
            for a in &def.attributes {
                // The item's own attribute first, then its scope's, then its resource's.
                let found = levels.iter().find_map(|attrs| crate::attributes::get(attrs, &a.key));
                match (found, &a.default_value) {
                    (Some(v), _) => values.push((a.key.clone(), crate::exporters::values::text(Some(v)))),
                    (None, Some(d)) => values.push((a.key.clone(), d.clone())),
                    // Without the attribute and without a default, it is not counted.
                    (None, None) => break,
                }
            }
            if values.len() == def.attributes.len() {
                *self.counts.entry(base + k).or_default().entry(values).or_default() += 1;
            }
        }
    }
}

impl Count {
    /// Every metric definition, in one numbering (`KINDS` order).
    fn all(&self) -> Vec<&Def> {
        self.defs.iter().flatten().collect()
    }

    /// Where the definitions of kind `i` start in `all`.
    fn base(&self, i: usize) -> usize {
        self.defs[..i].iter().map(Vec::len).sum()
    }

    fn metrics(&self, tally: Tally) -> Vec<m::Metric> {
        let all = self.all();
        // Timed at the latest item counted (never later than now: a span from the future must
        // not hold up a stream downstream), starting at the earliest.
        let now = crate::timefmt::now_unix_nanos();
        let time = if tally.latest > 0 { tally.latest.min(now) } else { now };
        let start = tally.earliest.min(time);
        tally
            .counts
            .into_iter()
            .map(|(k, by_values)| m::Metric {
                name: all[k].name.clone(),
                description: all[k].description.clone(),
                data: Some(m::metric::Data::Sum(m::Sum {
                    data_points: by_values
                        .into_iter()
                        .map(|(values, n)| m::NumberDataPoint {
                            attributes: values.into_iter().map(|(k, v)| string_kv(k, v)).collect(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            value: Some(m::number_data_point::Value::AsInt(i64::try_from(n).unwrap_or(i64::MAX))),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: m::AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                })),
                ..Default::default()
            })
            .collect()
    }
}

fn string_kv(key: String, value: String) -> KeyValue {
    KeyValue { key, value: Some(AnyValue { value: Some(any_value::Value::StringValue(value)) }), ..Default::default() }
}

/// The count metrics of one resource.
fn resource_metrics(resource: Option<&Resource>, metrics: Vec<m::Metric>) -> m::ResourceMetrics {
    m::ResourceMetrics {
        resource: resource.cloned(),
        scope_metrics: vec![m::ScopeMetrics {
            scope: Some(InstrumentationScope { name: SCOPE_NAME.to_string(), ..Default::default() }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

impl Connector for Count {
    fn derives(&self) -> bool {
        true
    }

    fn route(&self, batch: Batch, downstream: &[String], out: &mut Vec<(usize, Batch)>) {
        let request = match batch.request() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "count: cannot decode a batch; not counted");
                return;
            }
        };
        let no: &[KeyValue] = &[];
        let mut resources = Vec::new();
        match request {
            Request::Traces(r) => {
                let (spans, events) = (&self.defs[0], &self.defs[1]);
                let (bs, be) = (self.base(0), self.base(1));
                for rs in &r.resource_spans {
                    let mut tally = Tally::default();
                    let rattrs = rs.resource.as_ref().map_or(no, |x| &x.attributes);
                    for ss in &rs.scope_spans {
                        let origin = Origin { resource: rs.resource.as_ref(), scope: ss.scope.as_ref() };
                        let sattrs = ss.scope.as_ref().map_or(no, |x| &x.attributes);
                        for span in &ss.spans {
                            let item = SpanItem { span, origin };
                            tally.add(spans, bs, &item, [&span.attributes, sattrs, rattrs], span.end_time_unix_nano);
                            for event in &span.events {
                                let item = SpanEventItem { event, span, origin };
                                tally.add(events, be, &item, [&event.attributes, sattrs, rattrs], event.time_unix_nano);
                            }
                        }
                    }
                    if !tally.counts.is_empty() {
                        resources.push(resource_metrics(rs.resource.as_ref(), self.metrics(tally)));
                    }
                }
            }
            Request::Metrics(r) => {
                let (metrics, points) = (&self.defs[2], &self.defs[3]);
                let (bm, bp) = (self.base(2), self.base(3));
                for rm in &r.resource_metrics {
                    let mut tally = Tally::default();
                    let rattrs = rm.resource.as_ref().map_or(no, |x| &x.attributes);
                    for sm in &rm.scope_metrics {
                        let origin = Origin { resource: rm.resource.as_ref(), scope: sm.scope.as_ref() };
                        let sattrs = sm.scope.as_ref().map_or(no, |x| &x.attributes);
                        for metric in &sm.metrics {
                            tally.add(metrics, bm, &MetricItem { metric, origin }, [no, sattrs, rattrs], 0);
                            for point in data_points(metric, origin) {
                                let item: &DataPointItem = &point;
                                tally.add(points, bp, item, [item.attributes, sattrs, rattrs], item.time);
                            }
                        }
                    }
                    if !tally.counts.is_empty() {
                        resources.push(resource_metrics(rm.resource.as_ref(), self.metrics(tally)));
                    }
                }
            }
            Request::Logs(r) => {
                let (logs, bl) = (&self.defs[4], self.base(4));
                for rl in &r.resource_logs {
                    let mut tally = Tally::default();
                    let rattrs = rl.resource.as_ref().map_or(no, |x| &x.attributes);
                    for sl in &rl.scope_logs {
                        let origin = Origin { resource: rl.resource.as_ref(), scope: sl.scope.as_ref() };
                        let sattrs = sl.scope.as_ref().map_or(no, |x| &x.attributes);
                        for log in &sl.log_records {
                            let time = log.time_unix_nano.max(log.observed_time_unix_nano);
                            tally.add(logs, bl, &LogItem { log, origin }, [&log.attributes, sattrs, rattrs], time);
                        }
                    }
                    if !tally.counts.is_empty() {
                        resources.push(resource_metrics(rl.resource.as_ref(), self.metrics(tally)));
                    }
                }
            }
        }
        if resources.is_empty() {
            return;
        }
        let counts = Request::Metrics(ExportMetricsServiceRequest { resource_metrics: resources });
        // Every metrics pipeline that takes from it gets the counts (a copy each but the last).
        let Some(last) = downstream.len().checked_sub(1) else { return };
        let batch = Batch::from_request(counts);
        for i in 0..last {
            out.push((i, batch.clone()));
        }
        out.push((last, batch));
    }
}

/// The `count` connector's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::connector::<CountConfig>(
    "count",
    crate::registry::ALL_SIGNALS,
    &[(Signal::Traces, Signal::Metrics), (Signal::Metrics, Signal::Metrics), (Signal::Logs, Signal::Metrics)],
    "counts spans, span events, metrics, data points and log records into delta sums, by attribute",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::{kv, string};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};

    fn count(yaml: &str) -> Arc<dyn Connector> {
        let cfg: CountConfig = crate::config::parse_yaml("c.yaml", yaml).unwrap();
        cfg.validate().unwrap();
        cfg.build(&ConnectorContext { name: "count".into(), telemetry: Default::default() }).unwrap()
    }

    /// Three spans of service `checkout` (one failed, two with an `env`), one with two events.
    fn spans() -> Batch {
        let span = |name: &str, env: Option<&str>, failed: bool, events: usize| Span {
            name: name.into(),
            attributes: env.map(|e| vec![kv("env", string(e))]).unwrap_or_default(),
            status: failed.then(|| Status { code: 2, ..Default::default() }),
            events: (0..events).map(|_| Event { name: "retry".into(), ..Default::default() }).collect(),
            end_time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        Batch::from_request(Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string("checkout"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span("a", Some("prod"), false, 2),
                        span("b", Some("dev"), true, 0),
                        span("c", None, false, 0),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }))
    }

    /// The counts handed on: metric name → (attribute values → count).
    fn counted(c: &dyn Connector, batch: Batch) -> BTreeMap<String, BTreeMap<String, i64>> {
        let mut out = Vec::new();
        c.route(batch, &["metrics".to_string()], &mut out);
        let mut got = BTreeMap::new();
        for (_, b) in out {
            let Some(Request::Metrics(r)) = b.decoded() else { panic!("counts are metrics") };
            for rm in &r.resource_metrics {
                assert_eq!(rm.resource.as_ref().map(|r| r.attributes.len()), Some(1), "the resource comes along");
                for sm in &rm.scope_metrics {
                    assert_eq!(sm.scope.as_ref().map(|s| s.name.as_str()), Some(SCOPE_NAME));
                    for metric in &sm.metrics {
                        let Some(m::metric::Data::Sum(sum)) = &metric.data else { panic!("a sum") };
                        assert!(
                            sum.is_monotonic && sum.aggregation_temporality == m::AggregationTemporality::Delta as i32
                        );
                        for p in &sum.data_points {
                            let key: Vec<String> = p
                                .attributes
                                .iter()
                                .map(|a| format!("{}={}", a.key, crate::exporters::values::text(a.value.as_ref())))
                                .collect();
                            let Some(m::number_data_point::Value::AsInt(n)) = p.value else { panic!("an int") };
                            assert_eq!(p.time_unix_nano, 1_700_000_000_000_000_000, "the latest item's time");
                            got.entry(metric.name.clone()).or_insert_with(BTreeMap::new).insert(key.join(","), n);
                        }
                    }
                }
            }
        }
        got
    }

    #[test]
    fn without_settings_spans_and_span_events_are_counted_under_the_collector_names() {
        let got = counted(&*count("{}"), spans());
        let names: Vec<&String> = got.keys().collect();
        assert_eq!(names, ["trace.span.count", "trace.span.event.count"]);
        assert_eq!(got["trace.span.count"][""], 3);
        assert_eq!(got["trace.span.event.count"][""], 2);
    }

    #[test]
    fn custom_counts_take_conditions_and_attributes_with_defaults_and_the_resource_fallback() {
        let c = count(
            "spans:\n  errors:\n    description: failed spans\n    conditions: ['status.code == STATUS_CODE_ERROR', 'name == \"nothing\"']\n  by_env:\n    attributes: [{key: env, default_value: none}, {key: service.name}]\n  with_env_only:\n    attributes: [{key: env}]\nspanevents: {}\n",
        );
        let got = counted(&*c, spans());
        assert_eq!(got["errors"][""], 1);
        assert_eq!(
            got["by_env"],
            BTreeMap::from([
                ("env=dev,service.name=checkout".to_string(), 1),
                ("env=none,service.name=checkout".to_string(), 1),
                ("env=prod,service.name=checkout".to_string(), 1),
            ])
        );
        assert_eq!(
            got["with_env_only"].values().sum::<i64>(),
            2,
            "spans without env and without a default are not counted"
        );
        assert!(!got.contains_key("trace.span.event.count"), "span events: an empty section counts nothing");
    }

    #[test]
    fn settings_mistakes_name_their_key() {
        let err = |yaml: &str| {
            let cfg: CountConfig = crate::config::parse_yaml("c.yaml", yaml).unwrap();
            cfg.validate().unwrap_err()
        };
        assert_eq!(err("metrics:\n  m:\n    attributes: [{key: a}]\n").key, "metrics.m.attributes");
        assert_eq!(err("logs:\n  l:\n    conditions: ['severity_number >']\n").key, "logs.l.conditions.0");
        assert_eq!(err("spans:\n  s:\n    attributes: [{key: ''}]\n").key, "spans.s.attributes.0.key");
    }
}
