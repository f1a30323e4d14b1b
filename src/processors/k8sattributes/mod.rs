//! The `k8sattributes` processor (also `k8s_attributes`): finds the pod each resource came
//! from (by the connection's address or by resource attributes, per `pod_association`) among
//! the pods its watches of the API server hold, and adds that pod's metadata (names, owners,
//! node, container image, labels and annotations) to the resource, as the collector's does.

mod cluster;
pub mod config;

use crate::pipeline::{Batch, Processor, Request};
use cluster::{Cluster, Counters, PodEntry, Rules, State};
use config::{K8sAttributesConfig, SourceFrom};
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::net::IpAddr;
use std::sync::Arc;

pub use config::K8sAttributesConfig as Config;

pub struct K8sAttributes {
    /// None in passthrough mode.
    cluster: Option<Arc<Cluster>>,
    miss: prometheus::IntCounter,
}

fn string(v: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) })
}

/// A resource attribute's value as a string, if it is a non-empty string (or an integer).
fn attribute<'a>(r: &'a Resource, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    let v = r.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    match v {
        any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str().into()),
        any_value::Value::IntValue(i) => Some(i.to_string().into()),
        _ => None,
    }
}

/// Sets `key` unless the resource has a value for it (an empty one is replaced, as the
/// collector does).
fn add_if_absent(r: &mut Resource, key: &str, value: Option<AnyValue>) {
    match r.attributes.iter_mut().find(|a| a.key == key) {
        None => r.attributes.push(KeyValue { key: key.to_string(), value, ..Default::default() }),
        Some(a) => {
            let empty = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                None => true,
                Some(any_value::Value::StringValue(s)) => s.is_empty(),
                Some(_) => false,
            };
            if empty {
                a.value = value;
            }
        }
    }
}

/// An image reference's name and tag (`latest` when it has neither tag nor digest).
fn image_parts(image: &str) -> (&str, Option<&str>) {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind(':') {
        Some(c) => (&name[..last + c], Some(&name[last + c + 1..])),
        None if digest => (name, None),
        None => (name, Some("latest")),
    }
}

/// The ReplicaSet's Deployment as its name says: the pod-template hash cut off.
fn deployment_from_replicaset(name: &str) -> Option<&str> {
    let (base, hash) = name.rsplit_once('-')?;
    (!hash.is_empty() && hash.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(base)
}

/// A Job's CronJob as its name says: the schedule's number cut off.
fn cronjob_from_job(name: &str) -> Option<&str> {
    let (base, n) = name.rsplit_once('-')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// The metadata `rules` ask for of `pod`, with what the other watches know.
fn pod_attributes(
    pod: &PodEntry,
    state: &State,
    rules: &Rules,
    resource: &Resource,
) -> Vec<(String, Option<AnyValue>)> {
    let mut out: Vec<(String, Option<AnyValue>)> = Vec::new();
    let owner = |kind: &str| pod.owner.as_ref().filter(|(k, _, _)| &**k == kind).map(|(_, n, u)| (&**n, &**u));
    let replicaset = owner("ReplicaSet");
    let deployment = replicaset.and_then(|(_, uid)| state.deployment_of(uid));
    let mut container_wanted = false;
    for m in &rules.metadata {
        let value: Option<&str> = match m.as_str() {
            "k8s.namespace.name" => Some(&pod.namespace),
            "k8s.pod.name" => Some(&pod.name),
            "k8s.pod.uid" => Some(&pod.uid),
            "k8s.pod.hostname" => Some(&pod.hostname),
            "k8s.pod.ip" => Some(&pod.ip),
            "k8s.pod.start_time" => Some(&pod.start_time),
            "k8s.node.name" => Some(&pod.node),
            "k8s.replicaset.name" => replicaset.map(|(n, _)| n),
            "k8s.replicaset.uid" => replicaset.map(|(_, u)| u),
            "k8s.deployment.name" if rules.deployment_from_name => {
                replicaset.and_then(|(n, _)| deployment_from_replicaset(n))
            }
            "k8s.deployment.name" => deployment.map(|(n, _)| &**n),
            "k8s.deployment.uid" => deployment.map(|(_, u)| &**u),
            "k8s.daemonset.name" => owner("DaemonSet").map(|(n, _)| n),
            "k8s.daemonset.uid" => owner("DaemonSet").map(|(_, u)| u),
            "k8s.statefulset.name" => owner("StatefulSet").map(|(n, _)| n),
            "k8s.statefulset.uid" => owner("StatefulSet").map(|(_, u)| u),
            "k8s.job.name" => owner("Job").map(|(n, _)| n),
            "k8s.job.uid" => owner("Job").map(|(_, u)| u),
            "k8s.cronjob.name" => owner("Job").and_then(|(n, _)| cronjob_from_job(n)),
            "k8s.node.uid" => state.nodes.get(&*pod.node).map(|n| &*n.uid),
            "k8s.cluster.uid" => state.namespaces.get("kube-system").map(|n| &*n.uid),
            _ => {
                container_wanted = true;
                None
            }
        };
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.push((m.clone(), string(v)));
        }
    }
    for (k, v) in &pod.attributes {
        out.push((k.to_string(), string(&**v)));
    }
    if let Some(ns) = state.namespaces.get(&*pod.namespace) {
        out.extend(ns.attributes.iter().map(|(k, v)| (k.clone(), string(v.as_str()))));
    }
    if let Some(node) = state.nodes.get(&*pod.node) {
        out.extend(node.attributes.iter().map(|(k, v)| (k.clone(), string(v.as_str()))));
    }
    if container_wanted {
        container_attributes(pod, rules, resource, &mut out);
    }
    out
}

/// Container metadata, for a resource that names its container (`container.id`, or
/// `k8s.container.name` with `k8s.container.restart_count`).
fn container_attributes(pod: &PodEntry, rules: &Rules, resource: &Resource, out: &mut Vec<(String, Option<AnyValue>)>) {
    let by_id = attribute(resource, "container.id");
    let container = match &by_id {
        Some(id) => pod.containers.iter().find(|c| c.id.as_ref().is_some_and(|(_, i)| **i == **id)),
        None => {
            let name = attribute(resource, "k8s.container.name");
            name.and_then(|n| pod.containers.iter().find(|c| *c.name == *n))
        }
    };
    let Some(c) = container else { return };
    let restart = attribute(resource, "k8s.container.restart_count").and_then(|r| r.parse::<u32>().ok());
    let (name, tag) = image_parts(&c.image);
    for m in &rules.metadata {
        let value = match m.as_str() {
            "k8s.container.name" => string(&*c.name),
            "container.id" if by_id.is_none() => match (&c.id, restart) {
                // Only the current run's id is kept: an older restart's is not known.
                (Some((current, id)), Some(r)) if *current == r => string(&**id),
                (Some((_, id)), None) => string(&**id),
                _ => None,
            },
            "container.image.name" if !name.is_empty() => string(name),
            "container.image.tag" => tag.and_then(string),
            "container.image.repo_digests" => c.repo_digest.as_ref().map(|d| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![string(&**d).unwrap_or_default()],
                })),
            }),
            _ => None,
        };
        if value.is_some() {
            out.push((m.clone(), value));
        }
    }
}

