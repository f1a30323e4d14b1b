//! The `switchyard` command: run the gateway, validate a configuration, or list component types.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchyard::config::ConfigError;
use switchyard::model::{self, Config};
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
    /// Reload the configuration when a file given with --config changes (checked every second;
    /// a change is applied once the files have been still for half a second). SIGHUP reloads
    /// with or without this.
    #[arg(long)]
    watch: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Check the configuration and print the pipelines it would build and where each exporter
    /// sends; warnings (an unset variable without a default) are errors with --strict.
    Validate {
        #[arg(long)]
        strict: bool,
    },
    /// List every receiver, processor, exporter and extension type with its signals.
    Components,
    /// Print a sample of the items passing a component of a running switchyard, one JSON
    /// object per line (its id as in the configuration: a receiver, processor, exporter or
    /// connector).
    Tap {
        /// The component's id, as in the configuration (`otlp`, `batch`, `otlp/jaeger`).
        component: String,
        /// Only the component of this kind with that id: receiver, processor, exporter or connector (a
        /// receiver and an exporter may share an id).
        #[arg(long)]
        kind: Option<String>,
        /// Items per second at most from each component tapped (the rest is skipped and
        /// counted on stderr).
        #[arg(long, default_value_t = switchyard::telemetry::tap::DEFAULT_LIMIT)]
        limit: u32,
        /// Exit after printing this many items.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
        /// Its self-metrics address.
        #[arg(long, default_value = "127.0.0.1:8888")]
        address: String,
    },
    /// Show per-component rates of a running switchyard, refreshed every second.
    Top {
        /// Its self-metrics address.
        #[arg(long, default_value = "127.0.0.1:8888")]
        address: String,
        /// Print this many tables and exit (for scripts).
        #[arg(long)]
        samples: Option<usize>,
    },
}

