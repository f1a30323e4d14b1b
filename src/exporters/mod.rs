//! Exporters: one module per exporter type, named as in configuration, plus the shared queue.

pub mod debug;
pub mod file;
pub mod otlphttp;
pub mod queue;
pub mod retry;
