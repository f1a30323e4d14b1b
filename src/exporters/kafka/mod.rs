//! The `kafka` exporter: each batch becomes Kafka messages holding OTLP export requests
//! (protobuf or OTLP/JSON) on the signal's topic. Spans can be keyed and partitioned by trace id,
//! so that one trace's spans stay in one partition, in order. Connections are made on first use,
//! so switchyard starts while the brokers are still down; failures are retried by the queue.

use crate::config::deserialize_duration;
use crate::kafka::{Encoding, check_brokers, default_topic};
use crate::pipeline::queue::SendingQueueConfig;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProducerCompression {
    #[default]
    None,
    Gzip,
    Snappy,
    Zstd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// The largest message; a batch that encodes larger is split.
    pub max_message_bytes: usize,
    /// `1` (the leader) or `-1` (all in-sync replicas); switchyard always asks for `-1`.
    pub required_acks: i16,
    pub compression: ProducerCompression,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig { max_message_bytes: 1_000_000, required_acks: 1, compression: ProducerCompression::None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaExporterConfig {
    pub brokers: Vec<String>,
    pub client_id: String,
    /// Empty: the signal's default (`otlp_spans`, `otlp_metrics`, `otlp_logs`).
    pub topic: String,
    pub encoding: Encoding,
    /// One message per trace, keyed by the trace id, partitioned by that key.
    pub partition_traces_by_id: bool,
    pub producer: ProducerConfig,
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
}

impl Default for KafkaExporterConfig {
    fn default() -> Self {
        KafkaExporterConfig {
            brokers: vec!["localhost:9092".into()],
            client_id: "otel-collector".into(),
            topic: String::new(),
            encoding: Encoding::OtlpProto,
            partition_traces_by_id: false,
            producer: ProducerConfig::default(),
            timeout: Duration::from_secs(5),
            sending_queue: SendingQueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
        }
    }
}

impl KafkaExporterConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        check_brokers(&self.brokers)?;
        if !matches!(self.producer.required_acks, 1 | -1) {
            return Err((
                "producer.required_acks".into(),
                "1 or -1: switchyard never sends without an acknowledgement (0 could lose acknowledged data)".into(),
            ));
        }
        if self.producer.max_message_bytes < 1024 {
            return Err(("producer.max_message_bytes".into(), "must be at least 1024".into()));
        }
        self.sending_queue.validate().map_err(|(k, m)| (format!("sending_queue.{k}"), m))?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }
}

/// The spans of a request grouped by trace id, each group a request of its own (resources and
/// scopes kept), in order of first appearance.
pub fn split_by_trace(request: &ExportTraceServiceRequest) -> Vec<(Vec<u8>, ExportTraceServiceRequest)> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut by_trace: HashMap<Vec<u8>, ExportTraceServiceRequest> = HashMap::new();
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let out = by_trace.entry(span.trace_id.clone()).or_insert_with(|| {
                    order.push(span.trace_id.clone());
                    ExportTraceServiceRequest::default()
                });
                // Same resource and scope as the last span added: append; else open new ones.
                let same_resource = out
                    .resource_spans
                    .last()
                    .is_some_and(|r| r.resource == rs.resource && r.schema_url == rs.schema_url);
                if !same_resource {
                    out.resource_spans.push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    });
                }
                let r = out.resource_spans.last_mut().expect("just ensured");
                let same_scope =
                    r.scope_spans.last().is_some_and(|s| s.scope == ss.scope && s.schema_url == ss.schema_url);
                if !same_scope {
                    r.scope_spans.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    });
                }
                r.scope_spans.last_mut().expect("just ensured").spans.push(span.clone());
            }
        }
    }
    order
        .into_iter()
        .map(|id| {
            let r = by_trace.remove(&id).unwrap_or_default();
            (id, r)
        })
        .collect()
}

/// FNV-1a (32 bit) of a message key: the partition is this modulo the partition count.
pub fn key_hash(key: &[u8]) -> u32 {
    key.iter().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x01000193))
}

/// A message's key (if any) and value.
type KeyedMessage = (Option<Vec<u8>>, Vec<u8>);

