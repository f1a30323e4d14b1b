//! The registry of component types: what each is called in configuration, which signals it
//! carries, and how its settings are decoded and checked.

use crate::config::{ComponentId, ComponentKind, ConfigError, Node, from_node};
use crate::exporters::prometheus::PrometheusExporterConfig;
use crate::exporters::prometheusremotewrite::PrometheusRemoteWriteConfig;
use crate::exporters::{debug::DebugConfig, file::FileConfig, otlp::OtlpGrpcConfig, otlphttp::OtlpHttpConfig};
use crate::extensions::health_check::HealthCheckConfig;
use crate::processors::batch::BatchConfig;
use crate::receivers::jaeger::JaegerReceiverConfig;
use crate::receivers::otlp::OtlpReceiverConfig;
use crate::receivers::prometheus::PrometheusReceiverConfig;
use crate::receivers::prometheusremotewrite::PrometheusRemoteWriteReceiverConfig;
use crate::receivers::zipkin::ZipkinReceiverConfig;
use crate::signal::Signal;
use serde::de::DeserializeOwned;

/// One component type as `switchyard components` lists it.
pub struct TypeInfo {
    pub kind: ComponentKind,
    pub name: &'static str,
    pub signals: &'static [Signal],
    pub description: &'static str,
}

const ALL_SIGNALS: &[Signal] = &Signal::ALL;

pub const TYPES: &[TypeInfo] = &[
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "otlp",
        signals: ALL_SIGNALS,
        description: "OTLP over gRPC and HTTP (protobuf and JSON)",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "jaeger",
        signals: &[Signal::Traces],
        description: "legacy Jaeger clients: agent UDP (Thrift compact/binary), collector Thrift HTTP and gRPC",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "zipkin",
        signals: &[Signal::Traces],
        description: "Zipkin v2 spans over HTTP (JSON and protobuf)",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "prometheus",
        signals: &[Signal::Metrics],
        description: "scrapes Prometheus targets (Prometheus scrape_configs)",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "prometheusremotewrite",
        signals: &[Signal::Metrics],
        description: "Prometheus Remote Write 1.0 and 2.0 on /api/v1/write",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "filelog",
        signals: &[Signal::Logs],
        description: "tails files: plain lines, multiline, Kubernetes container logs; offsets kept",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "kafka",
        signals: ALL_SIGNALS,
        description: "OTLP messages from Kafka topics, offsets committed after delivery",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "syslog",
        signals: &[Signal::Logs],
        description: "RFC 5424 and RFC 3164 syslog over UDP and TCP",
    },
    TypeInfo {
        kind: ComponentKind::Receiver,
        name: "fluentforward",
        signals: &[Signal::Logs],
        description: "Fluent Forward protocol v1 over TCP (alias fluent_forward)",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "batch",
        signals: ALL_SIGNALS,
        description: "groups data into batches by size and time",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "attributes",
        signals: ALL_SIGNALS,
        description: "inserts, updates, deletes, hashes, extracts and converts span, log and data point attributes",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "resource",
        signals: ALL_SIGNALS,
        description: "the attributes actions on resource attributes",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "probabilistic_sampler",
        signals: &[Signal::Traces, Signal::Logs],
        description: "keeps a share of traces and logs, trace by trace, the same on every instance",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "transform",
        signals: ALL_SIGNALS,
        description: "changes spans, metrics, data points, logs and resources with OTTL statements",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "redaction",
        signals: ALL_SIGNALS,
        description: "removes attributes not allowed and masks blocked values",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "memory_limiter",
        signals: ALL_SIGNALS,
        description: "keeps data in flight under a memory limit; receivers refuse (retryably) above it",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "tail_sampling",
        signals: &[Signal::Traces],
        description: "decides per whole trace after decision_wait, by policies",
    },
    TypeInfo {
        kind: ComponentKind::Processor,
        name: "filter",
        signals: ALL_SIGNALS,
        description: "drops spans, span events, metrics, data points and log records matching OTTL conditions",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "debug",
        signals: ALL_SIGNALS,
        description: "writes data to switchyard's log",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "file",
        signals: ALL_SIGNALS,
        description: "appends OTLP/JSON lines to a file, with rotation",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "otlp",
        signals: ALL_SIGNALS,
        description: "OTLP over gRPC to a vendor or Jaeger (alias otlp_grpc)",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "otlphttp",
        signals: ALL_SIGNALS,
        description: "OTLP over HTTP to a vendor or Jaeger (alias otlp_http)",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "clickhouse",
        signals: &[Signal::Logs],
        description: "ClickHouse over its HTTP interface (JSONEachRow inserts)",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "elasticsearch",
        signals: &[Signal::Logs],
        description: "Elasticsearch / OpenSearch _bulk API",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "kafka",
        signals: ALL_SIGNALS,
        description: "OTLP messages to Kafka topics",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "loki",
        signals: &[Signal::Logs],
        description: "Grafana Loki push API (protobuf+snappy or JSON)",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "prometheus",
        signals: &[Signal::Metrics],
        description: "serves metrics on /metrics for Prometheus to scrape",
    },
    TypeInfo {
        kind: ComponentKind::Exporter,
        name: "prometheusremotewrite",
        signals: &[Signal::Metrics],
        description: "Prometheus Remote Write 1.0 to Prometheus, VictoriaMetrics, Mimir and others",
    },
    TypeInfo {
        kind: ComponentKind::Extension,
        name: "file_storage",
        signals: &[],
        description: "a directory for state kept across restarts (filelog offsets)",
    },
    TypeInfo {
        kind: ComponentKind::Extension,
        name: "health_check",
        signals: &[],
        description: "HTTP health endpoint (200 running, 503 otherwise)",
    },
];

