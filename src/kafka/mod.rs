//! What the `kafka` exporter and receiver share: broker connection settings, the default topic
//! of each signal, the message encodings, and the consumer-group protocol (`group`, `assign`,
//! on the wire of `wire`). Produce and fetch go through `rskafka`, a pure-Rust client (no
//! librdkafka, no C toolchain, async on tokio, record batches v2 with gzip/snappy/zstd),
//! maintained by InfluxData for IOx; it has no consumer-group API, so switchyard speaks the
//! group requests itself.

pub mod assign;
pub mod group;
pub mod wire;

use crate::signal::Signal;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The collector's default topics.
pub fn default_topic(signal: Signal) -> &'static str {
    match signal {
        Signal::Traces => "otlp_spans",
        Signal::Metrics => "otlp_metrics",
        Signal::Logs => "otlp_logs",
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The OTLP export request, protobuf.
    #[default]
    OtlpProto,
    /// The OTLP export request, OTLP/JSON.
    OtlpJson,
}

/// Checks `brokers` (`host:port` each).
pub fn check_brokers(brokers: &[String]) -> Result<(), (String, String)> {
    if brokers.is_empty() {
        return Err(("brokers".into(), "list at least one, such as localhost:9092".into()));
    }
    for (i, b) in brokers.iter().enumerate() {
        crate::net::check_endpoint(b).map_err(|m| (format!("brokers.{i}"), m))?;
    }
    Ok(())
}

/// A client for `brokers`.
pub async fn client(brokers: &[String], client_id: &str) -> Result<rskafka::client::Client, String> {
    rskafka::client::ClientBuilder::new(brokers.to_vec())
        .client_id(client_id.to_string())
        .build()
        .await
        .map_err(|e| format!("cannot reach Kafka brokers {brokers:?}: {e}"))
}

/// Every topic the brokers have, with its partitions (sorted).
pub async fn topics(client: &rskafka::client::Client) -> Result<BTreeMap<String, Vec<i32>>, String> {
    let topics = client.list_topics().await.map_err(|e| format!("listing topics: {e}"))?;
    Ok(topics
        .into_iter()
        .map(|t| {
            let mut p: Vec<i32> = t.partitions.into_iter().collect();
            p.sort_unstable();
            (t.name, p)
        })
        .collect())
}

/// The partitions of `topic` (sorted), or an error if the topic does not exist.
pub async fn partitions(client: &rskafka::client::Client, topic: &str) -> Result<Vec<i32>, String> {
    topics(client).await?.remove(topic).ok_or_else(|| format!("topic {topic} does not exist"))
}