/// The connection and the partitions of each topic used so far.
struct Producer {
    client: rskafka::client::Client,
    topics: Mutex<HashMap<String, Arc<Vec<PartitionClient>>>>,
}

pub struct KafkaExporter {
    name: String,
    cfg: KafkaExporterConfig,
    producer: OnceCell<Producer>,
    next: AtomicUsize,
}

impl KafkaExporter {
    pub fn new(name: String, cfg: &KafkaExporterConfig) -> KafkaExporter {
        if cfg.producer.required_acks == 1 {
            tracing::info!(exporter = %name, "producer.required_acks 1 is raised to -1: switchyard waits for all in-sync replicas");
        }
        KafkaExporter { name, cfg: cfg.clone(), producer: OnceCell::new(), next: AtomicUsize::new(0) }
    }

    async fn partitions(&self, topic: &str) -> Result<Arc<Vec<PartitionClient>>, ExportError> {
        let retry = |reason: String| ExportError::Retryable { after: None, reason };
        let producer = self
            .producer
            .get_or_try_init(|| async {
                let client = crate::kafka::client(&self.cfg.brokers, &self.cfg.client_id).await.map_err(retry)?;
                Ok::<_, ExportError>(Producer { client, topics: Mutex::new(HashMap::new()) })
            })
            .await?;
        let mut topics = producer.topics.lock().await;
        if let Some(p) = topics.get(topic) {
            return Ok(p.clone());
        }
        let ids = crate::kafka::partitions(&producer.client, topic).await.map_err(retry)?;
        let mut clients = Vec::new();
        for id in ids {
            clients.push(
                producer
                    .client
                    .partition_client(topic, id, UnknownTopicHandling::Retry)
                    .await
                    .map_err(|e| retry(format!("{topic}/{id}: {e}")))?,
            );
        }
        if clients.is_empty() {
            return Err(retry(format!("topic {topic} has no partitions")));
        }
        let clients = Arc::new(clients);
        topics.insert(topic.to_string(), clients.clone());
        Ok(clients)
    }

    fn encode(&self, request: &Request) -> Result<Vec<u8>, ExportError> {
        match self.cfg.encoding {
            Encoding::OtlpProto => Ok(request.encode_to_vec()),
            Encoding::OtlpJson => super::file::to_json_line(request)
                .map(String::into_bytes)
                .map_err(|reason| ExportError::Permanent { reason }),
        }
    }

