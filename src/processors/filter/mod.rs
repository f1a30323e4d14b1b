//! The `filter` processor: drops spans, span events, metrics, data points and log records for
//! which any of its OTTL-style conditions is true (see `processors::ottl`). Conditions are
//! compiled at start; a resource or scope left with nothing is dropped with it, and a batch left
//! with nothing does not go on (nothing is sent for it).

use super::ottl::expr::{Context, Expr, compile, matches};
use super::ottl::items::{LogItem, MetricItem, Origin, SpanEventItem, SpanItem, data_points};
use crate::pipeline::{Batch, Processor, Request, Signal};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// The collector's default. Conditions here cannot fail at run time (a value of the wrong
    /// type simply does not match), so the three modes behave alike.
    #[default]
    Propagate,
    Ignore,
    Silent,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConditions {
    pub span: Vec<String>,
    pub spanevent: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConditions {
    pub metric: Vec<String>,
    pub datapoint: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConditions {
    pub log_record: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub error_mode: ErrorMode,
    pub traces: TracesConditions,
    pub metrics: MetricsConditions,
    pub logs: LogsConditions,
}

/// The compiled conditions of each kind of item.
#[derive(Default)]
struct Compiled {
    span: Vec<Expr>,
    spanevent: Vec<Expr>,
    metric: Vec<Expr>,
    datapoint: Vec<Expr>,
    log_record: Vec<Expr>,
}

impl FilterConfig {
    fn lists(&self) -> [(&'static str, &Vec<String>, Context); 5] {
        [
            ("traces.span", &self.traces.span, Context::Span),
            ("traces.spanevent", &self.traces.spanevent, Context::SpanEvent),
            ("metrics.metric", &self.metrics.metric, Context::Metric),
            ("metrics.datapoint", &self.metrics.datapoint, Context::DataPoint),
            ("logs.log_record", &self.logs.log_record, Context::LogRecord),
        ]
    }

    fn compile(&self) -> Result<Compiled, (String, String)> {
        let mut out: [Vec<Expr>; 5] = Default::default();
        for (i, (key, list, context)) in self.lists().into_iter().enumerate() {
            for (j, src) in list.iter().enumerate() {
                let e = compile(src, context).map_err(|e| (format!("{key}.{j}"), format!("\"{src}\": {e}")))?;
                out[i].push(e);
            }
        }
        let [span, spanevent, metric, datapoint, log_record] = out;
        Ok(Compiled { span, spanevent, metric, datapoint, log_record })
    }

    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.lists().iter().all(|(_, l, _)| l.is_empty()) {
            return Err(("traces".into(), "give at least one condition (traces, metrics or logs)".into()));
        }
        self.compile().map(|_| ())
    }
}

pub struct FilterProcessor {
    name: String,
    telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    conditions: Compiled,
}

impl FilterProcessor {
    pub fn new(
        name: String,
        cfg: &FilterConfig,
        telemetry: std::sync::Arc<crate::telemetry::metrics::Metrics>,
    ) -> Result<FilterProcessor, String> {
        let conditions = cfg.compile().map_err(|(k, m)| format!("{k}: {m}"))?;
        Ok(FilterProcessor { name, telemetry, conditions })
    }

    /// Filters a request in place; returns how many items went.
    fn filter(&self, request: &mut Request) -> usize {
        let any = |list: &[Expr], item: &dyn super::ottl::expr::Item| list.iter().any(|e| matches(e, item));
        let c = &self.conditions;
        let before = request.item_count();
        match request {
            Request::Traces(t) => {
                if c.span.is_empty() && c.spanevent.is_empty() {
                    return 0;
                }
                for rs in &mut t.resource_spans {
                    let resource = rs.resource.as_ref();
                    for ss in &mut rs.scope_spans {
                        let origin = Origin { resource, scope: ss.scope.as_ref() };
                        ss.spans.retain(|span| !any(&c.span, &SpanItem { span, origin }));
                        if !c.spanevent.is_empty() {
                            for span in &mut ss.spans {
                                let snapshot = span.clone();
                                span.events.retain(|event| {
                                    !any(&c.spanevent, &SpanEventItem { event, span: &snapshot, origin })
                                });
                            }
                        }
                    }
                    rs.scope_spans.retain(|ss| !ss.spans.is_empty());
                }
                t.resource_spans.retain(|rs| !rs.scope_spans.is_empty());
            }
            Request::Metrics(m) => {
                if c.metric.is_empty() && c.datapoint.is_empty() {
                    return 0;
                }
                for rm in &mut m.resource_metrics {
                    let resource = rm.resource.as_ref();
                    for sm in &mut rm.scope_metrics {
                        let origin = Origin { resource, scope: sm.scope.as_ref() };
                        sm.metrics.retain(|metric| !any(&c.metric, &MetricItem { metric, origin }));
                        if !c.datapoint.is_empty() {
                            for metric in &mut sm.metrics {
                                filter_points(metric, &c.datapoint, origin);
                            }
                            sm.metrics.retain(|m| crate::pipeline::metric_points(m.data.as_ref()) > 0);
                        }
                    }
                    rm.scope_metrics.retain(|sm| !sm.metrics.is_empty());
                }
                m.resource_metrics.retain(|rm| !rm.scope_metrics.is_empty());
            }
            Request::Logs(l) => {
                if c.log_record.is_empty() {
                    return 0;
                }
                for rl in &mut l.resource_logs {
                    let resource = rl.resource.as_ref();
                    for sl in &mut rl.scope_logs {
                        let origin = Origin { resource, scope: sl.scope.as_ref() };
                        sl.log_records.retain(|log| !any(&c.log_record, &LogItem { log, origin }));
                    }
                    rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
                }
                l.resource_logs.retain(|rl| !rl.scope_logs.is_empty());
            }
        }
        before - request.item_count()
    }
}

/// Drops the data points of `metric` that match a condition.
fn filter_points(m: &mut Metric, conditions: &[Expr], origin: Origin) {
    let keep: Vec<bool> =
        data_points(m, origin).iter().map(|item| !conditions.iter().any(|e| matches(e, item))).collect();
    crate::pipeline::retain_points(m, |i| keep[i]);
}

impl Processor for FilterProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let signal: Signal = batch.signal();
        let c = &self.conditions;
        let has_conditions = match signal {
            Signal::Traces => !c.span.is_empty() || !c.spanevent.is_empty(),
            Signal::Metrics => !c.metric.is_empty() || !c.datapoint.is_empty(),
            Signal::Logs => !c.log_record.is_empty(),
        };
        if !has_conditions {
            // Nothing to decide for this signal: the batch goes on untouched (still encoded).
            out.push(batch);
            return;
        }
        super::drop_items(&self.telemetry, &self.name, batch, out, |request| self.filter(request));
    }
}

