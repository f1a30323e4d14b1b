//! The running service: builds exporters, pipelines and receivers from a validated
//! configuration through the registry, starts them in that order (receivers last, so nothing
//! arrives before it can be delivered), changes them in place at a reload (see `apply`), and
//! stops them in reverse within the shutdown deadline.

mod plan;

use crate::config::{ComponentId, PipelineId};
use crate::model::{Config, Defined};
use crate::pipeline::component::{
    ConnectorContext, ConnectorSettings, ExporterContext, ExporterSettings, ExtensionContext, ExtensionSettings,
    ProcessorContext, ProcessorSettings, ReceiverContext, ReceiverSettings, StorageLocation, Tasks,
};
use crate::pipeline::connector::{Downstream, Hop};
use crate::pipeline::queue::ExporterQueue;
use crate::pipeline::queue::persistent::Persistent;
use crate::pipeline::{
    Abandoned, Batch, Capacity, Intake, Output, PipelineRunner, Processor, Rewire, Route, Slot, Status, StatusCell,
    guarded, panics_of,
};
use crate::telemetry::metrics::Metrics;
use plan::Changes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why the service could not start, or a reload could not be applied in full.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A component could not be built or started.
    #[error("{component}: {message}")]
    Component { component: String, message: String },
    /// The new configuration could not be read or is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

fn fail(kind: &str, id: &ComponentId, message: String) -> ServiceError {
    ServiceError::Component { component: format!("{kind} {id}"), message }
}

/// Tasks that run until their own stop signal, and the sockets they listen on.
struct Running {
    stop: CancellationToken,
    tasks: Tasks,
    listeners: crate::net::Listeners,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct RunningExporter {
    defined: Defined<dyn ExporterSettings>,
    queue: Arc<ExporterQueue>,
    task: JoinHandle<()>,
    listeners: crate::net::Listeners,
}

/// An exporter built at a reload, whose queue is not started yet: its sockets, and its queue
/// on disk if it has one.
type BuiltExporter =
    (Defined<dyn ExporterSettings>, Arc<dyn crate::pipeline::Exporter>, crate::net::Listeners, Option<Arc<Persistent>>);

struct RunningPipeline {
    /// The processors in order, with the settings each instance was built from.
    processors: Vec<(ComponentId, Defined<dyn ProcessorSettings>)>,
    /// The exporter queues and connectors it hands batches to, as its runner has them.
    queues: Vec<Output>,
    input: mpsc::UnboundedSender<Batch>,
    rewire: mpsc::UnboundedSender<Rewire>,
    /// Ends it (once what it holds is flushed): at shutdown, after the pipelines feeding it.
    close: CancellationToken,
    task: JoinHandle<()>,
}

struct RunningConnector {
    defined: Defined<dyn ConnectorSettings>,
    hop: Arc<Hop>,
}

struct RunningReceiver {
    defined: Defined<dyn ReceiverSettings>,
    intake: Arc<Intake>,
    run: Running,
}

struct Budget {
    defined: Defined<dyn ProcessorSettings>,
    capacity: Arc<Capacity>,
    stop: CancellationToken,
}

/// Components on their way out after a reload: they finish what they hold in the background,
/// and shutdown waits for them with the rest.
#[derive(Default)]
struct Retiring {
    receivers: Vec<JoinHandle<()>>,
    pipelines: Vec<Closing>,
    exporters: Vec<(String, JoinHandle<()>)>,
}

/// A pipeline to be closed at shutdown, with what tells which pipelines it feeds: its input
/// (weak, so that a retiring pipeline still ends when its senders are gone) and its outputs.
struct Closing {
    close: CancellationToken,
    task: JoinHandle<()>,
    input: mpsc::WeakUnboundedSender<Batch>,
    outputs: Vec<Output>,
}

impl Closing {
    fn of(p: RunningPipeline) -> Closing {
        Closing { close: p.close, task: p.task, input: p.input.downgrade(), outputs: p.queues }
    }

    /// Whether this pipeline hands data to `other` through a connector.
    fn feeds(&self, other: &Closing) -> bool {
        let Some(input) = other.input.upgrade() else { return false };
        self.outputs.iter().any(|o| matches!(o, Output::Connector(hop) if hop.feeds(&input)))
    }
}

/// `pipelines` in an order where each comes after every pipeline that feeds it (through the
/// connectors each has now, retiring ones included), so that what a pipeline flushes at
/// shutdown finds the pipelines it feeds still open.
fn upstream_first(mut pipelines: Vec<Closing>) -> Vec<Closing> {
    let mut ordered = Vec::with_capacity(pipelines.len());
    while !pipelines.is_empty() {
        // A pipeline nobody left feeds goes next; in a cycle (never in a valid configuration),
        // the first one.
        let next = (0..pipelines.len())
            .find(|&i| !pipelines.iter().enumerate().any(|(j, p)| j != i && p.feeds(&pipelines[i])))
            .unwrap_or(0);
        ordered.push(pipelines.remove(next));
    }
    ordered
}

pub struct RunningService {
    status: StatusCell,
    /// What runs, for the health check (set after every start and reload).
    board: crate::pipeline::board::Board,
    telemetry: Arc<Metrics>,
    abandoned: Abandoned,
    config: Option<Config>,
    extensions: BTreeMap<ComponentId, (Defined<dyn ExtensionSettings>, Running)>,
    /// The authenticators of the running extensions, which receivers look up per request.
    authenticators: crate::auth::Authenticators,
    self_metrics: Option<(Vec<crate::telemetry::readers::ReaderConfig>, Running)>,
    budgets: BTreeMap<ComponentId, Budget>,
    default_budget: Option<Arc<Capacity>>,
    exporters: BTreeMap<ComponentId, RunningExporter>,
    pipelines: BTreeMap<PipelineId, RunningPipeline>,
    connectors: BTreeMap<ComponentId, RunningConnector>,
    receivers: BTreeMap<ComponentId, RunningReceiver>,
    retiring: Retiring,
    stop_receivers: CancellationToken,
    drain_pipelines: CancellationToken,
    stop_auxiliary: CancellationToken,
}

impl RunningService {
    /// Builds and starts everything `config` describes, with self-metrics of its own.
    pub async fn start(config: &Config) -> Result<RunningService, ServiceError> {
        RunningService::start_with(config, Arc::new(Metrics::new())).await
    }