pub fn type_names(kind: ComponentKind) -> Vec<&'static str> {
    TYPES.iter().filter(|t| t.kind == kind).map(|t| t.name).collect()
}

fn signals_of(kind: ComponentKind, name: &str) -> &'static [Signal] {
    TYPES.iter().find(|t| t.kind == kind && t.name == name).map_or(&[], |t| t.signals)
}

#[derive(Debug, Clone)]
pub enum ReceiverConfig {
    Otlp(OtlpReceiverConfig),
    Jaeger(JaegerReceiverConfig),
    Zipkin(ZipkinReceiverConfig),
    Prometheus(Box<PrometheusReceiverConfig>),
    PrometheusRemoteWrite(PrometheusRemoteWriteReceiverConfig),
    Syslog(crate::receivers::syslog::SyslogConfig),
    FileLog(Box<crate::receivers::filelog::FileLogConfig>),
    Kafka(Box<crate::receivers::kafka::KafkaReceiverConfig>),
    FluentForward(crate::receivers::fluentforward::FluentForwardConfig),
}

#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    Batch(BatchConfig),
    Filter(Box<crate::processors::filter::FilterConfig>),
    Attributes(Box<crate::processors::attributes::AttributesConfig>),
    Resource(crate::processors::resource::ResourceConfig),
    ProbabilisticSampler(crate::processors::probabilistic_sampler::ProbabilisticSamplerConfig),
    Transform(Box<crate::processors::transform::TransformConfig>),
    Redaction(Box<crate::processors::redaction::RedactionConfig>),
    MemoryLimiter(crate::processors::memory_limiter::MemoryLimiterConfig),
    TailSampling(Box<crate::processors::tail_sampling::TailSamplingConfig>),
}

#[derive(Debug, Clone)]
pub enum ExporterConfig {
    Debug(DebugConfig),
    File(FileConfig),
    OtlpHttp(Box<OtlpHttpConfig>),
    OtlpGrpc(Box<OtlpGrpcConfig>),
    PrometheusRemoteWrite(Box<PrometheusRemoteWriteConfig>),
    Prometheus(Box<PrometheusExporterConfig>),
    Loki(Box<crate::exporters::loki::LokiConfig>),
    Elasticsearch(Box<crate::exporters::elasticsearch::ElasticsearchConfig>),
    ClickHouse(Box<crate::exporters::clickhouse::ClickHouseConfig>),
    Kafka(Box<crate::exporters::kafka::KafkaExporterConfig>),
}

