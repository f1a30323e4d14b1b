//! The resource detectors: what each reads (the environment, the host, a cloud's metadata
//! server) and the attributes it gives, named as the collector's detectors name them.

use super::metadata_http;
use std::time::Duration;

/// Detected attributes, in the order found (all strings).
pub type Found = Vec<(String, String)>;

/// `env`: `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k=v`, values percent-encoded).
pub fn env(value: Option<&str>) -> Result<Found, String> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else { return Ok(Vec::new()) };
    let mut found = Vec::new();
    for pair in value.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let (k, v) =
            pair.split_once('=').ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
        let v = crate::percent::decode(v.trim()).and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
            format!("OTEL_RESOURCE_ATTRIBUTES: the value of {:?} is not well percent-encoded", k.trim())
        })?;
        found.push((k.trim().to_string(), v));
    }
    Ok(found)
}

/// Where the host's name comes from (`system.hostname_sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostnameSource {
    /// The fully qualified name, from the hosts file.
    Dns,
    /// The kernel's host name.
    Os,
    /// As `dns` here.
    Cname,
    /// As `dns` here.
    Lookup,
}

/// The kernel's host name.
fn os_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
}

/// The fully qualified name of `host` in a hosts file: the canonical (first) name of a line
/// that lists it, when that name has a dot.
fn fqdn_in(hosts: &str, host: &str) -> Option<String> {
    hosts.lines().map(|l| l.split('#').next().unwrap_or("")).find_map(|line| {
        let names: Vec<&str> = line.split_whitespace().skip(1).collect();
        (names.contains(&host) && names[0].contains('.')).then(|| names[0].to_string())
    })
}

/// `system`: `host.name` (by `sources`, the first that gives one), `os.type`, `host.id`
/// (the machine id), `host.arch`, `os.description`.
pub fn system(sources: &[HostnameSource]) -> Found {
    let mut found = Vec::new();
    let host = os_hostname();
    let name = sources.iter().find_map(|s| match s {
        HostnameSource::Os => host.clone(),
        _ => host.as_deref().and_then(|h| fqdn_in(&std::fs::read_to_string("/etc/hosts").unwrap_or_default(), h)),
    });
    if let Some(name) = name {
        found.push(("host.name".to_string(), name));
    }
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    found.push(("os.type".to_string(), os.to_string()));
    let machine_id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
    if let Some(id) = machine_id {
        found.push(("host.id".to_string(), id));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    };
    found.push(("host.arch".to_string(), arch.to_string()));
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let pretty = release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    let description = match (pretty, kernel) {
        (Some(p), Some(k)) => Some(format!("{p} (Linux {k})")),
        (p, k) => p.or(k),
    };
    if let Some(d) = description {
        found.push(("os.description".to_string(), d));
    }
    found
}

/// The endpoint an environment variable names, or the link-local metadata address.
fn endpoint_from(variable: &str) -> String {
    std::env::var(variable)
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "http://169.254.169.254".into())
        .trim_end_matches('/')
        .to_string()
}

/// The EC2 metadata endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT`, as the AWS SDKs read it).
pub fn ec2_endpoint() -> String {
    endpoint_from("AWS_EC2_METADATA_SERVICE_ENDPOINT")
}

