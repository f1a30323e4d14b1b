//! Scrape targets: from `static_configs` and `file_sd_configs` (JSON or YAML files of target
//! groups, re-read when they change) through `relabel_configs` to what is scraped, as
//! Prometheus builds them: meta labels, `job`, `instance` defaulting to the address, a default
//! port for the scheme, `__param_*` overriding `params`.

use super::config::{GlobalConfig, ScrapeConfig, StaticConfig};
use super::relabel::{self, Rule};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

type Labels = Vec<(String, String)>;

/// One target to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub url: String,
    pub scheme: String,
    /// The labels every sample gets (`job`, `instance`, the group's labels), without `__` ones.
    pub labels: Labels,
    pub interval: Duration,
    pub timeout: Duration,
}

fn set_default(labels: &mut Labels, name: &str, value: &str) {
    if !labels.iter().any(|(n, _)| n == name) {
        labels.push((name.to_string(), value.to_string()));
    }
}

fn get<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

/// The targets of `groups` under `cfg`; targets the relabeling drops are left out, and ones it
/// leaves without an address are reported.
pub fn resolve(cfg: &ScrapeConfig, global: &GlobalConfig, rules: &[Rule], groups: &[StaticConfig]) -> Vec<Target> {
    let interval = cfg.interval(global);
    let timeout = cfg.timeout(global);
    let mut out = Vec::new();
    for group in groups {
        for address in &group.targets {
            let mut labels: Labels = group.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            set_default(&mut labels, "__address__", address);
            set_default(&mut labels, "job", &cfg.job_name);
            set_default(&mut labels, "__scheme__", &cfg.scheme);
            set_default(&mut labels, "__metrics_path__", &cfg.metrics_path);
            // Prometheus writes durations without spaces (`1m30s`).
            let duration = |d: Duration| humantime::format_duration(d).to_string().replace(' ', "");
            set_default(&mut labels, "__scrape_interval__", &duration(interval));
            set_default(&mut labels, "__scrape_timeout__", &duration(timeout));
            for (k, v) in &cfg.params {
                if let Some(first) = v.first() {
                    set_default(&mut labels, &format!("__param_{k}"), first);
                }
            }
            labels.sort();
            if !relabel::apply(rules, &mut labels) {
                continue;
            }
            let Some(address) = get(&labels, "__address__").map(str::to_string) else {
                tracing::warn!(job = %cfg.job_name, "a target has no __address__ after relabeling; skipped");
                continue;
            };
            if address.contains('@') {
                // Credentials belong in basic_auth; an address with user info would put them in
                // the `instance` label and in logs.
                tracing::warn!(job = %cfg.job_name, "a target address holds user info (user:password@); skipped");
                continue;
            }
            let scheme = get(&labels, "__scheme__").unwrap_or("http").to_string();
            let address = if address.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
                address
            } else {
                format!("{address}:{}", if scheme == "https" { 443 } else { 80 })
            };
            let path = get(&labels, "__metrics_path__").unwrap_or("/metrics").to_string();
            // Query: the configured params, each `__param_<name>` replacing its first value.
            let mut params: BTreeMap<String, Vec<String>> = cfg.params.clone();
            for (n, v) in &labels {
                if let Some(p) = n.strip_prefix("__param_") {
                    let values = params.entry(p.to_string()).or_default();
                    if values.is_empty() {
                        values.push(v.clone());
                    } else {
                        values[0] = v.clone();
                    }
                }
            }
            let query: Vec<String> = params
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{}={}", encode(k), encode(v))))
                .collect();
            let url = if query.is_empty() {
                format!("{scheme}://{address}{path}")
            } else {
                format!("{scheme}://{address}{path}?{}", query.join("&"))
            };
            let mut public: Labels =
                labels.into_iter().filter(|(n, v)| !n.starts_with("__") && !v.is_empty()).collect();
            set_default(&mut public, "instance", &address);
            public.sort();
            out.push(Target { url, scheme, labels: public, interval, timeout });
        }
    }
    out
}

