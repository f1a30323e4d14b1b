//! The `kafka` receiver: reads OTLP export requests (protobuf or OTLP/JSON) from the signal's
//! topic as a member of consumer group `group_id`, the partitions the group gives it. A
//! message's offset is committed only once the data in it is delivered (`pipeline::Delivery`),
//! so a restart or a rebalance resumes after the last delivered message: nothing is lost, and
//! only messages in flight are read again.

mod member;
mod offsets;
mod partition;

use crate::config::deserialize_duration;
use crate::kafka::assign::Strategy;
use crate::kafka::{Encoding, check_brokers, default_topic};
use crate::pipeline::{Intake, Signal};
use crate::receivers::bad_input::BadInput;
use member::{Member, Trouble};
use offsets::Offsets;
use partition::Partition;
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
    /// How long the coordinator waits for a heartbeat before it gives the partitions to others.
    #[serde(deserialize_with = "deserialize_duration")]
    pub session_timeout: Duration,
    /// How often the member tells the coordinator it is alive (and learns of rebalances).
    #[serde(deserialize_with = "deserialize_duration")]
    pub heartbeat_interval: Duration,
    /// How partitions are spread when this member leads the group.
    pub group_rebalance_strategy: Strategy,
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
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            group_rebalance_strategy: Strategy::Range,
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
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err((
                "heartbeat_interval".into(),
                format!(
                    "must be more than 0 and less than session_timeout ({:?}); a third of it is usual",
                    self.session_timeout
                ),
            ));
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
    let signals: Vec<Signal> = Signal::ALL.into_iter().filter(|s| intake.accepts(*s)).collect();
    if !cfg.topic.is_empty() && signals.len() > 1 {
        // One topic read for two signals would split its partitions between them, and each
        // would take the other's messages for malformed ones.
        return Err(format!(
            "topic \"{}\" is set, so this receiver can serve one signal, but it is in {} pipelines; \
             leave topic out (each signal reads its own default topic) or use one receiver per signal",
            cfg.topic,
            signals.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" and ")
        ));
    }
    let mut tasks = Vec::new();
    for signal in signals {
        let topic = if cfg.topic.is_empty() { default_topic(signal).to_string() } else { cfg.topic.clone() };
        tracing::info!(receiver = intake.receiver(), %topic, group = %cfg.group_id, %signal, "kafka consuming");
        tasks.push(tokio::spawn(consume(cfg.clone(), signal, topic, intake.clone(), stop.clone())));
    }
    Ok(tasks)
}

/// At shutdown, how long the receiver waits for its data in flight before its last commit and
/// leaving the group (inside the service's shutdown deadline, so that both always happen; data
/// delivered later is read again by the partition's next reader).
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How a generation of membership ended.
enum End {
    Stop,
    Rejoin,
}

