//! The `resourcedetection` processor (also `resource_detection`): finds what describes where
//! switchyard runs (its environment variables, the host, the cloud instance through the cloud's
//! metadata server) once, when it is built, and adds it to the resource of everything that
//! passes, as the collector's processor does.

mod detectors;
pub mod metadata_http;

use crate::config::deserialize_duration;
use crate::pipeline::{Batch, Processor, Request};
use detectors::HostnameSource;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Detector {
    Env,
    System,
    Ec2,
    Gcp,
    Azure,
    #[serde(rename = "k8snode")]
    K8sNode,
}

/// One attribute's switch in a detector's `resource_attributes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    pub resource_attributes: HashMap<String, Enabled>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    pub hostname_sources: Vec<HostnameSource>,
    pub resource_attributes: HashMap<String, Enabled>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            hostname_sources: vec![HostnameSource::Dns, HostnameSource::Os],
            resource_attributes: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    pub resource_attributes: HashMap<String, Enabled>,
    /// Instance tags (EC2) or labels (GCP): need the cloud's API; refused when given.
    pub tags: Vec<String>,
    pub labels: Vec<String>,
}

/// The `k8snode` detector's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sNodeConfig {
    pub auth_type: crate::kubernetes::AuthType,
    pub kube_config_path: Option<String>,
    pub context: Option<String>,
    /// The variable holding the node's name (from `spec.nodeName` through the downward API).
    pub node_from_env_var: String,
    pub resource_attributes: HashMap<String, Enabled>,
}

impl Default for K8sNodeConfig {
    fn default() -> Self {
        K8sNodeConfig {
            auth_type: crate::kubernetes::AuthType::ServiceAccount,
            kube_config_path: None,
            context: None,
            node_from_env_var: "K8S_NODE_NAME".into(),
            resource_attributes: HashMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceDetectionConfig {
    pub detectors: Vec<Detector>,
    /// Detected values replace what the data already has (true), or only fill what is missing.
    #[serde(rename = "override")]
    pub override_: bool,
    /// The longest detection may take, per detector.
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// Deprecated in the collector: only these keys are kept (all when empty).
    pub attributes: Vec<String>,
    /// A detector that finds nothing (not on that cloud) stops the start instead.
    pub fail_on_missing_metadata: bool,
    pub env: DetectorConfig,
    pub system: SystemConfig,
    pub ec2: CloudConfig,
    pub gcp: CloudConfig,
    pub azure: CloudConfig,
    pub k8snode: K8sNodeConfig,
}

impl Default for ResourceDetectionConfig {
    fn default() -> Self {
        ResourceDetectionConfig {
            detectors: Vec::new(),
            override_: true,
            timeout: Duration::from_secs(5),
            attributes: Vec::new(),
            fail_on_missing_metadata: false,
            env: DetectorConfig::default(),
            system: SystemConfig::default(),
            ec2: CloudConfig::default(),
            gcp: CloudConfig::default(),
            azure: CloudConfig::default(),
            k8snode: K8sNodeConfig::default(),
        }
    }
}

/// The attributes each detector gives, and whether each is on by default (as the collector).
fn attributes_of(d: Detector) -> &'static [(&'static str, bool)] {
    match d {
        Detector::Env => &[],
        Detector::System => &[
            ("host.name", true),
            ("os.type", true),
            ("host.id", false),
            ("host.arch", false),
            ("os.description", false),
        ],
        Detector::Ec2 => &[
            ("cloud.provider", true),
            ("cloud.platform", true),
            ("cloud.region", true),
            ("cloud.availability_zone", true),
            ("cloud.account.id", true),
            ("host.id", true),
            ("host.image.id", true),
            ("host.type", true),
            ("host.name", true),
        ],
        Detector::Gcp => &[
            ("cloud.provider", true),
            ("cloud.platform", true),
            ("cloud.account.id", true),
            ("cloud.region", true),
            ("cloud.availability_zone", true),
            ("k8s.cluster.name", true),
            ("host.id", true),
            ("host.name", true),
            ("host.type", true),
        ],
        Detector::Azure => &[
            ("cloud.provider", true),
            ("cloud.platform", true),
            ("cloud.region", true),
            ("cloud.account.id", true),
            ("host.id", true),
            ("host.name", true),
            ("azure.vm.name", true),
            ("azure.vm.size", true),
            ("azure.vm.scaleset.name", true),
            ("azure.resourcegroup.name", true),
        ],
        Detector::K8sNode => &[("k8s.node.name", true), ("k8s.node.uid", true)],
    }
}

fn name_of(d: Detector) -> &'static str {
    match d {
        Detector::Env => "env",
        Detector::System => "system",
        Detector::Ec2 => "ec2",
        Detector::Gcp => "gcp",
        Detector::Azure => "azure",
        Detector::K8sNode => "k8snode",
    }
}

impl ResourceDetectionConfig {
    fn switches(&self, d: Detector) -> &HashMap<String, Enabled> {
        match d {
            Detector::Env => &self.env.resource_attributes,
            Detector::System => &self.system.resource_attributes,
            Detector::Ec2 => &self.ec2.resource_attributes,
            Detector::Gcp => &self.gcp.resource_attributes,
            Detector::Azure => &self.azure.resource_attributes,
            Detector::K8sNode => &self.k8snode.resource_attributes,
        }
    }

    /// Whether detector `d` gives attribute `key`.
    fn enabled(&self, d: Detector, key: &str) -> bool {
        if d == Detector::Env {
            return true;
        }
        let default = attributes_of(d).iter().find(|(k, _)| *k == key).is_some_and(|(_, on)| *on);
        self.switches(d).get(key).map_or(default, |e| e.enabled)
    }