/// `ec2`: the instance identity document and host name, through IMDSv2 (a session token) or,
/// where the token is refused, IMDSv1. `Ok(empty)` when no metadata server answers (not on EC2).
pub fn ec2(endpoint: &str, timeout: Duration) -> Result<Found, String> {
    let token = metadata_http::request(
        "PUT",
        &format!("{endpoint}/latest/api/token"),
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        timeout,
    );
    let token = match token {
        Ok(a) if a.status == 200 => Some(a.body.trim().to_string()),
        Ok(_) => None,
        Err(e) => {
            tracing::info!(error = %e, "resourcedetection: no EC2 metadata server; not on EC2");
            return Ok(Vec::new());
        }
    };
    let headers: Vec<(&str, &str)> =
        token.as_deref().map(|t| vec![("X-aws-ec2-metadata-token", t)]).unwrap_or_default();
    let document =
        metadata_http::get(&format!("{endpoint}/latest/dynamic/instance-identity/document"), &headers, timeout)?;
    let doc: serde_json::Value =
        serde_json::from_str(&document).map_err(|e| format!("the EC2 instance identity document is not JSON: {e}"))?;
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).filter(|v| !v.is_empty()).map(str::to_string);
    let mut found =
        vec![("cloud.provider".to_string(), "aws".to_string()), ("cloud.platform".into(), "aws_ec2".into())];
    for (attr, key) in [
        ("cloud.region", "region"),
        ("cloud.availability_zone", "availabilityZone"),
        ("cloud.account.id", "accountId"),
        ("host.id", "instanceId"),
        ("host.image.id", "imageId"),
        ("host.type", "instanceType"),
    ] {
        if let Some(v) = field(key) {
            found.push((attr.to_string(), v));
        }
    }
    if let Ok(name) = metadata_http::get(&format!("{endpoint}/latest/meta-data/hostname"), &headers, timeout) {
        found.push(("host.name".to_string(), name.trim().to_string()));
    }
    Ok(found)
}

/// The GCE metadata server (`GCE_METADATA_HOST`, as Google's client libraries read it).
pub fn gcp_endpoint() -> String {
    let host = std::env::var("GCE_METADATA_HOST").ok().filter(|h| !h.is_empty());
    format!("http://{}", host.as_deref().unwrap_or("metadata.google.internal"))
}

/// `gcp`: Compute Engine (and GKE, by its `cluster-name` instance attribute) from the metadata
/// server. `Ok(empty)` when no metadata server answers.
pub fn gcp(endpoint: &str, timeout: Duration) -> Result<Found, String> {
    let headers = [("Metadata-Flavor", "Google")];
    let get = |path: &str| metadata_http::get(&format!("{endpoint}/computeMetadata/v1/{path}"), &headers, timeout);
    let project = match get("project/project-id") {
        Ok(p) => p.trim().to_string(),
        Err(e) => {
            tracing::info!(error = %e, "resourcedetection: no GCP metadata server; not on GCP");
            return Ok(Vec::new());
        }
    };
    let last = |s: String| s.trim().rsplit('/').next().unwrap_or("").to_string();
    let cluster = get("instance/attributes/cluster-name").ok().map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    let platform = if cluster.is_some() { "gcp_kubernetes_engine" } else { "gcp_compute_engine" };
    let mut found = vec![
        ("cloud.provider".to_string(), "gcp".to_string()),
        ("cloud.platform".into(), platform.into()),
        ("cloud.account.id".into(), project),
    ];
    if let Ok(zone) = get("instance/zone").map(last) {
        // A zone is its region and a letter: us-central1-c.
        if let Some((region, _)) = zone.rsplit_once('-') {
            found.push(("cloud.region".into(), region.to_string()));
        }
        found.push(("cloud.availability_zone".into(), zone));
    }
    if let Some(c) = cluster {
        found.push(("k8s.cluster.name".into(), c));
    }
    for (attr, path) in
        [("host.id", "instance/id"), ("host.name", "instance/name"), ("host.type", "instance/machine-type")]
    {
        if let Ok(v) = get(path).map(last).map(|v| v.trim().to_string())
            && !v.is_empty()
        {
            found.push((attr.into(), v));
        }
    }
    Ok(found)
}

/// The Azure instance metadata endpoint (`AZURE_METADATA_ENDPOINT`, switchyard's own variable,
/// for tests and proxies).
pub fn azure_endpoint() -> String {
    endpoint_from("AZURE_METADATA_ENDPOINT")
}

