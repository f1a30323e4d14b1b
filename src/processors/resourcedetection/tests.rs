//! Detectors against in-test metadata servers (stand-ins for the clouds' link-local servers,
//! answering as their documentation shows), and the processor on data.

use super::*;
use std::io::{BufRead, BufReader, Write};

/// A stand-in metadata server on loopback: `answer(method, path, headers)` gives status and body.
fn server(answer: impl Fn(&str, &str, &[(String, String)]) -> (u16, String) + Send + 'static) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let (status, body) = answer(&method, &path, &headers);
            let mut stream = stream;
            let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

const SECOND: Duration = Duration::from_secs(2);

#[test]
fn ec2_reads_the_identity_document_through_an_imdsv2_token() {
    let endpoint = server(|method, path, headers| {
        let token = header(headers, "x-aws-ec2-metadata-token");
        match (method, path) {
            ("PUT", "/latest/api/token") if header(headers, "x-aws-ec2-metadata-token-ttl-seconds").is_some() => {
                (200, "tok-123".into())
            }
            (_, _) if token != Some("tok-123") => (401, String::new()),
            ("GET", "/latest/dynamic/instance-identity/document") => (
                200,
                r#"{"accountId":"123456789012","availabilityZone":"eu-west-1b","region":"eu-west-1","instanceId":"i-0abc","imageId":"ami-9","instanceType":"m5.large"}"#.into(),
            ),
            ("GET", "/latest/meta-data/hostname") => (200, "ip-10-0-0-5.eu-west-1.compute.internal".into()),
            _ => (404, String::new()),
        }
    });
    let found = detectors::ec2(&endpoint, SECOND).unwrap();
    let get = |k: &str| found.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    assert_eq!(get("cloud.provider"), Some("aws"));
    assert_eq!(get("cloud.platform"), Some("aws_ec2"));
    assert_eq!(get("cloud.region"), Some("eu-west-1"));
    assert_eq!(get("cloud.availability_zone"), Some("eu-west-1b"));
    assert_eq!(get("cloud.account.id"), Some("123456789012"));
    assert_eq!(get("host.id"), Some("i-0abc"));
    assert_eq!(get("host.type"), Some("m5.large"));
    assert_eq!(get("host.name"), Some("ip-10-0-0-5.eu-west-1.compute.internal"));
}

#[test]
fn gcp_reads_compute_engine_and_gke_metadata() {
    let endpoint = server(|_, path, headers| {
        if header(headers, "metadata-flavor") != Some("Google") {
            return (403, String::new());
        }
        let body = match path {
            "/computeMetadata/v1/project/project-id" => "shop-prod",
            "/computeMetadata/v1/instance/zone" => "projects/1234/zones/us-central1-c",
            "/computeMetadata/v1/instance/id" => "5555",
            "/computeMetadata/v1/instance/name" => "gke-node-1",
            "/computeMetadata/v1/instance/machine-type" => "projects/1234/machineTypes/e2-standard-4",
            "/computeMetadata/v1/instance/attributes/cluster-name" => "prod-cluster",
            _ => return (404, String::new()),
        };
        (200, body.into())
    });
    let found = detectors::gcp(&endpoint, SECOND).unwrap();
    let get = |k: &str| found.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    assert_eq!(get("cloud.platform"), Some("gcp_kubernetes_engine"));
    assert_eq!(get("cloud.account.id"), Some("shop-prod"));
    assert_eq!(get("cloud.region"), Some("us-central1"));
    assert_eq!(get("cloud.availability_zone"), Some("us-central1-c"));
    assert_eq!(get("k8s.cluster.name"), Some("prod-cluster"));
    assert_eq!(
        (get("host.id"), get("host.name"), get("host.type")),
        (Some("5555"), Some("gke-node-1"), Some("e2-standard-4"))
    );
}

#[test]
fn azure_reads_the_compute_metadata() {
    let endpoint = server(|_, path, headers| {
        if header(headers, "metadata") != Some("true") || !path.starts_with("/metadata/instance/compute?api-version=") {
            return (400, String::new());
        }
        (
            200,
            r#"{"location":"westeurope","name":"vm-1","vmId":"02aab8a4","vmSize":"Standard_D2s_v3","subscriptionId":"sub-1","resourceGroupName":"rg-shop","vmScaleSetName":""}"#.into(),
        )
    });
    let found = detectors::azure(&endpoint, SECOND).unwrap();
    let get = |k: &str| found.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str());
    assert_eq!((get("cloud.provider"), get("cloud.platform")), (Some("azure"), Some("azure_vm")));
    assert_eq!(
        (get("cloud.region"), get("host.id"), get("host.name")),
        (Some("westeurope"), Some("02aab8a4"), Some("vm-1"))
    );
    assert_eq!(get("azure.resourcegroup.name"), Some("rg-shop"));
    assert_eq!(get("azure.vm.scaleset.name"), None, "empty values are left out");
}

