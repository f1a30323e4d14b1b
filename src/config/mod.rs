//! Reading configuration: the collector-format YAML files as a tree that remembers where each
//! value was written, `${…}` expansion, merging files, decoding settings from the tree with
//! precise errors, and the names a configuration gives things (component and pipeline ids). The
//! model built from it, through the registry, is `crate::model`.

mod de;
mod duration;
mod error;
mod expand;
mod ids;
mod yaml;

pub use de::from_node;
pub use duration::{deserialize_duration, deserialize_opt_duration, serialize_duration};
pub use error::{ConfigError, Invalid, Loc};
pub use error::{nearest, unknown_key_message};
pub use ids::{ComponentId, ComponentKind, PipelineId};
pub use yaml::{Key, Node, NodeKind};

/// A duration as the configuration writes it (`100ms`, `5s`, `1m`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    duration::parse(text)
}

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

/// Reads, expands and merges the given files (later files override earlier ones) into one tree.
pub fn read_files(paths: &[std::path::PathBuf]) -> Result<Node, ConfigError> {
    read_files_noting(paths).map(|(node, _)| node)
}

/// As `read_files`, with the notices of `yaml::parse_noting` (unset variables).
pub fn read_files_noting(paths: &[std::path::PathBuf]) -> Result<(Node, Vec<String>), ConfigError> {
    let mut sources = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::file(&name, e))?;
        sources.push((name, text));
    }
    read_sources_noting(&sources)
}

/// Like [`read_files`], for configuration held in memory as `(name, text)` pairs.
pub fn read_sources(sources: &[(String, String)]) -> Result<Node, ConfigError> {
    read_sources_noting(sources).map(|(node, _)| node)
}

/// As `read_sources`, with the notices of `yaml::parse_noting` (unset variables).
pub fn read_sources_noting(sources: &[(String, String)]) -> Result<(Node, Vec<String>), ConfigError> {
    let mut merged: Option<Node> = None;
    let mut notices = Vec::new();
    for (name, text) in sources {
        let (node, noted) = yaml::parse_noting(name, text)?;
        notices.extend(noted);
        merged = Some(match merged {
            None => node,
            Some(base) => yaml::merge(base, node),
        });
    }
    Ok((merged.unwrap_or_else(|| Node::null(Loc::start("<none>"))), notices))
}
