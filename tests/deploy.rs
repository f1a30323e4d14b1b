//! The Kubernetes manifests in deploy/kubernetes (see docs/deployment.md): every overlay renders
//! with the kustomize built into Debian's kubectl 1.20 (the oldest the manifests are written
//! for), every rendered document validates against the Kubernetes 1.30 schemas with
//! kubernetes-validate `--strict` (unknown fields are errors), the properties the guide promises
//! hold, and every embedded switchyard configuration passes `switchyard validate --strict` with
//! exactly the environment its pod gives it. No API server can run here: the checks are on what
//! `kubectl apply -k` would send.
mod common;

use common::repo;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const OVERLAYS: [&str; 3] = ["sidecar", "agent", "gateway"];

struct Tools {
    kubectl: PathBuf,
    python: PathBuf,
    validate: PathBuf,
}

/// The peers scripts/install-peers.sh installs; `None` (the test skips) when one is missing,
/// a failure under SWITCHYARD_REQUIRE_PEERS=1.
fn tools() -> Option<Tools> {
    let kubectl = common::peer(
        &repo().join("target/peers/kubernetes-client/usr/bin/kubectl"),
        "kubectl 1.20 (Debian kubernetes-client)",
    )?;
    let python = common::python_peer()?;
    let validate = common::peer(&repo().join("target/peers/venv/bin/kubernetes-validate"), "kubernetes-validate")?;
    Some(Tools { kubectl, python, validate })
}

fn run(cmd: &mut Command, stdin: &str) -> (bool, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The documents of a YAML stream, as JSON (PyYAML from the peers' venv: the crate has no YAML
/// library that builds values).
fn yaml_documents(tools: &Tools, yaml: &str) -> Vec<Value> {
    let script =
        "import json, sys, yaml\njson.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)";
    let (ok, out, err) = run(Command::new(&tools.python).args(["-c", script]), yaml);
    assert!(ok, "YAML does not parse: {err}");
    match serde_json::from_str(&out).expect("JSON from python") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

struct Rendered {
    yaml: String,
    docs: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "expected one {kind}, found {}", all.len());
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name}; have {:?}", self.names()))
    }

    fn names(&self) -> Vec<String> {
        self.docs.iter().map(|d| format!("{}/{}", str_of(&d["kind"]), str_of(&d["metadata"]["name"]))).collect()
    }

    /// Pod templates of the workloads: (workload name, pod spec).
    fn pod_specs(&self) -> Vec<(String, &Value)> {
        self.docs
            .iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "DaemonSet" | "StatefulSet")))
            .map(|d| (str_of(&d["metadata"]["name"]), &d["spec"]["template"]["spec"]))
            .collect()
    }

    /// The switchyard configuration a switchyard container runs: the ConfigMap mounted at the
    /// directory of its `--config` file.
    fn config_of(&self, pod: &Value, container: &Value) -> (String, String) {
        let args = strings(&container["args"]);
        let at = args.iter().position(|a| a == "--config").expect("--config in args");
        let file = Path::new(&args[at + 1]);
        let dir = file.parent().expect("config directory").to_str().expect("utf-8");
        let mount = list(&container["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        let volume = list(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume {}", mount["name"]));
        let cm_name = str_of(&volume["configMap"]["name"]);
        let cm = self.named("ConfigMap", &cm_name);
        let key = file.file_name().expect("file name").to_str().expect("utf-8");
        let text = cm["data"][key].as_str().unwrap_or_else(|| panic!("ConfigMap {cm_name} has no {key}"));
        (cm_name, text.to_string())
    }
}

fn render(tools: &Tools, overlay: &str) -> Rendered {
    let dir = repo().join("deploy/kubernetes/overlays").join(overlay);
    let out = Command::new(&tools.kubectl).arg("kustomize").arg(&dir).output().expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("UTF-8 manifests");
    let docs = yaml_documents(tools, &yaml);
    assert!(!docs.is_empty(), "{overlay} renders nothing");
    Rendered { yaml, docs }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected a string, got {v}")).to_string()
}

