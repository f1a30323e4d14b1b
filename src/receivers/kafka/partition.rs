//! One partition's reading loop: fetch, decode, submit with a delivery notice, and wait while
//! the pipelines refuse; a message given up on goes back to being unread.

use super::offsets::Offsets;
use super::{InitialOffset, KafkaReceiverConfig};
use crate::kafka::Encoding;
use crate::pipeline::{Delivery, Intake, Signal};
use crate::receivers::bad_input::BadInput;
use rskafka::client::partition::{OffsetAt, PartitionClient};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// One partition's reading loop.
pub struct Partition {
    pub pc: PartitionClient,
    pub signal: Signal,
    pub cfg: KafkaReceiverConfig,
    pub intake: Arc<Intake>,
    pub offsets: Arc<Mutex<Offsets>>,
    pub bad: Arc<BadInput>,
}

impl Partition {
    /// Reads from `committed`, or, for a partition the group has no offset for, from where
    /// `initial_offset` says (asked of the broker until it answers).
    pub async fn run(self, committed: Option<i64>, stop: CancellationToken) {
        let p = self.pc.partition();
        let mut offset = match committed {
            Some(o) => o,
            None => loop {
                let at = match self.cfg.initial_offset {
                    InitialOffset::Earliest => OffsetAt::Earliest,
                    InitialOffset::Latest => OffsetAt::Latest,
                };
                match self.pc.get_offset(at).await {
                    Ok(o) => break o,
                    Err(e) => self.bad.warn(
                        "unavailable",
                        &format!(
                            "partition {p}: asking for its {:?} offset: {e}; trying again",
                            self.cfg.initial_offset
                        ),
                    ),
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            },
        };
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).start(p, offset);
        let wait = self.cfg.max_fetch_wait.as_millis().min(i32::MAX as u128) as i32;
        while !stop.is_cancelled() {
            let fetched = tokio::select! {
                _ = stop.cancelled() => return,
                f = self.pc.fetch_records(offset, 1..self.cfg.default_fetch_size, wait) => f,
            };
            let records = match fetched {
                Ok((records, _high_watermark)) => records,
                Err(e) => {
                    if e.to_string().contains("OffsetOutOfRange") {
                        let earliest = self.pc.get_offset(OffsetAt::Earliest).await.unwrap_or(0);
                        self.bad.warn(
                            "offset_out_of_range",
                            &format!("partition {p}: offset {offset} is gone; from {earliest}"),
                        );
                        offset = earliest;
                        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).skip(p, offset);
                    } else {
                        self.bad.warn("fetch", &format!("partition {p}: {e}"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    continue;
                }
            };
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
            let attempt = batch.clone().on_delivered(Delivery::new(move || {
                offsets.lock().unwrap_or_else(|e| e.into_inner()).delivered(p, offset)
            }));
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
