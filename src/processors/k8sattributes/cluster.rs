//! What the k8sattributes processor knows of the cluster: the pods (only the fields extraction
//! and association use), the Deployments of their ReplicaSets, namespaces and nodes, kept
//! current by watches. One is shared by every pipeline, and every reload, with the same
//! settings; its watches stop when the last processor using it is gone.

use super::config::{From, K8sAttributesConfig, Source, SourceFrom};
use crate::kubernetes::objects::{self, Object};
use crate::kubernetes::{ApiClient, ApiSettings, Change, Resource, Synced, watch};
use regex::Regex;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

/// How long a deleted pod still matches: data it sent shortly before it went still arrives.
pub const DELETE_GRACE: Duration = Duration::from_secs(120);

/// One label or annotation rule: a key, or a regular expression over keys with `$1`… in its
/// attribute name.
#[derive(Debug)]
pub struct Rule {
    tag: String,
    key: Option<String>,
    regex: Option<Regex>,
}

impl Rule {
    fn new(f: &super::config::FieldExtract, kind: &str) -> Rule {
        let object = f.from.name();
        let regex = (!f.key_regex.is_empty()).then(|| Regex::new(&format!("^(?:{})$", f.key_regex)).expect("checked"));
        let tag = if !f.tag_name.is_empty() {
            f.tag_name.clone()
        } else if regex.is_some() {
            format!("k8s.{object}.{kind}.$0")
        } else {
            format!("k8s.{object}.{kind}.{}", f.key)
        };
        Rule { tag, key: (!f.key.is_empty()).then(|| f.key.clone()), regex }
    }

    /// The attributes this rule makes of `map`.
    fn extract(&self, map: &std::collections::BTreeMap<String, String>, out: &mut Vec<(String, String)>) {
        match (&self.key, &self.regex) {
            (Some(k), _) => {
                if let Some(v) = map.get(k) {
                    out.push((self.tag.clone(), v.clone()));
                }
            }
            (None, Some(re)) => {
                for (k, v) in map {
                    if let Some(c) = re.captures(k) {
                        let mut tag = String::new();
                        c.expand(&self.tag, &mut tag);
                        out.push((tag, v.clone()));
                    }
                }
            }
            _ => {}
        }
    }
}

/// What the settings ask for: decides what is watched and what of each object is kept.
#[derive(Debug)]
pub struct Rules {
    pub metadata: Vec<String>,
    labels: [Vec<Rule>; 3],
    annotations: [Vec<Rule>; 3],
    otel_annotations: bool,
    exclude: Vec<Regex>,
    pub associations: Vec<Vec<Source>>,
    pub deployment_from_name: bool,
}

fn index_of(from: From) -> usize {
    match from {
        From::Pod => 0,
        From::Namespace => 1,
        From::Node => 2,
    }
}

impl Rules {
    pub fn new(cfg: &K8sAttributesConfig) -> Rules {
        let mut labels: [Vec<Rule>; 3] = Default::default();
        let mut annotations: [Vec<Rule>; 3] = Default::default();
        for f in &cfg.extract.labels {
            labels[index_of(f.from)].push(Rule::new(f, "labels"));
        }
        for f in &cfg.extract.annotations {
            annotations[index_of(f.from)].push(Rule::new(f, "annotations"));
        }
        Rules {
            metadata: cfg.extract.metadata.clone(),
            labels,
            annotations,
            otel_annotations: cfg.extract.otel_annotations,
            // Unanchored, as the collector matches them: `jaeger-agent` excludes `jaeger-agent-x7k2p`.
            exclude: cfg.exclude.pods.iter().map(|p| Regex::new(&p.name).expect("checked")).collect(),
            associations: cfg.associations(),
            deployment_from_name: cfg.extract.deployment_name_from_replicaset,
        }
    }

    pub fn wants(&self, key: &str) -> bool {
        self.metadata.iter().any(|m| m == key)
    }

    fn watch_replicasets(&self) -> bool {
        !self.deployment_from_name && (self.wants("k8s.deployment.name") || self.wants("k8s.deployment.uid"))
    }

    fn watch_namespaces(&self) -> bool {
        !self.labels[1].is_empty() || !self.annotations[1].is_empty() || self.wants("k8s.cluster.uid")
    }

    fn watch_nodes(&self) -> bool {
        !self.labels[2].is_empty() || !self.annotations[2].is_empty() || self.wants("k8s.node.uid")
    }

