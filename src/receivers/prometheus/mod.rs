//! The `prometheus` receiver: scrapes Prometheus targets as Prometheus does and turns the samples
//! into OTLP metrics.

pub mod config;
pub mod parse;
pub mod relabel;
pub mod translate;
