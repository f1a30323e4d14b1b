//! switchyard on Kubernetes, against a STAND-IN API server (tests/common/kube_api.rs: no real
//! one can be installed here): the k8sattributes processor gives real Python SDK data and
//! container log lines the metadata of the pod they came from.

mod common;

use common::kube_api::{self, KubeApi};
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

/// The resource attributes of every resource in an exported JSON file, as strings.
fn resources(path: &std::path::Path, list: &str) -> Vec<HashMap<String, String>> {
    json_lines(path)
        .iter()
        .flat_map(|l| l[list].as_array().cloned().unwrap_or_default())
        .map(|r| {
            r["resource"]["attributes"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|a| {
                    let v = &a["value"];
                    let s = v["stringValue"].as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    (a["key"].as_str().unwrap().to_string(), s)
                })
                .collect()
        })
        .collect()
}

fn cluster(api: &KubeApi) {
    api.apply("namespaces", kube_api::namespace("shop", json!({"team": "payments"})));
    api.apply("replicasets", kube_api::replicaset("shop", "checkout-7d9f8b6c5d", "checkout"));
    api.apply("replicasets", kube_api::replicaset("shop", "cart-5c6b7d8f9", "cart"));
    // The SDK runs on this machine: its "pod" has the loopback address (matched by connection).
    api.apply(
        "pods",
        kube_api::pod(
            "shop",
            "checkout-7d9f8b6c5d-x2x9k",
            "127.0.0.1",
            "node-a",
            Some(("ReplicaSet", "checkout-7d9f8b6c5d")),
            json!({"app": "checkout"}),
        ),
    );
    api.apply(
        "pods",
        kube_api::pod(
            "shop",
            "cart-5c6b7d8f9-q8w7e",
            "10.1.0.8",
            "node-a",
            Some(("ReplicaSet", "cart-5c6b7d8f9")),
            json!({"app": "cart"}),
        ),
    );
}