#[derive(Debug, Clone)]
pub enum ExtensionConfig {
    HealthCheck(HealthCheckConfig),
    FileStorage(crate::extensions::file_storage::FileStorageConfig),
}

impl ReceiverConfig {
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ReceiverConfig::Otlp(_) => signals_of(ComponentKind::Receiver, "otlp"),
            ReceiverConfig::Jaeger(_) => signals_of(ComponentKind::Receiver, "jaeger"),
            ReceiverConfig::Zipkin(_) => signals_of(ComponentKind::Receiver, "zipkin"),
            ReceiverConfig::Prometheus(_) => signals_of(ComponentKind::Receiver, "prometheus"),
            ReceiverConfig::PrometheusRemoteWrite(_) => signals_of(ComponentKind::Receiver, "prometheusremotewrite"),
            ReceiverConfig::Syslog(_) => signals_of(ComponentKind::Receiver, "syslog"),
            ReceiverConfig::FileLog(_) => signals_of(ComponentKind::Receiver, "filelog"),
            ReceiverConfig::Kafka(_) => signals_of(ComponentKind::Receiver, "kafka"),
            ReceiverConfig::FluentForward(_) => signals_of(ComponentKind::Receiver, "fluentforward"),
        }
    }
}

impl ProcessorConfig {
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ProcessorConfig::Batch(_) => signals_of(ComponentKind::Processor, "batch"),
            ProcessorConfig::Filter(_) => signals_of(ComponentKind::Processor, "filter"),
            ProcessorConfig::Attributes(_) => signals_of(ComponentKind::Processor, "attributes"),
            ProcessorConfig::Resource(_) => signals_of(ComponentKind::Processor, "resource"),
            ProcessorConfig::ProbabilisticSampler(_) => signals_of(ComponentKind::Processor, "probabilistic_sampler"),
            ProcessorConfig::Transform(_) => signals_of(ComponentKind::Processor, "transform"),
            ProcessorConfig::Redaction(_) => signals_of(ComponentKind::Processor, "redaction"),
            ProcessorConfig::MemoryLimiter(_) => signals_of(ComponentKind::Processor, "memory_limiter"),
            ProcessorConfig::TailSampling(_) => signals_of(ComponentKind::Processor, "tail_sampling"),
        }
    }
}

impl ExporterConfig {
    pub fn signals(&self) -> &'static [Signal] {
        match self {
            ExporterConfig::Debug(_) => signals_of(ComponentKind::Exporter, "debug"),
            ExporterConfig::File(_) => signals_of(ComponentKind::Exporter, "file"),
            ExporterConfig::OtlpHttp(_) => signals_of(ComponentKind::Exporter, "otlphttp"),
            ExporterConfig::OtlpGrpc(_) => signals_of(ComponentKind::Exporter, "otlp"),
            ExporterConfig::PrometheusRemoteWrite(_) => signals_of(ComponentKind::Exporter, "prometheusremotewrite"),
            ExporterConfig::Prometheus(_) => signals_of(ComponentKind::Exporter, "prometheus"),
            ExporterConfig::Loki(_) => signals_of(ComponentKind::Exporter, "loki"),
            ExporterConfig::Elasticsearch(_) => signals_of(ComponentKind::Exporter, "elasticsearch"),
            ExporterConfig::ClickHouse(_) => signals_of(ComponentKind::Exporter, "clickhouse"),
            ExporterConfig::Kafka(_) => signals_of(ComponentKind::Exporter, "kafka"),
        }
    }

    /// What takes this exporter's secrets (credentials, header values, URL user info) out of
    /// the failure reasons it logs.
    pub fn scrubber(&self) -> crate::secret::Scrubber {
        use crate::secret::Scrubber;
        match self {
            ExporterConfig::OtlpHttp(c) => Scrubber::new(
                c.headers.values(),
                [&c.endpoint, &c.traces_endpoint, &c.metrics_endpoint, &c.logs_endpoint].into_iter().flatten(),
            ),
            ExporterConfig::OtlpGrpc(c) => Scrubber::new(c.headers.values(), [&c.endpoint]),
            ExporterConfig::PrometheusRemoteWrite(c) => Scrubber::new(c.headers.values(), [&c.endpoint]),
            ExporterConfig::Loki(c) => Scrubber::new(c.headers.values(), [&c.endpoint]),
            ExporterConfig::Elasticsearch(c) => {
                let credentials = format!("{}:{}", c.user.expose(), c.password.expose());
                let basic = crate::secret::Secret::new(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    credentials,
                ));
                let basic = (!c.user.is_empty()).then_some(&basic);
                Scrubber::new([&c.user, &c.password, &c.api_key].into_iter().chain(basic), &c.endpoints)
            }
            ExporterConfig::ClickHouse(c) => Scrubber::new([&c.username, &c.password], [&c.endpoint]),
            ExporterConfig::Debug(_)
            | ExporterConfig::File(_)
            | ExporterConfig::Prometheus(_)
            | ExporterConfig::Kafka(_) => Scrubber::default(),
        }
    }
}

