//! Tests of the k8sattributes processor against the stand-in API server of tests/common.

use crate::kubernetes::standin as kube_api;

use super::*;
use crate::pipeline::Origin;
use crate::pipeline::component::{ProcessorContext, ProcessorSettings};
use kube_api::KubeApi;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn config(api: &KubeApi, dir: &std::path::Path, extra: &str) -> K8sAttributesConfig {
    let text = format!("auth_type: kubeConfig\nkube_config_path: {}\n{extra}", api.kubeconfig(dir).display());
    crate::config::parse_yaml("test", &text).unwrap()
}

fn ctx() -> ProcessorContext {
    ProcessorContext { name: "k8sattributes".into(), telemetry: Default::default(), stop: Default::default() }
}

fn batch(client: Option<&str>, attributes: &[(&str, &str)]) -> Batch {
    let resource = Resource {
        attributes: attributes
            .iter()
            .map(|(k, v)| KeyValue { key: k.to_string(), value: string(*v), ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans: vec![Span { name: "s".into(), ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    Batch::from_request(Request::Traces(request))
        .with_origin(Origin { context: None, client: client.map(|c| c.parse().unwrap()) })
}

/// The resource attributes after the processor, as strings.
fn run(p: &mut Box<dyn Processor>, b: Batch) -> HashMap<String, String> {
    let mut out = Vec::new();
    p.process(b, &mut out);
    let mut b = out.pop().unwrap();
    let Ok(Request::Traces(t)) = b.request_mut() else { panic!() };
    t.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|a| {
            let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::ArrayValue(a)) => format!(
                    "{:?}",
                    a.values
                        .iter()
                        .map(|v| match &v.value {
                            Some(any_value::Value::StringValue(s)) => s.clone(),
                            _ => String::new(),
                        })
                        .collect::<Vec<_>>()
                ),
                other => format!("{other:?}"),
            };
            (a.key.clone(), v)
        })
        .collect()
}

/// Runs `p` on fresh batches from `client` until `pred` holds on what it gives (watches are
/// asynchronous).
fn eventually(
    p: &mut Box<dyn Processor>,
    make: impl Fn() -> Batch,
    pred: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let got = run(p, make());
        if pred(&got) || Instant::now() > end {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shop(api: &KubeApi) {
    api.apply("namespaces", kube_api::namespace("shop", json!({"team": "payments"})));
    api.apply("namespaces", kube_api::namespace("kube-system", json!({})));
    api.apply("replicasets", kube_api::replicaset("shop", "checkout-7d9f8b6c5d", "checkout"));
    api.apply(
        "pods",
        kube_api::pod(
            "shop",
            "checkout-7d9f8b6c5d-x2x9k",
            "10.1.0.7",
            "node-a",
            Some(("ReplicaSet", "checkout-7d9f8b6c5d")),
            json!({"app": "checkout", "version": "v2"}),
        ),
    );
    api.apply(
        "pods",
        kube_api::pod("shop", "cart-0", "10.1.0.8", "node-b", Some(("StatefulSet", "cart")), json!({"app": "cart"})),
    );
    api.apply(
        "pods",
        kube_api::pod(
            "batch",
            "report-28920000-abcde",
            "10.1.0.9",
            "node-a",
            Some(("Job", "report-28920000")),
            json!({}),
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_found_by_its_connection_and_its_metadata_added() {
    let api = KubeApi::start("t0ken");
    shop(&api);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &api,
        dir.path(),
        "extract:\n  metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.pod.start_time, k8s.deployment.name, k8s.deployment.uid, k8s.replicaset.name, k8s.node.name, k8s.cluster.uid, k8s.statefulset.name, k8s.cronjob.name, k8s.job.name, k8s.container.name, container.id, container.image.name, container.image.tag, container.image.repo_digests]\n  labels:\n    - {key: app}\n    - {tag_name: team, key: team, from: namespace}\n    - {tag_name: 'l.$1', key_regex: '(ver.*)'}\n",
    );
    cfg.check().unwrap();
    let mut p = cfg.build(&ctx()).unwrap();
    let got = eventually(
        &mut p,
        || batch(Some("10.1.0.7"), &[("service.name", "checkout")]),
        // Every watch has listed: pods, replicasets and namespaces.
        |g| ["k8s.deployment.name", "k8s.cluster.uid", "team"].iter().all(|k| g.contains_key(*k)),
    );
    assert_eq!(got["k8s.pod.ip"], "10.1.0.7");
    assert_eq!(got["k8s.pod.name"], "checkout-7d9f8b6c5d-x2x9k");
    assert_eq!(got["k8s.namespace.name"], "shop");
    assert_eq!(got["k8s.pod.uid"], kube_api::uid_for("pod/shop/checkout-7d9f8b6c5d-x2x9k"));
    assert_eq!(got["k8s.pod.start_time"], "2026-12-01T10:00:00Z", "its creation, as the collector gives it");
    assert_eq!(got["k8s.deployment.name"], "checkout");
    assert_eq!(got["k8s.deployment.uid"], kube_api::uid_for("Deployment/shop/checkout"));
    assert_eq!(got["k8s.replicaset.name"], "checkout-7d9f8b6c5d");
    assert_eq!(got["k8s.node.name"], "node-a");
    assert_eq!(got["k8s.cluster.uid"], kube_api::uid_for("ns/kube-system"));
    assert_eq!(got["k8s.pod.labels.app"], "checkout");
    assert_eq!(got["team"], "payments");
    assert_eq!(got["l.version"], "v2");
    assert_eq!(got["service.name"], "checkout", "what the data has is kept");
    // No container named in the resource: no container attributes.
    assert!(!got.contains_key("container.image.name"), "{got:?}");

    // With the container's name: its image and id.
    let got = run(&mut p, batch(Some("10.1.0.7"), &[("k8s.container.name", "app")]));
    assert_eq!(got["container.image.name"], "registry.example.com/shop/checkout-7d9f8b6c5d-x2x9k");
    assert_eq!(got["container.image.tag"], "1.4.2");
    assert!(got["container.id"].len() == 64, "{got:?}");
    assert!(got["container.image.repo_digests"].contains("@sha256:abab"), "{got:?}");

    // Owners of other kinds.
    let got = run(&mut p, batch(Some("10.1.0.8"), &[]));
    assert_eq!(got["k8s.statefulset.name"], "cart");
    assert!(!got.contains_key("k8s.deployment.name"));
    let got = run(&mut p, batch(Some("10.1.0.9"), &[]));
    assert_eq!(got["k8s.job.name"], "report-28920000");
    assert_eq!(got["k8s.cronjob.name"], "report");

    // An address no pod has: only the address, and a miss counted.
    let got = run(&mut p, batch(Some("10.9.9.9"), &[]));
    assert_eq!(got.len(), 1, "{got:?}");
    // The lists carried the token; pods, replicasets and namespaces were watched.
    let requests = api.requests();
    for path in ["/api/v1/pods?", "/apis/apps/v1/replicasets?", "/api/v1/namespaces?"] {
        assert!(requests.iter().any(|r| r.contains(path) && r.contains("watch=1")), "{path} not watched: {requests:?}");
    }
    assert!(!requests.iter().any(|r| r.contains("/nodes")), "nodes are not needed: {requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_add_change_and_delete_pods_and_a_410_lists_again() {
    let api = KubeApi::start("");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &api,
        dir.path(),
        "pod_association:\n  - sources: [{from: resource_attribute, name: k8s.pod.ip}]\n  - sources: [{from: resource_attribute, name: k8s.pod.name}, {from: resource_attribute, name: k8s.namespace.name}]\n",
    );
    let mut p = cfg.build(&ctx()).unwrap();
    let by_ip = || batch(None, &[("k8s.pod.ip", "10.2.0.1")]);
    assert!(api.wait_for_request(|r| r.contains("watch=1"), Duration::from_secs(5)));
    // Added after the list: the watch brings it.
    api.apply("pods", kube_api::pod("web", "front-1", "10.2.0.1", "node-a", None, json!({})));
    let got = eventually(&mut p, by_ip, |g| g.contains_key("k8s.pod.name"));
    assert_eq!(got["k8s.pod.name"], "front-1");
    // By name and namespace together.
    let got = run(&mut p, batch(None, &[("k8s.pod.name", "front-1"), ("k8s.namespace.name", "web")]));
    assert_eq!(got["k8s.pod.uid"], kube_api::uid_for("pod/web/front-1"));
    let got = run(&mut p, batch(None, &[("k8s.pod.name", "front-1"), ("k8s.namespace.name", "other")]));
    assert!(!got.contains_key("k8s.pod.uid"));
    // Deleted: still matched during the grace period (late data).
    api.delete("pods", "web", "front-1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(run(&mut p, by_ip())["k8s.pod.name"], "front-1");
    // The address taken by a new pod: the new one wins.
    api.apply("pods", kube_api::pod("web", "front-2", "10.2.0.1", "node-a", None, json!({})));
    let got = eventually(&mut p, by_ip, |g| g.get("k8s.pod.name").is_some_and(|n| n == "front-2"));
    assert_eq!(got["k8s.pod.name"], "front-2");
    // History lost (410 Gone): a new list brings what changed meanwhile.
    api.expire();
    api.apply("pods", kube_api::pod("web", "front-3", "10.2.0.3", "node-a", None, json!({})));
    let got = eventually(&mut p, || batch(None, &[("k8s.pod.ip", "10.2.0.3")]), |g| g.contains_key("k8s.pod.name"));
    assert_eq!(got["k8s.pod.name"], "front-3");
    let lists = api.requests().iter().filter(|r| r.contains("/api/v1/pods?") && !r.contains("watch=1")).count();
    assert!(lists >= 2, "listed again after 410: {:?}", api.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_watches_only_its_node() {
    let api = KubeApi::start("");
    shop(&api);
    api.apply("nodes", kube_api::node("node-a", "10.0.0.10", json!({"topology.kubernetes.io/zone": "z1"})));
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: no other test reads this variable.
    unsafe { std::env::set_var("SWITCHYARD_TEST_NODE_A", "node-a") };
    let cfg = config(
        &api,
        dir.path(),
        "filter: {node_from_env_var: SWITCHYARD_TEST_NODE_A}\nextract:\n  metadata: [k8s.pod.name, k8s.node.uid]\n  labels: [{tag_name: zone, key: topology.kubernetes.io/zone, from: node}]\n",
    );
    let mut p = cfg.build(&ctx()).unwrap();
    let got = eventually(&mut p, || batch(Some("10.1.0.7"), &[]), |g| g.contains_key("zone"));
    assert_eq!(got["k8s.pod.name"], "checkout-7d9f8b6c5d-x2x9k");
    assert_eq!(got["zone"], "z1");
    assert_eq!(got["k8s.node.uid"], kube_api::uid_for("node/node-a"));
    // cart-0 runs on node-b: not listed by this agent.
    assert!(!run(&mut p, batch(Some("10.1.0.8"), &[])).contains_key("k8s.pod.name"));
    let requests = api.requests();
    assert!(
        requests.iter().any(|r| r.contains("/api/v1/pods?") && r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("/api/v1/nodes?") && r.contains("fieldSelector=metadata.name%3Dnode-a")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_adds_the_address_only_and_asks_nothing() {
    let cfg: K8sAttributesConfig = crate::config::parse_yaml("t", "passthrough: true\n").unwrap();
    let mut p = cfg.build(&ctx()).unwrap();
    let got = run(&mut p, batch(Some("10.3.0.4"), &[]));
    assert_eq!(got["k8s.pod.ip"], "10.3.0.4");
    // An address the data already has is kept.
    assert_eq!(run(&mut p, batch(Some("10.3.0.4"), &[("k8s.pod.ip", "10.3.0.5")]))["k8s.pod.ip"], "10.3.0.5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_metadata_fails_the_start_when_the_api_refuses() {
    let api = KubeApi::start("right");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!("current-context: c\nclusters:\n- name: s\n  cluster: {{server: '{}'}}\ncontexts:\n- name: c\n  context: {{cluster: s, user: u}}\nusers:\n- name: u\n  user: {{token: wrong}}\n", api.url()),
    )
    .unwrap();
    let text = format!(
        "auth_type: kubeConfig\nkube_config_path: {}\nwait_for_metadata: true\nwait_for_metadata_timeout: 500ms\n",
        path.display()
    );
    let cfg: K8sAttributesConfig = crate::config::parse_yaml("t", &text).unwrap();
    let err = cfg.build(&ctx()).err().unwrap();
    assert!(err.contains("wait_for_metadata_timeout"), "{err}");
}

#[test]
fn settings_are_checked_with_the_key_named() {
    let bad = |text: &str| -> String {
        let cfg: K8sAttributesConfig = crate::config::parse_yaml("t", text).unwrap();
        cfg.check().unwrap_err().key
    };
    assert_eq!(bad("extract: {metadata: [k8s.pod.nam]}"), "extract.metadata.0");
    assert_eq!(bad("extract: {labels: [{key: a, key_regex: b}]}"), "extract.labels.0");
    assert_eq!(bad("extract: {annotations: [{key_regex: '('}]}"), "extract.annotations.0.key_regex");
    assert_eq!(
        bad("pod_association: [{sources: [{from: resource_attribute, name: k8s.pod.foo}]}]"),
        "pod_association.0.sources.0.name"
    );
    assert_eq!(bad("pod_association: [{sources: []}]"), "pod_association.0.sources");
    assert_eq!(bad("filter: {fields: [{key: spec.nodeName, op: exists}]}"), "filter.fields.0.op");
    assert_eq!(bad("context: prod"), "context");
    assert!(crate::config::parse_yaml::<K8sAttributesConfig>("t", "auth_type: token").is_err());
    let cfg: K8sAttributesConfig = crate::config::parse_yaml("t", "").unwrap();
    assert_eq!(cfg.extract.metadata, config::DEFAULT_METADATA);
    assert_eq!(cfg.exclude.pods.len(), 2);
}

#[test]
fn names_are_taken_apart_as_the_collector_does() {
    assert_eq!(image_parts("nginx"), ("nginx", Some("latest")));
    assert_eq!(image_parts("localhost:5000/app:1.2"), ("localhost:5000/app", Some("1.2")));
    assert_eq!(image_parts("localhost:5000/app"), ("localhost:5000/app", Some("latest")));
    assert_eq!(image_parts("ghcr.io/o/t:0.1@sha256:abc"), ("ghcr.io/o/t", Some("0.1")));
    assert_eq!(image_parts("ghcr.io/o/t@sha256:abc"), ("ghcr.io/o/t", None));
    assert_eq!(deployment_from_replicaset("checkout-7d9f8b6c5d"), Some("checkout"));
    assert_eq!(cronjob_from_job("report-28920000"), Some("report"));
    assert_eq!(cronjob_from_job("manual-run"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_associate_as_the_collector_and_skip_jaeger_agents_and_ignored_pods() {
    let api = KubeApi::start("");
    api.apply("pods", kube_api::pod("web", "app-1", "10.5.0.1", "n", None, json!({})));
    api.apply("pods", kube_api::pod("tracing", "jaeger-agent-x7k2p", "10.5.0.2", "n", None, json!({})));
    let mut ignored = kube_api::pod("web", "quiet-1", "10.5.0.3", "n", None, json!({}));
    ignored["metadata"]["annotations"]["opentelemetry.io/k8s-processor/ignore"] = json!("true");
    api.apply("pods", ignored);
    let dir = tempfile::tempdir().unwrap();
    let mut p = config(&api, dir.path(), "").build(&ctx()).unwrap();
    // Through a jaeger agent that kept the pod's address: the attribute, not the connection.
    let got = eventually(
        &mut p,
        || batch(Some("10.5.0.2"), &[("k8s.pod.ip", "10.5.0.1")]),
        |g| g.contains_key("k8s.pod.name"),
    );
    assert_eq!(got["k8s.pod.name"], "app-1");
    // The jaeger agent itself (excluded by default, by a part of its name) and an ignored pod.
    assert!(!run(&mut p, batch(Some("10.5.0.2"), &[])).contains_key("k8s.pod.name"));
    assert!(!run(&mut p, batch(Some("10.5.0.3"), &[])).contains_key("k8s.pod.name"));
    // host.name when it is an address; an empty attribute is filled.
    assert_eq!(run(&mut p, batch(None, &[("host.name", "10.5.0.1")]))["k8s.pod.name"], "app-1");
    assert_eq!(
        run(&mut p, batch(None, &[("ip", "10.5.0.1"), ("k8s.namespace.name", "")]))["k8s.namespace.name"],
        "web"
    );
    assert!(!run(&mut p, batch(None, &[("host.name", "web-host")])).contains_key("k8s.pod.name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_error_other_than_410_waits_and_watches_on_without_listing_again() {
    let api = KubeApi::start("");
    let dir = tempfile::tempdir().unwrap();
    let mut p = config(&api, dir.path(), "pod_association: [{sources: [{from: connection}]}]").build(&ctx()).unwrap();
    assert!(api.wait_for_request(|r| r.contains("/api/v1/pods?") && r.contains("watch=1"), Duration::from_secs(5)));
    let count = |what: &str| {
        api.requests()
            .iter()
            .filter(|r| r.contains("/api/v1/pods?") && (r.contains("watch=1") == (what == "watch")))
            .count()
    };
    let lists = count("list");
    for _ in 0..5 {
        api.fail_watches(500);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count("list"), lists, "a 500 is not a reason to list again");
    assert!(count("watch") <= 5, "paused between attempts, not a tight loop: {:?}", api.requests());
    // It still follows changes afterwards.
    api.apply("pods", kube_api::pod("web", "late-1", "10.5.1.1", "n", None, json!({})));
    let got = eventually(&mut p, || batch(Some("10.5.1.1"), &[]), |g| g.contains_key("k8s.pod.name"));
    assert_eq!(got["k8s.pod.name"], "late-1");
}
