//! `service.telemetry`: how switchyard reports on itself (its logs and its self-metrics).

use serde::Deserialize;

/// `service.telemetry`: how switchyard reports on itself.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: LogsTelemetry,
    pub metrics: MetricsTelemetry,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// debug, info, warn or error.
    pub level: LogLevel,
    /// console or json.
    pub encoding: LogEncoding,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    #[serde(alias = "DEBUG")]
    Debug,
    #[serde(alias = "INFO")]
    Info,
    #[serde(alias = "WARN")]
    Warn,
    #[serde(alias = "ERROR")]
    Error,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    Console,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// none, basic, normal or detailed; `none` turns every reader off.
    pub level: MetricsLevel,
    /// The older form of a Prometheus endpoint (`host:port`): one more pull reader.
    pub address: Option<String>,
    /// Pull (Prometheus) and periodic (OTLP push) readers; unset and without `address`, one pull
    /// reader on 127.0.0.1:8888. See `crate::telemetry::readers::effective`.
    pub readers: Option<Vec<crate::telemetry::readers::ReaderConfig>>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    None,
    Basic,
    Normal,
    Detailed,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry { level: LogLevel::Info, encoding: LogEncoding::Console }
    }
}

impl Default for MetricsTelemetry {
    fn default() -> Self {
        MetricsTelemetry { level: MetricsLevel::Normal, address: None, readers: None }
    }
}