    fn object_attributes(&self, from: From, meta: &objects::Meta) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in &self.labels[index_of(from)] {
            r.extract(&meta.labels, &mut out);
        }
        for r in &self.annotations[index_of(from)] {
            r.extract(&meta.annotations, &mut out);
        }
        out
    }
}

/// A container of a pod: its image, and its ids by restart.
#[derive(Debug, Default)]
pub struct ContainerEntry {
    pub name: Box<str>,
    pub image: Box<str>,
    /// `repo@sha256:…` from the runtime's image id, when it has a digest.
    pub repo_digest: Option<Box<str>>,
    /// The id of the container's current run and its restart count.
    pub id: Option<(u32, Box<str>)>,
}

/// A pod as kept: what association and extraction use, nothing else.
#[derive(Debug, Default)]
pub struct PodEntry {
    pub uid: Box<str>,
    pub name: Box<str>,
    pub namespace: Box<str>,
    pub ip: Box<str>,
    pub hostname: Box<str>,
    pub start_time: Box<str>,
    pub node: Box<str>,
    pub host_network: bool,
    /// The controlling owner: kind, name, uid.
    pub owner: Option<(Box<str>, Box<str>, Box<str>)>,
    /// Label, annotation and otel-annotation attributes.
    pub attributes: Vec<(Box<str>, Box<str>)>,
    pub containers: Vec<ContainerEntry>,
    /// When a watch said it was deleted (it still matches for `DELETE_GRACE`).
    pub deleted: Option<Instant>,
    /// Succeeded or Failed: its address may already belong to another pod.
    pub terminal: bool,
}

fn boxed(s: String) -> Box<str> {
    s.into_boxed_str()
}

impl PodEntry {
    fn from_pod(p: objects::Pod, rules: &Rules) -> Option<PodEntry> {
        let ignored = p.metadata.annotations.get("opentelemetry.io/k8s-processor/ignore").is_some_and(|v| v == "true");
        if ignored || rules.exclude.iter().any(|re| re.is_match(&p.metadata.name)) {
            return None;
        }
        let mut attributes: Vec<(Box<str>, Box<str>)> =
            rules.object_attributes(From::Pod, &p.metadata).into_iter().map(|(k, v)| (boxed(k), boxed(v))).collect();
        if rules.otel_annotations {
            for (k, v) in &p.metadata.annotations {
                if let Some(key) = k.strip_prefix("resource.opentelemetry.io/") {
                    attributes.push((key.into(), v.as_str().into()));
                }
            }
        }
        let want_containers = rules.metadata.iter().any(|m| m.starts_with("container.") || m == "k8s.container.name")
            || rules.associations.iter().flatten().any(|s| s.name == "container.id");
        let mut containers = Vec::new();
        if want_containers {
            for c in p.spec.containers.iter().chain(&p.spec.init_containers) {
                let status = p
                    .status
                    .container_statuses
                    .iter()
                    .chain(&p.status.init_container_statuses)
                    .find(|s| s.name == c.name);
                let id = status.filter(|s| !s.container_id.is_empty()).map(|s| {
                    let bare = s.container_id.split_once("://").map_or(s.container_id.as_str(), |(_, id)| id);
                    (s.restart_count, bare.into())
                });
                let repo_digest = status.and_then(|s| {
                    let id = s.image_id.split_once("://").map_or(s.image_id.as_str(), |(_, rest)| rest);
                    id.contains("@sha256:").then(|| id.into())
                });
                containers.push(ContainerEntry {
                    name: c.name.as_str().into(),
                    image: c.image.as_str().into(),
                    repo_digest,
                    id,
                });
            }
        }
        let m = p.metadata;
        let owner = m.controller().map(|o| (o.kind.as_str().into(), o.name.as_str().into(), o.uid.as_str().into()));
        let hostname = p.spec.hostname;
        Some(PodEntry {
            uid: boxed(m.uid),
            name: boxed(m.name),
            namespace: boxed(m.namespace),
            ip: boxed(p.status.pod_ip),
            hostname: boxed(hostname),
            // Its creation (RFC 3339, comparable as text), as the collector's k8s.pod.start_time.
            start_time: boxed(m.creation_timestamp.clone()),
            terminal: matches!(p.status.phase.as_str(), "Succeeded" | "Failed"),
            node: boxed(p.spec.node_name),
            host_network: p.spec.host_network,
            owner,
            attributes,
            containers,
            deleted: None,
        })
    }

