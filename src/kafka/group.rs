//! Consumer-group membership and offsets on the wire: FindCoordinator v0, JoinGroup v2,
//! SyncGroup v1, Heartbeat v1, LeaveGroup v1, OffsetFetch v1 and OffsetCommit v2 — versions
//! every broker from 0.11 to 4.x answers — over a connection of their own to the coordinator.

use super::wire::{Connection, MEMBER_ID_REQUIRED, Reader, Writer, error_name};
use std::collections::BTreeMap;
use std::time::Duration;

const OFFSET_COMMIT: i16 = 8;
const OFFSET_FETCH: i16 = 9;
const FIND_COORDINATOR: i16 = 10;
const JOIN_GROUP: i16 = 11;
const HEARTBEAT: i16 = 12;
const LEAVE_GROUP: i16 = 13;
const SYNC_GROUP: i16 = 14;

/// A failed group request: the broker's error code when it sent one.
#[derive(Debug)]
pub struct GroupError {
    pub code: Option<i16>,
    pub message: String,
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for GroupError {
    fn from(message: String) -> Self {
        GroupError { code: None, message }
    }
}

fn check(code: i16, what: &str) -> Result<(), GroupError> {
    if code == 0 {
        return Ok(());
    }
    Err(GroupError { code: Some(code), message: format!("{what}: {}", error_name(code)) })
}

/// What JoinGroup answered.
pub struct Joined {
    pub generation: i32,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member's id and subscription metadata.
    pub members: Vec<(String, Vec<u8>)>,
}

/// One connection to a group's coordinator.
pub struct GroupClient {
    conn: Connection,
    group: String,
}

impl GroupClient {
    /// Connects to the group's coordinator, found through any of `brokers`.
    pub async fn connect(brokers: &[String], client_id: &str, group: &str) -> Result<GroupClient, String> {
        let mut last = String::from("no brokers");
        for b in brokers {
            let mut conn = match Connection::open(b, client_id).await {
                Ok(c) => c,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let mut w = Writer::default();
            w.string(group);
            let answer = conn.call(FIND_COORDINATOR, 0, &w.0).await.and_then(|b| read_find_coordinator(&b, group));
            let (host, port) = match answer {
                Ok(a) => a,
                Err(e) => {
                    last = format!("{b}: {e}");
                    continue;
                }
            };
            // An IPv6 literal needs brackets in host:port.
            let address = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
            let conn = Connection::open(&address, client_id).await.map_err(|e| format!("group coordinator {e}"))?;
            return Ok(GroupClient { conn, group: group.into() });
        }
        Err(last)
    }

    /// Joins (or rejoins) the group as a consumer offering `protocols` (name, metadata). A
    /// broker that wants a member id first (MEMBER_ID_REQUIRED) is asked again with the one it
    /// gave.
    pub async fn join(
        &mut self,
        member_id: &str,
        session_timeout: Duration,
        rebalance_timeout: Duration,
        protocols: &[(&str, Vec<u8>)],
    ) -> Result<Joined, GroupError> {
        let mut member_id = member_id.to_string();
        for _ in 0..2 {
            let mut w = Writer::default();
            w.string(&self.group)
                .i32(session_timeout.as_millis().min(i32::MAX as u128) as i32)
                .i32(rebalance_timeout.as_millis().min(i32::MAX as u128) as i32)
                .string(&member_id)
                .string("consumer")
                .i32(protocols.len() as i32);
            for (name, metadata) in protocols {
                w.string(name).bytes(metadata);
            }
            // The coordinator may hold the answer until every member has joined.
            let body = self.conn.call_within(JOIN_GROUP, 2, &w.0, rebalance_timeout + Duration::from_secs(15)).await?;
            match read_join(&body)? {
                JoinAnswer::Joined(joined) => return Ok(joined),
                JoinAnswer::MemberIdRequired(assigned) => member_id = assigned,
            }
        }
        Err(GroupError { code: Some(MEMBER_ID_REQUIRED), message: "JoinGroup: MEMBER_ID_REQUIRED twice".into() })
    }

    /// Sends the leader's assignments (followers send none) and returns this member's.
    pub async fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        assignments: &[(String, Vec<u8>)],
    ) -> Result<Vec<u8>, GroupError> {
        let mut w = Writer::default();
        w.string(&self.group).i32(generation).string(member_id).i32(assignments.len() as i32);
        for (member, assignment) in assignments {
            w.string(member).bytes(assignment);
        }
        let body = self.conn.call(SYNC_GROUP, 1, &w.0).await?;
        read_sync(&body)
    }

    pub async fn heartbeat(&mut self, generation: i32, member_id: &str) -> Result<(), GroupError> {
        let mut w = Writer::default();
        w.string(&self.group).i32(generation).string(member_id);
        let body = self.conn.call(HEARTBEAT, 1, &w.0).await?;
        read_ack(&body, "Heartbeat")
    }

    pub async fn leave(&mut self, member_id: &str) -> Result<(), GroupError> {
        let mut w = Writer::default();
        w.string(&self.group).string(member_id);
        let body = self.conn.call(LEAVE_GROUP, 1, &w.0).await?;
        read_ack(&body, "LeaveGroup")
    }