    /// Like `start`, counting into `telemetry`.
    pub async fn start_with(config: &Config, telemetry: Arc<Metrics>) -> Result<RunningService, ServiceError> {
        let mut service = RunningService {
            status: StatusCell::default(),
            board: Default::default(),
            telemetry,
            abandoned: Abandoned::default(),
            config: None,
            extensions: BTreeMap::new(),
            authenticators: Default::default(),
            self_metrics: None,
            budgets: BTreeMap::new(),
            default_budget: None,
            exporters: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            connectors: BTreeMap::new(),
            receivers: BTreeMap::new(),
            retiring: Retiring::default(),
            stop_receivers: CancellationToken::new(),
            drain_pipelines: CancellationToken::new(),
            stop_auxiliary: CancellationToken::new(),
        };
        match service.apply(config.clone()).await {
            Ok(_) => {}
            Err(e) => {
                service.shutdown().await;
                return Err(e);
            }
        }
        service.status.set(Status::Running);
        tracing::info!(pipelines = config.pipelines.len(), "switchyard is running");
        Ok(service)
    }

    pub fn status(&self) -> StatusCell {
        self.status.clone()
    }

    /// The self-metrics this service counts into.
    pub fn telemetry(&self) -> &Arc<Metrics> {
        &self.telemetry
    }

    /// Changes the running service into what `config` describes, touching only what changed:
    /// components whose settings are the same keep running with their state (queues, held
    /// batches, tail-sampling decisions, file offsets, listeners and connections); changed and
    /// removed ones finish what they hold in the background; pipelines are re-wired in place,
    /// so a request in flight is neither refused nor lost. Counted in
    /// `switchyard_config_reloads_total{result}`.
    pub async fn reload(&mut self, config: Config) -> Result<(), ServiceError> {
        let started = Instant::now();
        let result = self.apply(config).await;
        let label = match &result {
            Ok(changes) if changes.is_empty() => {
                tracing::info!("configuration reloaded: nothing changed");
                "success"
            }
            Ok(changes) => {
                tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, %changes, "configuration reloaded");
                "success"
            }
            Err(e) => {
                tracing::error!(error = %e, "configuration reload failed; what could not change keeps running as before");
                "failure"
            }
        };
        self.telemetry.config_reloads.with_label_values(&[label]).inc();
        result.map(|_| ())
    }

    /// Counts a reload that never reached the service (the files were unreadable or invalid).
    pub fn reload_refused(&self, error: &crate::config::ConfigError) {
        tracing::error!(
            error = %error,
            "configuration reload refused: the new configuration is invalid; still running the previous one"
        );
        self.telemetry.config_reloads.with_label_values(&["failure"]).inc();
    }

    fn grace(config: &Config) -> Duration {
        (config.shutdown_timeout / 2).min(Duration::from_secs(5))
    }

