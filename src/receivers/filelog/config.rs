//! The `filelog` receiver's configuration, with the collector's keys and defaults.

use super::operators::{OperatorConfig, Pipeline};
use crate::config::deserialize_duration;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Files present at start are read from their end; files that appear later from the start.
    #[default]
    End,
    Beginning,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    /// UTF-8 without replacing invalid bytes: they still become U+FFFD in the string body.
    #[serde(rename = "utf-8-raw")]
    Utf8Raw,
    #[serde(rename = "ascii")]
    Ascii,
    /// The bytes as they are: the body is a bytes value.
    #[serde(rename = "nop")]
    Nop,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Multiline {
    pub line_start_pattern: Option<String>,
    pub line_end_pattern: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContainerFormat {
    #[default]
    Auto,
    Docker,
    Crio,
    Containerd,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileLogConfig {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub start_at: StartAt,
    #[serde(deserialize_with = "deserialize_duration")]
    pub poll_interval: Duration,
    #[serde(deserialize_with = "byte_size")]
    pub fingerprint_size: u64,
    #[serde(deserialize_with = "byte_size")]
    pub max_log_size: u64,
    pub max_concurrent_files: usize,
    pub encoding: Encoding,
    pub include_file_name: bool,
    pub include_file_path: bool,
    pub multiline: Option<Multiline>,
    #[serde(deserialize_with = "deserialize_duration")]
    pub force_flush_period: Duration,
    /// The id of a `file_storage` extension that keeps the read offsets across restarts.
    pub storage: Option<String>,
    /// The operators run on each entry, in order (see `operators`).
    pub operators: Vec<OperatorConfig>,
}

impl Default for FileLogConfig {
    fn default() -> Self {
        FileLogConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: StartAt::End,
            poll_interval: Duration::from_millis(200),
            fingerprint_size: 1000,
            max_log_size: 1 << 20,
            max_concurrent_files: 1024,
            encoding: Encoding::Utf8,
            include_file_name: true,
            include_file_path: false,
            multiline: None,
            force_flush_period: Duration::from_millis(500),
            storage: None,
            operators: Vec::new(),
        }
    }
}

impl FileLogConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.include.is_empty() {
            return Err(("include".into(), "list at least one glob, such as /var/log/pods/*/*/*.log".into()));
        }
        for (key, list) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, p) in list.iter().enumerate() {
                glob::Pattern::new(p).map_err(|e| (format!("{key}.{i}"), format!("\"{p}\" is not a glob: {e}")))?;
            }
        }
        if self.poll_interval.is_zero() {
            return Err(("poll_interval".into(), "must be more than 0".into()));
        }
        if !(16..=1 << 20).contains(&self.fingerprint_size) {
            return Err(("fingerprint_size".into(), "must be between 16B and 1MiB".into()));
        }
        if !(64..=1 << 30).contains(&self.max_log_size) {
            return Err(("max_log_size".into(), "must be between 64B and 1GiB".into()));
        }
        if self.max_concurrent_files < 1 {
            return Err(("max_concurrent_files".into(), "must be at least 1".into()));
        }
        if let Some(m) = &self.multiline {
            match (&m.line_start_pattern, &m.line_end_pattern) {
                (Some(_), Some(_)) | (None, None) => {
                    return Err((
                        "multiline".into(),
                        "set exactly one of line_start_pattern and line_end_pattern".into(),
                    ));
                }
                (Some(p), None) | (None, Some(p)) => {
                    let key = if m.line_start_pattern.is_some() { "line_start_pattern" } else { "line_end_pattern" };
                    regex::bytes::Regex::new(p)
                        .map_err(|e| (format!("multiline.{key}"), format!("invalid regex: {e}")))?;
                }
            }
        }
        Pipeline::build(&self.operators)?;
        Ok(())
    }

    pub fn container(&self) -> Option<(ContainerFormat, bool)> {
        match self.operators.first() {
            Some(OperatorConfig::Container(c)) => Some((c.format, c.add_metadata_from_filepath)),
            _ => None,
        }
    }
}

/// `1000`, `1kb` (1000), `1KiB` (1024), `16MiB`: the collector's byte sizes, case-insensitive.
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(t) => parse_byte_size(&t).map_err(serde::de::Error::custom),
    }
}

pub fn parse_byte_size(t: &str) -> Result<u64, String> {
    let lower = t.trim().to_ascii_lowercase();
    let digits = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let n: u64 =
        lower[..digits].parse().map_err(|_| format!("invalid size \"{t}\": expected a number such as 1MiB"))?;
    let unit: u64 = match lower[digits..].trim() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(format!("invalid size unit \"{other}\": use B, KB, KiB, MB, MiB, GB or GiB")),
    };
    n.checked_mul(unit).ok_or_else(|| format!("size \"{t}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_read_as_the_collector_reads_them() {
        assert_eq!(parse_byte_size("1kb"), Ok(1000));
        assert_eq!(parse_byte_size("1KiB"), Ok(1024));
        assert_eq!(parse_byte_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_byte_size("512"), Ok(512));
        assert!(parse_byte_size("1 parsec").is_err());
    }
}