    /// The committed offsets of `partitions` of `topic` (absent: none committed).
    pub async fn fetch(&mut self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, String> {
        let mut w = Writer::default();
        w.string(&self.group).i32(1).string(topic).i32(partitions.len() as i32);
        for p in partitions {
            w.i32(*p);
        }
        let body = self.conn.call(OFFSET_FETCH, 1, &w.0).await?;
        read_offset_fetch(&body, topic)
    }

    /// Commits `offsets` (partition → next offset to read) of `topic` as `member_id` of
    /// `generation`.
    pub async fn commit(
        &mut self,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<(), GroupError> {
        let mut w = Writer::default();
        w.string(&self.group).i32(generation).string(member_id).i64(-1).i32(1).string(topic);
        w.i32(offsets.len() as i32);
        for (p, o) in offsets {
            w.i32(*p).i64(*o).i16(-1);
        }
        let body = self.conn.call(OFFSET_COMMIT, 2, &w.0).await?;
        read_offset_commit(&body, topic)
    }
}

// The responses, read apart from the connection so that they can be tested (and fuzzed) alone.

/// FindCoordinator v0: the coordinator's host and port.
pub fn read_find_coordinator(body: &[u8], group: &str) -> Result<(String, i32), String> {
    let mut r = Reader(body);
    let code = r.i16()?;
    if code != 0 {
        return Err(format!("FindCoordinator for group {group}: {}", error_name(code)));
    }
    let _node = r.i32()?;
    let host = r.string()?;
    let port = r.i32()?;
    Ok((host, port))
}

/// What a JoinGroup v2 response says: joined, or ask again with the member id it gave.
pub enum JoinAnswer {
    Joined(Joined),
    MemberIdRequired(String),
}

pub fn read_join(body: &[u8]) -> Result<JoinAnswer, GroupError> {
    let mut r = Reader(body);
    let _throttle = r.i32()?;
    let code = r.i16()?;
    let generation = r.i32()?;
    let protocol = r.string()?;
    let leader = r.string()?;
    let assigned_id = r.string()?;
    if code == MEMBER_ID_REQUIRED && !assigned_id.is_empty() {
        return Ok(JoinAnswer::MemberIdRequired(assigned_id));
    }
    check(code, "JoinGroup")?;
    let mut members = Vec::new();
    for _ in 0..r.count(6)? {
        let id = r.string()?;
        members.push((id, r.bytes()?.to_vec()));
    }
    Ok(JoinAnswer::Joined(Joined { generation, protocol, leader, member_id: assigned_id, members }))
}

/// SyncGroup v1: this member's assignment.
pub fn read_sync(body: &[u8]) -> Result<Vec<u8>, GroupError> {
    let mut r = Reader(body);
    let _throttle = r.i32()?;
    check(r.i16()?, "SyncGroup")?;
    Ok(r.bytes()?.to_vec())
}

/// Heartbeat v1 and LeaveGroup v1: throttle time and error code.
pub fn read_ack(body: &[u8], what: &str) -> Result<(), GroupError> {
    let mut r = Reader(body);
    let _throttle = r.i32()?;
    check(r.i16()?, what)
}

/// OffsetFetch v1: the committed offsets of `topic` (absent: none committed).
pub fn read_offset_fetch(body: &[u8], topic: &str) -> Result<BTreeMap<i32, i64>, String> {
    let mut r = Reader(body);
    let mut out = BTreeMap::new();
    for _ in 0..r.count(2)? {
        let _name = r.string()?;
        for _ in 0..r.count(16)? {
            let partition = r.i32()?;
            let offset = r.i64()?;
            let _metadata = r.string()?;
            let code = r.i16()?;
            if code != 0 && code != 3 {
                return Err(format!("OffsetFetch {topic}/{partition}: {}", error_name(code)));
            }
            if offset >= 0 {
                out.insert(partition, offset);
            }
        }
    }
    Ok(out)
}

/// OffsetCommit v2: an error code per partition.
pub fn read_offset_commit(body: &[u8], topic: &str) -> Result<(), GroupError> {
    let mut r = Reader(body);
    for _ in 0..r.count(2)? {
        let _name = r.string()?;
        for _ in 0..r.count(6)? {
            let partition = r.i32()?;
            check(r.i16()?, &format!("OffsetCommit {topic}/{partition}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_answers_are_read_whole_or_refused() {
        let mut w = Writer::default();
        w.i32(0).i16(MEMBER_ID_REQUIRED).i32(-1).string("").string("").string("m-7").i32(0);
        assert!(matches!(read_join(&w.0), Ok(JoinAnswer::MemberIdRequired(id)) if id == "m-7"));
        let mut w = Writer::default();
        w.i32(0).i16(0).i32(3).string("range").string("m-1").string("m-1").i32(1).string("m-1").bytes(b"sub");
        match read_join(&w.0) {
            Ok(JoinAnswer::Joined(j)) => {
                assert_eq!((j.generation, j.members), (3, vec![("m-1".into(), b"sub".to_vec())]))
            }
            _ => panic!("a leader's JoinGroup answer"),
        }
        // A member count the message cannot hold is an error, not an allocation.
        let mut w = Writer::default();
        w.i32(0).i16(0).i32(3).string("range").string("m-1").string("m-1").i32(i32::MAX);
        assert!(read_join(&w.0).is_err());
        assert_eq!(read_ack(&[0, 0, 0, 0, 0, 27], "Heartbeat").unwrap_err().code, Some(27));
        assert!(read_offset_fetch(&[0, 0, 0, 1], "t").is_err(), "truncated");
    }
}
