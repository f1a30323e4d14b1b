//! Prometheus relabeling (`relabel_configs`, `metric_relabel_configs`): the actions replace, keep,
//! drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase and uppercase,
//! with Prometheus's defaults (separator `;`, regex `(.*)` anchored at both ends, replacement
//! `$1`). A label set is a list of (name, value) pairs sorted by name.

use crate::md5::md5;
use regex::Regex;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One rule as written in configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub target_label: String,
    pub regex: String,
    pub modulus: u64,
    pub replacement: String,
    pub action: Action,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: ";".into(),
            target_label: String::new(),
            regex: "(.*)".into(),
            modulus: 0,
            replacement: "$1".into(),
            action: Action::Replace,
        }
    }
}

/// A rule ready to apply: its regex compiled, anchored as Prometheus anchors it.
#[derive(Debug, Clone)]
pub struct Rule {
    cfg: RelabelConfig,
    regex: Regex,
}

impl Rule {
    /// Compiles and checks a rule; the error names the key at fault (relative to the rule).
    pub fn new(cfg: RelabelConfig) -> Result<Rule, (String, String)> {
        let regex = Regex::new(&format!("^(?:{})$", cfg.regex))
            .map_err(|e| ("regex".to_string(), format!("invalid regular expression \"{}\": {e}", cfg.regex)))?;
        let needs_target = matches!(
            cfg.action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && cfg.target_label.is_empty() {
            return Err(("target_label".into(), format!("is required for action {:?}", cfg.action).to_lowercase()));
        }
        if cfg.action == Action::HashMod && cfg.modulus == 0 {
            return Err(("modulus".into(), "is required (and not 0) for action hashmod".into()));
        }
        if matches!(cfg.action, Action::LabelDrop | Action::LabelKeep)
            && (!cfg.source_labels.is_empty() || !cfg.target_label.is_empty())
        {
            return Err(("action".into(), "labeldrop and labelkeep take only regex".into()));
        }
        Ok(Rule { cfg, regex })
    }
}

fn get<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).unwrap_or("")
}

/// Sets `name` to `value`; an empty value removes the label (as Prometheus's label builder does).
fn set(labels: &mut Vec<(String, String)>, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value)),
    }
}

/// Applies `rules` in order. Returns false if the label set is dropped.
pub fn apply(rules: &[Rule], labels: &mut Vec<(String, String)>) -> bool {
    for rule in rules {
        let cfg = &rule.cfg;
        let joined = || cfg.source_labels.iter().map(|s| get(labels, s)).collect::<Vec<_>>().join(&cfg.separator);
        match cfg.action {
            Action::Drop => {
                if rule.regex.is_match(&joined()) {
                    return false;
                }
            }
            Action::Keep => {
                if !rule.regex.is_match(&joined()) {
                    return false;
                }
            }
            Action::DropEqual => {
                if joined() == get(labels, &cfg.target_label) {
                    return false;
                }
            }
            Action::KeepEqual => {
                if joined() != get(labels, &cfg.target_label) {
                    return false;
                }
            }
            Action::Replace => {
                let value = joined();
                let Some(caps) = rule.regex.captures(&value) else { continue };
                let mut target = String::new();
                caps.expand(&cfg.target_label, &mut target);
                let mut replaced = String::new();
                caps.expand(&cfg.replacement, &mut replaced);
                // An invalid target name leaves the labels as they were.
                if target.is_empty() || !valid_label_name(&target) {
                    continue;
                }
                set(labels, &target, replaced);
            }
            Action::Lowercase => {
                let v = joined().to_lowercase();
                set(labels, &cfg.target_label, v);
            }
            Action::Uppercase => {
                let v = joined().to_uppercase();
                set(labels, &cfg.target_label, v);
            }
            Action::HashMod => {
                let digest = md5(joined().as_bytes());
                let hash = u64::from_be_bytes(digest[8..16].try_into().unwrap_or([0; 8]));
                set(labels, &cfg.target_label, (hash % cfg.modulus).to_string());
            }
            Action::LabelMap => {
                let mut added = Vec::new();
                for (name, value) in labels.iter() {
                    if let Some(caps) = rule.regex.captures(name) {
                        let mut new_name = String::new();
                        caps.expand(&cfg.replacement, &mut new_name);
                        added.push((new_name, value.clone()));
                    }
                }
                for (name, value) in added {
                    set(labels, &name, value);
                }
            }
            Action::LabelDrop => labels.retain(|(n, _)| !rule.regex.is_match(n)),
            Action::LabelKeep => labels.retain(|(n, _)| rule.regex.is_match(n)),
        }
    }
    true
}

pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        v.sort();
        v
    }

    fn rule(yaml_like: RelabelConfig) -> Rule {
        Rule::new(yaml_like).unwrap()
    }

    fn cfg(action: Action) -> RelabelConfig {
        RelabelConfig { action, ..Default::default() }
    }

    #[test]
    fn replace_with_captures_and_the_defaults() {
        let mut l = labels(&[("__address__", "10.0.0.1:9100"), ("job", "node")]);
        let r = rule(RelabelConfig {
            source_labels: vec!["__address__".into()],
            regex: "([^:]+):\\d+".into(),
            target_label: "host".into(),
            ..Default::default()
        });
        assert!(apply(&[r], &mut l));
        assert_eq!(get(&l, "host"), "10.0.0.1");
        // The regex is anchored: a partial match does not apply.
        let r = rule(RelabelConfig {
            source_labels: vec!["job".into()],
            regex: "no".into(),
            target_label: "x".into(),
            replacement: "y".into(),
            ..Default::default()
        });
        assert!(apply(&[r], &mut l));
        assert_eq!(get(&l, "x"), "");
        // An empty result removes the target label.
        let r = rule(RelabelConfig {
            source_labels: vec!["missing".into()],
            target_label: "host".into(),
            ..Default::default()
        });
        apply(&[r], &mut l);
        assert_eq!(get(&l, "host"), "");
    }

    #[test]
    fn keep_drop_and_their_equal_forms() {
        let l = labels(&[("job", "node"), ("env", "prod"), ("copy", "prod")]);
        let keep =
            |re: &str| rule(RelabelConfig { source_labels: vec!["job".into()], regex: re.into(), ..cfg(Action::Keep) });
        assert!(apply(&[keep("node|api")], &mut l.clone()));
        assert!(!apply(&[keep("api")], &mut l.clone()));
        let drop = rule(RelabelConfig {
            source_labels: vec!["env".into(), "job".into()],
            regex: "prod;node".into(),
            ..cfg(Action::Drop)
        });
        assert!(!apply(&[drop], &mut l.clone()));
        let keepequal = rule(RelabelConfig {
            source_labels: vec!["env".into()],
            target_label: "copy".into(),
            ..cfg(Action::KeepEqual)
        });
        assert!(apply(&[keepequal], &mut l.clone()));
        let dropequal = rule(RelabelConfig {
            source_labels: vec!["env".into()],
            target_label: "copy".into(),
            ..cfg(Action::DropEqual)
        });
        assert!(!apply(&[dropequal], &mut l.clone()));
    }

    #[test]
    fn label_name_actions() {
        let mut l = labels(&[("__meta_kubernetes_pod_label_app", "web"), ("job", "k"), ("tmp_a", "1")]);
        let map = rule(RelabelConfig { regex: "__meta_kubernetes_pod_label_(.+)".into(), ..cfg(Action::LabelMap) });
        let drop = rule(RelabelConfig { regex: "tmp_.*".into(), ..cfg(Action::LabelDrop) });
        assert!(apply(&[map, drop], &mut l));
        assert_eq!(l, labels(&[("__meta_kubernetes_pod_label_app", "web"), ("app", "web"), ("job", "k")]));
        let keep = rule(RelabelConfig { regex: "app|job".into(), ..cfg(Action::LabelKeep) });
        apply(&[keep], &mut l);
        assert_eq!(l, labels(&[("app", "web"), ("job", "k")]));
    }

    #[test]
    fn hashmod_and_case() {
        let mut l = labels(&[("__address__", "a:1"), ("Env", "Prod")]);
        let hash = rule(RelabelConfig {
            source_labels: vec!["__address__".into()],
            target_label: "shard".into(),
            modulus: 8,
            ..cfg(Action::HashMod)
        });
        let lower = rule(RelabelConfig {
            source_labels: vec!["Env".into()],
            target_label: "env".into(),
            ..cfg(Action::Lowercase)
        });
        apply(&[hash, lower], &mut l);
        let digest = md5(b"a:1");
        let want = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 8;
        assert_eq!(get(&l, "shard"), want.to_string());
        assert_eq!(get(&l, "env"), "prod");
    }

    #[test]
    fn bad_rules_are_config_errors() {
        assert_eq!(Rule::new(RelabelConfig { regex: "(".into(), ..Default::default() }).unwrap_err().0, "regex");
        assert_eq!(Rule::new(cfg(Action::Replace)).unwrap_err().0, "target_label");
        assert_eq!(
            Rule::new(RelabelConfig { target_label: "x".into(), ..cfg(Action::HashMod) }).unwrap_err().0,
            "modulus"
        );
    }
}