impl K8sAttributes {
    fn enrich(&self, resource: &mut Option<Resource>, client: Option<IpAddr>) {
        let r = resource.get_or_insert_with(Resource::default);
        let Some(cluster) = &self.cluster else {
            // Passthrough: the address, for a gateway further on to match.
            if let Some(ip) = client {
                add_if_absent(r, "k8s.pod.ip", string(ip.to_string()));
            }
            return;
        };
        // The first rule whose sources the resource (and connection) all have decides.
        let mut found = None;
        'rules: for (i, rule) in cluster.rules.associations.iter().enumerate() {
            let mut key = String::new();
            let mut connection = None;
            for (j, source) in rule.iter().enumerate() {
                let value = match source.from {
                    SourceFrom::Connection => client.map(|c| std::borrow::Cow::Owned(c.to_string())),
                    // `host.name` matches only when it is an address (a name cannot be a pod's).
                    SourceFrom::ResourceAttribute if source.name == "host.name" => {
                        attribute(r, &source.name).filter(|v| v.parse::<IpAddr>().is_ok())
                    }
                    SourceFrom::ResourceAttribute => attribute(r, &source.name),
                };
                let Some(value) = value else { continue 'rules };
                if source.from == SourceFrom::Connection {
                    connection = Some(value.to_string());
                }
                if j > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(&value);
            }
            found = Some((i, key, connection));
            break;
        }
        let Some((rule, key, connection)) = found else { return };
        if let Some(ip) = connection {
            add_if_absent(r, "k8s.pod.ip", string(ip));
        }
        let state = cluster.state.read().unwrap_or_else(|p| p.into_inner());
        let Some(pod) = state.pod(rule, &key) else {
            self.miss.inc();
            return;
        };
        for (k, v) in pod_attributes(pod, &state, &cluster.rules, r) {
            add_if_absent(r, &k, v);
        }
    }
}

impl Processor for K8sAttributes {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        let client = batch.client();
        match batch.request_mut() {
            Ok(Request::Traces(t)) => t.resource_spans.iter_mut().for_each(|r| self.enrich(&mut r.resource, client)),
            Ok(Request::Metrics(m)) => m.resource_metrics.iter_mut().for_each(|r| self.enrich(&mut r.resource, client)),
            Ok(Request::Logs(l)) => l.resource_logs.iter_mut().for_each(|r| self.enrich(&mut r.resource, client)),
            Err(e) => {
                tracing::warn!(error = %e, "k8sattributes: cannot decode a batch to look into it; passed on whole")
            }
        }
        out.push(batch);
    }
}

/// The `k8sattributes` processor's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::processor::<K8sAttributesConfig>(
        "k8sattributes",
        crate::registry::ALL_SIGNALS,
        "adds the metadata of the Kubernetes pod that sent the data (names, owners, node, image, labels)",
    )
    .aliases(&["k8s_attributes"]);

impl crate::pipeline::component::ProcessorSettings for K8sAttributesConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        self.check()
    }

    fn build(&self, ctx: &crate::pipeline::component::ProcessorContext) -> Result<Box<dyn Processor>, String> {
        let miss = ctx.telemetry.k8s_ip_lookup_miss.clone();
        if self.passthrough {
            return Ok(Box::new(K8sAttributes { cluster: None, miss }));
        }
        let t = &ctx.telemetry;
        let counters = Counters {
            added: t.k8s_pod_added.clone(),
            updated: t.k8s_pod_updated.clone(),
            deleted: t.k8s_pod_deleted.clone(),
            table_size: t.k8s_pod_table_size.clone(),
        };
        let cluster = Cluster::get(self, &counters)?;
        if self.wait_for_metadata && !cluster.synced() {
            let wait = || cluster.wait_synced(self.wait_for_metadata_timeout);
            let synced = match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(wait)
                }
                _ => wait(),
            };
            if !synced {
                return Err(format!(
                    "the pods were not listed within wait_for_metadata_timeout ({:?}); see the warnings above",
                    self.wait_for_metadata_timeout
                ));
            }
        }
        Ok(Box::new(K8sAttributes { cluster: Some(cluster), miss }))
    }
}

#[cfg(test)]
mod tests;
