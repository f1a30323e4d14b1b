//! switchyard's own logs, through `tracing`, as `service.telemetry.logs` asks (level, console or
//! JSON); `RUST_LOG` overrides the level when set.

use crate::config::TelemetryConfig;
use crate::config::model_types::{LogEncoding, LogLevel};
use tracing_subscriber::EnvFilter;

pub fn init(cfg: &TelemetryConfig) {
    let level = match cfg.logs.level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match cfg.logs.encoding {
        LogEncoding::Json => builder.json().try_init(),
        LogEncoding::Console => builder.try_init(),
    };
}
