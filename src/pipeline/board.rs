//! What runs, as the operator's tools see it: each pipeline's receivers, processors and
//! exporters, each exporter's delivery state (`queue::health`), and the configuration in force
//! (secrets redacted). The service sets it after every start and reload; the health check and
//! the status page read it.

use super::queue::health::ExporterHealth;
use std::sync::{Arc, RwLock};

/// The running pipelines, shared by the service (which sets them) and their readers.
#[derive(Clone, Default)]
pub struct Board(Arc<RwLock<Vec<PipelineView>>>, Arc<RwLock<String>>);

/// One pipeline: its id (`traces/vendor`) and components in order, exporters with their state,
/// and the connectors it takes data from and hands data to (which join it to other pipelines).
#[derive(Clone)]
pub struct PipelineView {
    pub id: String,
    pub receivers: Vec<String>,
    pub processors: Vec<String>,
    pub exporters: Vec<(String, Arc<ExporterHealth>)>,
    pub from_connectors: Vec<String>,
    pub to_connectors: Vec<String>,
}

impl Board {
    pub fn set(&self, pipelines: Vec<PipelineView>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = pipelines;
    }

    pub fn get(&self) -> Vec<PipelineView> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The configuration in force, as text with its secrets redacted.
    pub fn set_config(&self, text: String) {
        *self.1.write().unwrap_or_else(|p| p.into_inner()) = text;
    }

    pub fn config(&self) -> String {
        self.1.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