    /// Makes the running graph match `new` (everything is new at start).
    async fn apply(&mut self, new: Config) -> Result<Changes, ServiceError> {
        let changes = Changes::between(self.config.as_ref(), &new);

        // 1. Prepare what is new, changing nothing yet: a failure here leaves the service as it
        // was. Processors first (building them has no side effects), then memory budgets, then
        // exporters (which may connect or listen); what was prepared is let go on a failure.
        let mut chains: BTreeMap<PipelineId, Vec<Slot>> = BTreeMap::new();
        for (pid, p) in &new.pipelines {
            let old = self.pipelines.get(pid);
            let mut slots = Vec::new();
            for id in &p.processors {
                let defined = &new.processors[id];
                let keep = old.and_then(|o| o.processors.iter().position(|(oid, od)| oid == id && od.same_as(defined)));
                slots.push(match keep {
                    Some(i) => Slot::Keep(i),
                    None => {
                        let ctx = ProcessorContext {
                            name: id.to_string(),
                            telemetry: self.telemetry.clone(),
                            stop: self.stop_auxiliary.child_token(),
                        };
                        let built = defined.settings.build(&ctx).map_err(|m| fail("processor", id, m))?;
                        let tap = self.telemetry.taps.point(crate::pipeline::tap::Kind::Processor, &id.to_string());
                        Slot::New(crate::pipeline::tap::Tapped::wrap(built, tap, &pid.to_string()))
                    }
                });
            }
            chains.insert(pid.clone(), slots);
        }
        // Connectors in use: kept when unchanged (with where they lead), else built.
        let mut hops: BTreeMap<ComponentId, RunningConnector> = BTreeMap::new();
        for (id, defined) in &new.connectors {
            if !new.pipelines.values().any(|p| p.to_connectors.contains(id)) {
                continue;
            }
            let hop = match self.connectors.get(id) {
                Some(old) if old.defined.same_as(defined) => old.hop.clone(),
                _ => {
                    let ctx = ConnectorContext { name: id.to_string(), telemetry: self.telemetry.clone() };
                    let connector = defined.settings.build(&ctx).map_err(|m| fail("connector", id, m))?;
                    let tap = self.telemetry.taps.point(crate::pipeline::tap::Kind::Connector, &id.to_string());
                    Hop::new(id.to_string(), connector, tap, &self.telemetry)
                }
            };
            hops.insert(id.clone(), RunningConnector { defined: defined.clone(), hop });
        }
        let mut budgets: BTreeMap<ComponentId, Budget> = BTreeMap::new();
        let let_go = |budgets: &BTreeMap<ComponentId, Budget>| budgets.values().for_each(|b| b.stop.cancel());
        for id in new.pipelines.values().flat_map(|p| &p.processors) {
            let defined = &new.processors[id];
            let kept = self.budgets.get(id).is_some_and(|old| old.defined.same_as(defined));
            if kept || budgets.contains_key(id) {
                continue;
            }
            let stop = self.stop_auxiliary.child_token();
            let ctx = ProcessorContext { name: id.to_string(), telemetry: self.telemetry.clone(), stop: stop.clone() };
            match defined.settings.memory_budget(&ctx) {
                None => {}
                Some(Ok(capacity)) => {
                    budgets.insert(id.clone(), Budget { defined: defined.clone(), capacity, stop });
                }
                Some(Err(m)) => {
                    let_go(&budgets);
                    return Err(fail("processor", id, m));
                }
            }
        }
        let mut built: BTreeMap<ComponentId, BuiltExporter> = BTreeMap::new();
        for id in new.pipelines.values().flat_map(|p| &p.exporters) {
            let defined = &new.exporters[id];
            let kept = self.exporters.get(id).is_some_and(|e| e.defined.same_as(defined));
            if kept || built.contains_key(id) {
                continue;
            }
            // A replaced exporter's successor takes over the sockets it listens on.
            let listeners = self.exporters.get(id).map(|e| e.listeners.successor()).unwrap_or_default();
            let ctx = ExporterContext {
                name: id.to_string(),
                telemetry: self.telemetry.clone(),
                listeners,
                auth: self.authenticators.clone(),
            };
            let result = defined.settings.build(&ctx).await;
            ctx.listeners.settle();
            let result = match result {
                Ok(exporter) => self.persistent_queue(&new, id, &defined.settings.queue()).map(|p| (exporter, p)),
                Err(m) => Err(m),
            };
            match result {
                Ok((exporter, persistent)) => {
                    built.insert(id.clone(), (defined.clone(), exporter, ctx.listeners, persistent));
                }
                Err(m) => {
                    let_go(&budgets);
                    for (_, exporter, _, _) in built.values() {
                        exporter.shutdown().await;
                    }
                    return Err(fail("exporter", id, m));
                }
            }
        }

        // 2. Exporters: start the new ones; the replaced ones retire once the pipelines let go.
        let mut retired_exporters = Vec::new();
        for (id, (defined, exporter, listeners, persistent)) in built {
            let settings = crate::pipeline::queue::QueueSettings {
                scrubber: defined.settings.scrubber(),
                ..defined.settings.queue()
            };
            let (queue, task) =
                ExporterQueue::start(id.to_string(), exporter, settings, self.telemetry.clone(), persistent);
            if let Some(old) = self.exporters.insert(id, RunningExporter { defined, queue, task, listeners }) {
                retired_exporters.push(old);
            }
        }
        let used: Vec<&ComponentId> = new.pipelines.values().flat_map(|p| &p.exporters).collect();
        let unused: Vec<ComponentId> = self.exporters.keys().filter(|id| !used.contains(id)).cloned().collect();
        for id in unused {
            retired_exporters.extend(self.exporters.remove(&id));
        }

        // Memory budgets: one per memory_limiter, shared by every pipeline listing it.
        for (id, budget) in budgets {
            if let Some(old) = self.budgets.insert(id, budget) {
                old.stop.cancel();
            }
        }
        let limiters: Vec<&ComponentId> = new.pipelines.values().flat_map(|p| &p.processors).collect();
        self.budgets.retain(|id, b| {
            let keep = limiters.contains(&id);
            if !keep {
                b.stop.cancel();
            }
            keep
        });

        // 3. Pipelines: new ones start, changed ones are re-wired in place, removed ones finish
        // what they hold once their receivers let go of them.
        // Every pipeline's input first (new ones get theirs now, their runners start below), so
        // that connectors know where they lead before any pipeline hands them data.
        let mut fresh: BTreeMap<PipelineId, (mpsc::UnboundedReceiver<Batch>, mpsc::UnboundedReceiver<Rewire>)> =
            BTreeMap::new();
        let mut inputs: BTreeMap<PipelineId, mpsc::UnboundedSender<Batch>> = BTreeMap::new();
        let mut rewire_senders: BTreeMap<PipelineId, mpsc::UnboundedSender<Rewire>> = BTreeMap::new();
        for pid in new.pipelines.keys() {
            match self.pipelines.get(pid) {
                Some(running) => {
                    inputs.insert(pid.clone(), running.input.clone());
                }
                None => {
                    let (input, rx) = mpsc::unbounded_channel();
                    let (rewire, rewires) = mpsc::unbounded_channel();
                    inputs.insert(pid.clone(), input);
                    rewire_senders.insert(pid.clone(), rewire);
                    fresh.insert(pid.clone(), (rx, rewires));
                }
            }
        }
        for (id, c) in &hops {
            let mut downstream: [Downstream; 3] = Default::default();
            for signal in crate::signal::Signal::ALL {
                for q in new.downstream(id, signal) {
                    let room = self.claims(&new, q, &hops);
                    let d = &mut downstream[signal.index()];
                    d.ids.push(q.to_string());
                    d.inputs.push(inputs[q].clone());
                    d.capacities.push(room);
                }
            }
            let feeds_disk = crate::signal::Signal::ALL
                .iter()
                .flat_map(|s| new.downstream(id, *s))
                .any(|q| self.reaches_disk(&new, q, &hops));
            c.hop.set_downstream(downstream, feeds_disk);
        }
        let mut routes: BTreeMap<ComponentId, [Vec<Route>; 3]> = BTreeMap::new();
        for (pid, p) in &new.pipelines {
            let queues: Vec<Output> = p
                .exporters
                .iter()
                .map(|id| Output::Queue(self.exporters[id].queue.clone()))
                .chain(p.to_connectors.iter().map(|id| Output::Connector(hops[id].hop.clone())))
                .collect();
            let slots = chains.remove(pid).unwrap_or_default();
            let processors: Vec<(ComponentId, Defined<dyn ProcessorSettings>)> =
                p.processors.iter().map(|id| (id.clone(), new.processors[id].clone())).collect();
            match (self.pipelines.get_mut(pid), fresh.remove(pid)) {
                (Some(running), _) => {
                    let same_chain = slots.len() == running.processors.len()
                        && slots.iter().enumerate().all(|(i, s)| matches!(s, Slot::Keep(k) if *k == i));
                    let same_exporters = queues.len() == running.queues.len()
                        && queues.iter().zip(&running.queues).all(|(a, b)| a.same(b));
                    if !same_chain || !same_exporters {
                        let _ = running.rewire.send(Rewire { processors: slots, exporters: queues.clone() });
                    }
                    running.processors = processors;
                    running.queues = queues;
                }
                (None, Some((rx, rewires))) => {
                    let runner = PipelineRunner {
                        name: pid.to_string(),
                        processors: slots
                            .into_iter()
                            .filter_map(|s| match s {
                                Slot::New(p) => Some(p),
                                Slot::Keep(_) => None,
                            })
                            .collect::<Vec<Box<dyn Processor>>>(),
                        exporters: queues.clone(),
                    };
                    let close = CancellationToken::new();
                    let run = runner.run(rx, rewires, self.drain_pipelines.clone(), close.clone());
                    let task = tokio::spawn(guarded(self.status.clone(), format!("pipeline {pid}"), run));
                    let (input, rewire) = (inputs[pid].clone(), rewire_senders[pid].clone());
                    self.pipelines
                        .insert(pid.clone(), RunningPipeline { processors, queues, input, rewire, close, task });
                }
                (None, None) => unreachable!("every new pipeline got an input above"),
            }
            // What receivers claim before data goes this way: room in every exporter's queue it
            // reaches (through connectors too), and in the memory budgets of the pipelines on
            // the way (a pipeline's memory_limiter's, or the default one).
            let route = Route { input: inputs[pid].clone(), queues: self.claims(&new, pid, &hops) };
            for r in &p.receivers {
                routes.entry(r.clone()).or_default()[pid.signal.index()].push(route.clone());
            }
        }
        self.connectors = hops;
        let removed: Vec<PipelineId> =
            self.pipelines.keys().filter(|id| !new.pipelines.contains_key(id)).cloned().collect();
        for pid in removed {
            if let Some(p) = self.pipelines.remove(&pid) {
                // Its input closes once the receivers' old routes (and connectors leading to
                // it) are gone; the runner then flushes what it holds to its exporters and ends.
                self.retiring.pipelines.push(Closing::of(p));
            }
        }
        // The replaced exporters' queues end once no pipeline holds them and they are drained.
        for old in retired_exporters {
            tracing::info!(exporter = %old.queue.name(), "exporter retiring: delivering what its queue holds");
            self.retiring.exporters.push((old.queue.name().to_string(), old.task));
        }

        // 4. Extensions and the self-metrics endpoint.
        let mut errors: Vec<ServiceError> = Vec::new();
        self.apply_extensions(&new, &mut errors).await;
        if let Err(e) = self.apply_self_metrics(&new).await {
            errors.push(e);
        }

        // 5. Receivers: kept ones take the new routes at once; the others stop and start.
        let grace = RunningService::grace(&new);
        let gone: Vec<ComponentId> = self.receivers.keys().filter(|id| !routes.contains_key(id)).cloned().collect();
        for id in gone {
            if let Some(r) = self.receivers.remove(&id) {
                tracing::info!(receiver = %id, "receiver removed: stopping");
                r.run.stop.cancel();
                self.retiring.receivers.extend(r.run.tasks);
            }
        }
        for (id, routes) in routes {
            let defined = new.receivers[&id].clone();
            if let Some(running) = self.receivers.get(&id)
                && running.defined.same_as(&defined)
            {
                // A receiver may set itself up per signal (a Kafka topic per signal): one that
                // feeds other signals now starts again, as a changed one does.
                let signals = |r: &[Vec<Route>; 3]| r.iter().map(|p| !p.is_empty()).collect::<Vec<bool>>();
                let before: Vec<bool> = crate::signal::Signal::ALL.iter().map(|s| running.intake.accepts(*s)).collect();
                if before == signals(&routes) {
                    running.intake.set_routes(routes);
                    continue;
                }
                tracing::info!(receiver = %id, "receiver feeds other signals now: starting it again");
            }
            if let Err(e) = self.replace_receiver(&new, id, defined, routes, grace).await {
                errors.push(e);
            }
        }
        self.board.set(
            new.pipelines
                .iter()
                .map(|(id, p)| crate::pipeline::board::PipelineView {
                    id: id.to_string(),
                    receivers: p.receivers.iter().map(|r| r.to_string()).collect(),
                    processors: p.processors.iter().map(|r| r.to_string()).collect(),
                    exporters: p
                        .exporters
                        .iter()
                        .filter_map(|e| self.exporters.get(e).map(|x| (e.to_string(), x.queue.health().clone())))
                        .collect(),
                    from_connectors: p.from_connectors.iter().map(|c| c.to_string()).collect(),
                    to_connectors: p.to_connectors.iter().map(|c| c.to_string()).collect(),
                })
                .collect(),
        );
        // Its Debug form prints every secret as [REDACTED] (tests/secrets.rs checks it).
        self.board.set_config(format!("{new:#?}"));
        self.config = Some(new);
        match errors.into_iter().next() {
            None => Ok(changes),
            Some(e) => Err(e),
        }
    }

