//! The `kafka` receiver: reads OTLP export requests (protobuf or OTLP/JSON) from the signal's
//! topic, every partition, as consumer group `group_id`. A message's offset is committed only
//! once the data in it is delivered (`pipeline::Delivery`), so a restart resumes after the last
//! delivered message: nothing is lost, and only messages in flight are read again.

mod offsets;

use crate::config::deserialize_duration;
use crate::kafka::{Encoding, check_brokers, default_topic};
use crate::pipeline::{Delivery, Intake, Signal};
use crate::receivers::bad_input::BadInput;
use offsets::Offsets;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialOffset {
    #[default]
    Latest,
    Earliest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoCommit {
    /// Commit delivered offsets at all (off: a restart starts again from `initial_offset`).
    pub enable: bool,
    /// How often delivered offsets are committed.
    #[serde(deserialize_with = "deserialize_duration")]
    pub interval: Duration,
}

impl Default for AutoCommit {
    fn default() -> Self {
        AutoCommit { enable: true, interval: Duration::from_secs(1) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaReceiverConfig {
    pub brokers: Vec<String>,
    pub client_id: String,
    /// Empty: the default topic of each signal the receiver's pipelines take.
    pub topic: String,
    pub encoding: Encoding,
    pub group_id: String,
    /// Where a partition without a committed offset starts.
    pub initial_offset: InitialOffset,
    pub autocommit: AutoCommit,
    /// Bytes asked for per fetch and partition.
    pub default_fetch_size: i32,
    /// How long the broker may wait for data before answering a fetch.
    #[serde(deserialize_with = "deserialize_duration")]
    pub max_fetch_wait: Duration,
}

impl Default for KafkaReceiverConfig {
    fn default() -> Self {
        KafkaReceiverConfig {
            brokers: vec!["localhost:9092".into()],
            client_id: "otel-collector".into(),
            topic: String::new(),
            encoding: Encoding::OtlpProto,
            group_id: "otel-collector".into(),
            initial_offset: InitialOffset::Latest,
            autocommit: AutoCommit::default(),
            default_fetch_size: 1 << 20,
            max_fetch_wait: Duration::from_millis(250),
        }
    }
}

impl KafkaReceiverConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        check_brokers(&self.brokers)?;
        if self.group_id.is_empty() {
            return Err(("group_id".into(), "must not be empty".into()));
        }
        if self.default_fetch_size < 1024 {
            return Err(("default_fetch_size".into(), "must be at least 1024".into()));
        }
        if self.autocommit.interval.is_zero() {
            return Err(("autocommit.interval".into(), "must be more than 0".into()));
        }
        Ok(())
    }
}

pub async fn start(
    cfg: KafkaReceiverConfig,
    intake: Arc<Intake>,
    stop: CancellationToken,
) -> Result<Vec<JoinHandle<()>>, String> {
    let mut tasks = Vec::new();
    for signal in Signal::ALL {
        if !intake.accepts(signal) {
            continue;
        }
        let topic = if cfg.topic.is_empty() { default_topic(signal).to_string() } else { cfg.topic.clone() };
        tracing::info!(receiver = intake.receiver(), %topic, group = %cfg.group_id, %signal, "kafka consuming");
        tasks.push(tokio::spawn(consume(cfg.clone(), signal, topic, intake.clone(), stop.clone())));
    }
    Ok(tasks)
}

/// Connects (retrying every second until it can), then reads every partition and commits.
async fn consume(
    cfg: KafkaReceiverConfig,
    signal: Signal,
    topic: String,
    intake: Arc<Intake>,
    stop: CancellationToken,
) {
    let bad = Arc::new(BadInput::new(intake.clone(), "kafka"));
    let (client, partitions, mut group, committed) = loop {
        let attempt = async {
            let client = crate::kafka::client(&cfg.brokers, &cfg.client_id).await?;
            let partitions = crate::kafka::partitions(&client, &topic).await?;
            let mut group =
                crate::kafka::group::GroupClient::connect(&cfg.brokers, &cfg.client_id, &cfg.group_id).await?;
            let committed = group.fetch(&topic, &partitions).await?;
            Ok::<_, String>((client, partitions, group, committed))
        };
        match attempt.await {
            Ok(c) => break c,
            Err(e) => bad.warn("unavailable", &format!("kafka {topic}: {e}; trying again")),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let offsets = Arc::new(Mutex::new(Offsets::default()));
    let mut readers = Vec::new();
    for p in partitions {
        let pc = match client.partition_client(topic.clone(), p, UnknownTopicHandling::Retry).await {
            Ok(pc) => pc,
            Err(e) => {
                bad.warn("unavailable", &format!("kafka {topic}/{p}: {e}"));
                continue;
            }
        };
        let start = match committed.get(&p) {
            Some(o) => *o,
            None => {
                let at =
                    if cfg.initial_offset == InitialOffset::Earliest { OffsetAt::Earliest } else { OffsetAt::Latest };
                pc.get_offset(at).await.unwrap_or(0)
            }
        };
        offsets.lock().unwrap_or_else(|e| e.into_inner()).start(p, start);
        let reader = Partition {
            pc,
            signal,
            cfg: cfg.clone(),
            intake: intake.clone(),
            offsets: offsets.clone(),
            bad: bad.clone(),
        };
        readers.push(tokio::spawn(reader.run(start, stop.clone())));
    }
    // Commit what is delivered, every interval, and once more when all is done at shutdown.
    let mut last = std::collections::BTreeMap::new();
    loop {
        let stopping = stop.is_cancelled();
        let (points, idle) = {
            let o = offsets.lock().unwrap_or_else(|e| e.into_inner());
            (o.commit_points(), o.idle())
        };
        if cfg.autocommit.enable && points != last {
            match group.commit(&topic, &points).await {
                Ok(()) => last = points,
                Err(e) => {
                    bad.warn("commit", &format!("kafka {topic}: committing offsets failed: {e}; reconnecting"));
                    if let Ok(g) =
                        crate::kafka::group::GroupClient::connect(&cfg.brokers, &cfg.client_id, &cfg.group_id).await
                    {
                        group = g;
                    }
                }
            }
        }
        if stopping
            && idle
            && readers.iter().all(JoinHandle::is_finished)
            && (!cfg.autocommit.enable || last == offsets.lock().unwrap_or_else(|e| e.into_inner()).commit_points())
        {
            return;
        }
        tokio::time::sleep(if stopping { Duration::from_millis(50) } else { cfg.autocommit.interval }).await;
    }
}

/// One partition's reading loop.
struct Partition {
    pc: PartitionClient,
    signal: Signal,
    cfg: KafkaReceiverConfig,
    intake: Arc<Intake>,
    offsets: Arc<Mutex<Offsets>>,
    bad: Arc<BadInput>,
}

impl Partition {
    async fn run(self, mut offset: i64, stop: CancellationToken) {
        let p = self.pc.partition();
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
                    self.bad.warn("refused", &format!("partition {p} offset {offset}: {}", r.message));
                    return false;
                }
            }
        }
    }
}
