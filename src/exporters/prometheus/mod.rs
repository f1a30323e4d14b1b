//! OTLP → Prometheus, shared by the exporters that speak Prometheus (`prometheusremotewrite`):
//! metric and label names (`naming`) and time series (`series`), per PROTOCOLS.md §4.7.

pub mod naming;
pub mod series;
