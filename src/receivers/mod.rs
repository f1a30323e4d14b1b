//! Receivers: one module per receiver type, named as in configuration.

pub mod otlp;