/// The `filter` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<FilterConfig>(
    "filter",
    crate::registry::ALL_SIGNALS,
    "drops spans, span events, metrics, data points and log records matching OTTL conditions",
);

impl crate::pipeline::component::ProcessorSettings for FilterConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        FilterConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(FilterProcessor::new(ctx.name.clone(), self, ctx.telemetry.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::{fixture, traces};
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message;

    fn processor(yaml_like: FilterConfig) -> FilterProcessor {
        yaml_like.validate().unwrap();
        FilterProcessor::new("filter".into(), &yaml_like, Default::default()).unwrap()
    }

    fn run(p: &mut FilterProcessor, batch: Batch) -> Vec<Batch> {
        let mut out = Vec::new();
        p.process(batch, &mut out);
        out
    }

    #[test]
    fn spans_matching_any_condition_go_and_empty_batches_stop() {
        let mut req = traces(4);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans[0].name = "GET /healthz".into();
        spans[1].kind = 3;
        let mut p = processor(FilterConfig {
            traces: TracesConditions {
                span: vec![r#"name == "GET /healthz""#.into(), "kind == SPAN_KIND_CLIENT".into()],
                spanevent: vec![],
            },
            ..Default::default()
        });
        let out = run(&mut p, Batch::from_request(Request::Traces(req)));
        assert_eq!(out[0].items(), 2);
        let mut p = processor(FilterConfig {
            traces: TracesConditions { span: vec!["true".into()], spanevent: vec![] },
            ..Default::default()
        });
        assert!(run(&mut p, Batch::from_request(Request::Traces(traces(3)))).is_empty(), "nothing left: no batch");
    }

    #[test]
    fn real_sdk_metrics_lose_matching_metrics_and_points() {
        let req = ExportMetricsServiceRequest::decode(&fixture("python-sdk-metrics.pb")[..]).unwrap();
        let before = Request::Metrics(req.clone()).item_count();
        let mut p = processor(FilterConfig {
            metrics: MetricsConditions {
                metric: vec![r#"type == METRIC_DATA_TYPE_HISTOGRAM"#.into()],
                datapoint: vec![r#"metric.type == METRIC_DATA_TYPE_SUM and value_int > -1000000000"#.into()],
            },
            ..Default::default()
        });
        let out = run(&mut p, Batch::from_request(Request::Metrics(req)));
        let left = out.first().map(|b| b.items()).unwrap_or(0);
        assert!(left < before, "{left} of {before}");
        if let Some(b) = out.first()
            && let Ok(Request::Metrics(m)) = b.request()
        {
            for metric in m.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
                assert_ne!(crate::processors::ottl::items::metric_type(metric), 3, "histograms are gone");
            }
        }
    }

    #[test]
    fn logs_below_warn_are_dropped() {
        let req = ExportLogsServiceRequest::decode(&fixture("python-sdk-logs.pb")[..]).unwrap();
        let mut p = processor(FilterConfig {
            logs: LogsConditions { log_record: vec!["severity_number < SEVERITY_NUMBER_WARN".into()] },
            ..Default::default()
        });
        for b in run(&mut p, Batch::from_request(Request::Logs(req))) {
            let Ok(Request::Logs(l)) = b.request() else { panic!() };
            for r in l.resource_logs.iter().flat_map(|r| &r.scope_logs).flat_map(|s| &s.log_records) {
                assert!(r.severity_number >= 13, "{r:?}");
            }
        }
    }

    #[test]
    fn a_bad_condition_is_a_config_error_with_its_place() {
        let cfg = FilterConfig {
            traces: TracesConditions { span: vec!["name == \"a\"".into(), "nmae == \"b\"".into()], spanevent: vec![] },
            ..Default::default()
        };
        let (key, msg) = cfg.validate().unwrap_err();
        assert_eq!(key, "traces.span.1");
        assert!(msg.starts_with("\"nmae == \"b\"\": column 1: unknown path nmae"), "{msg}");
        assert_eq!(FilterConfig::default().validate().unwrap_err().0, "traces");
    }
}