    /// The pod's values for an association source (several for `container.id`).
    fn values(&self, source: &Source) -> Vec<&str> {
        if is_address(source) {
            // A pod on the host's network has the node's address: it would match every such
            // pod; a finished pod's address may already be another's.
            return if self.host_network || self.terminal || self.ip.is_empty() { Vec::new() } else { vec![&self.ip] };
        }
        match source.name.as_str() {
            "k8s.pod.uid" => vec![&self.uid],
            "k8s.pod.name" => vec![&self.name],
            "k8s.namespace.name" => vec![&self.namespace],
            "k8s.pod.hostname" => vec![&self.hostname],
            "container.id" => self.containers.iter().filter_map(|c| c.id.as_ref().map(|(_, id)| &**id)).collect(),
            _ => Vec::new(),
        }
    }

    /// The keys this pod is found by under one association rule.
    fn keys(&self, rule: &[Source]) -> Vec<String> {
        let mut keys = vec![String::new()];
        for (i, source) in rule.iter().enumerate() {
            let values = self.values(source);
            if values.is_empty() {
                return Vec::new();
            }
            keys = keys
                .iter()
                .flat_map(|k| values.iter().map(move |v| if i == 0 { v.to_string() } else { format!("{k}\u{1f}{v}") }))
                .collect();
        }
        keys
    }
}

/// Whether a source matches pods by their address.
pub fn is_address(source: &Source) -> bool {
    source.from == SourceFrom::Connection || matches!(source.name.as_str(), "k8s.pod.ip" | "ip" | "host.name")
}

/// A namespace or node as kept: its uid and the attributes its rules extract.
#[derive(Debug, Default)]
pub struct ObjectEntry {
    pub uid: Box<str>,
    pub attributes: Vec<(String, String)>,
}

/// A ReplicaSet's Deployment: name and uid.
type Deployment = (Box<str>, Box<str>);

#[derive(Default)]
pub struct State {
    pods: HashMap<Box<str>, PodEntry>,
    /// Per association rule: key → pod uid.
    index: Vec<HashMap<String, Box<str>>>,
    deleted: VecDeque<(Instant, Box<str>)>,
    replicasets: HashMap<Box<str>, Option<Deployment>>,
    pub namespaces: HashMap<Box<str>, ObjectEntry>,
    pub nodes: HashMap<Box<str>, ObjectEntry>,
}

impl State {
    /// The pod found by `key` under association rule `rule`.
    pub fn pod(&self, rule: usize, key: &str) -> Option<&PodEntry> {
        self.index.get(rule)?.get(key).and_then(|uid| self.pods.get(uid))
    }

    pub fn deployment_of(&self, replicaset_uid: &str) -> Option<&Deployment> {
        self.replicasets.get(replicaset_uid).and_then(Option::as_ref)
    }

    fn unindex(&mut self, pod: &PodEntry, rules: &Rules) {
        for (i, rule) in rules.associations.iter().enumerate() {
            for key in pod.keys(rule) {
                if self.index[i].get(&key).is_some_and(|uid| *uid == pod.uid) {
                    self.index[i].remove(&key);
                }
            }
        }
    }

