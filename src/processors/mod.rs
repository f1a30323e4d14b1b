//! Processors: one module per processor type, named as in configuration.

pub mod batch;