/// Percent-encoding for query parameters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The files of `file_sd_configs` (a pattern may use `*` and `?` in its last part, as in
/// Prometheus), re-read when their content changes (compared by hash: a modification time can
/// stay the same across two quick writes). Files that appear or go are noticed too.
pub struct FileGroups {
    patterns: Vec<PathBuf>,
    /// Per file found: the hash of what was read, and its groups.
    files: BTreeMap<PathBuf, (Option<u64>, Vec<StaticConfig>)>,
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => glob_match(&pattern[1..], name) || (!name.is_empty() && glob_match(pattern, &name[1..])),
        (Some('?'), Some(_)) => glob_match(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => glob_match(&pattern[1..], &name[1..]),
        _ => false,
    }
}

impl FileGroups {
    pub fn new(cfg: &ScrapeConfig) -> FileGroups {
        FileGroups {
            patterns: cfg.file_sd_configs.iter().flat_map(|f| f.files.clone()).collect(),
            files: BTreeMap::new(),
        }
    }

    /// The files the patterns name now.
    fn expand(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for pattern in &self.patterns {
            let name = pattern.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if !name.contains(['*', '?']) {
                out.push(pattern.clone());
                continue;
            }
            let dir = pattern.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let wanted: Vec<char> = name.chars().collect();
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let candidate: Vec<char> = entry.file_name().to_string_lossy().chars().collect();
                    if glob_match(&wanted, &candidate) {
                        out.push(entry.path());
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// Re-reads the files that changed, appeared or went; returns whether any did. A file that
    /// cannot be read or parsed keeps its last good groups (as Prometheus does), with a warning.
    pub fn refresh(&mut self) -> bool {
        use std::hash::{Hash, Hasher};
        let found = self.expand();
        let before = self.files.len();
        self.files.retain(|path, _| found.contains(path));
        let mut changed = self.files.len() != before;
        for path in found {
            let text = std::fs::read_to_string(&path);
            // What was read, as a hash; a file that cannot be read counts as one version.
            let digest = match &text {
                Ok(t) => {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    t.hash(&mut h);
                    h.finish()
                }
                Err(_) => u64::MAX,
            };
            let entry = self.files.entry(path.clone()).or_insert((None, Vec::new()));
            if entry.0 == Some(digest) {
                continue;
            }
            entry.0 = Some(digest);
            let name = path.display().to_string();
            let read = text.map_err(|e| e.to_string()).and_then(|text| {
                if text.trim().is_empty() {
                    return Ok(Vec::new());
                }
                crate::config::parse_yaml::<Vec<StaticConfig>>(&name, &text).map_err(|e| e.to_string())
            });
            match read {
                Ok(groups) => {
                    entry.1 = groups;
                    changed = true;
                }
                // Once per version of the file.
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot read scrape targets file; keeping the last good targets")
                }
            }
        }
        changed
    }

    pub fn groups(&self) -> impl Iterator<Item = &StaticConfig> {
        self.files.values().flat_map(|(_, g)| g)
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receivers::prometheus::relabel::{Action, RelabelConfig};

    fn cfg() -> ScrapeConfig {
        ScrapeConfig { job_name: "node".into(), ..Default::default() }
    }

    #[test]
    fn a_static_target_gets_job_instance_and_its_group_labels() {
        let group = StaticConfig {
            targets: vec!["10.0.0.1:9100".into()],
            labels: [("env".to_string(), "prod".to_string())].into(),
        };
        let t = resolve(&cfg(), &GlobalConfig::default(), &[], &[group]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].url, "http://10.0.0.1:9100/metrics");
        let want: Labels = vec![
            ("env".into(), "prod".into()),
            ("instance".into(), "10.0.0.1:9100".into()),
            ("job".into(), "node".into()),
        ];
        assert_eq!(t[0].labels, want);
        assert_eq!(t[0].interval, Duration::from_secs(60));
    }

    #[test]
    fn an_address_with_user_info_is_skipped() {
        // From file_sd or relabeling: its credentials would land in `instance` and in logs.
        let group =
            StaticConfig { targets: vec!["me:pw@10.0.0.1:9100".into(), "10.0.0.2:9100".into()], ..Default::default() };
        let t = resolve(&cfg(), &GlobalConfig::default(), &[], &[group]);
        assert_eq!(t.iter().map(|t| t.url.as_str()).collect::<Vec<_>>(), ["http://10.0.0.2:9100/metrics"]);
    }

    #[test]
    fn relabeling_can_drop_rewrite_the_address_and_set_params() {
        let mut c = cfg();
        c.params = [("module".to_string(), vec!["http_2xx".to_string()])].into();
        c.scheme = "https".into();
        let rules: Vec<Rule> = [
            RelabelConfig {
                source_labels: vec!["__address__".into()],
                regex: "skip.*".into(),
                action: Action::Drop,
                ..Default::default()
            },
            RelabelConfig {
                source_labels: vec!["__address__".into()],
                target_label: "__param_target".into(),
                ..Default::default()
            },
            RelabelConfig { target_label: "__address__".into(), replacement: "prober".into(), ..Default::default() },
        ]
        .into_iter()
        .map(|r| Rule::new(r).unwrap())
        .collect();
        let group =
            StaticConfig { targets: vec!["skip-me:1".into(), "example.com".into()], labels: Default::default() };
        let t = resolve(&c, &GlobalConfig::default(), &rules, &[group]);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].url, "https://prober:443/metrics?module=http_2xx&target=example.com");
        assert!(t[0].labels.contains(&("instance".into(), "prober:443".into())));
    }