    fn put(&mut self, pod: PodEntry, rules: &Rules) {
        if let Some(old) = self.pods.remove(&pod.uid) {
            self.unindex(&old, rules);
        }
        for (i, rule) in rules.associations.iter().enumerate() {
            for key in pod.keys(rule) {
                // Of two pods with one address, the live and newer one has it (an address is
                // reused once its pod is gone; the old pod's late updates must not take it back).
                let holder = self.index[i].get(&key).and_then(|uid| self.pods.get(uid));
                let keeps = holder.is_some_and(|h| {
                    h.uid != pod.uid && h.deleted.is_none() && (pod.deleted.is_some() || h.start_time > pod.start_time)
                });
                if !keeps {
                    self.index[i].insert(key, pod.uid.clone());
                }
            }
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    /// Marks a pod deleted (it still matches for `DELETE_GRACE`); whether it was live.
    fn mark_deleted(&mut self, uid: &str, now: Instant) -> bool {
        match self.pods.get_mut(uid) {
            Some(p) if p.deleted.is_none() => {
                p.deleted = Some(now);
                self.deleted.push_back((now, uid.into()));
                true
            }
            _ => false,
        }
    }

    /// Forgets pods deleted more than `DELETE_GRACE` ago.
    fn purge(&mut self, now: Instant, rules: &Rules) -> usize {
        let mut purged = 0;
        while let Some((at, _)) = self.deleted.front() {
            if now.duration_since(*at) < DELETE_GRACE {
                break;
            }
            let (at, uid) = self.deleted.pop_front().expect("front exists");
            // Only the deletion this entry recorded (not a later one of a pod deleted, re-added
            // and deleted again, whose own entry comes later).
            if self.pods.get(&uid).is_some_and(|p| p.deleted == Some(at))
                && let Some(p) = self.pods.remove(&uid)
            {
                self.unindex(&p, rules);
                purged += 1;
            }
        }
        purged
    }
}

/// Counters of the pod table (`otelcol_otelsvc_k8s_*`).
#[derive(Clone)]
pub struct Counters {
    pub added: prometheus::IntCounter,
    pub updated: prometheus::IntCounter,
    pub deleted: prometheus::IntCounter,
    pub table_size: prometheus::IntGauge,
}

/// The watches and what they found, for one set of settings.
pub struct Cluster {
    pub rules: Arc<Rules>,
    pub state: Arc<RwLock<State>>,
    synced: Vec<Synced>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    /// Whether every watch has delivered its first list.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(Synced::is_set)
    }

    pub fn wait_synced(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        self.synced.iter().all(|s| s.wait_blocking(end.saturating_duration_since(Instant::now())))
    }

    /// The cluster for `cfg`: the running one with the same settings, or a new one whose
    /// watches start now.
    pub fn get(cfg: &K8sAttributesConfig, counters: &Counters) -> Result<Arc<Cluster>, String> {
        static RUNNING: OnceLock<Mutex<HashMap<String, Weak<Cluster>>>> = OnceLock::new();
        let node = cfg.node()?;
        let key = format!(
            "{:?}|{node:?}|{:?}|{:?}|{:?}",
            cfg.auth_type,
            (&cfg.kube_config_path, &cfg.context),
            cfg.filter,
            cfg.extract
        ) + &format!("{:?}{:?}", cfg.pod_association, cfg.exclude);
        // A kubeconfig edited (a new token) and reloaded makes a new set of watches.
        let key = if cfg.auth_type == crate::kubernetes::AuthType::KubeConfig {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            crate::kubernetes::kubeconfig::locate(cfg.kube_config_path.as_deref())
                .ok()
                .and_then(|f| std::fs::read(f).ok())
                .hash(&mut h);
            format!("{key}|{:x}", h.finish())
        } else {
            key
        };
        let running = RUNNING.get_or_init(Default::default);
        let mut running = running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, w| w.strong_count() > 0);
        if let Some(c) = running.get(&key).and_then(Weak::upgrade) {
            return Ok(c);
        }
        let cluster = Arc::new(Cluster::start(cfg, node, counters)?);
        running.insert(key, Arc::downgrade(&cluster));
        Ok(cluster)
    }

    fn start(cfg: &K8sAttributesConfig, node: Option<String>, counters: &Counters) -> Result<Cluster, String> {
        let settings = ApiSettings {
            auth_type: cfg.auth_type,
            kube_config_path: cfg.kube_config_path.clone(),
            context: cfg.context.clone(),
            server: None,
        };
        let client = Arc::new(ApiClient::new(&settings)?);
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| "k8sattributes needs the runtime".to_string())?;
        let _entered = runtime.enter();
        let rules = Arc::new(Rules::new(cfg));
        let state = Arc::new(RwLock::new(State {
            index: vec![HashMap::new(); rules.associations.len()],
            ..Default::default()
        }));
        let mut synced = Vec::new();
        let mut tasks = Vec::new();
        let ns_path = |kind: &str, group: &str| match cfg.filter.namespace.as_str() {
            "" => format!("{group}/{kind}"),
            ns => format!("{group}/namespaces/{}/{kind}", crate::percent::encode(ns)),
        };

        // Pods.
        let mut fields: Vec<String> = node.iter().map(|n| format!("spec.nodeName={n}")).collect();
        for f in &cfg.filter.fields {
            let op = if f.op == super::config::FilterOp::NotEquals { "!=" } else { "=" };
            fields.push(format!("{}{op}{}", f.key, f.value));
        }
        let labels: Vec<String> = cfg
            .filter
            .labels
            .iter()
            .map(|f| match f.op {
                super::config::FilterOp::Equals => format!("{}={}", f.key, f.value),
                super::config::FilterOp::NotEquals => format!("{}!={}", f.key, f.value),
                super::config::FilterOp::Exists => f.key.clone(),
                super::config::FilterOp::DoesNotExist => format!("!{}", f.key),
            })
            .collect();
        let pods = Resource::new(ns_path("pods", "/api/v1")).fields(fields.join(",")).labels(labels.join(","));
        let s = Synced::default();
        let (r, st, c) = (rules.clone(), state.clone(), counters.clone());
        let r2 = rules.clone();
        tasks.push(watch::spawn::<objects::Pod, _>(
            client.clone(),
            pods,
            move |p| (p.metadata.uid.clone(), PodEntry::from_pod(p, &r2)),
            move |change| apply_pods(&st, &r, &c, change),
            s.clone(),
        ));
        synced.push(s);