    /// The messages of a batch: (key, value), each within `max_message_bytes` where possible.
    fn messages(&self, batch: &Batch) -> Result<Vec<KeyedMessage>, ExportError> {
        let decode = |e: crate::pipeline::DecodeError| ExportError::Permanent { reason: e.to_string() };
        let parts: Vec<(Option<Vec<u8>>, Request)> = match batch.request().map_err(decode)? {
            Request::Traces(t) if self.cfg.partition_traces_by_id => {
                split_by_trace(t).into_iter().map(|(id, r)| (Some(id), Request::Traces(r))).collect()
            }
            other => vec![(None, other.clone())],
        };
        let mut out = Vec::new();
        for (key, request) in parts {
            let value = self.encode(&request)?;
            if value.len() <= self.cfg.producer.max_message_bytes {
                out.push((key, value));
                continue;
            }
            // Too large: split by items into pieces that fit.
            let items = request.item_count();
            let pieces = value.len().div_ceil(self.cfg.producer.max_message_bytes) + 1;
            if items < 2 {
                return Err(ExportError::Permanent {
                    reason: format!("one item encodes to {} bytes, over producer.max_message_bytes", value.len()),
                });
            }
            for part in Batch::from_request(request).split(items.div_ceil(pieces).max(1)) {
                let value = self.encode(part.request().map_err(decode)?)?;
                if value.len() > self.cfg.producer.max_message_bytes {
                    return Err(ExportError::Permanent {
                        reason: format!("a message of {} bytes is over producer.max_message_bytes", value.len()),
                    });
                }
                out.push((key.clone(), value));
            }
        }
        Ok(out)
    }

    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let topic = if self.cfg.topic.is_empty() { default_topic(batch.signal()) } else { &self.cfg.topic };
        let messages = self.messages(batch)?;
        let partitions = self.partitions(topic).await?;
        let mut by_partition: BTreeMap<usize, Vec<Record>> = BTreeMap::new();
        let now = chrono::Utc::now();
        for (key, value) in messages {
            let p = match &key {
                Some(k) => key_hash(k) as usize % partitions.len(),
                None => self.next.fetch_add(1, Ordering::Relaxed) % partitions.len(),
            };
            by_partition.entry(p).or_default().push(Record {
                key,
                value: Some(value),
                headers: BTreeMap::new(),
                timestamp: now,
            });
        }
        let compression = match self.cfg.producer.compression {
            ProducerCompression::None => Compression::NoCompression,
            ProducerCompression::Gzip => Compression::Gzip,
            ProducerCompression::Snappy => Compression::Snappy,
            ProducerCompression::Zstd => Compression::Zstd,
        };
        for (p, records) in by_partition {
            let client = &partitions[p];
            let produce = client.produce(records, compression);
            match tokio::time::timeout(self.cfg.timeout, produce).await {
                Ok(Ok(_offsets)) => {}
                Ok(Err(e)) => return Err(classify(topic, client.partition(), e)),
                Err(_) => {
                    return Err(ExportError::Retryable {
                        after: None,
                        reason: format!(
                            "{topic}/{}: no acknowledgement within {:?}",
                            client.partition(),
                            self.cfg.timeout
                        ),
                    });
                }
            }
        }
        tracing::trace!(exporter = %self.name, topic, items = batch.items(), "produced");
        Ok(())
    }
}

/// Message-size and record errors are permanent; the rest (connection, leadership, timeouts) retried.
fn classify(topic: &str, partition: i32, e: rskafka::client::error::Error) -> ExportError {
    use rskafka::client::error::{Error, ProtocolError};
    let reason = format!("{topic}/{partition}: {e}");
    match e {
        Error::ServerError {
            protocol_error:
                ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidRecord
                | ProtocolError::CorruptMessage
                | ProtocolError::TopicAuthorizationFailed,
            ..
        } => ExportError::Permanent { reason },
        _ => ExportError::Retryable { after: None, reason },
    }
}

impl Exporter for KafkaExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(self.send(batch))
    }
}

/// The `kafka` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<KafkaExporterConfig>(
    "kafka",
    crate::registry::ALL_SIGNALS,
    "OTLP messages to Kafka topics",
);

impl crate::pipeline::component::ExporterSettings for KafkaExporterConfig {
    fn destination(&self) -> String {
        format!("Kafka brokers {}", self.brokers.join(", "))
    }

    fn validate(&self) -> crate::pipeline::component::Checked {
        KafkaExporterConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move { Ok(std::sync::Arc::new(KafkaExporter::new(ctx.name.clone(), self)) as _) })
    }

    fn queue(&self) -> crate::pipeline::queue::QueueSettings {
        self.sending_queue.settings(self.retry_on_failure.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests_support::traces;

    #[test]
    fn spans_are_grouped_by_trace_keeping_resources_and_scopes() {
        let mut request = traces(6);
        for (i, span) in request.resource_spans[0].scope_spans[0].spans.iter_mut().enumerate() {
            span.trace_id = vec![(i % 3) as u8; 16];
        }
        let parts = split_by_trace(&request);
        assert_eq!(parts.len(), 3);
        for (id, r) in &parts {
            let spans: Vec<_> = r.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
            assert_eq!(spans.len(), 2);
            assert!(spans.iter().all(|s| &s.trace_id == id));
            assert_eq!(r.resource_spans[0].resource, request.resource_spans[0].resource);
        }
        assert_eq!(parts[0].0, vec![0; 16], "in order of first appearance");
    }

    #[test]
    fn keys_hash_with_fnv1a() {
        assert_eq!(key_hash(b""), 0x811c9dc5);
        assert_eq!(key_hash(b"a"), 0xe40c292c);
    }
}