fn load(cli: &Cli) -> Result<(Config, bool), ConfigError> {
    if cli.config.is_empty() {
        let sources = [("<embedded default>".to_string(), model::DEFAULT_CONFIG.to_string())];
        Ok((model::load_sources(&sources)?, true))
    } else {
        Ok((model::load_files(&cli.config)?, false))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Components) => {
            print_components();
            ExitCode::SUCCESS
        }
        Some(Command::Tap { component, kind, limit, count, address }) => {
            let args = switchyard::telemetry::tap_client::TapArgs { address, component, kind, limit, count };
            client("tap", switchyard::telemetry::tap_client::run(&args))
        }
        Some(Command::Top { address, samples }) => client("top", switchyard::telemetry::top::run(&address, samples)),
        Some(Command::Validate { strict }) => match load(&cli) {
            Ok((cfg, _)) => {
                for w in &cfg.warnings {
                    eprintln!("switchyard: warning: {w}");
                }
                if strict && !cfg.warnings.is_empty() {
                    eprintln!("switchyard: invalid configuration (--strict): {} warning(s)", cfg.warnings.len());
                    return ExitCode::from(2);
                }
                print_pipelines(&cfg);
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Some(Command::Run) | None => match load(&cli) {
            Ok((cfg, default)) => run(&cli, cfg, default),
            Err(e) => config_failure(&e),
        },
    }
}

/// Runs a command that talks to a running switchyard (`top`, `tap`) to its end.
fn client(name: &str, work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match runtime.map_err(|e| e.to_string()).and_then(|r| r.block_on(work)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard {name}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("switchyard: invalid configuration: {e}");
    ExitCode::from(2)
}

fn print_components() {
    use switchyard::config::ComponentKind;
    let kinds = [
        ComponentKind::Receiver,
        ComponentKind::Processor,
        ComponentKind::Exporter,
        ComponentKind::Connector,
        ComponentKind::Extension,
    ];
    // A connector lists the signal pairs it joins (`traces->metrics`), the others their signals.
    let signals = |t: &switchyard::registry::Registration| {
        let list: Vec<String> = if t.pairs.is_empty() {
            t.signals.iter().map(|s| s.to_string()).collect()
        } else {
            t.pairs.iter().map(|(a, b)| format!("{a}->{b}")).collect()
        };
        if list.is_empty() { "-".to_string() } else { list.join(", ") }
    };
    // Columns as wide as the longest entry, so that every line lines up.
    let all = switchyard::components::ALL;
    let width = all.iter().map(|t| t.name.len()).max().unwrap_or(14);
    let signal_width = all.iter().map(|t| signals(t).len()).max().unwrap_or(22);
    for kind in kinds {
        println!("{}:", kind.section());
        for t in all.iter().filter(|t| t.kind == kind) {
            println!("  {:<width$} {:<signal_width$} {}", t.name, signals(t), t.description);
        }
    }
}

fn print_pipelines(cfg: &Config) {
    println!("configuration is valid; pipelines:");
    for (id, p) in &cfg.pipelines {
        let list =
            |v: &[switchyard::config::ComponentId]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
        let processors = if p.processors.is_empty() { "(none)".to_string() } else { list(&p.processors) };
        let with = |own: &[switchyard::config::ComponentId], connectors: &[switchyard::config::ComponentId]| {
            let mut all = list(own);
            if !connectors.is_empty() {
                let sep = if all.is_empty() { "" } else { ", " };
                let named: Vec<String> = connectors.iter().map(|c| format!("connector {c}")).collect();
                all.push_str(&format!("{sep}{}", named.join(", ")));
            }
            all
        };
        println!(
            "  {id}: receivers [{}] -> processors [{processors}] -> exporters [{}]",
            with(&p.receivers, &p.from_connectors),
            with(&p.exporters, &p.to_connectors)
        );
    }
    println!("exporters send to:");
    for (id, d) in &cfg.exporters {
        println!("  {id}: {}", d.settings.destination());
    }
}

fn run(cli: &Cli, cfg: Config, default: bool) -> ExitCode {
    let mut logs = switchyard::telemetry::logs::init(&cfg.telemetry);
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
        let mut signals = match Signals::listen() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for signals; stop with SIGKILL");
                None
            }
        };
        for w in &cfg.warnings {
            tracing::warn!("configuration: {w}");
        }
        if default {
            tracing::info!(
                "no --config given: using the embedded default configuration (OTLP gRPC on localhost:4317 and HTTP on localhost:4318 -> batch -> debug)"
            );
        }
        let mut service = match RunningService::start(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                // Said once, on stderr whatever RUST_LOG filters out (the log is on stderr too).
                eprintln!("switchyard: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut watcher = (cli.watch && !default).then(|| Watcher::new(&cli.config));
        if cli.watch && default {
            tracing::warn!("--watch has nothing to watch without --config; only SIGHUP reloads");
        }
        loop {
            let event = tokio::select! {
                e = async {
                    match signals.as_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => e,
                _ = async {
                    match watcher.as_mut() {
                        Some(w) => w.changed().await,
                        None => std::future::pending().await,
                    }
                } => Event::Reload("a configuration file changed"),
            };
            match event {
                Event::Stop => break,
                Event::Reload(why) => {
                    tracing::info!("{why}: reloading the configuration");
                    match load(cli) {
                        Ok((cfg, _)) => {
                            logs.apply(&cfg.telemetry);
                            for w in &cfg.warnings {
                                tracing::warn!("configuration: {w}");
                            }
                            let _ = service.reload(cfg).await;
                        }
                        Err(e) => service.reload_refused(&e),
                    }
                }
            }
        }
        // A second SIGINT or SIGTERM stops at once: the process exits as soon as the loss is
        // reported, without waiting for blocked work (a write to a hung disk) to end.
        let second = async move {
            match signals.as_mut() {
                Some(s) => loop {
                    if matches!(s.next().await, Event::Stop) {
                        return;
                    }
                },
                None => std::future::pending().await,
            }
        };
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let noted = cut.clone();
        let second = async move {
            second.await;
            noted.store(true, std::sync::atomic::Ordering::SeqCst);
        };
        let drained = service.shutdown_unless(second).await;
        if cut.load(std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(1);
        }
        if drained { ExitCode::SUCCESS } else { ExitCode::FAILURE }
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

/// What the running process is asked to do.
enum Event {
    Stop,
    Reload(&'static str),
}

/// Watches the configuration files for changes by polling their contents (which also sees a
/// file replaced through a symlink swap, as a Kubernetes ConfigMap is).
struct Watcher {
    paths: Vec<PathBuf>,
    seen: Vec<Option<Vec<u8>>>,
}

impl Watcher {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(1);
    const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

    fn new(paths: &[PathBuf]) -> Watcher {
        let paths = paths.to_vec();
        let seen = Watcher::read(&paths);
        Watcher { paths, seen }
    }

    fn read(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
        paths.iter().map(|p| std::fs::read(p).ok()).collect()
    }

    /// Returns once the files differ from what was last seen and have stayed the same for
    /// `SETTLE` (an editor writing in several steps causes one reload).
    async fn changed(&mut self) {
        loop {
            tokio::time::sleep(Watcher::EVERY).await;
            let mut now = Watcher::read(&self.paths);
            if now == self.seen {
                continue;
            }
            loop {
                tokio::time::sleep(Watcher::SETTLE).await;
                let again = Watcher::read(&self.paths);
                if again == now {
                    break;
                }
                now = again;
            }
            self.seen = now;
            return;
        }
    }
}

/// The signals switchyard acts on: SIGTERM and SIGINT stop it (draining queues within the
/// deadline); SIGHUP reloads the configuration.
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

    /// The next signal: SIGTERM or SIGINT stop, SIGHUP reloads.
    async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!("SIGTERM received");
                Event::Stop
            }
            _ = self.int.recv() => {
                tracing::info!("SIGINT received");
                Event::Stop
            }
            _ = self.hup.recv() => Event::Reload("SIGHUP received"),
        }
    }
}