        if rules.watch_replicasets() {
            let s = Synced::default();
            let st = state.clone();
            tasks.push(watch::spawn::<objects::Metadata, _>(
                client.clone(),
                Resource::new(ns_path("replicasets", "/apis/apps/v1")),
                |rs| {
                    let deployment = rs
                        .metadata
                        .controller()
                        .filter(|o| o.kind == "Deployment")
                        .map(|o| (o.name.as_str().into(), o.uid.as_str().into()));
                    (boxed(rs.metadata.uid), deployment)
                },
                move |change| {
                    let mut st = st.write().unwrap_or_else(|p| p.into_inner());
                    match change {
                        Change::Listed(all) => st.replicasets = all.into_iter().collect(),
                        Change::Applied((uid, d)) => {
                            st.replicasets.insert(uid, d);
                        }
                        Change::Deleted((uid, _)) => {
                            st.replicasets.remove(&uid);
                        }
                    }
                },
                s.clone(),
            ));
            synced.push(s);
        }
        if rules.watch_namespaces() {
            let s = Synced::default();
            let (st, r) = (state.clone(), rules.clone());
            tasks.push(watch::spawn::<objects::Metadata, _>(
                client.clone(),
                Resource::new("/api/v1/namespaces"),
                move |ns| {
                    let attributes = r.object_attributes(From::Namespace, &ns.metadata);
                    (boxed(ns.metadata.name), ObjectEntry { uid: boxed(ns.metadata.uid), attributes })
                },
                move |change| apply_objects(&st, change, |s| &mut s.namespaces),
                s.clone(),
            ));
            synced.push(s);
        }
        if rules.watch_nodes() {
            let s = Synced::default();
            let (st, r) = (state.clone(), rules.clone());
            let mut resource = Resource::new("/api/v1/nodes");
            if let Some(n) = &node {
                resource = resource.fields(format!("metadata.name={n}"));
            }
            tasks.push(watch::spawn::<objects::Node, _>(
                client.clone(),
                resource,
                move |n| {
                    let attributes = r.object_attributes(From::Node, n.meta());
                    (boxed(n.metadata.name), ObjectEntry { uid: boxed(n.metadata.uid), attributes })
                },
                move |change| apply_objects(&st, change, |s| &mut s.nodes),
                s.clone(),
            ));
            synced.push(s);
        }
        // Deleted pods are forgotten after their grace period.
        let (st, r, c) = (state.clone(), rules.clone(), counters.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let mut s = st.write().unwrap_or_else(|p| p.into_inner());
                if s.purge(Instant::now(), &r) > 0 {
                    c.table_size.set(s.pods.len() as i64);
                }
            }
        }));
        Ok(Cluster { rules, state, synced, tasks })
    }
}

fn apply_pods(state: &RwLock<State>, rules: &Rules, counters: &Counters, change: Change<(String, Option<PodEntry>)>) {
    let mut st = state.write().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    match change {
        Change::Listed(all) => {
            let listed: std::collections::HashSet<&str> = all.iter().map(|(uid, _)| uid.as_str()).collect();
            let gone: Vec<Box<str>> = st.pods.keys().filter(|uid| !listed.contains(&***uid)).cloned().collect();
            for uid in gone {
                if st.mark_deleted(&uid, now) {
                    counters.deleted.inc();
                }
            }
            for (_, pod) in all.into_iter() {
                if let Some(pod) = pod {
                    let known = st.pods.get(&pod.uid).is_some_and(|p| p.deleted.is_none());
                    if known {
                        counters.updated.inc()
                    } else {
                        counters.added.inc()
                    }
                    st.put(pod, rules);
                }
            }
        }
        Change::Applied((uid, pod)) => match pod {
            Some(pod) => {
                if st.pods.contains_key(&pod.uid) {
                    counters.updated.inc()
                } else {
                    counters.added.inc()
                }
                st.put(pod, rules);
            }
            // Excluded (renamed pods cannot happen; kept for safety).
            None => {
                st.mark_deleted(&uid, now);
            }
        },
        Change::Deleted((uid, _)) => {
            if st.mark_deleted(&uid, now) {
                counters.deleted.inc();
            }
        }
    }
    st.purge(now, rules);
    counters.table_size.set(st.pods.len() as i64);
}

