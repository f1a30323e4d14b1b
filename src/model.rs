//! The configuration model: components by id, decoded through the registry, the service section
//! and its pipelines, and the checks that tie them together (every name defined, every component
//! able to carry its signal); and loading it from files. It sits above every component (the
//! registry lists them all); the machinery it reads with is `crate::config`.

use crate::components;
use crate::config::{
    ComponentId, ComponentKind, ConfigError, Loc, Node, NodeKind, PipelineId, from_node, nearest, unknown_key_message,
};
use crate::pipeline::component::{
    ConnectorSettings, ExporterSettings, ExtensionSettings, ProcessorSettings, ReceiverSettings,
};
use crate::registry::{Registration, Settings};
use crate::signal::Signal;
use crate::telemetry::settings::{MetricsLevel, TelemetryConfig};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// One pipeline: its receivers, processors in order, and exporters; the connectors it takes
/// data from (listed among its receivers) and hands data to (listed among its exporters).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub receivers: Vec<ComponentId>,
    pub processors: Vec<ComponentId>,
    pub exporters: Vec<ComponentId>,
    pub from_connectors: Vec<ComponentId>,
    pub to_connectors: Vec<ComponentId>,
}

/// One component the configuration defines: its checked settings, its type, and the tree they
/// were decoded from, which tells a reload whether the component changed.
pub struct Defined<S: ?Sized> {
    pub settings: Arc<S>,
    pub registration: &'static Registration,
    source: Node,
}

impl<S: ?Sized> Clone for Defined<S> {
    fn clone(&self) -> Self {
        Defined { settings: self.settings.clone(), registration: self.registration, source: self.source.clone() }
    }
}

impl<S: ?Sized> Defined<S> {
    /// The signals its type carries.
    pub fn signals(&self) -> &'static [Signal] {
        self.registration.signals
    }

    /// Whether `other` is the same type with the same settings, wherever they were written.
    pub fn same_as(&self, other: &Defined<S>) -> bool {
        std::ptr::eq(self.registration, other.registration) && self.source.same(&other.source)
    }
}

impl<S: ?Sized + fmt::Debug> fmt::Debug for Defined<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.registration.name, self.settings)
    }
}

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// What is suspicious but not invalid: values naming an unset variable without a default.
    pub warnings: Vec<String>,
    pub receivers: BTreeMap<ComponentId, Defined<dyn ReceiverSettings>>,
    pub processors: BTreeMap<ComponentId, Defined<dyn ProcessorSettings>>,
    pub exporters: BTreeMap<ComponentId, Defined<dyn ExporterSettings>>,
    pub extensions: BTreeMap<ComponentId, Defined<dyn ExtensionSettings>>,
    pub connectors: BTreeMap<ComponentId, Defined<dyn ConnectorSettings>>,
    pub pipelines: BTreeMap<PipelineId, PipelineConfig>,
    pub service_extensions: Vec<ComponentId>,
    pub telemetry: TelemetryConfig,
    pub shutdown_timeout: Duration,
}

const TOP_LEVEL: &[&str] = &["receivers", "processors", "exporters", "extensions", "connectors", "service"];
const SERVICE_KEYS: &[&str] = &["pipelines", "extensions", "telemetry", "shutdown_timeout"];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];

fn map_entries<'a>(node: &'a Node, path: &str) -> Result<&'a [(crate::config::Key, Node)], ConfigError> {
    match &node.kind {
        NodeKind::Map(e) => Ok(e),
        NodeKind::Null => Ok(&[]),
        _ => Err(ConfigError::new(&node.loc, path, format!("expected a mapping, found {}", node.describe()))),
    }
}

fn check_keys(node: &Node, path: &str, known: &[&str]) -> Result<(), ConfigError> {
    for (k, _) in map_entries(node, path)? {
        if !known.contains(&k.name.as_str()) {
            let p = if path.is_empty() { k.name.clone() } else { format!("{path}.{}", k.name) };
            return Err(ConfigError::new(&k.loc, p, unknown_key_message(&k.name, known)));
        }
    }
    Ok(())
}

