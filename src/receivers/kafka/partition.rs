//! One partition's reading loop: fetch, decode, submit with a delivery notice, and wait while
//! the pipelines refuse; a message given up on goes back to being unread.

use super::offsets::Offsets;
use super::{InitialOffset, KafkaReceiverConfig};
use crate::kafka::Encoding;
use crate::pipeline::{Intake, Signal};
use crate::receivers::bad_input::BadInput;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One partition's reading loop.
pub struct Partition {
    pub client: Arc<rskafka::client::Client>,
    pub topic: String,
    pub partition: i32,
    pub signal: Signal,
    pub cfg: KafkaReceiverConfig,
    pub intake: Arc<Intake>,
    pub offsets: Arc<Mutex<Offsets>>,
    pub bad: Arc<BadInput>,
}

/// How long one broker request of the reader may take before it is tried again.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

impl Partition {
    /// Runs `op` until it succeeds (each try bounded by `REQUEST_LIMIT`, a second between
    /// tries, each failure warned about); `None` when stopping.
    async fn persist<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        stop: &CancellationToken,
        mut op: impl FnMut() -> F,
    ) -> Option<T> {
        loop {
            let outcome = tokio::select! {
                _ = stop.cancelled() => return None,
                r = tokio::time::timeout(REQUEST_LIMIT, op()) => r,
            };
            let reason = match outcome {
                Ok(Ok(v)) => return Some(v),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {REQUEST_LIMIT:?}"),
            };
            self.bad.warn("unavailable", &format!("{}/{}: {what}: {reason}; trying again", self.topic, self.partition));
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Where `initial_offset` says a partition without a usable committed offset starts.
    async fn initial(&self, pc: &PartitionClient, stop: &CancellationToken) -> Option<i64> {
        let at = || match self.cfg.initial_offset {
            InitialOffset::Earliest => OffsetAt::Earliest,
            InitialOffset::Latest => OffsetAt::Latest,
        };
        self.persist("asking for its initial offset", stop, || pc.get_offset(at())).await
    }

    /// Reads from `committed`, or, for a partition the group has no offset for, from where
    /// `initial_offset` says. Broker trouble is retried for as long as the partition is held.
    pub async fn run(self, committed: Option<i64>, stop: CancellationToken) {
        let p = self.partition;
        let client = self.client.clone();
        let topic = self.topic.clone();
        let Some(pc) = self
            .persist("connecting to its leader", &stop, || {
                client.partition_client(topic.clone(), p, UnknownTopicHandling::Retry)
            })
            .await
        else {
            return;
        };
        let mut offset = match committed {
            Some(o) => o,
            None => match self.initial(&pc, &stop).await {
                Some(o) => o,
                None => return,
            },
        };
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).start(p, offset);
        let wait = self.cfg.max_fetch_wait.as_millis().min(i32::MAX as u128) as i32;
        while !stop.is_cancelled() {
            let fetched = tokio::select! {
                _ = stop.cancelled() => return,
                f = tokio::time::timeout(REQUEST_LIMIT, pc.fetch_records(offset, 1..self.cfg.default_fetch_size, wait)) => f,
            };
            let (records, high_watermark) = match fetched {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) if e.to_string().contains("OffsetOutOfRange") => {
                    // The offset is gone (retention) or past the end (the topic was recreated):
                    // start again where `initial_offset` says, as Kafka's consumers do.
                    let Some(restart) = self.initial(&pc, &stop).await else { return };
                    self.bad.warn(
                        "offset_out_of_range",
                        &format!("partition {p}: offset {offset} is out of range; reading from {restart}"),
                    );
                    offset = restart;
                    self.offsets.lock().unwrap_or_else(|e| e.into_inner()).restart(p, offset);
                    continue;
                }
                Ok(Err(e)) => {
                    self.bad.warn("fetch", &format!("partition {p}: {e}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(_) => {
                    self.bad.warn("fetch", &format!("partition {p}: no answer within {REQUEST_LIMIT:?}"));
                    continue;
                }
            };
            if records.is_empty() && offset < high_watermark {
                // Nothing returned below the high watermark: the batch at `offset` holds only
                // transaction markers, which the client drops. Step over it.
                offset += 1;
                self.offsets.lock().unwrap_or_else(|e| e.into_inner()).skip(p, offset);
                continue;
            }
            for r in records {
                if !self.hand_on(p, r.offset, r.record.value.unwrap_or_default(), &stop).await {
                    return;
                }
                offset = r.offset + 1;
            }
        }
    }

    /// Decodes and submits one message, waiting while the pipelines refuse. False when stopping.
    async fn hand_on(&self, p: i32, offset: i64, value: Vec<u8>, stop: &CancellationToken) -> bool {
        let decoded = match self.cfg.encoding {
            Encoding::OtlpProto => crate::receivers::otlp::decode_protobuf(self.signal, bytes::Bytes::from(value)),
            Encoding::OtlpJson => crate::receivers::otlp::decode_json(self.signal, &value),
        };
        let batch = match decoded {
            Ok(d) if d.batch.items() > 0 => {
                self.intake.rejected("kafka", self.signal, d.rejected);
                d.batch
            }
            Ok(_) => {
                self.offsets.lock().unwrap_or_else(|e| e.into_inner()).skip(p, offset + 1);
                return true;
            }
            Err(e) => {
                self.bad.report("malformed", &format!("partition {p} offset {offset}: {}; skipped", e.0));
                self.offsets.lock().unwrap_or_else(|e| e.into_inner()).skip(p, offset + 1);
                return true;
            }
        };
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).sent(p, offset);
        loop {
            let offsets = self.offsets.clone();
            let attempt = batch.clone().on_delivered(
                self.intake.delivery(move || offsets.lock().unwrap_or_else(|e| e.into_inner()).delivered(p, offset)),
            );
            match self.intake.submit("kafka", attempt).await {
                Ok(()) => return true,
                Err(r) if r.retryable && !stop.is_cancelled() => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(r) => {
                    if !stop.is_cancelled() {
                        self.bad.warn("refused", &format!("partition {p} offset {offset}: {}", r.message));
                    }
                    // Not taken: the next reader of the partition starts at this message.
                    self.offsets.lock().unwrap_or_else(|e| e.into_inner()).withdraw(p, offset);
                    return false;
                }
            }
        }
    }
}