    /// The room data entering pipeline `pid` must claim: every exporter queue it reaches,
    /// through connectors too, once per path (a queue two connectors lead to gets two copies),
    /// and the memory budget of every pipeline on the way (each once).
    fn claims(
        &mut self,
        config: &Config,
        pid: &PipelineId,
        hops: &BTreeMap<ComponentId, RunningConnector>,
    ) -> Vec<Arc<Capacity>> {
        let mut claimed: Vec<Arc<Capacity>> = Vec::new();
        let mut budgets: Vec<Arc<Capacity>> = Vec::new();
        let mut todo = vec![pid.clone()];
        // Configurations are acyclic (checked); the bound only keeps a pathological diamond
        // lattice from taking long.
        let mut visits = 0;
        while let Some(pid) = todo.pop() {
            visits += 1;
            if visits > 10_000 {
                break;
            }
            let p = &config.pipelines[&pid];
            claimed.extend(p.exporters.iter().flat_map(|id| self.exporters[id].queue.capacities()));
            let own: Vec<Arc<Capacity>> =
                p.processors.iter().filter_map(|id| self.budgets.get(id).map(|b| b.capacity.clone())).collect();
            let own = if own.is_empty() { vec![self.default_budget().clone()] } else { own };
            for b in own {
                if !budgets.iter().any(|x| Arc::ptr_eq(x, &b)) {
                    budgets.push(b);
                }
            }
            // Through connectors that pass the data on; one that makes new data from it (counts)
            // claims room for that as it goes.
            for c in p.to_connectors.iter().filter(|c| hops.get(*c).is_some_and(|h| !h.hop.derives())) {
                todo.extend(config.downstream(c, pid.signal).into_iter().cloned());
            }
        }
        claimed.extend(budgets);
        claimed
    }