/// Decodes one `receivers:`/`exporters:`/… section through the registry; `pick` takes the
/// settings of that section's kind out of what the registration decoded.
fn section<S: ?Sized>(
    root: &Node,
    kind: ComponentKind,
    pick: fn(Settings) -> Option<Arc<S>>,
) -> Result<BTreeMap<ComponentId, Defined<S>>, ConfigError> {
    let mut out = BTreeMap::new();
    let Some(node) = root.get(kind.section()) else {
        return Ok(out);
    };
    for (k, v) in map_entries(node, kind.section())? {
        let path = format!("{}.{}", kind.section(), k.name);
        let id = ComponentId::parse(&k.name).map_err(|m| ConfigError::new(&k.loc, &path, m))?;
        match components::find(kind, &id.type_name) {
            Some(registration) => {
                let settings = (registration.decode)(v, &path)?;
                let settings = pick(settings).expect("a registration decodes settings of its own kind");
                out.insert(id, Defined { settings, registration, source: v.clone() });
            }
            None => {
                let known = components::type_names(kind);
                let mut msg = format!("unknown {} type \"{}\"", kind.singular(), id.type_name);
                if let Some(s) = nearest(&id.type_name, known.iter().copied()) {
                    msg.push_str(&format!("; did you mean \"{s}\"?"));
                }
                if known.is_empty() {
                    msg.push_str(&format!(" (switchyard has no {} types yet)", kind.singular()));
                } else {
                    msg.push_str(&format!(" (known {} types: {})", kind.singular(), known.join(", ")));
                }
                return Err(ConfigError::new(&k.loc, path, msg));
            }
        }
    }
    Ok(out)
}