fn list(v: &Value) -> &Vec<Value> {
    static EMPTY: Vec<Value> = Vec::new();
    v.as_array().unwrap_or(&EMPTY)
}

fn strings(v: &Value) -> Vec<String> {
    list(v).iter().map(str_of).collect()
}

/// Every container of a pod, init containers first: (is it an init container, container).
fn containers(pod: &Value) -> Vec<(bool, &Value)> {
    list(&pod["initContainers"])
        .iter()
        .map(|c| (true, c))
        .chain(list(&pod["containers"]).iter().map(|c| (false, c)))
        .collect()
}

fn is_switchyard(container: &Value) -> bool {
    let image = str_of(&container["image"]);
    image == "switchyard" || image.starts_with("switchyard:") || image.contains("/switchyard:")
}

/// A Kubernetes memory quantity in bytes (the binary and decimal suffixes the manifests use).
fn bytes(quantity: &str) -> f64 {
    let units = [("Ki", 1024f64), ("Mi", 1024f64.powi(2)), ("Gi", 1024f64.powi(3)), ("k", 1e3), ("M", 1e6), ("G", 1e9)];
    for (suffix, factor) in units {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<f64>().expect("quantity") * factor;
        }
    }
    quantity.parse().expect("quantity")
}

fn shutdown_timeout(config: &Value) -> Duration {
    config["service"]["shutdown_timeout"]
        .as_str()
        .map_or(Duration::from_secs(10), |s| humantime::parse_duration(s).expect("shutdown_timeout"))
}

fn seconds(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("expected a number of seconds, got {v}"))
}

fn http_probe(container: &Value, probe: &str) -> (String, u64) {
    let get = &container[probe]["httpGet"];
    assert!(get.is_object(), "{}: no {probe} httpGet", container["name"]);
    (str_of(&get["path"]), get["port"].as_u64().unwrap_or_else(|| panic!("{probe} port is a number: {}", get["port"])))
}

#[test]
fn every_overlay_renders_with_kubectl_1_20_and_validates_against_kubernetes_1_30() {
    let Some(tools) = tools() else { return };
    // Strict validation is in effect: a misspelled field is refused.
    let typo =
        "apiVersion: v1\nkind: Service\nmetadata: {name: typo}\nspec:\n  clusterIp: None\n  ports: [{port: 4317}]\n";
    let (ok, out, err) =
        run(Command::new(&tools.validate).args(["--kubernetes-version", "1.30.0", "--strict", "-"]), typo);
    assert!(!ok && format!("{out}{err}").contains("clusterIp"), "a misspelled field passed: {out}{err}");

    for overlay in OVERLAYS {
        let rendered = render(&tools, overlay);
        let (ok, out, err) = run(
            Command::new(&tools.validate).args(["--kubernetes-version", "1.30.0", "--strict", "-"]),
            &rendered.yaml,
        );
        let report = format!("{out}{err}");
        assert!(ok, "{overlay}: kubernetes-validate failed:\n{report}");
        // An unknown kind or apiVersion is only a warning to kubernetes-validate: not here.
        assert!(!report.contains("WARN") && !report.contains("ERROR"), "{overlay}:\n{report}");
        let passed = report.lines().filter(|l| l.contains("passed for resource")).count();
        assert_eq!(passed, rendered.docs.len(), "{overlay}: every document is checked:\n{report}");
        eprintln!("{overlay}: {} documents valid for Kubernetes 1.30: {:?}", passed, rendered.names());
    }
}

