//! The receiver's membership of its consumer group: joining, leading (assigning partitions to
//! every member when the coordinator makes it leader), heartbeats, commits and leaving. Written
//! for both kinds of coordinator: Kafka's, whose JoinGroup waits for every member, and ones
//! (tansu) that answer at once and let followers ask again until the leader has assigned.

use super::KafkaReceiverConfig;
use crate::kafka::assign::{self, Strategy};
use crate::kafka::group::{GroupClient, GroupError};
use crate::kafka::wire::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ILLEGAL_GENERATION, NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// How long the coordinator may wait for members to rejoin in a rebalance.
pub const REBALANCE_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do after a failed heartbeat or commit.
#[derive(Debug, PartialEq, Eq)]
pub enum Trouble {
    /// The group is rebalancing or has moved on: give up the partitions and join again.
    Rejoin,
    /// The connection or coordinator failed: reconnect and try again.
    Connection,
}

pub struct Member {
    cfg: KafkaReceiverConfig,
    topic: String,
    conn: Option<GroupClient>,
    pub member_id: String,
    pub generation: i32,
}

fn trouble(e: &GroupError) -> Trouble {
    match e.code {
        Some(REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID) => Trouble::Rejoin,
        _ => Trouble::Connection,
    }
}

impl Member {
    pub fn new(cfg: &KafkaReceiverConfig, topic: &str) -> Member {
        Member { cfg: cfg.clone(), topic: topic.into(), conn: None, member_id: String::new(), generation: -1 }
    }

    async fn conn(&mut self) -> Result<&mut GroupClient, String> {
        if self.conn.is_none() {
            self.conn = Some(GroupClient::connect(&self.cfg.brokers, &self.cfg.client_id, &self.cfg.group_id).await?);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Forgets a connection that failed, so the next request finds the coordinator again.
    fn failed(&mut self, e: &GroupError) {
        if e.code.is_none()
            || matches!(e.code, Some(NOT_COORDINATOR | COORDINATOR_NOT_AVAILABLE | COORDINATOR_LOAD_IN_PROGRESS))
        {
            self.conn = None;
        }
        if e.code == Some(UNKNOWN_MEMBER_ID) {
            self.member_id.clear();
        }
    }

    /// Joins the group and returns the partitions of the topic this member is given.
    pub async fn join(&mut self, client: &rskafka::client::Client) -> Result<Vec<i32>, String> {
        let strategy = self.cfg.group_rebalance_strategy;
        let protocols = [(strategy.protocol_name(), assign::subscription(&[&self.topic]))];
        // A follower asks again while the leader has not assigned yet (about 20 s at most).
        for _ in 0..100 {
            let (session, member_id) = (self.cfg.session_timeout, self.member_id.clone());
            let joined = match self.conn().await?.join(&member_id, session, REBALANCE_TIMEOUT, &protocols).await {
                Ok(j) => j,
                Err(e) if e.code == Some(REBALANCE_IN_PROGRESS) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    self.failed(&e);
                    if e.code == Some(UNKNOWN_MEMBER_ID) {
                        continue;
                    }
                    return Err(e.message);
                }
            };
            self.member_id = joined.member_id.clone();
            self.generation = joined.generation;
            let assignments = if joined.leader == joined.member_id {
                let strategy = Strategy::from_protocol_name(&joined.protocol).unwrap_or(strategy);
                self.lead(client, strategy, &joined.members).await?
            } else {
                Vec::new()
            };
            let (generation, member_id) = (self.generation, self.member_id.clone());
            match self.conn().await?.sync(generation, &member_id, &assignments).await {
                Ok(mine) => return assign::read_assignment(&mine, &self.topic),
                Err(e) if matches!(e.code, Some(REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID)) => {
                    self.failed(&e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    self.failed(&e);
                    return Err(e.message);
                }
            }
        }
        Err(format!("group {} did not settle: no assignment after 100 tries", self.cfg.group_id))
    }

    /// The leader's assignments for every member, encoded.
    async fn lead(
        &self,
        client: &rskafka::client::Client,
        strategy: Strategy,
        members: &[(String, Vec<u8>)],
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        let subscriptions: Vec<(String, Vec<String>)> = members
            .iter()
            .map(|(id, metadata)| {
                let topics = assign::read_subscription(metadata).unwrap_or_else(|e| {
                    tracing::warn!(member = %id, "kafka: unreadable subscription of a group member ({e}); it gets nothing");
                    Vec::new()
                });
                (id.clone(), topics)
            })
            .collect();
        let all = crate::kafka::topics(client).await?;
        let wanted: BTreeMap<String, Vec<i32>> =
            all.into_iter().filter(|(t, _)| subscriptions.iter().any(|(_, ts)| ts.contains(t))).collect();
        let plan = assign::assign(strategy, &subscriptions, &wanted);
        tracing::info!(group = %self.cfg.group_id, generation = self.generation, ?plan, "kafka: assigned the group's partitions as leader");
        Ok(plan.iter().map(|(m, parts)| (m.clone(), assign::assignment(parts))).collect())
    }

    pub async fn fetch(&mut self, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, String> {
        let topic = self.topic.clone();
        let r = self.conn().await?.fetch(&topic, partitions).await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }

    pub async fn heartbeat(&mut self) -> Result<(), (Trouble, String)> {
        let (generation, member_id) = (self.generation, self.member_id.clone());
        let conn = self.conn().await.map_err(|e| (Trouble::Connection, e))?;
        conn.heartbeat(generation, &member_id).await.map_err(|e| {
            self.failed(&e);
            (trouble(&e), e.message)
        })
    }

    pub async fn commit(&mut self, offsets: &BTreeMap<i32, i64>) -> Result<(), (Trouble, String)> {
        let (generation, member_id, topic) = (self.generation, self.member_id.clone(), self.topic.clone());
        let conn = self.conn().await.map_err(|e| (Trouble::Connection, e))?;
        conn.commit(generation, &member_id, &topic, offsets).await.map_err(|e| {
            self.failed(&e);
            (trouble(&e), e.message)
        })
    }

    /// Leaves the group so that the others take over its partitions at once.
    pub async fn leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let member_id = self.member_id.clone();
        // A fresh connection: a join cut short by shutdown may have left an answer unread on
        // the old one.
        self.conn = None;
        if let Ok(conn) = self.conn().await
            && let Err(e) = conn.leave(&member_id).await
        {
            tracing::debug!("kafka: leaving the group: {e}");
        }
        self.member_id.clear();
    }
}
