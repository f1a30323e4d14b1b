//! Kubernetes container log lines: Docker's JSON lines and the CRI format of CRI-O and
//! containerd (`<time> <stream> <P|F> <log>`), with partial lines joined, and the pod's
//! identity read from the `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log` path.

use super::config::ContainerFormat;
use crate::attributes::{kv, string};
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// One parsed line: its text, whether it ends the log entry (not a partial line), its stream
/// and its time (ns since the epoch).
#[derive(Debug, PartialEq)]
pub struct Line {
    pub text: String,
    pub complete: bool,
    pub stream: String,
    pub time: u64,
}

/// Parses one line in `format` (`Auto` decides per line). `Err` names what is wrong.
pub fn parse(line: &str, format: ContainerFormat) -> Result<Line, String> {
    let docker = match format {
        ContainerFormat::Docker => true,
        ContainerFormat::Crio | ContainerFormat::Containerd => false,
        ContainerFormat::Auto => line.starts_with('{'),
    };
    if docker { parse_docker(line) } else { parse_cri(line) }
}

fn parse_docker(line: &str) -> Result<Line, String> {
    #[derive(serde::Deserialize)]
    struct Docker {
        log: String,
        #[serde(default)]
        stream: String,
        time: String,
    }
    let d: Docker = serde_json::from_str(line).map_err(|e| format!("not a Docker JSON log line: {e}"))?;
    let time = crate::timefmt::parse_rfc3339(&d.time).ok_or_else(|| format!("bad time \"{}\"", d.time))?;
    let complete = d.log.ends_with('\n');
    let text = d.log.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&d.log).to_string();
    Ok(Line { text, complete, stream: d.stream, time })
}

fn parse_cri(line: &str) -> Result<Line, String> {
    let mut parts = line.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a CRI log line (<time> <stream> <P|F> <log>)".into());
    };
    let time = crate::timefmt::parse_rfc3339(time).ok_or_else(|| format!("bad time \"{time}\""))?;
    if stream != "stdout" && stream != "stderr" {
        return Err(format!("bad stream \"{stream}\""));
    }
    let complete = match tag.split(':').next() {
        Some("F") => true,
        Some("P") => false,
        _ => return Err(format!("bad tag \"{tag}\"")),
    };
    Ok(Line { text: parts.next().unwrap_or("").to_string(), complete, stream: stream.to_string(), time })
}

/// `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name` and
/// `k8s.container.restart_count` from a `/var/log/pods/…` path (nothing for other paths).
pub fn path_metadata(path: &str) -> Vec<KeyValue> {
    let mut parts = path.rsplit('/');
    let (Some(file), Some(container), Some(pod_dir)) = (parts.next(), parts.next(), parts.next()) else {
        return Vec::new();
    };
    let Some(restarts) = file.strip_suffix(".log").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Vec::new();
    };
    let mut ids = pod_dir.splitn(3, '_');
    let (Some(ns), Some(pod), Some(uid)) = (ids.next(), ids.next(), ids.next()) else {
        return Vec::new();
    };
    if container.is_empty() || container.contains(['.', '_']) || uid.contains('_') || ns.is_empty() || pod.is_empty() {
        return Vec::new();
    }
    vec![
        kv("k8s.namespace.name", string(ns)),
        kv("k8s.pod.name", string(pod)),
        kv("k8s.pod.uid", string(uid)),
        kv("k8s.container.name", string(container)),
        kv("k8s.container.restart_count", string(restarts)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_lines() {
        let l = parse(
            r#"{"log":"hello\n","stream":"stdout","time":"2024-03-01T10:00:00.123456789Z"}"#,
            ContainerFormat::Auto,
        )
        .unwrap();
        assert_eq!(
            l,
            Line { text: "hello".into(), complete: true, stream: "stdout".into(), time: 1_709_287_200_123_456_789 }
        );
        let p = parse(r#"{"log":"part","stream":"stderr","time":"2024-03-01T10:00:00Z"}"#, ContainerFormat::Docker)
            .unwrap();
        assert!(!p.complete);
        assert!(parse("{not json", ContainerFormat::Auto).is_err());
    }

    #[test]
    fn cri_lines() {
        let l = parse("2024-03-01T10:00:00.5Z stderr F oops: it failed", ContainerFormat::Auto).unwrap();
        assert_eq!(l.text, "oops: it failed");
        assert_eq!(l.stream, "stderr");
        assert!(l.complete);
        let p = parse("2024-03-01T11:00:00.5+01:00 stdout P first half", ContainerFormat::Crio).unwrap();
        assert!(!p.complete);
        assert_eq!(p.time, 1_709_287_200_500_000_000, "CRI-O writes local time with an offset");
        assert_eq!(parse("2024-03-01T10:00:00Z stdout F ", ContainerFormat::Containerd).unwrap().text, "");
        assert!(parse("2024-03-01T10:00:00Z stdout X y", ContainerFormat::Auto).is_err());
        assert!(parse("hello world", ContainerFormat::Auto).is_err());
    }

    #[test]
    fn pod_identity_from_the_path() {
        let m = path_metadata("/var/log/pods/shop_checkout-7d9f_0c1f7f7e-2b1a-4d7e-9d61-1c2b3a4d5e6f/server/2.log");
        let get = |k: &str| {
            m.iter().find(|a| a.key == k).and_then(|a| crate::attributes::as_str(a.value.as_ref()?)).map(str::to_string)
        };
        assert_eq!(get("k8s.namespace.name").as_deref(), Some("shop"));
        assert_eq!(get("k8s.pod.name").as_deref(), Some("checkout-7d9f"));
        assert_eq!(get("k8s.pod.uid").as_deref(), Some("0c1f7f7e-2b1a-4d7e-9d61-1c2b3a4d5e6f"));
        assert_eq!(get("k8s.container.name").as_deref(), Some("server"));
        assert_eq!(get("k8s.container.restart_count").as_deref(), Some("2"));
        assert!(path_metadata("/var/log/syslog").is_empty());
        assert!(path_metadata("/tmp/app/x.log").is_empty());
    }
}