    /// Whether data entering pipeline `pid` reaches an exporter whose queue is on disk.
    fn reaches_disk(&self, config: &Config, pid: &PipelineId, hops: &BTreeMap<ComponentId, RunningConnector>) -> bool {
        let mut todo = vec![pid.clone()];
        let mut seen: Vec<PipelineId> = Vec::new();
        while let Some(pid) = todo.pop() {
            if seen.contains(&pid) {
                continue;
            }
            seen.push(pid.clone());
            let p = &config.pipelines[&pid];
            if p.exporters.iter().any(|id| self.exporters[id].queue.persistent().is_some()) {
                return true;
            }
            // Through connectors that pass the data on; one that makes new data from it (counts)
            // claims room for that as it goes.
            for c in p.to_connectors.iter().filter(|c| hops.get(*c).is_some_and(|h| !h.hop.derives())) {
                todo.extend(config.downstream(c, pid.signal).into_iter().cloned());
            }
        }
        false
    }

    /// The queue on disk of exporter `id` if its settings name a storage extension: its
    /// predecessor's when the exporter is replaced with the same storage (the queue goes on
    /// with what it holds), else opened in the extension's directory.
    fn persistent_queue(
        &self,
        config: &Config,
        id: &ComponentId,
        settings: &crate::pipeline::queue::QueueSettings,
    ) -> Result<Option<Arc<Persistent>>, String> {
        let Some(location) = storage_location(config, settings.storage.as_deref())? else { return Ok(None) };
        let directory = crate::pipeline::queue::persistent::directory(&location, &id.to_string());
        if let Some(old) = self.exporters.get(id).and_then(|e| e.queue.persistent())
            && old.directory() == directory
        {
            return Ok(Some(old.clone()));
        }
        let limit = usize::try_from(settings.storage_limit).unwrap_or(usize::MAX);
        Persistent::open(&id.to_string(), &location, limit, settings.block_on_overflow, self.telemetry.clone())
            .map(Some)
            .map_err(|m| format!("sending_queue.storage: {m}"))
    }

