//! `kubernetes_sd_configs`: scrape targets from the Kubernetes API, as Prometheus discovers
//! them, with its `__meta_kubernetes_*` labels for `relabel_configs` to keep, drop and rewrite
//! (roles `node`, `pod`, `service`, `endpoints`, `endpointslice`; `namespaces`; `selectors`).
//! The objects are listed and watched (src/kubernetes/); each change gives new target groups.

use super::config::StaticConfig;
use crate::kubernetes::objects::{self, Meta, Object};
use crate::kubernetes::{ApiClient, ApiSettings, AuthType, Change, Resource, Synced, watch};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Node,
    Pod,
    Service,
    Endpoints,
    #[serde(rename = "endpointslice")]
    EndpointSlice,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSdConfig {
    pub role: Option<Role>,
    /// The API server's URL (no credentials), instead of the in-cluster one.
    pub api_server: Option<String>,
    /// A kubeconfig file's current context, instead of the pod's service account.
    pub kubeconfig_file: Option<String>,
    pub namespaces: Namespaces,
    pub selectors: Vec<Selector>,
    pub attach_metadata: AttachMetadata,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    pub own_namespace: bool,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub role: Role,
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub field: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachMetadata {
    pub node: bool,
}

impl KubernetesSdConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let Some(role) = self.role else {
            return Err(("role".into(), "give one of node, pod, service, endpoints, endpointslice".into()));
        };
        if self.api_server.is_some() && self.kubeconfig_file.is_some() {
            return Err(("api_server".into(), "api_server and kubeconfig_file exclude each other".into()));
        }
        if self.attach_metadata.node {
            return Err(("attach_metadata.node".into(), "not supported yet".into()));
        }
        for (i, s) in self.selectors.iter().enumerate() {
            let allowed: &[Role] = match role {
                Role::Node => &[Role::Node],
                Role::Pod => &[Role::Pod],
                Role::Service => &[Role::Service],
                Role::Endpoints => &[Role::Endpoints, Role::Service, Role::Pod],
                Role::EndpointSlice => &[Role::EndpointSlice, Role::Service, Role::Pod],
            };
            if !allowed.contains(&s.role) {
                return Err((
                    format!("selectors.{i}.role"),
                    format!("{:?} selectors do not apply to role {role:?}", s.role),
                ));
            }
        }
        Ok(())
    }

    fn settings(&self) -> ApiSettings {
        match (&self.kubeconfig_file, &self.api_server) {
            (Some(path), _) => ApiSettings {
                auth_type: AuthType::KubeConfig,
                kube_config_path: Some(path.clone()),
                ..Default::default()
            },
            (None, Some(url)) => {
                ApiSettings { auth_type: AuthType::None, server: Some(url.clone()), ..Default::default() }
            }
            _ => ApiSettings::default(),
        }
    }

    fn namespaces(&self) -> Result<Vec<Option<String>>, String> {
        let mut names: Vec<Option<String>> = self.namespaces.names.iter().cloned().map(Some).collect();
        if self.namespaces.own_namespace {
            let file = format!("{}/namespace", crate::kubernetes::api::SERVICE_ACCOUNT_DIR);
            let own = std::fs::read_to_string(&file).map_err(|e| format!("namespaces.own_namespace: {file}: {e}"))?;
            names.push(Some(own.trim().to_string()));
        }
        if names.is_empty() {
            names.push(None);
        }
        Ok(names)
    }
}

/// What one `kubernetes_sd_configs` entry's watches hold, keyed by (watch, namespace/name).
#[derive(Default)]
struct Objects {
    /// How many watches fill these maps (their indexes are 1..=watches).
    watches: usize,
    nodes: BTreeMap<(usize, String), objects::Node>,
    pods: BTreeMap<(usize, String), objects::Pod>,
    services: BTreeMap<(usize, String), objects::Service>,
    endpoints: BTreeMap<(usize, String), objects::Endpoints>,
    slices: BTreeMap<(usize, String), objects::EndpointSlice>,
}

struct Source {
    role: Role,
    objects: Arc<Mutex<Objects>>,
    synced: Vec<Synced>,
}

