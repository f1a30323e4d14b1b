//! switchyard's own logs, through `tracing`, as `service.telemetry.logs` asks (level, console or
//! JSON); `RUST_LOG` overrides the level when set. A reload changes the level in place; the
//! encoding is fixed at start.

use crate::telemetry::settings::TelemetryConfig;
use crate::telemetry::settings::{LogEncoding, LogLevel};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, reload};

/// The running logger's settings, for a reload to change.
pub struct LogControl {
    filter: Option<reload::Handle<EnvFilter, tracing_subscriber::Registry>>,
    level: LogLevel,
    encoding: LogEncoding,
    from_env: bool,
}

fn directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// Installs the process's logger (once; later calls change nothing and return a control
/// that changes nothing).
pub fn init(cfg: &TelemetryConfig) -> LogControl {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(directive(cfg.logs.level)));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr);
    let output = match cfg.logs.encoding {
        LogEncoding::Json => output.json().boxed(),
        LogEncoding::Console => output.boxed(),
    };
    let installed = tracing_subscriber::registry().with(filter).with(output).try_init().is_ok();
    LogControl { filter: installed.then_some(handle), level: cfg.logs.level, encoding: cfg.logs.encoding, from_env }
}

impl LogControl {
    /// Takes the log settings of a reloaded configuration: a new level applies at once (unless
    /// `RUST_LOG` set it); a new encoding needs a restart, and the log says so.
    pub fn apply(&mut self, cfg: &TelemetryConfig) {
        if cfg.logs.encoding != self.encoding {
            tracing::warn!(
                "service.telemetry.logs.encoding changed: it takes effect at the next restart (logs keep their current encoding)"
            );
        }
        if cfg.logs.level == self.level || self.from_env {
            return;
        }
        if let Some(handle) = &self.filter {
            match handle.reload(EnvFilter::new(directive(cfg.logs.level))) {
                Ok(()) => {
                    self.level = cfg.logs.level;
                    tracing::info!(level = directive(cfg.logs.level), "log level changed");
                }
                Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
            }
        }
    }
}