#[test]
fn sdk_spans_and_container_logs_get_the_metadata_of_their_pod() {
    let Some(python) = python_peer() else { return };
    let api = KubeApi::start("s3cret-token");
    cluster(&api);
    let logs = tempfile::tempdir().unwrap();
    let cart_uid = kube_api::uid_for("pod/shop/cart-5c6b7d8f9-q8w7e");
    let log_dir = logs.path().join(format!("shop_cart-5c6b7d8f9-q8w7e_{cart_uid}/app"));
    std::fs::create_dir_all(&log_dir).unwrap();
    let kubeconfig = api.kubeconfig(logs.path());
    let gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
  filelog:
    include: [{logs}/*/*/*.log]
    start_at: beginning
    poll_interval: 50ms
    operators:
      - type: container
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {kubeconfig}
    wait_for_metadata: true
    extract:
      metadata: [k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.deployment.name, k8s.node.name, container.image.name, container.image.tag]
      labels: [{{tag_name: app, key: app}}, {{tag_name: team, key: team, from: namespace}}]
    pod_association:
      - sources: [{{from: resource_attribute, name: k8s.pod.ip}}]
      - sources: [{{from: resource_attribute, name: k8s.pod.uid}}]
      - sources: [{{from: connection}}]
exporters:
  file/traces:
    path: {{dir}}/traces.jsonl
  file/logs:
    path: {{dir}}/logs.jsonl
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [k8sattributes]
      exporters: [file/traces]
    logs:
      receivers: [filelog]
      processors: [k8sattributes]
      exporters: [file/logs]
"#,
        logs = logs.path().display(),
        kubeconfig = kubeconfig.display()
    ));
    // From "the checkout pod": matched by the connection's address.
    python_sends(&python, gw.grpc, "traces", 2, &gw.dir.path().join("a.json"));
    // Through an agent that put the pod's address on the resource: matched by k8s.pod.ip.
    let out = Command::new(&python)
        .arg(repo().join("tests/peers/python/otel_send.py"))
        .args(["--signal", "traces", "--protocol", "grpc", "--count", "1", "--resource", "k8s.pod.ip=10.1.0.8"])
        .args(["--endpoint", &format!("http://127.0.0.1:{}", gw.grpc), "--out"])
        .arg(gw.dir.path().join("b.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The cart container's log lines, as the kubelet writes them.
    std::fs::write(log_dir.join("0.log"), "2026-12-08T10:00:00.000000001Z stdout F cart ready\n").unwrap();

    let traces = gw.path("traces.jsonl");
    assert!(eventually(Duration::from_secs(10), || resources(&traces, "resourceSpans").len() >= 2), "{}", gw.log());
    let all = resources(&traces, "resourceSpans");
    let checkout =
        all.iter().find(|r| r.get("k8s.pod.ip").is_some_and(|ip| ip == "127.0.0.1")).expect("connection-matched");
    assert_eq!(checkout["k8s.pod.name"], "checkout-7d9f8b6c5d-x2x9k", "{checkout:?}");
    assert_eq!(checkout["k8s.deployment.name"], "checkout");
    assert_eq!(checkout["k8s.namespace.name"], "shop");
    assert_eq!(checkout["k8s.node.name"], "node-a");
    assert_eq!(checkout["app"], "checkout");
    assert_eq!(checkout["team"], "payments");
    assert_eq!(checkout["service.name"], "py-sender", "what the SDK sent is kept");
    let cart = all.iter().find(|r| r.get("k8s.pod.ip").is_some_and(|ip| ip == "10.1.0.8")).expect("attribute-matched");
    assert_eq!(cart["k8s.deployment.name"], "cart", "{cart:?}");
    assert_eq!(cart["k8s.pod.uid"], cart_uid);

    let logs_out = gw.path("logs.jsonl");
    assert!(eventually(Duration::from_secs(10), || !resources(&logs_out, "resourceLogs").is_empty()), "{}", gw.log());
    let log = &resources(&logs_out, "resourceLogs")[0];
    assert_eq!(log["k8s.deployment.name"], "cart", "{log:?}");
    assert_eq!(log["app"], "cart");
    assert_eq!(log["container.image.name"], "registry.example.com/shop/cart-5c6b7d8f9-q8w7e");
    assert_eq!(log["container.image.tag"], "1.4.2");
    // The stand-in saw the token on every request, and the processor's table holds both pods.
    assert!(api.requests().iter().any(|r| r.contains("/api/v1/pods?") && r.contains("watch=1")));
    assert_eq!(gw.metric("otelcol_otelsvc_k8s_pod_table_size", &[]), 2.0);
}

#[test]
fn a_wrong_token_is_named_and_wait_for_metadata_stops_the_start() {
    let api = KubeApi::start("right-token");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("current-context: c\nclusters:\n- name: s\n  cluster: {{server: '{}'}}\ncontexts:\n- name: c\n  context: {{cluster: s, user: u}}\nusers:\n- name: u\n  user: {{token: wrong-token}}\n", api.url()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{}\nprocessors:\n  k8sattributes:\n    auth_type: kubeConfig\n    kube_config_path: {}\n    wait_for_metadata: true\n    wait_for_metadata_timeout: 2s\nexporters:\n  debug:\nservice:\n  telemetry: {{metrics: {{address: \"127.0.0.1:{}\"}}}}\n  pipelines:\n    traces: {{receivers: [otlp], processors: [k8sattributes], exporters: [debug]}}\n",
            free_port(),
            kubeconfig.display(),
            free_port()
        ),
    )
    .unwrap();
    let bin = std::env::var("SWITCHYARD_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchyard").to_string());
    let out = Command::new(bin).arg("--config").arg(dir.path().join("config.yaml")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("401") && err.contains("refused the credentials"), "{err}");
    assert!(err.contains("wait_for_metadata_timeout"), "{err}");
    assert!(!err.contains("wrong-token"), "the token is never printed: {err}");
    let pods = err.lines().filter(|l| l.contains("cannot list") && l.contains("resource=/api/v1/pods ")).count();
    assert_eq!(pods, 1, "an outage is logged once, not per attempt: {err}");
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// switchyard with k8sattributes synced with `api`: its resident and peak memory in KiB.
fn memory_with(api: &KubeApi) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let mut gw = Gateway::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{{grpc}}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {}
    wait_for_metadata: true
    wait_for_metadata_timeout: 120s
    extract:
      labels: [{{tag_name: app, key: app}}]
exporters:
  debug:
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [k8sattributes], exporters: [debug]}}
"#,
        kubeconfig.display()
    ));
    std::thread::sleep(Duration::from_millis(500));
    let pid = gw.pid();
    let figures = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    gw.stop();
    figures
}

