//! Exporters: one module per exporter type, named as in configuration, plus the shared queue.

pub mod clickhouse;
pub mod debug;
pub mod elasticsearch;
pub mod file;
pub mod http_post;
pub mod kafka;
pub mod loadbalancing;
pub mod loki;
pub mod otlp;
pub mod otlphttp;
pub mod partial;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod values;
