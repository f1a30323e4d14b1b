//! Processors: one module per processor type, named as in configuration.

pub mod attributes;
pub mod batch;
pub mod filter;
pub mod memory_limiter;
pub mod ottl;
pub mod probabilistic_sampler;
pub mod redaction;
pub mod resource;
pub mod tail_sampling;
pub mod transform;
