//! The `prometheus` receiver's configuration: `config:` holds Prometheus's own scrape
//! configuration (`global`, `scrape_configs`), with Prometheus's key names and defaults.

use super::relabel::{RelabelConfig, Rule};
use crate::config::deserialize_duration;
use crate::secret::Secret;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReceiverConfig {
    pub config: PrometheusConfig,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    #[serde(deserialize_with = "deserialize_duration")]
    pub scrape_interval: Duration,
    #[serde(deserialize_with = "deserialize_duration")]
    pub scrape_timeout: Duration,
    pub external_labels: BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: Duration::from_secs(60),
            scrape_timeout: Duration::from_secs(10),
            external_labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    pub job_name: String,
    /// Defaults to `global.scrape_interval`.
    #[serde(deserialize_with = "crate::config::deserialize_opt_duration")]
    pub scrape_interval: Option<Duration>,
    /// Defaults to `global.scrape_timeout`, and to the interval when that is shorter.
    #[serde(deserialize_with = "crate::config::deserialize_opt_duration")]
    pub scrape_timeout: Option<Duration>,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub kubernetes_sd_configs: Vec<super::kubernetes_sd::KubernetesSdConfig>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: TlsConfig,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    /// Samples a scrape may have after metric relabeling; more fails the scrape. 0 is no limit.
    pub sample_limit: u64,
    /// The largest uncompressed body taken; a larger one fails the scrape. 0 is no limit.
    #[serde(deserialize_with = "bytes_size")]
    pub body_size_limit: u64,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            kubernetes_sd_configs: Vec::new(),
            basic_auth: None,
            authorization: None,
            bearer_token: None,
            bearer_token_file: None,
            tls_config: TlsConfig::default(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
            sample_limit: 0,
            body_size_limit: 0,
        }
    }
}

/// `100MB`, `1GiB`, `512KB` (powers of 1024, as Prometheus reads them) or a plain byte count.
fn bytes_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

pub fn parse_size(t: &str) -> Result<u64, String> {
    let t = t.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().map_err(|_| format!("invalid size \"{t}\": expected a number such as 10MB"))?;
    let unit = match t[digits..].trim() {
        "" | "B" => 1,
        "KB" | "KiB" | "K" => 1 << 10,
        "MB" | "MiB" | "M" => 1 << 20,
        "GB" | "GiB" | "G" => 1 << 30,
        "TB" | "TiB" | "T" => 1 << 40,
        other => return Err(format!("invalid size unit \"{other}\": use B, KB, MB, GB or TB")),
    };
    n.checked_mul(unit).ok_or_else(|| format!("size \"{t}\" is too large"))
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSdConfig {
    pub files: Vec<PathBuf>,
    #[serde(deserialize_with = "deserialize_duration")]
    pub refresh_interval: Duration,
}

impl Default for FileSdConfig {
    fn default() -> Self {
        FileSdConfig { files: Vec::new(), refresh_interval: Duration::from_secs(300) }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub username: Secret,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: String,
    pub credentials: Option<Secret>,
    pub credentials_file: Option<PathBuf>,
}

impl Default for Authorization {
    fn default() -> Self {
        Authorization { kind: "Bearer".into(), credentials: None, credentials_file: None }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    pub fn client(&self) -> crate::tls::client::TlsClientConfig {
        crate::tls::client::TlsClientConfig {
            insecure: false,
            insecure_skip_verify: self.insecure_skip_verify,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            server_name_override: self.server_name.clone(),
        }
    }
}

impl ScrapeConfig {
    pub fn interval(&self, global: &GlobalConfig) -> Duration {
        self.scrape_interval.unwrap_or(global.scrape_interval)
    }

    pub fn timeout(&self, global: &GlobalConfig) -> Duration {
        self.scrape_timeout.unwrap_or_else(|| global.scrape_timeout.min(self.interval(global)))
    }
}

impl PrometheusReceiverConfig {
    /// Checks what serde cannot: returns the offending key (relative) and the message.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let c = &self.config;
        if c.scrape_configs.is_empty() {
            return Err(("config.scrape_configs".into(), "list at least one scrape configuration".into()));
        }
        let mut jobs = Vec::new();
        for (i, s) in c.scrape_configs.iter().enumerate() {
            let at = |k: &str| format!("config.scrape_configs.{i}.{k}");
            if s.job_name.is_empty() {
                return Err((at("job_name"), "is required".into()));
            }
            if jobs.contains(&&s.job_name) {
                return Err((at("job_name"), format!("\"{}\" is used by an earlier scrape configuration", s.job_name)));
            }
            jobs.push(&s.job_name);
            let (interval, timeout) = (s.interval(&c.global), s.timeout(&c.global));
            if interval.is_zero() {
                return Err((at("scrape_interval"), "must be more than 0".into()));
            }
            if timeout.is_zero() || timeout > interval {
                return Err((
                    at("scrape_timeout"),
                    format!(
                        "must be more than 0 and at most scrape_interval ({})",
                        humantime::format_duration(interval)
                    ),
                ));
            }
            if s.scheme != "http" && s.scheme != "https" {
                return Err((at("scheme"), format!("\"{}\" is not http or https", s.scheme)));
            }
            if !s.metrics_path.starts_with('/') {
                return Err((at("metrics_path"), format!("\"{}\" must start with /", s.metrics_path)));
            }
            let auths = [
                s.basic_auth.is_some(),
                s.authorization.is_some(),
                s.bearer_token.is_some() || s.bearer_token_file.is_some(),
            ];
            if auths.iter().filter(|a| **a).count() > 1 {
                return Err((at("authorization"), "use only one of basic_auth, authorization and bearer_token".into()));
            }
            if let Some(b) = &s.basic_auth
                && b.password.is_some()
                && b.password_file.is_some()
            {
                return Err((at("basic_auth"), "use password or password_file, not both".into()));
            }
            for (key, rules) in
                [("relabel_configs", &s.relabel_configs), ("metric_relabel_configs", &s.metric_relabel_configs)]
            {
                for (j, r) in rules.iter().enumerate() {
                    Rule::new(r.clone()).map_err(|(k, m)| (at(&format!("{key}.{j}.{k}")), m))?;
                }
            }
            for (j, sc) in s.static_configs.iter().enumerate() {
                for t in &sc.targets {
                    if t.contains('@') {
                        return Err((
                            at(&format!("static_configs.{j}.targets")),
                            "a target must be host:port without user info: put credentials in basic_auth".into(),
                        ));
                    }
                    if t.contains("://") || t.contains('/') {
                        return Err((
                            at(&format!("static_configs.{j}.targets")),
                            format!("\"{t}\" must be host:port (the scheme and path are scrape settings)"),
                        ));
                    }
                }
            }
            for (j, k) in s.kubernetes_sd_configs.iter().enumerate() {
                k.validate().map_err(|(key, m)| (at(&format!("kubernetes_sd_configs.{j}.{key}")), m))?;
            }
            if s.tls_config.cert_file.is_some() != s.tls_config.key_file.is_some() {
                return Err((at("tls_config"), "cert_file and key_file go together".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_prometheus_reads_them() {
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("10 parsecs").is_err());
    }
}
