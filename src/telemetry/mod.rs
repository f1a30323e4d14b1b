//! Self-observability: the collector's self-metrics, the endpoint that serves them, and logging.

pub mod local_client;
pub mod log_limit;
pub mod logs;
pub mod metrics;
pub mod otlp_push;
pub mod readers;
pub mod settings;
pub mod status_page;
pub mod tap;
pub mod tap_client;
pub mod top;
