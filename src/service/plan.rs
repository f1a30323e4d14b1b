//! What a reload changes: the components added, removed, changed and kept, per kind, for the
//! log line that reports it.

use crate::config::ComponentId;
use crate::model::{Config, Defined};
use std::collections::BTreeMap;
use std::fmt;

/// The differences between two configurations, by component.
#[derive(Debug, Default)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub kept: usize,
}

impl Changes {
    pub fn between(old: Option<&Config>, new: &Config) -> Changes {
        let mut changes = Changes::default();
        changes.compare("receiver", old.map(|o| &o.receivers), &new.receivers);
        changes.compare("processor", old.map(|o| &o.processors), &new.processors);
        changes.compare("exporter", old.map(|o| &o.exporters), &new.exporters);
        changes.compare("extension", old.map(|o| &o.extensions), &new.extensions);
        changes.compare("connector", old.map(|o| &o.connectors), &new.connectors);
        let (before, after) = (old.map(|o| &o.pipelines), &new.pipelines);
        for (pid, p) in after {
            match before.and_then(|b| b.get(pid)) {
                None => changes.added.push(format!("pipeline {pid}")),
                Some(b)
                    if b.receivers != p.receivers
                        || b.processors != p.processors
                        || b.exporters != p.exporters
                        || b.from_connectors != p.from_connectors
                        || b.to_connectors != p.to_connectors =>
                {
                    changes.changed.push(format!("pipeline {pid}"))
                }
                Some(_) => changes.kept += 1,
            }
        }
        if let Some(before) = before {
            let gone = before.keys().filter(|pid| !after.contains_key(*pid));
            changes.removed.extend(gone.map(|pid| format!("pipeline {pid}")));
        }
        changes
    }

    /// Whether anything changed at all.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    fn compare<S: ?Sized>(
        &mut self,
        kind: &str,
        before: Option<&BTreeMap<ComponentId, Defined<S>>>,
        after: &BTreeMap<ComponentId, Defined<S>>,
    ) {
        for (id, now) in after {
            match before.and_then(|b| b.get(id)) {
                None => self.added.push(format!("{kind} {id}")),
                Some(was) if !was.same_as(now) => self.changed.push(format!("{kind} {id}")),
                Some(_) => self.kept += 1,
            }
        }
        if let Some(before) = before {
            self.removed.extend(before.keys().filter(|id| !after.contains_key(*id)).map(|id| format!("{kind} {id}")));
        }
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        write!(
            f,
            "added: {}; removed: {}; changed: {}; unchanged: {}",
            list(&self.added),
            list(&self.removed),
            list(&self.changed),
            self.kept
        )
    }
}
