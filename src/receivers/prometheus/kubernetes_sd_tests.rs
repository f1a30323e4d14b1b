//! kubernetes_sd_configs against the stand-in API server of tests/common (no real one here).

use crate::kubernetes::standin as kube_api;

use super::*;
use kube_api::KubeApi;
use serde_json::json;
use std::time::{Duration, Instant};

fn sd(api: &KubeApi, dir: &std::path::Path, extra: &str) -> KubernetesSdConfig {
    let text = format!("kubeconfig_file: {}\n{extra}", api.kubeconfig(dir).display());
    let cfg: KubernetesSdConfig = crate::config::parse_yaml("t", &text).unwrap();
    cfg.validate().unwrap();
    cfg
}

async fn groups_when(d: &Discovery, pred: impl Fn(&[StaticConfig]) -> bool) -> Vec<StaticConfig> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        // Every watch listed (a join needs its services and pods), then what is asked for.
        let g = d.groups();
        if (d.synced() && pred(&g)) || Instant::now() > end {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn label<'a>(g: &'a StaticConfig, name: &str) -> &'a str {
    g.labels.get(name).map(String::as_str).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_give_one_target_per_container_port_with_prometheus_meta_labels() {
    let api = KubeApi::start("t");
    api.apply(
        "pods",
        kube_api::pod(
            "shop",
            "checkout-abc",
            "10.1.0.7",
            "node-a",
            Some(("ReplicaSet", "checkout-6d8")),
            json!({"app.kubernetes.io/name": "checkout"}),
        ),
    );
    api.apply("pods", kube_api::pod("other", "x", "10.1.0.9", "node-b", None, json!({})));
    let dir = tempfile::tempdir().unwrap();
    let cfg = sd(
        &api,
        dir.path(),
        "role: pod\nnamespaces: {names: [shop]}\nselectors: [{role: pod, field: spec.nodeName=node-a}]\n",
    );
    let d = Discovery::start(&[cfg]).unwrap();
    let g = groups_when(&d, |g| !g.is_empty()).await;
    assert_eq!(g.len(), 1, "only the shop namespace, only node-a: {g:?}");
    let g = &g[0];
    assert_eq!(g.targets, vec!["10.1.0.7:8080".to_string()]);
    assert_eq!(label(g, "__meta_kubernetes_namespace"), "shop");
    assert_eq!(label(g, "__meta_kubernetes_pod_name"), "checkout-abc");
    assert_eq!(label(g, "__meta_kubernetes_pod_label_app_kubernetes_io_name"), "checkout");
    assert_eq!(label(g, "__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name"), "true");
    assert_eq!(label(g, "__meta_kubernetes_pod_annotation_prometheus_io_scrape"), "true");
    assert_eq!(label(g, "__meta_kubernetes_pod_container_name"), "app");
    assert_eq!(label(g, "__meta_kubernetes_pod_container_port_name"), "http");
    assert_eq!(label(g, "__meta_kubernetes_pod_container_port_number"), "8080");
    assert_eq!(label(g, "__meta_kubernetes_pod_container_port_protocol"), "TCP");
    assert_eq!(label(g, "__meta_kubernetes_pod_container_init"), "false");
    assert_eq!(label(g, "__meta_kubernetes_pod_ready"), "true");
    assert_eq!(label(g, "__meta_kubernetes_pod_phase"), "Running");
    assert_eq!(label(g, "__meta_kubernetes_pod_node_name"), "node-a");
    assert_eq!(label(g, "__meta_kubernetes_pod_controller_kind"), "ReplicaSet");
    assert_eq!(label(g, "__meta_kubernetes_pod_controller_name"), "checkout-6d8");
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/api/v1/namespaces/shop/pods?") && r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{requests:?}"
    );
    // A pod that goes takes its target with it.
    api.delete("pods", "shop", "checkout-abc");
    assert!(groups_when(&d, |g| g.is_empty()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_services_and_endpointslices() {
    let api = KubeApi::start("");
    api.apply("nodes", kube_api::node("node-a", "10.0.0.10", json!({"kubernetes.io/os": "linux"})));
    api.apply("services", json!({"kind": "Service", "metadata": {"name": "web", "namespace": "shop", "uid": "s1", "labels": {"tier": "front"}},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}));
    api.apply("pods", kube_api::pod("shop", "web-1", "10.1.0.7", "node-a", None, json!({"app": "web"})));
    api.apply("endpointslices", json!({"kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "web-x7k", "namespace": "shop", "uid": "e1", "labels": {"kubernetes.io/service-name": "web"}},
        "endpoints": [{"addresses": ["10.1.0.7"], "conditions": {"ready": true, "serving": true, "terminating": false}, "nodeName": "node-a",
                       "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "p"}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}));
    // A service with no pods: the API server writes its slice's lists as null.
    api.apply("endpointslices", json!({"kind": "EndpointSlice", "addressType": "IPv4", "endpoints": null, "ports": null,
        "metadata": {"name": "idle-2fz", "namespace": "shop", "uid": "e2", "labels": {"kubernetes.io/service-name": "idle"}, "annotations": null}}));
    let dir = tempfile::tempdir().unwrap();
    let d = Discovery::start(&[
        sd(&api, dir.path(), "role: node\n"),
        sd(&api, dir.path(), "role: service\n"),
        sd(&api, dir.path(), "role: endpointslice\n"),
    ])
    .unwrap();
    let g = groups_when(&d, |g| g.len() == 3 && g.iter().any(|g| g.labels.contains_key("__meta_kubernetes_pod_name")))
        .await;
    let node = g.iter().find(|g| g.labels.contains_key("__meta_kubernetes_node_name")).expect("node target");
    assert_eq!(node.targets, vec!["10.0.0.10:10250".to_string()]);
    assert_eq!(label(node, "__meta_kubernetes_node_label_kubernetes_io_os"), "linux");
    assert_eq!(label(node, "__meta_kubernetes_node_address_InternalIP"), "10.0.0.10");
    assert_eq!(label(node, "instance"), "node-a");
    let svc =
        g.iter().find(|g| g.labels.contains_key("__meta_kubernetes_service_port_number")).expect("service target");
    assert_eq!(svc.targets, vec!["web.shop.svc:80".to_string()]);
    assert_eq!(label(svc, "__meta_kubernetes_service_cluster_ip"), "10.96.0.5");
    assert_eq!(label(svc, "__meta_kubernetes_service_label_tier"), "front");
    let ep =
        g.iter().find(|g| g.labels.contains_key("__meta_kubernetes_endpointslice_name")).expect("endpointslice target");
    assert_eq!(ep.targets, vec!["10.1.0.7:8080".to_string()]);
    assert_eq!(label(ep, "__meta_kubernetes_endpointslice_endpoint_conditions_ready"), "true");
    assert_eq!(label(ep, "__meta_kubernetes_endpointslice_address_target_name"), "web-1");
    assert_eq!(label(ep, "__meta_kubernetes_service_name"), "web", "joined with its service");
    assert_eq!(label(ep, "__meta_kubernetes_pod_label_app"), "web", "joined with its pod");
    assert_eq!(label(ep, "__meta_kubernetes_pod_container_port_name"), "http");
}

#[test]
fn settings_are_checked() {
    let bad =
        |text: &str| crate::config::parse_yaml::<KubernetesSdConfig>("t", text).unwrap().validate().unwrap_err().0;
    assert_eq!(bad("namespaces: {names: [a]}"), "role");
    assert_eq!(bad("role: pod\nselectors: [{role: node, label: a=b}]"), "selectors.0.role");
    assert_eq!(bad("role: pod\napi_server: http://x\nkubeconfig_file: /k"), "api_server");
    assert!(crate::config::parse_yaml::<KubernetesSdConfig>("t", "role: ingress").is_err());
}