/// The issue's target: a stand-in cluster of 10,000 realistic pods (about 4 KB of JSON each,
/// managed fields and a kubectl annotation included) and their 1,000 ReplicaSets costs
/// switchyard under 50 MiB of resident memory over the same switchyard watching an empty
/// cluster. Figures in docs/BENCHMARKS.md ("k8sattributes memory").
#[test]
fn ten_thousand_pods_cost_under_50_mib() {
    let empty = KubeApi::start("");
    let (base_rss, base_hwm) = memory_with(&empty);
    let api = KubeApi::start("");
    api.apply_all(
        "replicasets",
        (0..1000).map(|d| {
            kube_api::replicaset(&format!("ns-{}", d % 50), &format!("app-{d}-6d8f7c9b5"), &format!("app-{d}"))
        }),
    );
    api.apply_all(
        "pods",
        (0..10_000).map(|i| {
            let d = i % 1000;
            kube_api::pod(
                &format!("ns-{}", d % 50),
                &format!("app-{d}-6d8f7c9b5-{i:05}"),
                &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                &format!("node-{}", i % 100),
                Some(("ReplicaSet", &format!("app-{d}-6d8f7c9b5"))),
                json!({"app": format!("app-{d}"), "pod-template-hash": "6d8f7c9b5", "tier": "backend"}),
            )
        }),
    );
    let (rss, hwm) = memory_with(&api);
    let added = rss.saturating_sub(base_rss) / 1024;
    eprintln!(
        "k8sattributes, 10,000 pods + 1,000 replicasets: RSS {} MiB (empty cluster {} MiB, added {added} MiB); peak {} MiB (empty {} MiB)",
        rss / 1024,
        base_rss / 1024,
        hwm / 1024,
        base_hwm / 1024
    );
    assert!(added < 50, "10,000 pods added {added} MiB of resident memory (target < 50)");
}