    /// The budget of pipelines without a memory_limiter (see `memory_limiter::default_budget`).
    fn default_budget(&mut self) -> &Arc<Capacity> {
        self.default_budget.get_or_insert_with(|| {
            let limit = crate::processors::memory_limiter::default_budget();
            tracing::debug!(budget_mib = limit >> 20, "default memory budget for pipelines without a memory_limiter");
            Capacity::memory_budget("default memory budget".to_string(), limit)
        })
    }

    /// Starts receiver `id` as `defined`, in place of the one running under that id if any. A
    /// receiver that only listens starts beside its predecessor, taking over the sockets of the
    /// endpoints they share (so those never close and no waiting connection is reset) and
    /// binding new ones before the old ones close; if it cannot start, the old one keeps
    /// running. One that would do the same work twice (a file tailer, a Kafka group member, a
    /// scraper) starts once its predecessor has stopped; if it cannot start, the old settings
    /// are started again.
    async fn replace_receiver(
        &mut self,
        config: &Config,
        id: ComponentId,
        defined: Defined<dyn ReceiverSettings>,
        routes: [Vec<Route>; 3],
        grace: Duration,
    ) -> Result<(), ServiceError> {
        let intake = Arc::new(Intake::new(id.to_string(), routes, self.telemetry.clone(), self.abandoned.clone()));
        let storage = storage_location(config, defined.settings.storage())
            .map_err(|m| fail("receiver", &id, m))?
            .map(|l| (l.directory, l.fsync));
        let old = self.receivers.remove(&id);
        let overlap = old.as_ref().is_none_or(|o| o.defined.settings.overlaps() && defined.settings.overlaps());
        let listeners = old.as_ref().map(|o| o.run.listeners.successor()).unwrap_or_default();
        if overlap {
            match self.start_receiver(&id, &defined, &intake, storage, &listeners, grace).await {
                Ok(run) => {
                    if let Some(o) = old {
                        tracing::info!(receiver = %id, "receiver changed: the new one is up; stopping the old one");
                        o.run.stop.cancel();
                        self.retiring.receivers.extend(o.run.tasks);
                    }
                    self.receivers.insert(id, RunningReceiver { defined, intake, run });
                    Ok(())
                }
                Err(m) => {
                    // New settings that authenticate clients the old ones let in must not leave
                    // the old, open receiver running (fail closed): it stops.
                    let tightened = old.as_ref().is_some_and(|o| {
                        let names = |d: &Defined<dyn ReceiverSettings>| -> Vec<String> {
                            d.settings.authenticators().into_iter().map(|(k, n)| format!("{k}={n}")).collect()
                        };
                        let (before, after) = (names(&o.defined), names(&defined));
                        after.iter().any(|a| !before.contains(a))
                    });
                    if let Some(o) = old {
                        if tightened {
                            tracing::error!(receiver = %id, error = %m,
                                "the changed receiver requires authentication but cannot start; stopping the old one rather than leaving it open");
                            o.run.stop.cancel();
                            self.retiring.receivers.extend(o.run.tasks);
                        } else {
                            // Still running as before; it takes the new routes.
                            o.intake.set_routes(intake.take_routes());
                            self.receivers.insert(id.clone(), o);
                        }
                    }
                    Err(fail("receiver", &id, m))
                }
            }
        } else {
            let Some(o) = old else { unreachable!("a receiver without a predecessor always overlaps") };
            tracing::info!(receiver = %id, "receiver changed: stopping the old one before starting the new one");
            o.run.stop.cancel();
            let wait = async {
                for t in o.run.tasks {
                    let _ = t.await;
                }
            };
            let _ = tokio::time::timeout(grace + Duration::from_secs(1), wait).await;
            match self.start_receiver(&id, &defined, &intake, storage, &listeners, grace).await {
                Ok(run) => {
                    self.receivers.insert(id, RunningReceiver { defined, intake, run });
                    Ok(())
                }
                Err(m) => {
                    let storage = storage_location(config, o.defined.settings.storage())
                        .ok()
                        .flatten()
                        .map(|l| (l.directory, l.fsync));
                    let listeners = o.run.listeners.successor();
                    match self.start_receiver(&id, &o.defined, &intake, storage, &listeners, grace).await {
                        Ok(run) => {
                            tracing::warn!(receiver = %id, "the changed receiver cannot start; running its previous settings again");
                            self.receivers.insert(id.clone(), RunningReceiver { defined: o.defined, intake, run });
                        }
                        Err(again) => {
                            tracing::error!(receiver = %id, error = %again, "the previous settings cannot start again either; the receiver is stopped")
                        }
                    }
                    Err(fail("receiver", &id, m))
                }
            }
        }
    }

