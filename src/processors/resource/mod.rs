//! The `resource` processor: the `attributes` processor's actions (insert, update, upsert, delete,
//! hash, extract, convert) on resource attributes, for every resource of every signal.

use super::attributes::actions::{Action, ActionConfig};
use super::attributes::compile_actions;
use crate::pipeline::{Batch, Processor, Request};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    pub attributes: Vec<ActionConfig>,
}

impl ResourceConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        compile_actions(&self.attributes).map(|_| ()).map_err(|(k, m)| (k.replacen("actions", "attributes", 1), m))
    }
}

pub struct ResourceProcessor {
    actions: Vec<Action>,
}

impl ResourceProcessor {
    pub fn new(cfg: &ResourceConfig) -> Result<ResourceProcessor, String> {
        Ok(ResourceProcessor { actions: compile_actions(&cfg.attributes).map_err(|(k, m)| format!("{k}: {m}"))? })
    }

    fn run(&self, resource: &mut Option<Resource>, context: Option<&[(String, String)]>) {
        let r = resource.get_or_insert_with(Resource::default);
        for a in &self.actions {
            a.apply(&mut r.attributes, context);
        }
    }
}

impl Processor for ResourceProcessor {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        let context = batch.context().map(<[_]>::to_vec);
        let context = context.as_deref();
        if let Ok(request) = batch.request_mut() {
            match request {
                Request::Traces(t) => t.resource_spans.iter_mut().for_each(|r| self.run(&mut r.resource, context)),
                Request::Metrics(m) => m.resource_metrics.iter_mut().for_each(|r| self.run(&mut r.resource, context)),
                Request::Logs(l) => l.resource_logs.iter_mut().for_each(|r| self.run(&mut r.resource, context)),
            }
        }
        out.push(batch);
    }
}

/// The `resource` processor's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::processor::<ResourceConfig>(
    "resource",
    crate::registry::ALL_SIGNALS,
    "the attributes actions on resource attributes",
);

impl crate::pipeline::component::ProcessorSettings for ResourceConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        ResourceConfig::validate(self).map_err(Into::into)
    }

    fn build(
        &self,
        _ctx: &crate::pipeline::component::ProcessorContext,
    ) -> Result<Box<dyn crate::pipeline::Processor>, String> {
        Ok(Box::new(ResourceProcessor::new(self)?))
    }
}