/// The usual agent recipe: Prometheus discovery of the node's pods, scraping those annotated
/// `prometheus.io/scrape: "true"` on their `prometheus.io/port`, pod labels and names kept.
#[test]
fn kubernetes_discovery_scrapes_the_annotated_pod_that_serves_node_exporter() {
    let Some(exporter) = common::prom::NodeExporter::start() else { return };
    let api = KubeApi::start("tok");
    let mut annotated = kube_api::pod(
        "monitoring",
        "node-exporter-7x2kq",
        "127.0.0.1",
        "node-a",
        Some(("DaemonSet", "node-exporter")),
        json!({"app": "node-exporter"}),
    );
    annotated["metadata"]["annotations"]["prometheus.io/port"] = json!(exporter.port().to_string());
    api.apply("pods", annotated);
    // Not annotated for scraping: never scraped (its port would refuse anyway).
    let mut quiet = kube_api::pod("monitoring", "quiet-0", "127.0.0.1", "node-a", None, json!({"app": "quiet"}));
    quiet["metadata"]["annotations"]["prometheus.io/scrape"] = json!("false");
    api.apply("pods", quiet);
    // On another node: an agent's selector leaves it out.
    api.apply(
        "pods",
        kube_api::pod("monitoring", "elsewhere-0", "127.0.0.2", "node-b", None, json!({"app": "elsewhere"})),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let gw = Gateway::start(&format!(
        r#"
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: kubernetes-pods
          scrape_interval: 1s
          kubernetes_sd_configs:
            - role: pod
              kubeconfig_file: {kubeconfig}
              selectors:
                - role: pod
                  field: spec.nodeName=node-a
          relabel_configs:
            - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
              action: keep
              regex: "true"
            - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]
              action: replace
              regex: ([^:]+)(?::\d+)?;(\d+)
              replacement: $1:$2
              target_label: __address__
            - action: labelmap
              regex: __meta_kubernetes_pod_label_(.+)
            - source_labels: [__meta_kubernetes_namespace]
              target_label: namespace
            - source_labels: [__meta_kubernetes_pod_name]
              target_label: pod
exporters:
  file:
    path: {{dir}}/metrics.jsonl
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    metrics: {{receivers: [prometheus], exporters: [file]}}
"#,
        kubeconfig = kubeconfig.display()
    ));
    let out = gw.path("metrics.jsonl");
    let fixture = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .flat_map(|l| l["resourceMetrics"].as_array().cloned().unwrap_or_default())
            .find(|rm| rm.to_string().contains("switchyard_fixture_request_duration_seconds"))
    };
    assert!(eventually(Duration::from_secs(15), || fixture(&json_lines(&out)).is_some()), "{}", gw.log());
    let rm = fixture(&json_lines(&out)).unwrap();
    let text = rm.to_string();
    let resource: HashMap<String, String> = rm["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"]["stringValue"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(resource["service.name"], "kubernetes-pods", "{resource:?}");
    assert_eq!(resource["service.instance.id"], format!("127.0.0.1:{}", exporter.port()), "the annotation's port");
    for (key, value) in [("namespace", "monitoring"), ("pod", "node-exporter-7x2kq"), ("app", "node-exporter")] {
        let kv = format!(r#"{{"key":"{key}","value":{{"stringValue":"{value}"}}}}"#);
        assert!(text.contains(&kv), "{key}={value} missing: {text}");
    }
    // Only that pod was scraped: the others' names appear nowhere.
    let all = std::fs::read_to_string(&out).unwrap();
    assert!(!all.contains("quiet-0") && !all.contains("elsewhere-0"));
    assert!(api.requests().iter().any(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")));
}

/// A reload that changes the pipeline around k8sattributes keeps its watches (no new list of
/// the cluster); one that changes its settings starts new ones, and the new settings act.
#[test]
fn reloads_keep_the_watches_unless_the_settings_change() {
    let api = KubeApi::start("tok");
    cluster(&api);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let config = |extra_exporter: bool, metadata: &str| {
        format!(
            r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{{http}}
processors:
  k8sattributes:
    auth_type: kubeConfig
    kube_config_path: {kubeconfig}
    wait_for_metadata: true
    extract: {{metadata: [{metadata}]}}
    pod_association: [{{sources: [{{from: resource_attribute, name: k8s.pod.ip}}]}}]
exporters:
  file:
    path: {{dir}}/out.jsonl
  debug:
service:
  telemetry: {{metrics: {{address: "127.0.0.1:{{metrics}}"}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [k8sattributes], exporters: [file{}]}}
"#,
            if extra_exporter { ", debug" } else { "" },
            kubeconfig = kubeconfig.display()
        )
    };
    let mut gw = Gateway::start(&config(false, "k8s.pod.name"));
    let pod_lists = || api.requests().iter().filter(|r| r.contains("/api/v1/pods?") && !r.contains("watch=1")).count();
    assert_eq!(pod_lists(), 1);
    gw.rewrite(&config(true, "k8s.pod.name"));
    assert_eq!(gw.reload(), "success");
    assert_eq!(pod_lists(), 1, "same settings: the running watches are kept");
    gw.rewrite(&config(true, "k8s.pod.name, k8s.deployment.name"));
    assert_eq!(gw.reload(), "success");
    assert_eq!(pod_lists(), 2, "new settings: new watches");
    // The new settings act: the deployment comes (through the ReplicaSets now watched).
    let mut span = common::span("after-reload", vec![7; 16]);
    span.attributes.clear();
    let body = {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
        use prost::Message;
        let kv = KeyValue {
            key: "k8s.pod.ip".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("10.1.0.8".into())) }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![kv], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    };
    let r = http_request("POST", gw.http, "/v1/traces", &[("Content-Type", "application/x-protobuf")], &body).unwrap();
    assert_eq!(r.status, 200);
    let out = gw.path("out.jsonl");
    assert!(eventually(Duration::from_secs(10), || !resources(&out, "resourceSpans").is_empty()), "{}", gw.log());
    let got = &resources(&out, "resourceSpans")[0];
    assert_eq!(got["k8s.deployment.name"], "cart", "{got:?}");
    assert_eq!(got["k8s.pod.name"], "cart-5c6b7d8f9-q8w7e");
    gw.stop();
}