/// Decodes a typed config and runs its own checks, pinning their errors to the key they name.
fn typed<T: DeserializeOwned>(
    node: &Node,
    path: &str,
    validate: impl Fn(&T) -> Result<(), (String, String)>,
) -> Result<T, ConfigError> {
    let cfg: T = from_node(node, path)?;
    validate(&cfg).map_err(|(key, message)| {
        let mut at = node;
        for part in key.split('.') {
            match at.get(part) {
                Some(n) => at = n,
                None => break,
            }
        }
        ConfigError::new(&at.loc, format!("{path}.{key}"), message)
    })?;
    Ok(cfg)
}

fn no_checks<T>(_: &T) -> Result<(), (String, String)> {
    Ok(())
}

pub fn decode_receiver(id: &ComponentId, node: &Node, path: &str) -> Result<Option<ReceiverConfig>, ConfigError> {
    Ok(match id.type_name.as_str() {
        "otlp" => Some(ReceiverConfig::Otlp(typed(node, path, OtlpReceiverConfig::validate)?)),
        "jaeger" => Some(ReceiverConfig::Jaeger(typed(node, path, JaegerReceiverConfig::validate)?)),
        "zipkin" => Some(ReceiverConfig::Zipkin(typed(node, path, ZipkinReceiverConfig::validate)?)),
        "prometheus" => {
            Some(ReceiverConfig::Prometheus(Box::new(typed(node, path, PrometheusReceiverConfig::validate)?)))
        }
        "fluentforward" | "fluent_forward" => Some(ReceiverConfig::FluentForward(typed(
            node,
            path,
            crate::receivers::fluentforward::FluentForwardConfig::validate,
        )?)),
        "kafka" => Some(ReceiverConfig::Kafka(Box::new(typed(
            node,
            path,
            crate::receivers::kafka::KafkaReceiverConfig::validate,
        )?))),
        "filelog" => Some(ReceiverConfig::FileLog(Box::new(typed(
            node,
            path,
            crate::receivers::filelog::FileLogConfig::validate,
        )?))),
        "syslog" => Some(ReceiverConfig::Syslog(typed(node, path, crate::receivers::syslog::SyslogConfig::validate)?)),
        "prometheusremotewrite" => Some(ReceiverConfig::PrometheusRemoteWrite(typed(
            node,
            path,
            PrometheusRemoteWriteReceiverConfig::validate,
        )?)),
        _ => None,
    })
}