    /// Runs the detectors in order; an attribute an earlier one gave is kept.
    fn detect(&self) -> Result<Vec<(String, String)>, String> {
        let mut all: Vec<(String, String)> = Vec::new();
        for d in &self.detectors {
            let found = match d {
                Detector::Env => detectors::env(std::env::var("OTEL_RESOURCE_ATTRIBUTES").ok().as_deref()),
                Detector::System => Ok(detectors::system(&self.system.hostname_sources)),
                Detector::Ec2 => detectors::ec2(&detectors::ec2_endpoint(), self.timeout),
                Detector::Gcp => detectors::gcp(&detectors::gcp_endpoint(), self.timeout),
                Detector::Azure => detectors::azure(&detectors::azure_endpoint(), self.timeout),
                Detector::K8sNode => detectors::k8snode(&self.k8snode, self.timeout),
            }
            .map_err(|e| format!("detector {}: {e}", name_of(*d)))?;
            if found.is_empty() && self.fail_on_missing_metadata && *d != Detector::Env {
                return Err(format!("detector {}: no metadata found (fail_on_missing_metadata)", name_of(*d)));
            }
            for (k, v) in found {
                let wanted = self.attributes.is_empty() || self.attributes.contains(&k);
                if wanted && self.enabled(*d, &k) && !all.iter().any(|(a, _)| *a == k) {
                    all.push((k, v));
                }
            }
        }
        Ok(all)
    }
}

/// Detections made in this process, by settings: every pipeline listing the processor, and a
/// reload that keeps its settings, use the first (the collector detects once, at start).
fn detected(cfg: &ResourceDetectionConfig) -> Result<Arc<Vec<KeyValue>>, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Vec<KeyValue>>>>> = OnceLock::new();
    let key = format!("{cfg:?}");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(found.clone());
    }
    // Metadata servers are asked with blocking calls: off the runtime's other tasks.
    let run = || cfg.detect();
    let found = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(run),
        _ => run(),
    }?;
    let kvs: Arc<Vec<KeyValue>> = Arc::new(
        found
            .into_iter()
            .map(|(k, v)| KeyValue {
                key: k,
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(v)) }),
                ..Default::default()
            })
            .collect(),
    );
    tracing::info!(
        attributes = %kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>().join(","),
        "resourcedetection: detected"
    );
    cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, kvs.clone());
    Ok(kvs)
}

pub struct ResourceDetection {
    attributes: Arc<Vec<KeyValue>>,
    override_: bool,
}

impl ResourceDetection {
    fn apply(&self, resource: &mut Option<Resource>) {
        let r = resource.get_or_insert_with(Resource::default);
        for kv in self.attributes.iter() {
            match r.attributes.iter_mut().find(|a| a.key == kv.key) {
                Some(existing) if self.override_ => existing.value = kv.value.clone(),
                Some(_) => {}
                None => r.attributes.push(kv.clone()),
            }
        }
    }
}

impl Processor for ResourceDetection {
    fn process(&mut self, mut batch: Batch, out: &mut Vec<Batch>) {
        if !self.attributes.is_empty()
            && let Ok(request) = batch.request_mut()
        {
            match request {
                Request::Traces(t) => t.resource_spans.iter_mut().for_each(|r| self.apply(&mut r.resource)),
                Request::Metrics(m) => m.resource_metrics.iter_mut().for_each(|r| self.apply(&mut r.resource)),
                Request::Logs(l) => l.resource_logs.iter_mut().for_each(|r| self.apply(&mut r.resource)),
            }
        }
        out.push(batch);
    }
}

/// The `resourcedetection` processor's registration.
pub const REGISTRATION: crate::registry::Registration =
    crate::registry::Registration::processor::<ResourceDetectionConfig>(
        "resourcedetection",
        crate::registry::ALL_SIGNALS,
        "adds what describes where switchyard runs (environment, host, cloud instance) to every resource",
    )
    .aliases(&["resource_detection"]);

impl crate::pipeline::component::ProcessorSettings for ResourceDetectionConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        use crate::config::Invalid;
        if self.detectors.is_empty() {
            return Err(Invalid::new(
                "detectors",
                "name at least one detector: env, system, k8snode, ec2, gcp or azure",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Invalid::new("timeout", "must be greater than 0, such as 5s"));
        }
        for d in [Detector::System, Detector::Ec2, Detector::Gcp, Detector::Azure, Detector::K8sNode] {
            for key in self.switches(d).keys() {
                if !attributes_of(d).iter().any(|(k, _)| k == key) {
                    let known: Vec<&str> = attributes_of(d).iter().map(|(k, _)| *k).collect();
                    return Err(Invalid::new(
                        format!("{}.resource_attributes.{key}", name_of(d)),
                        format!("not an attribute this detector gives (it gives: {})", known.join(", ")),
                    ));
                }
            }
        }
        if !self.env.resource_attributes.is_empty() {
            return Err(Invalid::new(
                "env.resource_attributes",
                "the env detector gives what OTEL_RESOURCE_ATTRIBUTES holds",
            ));
        }
        for (c, name) in [(&self.ec2, "ec2"), (&self.gcp, "gcp"), (&self.azure, "azure")] {
            if !c.tags.is_empty() || !c.labels.is_empty() {
                let key = if c.tags.is_empty() { "labels" } else { "tags" };
                return Err(Invalid::new(
                    format!("{name}.{key}"),
                    "instance tags and labels need the cloud's API and are not supported yet",
                ));
            }
        }
        Ok(())
    }

    fn build(&self, _ctx: &crate::pipeline::component::ProcessorContext) -> Result<Box<dyn Processor>, String> {
        Ok(Box::new(ResourceDetection { attributes: detected(self)?, override_: self.override_ }))
    }
}

#[cfg(test)]
mod tests;
