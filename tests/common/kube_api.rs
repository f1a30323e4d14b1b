//! A STAND-IN Kubernetes API server for tests: no real API server can be installed here, so
//! this one serves what switchyard's watches use, as the real one does: paged lists
//! (`limit`/`continue`, a `resourceVersion`), watches from a version (ADDED, MODIFIED, DELETED,
//! BOOKMARK events, one JSON object per line, closed after `timeoutSeconds`), `410 Gone` (an
//! ERROR event) for a version older than its history, `fieldSelector` on `spec.nodeName` and
//! `metadata.name`, equality `labelSelector`s, and bearer-token checks (401 with a Status).
//! Plain HTTP/1.1 on 127.0.0.1, one thread per connection, std only (so that unit tests,
//! integration tests and benches can all include this file).
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One change in the history watches replay.
#[derive(Clone)]
struct Event {
    version: u64,
    collection: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Inner {
    version: u64,
    /// (collection, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    history: Vec<Event>,
    /// Watches from a version older than this get 410 Gone.
    oldest: u64,
    /// Bumped by `expire` and `fail_watches`: open watches end with an ERROR event of
    /// `error_code`.
    epoch: u64,
    error_code: u16,
    requests: Vec<String>,
}

pub struct KubeApi {
    pub addr: SocketAddr,
    token: String,
    state: Arc<(Mutex<Inner>, Condvar)>,
}

impl KubeApi {
    /// Starts serving on a free loopback port; requests must carry `Bearer <token>` (any, or
    /// none, when `token` is empty).
    pub fn start(token: &str) -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().unwrap();
        let state: Arc<(Mutex<Inner>, Condvar)> =
            Arc::new((Mutex::new(Inner { version: 1, ..Default::default() }), Condvar::new()));
        let (st, tok) = (state.clone(), token.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (st, tok) = (st.clone(), tok.clone());
                std::thread::spawn(move || serve(conn, &st, &tok));
            }
        });
        KubeApi { addr, token: token.to_string(), state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig file pointing at this server, with its token.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: standin\nclusters:\n- name: standin\n  cluster:\n    server: {}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: tester\nusers:\n- name: tester\n  user:\n    token: {}\n",
                self.url(),
                self.token
            ),
        )
        .unwrap();
        path
    }

    /// Adds or replaces an object of `collection` (`pods`, `replicasets`, `namespaces`, `nodes`,
    /// `services`, `endpointslices`, `endpoints`); watches see ADDED or MODIFIED.
    pub fn apply(&self, collection: &str, mut object: Value) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.version += 1;
        let v = s.version;
        object["metadata"]["resourceVersion"] = json!(v.to_string());
        let key = key_of(collection, &object);
        let kind = if s.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        s.objects.insert(key, object.clone());
        s.history.push(Event { version: v, collection: collection.to_string(), kind, object });
        cv.notify_all();
    }

    /// Many objects at once (one version each), without waking watches per object.
    pub fn apply_all(&self, collection: &str, objects: impl IntoIterator<Item = Value>) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        for mut object in objects {
            s.version += 1;
            let v = s.version;
            object["metadata"]["resourceVersion"] = json!(v.to_string());
            let key = key_of(collection, &object);
            s.objects.insert(key, object);
        }
        // A bulk load is not replayed to watches: they must list again to see it.
        s.oldest = s.version;
        s.history.clear();
        s.epoch += 1;
        s.error_code = 410;
        cv.notify_all();
    }

    pub fn delete(&self, collection: &str, namespace: &str, name: &str) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        let key = (collection.to_string(), namespace.to_string(), name.to_string());
        if let Some(mut object) = s.objects.remove(&key) {
            s.version += 1;
            let v = s.version;
            object["metadata"]["resourceVersion"] = json!(v.to_string());
            s.history.push(Event { version: v, collection: collection.to_string(), kind: "DELETED", object });
            cv.notify_all();
        }
    }

    /// Forgets the history (as etcd compaction does): open watches end with 410 Gone, and a
    /// watch from an older version gets 410; clients must list again.
    pub fn expire(&self) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.oldest = s.version;
        s.history.clear();
        s.epoch += 1;
        s.error_code = 410;
        cv.notify_all();
    }

    /// Ends the open watches with an ERROR event of `code` (500: the server in trouble), their
    /// versions still good.
    pub fn fail_watches(&self, code: u16) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().unwrap();
        s.epoch += 1;
        s.error_code = code;
        cv.notify_all();
    }

    /// The request lines served so far (`GET /api/v1/pods?…`).
    pub fn requests(&self) -> Vec<String> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Waits until a request matching `pred` was served.
    pub fn wait_for_request(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.requests().iter().any(|r| pred(r)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

fn key_of(collection: &str, object: &Value) -> (String, String, String) {
    let m = &object["metadata"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    (collection.to_string(), s(&m["namespace"]), s(&m["name"]))
}

struct Query {
    collection: String,
    namespace: Option<String>,
    /// A single object (`/api/v1/nodes/node-a`) rather than the collection.
    name: Option<String>,
    params: BTreeMap<String, String>,
}

fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        if let (b'%', Some(n)) = (b[i], hex) {
            out.push(n);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_target(target: &str) -> Option<Query> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/apis/apps/v1/"))
        .or_else(|| path.strip_prefix("/apis/discovery.k8s.io/v1/"))
        .or_else(|| path.strip_prefix("/apis/batch/v1/"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (namespace, collection, name) = match parts.as_slice() {
        [c] => (None, c.to_string(), None),
        ["namespaces", ns, c] => (Some(ns.to_string()), c.to_string(), None),
        [c, name] => (None, c.to_string(), Some(name.to_string())),
        ["namespaces", ns, c, name] => (Some(ns.to_string()), c.to_string(), Some(name.to_string())),
        _ => return None,
    };
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), decode(v))
        })
        .collect();
    Some(Query { collection, namespace, name, params })
}

/// Whether `object` passes the query's namespace and selectors.
fn selected(q: &Query, object: &Value) -> bool {
    let m = &object["metadata"];
    if let Some(ns) = &q.namespace
        && m["namespace"].as_str() != Some(ns)
    {
        return false;
    }
    if let Some(fields) = q.params.get("fieldSelector") {
        for term in fields.split(',').filter(|t| !t.is_empty()) {
            let (key, want, equal) = match term.split_once("!=") {
                Some((k, v)) => (k, v, false),
                None => {
                    let (k, v) = term.split_once('=').unwrap_or((term, ""));
                    (k, v.trim_start_matches('='), true)
                }
            };
            let got = match key {
                "spec.nodeName" => object["spec"]["nodeName"].as_str().unwrap_or(""),
                "metadata.name" => m["name"].as_str().unwrap_or(""),
                "metadata.namespace" => m["namespace"].as_str().unwrap_or(""),
                "status.phase" => object["status"]["phase"].as_str().unwrap_or(""),
                _ => panic!(
                    "stand-in API server: field selector {key} is not supported by the real server for this kind"
                ),
            };
            if (got == want) != equal {
                return false;
            }
        }
    }
    if let Some(labels) = q.params.get("labelSelector") {
        for term in labels.split(',').filter(|t| !t.is_empty()) {
            let label = |k: &str| m["labels"][k].as_str().map(str::to_string);
            let ok = if let Some((k, v)) = term.split_once("!=") {
                label(k).as_deref() != Some(v)
            } else if let Some((k, v)) = term.split_once('=') {
                label(k).as_deref() == Some(v.trim_start_matches('='))
            } else if let Some(k) = term.strip_prefix('!') {
                label(k).is_none()
            } else {
                label(term).is_some()
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

fn respond(conn: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code})
}

fn serve(conn: TcpStream, state: &(Mutex<Inner>, Condvar), token: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let request = line.trim_end().to_string();
        let mut authorization = String::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" || h == "\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("authorization")
            {
                authorization = v.trim().to_string();
            }
        }
        state.0.lock().unwrap().requests.push(request.clone());
        let target = request.split(' ').nth(1).unwrap_or("/").to_string();
        if !token.is_empty() && authorization != format!("Bearer {token}") {
            let _ = respond(&mut conn, "401 Unauthorized", &status(401, "Unauthorized", "Unauthorized"));
            continue;
        }
        let Some(q) = parse_target(&target) else {
            let _ = respond(
                &mut conn,
                "404 Not Found",
                &status(404, "NotFound", "the server could not find the requested resource"),
            );
            continue;
        };
        if let Some(name) = &q.name {
            let key = (q.collection.clone(), q.namespace.clone().unwrap_or_default(), name.clone());
            let found = state.0.lock().unwrap().objects.get(&key).cloned();
            let _ = match found {
                Some(object) => respond(&mut conn, "200 OK", &object),
                None => respond(
                    &mut conn,
                    "404 Not Found",
                    &status(404, "NotFound", &format!("{} \"{name}\" not found", q.collection)),
                ),
            };
            continue;
        }
        if q.params.get("watch").is_some_and(|w| w == "1" || w == "true") {
            watch(conn, state, &q);
            return;
        }
        if list(&mut conn, state, &q).is_err() {
            return;
        }
    }
}

fn list(conn: &mut TcpStream, state: &(Mutex<Inner>, Condvar), q: &Query) -> std::io::Result<()> {
    let s = state.0.lock().unwrap();
    let limit: usize = q.params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(usize::MAX);
    // A continue token: the version the list was taken at and the offset reached.
    let (at, offset) = match q.params.get("continue") {
        Some(c) => {
            let (v, o) = c.split_once(':').unwrap_or(("0", "0"));
            (v.parse::<u64>().unwrap_or(0), o.parse::<usize>().unwrap_or(0))
        }
        None => (s.version, 0),
    };
    if at < s.oldest && q.params.contains_key("continue") {
        drop(s);
        return respond(conn, "410 Gone", &status(410, "Expired", "The provided continue parameter is too old"));
    }
    let all: Vec<&Value> =
        s.objects.iter().filter(|((c, _, _), o)| *c == q.collection && selected(q, o)).map(|(_, o)| o).collect();
    let page: Vec<&Value> = all.iter().skip(offset).take(limit).copied().collect();
    let more = offset + page.len() < all.len();
    let mut metadata = json!({"resourceVersion": s.version.to_string()});
    if more {
        metadata["continue"] = json!(format!("{at}:{}", offset + page.len()));
    }
    let body = json!({"kind": "List", "apiVersion": "v1", "metadata": metadata, "items": page});
    drop(s);
    respond(conn, "200 OK", &body)
}

fn watch(mut conn: TcpStream, state: &(Mutex<Inner>, Condvar), q: &Query) {
    let from: u64 = q.params.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let seconds: u64 = q.params.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(1800);
    let bookmarks = q.params.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let end = Instant::now() + Duration::from_secs(seconds);
    // Close-delimited: the body is every line until the connection ends, as a stream.
    if conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n").is_err() {
        return;
    }
    let (lock, cv) = state;
    let mut s = lock.lock().unwrap();
    let epoch = s.epoch;
    let gone = json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
    if from < s.oldest {
        let _ = writeln!(conn, "{gone}");
        return;
    }
    let mut seen = from;
    let mut last_bookmark = Instant::now();
    loop {
        if s.epoch != epoch {
            let error = json!({"type": "ERROR", "object": status(s.error_code, "InternalError", "watch ended by the stand-in")});
            let _ = writeln!(conn, "{error}");
            return;
        }
        let mut out = String::new();
        let since = seen;
        for e in s.history.iter().filter(|e| e.version > since) {
            seen = e.version;
            if e.collection == q.collection && selected(q, &e.object) {
                out.push_str(&json!({"type": e.kind, "object": e.object}).to_string());
                out.push('\n');
            }
        }
        if bookmarks && last_bookmark.elapsed() > Duration::from_secs(1) {
            last_bookmark = Instant::now();
            let kind = match q.collection.as_str() {
                "pods" => "Pod",
                "nodes" => "Node",
                "namespaces" => "Namespace",
                "replicasets" => "ReplicaSet",
                "endpointslices" => "EndpointSlice",
                "services" => "Service",
                _ => "Object",
            };
            out.push_str(&json!({"type": "BOOKMARK", "object": {"kind": kind, "metadata": {"resourceVersion": s.version.to_string()}}}).to_string());
            out.push('\n');
            seen = seen.max(s.version);
        }
        if !out.is_empty() {
            drop(s);
            if conn.write_all(out.as_bytes()).is_err() {
                return;
            }
            s = lock.lock().unwrap();
            continue;
        }
        if Instant::now() >= end {
            return;
        }
        s = cv.wait_timeout(s, Duration::from_millis(250)).unwrap().0;
    }
}

