//! The `k8sattributes` processor's configuration, with the collector's keys and defaults.

use crate::config::{Invalid, deserialize_duration};
use crate::kubernetes::AuthType;
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sAttributesConfig {
    pub auth_type: AuthType,
    pub kube_config_path: Option<String>,
    pub context: Option<String>,
    /// Only add `k8s.pod.ip` (the connection's address); no API calls.
    pub passthrough: bool,
    pub filter: Filter,
    pub extract: Extract,
    pub pod_association: Vec<Association>,
    pub exclude: Exclude,
    /// The start waits for the first lists (up to `wait_for_metadata_timeout`) and fails
    /// without them.
    pub wait_for_metadata: bool,
    #[serde(deserialize_with = "deserialize_duration")]
    pub wait_for_metadata_timeout: Duration,
}

impl Default for K8sAttributesConfig {
    fn default() -> Self {
        K8sAttributesConfig {
            auth_type: AuthType::ServiceAccount,
            kube_config_path: None,
            context: None,
            passthrough: false,
            filter: Filter::default(),
            extract: Extract::default(),
            pod_association: Vec::new(),
            exclude: Exclude::default(),
            wait_for_metadata: false,
            wait_for_metadata_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    pub node: String,
    pub node_from_env_var: String,
    pub namespace: String,
    pub fields: Vec<FieldFilter>,
    pub labels: Vec<FieldFilter>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct FieldFilter {
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub op: FilterOp,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum FilterOp {
    #[default]
    Equals,
    NotEquals,
    Exists,
    DoesNotExist,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Extract {
    pub metadata: Vec<String>,
    pub labels: Vec<FieldExtract>,
    pub annotations: Vec<FieldExtract>,
    /// Pod annotations `resource.opentelemetry.io/<key>` become the attribute `<key>`.
    pub otel_annotations: bool,
    /// `k8s.deployment.name` from the ReplicaSet's name (its pod-template hash cut off)
    /// instead of watching ReplicaSets.
    pub deployment_name_from_replicaset: bool,
}

/// The collector's default `extract.metadata`.
pub const DEFAULT_METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.start_time",
    "k8s.deployment.name",
    "k8s.node.name",
];

/// Every `extract.metadata` key switchyard gives.
pub const METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.hostname",
    "k8s.pod.ip",
    "k8s.pod.start_time",
    "k8s.pod.uid",
    "k8s.replicaset.uid",
    "k8s.replicaset.name",
    "k8s.deployment.uid",
    "k8s.deployment.name",
    "k8s.daemonset.uid",
    "k8s.daemonset.name",
    "k8s.statefulset.uid",
    "k8s.statefulset.name",
    "k8s.cronjob.name",
    "k8s.job.uid",
    "k8s.job.name",
    "k8s.node.name",
    "k8s.node.uid",
    "k8s.cluster.uid",
    "k8s.container.name",
    "container.id",
    "container.image.name",
    "container.image.tag",
    "container.image.repo_digests",
];

impl Default for Extract {
    fn default() -> Self {
        Extract {
            metadata: DEFAULT_METADATA.iter().map(|s| s.to_string()).collect(),
            labels: Vec::new(),
            annotations: Vec::new(),
            otel_annotations: false,
            deployment_name_from_replicaset: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldExtract {
    #[serde(default)]
    pub tag_name: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub key_regex: String,
    #[serde(default)]
    pub from: From,
}

/// Which object a label or annotation is taken from.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum From {
    #[default]
    Pod,
    Namespace,
    Node,
}

impl From {
    pub fn name(self) -> &'static str {
        match self {
            From::Pod => "pod",
            From::Namespace => "namespace",
            From::Node => "node",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Association {
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub from: SourceFrom,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum SourceFrom {
    Connection,
    ResourceAttribute,
}

/// The resource attributes an association can match pods by.
pub const ASSOCIATION_ATTRIBUTES: &[&str] = &[
    "k8s.pod.ip",
    "k8s.pod.uid",
    "k8s.pod.name",
    "k8s.namespace.name",
    "k8s.pod.hostname",
    "container.id",
    "host.name",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Exclude {
    pub pods: Vec<ExcludePod>,
}

impl Default for Exclude {
    fn default() -> Self {
        Exclude {
            pods: vec![ExcludePod { name: "jaeger-agent".into() }, ExcludePod { name: "jaeger-collector".into() }],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludePod {
    /// A regular expression the whole pod name must match.
    pub name: String,
}

impl K8sAttributesConfig {
    pub fn check(&self) -> Result<(), Invalid> {
        for (i, m) in self.extract.metadata.iter().enumerate() {
            if !METADATA.contains(&m.as_str()) {
                let hint = match m.as_str() {
                    "service.name" | "service.namespace" | "service.version" | "service.instance.id" => {
                        " (the service.* attributes are not derived yet; use otel_annotations or a label rule)"
                            .to_string()
                    }
                    "k8s.cronjob.uid" => " (needs a Job watch, not done yet; k8s.cronjob.name is given)".to_string(),
                    _ => match crate::config::nearest(m, METADATA.iter().copied()) {
                        Some(n) => format!(" (did you mean {n}?)"),
                        None => String::new(),
                    },
                };
                return Err(Invalid::new(format!("extract.metadata.{i}"), format!("unknown metadata \"{m}\"{hint}")));
            }
        }
        for (list, name) in [(&self.extract.labels, "labels"), (&self.extract.annotations, "annotations")] {
            for (i, f) in list.iter().enumerate() {
                let key = format!("extract.{name}.{i}");
                match (f.key.is_empty(), f.key_regex.is_empty()) {
                    (true, true) => return Err(Invalid::new(key, "give key or key_regex")),
                    (false, false) => return Err(Invalid::new(key, "key and key_regex exclude each other")),
                    _ => {}
                }
                if !f.key_regex.is_empty() {
                    regex::Regex::new(&format!("^(?:{})$", f.key_regex)).map_err(|e| {
                        Invalid::new(format!("{key}.key_regex"), format!("not a regular expression: {e}"))
                    })?;
                }
            }
        }
        for (i, a) in self.pod_association.iter().enumerate() {
            if a.sources.is_empty() || a.sources.len() > 4 {
                return Err(Invalid::new(format!("pod_association.{i}.sources"), "give one to four sources"));
            }
            for (j, s) in a.sources.iter().enumerate() {
                let key = format!("pod_association.{i}.sources.{j}");
                if s.from == SourceFrom::ResourceAttribute && !ASSOCIATION_ATTRIBUTES.contains(&s.name.as_str()) {
                    return Err(Invalid::new(
                        format!("{key}.name"),
                        format!(
                            "\"{}\" is not an attribute pods can be matched by (one of: {})",
                            s.name,
                            ASSOCIATION_ATTRIBUTES.join(", ")
                        ),
                    ));
                }
            }
        }
        for (i, p) in self.exclude.pods.iter().enumerate() {
            regex::Regex::new(&format!("^(?:{})$", p.name)).map_err(|e| {
                Invalid::new(format!("exclude.pods.{i}.name"), format!("not a regular expression: {e}"))
            })?;
        }
        for (list, name) in [(&self.filter.fields, "fields"), (&self.filter.labels, "labels")] {
            for (i, f) in list.iter().enumerate() {
                if f.key.is_empty() {
                    return Err(Invalid::new(format!("filter.{name}.{i}.key"), "must not be empty"));
                }
                if name == "fields" && matches!(f.op, FilterOp::Exists | FilterOp::DoesNotExist) {
                    return Err(Invalid::new(
                        format!("filter.fields.{i}.op"),
                        "field selectors take equals or not-equals",
                    ));
                }
            }
        }
        if self.wait_for_metadata && self.wait_for_metadata_timeout.is_zero() {
            return Err(Invalid::new("wait_for_metadata_timeout", "must be greater than 0, such as 10s"));
        }
        if self.auth_type != AuthType::KubeConfig && (self.kube_config_path.is_some() || self.context.is_some()) {
            let key = if self.context.is_some() { "context" } else { "kube_config_path" };
            return Err(Invalid::new(key, "only used with auth_type: kubeConfig"));
        }
        Ok(())
    }

    /// The node the pods are filtered by, from `filter.node` or the variable it names.
    pub fn node(&self) -> Result<Option<String>, String> {
        if !self.filter.node_from_env_var.is_empty() {
            return match std::env::var(&self.filter.node_from_env_var) {
                Ok(v) if !v.is_empty() => Ok(Some(v)),
                _ => Err(format!(
                    "filter.node_from_env_var: the variable {} is not set (give it spec.nodeName through the downward API)",
                    self.filter.node_from_env_var
                )),
            };
        }
        Ok((!self.filter.node.is_empty()).then(|| self.filter.node.clone()))
    }

    /// The association rules in force. Without any, the collector's: the `k8s.pod.ip` and
    /// `ip` attributes, the connection's address, then `host.name` when it is an address.
    pub fn associations(&self) -> Vec<Vec<Source>> {
        if self.pod_association.is_empty() {
            let attribute = |name: &str| vec![Source { from: SourceFrom::ResourceAttribute, name: name.into() }];
            return vec![
                attribute("k8s.pod.ip"),
                attribute("ip"),
                vec![Source { from: SourceFrom::Connection, name: String::new() }],
                attribute("host.name"),
            ];
        }
        self.pod_association.iter().map(|a| a.sources.clone()).collect()
    }
}
