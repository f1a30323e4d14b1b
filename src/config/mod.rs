//! Configuration: loading the collector-format YAML files, expanding variables, merging files,
//! and checking the whole model before anything starts.

mod de;
mod duration;
mod error;
mod expand;
mod model;
mod yaml;

pub use de::from_node;
pub use duration::{deserialize_duration, deserialize_opt_duration, serialize_duration};
pub use error::{ConfigError, Loc};
pub use model::{ComponentId, ComponentKind, Config, Defined, PipelineConfig, PipelineId, TelemetryConfig};

/// The enums inside `service.telemetry`.
pub mod model_types {
    pub use super::model::{LogEncoding, LogLevel, MetricsLevel, MetricsTelemetry};
}
pub use yaml::{Node, NodeKind};

/// Reads a YAML (or JSON) document other than the configuration itself, such as a file of scrape
/// targets, with the same precise error messages.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    from_node(&yaml::parse(file, text)?, "")
}

/// For `#[serde(default, deserialize_with = "crate::config::present")]` on an `Option`: a key
/// that is present switches its section on, even with no settings under it (`grpc:`).
pub fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The configuration used when `switchyard` is started without `--config`.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

/// Reads, expands and merges the given files (later files override earlier ones), then builds and
/// validates the model.
pub fn load_files(paths: &[std::path::PathBuf]) -> Result<Config, ConfigError> {
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(&name, e))?;
        sources.push((name, text));
    }
    load_sources(&sources)
}

/// Like [`load_files`], for configuration held in memory as `(name, text)` pairs.
pub fn load_sources(sources: &[(String, String)]) -> Result<Config, ConfigError> {
    let mut merged: Option<Node> = None;
    for (name, text) in sources {
        let node = yaml::parse(name, text)?;
        merged = Some(match merged {
            None => node,
            Some(base) => yaml::merge(base, node),
        });
    }
    let root = merged.unwrap_or_else(|| Node::null(Loc::start("<none>")));
    Config::from_node(&root)
}
