//! What a component type registers: its name in configuration, its kind, the signals it
//! carries, a description, and how its settings are decoded and checked. Each component's
//! module declares one `Registration`; `crate::components::ALL` lists them.

use crate::config::{ComponentKind, ConfigError, Node, from_node};
use crate::pipeline::component::{
    Checked, ConnectorSettings, ExporterSettings, ExtensionSettings, ProcessorSettings, ReceiverSettings,
};
use crate::signal::Signal;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Decoded, checked settings of one component.
#[derive(Debug, Clone)]
pub enum Settings {
    Receiver(Arc<dyn ReceiverSettings>),
    Processor(Arc<dyn ProcessorSettings>),
    Exporter(Arc<dyn ExporterSettings>),
    Extension(Arc<dyn ExtensionSettings>),
    Connector(Arc<dyn ConnectorSettings>),
}

type Decode = fn(&Node, &str) -> Result<Settings, ConfigError>;

/// One component type.
#[derive(Debug)]
pub struct Registration {
    pub kind: ComponentKind,
    pub name: &'static str,
    /// Other names the type is known by (`otlp_grpc` for `otlp`).
    pub aliases: &'static [&'static str],
    pub signals: &'static [Signal],
    /// For a connector: the (from, to) signal pairs it joins; empty for other kinds.
    pub pairs: &'static [(Signal, Signal)],
    pub description: &'static str,
    pub decode: Decode,
}

/// Every signal, for components that carry all three.
pub const ALL_SIGNALS: &[Signal] = &Signal::ALL;

impl Registration {
    const fn new(
        kind: ComponentKind,
        name: &'static str,
        signals: &'static [Signal],
        description: &'static str,
        decode: Decode,
    ) -> Registration {
        Registration { kind, name, aliases: &[], signals, pairs: &[], description, decode }
    }

    pub const fn receiver<T: ReceiverSettings + DeserializeOwned>(
        name: &'static str,
        signals: &'static [Signal],
        description: &'static str,
    ) -> Registration {
        Registration::new(ComponentKind::Receiver, name, signals, description, decode_receiver::<T>)
    }

    pub const fn processor<T: ProcessorSettings + DeserializeOwned>(
        name: &'static str,
        signals: &'static [Signal],
        description: &'static str,
    ) -> Registration {
        Registration::new(ComponentKind::Processor, name, signals, description, decode_processor::<T>)
    }

    pub const fn exporter<T: ExporterSettings + DeserializeOwned>(
        name: &'static str,
        signals: &'static [Signal],
        description: &'static str,
    ) -> Registration {
        Registration::new(ComponentKind::Exporter, name, signals, description, decode_exporter::<T>)
    }

    pub const fn extension<T: ExtensionSettings + DeserializeOwned>(
        name: &'static str,
        description: &'static str,
    ) -> Registration {
        Registration::new(ComponentKind::Extension, name, &[], description, decode_extension::<T>)
    }

    /// A connector joining pipelines of the signal pairs `pairs` (from, to); `signals` lists
    /// every signal it takes or gives, for `switchyard components`.
    pub const fn connector<T: ConnectorSettings + DeserializeOwned>(
        name: &'static str,
        signals: &'static [Signal],
        pairs: &'static [(Signal, Signal)],
        description: &'static str,
    ) -> Registration {
        Registration {
            kind: ComponentKind::Connector,
            name,
            aliases: &[],
            signals,
            pairs,
            description,
            decode: decode_connector::<T>,
        }
    }

    /// Whether it joins a pipeline of `from` to one of `to`.
    pub fn joins(&self, from: Signal, to: Signal) -> bool {
        self.pairs.contains(&(from, to))
    }

    /// The same type, also known by `aliases`.
    pub const fn aliases(self, aliases: &'static [&'static str]) -> Registration {
        Registration { aliases, ..self }
    }

    /// Whether `type_name` names this type.
    pub fn is(&self, type_name: &str) -> bool {
        self.name == type_name || self.aliases.contains(&type_name)
    }
}

fn decode_receiver<T: ReceiverSettings + DeserializeOwned>(node: &Node, path: &str) -> Result<Settings, ConfigError> {
    Ok(Settings::Receiver(Arc::new(typed::<T>(node, path, T::validate)?)))
}

fn decode_processor<T: ProcessorSettings + DeserializeOwned>(node: &Node, path: &str) -> Result<Settings, ConfigError> {
    Ok(Settings::Processor(Arc::new(typed::<T>(node, path, T::validate)?)))
}

fn decode_exporter<T: ExporterSettings + DeserializeOwned>(node: &Node, path: &str) -> Result<Settings, ConfigError> {
    Ok(Settings::Exporter(Arc::new(typed::<T>(node, path, T::validate)?)))
}

fn decode_connector<T: ConnectorSettings + DeserializeOwned>(node: &Node, path: &str) -> Result<Settings, ConfigError> {
    Ok(Settings::Connector(Arc::new(typed::<T>(node, path, T::validate)?)))
}

fn decode_extension<T: ExtensionSettings + DeserializeOwned>(node: &Node, path: &str) -> Result<Settings, ConfigError> {
    Ok(Settings::Extension(Arc::new(typed::<T>(node, path, T::validate)?)))
}

/// Decodes typed settings and runs their own checks, pinning their errors to the key they name.
fn typed<T: DeserializeOwned>(node: &Node, path: &str, validate: impl Fn(&T) -> Checked) -> Result<T, ConfigError> {
    let cfg: T = from_node(node, path)?;
    validate(&cfg).map_err(|crate::config::Invalid { key, message }| {
        let mut at = node;
        for part in key.split('.') {
            match at.get(part) {
                Some(n) => at = n,
                None => break,
            }
        }
        ConfigError::new(&at.loc, format!("{path}.{key}"), message)
    })?;
    Ok(cfg)
}