#[test]
fn every_container_is_non_root_read_only_and_bounded_and_switchyard_is_probed_and_drains_in_time() {
    let Some(tools) = tools() else { return };
    for overlay in OVERLAYS {
        let rendered = render(&tools, overlay);
        let pods = rendered.pod_specs();
        assert!(!pods.is_empty(), "{overlay}: no workload");
        let mut found = 0;
        for (workload, pod) in pods {
            let grace = seconds(&pod["terminationGracePeriodSeconds"]);
            for (init, c) in containers(pod) {
                let at = format!("{overlay}: {workload}/{}", str_of(&c["name"]));
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}: allowPrivilegeEscalation");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}: readOnlyRootFilesystem");
                assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{at}: capabilities.drop");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{at}: seccompProfile");
                let limits = &c["resources"]["limits"];
                assert!(limits["memory"].is_string() && limits["cpu"].is_string(), "{at}: limits");
                let requests = &c["resources"]["requests"];
                assert!(requests["memory"].is_string() && requests["cpu"].is_string(), "{at}: requests");
                if !is_switchyard(c) {
                    if sc["runAsUser"] == 0 {
                        // The agent's one root step: making the hostPath its own, nothing else.
                        assert!(init, "{at}: only an init container may run as root");
                        assert_eq!(strings(&sc["capabilities"]["add"]), ["CHOWN", "FOWNER"], "{at}");
                    } else {
                        assert_eq!(sc["runAsNonRoot"], true, "{at}: runAsNonRoot");
                    }
                    continue;
                }
                found += 1;
                assert_eq!(sc["runAsNonRoot"], true, "{at}: runAsNonRoot");
                assert_eq!(sc["runAsUser"], 65532, "{at}: runAsUser");
                assert!(sc["capabilities"]["add"].is_null(), "{at}: no capability added");

                for probe in ["readinessProbe", "livenessProbe"] {
                    assert_eq!(http_probe(c, probe), ("/".to_string(), 13133), "{at}: {probe}");
                }
                let (cm, text) = rendered.config_of(pod, c);
                let config = yaml_documents(&tools, &text).remove(0);
                let health = str_of(&config["extensions"]["health_check"]["endpoint"]);
                assert_eq!(health, "0.0.0.0:13133", "{at}: health_check must answer the kubelet on the pod IP");
                assert!(strings(&config["service"]["extensions"]).contains(&"health_check".into()), "{at}");

                // memory_limiter in every pipeline, holding below the container's memory limit.
                let limit = bytes(&str_of(&limits["memory"]));
                let ml = &config["processors"]["memory_limiter"];
                let hard = match (ml["limit_percentage"].as_f64(), ml["limit_mib"].as_f64()) {
                    (Some(pct), _) => limit * pct / 100.0,
                    (None, Some(mib)) => mib * 1024.0 * 1024.0,
                    _ => panic!("{at}: {cm} has no memory_limiter limit"),
                };
                assert!(hard <= 0.9 * limit && hard >= 0.6 * limit, "{at}: memory_limiter {hard} B vs limit {limit} B");
                for (name, p) in config["service"]["pipelines"].as_object().expect("pipelines") {
                    assert_eq!(list(&p["processors"]).first(), Some(&Value::from("memory_limiter")), "{at}: {name}");
                }

                // The drain fits in the grace period, after the preStop sleep; liveness does not
                // kill a draining process.
                let drain = shutdown_timeout(&config).as_secs();
                let sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
                let native_sidecar = init && c["restartPolicy"] == "Always";
                if native_sidecar {
                    assert_eq!(sleep, 0, "{at}: a native sidecar stops after the application; no preStop");
                    assert_eq!(http_probe(c, "startupProbe"), ("/".to_string(), 13133), "{at}");
                } else {
                    assert!(!init, "{at}: switchyard as a plain init container would never finish");
                }
                // A preStop that runs a command cannot work: the image has no shell and no sleep.
                assert!(c["lifecycle"]["preStop"]["exec"].is_null(), "{at}: preStop exec in a distroless image");
                assert!(
                    grace >= sleep + drain + 5,
                    "{at}: grace {grace}s < preStop {sleep}s + shutdown_timeout {drain}s + 5s"
                );
                let live = &c["livenessProbe"];
                let tolerated = seconds(&live["periodSeconds"]) * seconds(&live["failureThreshold"]);
                assert!(tolerated > drain, "{at}: liveness gives up after {tolerated}s, the drain takes {drain}s");
            }
        }
        assert!(found >= 1, "{overlay}: no switchyard container");
    }
}