impl Config {
    /// Builds and checks the model from a merged tree.
    pub fn from_node(root: &Node) -> Result<Config, ConfigError> {
        check_keys(root, "", TOP_LEVEL)?;
        let receivers = section(root, ComponentKind::Receiver, |s| match s {
            Settings::Receiver(r) => Some(r),
            _ => None,
        })?;
        let processors = section(root, ComponentKind::Processor, |s| match s {
            Settings::Processor(p) => Some(p),
            _ => None,
        })?;
        let exporters = section(root, ComponentKind::Exporter, |s| match s {
            Settings::Exporter(e) => Some(e),
            _ => None,
        })?;
        let extensions = section(root, ComponentKind::Extension, |s| match s {
            Settings::Extension(e) => Some(e),
            _ => None,
        })?;
        let connectors = section(root, ComponentKind::Connector, |s| match s {
            Settings::Connector(c) => Some(c),
            _ => None,
        })?;

        let service = root
            .get("service")
            .ok_or_else(|| ConfigError::new(&root.loc, "service", "missing required key \"service\""))?;
        check_keys(service, "service", SERVICE_KEYS)?;
        let telemetry: TelemetryConfig = match service.get("telemetry") {
            Some(n) => from_node(n, "service.telemetry")?,
            None => TelemetryConfig::default(),
        };
        if telemetry.metrics.level != MetricsLevel::None {
            let metrics_node = service.get("telemetry").and_then(|t| t.get("metrics"));
            if let (Some(address), Some(n)) = (&telemetry.metrics.address, metrics_node.and_then(|m| m.get("address")))
            {
                crate::net::check_endpoint(address)
                    .map_err(|m| ConfigError::new(&n.loc, "service.telemetry.metrics.address", m))?;
            }
            crate::telemetry::readers::check(&telemetry.metrics).map_err(|(key, m)| {
                let at = metrics_node.map_or(service, |n| locate(n, &key));
                ConfigError::new(&at.loc, format!("service.telemetry.metrics.{key}"), m)
            })?;
        }
        let shutdown_timeout = match service.get("shutdown_timeout") {
            Some(n) => {
                let text = n.as_str().unwrap_or_default();
                crate::config::parse_duration(text)
                    .map_err(|m| ConfigError::new(&n.loc, "service.shutdown_timeout", m))?
            }
            None => Duration::from_secs(10),
        };

        let mut service_extensions = Vec::new();
        if let Some(list) = service.get("extensions") {
            for (id, loc) in id_list(list, "service.extensions")? {
                if !extensions.contains_key(&id) {
                    return Err(undefined(
                        &loc,
                        "service.extensions",
                        ComponentKind::Extension,
                        &id,
                        extensions.keys(),
                    ));
                }
                service_extensions.push(id);
            }
        }

        let pipelines_node = service.get("pipelines").ok_or_else(|| {
            ConfigError::new(
                &service.loc,
                "service.pipelines",
                "missing required key \"pipelines\": define at least one pipeline",
            )
        })?;
        let mut pipelines = BTreeMap::new();
        for (k, v) in map_entries(pipelines_node, "service.pipelines")? {
            let path = format!("service.pipelines.{}", k.name);
            let (sig, name) = match k.name.split_once('/') {
                Some((s, n)) => (s, Some(n.to_string())),
                None => (k.name.as_str(), None),
            };
            let signal = Signal::parse(sig).ok_or_else(|| {
                ConfigError::new(
                    &k.loc,
                    &path,
                    format!("unknown signal \"{sig}\" in pipeline id (expected traces, metrics or logs)"),
                )
            })?;
            check_keys(v, &path, PIPELINE_KEYS)?;
            let mut lists: [Vec<ComponentId>; 3] = Default::default();
            let (mut from_connectors, mut to_connectors) = (Vec::new(), Vec::new());
            for (i, (key, kind)) in [
                ("receivers", ComponentKind::Receiver),
                ("processors", ComponentKind::Processor),
                ("exporters", ComponentKind::Exporter),
            ]
            .into_iter()
            .enumerate()
            {
                let lpath = format!("{path}.{key}");
                let entries = match v.get(key) {
                    Some(n) => id_list(n, &lpath)?,
                    None => Vec::new(),
                };
                if entries.is_empty() && kind != ComponentKind::Processor {
                    return Err(ConfigError::new(
                        &k.loc,
                        &lpath,
                        format!("a pipeline needs at least one {}", kind.singular()),
                    ));
                }
                for (id, loc) in entries {
                    // A connector, listed as an exporter or a receiver.
                    let own = match kind {
                        ComponentKind::Receiver => receivers.contains_key(&id),
                        ComponentKind::Exporter => exporters.contains_key(&id),
                        _ => true,
                    };
                    if let Some(c) = connectors.get(&id).filter(|_| kind != ComponentKind::Processor) {
                        if own {
                            return Err(ConfigError::new(
                                &loc,
                                &lpath,
                                format!("\"{id}\" is both a {} and a connector: rename one", kind.singular()),
                            ));
                        }
                        let (side, fits) = match kind {
                            ComponentKind::Receiver => ("receiver", c.registration.pairs.iter().any(|p| p.1 == signal)),
                            _ => ("exporter", c.registration.pairs.iter().any(|p| p.0 == signal)),
                        };
                        if !fits {
                            return Err(ConfigError::new(
                                &loc,
                                &lpath,
                                format!(
                                    "connector \"{id}\" cannot be the {side} of a {signal} pipeline (it joins: {})",
                                    joins(c.registration)
                                ),
                            ));
                        }
                        let list =
                            if kind == ComponentKind::Receiver { &mut from_connectors } else { &mut to_connectors };
                        if list.contains(&id) {
                            return Err(ConfigError::new(&loc, &lpath, format!("\"{id}\" is listed twice")));
                        }
                        list.push(id);
                        continue;
                    }
                    let supported = match kind {
                        ComponentKind::Receiver => receivers.get(&id).map(Defined::signals),
                        ComponentKind::Processor => processors.get(&id).map(Defined::signals),
                        _ => exporters.get(&id).map(Defined::signals),
                    };
                    let Some(supported) = supported else {
                        let defined: Vec<&ComponentId> = match kind {
                            ComponentKind::Receiver => receivers.keys().chain(connectors.keys()).collect(),
                            ComponentKind::Processor => processors.keys().collect(),
                            _ => exporters.keys().chain(connectors.keys()).collect(),
                        };
                        return Err(undefined(&loc, &lpath, kind, &id, defined.into_iter()));
                    };
                    if !supported.contains(&signal) {
                        return Err(ConfigError::new(
                            &loc,
                            &lpath,
                            format!(
                                "{} \"{id}\" does not support {signal} (it supports: {})",
                                kind.singular(),
                                supported.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    if lists[i].contains(&id) {
                        return Err(ConfigError::new(&loc, &lpath, format!("\"{id}\" is listed twice")));
                    }
                    lists[i].push(id);
                }
            }
            let [receivers_l, processors_l, exporters_l] = lists;
            pipelines.insert(
                PipelineId { signal, name },
                PipelineConfig {
                    receivers: receivers_l,
                    processors: processors_l,
                    exporters: exporters_l,
                    from_connectors,
                    to_connectors,
                },
            );
        }
        if pipelines.is_empty() {
            return Err(ConfigError::new(&pipelines_node.loc, "service.pipelines", "define at least one pipeline"));
        }
        check_connectors(&connectors, &pipelines)?;
        // A `storage` key names a file_storage extension that service.extensions lists.
        let storage_refs = receivers
            .iter()
            .map(|(id, d)| {
                (ComponentKind::Receiver, id, &d.source, d.settings.storage().map(str::to_string), "storage")
            })
            .chain(exporters.iter().map(|(id, d)| {
                let key = match id.type_name.as_str() {
                    "prometheusremotewrite" => "remote_write_queue.storage",
                    _ => "sending_queue.storage",
                };
                (ComponentKind::Exporter, id, &d.source, d.settings.queue().storage, key)
            }));
        for (kind, id, source, storage, key) in storage_refs {
            let Some(name) = storage else { continue };
            let listed = service_extensions.iter().find(|e| e.to_string() == name);
            let problem = match listed {
                None => format!("no extension {name} is defined and listed in service.extensions"),
                Some(e) if e.type_name != "file_storage" => format!("extension {name} is not a file_storage extension"),
                Some(_) => continue,
            };
            let node = locate(source, key);
            return Err(ConfigError::new(&node.loc, format!("{}.{id}.{key}", kind.section()), problem));
        }
        // An `auth.authenticator` names a server authenticator extension that service.extensions lists.
        for (id, d) in &receivers {
            for (key, name) in d.settings.authenticators() {
                let listed = service_extensions.iter().find(|e| e.to_string() == name);
                let problem = match listed {
                    None => format!("no extension {name} is defined and listed in service.extensions"),
                    Some(e) if extensions[e].settings.server_authenticator().is_none() => format!(
                        "extension {name} does not authenticate requests (use bearertokenauth, basicauth with htpasswd, or oidc)"
                    ),
                    Some(_) => continue,
                };
                let node = locate(&d.source, &key);
                return Err(ConfigError::new(&node.loc, format!("receivers.{id}.{key}.authenticator"), problem));
            }
        }
        // An exporter's `auth.authenticator` names a client authenticator extension.
        for (id, d) in &exporters {
            let Some(name) = d.settings.authenticator() else { continue };
            let listed = service_extensions.iter().find(|e| e.to_string() == name);
            let client = listed.and_then(|e| extensions[e].settings.client_authenticator());
            let persistent = d.settings.queue().storage.is_some();
            let problem = match (listed, client) {
                (None, _) => format!("no extension {name} is defined and listed in service.extensions"),
                (Some(_), None) => format!(
                    "extension {name} does not authenticate exporters (use bearertokenauth, basicauth with client_auth, oauth2client or headers_setter)"
                ),
                (Some(_), Some(Ok(c))) if persistent && c.reads_context() => format!(
                    "{name} sets headers from the request context, which data read back from a persistent sending queue does not keep: tenants would mix; use a memory queue for this exporter"
                ),
                (Some(_), Some(_)) => continue,
            };
            let node = locate(&d.source, "auth");
            return Err(ConfigError::new(&node.loc, format!("exporters.{id}.auth.authenticator"), problem));
        }
        Ok(Config {
            warnings: Vec::new(),
            receivers,
            processors,
            exporters,
            extensions,
            connectors,
            pipelines,
            service_extensions,
            telemetry,
            shutdown_timeout,
        })
    }
}

/// A connector's signal pairs, for messages: `traces → traces, traces → metrics`.
fn joins(r: &Registration) -> String {
    r.pairs.iter().map(|(a, b)| format!("{a} → {b}")).collect::<Vec<_>>().join(", ")
}

impl Config {
    /// The pipelines that take data from connector `id` when it is fed `signal`, in order.
    pub fn downstream(&self, id: &ComponentId, signal: Signal) -> Vec<&PipelineId> {
        let Some(c) = self.connectors.get(id) else { return Vec::new() };
        self.pipelines
            .iter()
            .filter(|(pid, p)| p.from_connectors.contains(id) && c.registration.joins(signal, pid.signal))
            .map(|(pid, _)| pid)
            .collect()
    }
}

/// Every connector used is used on both sides, each side can meet the other in a signal pair
/// it joins, what it names downstream exists, and no pipeline feeds itself through connectors.
fn check_connectors(
    connectors: &BTreeMap<ComponentId, Defined<dyn ConnectorSettings>>,
    pipelines: &BTreeMap<PipelineId, PipelineConfig>,
) -> Result<(), ConfigError> {
    for (id, c) in connectors {
        let path = format!("connectors.{id}");
        let feeding: Vec<&PipelineId> =
            pipelines.iter().filter(|(_, p)| p.to_connectors.contains(id)).map(|(k, _)| k).collect();
        let fed: Vec<&PipelineId> =
            pipelines.iter().filter(|(_, p)| p.from_connectors.contains(id)).map(|(k, _)| k).collect();
        let problem = |m: String| Err(ConfigError::new(&c.source.loc, &path, m));
        match (feeding.first(), fed.first()) {
            (None, None) => continue,
            (Some(p), None) => {
                return problem(format!(
                    "connector \"{id}\" is an exporter of pipeline \"{p}\" but the receiver of no pipeline: list it among the receivers of the pipeline it should feed"
                ));
            }
            (None, Some(p)) => {
                return problem(format!(
                    "connector \"{id}\" is a receiver of pipeline \"{p}\" but the exporter of no pipeline: list it among the exporters of the pipeline it should take data from"
                ));
            }
            _ => {}
        }
        for p in &feeding {
            if !fed.iter().any(|q| c.registration.joins(p.signal, q.signal)) {
                return problem(format!(
                    "connector \"{id}\" takes {} from pipeline \"{p}\" but feeds no pipeline it can give that to (it joins: {})",
                    p.signal,
                    joins(c.registration)
                ));
            }
        }
        for q in &fed {
            if !feeding.iter().any(|p| c.registration.joins(p.signal, q.signal)) {
                return problem(format!(
                    "connector \"{id}\" feeds pipeline \"{q}\" but takes nothing it can turn into {} (it joins: {})",
                    q.signal,
                    joins(c.registration)
                ));
            }
        }
        let mut by_signal: Vec<(Signal, Vec<String>)> = Vec::new();
        for s in Signal::ALL.into_iter().filter(|s| feeding.iter().any(|p| p.signal == *s)) {
            let ids = fed.iter().filter(|q| c.registration.joins(s, q.signal)).map(|q| q.to_string()).collect();
            by_signal.push((s, ids));
        }
        c.settings.check_downstream(&by_signal).map_err(|crate::config::Invalid { key, message }| {
            ConfigError::new(&locate(&c.source, &key).loc, format!("{path}.{key}"), message)
        })?;
    }
    // A cycle: a pipeline that reaches itself through connectors.
    let next = |pid: &PipelineId| -> Vec<(&ComponentId, &PipelineId)> {
        pipelines[pid]
            .to_connectors
            .iter()
            .flat_map(|c| {
                pipelines
                    .iter()
                    .filter(move |(q, qp)| {
                        qp.from_connectors.contains(c) && connectors[c].registration.joins(pid.signal, q.signal)
                    })
                    .map(move |(q, _)| (c, q))
            })
            .collect()
    };
    for start in pipelines.keys() {
        // Depth-first from `start`, with the path so far.
        let mut stack: Vec<(PipelineId, Vec<String>)> = vec![(start.clone(), vec![start.to_string()])];
        let mut seen: Vec<PipelineId> = Vec::new();
        while let Some((pid, path)) = stack.pop() {
            for (c, q) in next(&pid) {
                let mut longer = path.clone();
                longer.push(c.to_string());
                longer.push(q.to_string());
                if q == start {
                    let d = &connectors[c];
                    return Err(ConfigError::new(
                        &d.source.loc,
                        format!("connectors.{c}"),
                        format!("connectors make a cycle: {}", longer.join(" → ")),
                    ));
                }
                if !seen.contains(q) {
                    seen.push(q.clone());
                    stack.push((q.clone(), longer));
                }
            }
        }
    }
    Ok(())
}

/// The node at `key` under `node` (`readers[1].periodic.interval`), or the deepest one that exists.
fn locate<'a>(node: &'a Node, key: &str) -> &'a Node {
    let mut at = node;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some(next) = at.get(name) else { return at };
        at = next;
        if let (Some(i), NodeKind::Seq(items)) = (index, &at.kind) {
            match items.get(i) {
                Some(item) => at = item,
                None => return at,
            }
        }
    }
    at
}

fn id_list(node: &Node, path: &str) -> Result<Vec<(ComponentId, Loc)>, ConfigError> {
    let items: &[Node] = match &node.kind {
        NodeKind::Seq(items) => items,
        NodeKind::Null => &[],
        _ => {
            return Err(ConfigError::new(
                &node.loc,
                path,
                format!("expected a list of component ids, found {}", node.describe()),
            ));
        }
    };
    items
        .iter()
        .map(|n| {
            let text = n.as_str().ok_or_else(|| ConfigError::new(&n.loc, path, "expected a component id"))?;
            ComponentId::parse(text).map(|id| (id, n.loc.clone())).map_err(|m| ConfigError::new(&n.loc, path, m))
        })
        .collect()
}

fn undefined<'a>(
    loc: &Loc,
    path: &str,
    kind: ComponentKind,
    id: &ComponentId,
    defined: impl Iterator<Item = &'a ComponentId>,
) -> ConfigError {
    let names: Vec<String> = defined.map(|d| d.to_string()).collect();
    let mut msg = format!("{} \"{id}\" is not defined in \"{}\"", kind.singular(), kind.section());
    if let Some(s) = nearest(&id.to_string(), names.iter().map(String::as_str)) {
        msg.push_str(&format!("; did you mean \"{s}\"?"));
    }
    if names.is_empty() {
        msg.push_str(&format!(" (no {} are defined)", kind.section()));
    } else {
        msg.push_str(&format!(" (defined: {})", names.join(", ")));
    }
    ConfigError::new(loc, path, msg)
}

/// The configuration used when `switchyard` is started without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.yaml");

/// Reads, expands and merges the given files (later files override earlier ones), then builds and
/// validates the model.
pub fn load_files(paths: &[std::path::PathBuf]) -> Result<Config, ConfigError> {
    let (node, warnings) = crate::config::read_files_noting(paths)?;
    Config::from_node(&node).map(|c| Config { warnings, ..c })
}

/// Like [`load_files`], for configuration held in memory as `(name, text)` pairs.
pub fn load_sources(sources: &[(String, String)]) -> Result<Config, ConfigError> {
    let (node, warnings) = crate::config::read_sources_noting(sources)?;
    Config::from_node(&node).map(|c| Config { warnings, ..c })
}
