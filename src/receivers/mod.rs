//! Receivers: one module per receiver type, named as in configuration, plus what they share.

pub mod bad_input;
pub mod budget;
pub mod filelog;
pub mod fluentforward;
pub mod jaeger;
pub mod kafka;
pub mod otlp;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod syslog;
pub mod zipkin;