/// `azure`: the compute metadata of the virtual machine. `Ok(empty)` when no metadata server
/// answers.
pub fn azure(endpoint: &str, timeout: Duration) -> Result<Found, String> {
    let url = format!("{endpoint}/metadata/instance/compute?api-version=2020-09-01&format=json");
    let body = match metadata_http::get(&url, &[("Metadata", "true")], timeout) {
        Ok(b) => b,
        Err(e) => {
            tracing::info!(error = %e, "resourcedetection: no Azure metadata server; not on Azure");
            return Ok(Vec::new());
        }
    };
    let doc: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("the Azure compute metadata is not JSON: {e}"))?;
    let mut found =
        vec![("cloud.provider".to_string(), "azure".to_string()), ("cloud.platform".into(), "azure_vm".into())];
    for (attr, key) in [
        ("cloud.region", "location"),
        ("host.id", "vmId"),
        ("host.name", "name"),
        ("cloud.account.id", "subscriptionId"),
        ("azure.vm.name", "name"),
        ("azure.vm.size", "vmSize"),
        ("azure.vm.scaleset.name", "vmScaleSetName"),
        ("azure.resourcegroup.name", "resourceGroupName"),
    ] {
        if let Some(v) = doc.get(key).and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
            found.push((attr.to_string(), v.to_string()));
        }
    }
    Ok(found)
}

/// The `k8snode` detector: the node this pod runs on (named by the variable the downward API
/// sets), and its uid from the Kubernetes API.
pub fn k8snode(cfg: &super::K8sNodeConfig, timeout: Duration) -> Result<Found, String> {
    let variable = &cfg.node_from_env_var;
    let name = match std::env::var(variable) {
        Ok(n) if !n.is_empty() => n,
        _ => {
            return Err(format!(
                "the variable {variable} is not set (give it spec.nodeName through the downward API, or set k8snode.node_from_env_var)"
            ));
        }
    };
    let settings = crate::kubernetes::ApiSettings {
        auth_type: cfg.auth_type,
        kube_config_path: cfg.kube_config_path.clone(),
        context: cfg.context.clone(),
        server: None,
    };
    let path = format!("/api/v1/nodes/{}", crate::percent::encode(&name));
    // Its own thread and runtime: detection runs once, at build, from sync code.
    let fetch = move || -> Result<crate::kubernetes::objects::Node, String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let client = crate::kubernetes::ApiClient::new(&settings)?;
            client.get_json(&path, timeout, 1 << 20).await.map_err(|e| format!("{}{path}: {e}", client.server()))
        })
    };
    let node = std::thread::spawn(fetch).join().map_err(|_| "the node lookup failed".to_string())??;
    Ok(vec![("k8s.node.name".into(), name), ("k8s.node.uid".into(), node.metadata.uid)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_are_read_and_decoded() {
        assert_eq!(
            env(Some("service.name=shop, deployment.environment=prod%20eu ,,")).unwrap(),
            vec![("service.name".into(), "shop".into()), ("deployment.environment".into(), "prod eu".into())]
        );
        assert!(env(None).unwrap().is_empty());
        assert!(env(Some("novalue")).unwrap_err().contains("not key=value"));
        assert!(env(Some("a=%zz")).unwrap_err().contains("percent"));
    }

    #[test]
    fn the_fqdn_comes_from_the_hosts_file_line_that_names_the_host() {
        let hosts = "127.0.0.1 localhost\n10.0.0.5 web-1.prod.example.com web-1 # the box\n";
        assert_eq!(fqdn_in(hosts, "web-1").as_deref(), Some("web-1.prod.example.com"));
        assert_eq!(fqdn_in(hosts, "other"), None);
        assert_eq!(fqdn_in("127.0.0.1 localhost\n", "localhost"), None, "no dot: not a FQDN");
    }

    #[test]
    fn system_gives_the_os_type_and_arch() {
        let found = system(&[HostnameSource::Os]);
        let get = |k: &str| found.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
        assert_eq!(get("os.type").as_deref(), Some("linux"));
        assert!(get("host.arch").is_some());
        assert!(get("host.name").is_some(), "{found:?}");
    }
}