    #[test]
    fn file_groups_are_read_and_reread_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.json");
        std::fs::write(&path, r#"[{"targets": ["a:1", "b:2"], "labels": {"team": "x"}}]"#).unwrap();
        let mut c = cfg();
        c.file_sd_configs = vec![crate::receivers::prometheus::config::FileSdConfig {
            files: vec![path.clone()],
            ..Default::default()
        }];
        let mut files = FileGroups::new(&c);
        assert!(files.refresh());
        assert_eq!(files.groups().map(|g| g.targets.len()).sum::<usize>(), 2);
        assert!(!files.refresh(), "unchanged");
        std::fs::write(&path, "- targets: [c:3]\n").unwrap();
        assert!(files.refresh(), "rewritten at once: seen although the modification time may not move");
        assert_eq!(files.groups().next().unwrap().targets, vec!["c:3".to_string()]);
        std::fs::write(&path, "[{{{").unwrap();
        assert!(!files.refresh(), "a broken file keeps the last good targets");
        assert_eq!(files.groups().next().unwrap().targets, vec!["c:3".to_string()]);
    }

    #[test]
    fn patterns_find_files_as_they_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.file_sd_configs = vec![crate::receivers::prometheus::config::FileSdConfig {
            files: vec![dir.path().join("*.json")],
            ..Default::default()
        }];
        let mut files = FileGroups::new(&c);
        assert!(!files.refresh());
        std::fs::write(dir.path().join("a.json"), r#"[{"targets": ["a:1"]}]"#).unwrap();
        std::fs::write(dir.path().join("b.yaml"), "- targets: [b:1]\n").unwrap();
        assert!(files.refresh());
        assert_eq!(files.groups().flat_map(|g| g.targets.clone()).collect::<Vec<_>>(), vec!["a:1".to_string()]);
        std::fs::remove_file(dir.path().join("a.json")).unwrap();
        assert!(files.refresh(), "a file that goes takes its targets with it");
        assert_eq!(files.groups().count(), 0);
        assert!(glob_match(&"t?-*.json".chars().collect::<Vec<_>>(), &"t1-web.json".chars().collect::<Vec<_>>()));
    }
}