fn apply_objects(
    state: &RwLock<State>,
    change: Change<(Box<str>, ObjectEntry)>,
    map: impl Fn(&mut State) -> &mut HashMap<Box<str>, ObjectEntry>,
) {
    let mut st = state.write().unwrap_or_else(|p| p.into_inner());
    let m = map(&mut st);
    match change {
        Change::Listed(all) => *m = all.into_iter().collect(),
        Change::Applied((k, v)) => {
            m.insert(k, v);
        }
        Change::Deleted((k, _)) => {
            m.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::standin as kube_api;

    fn rules() -> Rules {
        Rules::new(&crate::config::parse_yaml("t", "pod_association: [{sources: [{from: connection}]}]").unwrap())
    }

    fn pod(name: &str, ip: &str, created: &str, phase: &str) -> PodEntry {
        let mut json = kube_api::pod("ns", name, ip, "n", None, serde_json::json!({}));
        json["metadata"]["creationTimestamp"] = serde_json::json!(created);
        json["status"]["phase"] = serde_json::json!(phase);
        PodEntry::from_pod(serde_json::from_value(json).unwrap(), &rules()).unwrap()
    }

    fn holder(st: &State, ip: &str) -> Option<String> {
        st.pod(0, ip).map(|p| p.name.to_string())
    }

    #[test]
    fn an_address_stays_with_the_live_newer_pod_through_late_updates_and_purges() {
        let r = rules();
        let mut st = State { index: vec![HashMap::new()], ..Default::default() };
        st.put(pod("job-a", "10.0.0.5", "2026-12-01T10:00:00Z", "Running"), &r);
        st.put(pod("web-b", "10.0.0.5", "2026-12-01T11:00:00Z", "Running"), &r);
        assert_eq!(holder(&st, "10.0.0.5").as_deref(), Some("web-b"));
        // The old pod's late update (finished, then deleting) does not take the address back.
        st.put(pod("job-a", "10.0.0.5", "2026-12-01T10:00:00Z", "Succeeded"), &r);
        st.put(pod("job-a", "10.0.0.5", "2026-12-01T10:00:00Z", "Running"), &r);
        assert_eq!(holder(&st, "10.0.0.5").as_deref(), Some("web-b"));
        let start = Instant::now();
        let a = kube_api::uid_for("pod/ns/job-a");
        assert!(st.mark_deleted(&a, start));
        assert!(!st.mark_deleted(&a, start), "counted once");
        assert_eq!(st.purge(start + DELETE_GRACE, &r), 1);
        assert_eq!(holder(&st, "10.0.0.5").as_deref(), Some("web-b"), "purging the old pod leaves the new one found");
        // A listed order that puts the older pod last changes nothing either.
        let mut st = State { index: vec![HashMap::new()], ..Default::default() };
        st.put(pod("web-b", "10.0.0.5", "2026-12-01T11:00:00Z", "Running"), &r);
        st.put(pod("job-a", "10.0.0.5", "2026-12-01T10:00:00Z", "Running"), &r);
        assert_eq!(holder(&st, "10.0.0.5").as_deref(), Some("web-b"));
    }

    #[test]
    fn a_deleted_pod_matches_for_its_grace_period_only() {
        let r = rules();
        let mut st = State { index: vec![HashMap::new()], ..Default::default() };
        st.put(pod("a", "10.0.0.6", "2026-12-01T10:00:00Z", "Running"), &r);
        let uid = kube_api::uid_for("pod/ns/a");
        let t0 = Instant::now();
        st.mark_deleted(&uid, t0);
        assert_eq!(st.purge(t0 + DELETE_GRACE - Duration::from_secs(1), &r), 0);
        assert_eq!(holder(&st, "10.0.0.6").as_deref(), Some("a"), "late data still matches");
        // Re-added and deleted again: the first deletion's entry does not cut the second short.
        st.put(pod("a", "10.0.0.6", "2026-12-01T10:00:00Z", "Running"), &r);
        st.mark_deleted(&uid, t0 + Duration::from_secs(60));
        assert_eq!(st.purge(t0 + DELETE_GRACE, &r), 0);
        assert_eq!(st.purge(t0 + DELETE_GRACE + Duration::from_secs(60), &r), 1);
        assert_eq!(holder(&st, "10.0.0.6"), None);
    }
}