/// Connects, then for each generation of the group: joins, reads the partitions it is given,
/// commits what is delivered and heartbeats until a rebalance or shutdown; then stops reading,
/// waits for what is in flight and commits once more before joining again or leaving.
async fn consume(
    cfg: KafkaReceiverConfig,
    signal: Signal,
    topic: String,
    intake: Arc<Intake>,
    stop: CancellationToken,
) {
    let bad = Arc::new(BadInput::new(intake.clone(), "kafka"));
    let client = loop {
        match crate::kafka::client(&cfg.brokers, &cfg.client_id).await {
            Ok(c) => break Arc::new(c),
            Err(e) => bad.warn("unavailable", &format!("kafka {topic}: {e}; trying again")),
        }
        if pause(&stop, Duration::from_secs(1)).await {
            return;
        }
    };
    let mut member = Member::new(&cfg, &topic);
    loop {
        let assigned = tokio::select! {
            _ = stop.cancelled() => {
                member.leave().await;
                return;
            }
            a = member.join(&client) => a,
        };
        let partitions = match assigned {
            Ok(p) => p,
            Err(e) => {
                bad.warn("unavailable", &format!("kafka {topic}: joining group {}: {e}; trying again", cfg.group_id));
                if pause(&stop, Duration::from_secs(1)).await {
                    member.leave().await;
                    return;
                }
                continue;
            }
        };
        tracing::info!(
            receiver = intake.receiver(), %topic, group = %cfg.group_id, generation = member.generation,
            member = %member.member_id, ?partitions, "kafka partitions assigned"
        );
        let committed = match member.fetch(&partitions).await {
            Ok(c) => c,
            Err(e) => {
                bad.warn("unavailable", &format!("kafka {topic}: reading committed offsets: {e}; trying again"));
                if pause(&stop, Duration::from_secs(1)).await {
                    member.leave().await;
                    return;
                }
                continue;
            }
        };
        let offsets = Arc::new(Mutex::new(Offsets::default()));
        let reading = stop.child_token();
        let mut readers = Vec::new();
        for p in partitions {
            let reader = Partition {
                client: client.clone(),
                topic: topic.clone(),
                partition: p,
                signal,
                cfg: cfg.clone(),
                intake: intake.clone(),
                offsets: offsets.clone(),
                bad: bad.clone(),
            };
            readers.push(tokio::spawn(reader.run(committed.get(&p).copied(), reading.clone())));
        }
        let end = serve(&cfg, &topic, &mut member, &offsets, &bad, &stop).await;
        // Give the partitions up: stop reading, wait (a bounded time) for what is in flight,
        // commit once more.
        reading.cancel();
        for r in readers {
            let _ = r.await;
        }
        let wait = if matches!(end, End::Stop) { STOP_WAIT } else { member::REBALANCE_TIMEOUT / 4 };
        let deadline = tokio::time::Instant::now() + wait;
        let mut beat = tokio::time::Instant::now() + cfg.heartbeat_interval;
        while !offsets.lock().unwrap_or_else(|e| e.into_inner()).idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if tokio::time::Instant::now() >= beat {
                let _ = member.heartbeat().await;
                beat = tokio::time::Instant::now() + cfg.heartbeat_interval;
            }
        }
        if cfg.autocommit.enable {
            let points = offsets.lock().unwrap_or_else(|e| e.into_inner()).commit_points();
            if let Err((_, e)) = member.commit(&points).await {
                bad.warn(
                    "commit",
                    &format!("kafka {topic}: the last commit of generation {} failed: {e}", member.generation),
                );
            }
        }
        if matches!(end, End::Stop) {
            member.leave().await;
            return;
        }
    }
}

/// While the partitions are read: commits every `autocommit.interval`, heartbeats every
/// `heartbeat_interval`, until shutdown or the group rebalances.
async fn serve(
    cfg: &KafkaReceiverConfig,
    topic: &str,
    member: &mut Member,
    offsets: &Mutex<Offsets>,
    bad: &BadInput,
    stop: &CancellationToken,
) -> End {
    let tick = cfg.autocommit.interval.min(cfg.heartbeat_interval);
    let now = tokio::time::Instant::now();
    let (mut next_commit, mut next_beat) = (now + cfg.autocommit.interval, now + cfg.heartbeat_interval);
    let mut last = std::collections::BTreeMap::new();
    loop {
        if pause(stop, tick).await {
            return End::Stop;
        }
        let now = tokio::time::Instant::now();
        if cfg.autocommit.enable && now >= next_commit {
            next_commit = now + cfg.autocommit.interval;
            let points = offsets.lock().unwrap_or_else(|e| e.into_inner()).commit_points();
            if points != last {
                match member.commit(&points).await {
                    Ok(()) => last = points,
                    Err((Trouble::Rejoin, e)) => {
                        tracing::info!(%topic, "kafka: {e}; the group is rebalancing");
                        return End::Rejoin;
                    }
                    Err((Trouble::Connection, e)) => {
                        bad.warn("commit", &format!("kafka {topic}: committing offsets failed: {e}; reconnecting"))
                    }
                }
            }
        }
        if now >= next_beat {
            next_beat = now + cfg.heartbeat_interval;
            match member.heartbeat().await {
                Ok(()) => {}
                Err((Trouble::Rejoin, e)) => {
                    tracing::info!(%topic, "kafka: {e}; the group is rebalancing");
                    return End::Rejoin;
                }
                Err((Trouble::Connection, e)) => {
                    bad.warn("heartbeat", &format!("kafka {topic}: heartbeat failed: {e}; reconnecting"))
                }
            }
        }
    }
}

/// Sleeps `d`; true when shutdown came first.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

/// The `kafka` receiver's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::receiver::<KafkaReceiverConfig>(
    "kafka",
    crate::registry::ALL_SIGNALS,
    "OTLP messages from Kafka topics, offsets committed after delivery",
);

impl crate::pipeline::component::ReceiverSettings for KafkaReceiverConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        KafkaReceiverConfig::validate(self).map_err(Into::into)
    }

    fn overlaps(&self) -> bool {
        false
    }

    fn start(
        &self,
        ctx: crate::pipeline::component::ReceiverContext,
    ) -> crate::pipeline::BoxFuture<'_, Result<crate::pipeline::component::Tasks, String>> {
        Box::pin(start(self.clone(), ctx.intake, ctx.stop))
    }
}
