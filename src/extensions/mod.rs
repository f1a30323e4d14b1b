//! Extensions: components outside the pipelines.

pub mod health_check;