/// The watches of a scrape job's `kubernetes_sd_configs`; they stop when it is dropped.
pub struct Discovery {
    sources: Vec<Source>,
    changed: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Discovery {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn key(m: &Meta) -> String {
    format!("{}/{}", m.namespace, m.name)
}

/// Starts a watch of `resource` whose objects land in the map `field` picks, under `index`.
fn watch_into<T: Object + Clone>(
    client: &Arc<ApiClient>,
    resource: Resource,
    index: usize,
    objects: &Arc<Mutex<Objects>>,
    field: fn(&mut Objects) -> &mut BTreeMap<(usize, String), T>,
    changed: &Arc<Notify>,
    synced: Synced,
) -> tokio::task::JoinHandle<()> {
    let (objects, changed) = (objects.clone(), changed.clone());
    watch::spawn::<T, T>(
        client.clone(),
        resource,
        |t| t,
        move |change| {
            let mut o = objects.lock().unwrap_or_else(|p| p.into_inner());
            let map = field(&mut o);
            match change {
                Change::Listed(all) => {
                    map.retain(|(i, _), _| *i != index);
                    map.extend(all.into_iter().map(|t| ((index, key(t.meta())), t)));
                }
                Change::Applied(t) => {
                    map.insert((index, key(t.meta())), t);
                }
                Change::Deleted(t) => {
                    map.remove(&(index, key(t.meta())));
                }
            }
            drop(o);
            changed.notify_one();
        },
        synced,
    )
}

impl Discovery {
    pub fn start(configs: &[KubernetesSdConfig]) -> Result<Discovery, String> {
        let changed = Arc::new(Notify::new());
        let mut sources = Vec::new();
        let mut tasks = Vec::new();
        for (n, cfg) in configs.iter().enumerate() {
            let at = |e: String| format!("kubernetes_sd_configs.{n}: {e}");
            let role = cfg.role.ok_or_else(|| at("no role".into()))?;
            let client = Arc::new(ApiClient::new(&cfg.settings()).map_err(at)?);
            let objects = Arc::new(Mutex::new(Objects::default()));
            let mut synced = Vec::new();
            let selector = |r: Role| {
                let mut res = (String::new(), String::new());
                for s in cfg.selectors.iter().filter(|s| s.role == r) {
                    res = (s.label.clone(), s.field.clone());
                }
                res
            };
            let resource = |r: Role, path: String| {
                let (label, field) = selector(r);
                Resource::new(path).labels(label).fields(field)
            };
            let mut index = 0;
            let mut next = || {
                index += 1;
                index
            };
            if role == Role::Node {
                let s = Synced::default();
                tasks.push(watch_into::<objects::Node>(
                    &client,
                    resource(Role::Node, "/api/v1/nodes".into()),
                    next(),
                    &objects,
                    |o| &mut o.nodes,
                    &changed,
                    s.clone(),
                ));
                synced.push(s);
            } else {
                for ns in cfg.namespaces().map_err(at)? {
                    let path = |group: &str, kind: &str| match &ns {
                        Some(ns) => format!("{group}/namespaces/{}/{kind}", crate::percent::encode(ns)),
                        None => format!("{group}/{kind}"),
                    };
                    let pods = matches!(role, Role::Pod | Role::Endpoints | Role::EndpointSlice);
                    let services = matches!(role, Role::Service | Role::Endpoints | Role::EndpointSlice);
                    if pods {
                        let s = Synced::default();
                        tasks.push(watch_into::<objects::Pod>(
                            &client,
                            resource(Role::Pod, path("/api/v1", "pods")),
                            next(),
                            &objects,
                            |o| &mut o.pods,
                            &changed,
                            s.clone(),
                        ));
                        synced.push(s);
                    }
                    if services {
                        let s = Synced::default();
                        tasks.push(watch_into::<objects::Service>(
                            &client,
                            resource(Role::Service, path("/api/v1", "services")),
                            next(),
                            &objects,
                            |o| &mut o.services,
                            &changed,
                            s.clone(),
                        ));
                        synced.push(s);
                    }
                    if role == Role::Endpoints {
                        let s = Synced::default();
                        tasks.push(watch_into::<objects::Endpoints>(
                            &client,
                            resource(Role::Endpoints, path("/api/v1", "endpoints")),
                            next(),
                            &objects,
                            |o| &mut o.endpoints,
                            &changed,
                            s.clone(),
                        ));
                        synced.push(s);
                    }
                    if role == Role::EndpointSlice {
                        let s = Synced::default();
                        tasks.push(watch_into::<objects::EndpointSlice>(
                            &client,
                            resource(Role::EndpointSlice, path("/apis/discovery.k8s.io/v1", "endpointslices")),
                            next(),
                            &objects,
                            |o| &mut o.slices,
                            &changed,
                            s.clone(),
                        ));
                        synced.push(s);
                    }
                }
            }
            objects.lock().unwrap_or_else(|p| p.into_inner()).watches = index;
            sources.push(Source { role, objects, synced });
        }
        Ok(Discovery { sources, changed, tasks })
    }

    /// Waits until a watch changed something.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Whether every watch has listed once.
    pub fn synced(&self) -> bool {
        self.sources.iter().all(|s| s.synced.iter().all(Synced::is_set))
    }

    /// The target groups discovered now, one per target.
    pub fn groups(&self) -> Vec<StaticConfig> {
        let mut out = Vec::new();
        for s in &self.sources {
            let o = s.objects.lock().unwrap_or_else(|p| p.into_inner());
            match s.role {
                Role::Node => o.nodes.values().for_each(|n| node_targets(n, &mut out)),
                Role::Pod => o.pods.values().for_each(|p| pod_targets(p, &mut out)),
                Role::Service => o.services.values().for_each(|sv| service_targets(sv, &mut out)),
                Role::Endpoints => o.endpoints.values().for_each(|e| endpoints_targets(e, &o, &mut out)),
                Role::EndpointSlice => o.slices.values().for_each(|e| slice_targets(e, &o, &mut out)),
            }
        }
        out
    }
}

type Labels = BTreeMap<String, String>;

/// A label name as Prometheus makes one of a key: every character but `[a-zA-Z0-9_]` is `_`.
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn bool_label(b: bool) -> String {
    b.to_string()
}

/// `<prefix>_label_<name>`, `_labelpresent_`, `_annotation_`, `_annotationpresent_`.
fn meta_labels(prefix: &str, m: &Meta, labels: &mut Labels) {
    for (k, v) in &m.labels {
        labels.insert(format!("{prefix}_label_{}", sanitize(k)), v.clone());
        labels.insert(format!("{prefix}_labelpresent_{}", sanitize(k)), "true".into());
    }
    for (k, v) in &m.annotations {
        labels.insert(format!("{prefix}_annotation_{}", sanitize(k)), v.clone());
        labels.insert(format!("{prefix}_annotationpresent_{}", sanitize(k)), "true".into());
    }
}

fn group(target: String, labels: Labels) -> StaticConfig {
    StaticConfig { targets: vec![target], labels }
}

fn join_port(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

fn node_targets(n: &objects::Node, out: &mut Vec<StaticConfig>) {
    let mut labels = Labels::new();
    labels.insert("__meta_kubernetes_node_name".into(), n.metadata.name.clone());
    meta_labels("__meta_kubernetes_node", &n.metadata, &mut labels);
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for a in &n.status.addresses {
        first.entry(a.kind.as_str()).or_insert(a.address.as_str());
    }
    for (kind, address) in &first {
        labels.insert(format!("__meta_kubernetes_node_address_{}", sanitize(kind)), address.to_string());
    }
    let address = ["InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "LegacyHostIP", "Hostname"]
        .iter()
        .find_map(|k| first.get(k));
    let Some(address) = address else { return };
    let port = match n.status.daemon_endpoints.kubelet_endpoint.port {
        0 => 10250,
        p => p,
    };
    labels.insert("instance".into(), n.metadata.name.clone());
    out.push(group(join_port(address, port), labels));
}

/// The labels of a pod every target of it gets.
fn pod_labels(p: &objects::Pod, labels: &mut Labels) {
    let m = &p.metadata;
    labels.insert("__meta_kubernetes_namespace".into(), m.namespace.clone());
    labels.insert("__meta_kubernetes_pod_name".into(), m.name.clone());
    labels.insert("__meta_kubernetes_pod_ip".into(), p.status.pod_ip.clone());
    let ready = p.status.conditions.iter().find(|c| c.kind == "Ready").map(|c| c.status.to_ascii_lowercase());
    labels.insert("__meta_kubernetes_pod_ready".into(), ready.unwrap_or_else(|| "unknown".into()));
    labels.insert("__meta_kubernetes_pod_phase".into(), p.status.phase.clone());
    labels.insert("__meta_kubernetes_pod_node_name".into(), p.spec.node_name.clone());
    labels.insert("__meta_kubernetes_pod_host_ip".into(), p.status.host_ip.clone());
    labels.insert("__meta_kubernetes_pod_uid".into(), m.uid.clone());
    if let Some(o) = m.owner_references.iter().find(|o| o.controller) {
        labels.insert("__meta_kubernetes_pod_controller_kind".into(), o.kind.clone());
        labels.insert("__meta_kubernetes_pod_controller_name".into(), o.name.clone());
    }
    meta_labels("__meta_kubernetes_pod", m, labels);
}

fn container_labels(p: &objects::Pod, c: &objects::Container, init: bool, labels: &mut Labels) {
    labels.insert("__meta_kubernetes_pod_container_name".into(), c.name.clone());
    labels.insert("__meta_kubernetes_pod_container_image".into(), c.image.clone());
    labels.insert("__meta_kubernetes_pod_container_init".into(), bool_label(init));
    let statuses = if init { &p.status.init_container_statuses } else { &p.status.container_statuses };
    if let Some(s) = statuses.iter().find(|s| s.name == c.name) {
        labels.insert("__meta_kubernetes_pod_container_id".into(), s.container_id.clone());
    }
}

fn port_labels(port: &objects::ContainerPort, labels: &mut Labels) {
    labels.insert("__meta_kubernetes_pod_container_port_name".into(), port.name.clone());
    labels.insert("__meta_kubernetes_pod_container_port_number".into(), port.container_port.to_string());
    let protocol = if port.protocol.is_empty() { "TCP" } else { &port.protocol };
    labels.insert("__meta_kubernetes_pod_container_port_protocol".into(), protocol.to_string());
}

fn pod_targets(p: &objects::Pod, out: &mut Vec<StaticConfig>) {
    if p.status.pod_ip.is_empty() {
        return;
    }
    let mut base = Labels::new();
    pod_labels(p, &mut base);
    let containers =
        p.spec.containers.iter().map(|c| (c, false)).chain(p.spec.init_containers.iter().map(|c| (c, true)));
    for (c, init) in containers {
        let mut labels = base.clone();
        container_labels(p, c, init, &mut labels);
        if c.ports.is_empty() {
            // A container without ports: one target at the pod's address, for relabeling to fix.
            out.push(group(p.status.pod_ip.clone(), labels));
            continue;
        }
        for port in &c.ports {
            let mut labels = labels.clone();
            port_labels(port, &mut labels);
            out.push(group(join_port(&p.status.pod_ip, port.container_port), labels));
        }
    }
}

fn service_labels(s: &objects::Service, labels: &mut Labels) {
    labels.insert("__meta_kubernetes_namespace".into(), s.metadata.namespace.clone());
    labels.insert("__meta_kubernetes_service_name".into(), s.metadata.name.clone());
    meta_labels("__meta_kubernetes_service", &s.metadata, labels);
}

fn service_targets(s: &objects::Service, out: &mut Vec<StaticConfig>) {
    let mut base = Labels::new();
    service_labels(s, &mut base);
    let kind = if s.spec.kind.is_empty() { "ClusterIP" } else { &s.spec.kind };
    base.insert("__meta_kubernetes_service_type".into(), kind.to_string());
    if kind == "ExternalName" {
        base.insert("__meta_kubernetes_service_external_name".into(), s.spec.external_name.clone());
    } else {
        base.insert("__meta_kubernetes_service_cluster_ip".into(), s.spec.cluster_ip.clone());
    }
    for port in &s.spec.ports {
        let mut labels = base.clone();
        labels.insert("__meta_kubernetes_service_port_name".into(), port.name.clone());
        labels.insert("__meta_kubernetes_service_port_number".into(), port.port.to_string());
        let protocol = if port.protocol.is_empty() { "TCP" } else { &port.protocol };
        labels.insert("__meta_kubernetes_service_port_protocol".into(), protocol.to_string());
        let address = format!("{}.{}.svc:{}", s.metadata.name, s.metadata.namespace, port.port);
        out.push(group(address, labels));
    }
}

fn find<'a, T: Object>(
    o: &Objects,
    map: &'a BTreeMap<(usize, String), T>,
    namespace: &str,
    name: &str,
) -> Option<&'a T> {
    let key = format!("{namespace}/{name}");
    (1..=o.watches).find_map(|i| map.get(&(i, key.clone())))
}

/// The labels of the pod an endpoint points at (with its container serving `port`), if known.
fn target_pod_labels(o: &Objects, target: Option<&objects::ObjectReference>, port: Option<u16>, labels: &mut Labels) {
    let Some(t) = target.filter(|t| t.kind == "Pod") else { return };
    let Some(pod) = find(o, &o.pods, &t.namespace, &t.name) else { return };
    pod_labels(pod, labels);
    for (c, init) in
        pod.spec.containers.iter().map(|c| (c, false)).chain(pod.spec.init_containers.iter().map(|c| (c, true)))
    {
        if let Some(p) = c.ports.iter().find(|p| Some(p.container_port) == port) {
            container_labels(pod, c, init, labels);
            port_labels(p, labels);
        }
    }
}

fn endpoints_targets(e: &objects::Endpoints, o: &Objects, out: &mut Vec<StaticConfig>) {
    let mut base = Labels::new();
    base.insert("__meta_kubernetes_namespace".into(), e.metadata.namespace.clone());
    base.insert("__meta_kubernetes_endpoints_name".into(), e.metadata.name.clone());
    meta_labels("__meta_kubernetes_endpoints", &e.metadata, &mut base);
    if let Some(s) = find(o, &o.services, &e.metadata.namespace, &e.metadata.name) {
        service_labels(s, &mut base);
    }
    for subset in &e.subsets {
        let addresses =
            subset.addresses.iter().map(|a| (a, true)).chain(subset.not_ready_addresses.iter().map(|a| (a, false)));
        for (a, ready) in addresses {
            for port in &subset.ports {
                let Some(number) = port.port else { continue };
                let mut labels = base.clone();
                labels.insert("__meta_kubernetes_endpoint_ready".into(), bool_label(ready));
                labels.insert("__meta_kubernetes_endpoint_port_name".into(), port.name.clone().unwrap_or_default());
                let protocol = if port.protocol.is_empty() { "TCP" } else { &port.protocol };
                labels.insert("__meta_kubernetes_endpoint_port_protocol".into(), protocol.to_string());
                if !a.hostname.is_empty() {
                    labels.insert("__meta_kubernetes_endpoint_hostname".into(), a.hostname.clone());
                }
                if let Some(node) = &a.node_name {
                    labels.insert("__meta_kubernetes_endpoint_node_name".into(), node.clone());
                }
                if let Some(t) = &a.target_ref {
                    labels.insert("__meta_kubernetes_endpoint_address_target_kind".into(), t.kind.clone());
                    labels.insert("__meta_kubernetes_endpoint_address_target_name".into(), t.name.clone());
                }
                target_pod_labels(o, a.target_ref.as_ref(), Some(number), &mut labels);
                out.push(group(join_port(&a.ip, number), labels));
            }
        }
    }
}

fn slice_targets(e: &objects::EndpointSlice, o: &Objects, out: &mut Vec<StaticConfig>) {
    let m = &e.metadata;
    let mut base = Labels::new();
    base.insert("__meta_kubernetes_namespace".into(), m.namespace.clone());
    base.insert("__meta_kubernetes_endpointslice_name".into(), m.name.clone());
    base.insert("__meta_kubernetes_endpointslice_address_type".into(), e.address_type.clone());
    meta_labels("__meta_kubernetes_endpointslice", m, &mut base);
    if let Some(service) = m.labels.get("kubernetes.io/service-name")
        && let Some(s) = find(o, &o.services, &m.namespace, service)
    {
        service_labels(s, &mut base);
    }
    for ep in &e.endpoints {
        for address in &ep.addresses {
            for port in &e.ports {
                let Some(number) = port.port else { continue };
                let mut labels = base.clone();
                let c = &ep.conditions;
                for (name, value) in [("ready", c.ready), ("serving", c.serving), ("terminating", c.terminating)] {
                    if let Some(v) = value {
                        labels.insert(
                            format!("__meta_kubernetes_endpointslice_endpoint_conditions_{name}"),
                            bool_label(v),
                        );
                    }
                }
                if !ep.hostname.is_empty() {
                    labels.insert("__meta_kubernetes_endpointslice_endpoint_hostname".into(), ep.hostname.clone());
                }
                if !ep.node_name.is_empty() {
                    labels.insert("__meta_kubernetes_endpointslice_endpoint_node_name".into(), ep.node_name.clone());
                }
                if let Some(t) = &ep.target_ref {
                    labels.insert("__meta_kubernetes_endpointslice_address_target_kind".into(), t.kind.clone());
                    labels.insert("__meta_kubernetes_endpointslice_address_target_name".into(), t.name.clone());
                }
                labels.insert("__meta_kubernetes_endpointslice_port".into(), number.to_string());
                labels
                    .insert("__meta_kubernetes_endpointslice_port_name".into(), port.name.clone().unwrap_or_default());
                let protocol = if port.protocol.is_empty() { "TCP" } else { &port.protocol };
                labels.insert("__meta_kubernetes_endpointslice_port_protocol".into(), protocol.to_string());
                if !port.app_protocol.is_empty() {
                    labels
                        .insert("__meta_kubernetes_endpointslice_port_app_protocol".into(), port.app_protocol.clone());
                }
                target_pod_labels(o, ep.target_ref.as_ref(), Some(number), &mut labels);
                out.push(group(join_port(address, number), labels));
            }
        }
    }
}

#[cfg(test)]
#[path = "kubernetes_sd_tests.rs"]
mod tests;