#[test]
fn agent_daemonset_reads_node_logs_read_only_keeps_state_on_the_node_and_watches_its_node() {
    let Some(tools) = tools() else { return };
    let rendered = render(&tools, "agent");
    let ds = rendered.one("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    let c = list(&pod["containers"]).iter().find(|c| is_switchyard(c)).expect("switchyard container");
    let volume = |name: &Value| list(&pod["volumes"]).iter().find(|v| v["name"] == *name).expect("volume").clone();
    let mounts = list(&c["volumeMounts"]);

    let logs = mounts.iter().find(|m| m["mountPath"] == "/var/log/pods").expect("/var/log/pods mounted");
    assert_eq!(logs["readOnly"], true, "/var/log/pods is read-only");
    assert_eq!(volume(&logs["name"])["hostPath"]["path"], "/var/log/pods");

    let env: BTreeMap<String, &Value> = list(&c["env"]).iter().map(|e| (str_of(&e["name"]), e)).collect();
    assert_eq!(env["K8S_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    assert_eq!(env["K8S_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP");
    assert_eq!(env["K8S_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");

    let ports: BTreeMap<u64, u64> = list(&c["ports"])
        .iter()
        .filter_map(|p| Some((p["containerPort"].as_u64()?, p["hostPort"].as_u64()?)))
        .collect();
    assert_eq!(ports, BTreeMap::from([(4317, 4317), (4318, 4318)]), "OTLP on the node's hostPorts, nothing else");
    assert!(pod["hostNetwork"].is_null(), "no host networking");

    let (_, text) = rendered.config_of(pod, c);
    let config = yaml_documents(&tools, &text).remove(0);
    // file_storage lives on a hostPath the agent may write.
    let dir = str_of(&config["extensions"]["file_storage"]["directory"]);
    let storage = mounts.iter().find(|m| dir.starts_with(&str_of(&m["mountPath"]))).expect("file_storage is mounted");
    assert_ne!(storage["readOnly"], true);
    assert_eq!(volume(&storage["name"])["hostPath"]["path"], "/var/lib/switchyard");
    let init = list(&pod["initContainers"]).first().expect("the init container that owns the hostPath");
    assert!(list(&init["volumeMounts"]).iter().any(|m| m["name"] == storage["name"]));
    assert!(strings(&init["command"]).concat().contains("chown 65532:65532 /var/lib/switchyard"));

    let filelog = &config["receivers"]["filelog"];
    assert_eq!(strings(&filelog["include"]), ["/var/log/pods/*/*/*.log"]);
    assert_eq!(filelog["start_at"], "end");
    assert_eq!(filelog["storage"], "file_storage");
    assert_eq!(filelog["operators"][0]["type"], "container");
    // Its own container's log is excluded, other pods' logs are not.
    let ns = str_of(&ds["metadata"]["namespace"]);
    let own = format!("/var/log/pods/{ns}_{}-x7k2p_0b1c/{}/0.log", str_of(&ds["metadata"]["name"]), str_of(&c["name"]));
    let other = "/var/log/pods/shop_checkout-5d9f-x7k2p_0b1c/checkout/0.log";
    let excluded =
        |path: &str| strings(&filelog["exclude"]).iter().any(|g| glob::Pattern::new(g).expect("glob").matches(path));
    assert!(excluded(&own) && !excluded(other), "exclude {:?}", filelog["exclude"]);

    let k8s = &config["processors"]["k8sattributes"];
    assert_eq!(k8s["auth_type"], "serviceAccount");
    assert_eq!(k8s["filter"]["node_from_env_var"], "K8S_NODE_NAME");
    let queue = &config["exporters"]["otlp"]["sending_queue"];
    assert_eq!(queue["storage"], "file_storage", "the queue to the gateway is on the node's disk");
    assert!(strings(&config["service"]["extensions"]).contains(&"file_storage".into()));
    let endpoint = str_of(&config["exporters"]["otlp"]["endpoint"]);
    let gateway = render(&tools, "gateway");
    let service = str_of(&gateway.named("Service", "switchyard-gateway")["metadata"]["name"]);
    assert!(endpoint.starts_with(&format!("{service}.")) && endpoint.ends_with(":4317"), "{endpoint}");
}

#[test]
fn gateway_has_services_autoscaler_and_disruption_budget_that_select_its_pods() {
    let Some(tools) = tools() else { return };
    let rendered = render(&tools, "gateway");
    let deploy = rendered.one("Deployment");
    let name = str_of(&deploy["metadata"]["name"]);
    let pod_labels = deploy["spec"]["template"]["metadata"]["labels"].as_object().expect("pod labels");
    let selects = |selector: &Value| {
        let selector = selector.as_object().expect("selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects(&deploy["spec"]["selector"]["matchLabels"]));
    assert!(deploy["spec"]["replicas"].is_null(), "the autoscaler owns the replica count");

    let services = rendered.of_kind("Service");
    assert_eq!(services.len(), 2);
    for svc in &services {
        assert!(selects(&svc["spec"]["selector"]), "{} selects the gateway pods", svc["metadata"]["name"]);
    }
    let ports =
        |svc: &Value| list(&svc["spec"]["ports"]).iter().map(|p| p["port"].as_u64().unwrap()).collect::<Vec<_>>();
    let clusterip = rendered.named("Service", &name);
    assert!(clusterip["spec"]["clusterIP"].is_null());
    assert_eq!(ports(clusterip), [4317, 4318]);
    let headless = services.iter().find(|s| s["spec"]["clusterIP"] == "None").expect("a headless Service");
    assert!(ports(headless).contains(&4317));

    let hpa = rendered.one("HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], name.as_str());
    assert!(hpa["spec"]["minReplicas"].as_u64() >= Some(2));
    let pdb = rendered.one("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"]));

    // A preStop sleep the kubelet runs itself (the image has no shell).
    let c =
        list(&deploy["spec"]["template"]["spec"]["containers"]).iter().find(|c| is_switchyard(c)).expect("switchyard");
    assert!(c["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64() >= Some(1));
    let (_, text) = rendered.config_of(&deploy["spec"]["template"]["spec"], c);
    let config = yaml_documents(&tools, &text).remove(0);
    assert!(config["processors"]["k8sattributes"]["filter"].is_null(), "the gateway sees pods of every node");
}

#[test]
fn rbac_is_read_only_and_bound_to_the_service_account_the_pods_run_as() {
    let Some(tools) = tools() else { return };
    let read = BTreeSet::from(["get", "list", "watch"].map(String::from));
    let metadata = BTreeSet::from(["/pods", "/namespaces", "/nodes", "apps/replicasets"].map(String::from));
    for overlay in OVERLAYS {
        let rendered = render(&tools, overlay);
        let mut granted = BTreeSet::new();
        for role in rendered.of_kind("ClusterRole").into_iter().chain(rendered.of_kind("Role")) {
            for rule in list(&role["rules"]) {
                let verbs: BTreeSet<String> = strings(&rule["verbs"]).into_iter().collect();
                assert!(verbs.is_subset(&read), "{overlay}: {} grants {verbs:?}", role["metadata"]["name"]);
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        granted.insert((str_of(&role["kind"]), format!("{group}/{resource}")));
                    }
                }
            }
        }
        let cluster: BTreeSet<String> =
            granted.iter().filter(|(k, _)| k == "ClusterRole").map(|(_, r)| r.clone()).collect();
        let namespaced: BTreeSet<String> =
            granted.iter().filter(|(k, _)| k == "Role").map(|(_, r)| r.clone()).collect();
        match overlay {
            // The sidecar reads nothing from the API: no account, no token.
            "sidecar" => {
                assert!(granted.is_empty() && rendered.of_kind("ServiceAccount").is_empty(), "{overlay}: {granted:?}");
                for (_, pod) in rendered.pod_specs() {
                    assert_eq!(pod["automountServiceAccountToken"], false);
                }
                continue;
            }
            "agent" => assert!(namespaced.is_empty(), "{namespaced:?}"),
            _ => assert_eq!(namespaced, BTreeSet::from(["discovery.k8s.io/endpointslices".to_string()])),
        }
        assert_eq!(cluster, metadata, "{overlay}: exactly the metadata k8sattributes reads");

        let sa = rendered.one("ServiceAccount");
        let (sa_name, sa_ns) = (str_of(&sa["metadata"]["name"]), str_of(&sa["metadata"]["namespace"]));
        for (workload, pod) in rendered.pod_specs() {
            assert_eq!(pod["serviceAccountName"], sa_name.as_str(), "{overlay}: {workload}");
        }
        for binding in rendered.of_kind("ClusterRoleBinding").into_iter().chain(rendered.of_kind("RoleBinding")) {
            let role = rendered.named(&str_of(&binding["roleRef"]["kind"]), &str_of(&binding["roleRef"]["name"]));
            assert_eq!(role["kind"], binding["roleRef"]["kind"]);
            let subjects = list(&binding["subjects"]);
            assert_eq!(subjects.len(), 1);
            assert_eq!(
                (str_of(&subjects[0]["kind"]), str_of(&subjects[0]["name"]), str_of(&subjects[0]["namespace"])),
                ("ServiceAccount".to_string(), sa_name.clone(), sa_ns.clone()),
                "{overlay}: {}",
                binding["metadata"]["name"]
            );
        }
        assert_eq!(rendered.of_kind("ClusterRoleBinding").len(), 1, "{overlay}");
    }
}

/// Every config.yaml the manifests embed passes `switchyard validate --strict`, run with only
/// the environment variables its container defines (so a `${env:…}` the pod does not set is an
/// error). All configurations are tried before the test fails, and the failures are listed.
#[test]
fn every_embedded_configuration_passes_switchyard_validate_with_its_pods_environment() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for overlay in OVERLAYS {
        let rendered = render(&tools, overlay);
        let mut used = BTreeSet::new();
        for (workload, pod) in rendered.pod_specs() {
            for (_, c) in containers(pod).into_iter().filter(|(_, c)| is_switchyard(c)) {
                let (cm, text) = rendered.config_of(pod, c);
                used.insert(cm.clone());
                let file = dir.path().join(format!("{overlay}-{cm}.yaml"));
                std::fs::write(&file, &text).expect("write config");
                // Values from the downward API get a stand-in; literal values are kept.
                let env: Vec<(String, String)> = list(&c["env"])
                    .iter()
                    .map(|e| (str_of(&e["name"]), e["value"].as_str().unwrap_or("placeholder").to_string()))
                    .collect();
                let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
                    .env_clear()
                    .envs(env)
                    .args(["validate", "--strict", "--config"])
                    .arg(&file)
                    .output()
                    .expect("run switchyard validate");
                let what = format!("{overlay}: {workload}/{} ConfigMap {cm}", str_of(&c["name"]));
                checked.push(what.clone());
                if !out.status.success() {
                    failures.push(format!(
                        "{what}: exit {:?}: {}{}",
                        out.status.code(),
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
        }
        // No ConfigMap is left over that nothing runs.
        for cm in rendered.of_kind("ConfigMap") {
            assert!(
                used.contains(&str_of(&cm["metadata"]["name"])),
                "{overlay}: {} is mounted by nothing",
                cm["metadata"]["name"]
            );
        }
    }
    assert_eq!(checked.len(), 3, "{checked:?}");
    assert!(failures.is_empty(), "switchyard validate refused:\n{}", failures.join("\n"));
}
