//! Extensions: components outside the pipelines.

pub mod file_storage;
pub mod health_check;
