//! The running service: builds exporters, pipelines and receivers from a validated
//! configuration, starts them in that order (receivers last, so nothing arrives before it can be
//! delivered), and stops them in reverse within the shutdown deadline.

use crate::components::{ExporterConfig, ExtensionConfig, ProcessorConfig, ReceiverConfig};
use crate::config::{ComponentId, Config, model_types::MetricsLevel};
use crate::exporters::{debug::DebugExporter, file::FileExporter, otlp::OtlpGrpcExporter, otlphttp::OtlpHttpExporter};
use crate::pipeline::queue::{ExporterQueue, QueueSettings};
use crate::pipeline::{Exporter, Intake, PipelineRunner, Processor, Route, Status, StatusCell, guarded, panics_of};
use crate::processors::batch::BatchProcessor;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct ServiceError {
    pub component: String,
    pub message: String,
}

fn fail(kind: &str, id: &ComponentId, message: String) -> ServiceError {
    ServiceError { component: format!("{kind} {id}"), message }
}

pub struct RunningService {
    status: StatusCell,
    stop_receivers: CancellationToken,
    drain_pipelines: CancellationToken,
    close_pipelines: CancellationToken,
    stop_auxiliary: CancellationToken,
    receivers: Vec<JoinHandle<()>>,
    pipelines: Vec<JoinHandle<()>>,
    exporters: Vec<(String, JoinHandle<()>)>,
    auxiliary: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

impl RunningService {
    pub async fn start(config: &Config) -> Result<RunningService, ServiceError> {
        let status = StatusCell::default();
        let stop_auxiliary = CancellationToken::new();
        let mut auxiliary = Vec::new();
        let grace = (config.shutdown_timeout / 2).min(Duration::from_secs(5));

        for id in &config.service_extensions {
            match &config.extensions[id] {
                ExtensionConfig::FileStorage(cfg) => {
                    let dir = cfg.prepare().map_err(|m| fail("extension", id, m))?;
                    tracing::info!(extension = %id, directory = %dir.display(), "file storage ready");
                }
                ExtensionConfig::HealthCheck(cfg) => {
                    let listener = crate::net::bind(&cfg.endpoint).await.map_err(|m| fail("extension", id, m))?;
                    tracing::info!(extension = %id, endpoint = %local(&listener), "health check listening");
                    auxiliary.push(tokio::spawn(crate::extensions::health_check::serve(
                        cfg.clone(),
                        listener,
                        status.clone(),
                        stop_auxiliary.clone(),
                    )));
                }
            }
        }
        if config.telemetry.metrics.level != MetricsLevel::None {
            let listener = crate::net::bind(&config.telemetry.metrics.address)
                .await
                .map_err(|m| ServiceError { component: "service.telemetry.metrics".into(), message: m })?;
            tracing::info!(endpoint = %local(&listener), "self-metrics at http://{}/metrics", local(&listener));
            auxiliary.push(tokio::spawn(crate::telemetry::server::serve(listener, stop_auxiliary.clone())));
        }

        // Exporters first: every exporter named by some pipeline gets one queue.
        let mut queues: BTreeMap<ComponentId, Arc<ExporterQueue>> = BTreeMap::new();
        let mut exporters = Vec::new();
        for id in config.pipelines.values().flat_map(|p| &p.exporters) {
            if queues.contains_key(id) {
                continue;
            }
            let (exporter, settings): (Arc<dyn Exporter>, QueueSettings) = match &config.exporters[id] {
                ExporterConfig::Debug(cfg) => (
                    Arc::new(DebugExporter::new(id.to_string(), cfg.clone())),
                    QueueSettings { num_consumers: 1, ..Default::default() },
                ),
                ExporterConfig::File(cfg) => (
                    Arc::new(FileExporter::open(cfg.clone()).map_err(|m| fail("exporter", id, m))?),
                    QueueSettings { num_consumers: 1, ..Default::default() },
                ),
                ExporterConfig::OtlpGrpc(cfg) => (
                    Arc::new(OtlpGrpcExporter::new(id.to_string(), cfg).map_err(|m| fail("exporter", id, m))?),
                    cfg.sending_queue.settings(cfg.retry_on_failure.clone()),
                ),
                ExporterConfig::OtlpHttp(cfg) => (
                    Arc::new(OtlpHttpExporter::new(id.to_string(), cfg).map_err(|m| fail("exporter", id, m))?),
                    cfg.sending_queue.settings(cfg.retry_on_failure.clone()),
                ),
                ExporterConfig::Loki(cfg) => (
                    Arc::new(crate::exporters::loki::LokiExporter::new(cfg).map_err(|m| fail("exporter", id, m))?),
                    cfg.sending_queue.settings(cfg.retry_on_failure.clone()),
                ),
                ExporterConfig::Kafka(cfg) => (
                    Arc::new(crate::exporters::kafka::KafkaExporter::new(id.to_string(), cfg)),
                    cfg.sending_queue.settings(cfg.retry_on_failure.clone()),
                ),
                ExporterConfig::ClickHouse(cfg) => (
                    Arc::new(
                        crate::exporters::clickhouse::ClickHouseExporter::new(cfg)
                            .map_err(|m| fail("exporter", id, m))?,
                    ),
                    cfg.sending_queue.settings(cfg.retry_on_failure.clone()),
                ),
                ExporterConfig::Elasticsearch(cfg) => (
                    Arc::new(
                        crate::exporters::elasticsearch::ElasticsearchExporter::new(id.to_string(), cfg)
                            .map_err(|m| fail("exporter", id, m))?,
                    ),
                    cfg.sending_queue.settings(cfg.retry_on_failure.clone()),
                ),
                ExporterConfig::Prometheus(cfg) => (
                    Arc::new(
                        crate::exporters::prometheus::PrometheusExporter::start(id.to_string(), cfg)
                            .await
                            .map_err(|m| fail("exporter", id, m))?,
                    ),
                    QueueSettings { num_consumers: 1, ..Default::default() },
                ),
                ExporterConfig::PrometheusRemoteWrite(cfg) => (
                    Arc::new(
                        crate::exporters::prometheusremotewrite::PrometheusRemoteWriteExporter::new(
                            id.to_string(),
                            cfg,
                        )
                        .map_err(|m| fail("exporter", id, m))?,
                    ),
                    cfg.queue_settings(),
                ),
            };
            let settings = QueueSettings { scrubber: config.exporters[id].scrubber(), ..settings };
            let (queue, task) = ExporterQueue::start(id.to_string(), exporter, settings);
            queues.insert(id.clone(), queue);
            exporters.push((id.to_string(), task));
        }

        // Then pipelines, each a task fed by a bounded channel.
        let drain_pipelines = CancellationToken::new();
        let close_pipelines = CancellationToken::new();
        let mut routes: BTreeMap<ComponentId, [Vec<Route>; 3]> = BTreeMap::new();
        let mut pipelines = Vec::new();
        // One memory budget per memory_limiter, shared by every pipeline that lists it.
        let mut budgets: BTreeMap<ComponentId, Arc<crate::pipeline::Capacity>> = BTreeMap::new();
        for id in config.pipelines.values().flat_map(|p| &p.processors) {
            if let ProcessorConfig::MemoryLimiter(cfg) = &config.processors[id]
                && !budgets.contains_key(id)
            {
                let budget =
                    crate::processors::memory_limiter::MemoryBudget::start(id.to_string(), cfg, stop_auxiliary.clone())
                        .map_err(|m| fail("processor", id, m))?;
                budgets.insert(id.clone(), budget.capacity);
            }
        }
        // Pipelines without a memory_limiter share a default budget, so that a plain
        // configuration bounds what it decodes and holds too (see `default_memory_budget`).
        let default_budget =
            config.pipelines.values().any(|p| !p.processors.iter().any(|id| budgets.contains_key(id))).then(|| {
                let limit = crate::processors::memory_limiter::default_budget();
                tracing::debug!(
                    budget_mib = limit >> 20,
                    "default memory budget for pipelines without a memory_limiter"
                );
                crate::pipeline::Capacity::memory_budget("default memory budget".to_string(), limit)
            });
        for (pid, p) in &config.pipelines {
            // Unbounded: what waits here is bounded by the room claimed in the exporter queues
            // and the memory budget (a memory_limiter's or the default one).
            let (tx, rx) = mpsc::unbounded_channel();
            let mut claimed: Vec<Arc<crate::pipeline::Capacity>> =
                p.exporters.iter().map(|id| queues[id].capacity()).collect();
            let before = claimed.len();
            claimed.extend(p.processors.iter().filter_map(|id| budgets.get(id).cloned()));
            if claimed.len() == before
                && let Some(b) = &default_budget
            {
                claimed.push(b.clone());
            }
            let route = Route { input: tx, queues: claimed };
            for r in &p.receivers {
                routes.entry(r.clone()).or_default()[pid.signal.index()].push(route.clone());
            }
            let processors: Vec<Box<dyn Processor>> = p
                .processors
                .iter()
                .map(|id| -> Result<Box<dyn Processor>, ServiceError> {
                    Ok(match &config.processors[id] {
                        ProcessorConfig::Batch(cfg) => Box::new(BatchProcessor::new(id.to_string(), cfg.clone())),
                        ProcessorConfig::Attributes(cfg) => Box::new(
                            crate::processors::attributes::AttributesProcessor::new(cfg)
                                .map_err(|m| fail("processor", id, m))?,
                        ),
                        ProcessorConfig::Resource(cfg) => Box::new(
                            crate::processors::resource::ResourceProcessor::new(cfg)
                                .map_err(|m| fail("processor", id, m))?,
                        ),
                        ProcessorConfig::ProbabilisticSampler(cfg) => {
                            Box::new(crate::processors::probabilistic_sampler::ProbabilisticSampler::new(
                                id.to_string(),
                                cfg.clone(),
                            ))
                        }
                        ProcessorConfig::Transform(cfg) => Box::new(
                            crate::processors::transform::TransformProcessor::new(cfg)
                                .map_err(|m| fail("processor", id, m))?,
                        ),
                        ProcessorConfig::Redaction(cfg) => Box::new(
                            crate::processors::redaction::RedactionProcessor::new(cfg)
                                .map_err(|m| fail("processor", id, m))?,
                        ),
                        ProcessorConfig::MemoryLimiter(_) => {
                            Box::new(crate::processors::memory_limiter::MemoryLimiterProcessor)
                        }
                        ProcessorConfig::TailSampling(cfg) => Box::new(
                            crate::processors::tail_sampling::TailSamplingProcessor::new(id.to_string(), cfg)
                                .map_err(|m| fail("processor", id, m))?,
                        ),
                        ProcessorConfig::Filter(cfg) => Box::new(
                            crate::processors::filter::FilterProcessor::new(id.to_string(), cfg)
                                .map_err(|m| fail("processor", id, m))?,
                        ),
                    })
                })
                .collect::<Result<_, _>>()?;
            let runner = PipelineRunner {
                name: pid.to_string(),
                processors,
                exporters: p.exporters.iter().map(|id| queues[id].clone()).collect(),
            };
            let run = runner.run(rx, drain_pipelines.clone(), close_pipelines.clone());
            pipelines.push(tokio::spawn(guarded(status.clone(), format!("pipeline {pid}"), run)));
        }
        drop(queues);

        // Receivers last.
        let stop_receivers = CancellationToken::new();
        let mut receivers = Vec::new();
        for (id, routes) in routes {
            let intake = Arc::new(Intake::new(id.to_string(), routes));
            let stop = stop_receivers.clone();
            let tasks = match &config.receivers[&id] {
                ReceiverConfig::Otlp(cfg) => crate::receivers::otlp::start(cfg.clone(), intake, stop, grace).await,
                ReceiverConfig::Jaeger(cfg) => crate::receivers::jaeger::start(cfg.clone(), intake, stop, grace).await,
                ReceiverConfig::Zipkin(cfg) => crate::receivers::zipkin::start(cfg.clone(), intake, stop, grace).await,
                ReceiverConfig::Prometheus(cfg) => {
                    crate::receivers::prometheus::start((**cfg).clone(), intake, stop).await
                }
                ReceiverConfig::FluentForward(cfg) => {
                    crate::receivers::fluentforward::start(cfg.clone(), intake, stop).await
                }
                ReceiverConfig::Syslog(cfg) => crate::receivers::syslog::start(cfg.clone(), intake, stop).await,
                ReceiverConfig::Kafka(cfg) => crate::receivers::kafka::start((**cfg).clone(), intake, stop).await,
                ReceiverConfig::FileLog(cfg) => match storage_directory(config, cfg.storage.as_deref()) {
                    Ok(dir) => crate::receivers::filelog::start((**cfg).clone(), dir, intake, stop).await,
                    Err(m) => Err(m),
                },
                ReceiverConfig::PrometheusRemoteWrite(cfg) => {
                    crate::receivers::prometheusremotewrite::start(cfg.clone(), intake, stop, grace).await
                }
            };
            // A receiver task that panics (a bug on some input) must not vanish quietly: the
            // watcher logs it and marks the service failed, so health checks report it.
            for task in tasks.map_err(|m| fail("receiver", &id, m))? {
                receivers.push(tokio::spawn(guarded(status.clone(), format!("receiver {id}"), panics_of(task))));
            }
        }
        status.set(Status::Running);
        tracing::info!(pipelines = config.pipelines.len(), "switchyard is running");
        Ok(RunningService {
            status,
            stop_receivers,
            drain_pipelines,
            close_pipelines,
            stop_auxiliary,
            receivers,
            pipelines,
            exporters,
            auxiliary,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    pub fn status(&self) -> StatusCell {
        self.status.clone()
    }

    /// Stops intake, flushes the pipelines and drains the exporter queues, all within
    /// `service.shutdown_timeout`. Returns false if the deadline cut the drain short.
    pub async fn shutdown(self) -> bool {
        let started = Instant::now();
        self.status.set(Status::Stopping);
        tracing::info!("shutting down: stopping receivers");
        self.stop_receivers.cancel();
        // Release held batches now, while the receivers finish their last requests.
        self.drain_pipelines.cancel();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let in_time = tokio::time::timeout_at(deadline, async {
            for t in self.receivers {
                let _ = t.await;
            }
            self.close_pipelines.cancel();
            for t in self.pipelines {
                let _ = t.await;
            }
            for (name, t) in self.exporters {
                let _ = t.await;
                tracing::debug!(exporter = %name, "exporter stopped");
            }
        })
        .await
        .is_ok();
        if in_time {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "shutdown complete");
        } else {
            // What is still queued is lost: its receivers must not record it as delivered.
            crate::pipeline::abandon();
            // One line per exporter that still held data: what it was and how much.
            for family in prometheus::core::Collector::collect(&crate::telemetry::metrics::METRICS.exporter_queue_size)
            {
                for m in family.get_metric() {
                    let left = m.get_gauge().get_value() as i64;
                    let exporter = m.get_label().iter().find(|l| l.name() == "exporter").map(|l| l.value().to_string());
                    if left > 0 {
                        tracing::error!(
                            exporter = exporter.unwrap_or_default(),
                            left,
                            unit = "sending_queue.sizer units (requests by default)",
                            timeout = ?self.shutdown_timeout,
                            "shutdown deadline passed with data still queued; it is lost"
                        );
                    }
                }
            }
        }
        self.stop_auxiliary.cancel();
        for t in self.auxiliary {
            let _ = t.await;
        }
        in_time
    }
}

/// The directory of the `file_storage` extension a receiver names in its `storage` key.
/// Its directory and whether state files are synced to disk.
fn storage_directory(config: &Config, storage: Option<&str>) -> Result<Option<(std::path::PathBuf, bool)>, String> {
    let Some(name) = storage else { return Ok(None) };
    let enabled = config.service_extensions.iter().find(|id| id.to_string() == name);
    match enabled.map(|id| &config.extensions[id]) {
        Some(ExtensionConfig::FileStorage(cfg)) => cfg.prepare().map(|dir| Some((dir, cfg.fsync))),
        Some(_) => Err(format!("storage: extension {name} is not a file_storage extension")),
        None => Err(format!("storage: no extension {name} is defined and listed in service.extensions")),
    }
}

fn local(l: &tokio::net::TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}
