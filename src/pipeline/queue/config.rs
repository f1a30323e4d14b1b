//! `sending_queue` in an exporter's configuration, with the collector's keys: how much the queue
//! holds and in what units, how many batches are exported at once, whether it is kept on disk
//! (`storage`, a `file_storage` extension) and how it batches what it sends (`batch`).

use super::QueueSettings;
use crate::config::deserialize_duration;
use crate::pipeline::Sizer;
use crate::pipeline::retry::RetryConfig;
use serde::Deserialize;
use std::time::Duration;

/// What an in-memory queue holds when neither `queue_size` nor `sizer` is set: bytes of the
/// encoded data, a bound that keeps memory flat whatever the batches' sizes.
pub const DEFAULT_QUEUE_BYTES: usize = 16 << 20;

/// What a persistent queue may hold on disk when `storage_limit_mib` is not set.
pub const DEFAULT_STORAGE_LIMIT_MIB: u64 = 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendingQueueConfig {
    pub enabled: bool,
    pub num_consumers: usize,
    /// What the queue holds, in `sizer` units. Given alone, it counts requests (as in the
    /// collector); with neither set, the queue holds `DEFAULT_QUEUE_BYTES` bytes.
    pub queue_size: Option<usize>,
    pub sizer: Option<Sizer>,
    /// When full, make receivers wait for room (up to `BLOCK_LIMIT`) before refusing.
    pub block_on_overflow: bool,
    /// A `file_storage` extension: the queue is a write-ahead log in its directory.
    pub storage: Option<String>,
    /// What a persistent queue may hold on disk, in MiB (switchyard's own key).
    pub storage_limit_mib: u64,
    /// Batching behind the queue; `batch:` with no keys (or no value) means the defaults.
    #[serde(deserialize_with = "batch_or_defaults")]
    pub batch: Option<QueueBatchConfig>,
}

impl Default for SendingQueueConfig {
    fn default() -> Self {
        SendingQueueConfig {
            enabled: true,
            num_consumers: 10,
            queue_size: None,
            sizer: None,
            block_on_overflow: true,
            storage: None,
            storage_limit_mib: DEFAULT_STORAGE_LIMIT_MIB,
            batch: None,
        }
    }
}

/// `batch:` written with no value (as in the OpenTelemetry demo's configuration) means the
/// defaults, as `batch: {}` does; left out, there is no batching behind the queue.
fn batch_or_defaults<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<QueueBatchConfig>, D::Error> {
    Ok(Some(Option::<QueueBatchConfig>::deserialize(d)?.unwrap_or_default()))
}

/// `sending_queue.batch`: what the queue's consumers gather into one export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatchConfig {
    /// The longest the first piece of a batch waits for `min_size` to be reached.
    #[serde(deserialize_with = "deserialize_duration")]
    pub flush_timeout: Duration,
    /// A batch is sent as soon as it holds this much (in `sizer` units).
    pub min_size: usize,
    /// A batch never holds more than this; 0 means no bound.
    pub max_size: usize,
    pub sizer: Sizer,
}

impl Default for QueueBatchConfig {
    fn default() -> Self {
        QueueBatchConfig { flush_timeout: Duration::from_millis(200), min_size: 8192, max_size: 0, sizer: Sizer::Items }
    }
}

impl QueueBatchConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        if self.max_size > 0 && self.max_size < self.min_size {
            return Err(("batch.max_size".into(), format!("must be 0 or at least min_size ({})", self.min_size)));
        }
        if self.flush_timeout.is_zero() {
            return Err(("batch.flush_timeout".into(), "must be greater than 0".into()));
        }
        if self.sizer == Sizer::Requests {
            return Err((
                "batch.sizer".into(),
                "batches are sized in items or bytes (requests merged into one batch are one request)".into(),
            ));
        }
        Ok(())
    }
}

impl SendingQueueConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !self.enabled {
            return Err((
                "enabled".into(),
                "switchyard always queues (room is claimed when data is admitted); remove enabled: false".into(),
            ));
        }
        if self.num_consumers == 0 || self.queue_size == Some(0) {
            return Err(("queue_size".into(), "queue_size and num_consumers must be at least 1".into()));
        }
        if self.storage.as_deref() == Some("") {
            return Err(("storage".into(), "must name a file_storage extension".into()));
        }
        if self.storage_limit_mib == 0 {
            return Err(("storage_limit_mib".into(), "must be at least 1".into()));
        }
        if let Some(b) = &self.batch {
            b.validate()?;
        }
        Ok(())
    }

    /// The size and unit of the in-memory bound (see `queue_size`).
    pub fn bound(&self) -> (usize, Sizer) {
        match (self.queue_size, self.sizer) {
            (Some(n), None) => (n, Sizer::Requests),
            (Some(n), Some(sizer)) => (n, sizer),
            (None, None | Some(Sizer::Bytes)) => (DEFAULT_QUEUE_BYTES, Sizer::Bytes),
            (None, Some(sizer)) => (1000, sizer),
        }
    }

    pub fn settings(&self, retry: RetryConfig) -> QueueSettings {
        let (queue_size, sizer) = self.bound();
        QueueSettings {
            queue_size,
            num_consumers: self.num_consumers,
            sizer,
            // With a persistent queue, `queue_size` bounds it only when set (the disk budget does).
            count_bound_set: self.queue_size.is_some() || self.sizer.is_some(),
            block_on_overflow: self.block_on_overflow,
            retry,
            scrubber: Default::default(),
            storage: self.storage.clone(),
            storage_limit: self.storage_limit_mib.saturating_mul(1 << 20),
            // A persistent queue always batches behind it (the batch processor in front of it
            // passes data straight through, so that clients are answered once it is on disk).
            batch: self.batch.clone().or_else(|| self.storage.as_ref().map(|_| QueueBatchConfig::default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> SendingQueueConfig {
        let value: serde_json::Value = serde_json::from_str(yaml).unwrap();
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn memory_is_bounded_in_bytes_unless_the_collector_keys_say_otherwise() {
        assert_eq!(parse("{}").bound(), (DEFAULT_QUEUE_BYTES, Sizer::Bytes));
        assert_eq!(parse(r#"{"queue_size": 5000}"#).bound(), (5000, Sizer::Requests), "the collector's meaning");
        assert_eq!(parse(r#"{"sizer": "items"}"#).bound(), (1000, Sizer::Items));
        assert_eq!(parse(r#"{"sizer": "bytes", "queue_size": 1048576}"#).bound(), (1 << 20, Sizer::Bytes));
    }

    #[test]
    fn an_empty_batch_means_the_defaults_and_storage_batches_by_default() {
        let q = parse(r#"{"batch": {}}"#);
        assert_eq!(q.batch, Some(QueueBatchConfig::default()));
        assert_eq!(parse(r#"{"batch": null}"#).batch, Some(QueueBatchConfig::default()), "`batch:` alone");
        assert!(parse("{}").settings(RetryConfig::default()).batch.is_none());
        let stored = parse(r#"{"storage": "file_storage"}"#).settings(RetryConfig::default());
        assert_eq!(stored.batch, Some(QueueBatchConfig::default()));
        assert_eq!(stored.storage_limit, 1 << 30);
        let bad = parse(r#"{"batch": {"min_size": 100, "max_size": 10}}"#);
        assert_eq!(bad.validate().unwrap_err().0, "batch.max_size");
    }
}
