//! Reading a kubeconfig file (`auth_type: kubeConfig`): the context to use, its cluster's
//! server and certificate authority, and its user's token or client certificate.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct File {
    #[serde(rename = "current-context")]
    current_context: String,
    contexts: Vec<Named<Context>>,
    clusters: Vec<Named<Cluster>>,
    users: Vec<Named<User>>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    #[serde(default)]
    item: Option<T>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

/// What a kubeconfig context says about reaching its cluster.
pub struct Resolved {
    pub server: String,
    pub tls: crate::tls::client::PemMaterial,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// `user:password` for basic authentication.
    pub basic: Option<(String, String)>,
}

/// The kubeconfig file to read: `path` if given, else the first of `KUBECONFIG`, else
/// `~/.kube/config`.
pub fn locate(path: Option<&str>) -> Result<PathBuf, String> {
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        return Ok(expand_home(p));
    }
    if let Ok(list) = std::env::var("KUBECONFIG")
        && let Some(first) = std::env::split_paths(&list).find(|p| !p.as_os_str().is_empty())
    {
        return Ok(first);
    }
    let home =
        std::env::var("HOME").map_err(|_| "no kube_config_path given, KUBECONFIG unset and no HOME".to_string())?;
    Ok(Path::new(&home).join(".kube/config"))
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Reads `file` and resolves `context` (its `current-context` when empty).
pub fn resolve(file: &Path, context: Option<&str>) -> Result<Resolved, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("kubeconfig {}: {e}", file.display()))?;
    // Taken as written: a password may hold `$`.
    let parsed: File =
        crate::config::parse_yaml_literal(&file.display().to_string(), &text).map_err(|e| e.to_string())?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let relative = |p: &str| -> PathBuf {
        let p = expand_home(p);
        if p.is_absolute() { p } else { dir.join(p) }
    };
    let wanted = context.filter(|c| !c.is_empty()).unwrap_or(&parsed.current_context);
    if wanted.is_empty() {
        return Err(format!("kubeconfig {}: no current-context, and no context given", file.display()));
    }
    let find = |what: &str, list: &[String]| {
        format!("kubeconfig {}: no {what} named \"{wanted}\" (it has: {})", file.display(), list.join(", "))
    };
    let ctx = parsed
        .contexts
        .iter()
        .find(|c| c.name == wanted)
        .and_then(|c| c.item.as_ref())
        .ok_or_else(|| find("context", &parsed.contexts.iter().map(|c| c.name.clone()).collect::<Vec<_>>()))?;
    let cluster =
        parsed.clusters.iter().find(|c| c.name == ctx.cluster).and_then(|c| c.item.as_ref()).ok_or_else(|| {
            format!(
                "kubeconfig {}: context \"{wanted}\" names cluster \"{}\", which is not there",
                file.display(),
                ctx.cluster
            )
        })?;
    let default_user = User::default();
    let user = match parsed.users.iter().find(|u| u.name == ctx.user) {
        Some(u) => u.item.as_ref().unwrap_or(&default_user),
        None if ctx.user.is_empty() => &default_user,
        None => {
            return Err(format!(
                "kubeconfig {}: context \"{wanted}\" names user \"{}\", which is not there",
                file.display(),
                ctx.user
            ));
        }
    };
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(format!(
            "kubeconfig {}: user \"{}\" gets credentials from a plugin (exec or auth-provider), which switchyard does not run; use a token, a token file or a client certificate",
            file.display(),
            ctx.user
        ));
    }
    if cluster.server.is_empty() {
        return Err(format!("kubeconfig {}: cluster \"{}\" has no server", file.display(), ctx.cluster));
    }
    let decode = |key: &str, b64: &str| -> Result<Vec<u8>, String> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("kubeconfig {}: {key} is not base64: {e}", file.display()))
    };
    let read = |key: &str, p: &str| {
        std::fs::read(relative(p)).map_err(|e| format!("kubeconfig {}: {key} {p}: {e}", file.display()))
    };
    let ca = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(data), _) => Some((
            format!("kubeconfig {} certificate-authority-data", file.display()),
            decode("certificate-authority-data", data)?,
        )),
        (None, Some(p)) => Some((
            format!("kubeconfig {} certificate-authority {p}", file.display()),
            read("certificate-authority", p)?,
        )),
        _ => None,
    };
    let cert = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(d), _) => Some(decode("client-certificate-data", d)?),
        (None, Some(p)) => Some(read("client-certificate", p)?),
        _ => None,
    };
    let key = match (&user.client_key_data, &user.client_key) {
        (Some(d), _) => Some(decode("client-key-data", d)?),
        (None, Some(p)) => Some(read("client-key", p)?),
        _ => None,
    };
    let cert_and_key = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(format!(
                "kubeconfig {}: user \"{}\" has a client certificate or key without the other",
                file.display(),
                ctx.user
            ));
        }
    };
    Ok(Resolved {
        server: cluster.server.trim_end_matches('/').to_string(),
        tls: crate::tls::client::PemMaterial {
            ca,
            cert_and_key,
            insecure_skip_verify: cluster.insecure_skip_tls_verify,
            server_name_override: cluster.tls_server_name.clone(),
        },
        token: user.token.clone(),
        token_file: user.token_file.as_deref().map(relative),
        basic: user.username.clone().zip(user.password.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_gives_its_cluster_and_user() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "abc\n").unwrap();
        let file = dir.path().join("config");
        std::fs::write(
            &file,
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\npreferences: {}\n\
             clusters:\n- name: c1\n  cluster:\n    server: https://10.0.0.1:6443/\n    insecure-skip-tls-verify: true\n\
             - name: c2\n  cluster:\n    server: http://127.0.0.1:8080\n\
             contexts:\n- name: dev\n  context: {cluster: c1, user: u1, namespace: x}\n- name: local\n  context: {cluster: c2, user: u2}\n\
             users:\n- name: u1\n  user:\n    token: s3cret$${HOME}\n- name: u2\n  user:\n    tokenFile: token\n",
        )
        .unwrap();
        let dev = resolve(&file, None).unwrap();
        assert_eq!(dev.server, "https://10.0.0.1:6443");
        assert_eq!(dev.token.as_deref(), Some("s3cret$${HOME}"), "taken as written, not expanded");
        assert!(dev.tls.insecure_skip_verify);
        let local = resolve(&file, Some("local")).unwrap();
        assert_eq!(local.server, "http://127.0.0.1:8080");
        assert_eq!(local.token_file.unwrap(), dir.path().join("token"));
        let err = resolve(&file, Some("prod")).err().unwrap();
        assert!(err.contains("no context named \"prod\" (it has: dev, local)"), "{err}");
    }

    #[test]
    fn credential_plugins_are_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config");
        std::fs::write(
            &file,
            "current-context: eks\nclusters:\n- name: c\n  cluster: {server: 'https://x'}\ncontexts:\n- name: eks\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user:\n    exec: {command: aws, args: [eks, get-token]}\n",
        )
        .unwrap();
        let err = resolve(&file, None).err().unwrap();
        assert!(err.contains("plugin"), "{err}");
    }
}
