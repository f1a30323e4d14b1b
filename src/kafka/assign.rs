//! The "consumer" group protocol: what a member says it subscribes to, what the leader assigns
//! it, and the two assignors every Kafka client offers (`range`, `roundrobin`), computed as the
//! Java client does so that switchyard can lead a group of other clients or follow one.

use super::wire::{Reader, Writer};
use serde::Deserialize;
use std::collections::BTreeMap;

/// How the group leader spreads partitions (the collector's `group_rebalance_strategy`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Per topic, consecutive partitions to members in member-id order.
    #[default]
    Range,
    /// All partitions, in turn, to the members that subscribe to their topic.
    Roundrobin,
}

impl Strategy {
    pub fn protocol_name(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::Roundrobin => "roundrobin",
        }
    }

    pub fn from_protocol_name(name: &str) -> Option<Strategy> {
        match name {
            "range" => Some(Strategy::Range),
            "roundrobin" => Some(Strategy::Roundrobin),
            _ => None,
        }
    }
}

/// ConsumerProtocolSubscription v0: the topics a member reads.
pub fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut w = Writer::default();
    w.i16(0).i32(topics.len() as i32);
    for t in topics {
        w.string(t);
    }
    w.bytes(&[]);
    w.0
}

/// The topics of a member's subscription (later versions only add fields after them).
pub fn read_subscription(b: &[u8]) -> Result<Vec<String>, String> {
    let mut r = Reader(b);
    let _version = r.i16()?;
    (0..r.count(2)?).map(|_| r.string()).collect()
}

/// ConsumerProtocolAssignment v0: topic → partitions.
pub fn assignment(partitions: &BTreeMap<String, Vec<i32>>) -> Vec<u8> {
    let mut w = Writer::default();
    w.i16(0).i32(partitions.len() as i32);
    for (topic, ps) in partitions {
        w.string(topic).i32(ps.len() as i32);
        for p in ps {
            w.i32(*p);
        }
    }
    w.bytes(&[]);
    w.0
}

/// The partitions of `topic` in an assignment (an empty assignment: none).
pub fn read_assignment(b: &[u8], topic: &str) -> Result<Vec<i32>, String> {
    if b.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader(b);
    let _version = r.i16()?;
    let mut out = Vec::new();
    for _ in 0..r.count(6)? {
        let t = r.string()?;
        for _ in 0..r.count(4)? {
            let p = r.i32()?;
            if t == topic {
                out.push(p);
            }
        }
    }
    // Another client's leader may list a partition twice; it is read once.
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The leader's work: member id → (topic → partitions), for members given as (id, subscribed
/// topics) and topics given with their partitions. Every member gets an entry, maybe empty.
pub fn assign(
    strategy: Strategy,
    members: &[(String, Vec<String>)],
    topics: &BTreeMap<String, Vec<i32>>,
) -> BTreeMap<String, BTreeMap<String, Vec<i32>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<i32>>> =
        members.iter().map(|(m, _)| (m.clone(), BTreeMap::new())).collect();
    let subscribers = |topic: &str| -> Vec<&String> {
        let mut s: Vec<&String> =
            members.iter().filter(|(_, ts)| ts.iter().any(|t| t == topic)).map(|(m, _)| m).collect();
        s.sort();
        s.dedup();
        s
    };
    match strategy {
        Strategy::Range => {
            for (topic, partitions) in topics {
                let members = subscribers(topic);
                if members.is_empty() {
                    continue;
                }
                let mut partitions = partitions.clone();
                partitions.sort_unstable();
                let (per, extra) = (partitions.len() / members.len(), partitions.len() % members.len());
                for (i, m) in members.iter().enumerate() {
                    let start = i * per + i.min(extra);
                    let n = per + usize::from(i < extra);
                    if n > 0 {
                        out.entry((*m).clone())
                            .or_default()
                            .insert(topic.clone(), partitions[start..start + n].to_vec());
                    }
                }
            }
        }
        Strategy::Roundrobin => {
            let mut all: Vec<&String> = members.iter().map(|(m, _)| m).collect();
            all.sort();
            all.dedup();
            let mut turn = 0usize;
            for (topic, partitions) in topics {
                let mut partitions = partitions.clone();
                partitions.sort_unstable();
                for p in partitions {
                    // The next member in the circle that subscribes to this topic.
                    for _ in 0..all.len() {
                        let m = all[turn % all.len()];
                        turn += 1;
                        if members.iter().any(|(id, ts)| id == m && ts.iter().any(|t| t == topic)) {
                            out.entry(m.clone()).or_default().entry(topic.clone()).or_default().push(p);
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter().map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect())).collect()
    }

    #[test]
    fn range_gives_consecutive_partitions_and_the_extra_ones_first() {
        let topics = BTreeMap::from([("t".to_string(), vec![4, 0, 1, 2, 3]), ("u".to_string(), vec![0, 1])]);
        let a = assign(Strategy::Range, &members(&[("b", &["t", "u"]), ("a", &["t"])]), &topics);
        assert_eq!(a["a"]["t"], vec![0, 1, 2]);
        assert_eq!(a["b"]["t"], vec![3, 4]);
        assert_eq!(a["b"]["u"], vec![0, 1], "only b reads u");
        assert!(!a["a"].contains_key("u"));
        // More members than partitions: the last ones get nothing, but they get an entry.
        let a = assign(Strategy::Range, &members(&[("a", &["u"]), ("b", &["u"]), ("c", &["u"])]), &topics);
        assert_eq!((a["a"]["u"].clone(), a["b"]["u"].clone()), (vec![0], vec![1]));
        assert!(a["c"].is_empty());
    }

    #[test]
    fn roundrobin_deals_partitions_in_turn() {
        let topics = BTreeMap::from([("t".to_string(), vec![0, 1, 2, 3, 4])]);
        let a = assign(Strategy::Roundrobin, &members(&[("b", &["t"]), ("a", &["t"])]), &topics);
        assert_eq!(a["a"]["t"], vec![0, 2, 4]);
        assert_eq!(a["b"]["t"], vec![1, 3]);
    }

    #[test]
    fn subscriptions_and_assignments_round_trip() {
        assert_eq!(read_subscription(&subscription(&["otlp_spans"])).unwrap(), vec!["otlp_spans"]);
        let mine = BTreeMap::from([("otlp_spans".to_string(), vec![2, 0]), ("other".to_string(), vec![1])]);
        assert_eq!(read_assignment(&assignment(&mine), "otlp_spans").unwrap(), vec![0, 2]);
        assert_eq!(read_assignment(&[], "otlp_spans").unwrap(), Vec::<i32>::new());
        let twice = BTreeMap::from([("otlp_spans".to_string(), vec![1, 1, 0])]);
        assert_eq!(read_assignment(&assignment(&twice), "otlp_spans").unwrap(), vec![0, 1], "read once");
        assert!(read_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff], "t").is_err(), "a forged count is refused");
    }
}