#[test]
fn off_the_cloud_a_detector_finds_nothing_and_a_broken_server_is_an_error() {
    // Nothing listens there: not on that cloud.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    assert!(detectors::ec2(&closed, SECOND).unwrap().is_empty());
    assert!(detectors::gcp(&closed, SECOND).unwrap().is_empty());
    assert!(detectors::azure(&closed, SECOND).unwrap().is_empty());
    let garbage = server(|_, _, _| (200, "<html>captive portal</html>".into()));
    assert!(detectors::ec2(&garbage, SECOND).unwrap_err().contains("not JSON"));
    assert!(detectors::azure(&garbage, SECOND).unwrap_err().contains("not JSON"));
    // A server that never answers is given up on at the timeout.
    let silent = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            let _held: Vec<_> = l.incoming().take(4).collect();
            std::thread::sleep(Duration::from_secs(5));
        });
        a
    };
    let started = std::time::Instant::now();
    assert!(detectors::ec2(&silent, Duration::from_millis(200)).unwrap().is_empty());
    assert!(started.elapsed() < Duration::from_secs(4));
}

fn settings(yaml: &str) -> ResourceDetectionConfig {
    let cfg: ResourceDetectionConfig = crate::config::parse_yaml("r.yaml", yaml).unwrap();
    crate::pipeline::component::ProcessorSettings::validate(&cfg).unwrap();
    cfg
}

#[test]
fn attributes_are_switched_and_added_with_or_without_override() {
    let cfg = settings(
        "detectors: [system]\nsystem:\n  hostname_sources: [os]\n  resource_attributes:\n    host.arch: {enabled: true}\n    os.type: {enabled: false}\n",
    );
    let found = cfg.detect().unwrap();
    let keys: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"host.name") && keys.contains(&"host.arch"), "{keys:?}");
    assert!(!keys.contains(&"os.type") && !keys.contains(&"host.id"), "{keys:?}");

    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    };
    let detected = Arc::new(vec![kv("host.name", "detected"), kv("cloud.region", "eu")]);
    for (override_, want) in [(true, "detected"), (false, "sent")] {
        let p = ResourceDetection { attributes: detected.clone(), override_ };
        let mut resource = Some(Resource { attributes: vec![kv("host.name", "sent")], ..Default::default() });
        p.apply(&mut resource);
        let attrs = resource.unwrap().attributes;
        let get = |k: &str| attrs.iter().find(|a| a.key == k).map(|a| crate::exporters::values::text(a.value.as_ref()));
        assert_eq!(get("host.name").as_deref(), Some(want));
        assert_eq!(get("cloud.region").as_deref(), Some("eu"), "missing ones are added either way");
    }
}

#[test]
fn settings_are_checked() {
    let err = |yaml: &str| {
        let cfg: ResourceDetectionConfig = crate::config::parse_yaml("r.yaml", yaml).unwrap();
        crate::pipeline::component::ProcessorSettings::validate(&cfg).unwrap_err().to_string()
    };
    assert!(err("detectors: []\n").contains("detectors"));
    assert!(
        err("detectors: [system]\nsystem: {resource_attributes: {host.ip: {enabled: true}}}\n")
            .contains("system.resource_attributes.host.ip")
    );
    assert!(err("detectors: [ec2]\nec2: {tags: ['^team$']}\n").contains("ec2.tags"));
    assert!(crate::config::parse_yaml::<ResourceDetectionConfig>("r.yaml", "detectors: [docker]\n").is_err());
}

use crate::kubernetes::standin as kube_api;

#[test]
fn k8snode_names_the_node_and_reads_its_uid_from_the_api() {
    let api = kube_api::KubeApi::start("tok");
    api.apply("nodes", kube_api::node("node-7", "10.0.0.7", serde_json::json!({})));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    // SAFETY: only this test reads this variable.
    unsafe { std::env::set_var("SWITCHYARD_TEST_K8SNODE", "node-7") };
    let text = format!(
        "detectors: [k8snode]\nk8snode:\n  auth_type: kubeConfig\n  kube_config_path: {}\n  node_from_env_var: SWITCHYARD_TEST_K8SNODE\n",
        kubeconfig.display()
    );
    let cfg: ResourceDetectionConfig = crate::config::parse_yaml("t", &text).unwrap();
    let found = cfg.detect().unwrap();
    assert_eq!(
        found,
        vec![
            ("k8s.node.name".to_string(), "node-7".to_string()),
            ("k8s.node.uid".to_string(), kube_api::uid_for("node/node-7"))
        ]
    );
    assert!(api.requests().iter().any(|r| r.starts_with("GET /api/v1/nodes/node-7 ")), "{:?}", api.requests());
    // A node the API does not know stops the start, naming the detector and the answer.
    unsafe { std::env::set_var("SWITCHYARD_TEST_K8SNODE", "node-8") };
    let err = cfg.detect().unwrap_err();
    assert!(err.starts_with("detector k8snode:") && err.contains("404"), "{err}");
    // No variable: says how to set it.
    let unset: ResourceDetectionConfig = crate::config::parse_yaml(
        "t",
        "detectors: [k8snode]\nk8snode: {node_from_env_var: SWITCHYARD_TEST_UNSET_NODE}",
    )
    .unwrap();
    assert!(unset.detect().unwrap_err().contains("downward API"));
}