    async fn start_receiver(
        &self,
        id: &ComponentId,
        defined: &Defined<dyn ReceiverSettings>,
        intake: &Arc<Intake>,
        storage: Option<(std::path::PathBuf, bool)>,
        listeners: &crate::net::Listeners,
        grace: Duration,
    ) -> Result<Running, String> {
        let stop = self.stop_receivers.child_token();
        let ctx = ReceiverContext {
            intake: intake.clone(),
            stop: stop.clone(),
            grace,
            storage,
            listeners: listeners.clone(),
            auth: self.authenticators.clone(),
        };
        let tasks = defined.settings.start(ctx).await;
        listeners.settle();
        let tasks = tasks?;
        // A receiver task that panics (a bug on some input) must not vanish quietly: the
        // watcher logs it and marks the service failed, so health checks report it.
        let tasks = tasks
            .into_iter()
            .map(|task| tokio::spawn(guarded(self.status.clone(), format!("receiver {id}"), panics_of(task))))
            .collect();
        Ok(Running { stop, tasks, listeners: listeners.clone() })
    }

    /// Extensions: removed ones stop; a changed one starts beside the old one (taking over its
    /// sockets), which then stops; if it cannot start, the old one keeps running.
    async fn apply_extensions(&mut self, new: &Config, errors: &mut Vec<ServiceError>) {
        let removed: Vec<ComponentId> =
            self.extensions.keys().filter(|id| !new.service_extensions.contains(id)).cloned().collect();
        for id in removed {
            if let Some((_, run)) = self.extensions.remove(&id) {
                run.stop().await;
            }
            self.authenticators.remove(&id.to_string());
        }
        for id in &new.service_extensions {
            let defined = &new.extensions[id];
            let old = self.extensions.get(id);
            if old.is_some_and(|(running, _)| running.same_as(defined)) {
                continue;
            }
            let listeners = old.map(|(_, o)| o.listeners.successor()).unwrap_or_default();
            let stop = self.stop_auxiliary.child_token();
            let ctx = ExtensionContext {
                name: id.to_string(),
                status: self.status.clone(),
                stop: stop.clone(),
                listeners: listeners.clone(),
                board: self.board.clone(),
            };
            // An authenticator is ready before the extension counts as started.
            let server = defined.settings.server_authenticator().transpose();
            let client = defined.settings.client_authenticator().transpose();
            let started = match (server, client) {
                (Err(m), _) | (_, Err(m)) => Err(m),
                (Ok(server), Ok(client)) => {
                    let started = defined.settings.start(ctx).await;
                    if started.is_ok() && (server.is_some() || client.is_some()) {
                        self.authenticators.set(&id.to_string(), server, client);
                    }
                    started
                }
            };
            listeners.settle();
            match started {
                Ok(tasks) => {
                    let run = Running { stop, tasks, listeners };
                    if let Some((_, old)) = self.extensions.insert(id.clone(), (defined.clone(), run)) {
                        old.stop().await;
                    }
                }
                Err(m) => errors.push(fail("extension", id, m)),
            }
        }
    }

    /// The self-metrics readers: started again when they changed, the new ones first (taking
    /// over the pull readers' sockets), then the old ones stopped; if the new ones cannot start,
    /// the old ones keep running.
    async fn apply_self_metrics(&mut self, new: &Config) -> Result<(), ServiceError> {
        let wanted = crate::telemetry::readers::effective(&new.telemetry.metrics);
        if self.self_metrics.as_ref().map(|(r, _)| r) == Some(&wanted) {
            return Ok(());
        }
        let listeners = self.self_metrics.as_ref().map(|(_, r)| r.listeners.successor()).unwrap_or_default();
        let stop = self.stop_auxiliary.child_token();
        let source = crate::telemetry::readers::source_of(self.telemetry.clone());
        let status = crate::telemetry::status_page::source(self.board.clone(), self.telemetry.clone());
        let tap = crate::telemetry::tap::TapSource { taps: self.telemetry.taps.clone(), board: self.board.clone() };
        let started = crate::telemetry::readers::start(&wanted, source, status, tap, stop.clone(), &listeners).await;
        listeners.settle();
        let tasks = started.map_err(|m| {
            stop.cancel();
            ServiceError::Component { component: "service.telemetry.metrics".into(), message: m }
        })?;
        if let Some((_, old)) = self.self_metrics.replace((wanted, Running { stop, tasks, listeners })) {
            old.stop().await;
        }
        Ok(())
    }