/// A pod as an API server returns it (managed fields, a kubectl annotation, probes, volumes,
/// statuses), about 4 KB of JSON like real ones. `owner` is (kind, name).
pub fn pod(namespace: &str, name: &str, ip: &str, node: &str, owner: Option<(&str, &str)>, labels: Value) -> Value {
    let uid = uid_for(&format!("pod/{namespace}/{name}"));
    let owners = match owner {
        Some((kind, oname)) => {
            json!([{"apiVersion": if kind == "Job" {"batch/v1"} else {"apps/v1"}, "kind": kind, "name": oname,
            "uid": uid_for(&format!("{kind}/{namespace}/{oname}")), "controller": true, "blockOwnerDeletion": true}])
        }
        None => json!([]),
    };
    let cid = format!("{:0>64}", uid.replace('-', ""));
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": namespace, "uid": uid, "creationTimestamp": "2026-12-01T10:00:00Z",
            "generateName": format!("{name}-"),
            "labels": labels,
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": "2026-12-01T09:59:00Z",
                "kubectl.kubernetes.io/last-applied-configuration": format!("{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"{namespace}\"}},\"spec\":{{\"containers\":[{{\"image\":\"registry.example.com/shop/{name}:1.4.2\",\"name\":\"app\",\"ports\":[{{\"containerPort\":8080}}],\"resources\":{{\"limits\":{{\"memory\":\"256Mi\"}},\"requests\":{{\"cpu\":\"100m\",\"memory\":\"128Mi\"}}}}}}]}}}}"),
                "prometheus.io/scrape": "true", "prometheus.io/port": "8080"
            },
            "ownerReferences": owners,
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-12-01T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {".": {}}},
                              "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:env": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-12-01T10:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}
            ]
        },
        "spec": {
            "nodeName": node, "serviceAccountName": "default", "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", "priority": 0,
            "containers": [{
                "name": "app", "image": format!("registry.example.com/shop/{name}:1.4.2"), "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://$(K8S_NODE_IP):4318"},
                        {"name": "K8S_NODE_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}}],
                "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
                "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
            }],
            "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.10", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": "2026-12-01T10:00:01Z", "qosClass": "Burstable",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-01T10:00:01Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T10:00:05Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-01T10:00:05Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T10:00:00Z"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "started": true, "restartCount": 0,
                "image": format!("registry.example.com/shop/{name}:1.4.2"),
                "imageID": format!("registry.example.com/shop/{name}@sha256:{}", "ab".repeat(32)),
                "containerID": format!("containerd://{cid}"),
                "state": {"running": {"startedAt": "2026-12-01T10:00:04Z"}}, "lastState": {}
            }]
        }
    })
}

/// A ReplicaSet owned by Deployment `deployment`.
pub fn replicaset(namespace: &str, name: &str, deployment: &str) -> Value {
    json!({"kind": "ReplicaSet", "apiVersion": "apps/v1", "metadata": {
        "name": name, "namespace": namespace, "uid": uid_for(&format!("ReplicaSet/{namespace}/{name}")),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment,
            "uid": uid_for(&format!("Deployment/{namespace}/{deployment}")), "controller": true}]},
        "spec": {"replicas": 1}, "status": {"replicas": 1}})
}

pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "uid": uid_for(&format!("ns/{name}")), "labels": labels},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

pub fn node(name: &str, ip: &str, labels: Value) -> Value {
    json!({"kind": "Node", "apiVersion": "v1", "metadata": {"name": name, "uid": uid_for(&format!("node/{name}")), "labels": labels},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                      "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}})
}

/// A stable UUID-shaped id for `seed`.
pub fn uid_for(seed: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in seed.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    let h2 = h.rotate_left(17) ^ 0x9e3779b97f4a7c15;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        h2 >> 48,
        h2 & 0xffffffffffff
    )
}