pub fn decode_processor(id: &ComponentId, node: &Node, path: &str) -> Result<Option<ProcessorConfig>, ConfigError> {
    Ok(match id.type_name.as_str() {
        "batch" => Some(ProcessorConfig::Batch(typed(node, path, BatchConfig::validate)?)),
        "attributes" => Some(ProcessorConfig::Attributes(Box::new(typed(
            node,
            path,
            crate::processors::attributes::AttributesConfig::validate,
        )?))),
        "resource" => {
            Some(ProcessorConfig::Resource(typed(node, path, crate::processors::resource::ResourceConfig::validate)?))
        }
        "probabilistic_sampler" => Some(ProcessorConfig::ProbabilisticSampler(typed(
            node,
            path,
            crate::processors::probabilistic_sampler::ProbabilisticSamplerConfig::validate,
        )?)),
        "transform" => Some(ProcessorConfig::Transform(Box::new(typed(
            node,
            path,
            crate::processors::transform::TransformConfig::validate,
        )?))),
        "redaction" => Some(ProcessorConfig::Redaction(Box::new(typed(
            node,
            path,
            crate::processors::redaction::RedactionConfig::validate,
        )?))),
        "memory_limiter" => Some(ProcessorConfig::MemoryLimiter(typed(
            node,
            path,
            crate::processors::memory_limiter::MemoryLimiterConfig::validate,
        )?)),
        "tail_sampling" => Some(ProcessorConfig::TailSampling(Box::new(typed(
            node,
            path,
            crate::processors::tail_sampling::TailSamplingConfig::validate,
        )?))),
        "filter" => Some(ProcessorConfig::Filter(Box::new(typed(
            node,
            path,
            crate::processors::filter::FilterConfig::validate,
        )?))),
        _ => None,
    })
}

pub fn decode_exporter(id: &ComponentId, node: &Node, path: &str) -> Result<Option<ExporterConfig>, ConfigError> {
    Ok(match id.type_name.as_str() {
        "debug" => Some(ExporterConfig::Debug(typed(node, path, no_checks)?)),
        "file" => Some(ExporterConfig::File(typed(node, path, FileConfig::validate)?)),
        "otlp" | "otlp_grpc" => Some(ExporterConfig::OtlpGrpc(Box::new(typed(node, path, OtlpGrpcConfig::validate)?))),
        "kafka" => Some(ExporterConfig::Kafka(Box::new(typed(
            node,
            path,
            crate::exporters::kafka::KafkaExporterConfig::validate,
        )?))),
        "clickhouse" => Some(ExporterConfig::ClickHouse(Box::new(typed(
            node,
            path,
            crate::exporters::clickhouse::ClickHouseConfig::validate,
        )?))),
        "elasticsearch" => Some(ExporterConfig::Elasticsearch(Box::new(typed(
            node,
            path,
            crate::exporters::elasticsearch::ElasticsearchConfig::validate,
        )?))),
        "loki" => {
            Some(ExporterConfig::Loki(Box::new(typed(node, path, crate::exporters::loki::LokiConfig::validate)?)))
        }
        "prometheus" => {
            Some(ExporterConfig::Prometheus(Box::new(typed(node, path, PrometheusExporterConfig::validate)?)))
        }
        "prometheusremotewrite" => Some(ExporterConfig::PrometheusRemoteWrite(Box::new(typed(
            node,
            path,
            PrometheusRemoteWriteConfig::validate,
        )?))),
        "otlphttp" | "otlp_http" => {
            Some(ExporterConfig::OtlpHttp(Box::new(typed(node, path, OtlpHttpConfig::validate)?)))
        }
        _ => None,
    })
}

pub fn decode_extension(id: &ComponentId, node: &Node, path: &str) -> Result<Option<ExtensionConfig>, ConfigError> {
    Ok(match id.type_name.as_str() {
        "health_check" => Some(ExtensionConfig::HealthCheck(typed(node, path, HealthCheckConfig::validate)?)),
        "file_storage" => Some(ExtensionConfig::FileStorage(typed(
            node,
            path,
            crate::extensions::file_storage::FileStorageConfig::validate,
        )?)),
        _ => None,
    })
}