    /// While shutting down: one line per exporter that still holds data, with the time left.
    fn report_draining(&self, deadline: tokio::time::Instant) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let exporters: BTreeMap<String, Arc<crate::pipeline::queue::health::ExporterHealth>> =
            self.board.get().into_iter().flat_map(|p| p.exporters).collect();
        {
            for (name, health) in &exporters {
                let queued = self.telemetry.exporter_queue_size.with_label_values(&[name]).get();
                if queued > 0 {
                    let state = match health.failing() {
                        Some((_, reason)) => format!("failing: {reason}"),
                        None => "delivering".to_string(),
                    };
                    tracing::info!(exporter = %name, queued, "shutting down: waiting up to {left:.0?} for {name}: {queued} queued ({state}); a second Ctrl-C stops at once");
                }
            }
        }
    }

    /// Stops intake, flushes the pipelines and drains the exporter queues, all within
    /// `service.shutdown_timeout`. Returns false if the deadline cut the drain short.
    pub async fn shutdown(self) -> bool {
        self.shutdown_unless(std::future::pending()).await
    }

    /// `shutdown`, cut short when `stop_now` completes (a second SIGINT or SIGTERM): what is
    /// still queued is then reported as the deadline's passing reports it. While it drains,
    /// every 2 s it says what it waits for.
    pub async fn shutdown_unless(mut self, stop_now: impl std::future::Future<Output = ()>) -> bool {
        let started = Instant::now();
        let timeout = self.config.as_ref().map_or(Duration::from_secs(10), |c| c.shutdown_timeout);
        self.status.set(Status::Stopping);
        tracing::info!("shutting down: stopping receivers");
        self.stop_receivers.cancel();
        // Release held batches now, while the receivers finish their last requests.
        self.drain_pipelines.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        let receivers: Vec<JoinHandle<()>> = std::mem::take(&mut self.receivers)
            .into_values()
            .flat_map(|r| r.run.tasks)
            .chain(std::mem::take(&mut self.retiring.receivers))
            .collect();
        // Connectors now live only in the pipelines that feed them: one that gathers over time
        // hands on what it holds when the last of them ends (see `Hop`'s drop).
        self.connectors.clear();
        // Each pipeline closes after those that feed it (which must find it open when they
        // flush), retiring ones included.
        let mut pipelines: Vec<Closing> = std::mem::take(&mut self.retiring.pipelines);
        pipelines.extend(std::mem::take(&mut self.pipelines).into_values().map(Closing::of));
        let pipelines = upstream_first(pipelines);
        // Queues on disk lose nothing at the deadline: what they hold is sent at the next start.
        let persistent: Vec<(String, Arc<Persistent>)> = self
            .exporters
            .iter()
            .filter_map(|(id, e)| e.queue.persistent().map(|p| (id.to_string(), p.clone())))
            .collect();
        // Only the pipelines hold the queues from now on: each ends once they are done.
        let exporters: Vec<(String, JoinHandle<()>)> = std::mem::take(&mut self.exporters)
            .into_iter()
            .map(|(id, e)| (id.to_string(), e.task))
            .chain(std::mem::take(&mut self.retiring.exporters))
            .collect();
        let work = async move {
            for t in receivers {
                let _ = t.await;
            }
            for p in pipelines {
                p.close.cancel();
                let _ = p.task.await;
            }
            for (name, t) in exporters {
                let _ = t.await;
                tracing::debug!(exporter = %name, "exporter stopped");
            }
        };
        let (mut work, mut stop_now) = (std::pin::pin!(work), std::pin::pin!(stop_now));
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(2));
        let in_time = loop {
            tokio::select! {
                _ = &mut work => break true,
                _ = tokio::time::sleep_until(deadline) => break false,
                _ = &mut stop_now => {
                    tracing::warn!("second stop signal: stopping now, without waiting for the queues");
                    break false;
                }
                _ = progress.tick() => self.report_draining(deadline),
            }
        };
        if in_time {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "shutdown complete");
        } else {
            // What is still queued is lost: its receivers must not record it as delivered.
            self.abandoned.abandon();
            // One line per exporter that still held data: what it was and how much.
            for family in prometheus::core::Collector::collect(&self.telemetry.exporter_queue_size) {
                for m in family.get_metric() {
                    let left = m.get_gauge().get_value() as i64;
                    let exporter = m.get_label().iter().find(|l| l.name() == "exporter").map(|l| l.value().to_string());
                    let on_disk = persistent.iter().any(|(name, _)| Some(name) == exporter.as_ref());
                    if left > 0 && !on_disk {
                        tracing::error!(
                            exporter = exporter.unwrap_or_default(),
                            left,
                            unit = "sending_queue.sizer units (requests by default)",
                            timeout = ?timeout,
                            "shutdown cut short (the deadline, or a second stop signal) with data still queued; it is lost"
                        );
                    }
                }
            }
        }
        for (name, queue) in persistent {
            let left = queue.pending_items();
            if left > 0 && !in_time {
                tracing::warn!(exporter = %name, items = left, directory = %queue.directory().display(),
                    "shutdown deadline passed: undelivered data stays on disk and is sent at the next start");
            }
        }
        self.stop_auxiliary.cancel();
        let auxiliary: Vec<JoinHandle<()>> = std::mem::take(&mut self.extensions)
            .into_values()
            .flat_map(|(_, r)| r.tasks)
            .chain(self.self_metrics.take().into_iter().flat_map(|(_, r)| r.tasks))
            .collect();
        for t in auxiliary {
            let _ = t.await;
        }
        in_time
    }
}

/// Where the `file_storage` extension named in a `storage` key keeps state.
fn storage_location(config: &Config, storage: Option<&str>) -> Result<Option<StorageLocation>, String> {
    let Some(name) = storage else { return Ok(None) };
    let enabled = config.service_extensions.iter().find(|id| id.to_string() == name);
    match enabled.map(|id| config.extensions[id].settings.storage()) {
        Some(Some(dir)) => dir.map(Some),
        Some(None) => Err(format!("storage: extension {name} is not a file_storage extension")),
        None => Err(format!("storage: no extension {name} is defined and listed in service.extensions")),
    }
}
