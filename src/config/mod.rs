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

/// As `parse_yaml`, with values taken as written (no `${…}` expansion): for files that are not
/// switchyard's, whose values may hold `$` (a kubeconfig's password).
pub fn parse_yaml_literal<T: serde::de::DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    from_node(&yaml::parse_literal(file, text)?, "")
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
    let merged = merged.unwrap_or_else(|| Node::null(Loc::start("<none>")));
    // Only values still in force: one a later file overrides is no longer a concern.
    let mut live = Vec::new();
    scalar_locations(&merged, &mut live);
    let notices = notices.into_iter().filter(|(loc, _)| live.contains(&loc)).map(|(_, n)| n).collect();
    Ok((merged, notices))
}

/// Where each scalar of `node` was written.
fn scalar_locations<'a>(node: &'a Node, out: &mut Vec<&'a Loc>) {
    match &node.kind {
        yaml::NodeKind::Scalar { .. } => out.push(&node.loc),
        yaml::NodeKind::Seq(items) => items.iter().for_each(|n| scalar_locations(n, out)),
        yaml::NodeKind::Map(entries) => entries.iter().for_each(|(_, n)| scalar_locations(n, out)),
        yaml::NodeKind::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_variable_is_noted_only_where_its_value_stays_in_force() {
        let base = "exporters:\n  otlp:\n    headers: {key: \"${env:SWITCHYARD_TEST_SURELY_UNSET_A}\"}\n    endpoint: \"${env:SWITCHYARD_TEST_SURELY_UNSET_B}\"\n";
        let overlay = "exporters:\n  otlp:\n    headers: {key: literal}\n";
        let sources = |texts: &[&str]| -> Vec<(String, String)> {
            texts.iter().enumerate().map(|(i, t)| (format!("f{i}.yaml"), t.to_string())).collect()
        };
        let (_, alone) = read_sources_noting(&sources(&[base])).unwrap();
        assert_eq!(alone.len(), 2, "{alone:?}");
        let (_, merged) = read_sources_noting(&sources(&[base, overlay])).unwrap();
        assert_eq!(merged.len(), 1, "{merged:?}");
        assert!(merged[0].starts_with("f0.yaml:4:") && merged[0].contains("UNSET_B"), "{merged:?}");
    }
}
