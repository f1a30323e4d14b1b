//! The `switchyard` command: run the gateway, validate a configuration, or list component types.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::config::{self, Config, ConfigError};
use switchyard::service::RunningService;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "A telemetry gateway: OTLP in, batching and processing, fan-out to backends"
)]
struct Cli {
    /// Configuration file; repeat to merge several (later files override earlier ones).
    /// Without any, switchyard runs its embedded default configuration.
    #[arg(long = "config", short = 'c', global = true, value_name = "FILE")]
    config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Check the configuration and print the pipelines it would build.
    Validate,
    /// List every receiver, processor, exporter and extension type with its signals.
    Components,
}

fn load(cli: &Cli) -> Result<(Config, bool), ConfigError> {
    if cli.config.is_empty() {
        let sources = [("<embedded default>".to_string(), config::DEFAULT_CONFIG.to_string())];
        Ok((config::load_sources(&sources)?, true))
    } else {
        Ok((config::load_files(&cli.config)?, false))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Components) => {
            print_components();
            ExitCode::SUCCESS
        }
        Some(Command::Validate) => match load(&cli) {
            Ok((cfg, _)) => {
                print_pipelines(&cfg);
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Some(Command::Run) | None => match load(&cli) {
            Ok((cfg, default)) => run(cfg, default),
            Err(e) => config_failure(&e),
        },
    }
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("switchyard: invalid configuration: {e}");
    ExitCode::from(2)
}

fn print_components() {
    use switchyard::config::ComponentKind;
    for kind in [ComponentKind::Receiver, ComponentKind::Processor, ComponentKind::Exporter, ComponentKind::Extension] {
        println!("{}:", kind.section());
        for t in switchyard::components::TYPES.iter().filter(|t| t.kind == kind) {
            let signals: Vec<String> = t.signals.iter().map(|s| s.to_string()).collect();
            let signals = if signals.is_empty() { "-".to_string() } else { signals.join(", ") };
            println!("  {:<14} {:<24} {}", t.name, signals, t.description);
        }
    }
}

fn print_pipelines(cfg: &Config) {
    println!("configuration is valid; pipelines:");
    for (id, p) in &cfg.pipelines {
        let list =
            |v: &[switchyard::config::ComponentId]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
        let processors = if p.processors.is_empty() { "(none)".to_string() } else { list(&p.processors) };
        println!(
            "  {id}: receivers [{}] -> processors [{processors}] -> exporters [{}]",
            list(&p.receivers),
            list(&p.exporters)
        );
    }
}

fn run(cfg: Config, default: bool) -> ExitCode {
    switchyard::telemetry::logs::init(&cfg.telemetry);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Signals are caught before anything starts, so that a SIGHUP during start-up does not
        // kill the process with the default action either.
        let signals = match Signals::listen() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for signals; stop with SIGKILL");
                None
            }
        };
        if default {
            tracing::info!(
                "no --config given: using the embedded default configuration (OTLP gRPC on localhost:4317 and HTTP on localhost:4318 -> batch -> debug)"
            );
        }
        let service = match RunningService::start(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("switchyard: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        match signals {
            Some(mut s) => s.wait_for_stop().await,
            None => std::future::pending().await,
        }
        if service.shutdown().await { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    })
}

/// Raises the soft limit on open files to the hard one, as the Go runtime does for the
/// collector: every listener may hold `max_connections` (1024 by default) connections, more
/// than a soft limit of 1024 allows for the whole process.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(max)) = (limit.current, limit.maximum)
        && current < max
    {
        let raised = rustix::process::Rlimit { current: Some(max), maximum: Some(max) };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(from = current, to = max, "raised the open-file limit"),
            Err(e) => tracing::warn!(error = %e, current, "cannot raise the open-file limit"),
        }
    }
}

/// The signals switchyard acts on: SIGTERM and SIGINT stop it (draining queues within the
/// deadline); SIGHUP, which would kill the process by default, is caught and only logged until
/// configuration reload exists.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns at SIGTERM or SIGINT; SIGHUP is answered with a warning and the wait goes on.
    async fn wait_for_stop(&mut self) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return tracing::info!("SIGTERM received"),
                _ = self.int.recv() => return tracing::info!("SIGINT received"),
                _ = self.hup.recv() => tracing::warn!(
                    "SIGHUP received: configuration reload is not supported yet; still running with the configuration loaded at start (restart to apply changes)"
                ),
            }
        }
    }
}
