//! The `attributes` processor: actions on the attributes of spans, log records and metric data
//! points (see `actions`), for the items `include` selects and `exclude` does not (see
//! `matcher`). Its action engine is shared with the `resource` processor.

pub mod actions;
pub mod matcher;

use crate::pipeline::{Batch, Processor, Request};
use actions::{Action, ActionConfig};
use matcher::{MatchConfig, Matcher, View};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesConfig {
    pub actions: Vec<ActionConfig>,
    pub include: Option<MatchConfig>,
    pub exclude: Option<MatchConfig>,
}

/// Checks a list of actions; the error names the action's index and key.
pub fn compile_actions(list: &[ActionConfig]) -> Result<Vec<Action>, (String, String)> {
    if list.is_empty() {
        return Err(("actions".into(), "list at least one action".into()));
    }
    list.iter().enumerate().map(|(i, a)| Action::new(a).map_err(|(k, m)| (format!("actions.{i}.{k}"), m))).collect()
}

impl AttributesConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        compile_actions(&self.actions)?;
        for (key, m) in [("include", &self.include), ("exclude", &self.exclude)] {
            if let Some(m) = m {
                let matcher = Matcher::new(m).map_err(|(k, msg)| (format!("{key}.{k}"), msg))?;
                if matcher.is_empty() {
                    return Err((key.into(), "give at least one property to match".into()));
                }
            }
        }
        Ok(())
    }
}

pub struct AttributesProcessor {
    actions: Vec<Action>,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl AttributesProcessor {
    pub fn new(cfg: &AttributesConfig) -> Result<AttributesProcessor, String> {
        let actions = compile_actions(&cfg.actions).map_err(|(k, m)| format!("{k}: {m}"))?;
        let matcher =
            |m: &Option<MatchConfig>| m.as_ref().map(Matcher::new).transpose().map_err(|(k, m)| format!("{k}: {m}"));
        Ok(AttributesProcessor { actions, include: matcher(&cfg.include)?, exclude: matcher(&cfg.exclude)? })
    }

    fn selected(&self, v: &View) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(v)) && !self.exclude.as_ref().is_some_and(|m| m.matches(v))
    }

    fn run(&self, attrs: &mut Vec<KeyValue>, context: Option<&[(String, String)]>) {
        for a in &self.actions {
            a.apply(attrs, context);
        }
    }

    fn apply(&self, request: &mut Request, context: Option<&[(String, String)]>) {
        let empty: &[KeyValue] = &[];
        match request {
            Request::Traces(t) => {
                for rs in &mut t.resource_spans {
                    let resource = rs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(empty);
                    for ss in &mut rs.scope_spans {
                        for span in &mut ss.spans {
                            let view = View {
                                resource,
                                scope: ss.scope.as_ref(),
                                attributes: &span.attributes,
                                span_name: Some(&span.name),
                                span_kind: Some(span.kind),
                                log_body: None,
                                log_severity_text: None,
                                metric_name: None,
                            };
                            if self.selected(&view) {
                                self.run(&mut span.attributes, context);
                            }
                        }
                    }
                }
            }
            Request::Logs(l) => {
                for rl in &mut l.resource_logs {
                    let resource = rl.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(empty);
                    for sl in &mut rl.scope_logs {
                        for log in &mut sl.log_records {
                            let view = View {
                                resource,
                                scope: sl.scope.as_ref(),
                                attributes: &log.attributes,
                                span_name: None,
                                span_kind: None,
                                log_body: log.body.as_ref(),
                                log_severity_text: Some(&log.severity_text),
                                metric_name: None,
                            };
                            if self.selected(&view) {
                                self.run(&mut log.attributes, context);
                            }
                        }
                    }
                }
            }
            Request::Metrics(m) => {
                for rm in &mut m.resource_metrics {
                    let resource = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(empty);
                    for sm in &mut rm.scope_metrics {
                        let scope = sm.scope.as_ref();
                        for metric in &mut sm.metrics {
                            let name = metric.name.clone();
                            let each = |attrs: &mut Vec<KeyValue>| {
                                let view = View {
                                    resource,
                                    scope,
                                    attributes: attrs,
                                    span_name: None,
                                    span_kind: None,
                                    log_body: None,
                                    log_severity_text: None,
                                    metric_name: Some(&name),
                                };
                                if self.selected(&view) {
                                    self.run(attrs, context);
                                }
                            };
                            match metric.data.as_mut() {
                                Some(metric::Data::Gauge(g)) => {
                                    g.data_points.iter_mut().for_each(|p| each(&mut p.attributes))
                                }
                                Some(metric::Data::Sum(s)) => {
                                    s.data_points.iter_mut().for_each(|p| each(&mut p.attributes))
                                }
                                Some(metric::Data::Histogram(h)) => {
                                    h.data_points.iter_mut().for_each(|p| each(&mut p.attributes))
                                }
                                Some(metric::Data::ExponentialHistogram(h)) => {
                                    h.data_points.iter_mut().for_each(|p| each(&mut p.attributes))
                                }
                                Some(metric::Data::Summary(s)) => {
                                    s.data_points.iter_mut().for_each(|p| each(&mut p.attributes))
                                }
                                None => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Processor for AttributesProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        let context = batch.context().map(<[_]>::to_vec);
        if let Ok(request) = batch.request_mut() {
            self.apply(request, context.as_deref());
        }
        out.push(batch);
    }
}

/// The `attributes` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<AttributesConfig>(
    "attributes",
    crate::registry::ALL_SIGNALS,
    "inserts, updates, deletes, hashes, extracts and converts span, log and data point attributes",
);

impl crate::pipeline::component::ProcessorSettings for AttributesConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        AttributesConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        _ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(AttributesProcessor::new(self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::traces;

    fn cfg(j: serde_json::Value) -> AttributesConfig {
        let c: AttributesConfig = serde_json::from_value(j).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn actions_apply_only_to_included_and_not_excluded_spans() {
        let mut req = traces(3);
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans[0].name = "login".into();
        spans[1].name = "login-admin".into();
        spans[2].name = "other".into();
        let p = AttributesProcessor::new(&cfg(serde_json::json!({
            "actions": [{"key": "tagged", "value": true, "action": "upsert"}],
            "include": {"match_type": "regexp", "span_names": ["^login"]},
            "exclude": {"match_type": "strict", "span_names": ["login-admin"]},
        })))
        .unwrap();
        let mut out = Vec::new();
        let mut p = p;
        p.process(Batch::from_request(Request::Traces(req)), &mut out);
        let Ok(Request::Traces(t)) = out[0].request() else { panic!() };
        let tagged: Vec<bool> = t.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.attributes.iter().any(|a| a.key == "tagged"))
            .collect();
        assert_eq!(tagged, vec![true, false, false]);
    }

    #[test]
    fn config_errors_name_the_action() {
        let c: AttributesConfig = serde_json::from_value(
            serde_json::json!({"actions": [{"key": "a", "action": "delete"}, {"key": "b", "action": "insert"}]}),
        )
        .unwrap();
        assert_eq!(c.validate().unwrap_err().0, "actions.1.value");
        let c: AttributesConfig = serde_json::from_value(serde_json::json!({
            "actions": [{"key": "a", "action": "delete"}], "include": {"match_type": "regexp", "span_names": ["("]}
        }))
        .unwrap();
        assert_eq!(c.validate().unwrap_err().0, "include.span_names");
    }
}
