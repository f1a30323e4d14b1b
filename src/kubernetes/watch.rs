//! List-and-watch of one kind of object, as client-go's reflector does: a paged list gives the
//! whole set and a resourceVersion, a watch from there gives each change (added, modified,
//! deleted) and bookmarks; a watch that ends is opened again from the last version seen, and
//! one the server no longer can serve (410 Gone) is replaced by a new list. Failures are retried
//! with a growing pause and logged once per outage, not once per attempt.

use super::api::{ApiClient, ApiError};
use super::objects::Object;
use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Objects per page of a list.
const PAGE: usize = 500;
/// The largest page, and the longest watch event, accepted.
const MAX_PAGE_BYTES: usize = 64 << 20;
const MAX_EVENT_BYTES: usize = 16 << 20;
/// How long the server keeps a watch open before we open a new one (it closes it then).
const WATCH_SECONDS: u64 = 290;
/// A watch silent for this long (no event, no bookmark, not closed) is taken as lost.
const WATCH_IDLE: Duration = Duration::from_secs(WATCH_SECONDS + 40);
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// What to list and watch: a collection path and its selectors.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    /// Such as `/api/v1/pods`, `/api/v1/namespaces/web/pods`, `/apis/apps/v1/replicasets`.
    pub path: String,
    pub label_selector: String,
    pub field_selector: String,
}

impl Resource {
    pub fn new(path: impl Into<String>) -> Resource {
        Resource { path: path.into(), label_selector: String::new(), field_selector: String::new() }
    }

    pub fn fields(mut self, selector: impl Into<String>) -> Resource {
        self.field_selector = selector.into();
        self
    }

    pub fn labels(mut self, selector: impl Into<String>) -> Resource {
        self.label_selector = selector.into();
        self
    }

    fn query(&self, extra: &str) -> String {
        let mut q = format!("{}?{extra}", self.path);
        for (key, value) in [("labelSelector", &self.label_selector), ("fieldSelector", &self.field_selector)] {
            if !value.is_empty() {
                q.push_str(&format!("&{key}={}", crate::percent::encode(value)));
            }
        }
        q
    }
}

/// What the watcher tells its consumer.
#[derive(Debug)]
pub enum Change<S> {
    /// The whole set, from a (new) list: what is not in it is gone.
    Listed(Vec<S>),
    /// Added or modified.
    Applied(S),
    Deleted(S),
}

/// Set once the first list has been delivered.
#[derive(Debug, Clone, Default)]
pub struct Synced(Arc<AtomicBool>);

impl Synced {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Waits (blocking the thread) until set or `timeout` passes; whether it was set.
    pub fn wait_blocking(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while !self.is_set() {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

/// Lists and watches `resource` until the task is aborted, handing each change to `sink`
/// after `convert` has kept what the consumer needs of each object.
pub fn spawn<T: Object, S: Send + 'static>(
    client: Arc<ApiClient>,
    resource: Resource,
    convert: impl Fn(T) -> S + Send + Sync + 'static,
    mut sink: impl FnMut(Change<S>) + Send + 'static,
    synced: Synced,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut trouble = Trouble::new(client.server(), &resource.path);
        let mut version: Option<String> = None;
        let mut pause = Duration::from_secs(1);
        let mut listed_at: Option<Instant> = None;
        loop {
            if version.is_none() {
                // Lists come at most once a second, whatever makes them (410s in a row).
                if let Some(at) = listed_at {
                    tokio::time::sleep(Duration::from_secs(1).saturating_sub(at.elapsed())).await;
                }
                listed_at = Some(Instant::now());
                match list(&client, &resource, &convert).await {
                    Ok((items, v)) => {
                        sink(Change::Listed(items));
                        synced.set();
                        version = Some(v);
                        trouble.recovered();
                        pause = Duration::from_secs(1);
                    }
                    Err(e) => {
                        trouble.failed("list", &e);
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            let Some(v) = version.as_mut() else { continue };
            let opened = Instant::now();
            match watch(&client, &resource, v, &convert, &mut sink).await {
                // A watch the server ends at once with nothing in it (a proxy that does not
                // stream, a server in trouble) is a failure: opened again after a pause.
                Ok(0) if opened.elapsed() < Duration::from_secs(1) => {
                    trouble
                        .failed("watch", &ApiError::Transport(format!("{}: the watch ended at once", resource.path)));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                Ok(_) => {
                    trouble.recovered();
                    pause = Duration::from_secs(1);
                }
                Err(e) if e.is_gone() => {
                    tracing::debug!(resource = %resource.path, "kubernetes: watch expired (410 Gone); listing again");
                    version = None;
                }
                Err(e) => {
                    trouble.failed("watch", &e);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        }
    })
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct ListMeta {
    resource_version: String,
    #[serde(rename = "continue")]
    next: String,
}

/// Every object, page by page (each page converted before the next is asked for), and the
/// version to watch from.
async fn list<T: Object, S>(
    client: &ApiClient,
    resource: &Resource,
    convert: &impl Fn(T) -> S,
) -> Result<(Vec<S>, String), ApiError> {
    let mut all = Vec::new();
    let mut next = String::new();
    loop {
        let mut extra = format!("limit={PAGE}");
        if !next.is_empty() {
            extra.push_str(&format!("&continue={}", crate::percent::encode(&next)));
        }
        let page: List<T> = client.get_json(&resource.query(&extra), LIST_TIMEOUT, MAX_PAGE_BYTES).await?;
        all.extend(page.items.into_iter().map(convert));
        if page.metadata.next.is_empty() {
            return Ok((all, page.metadata.resource_version));
        }
        next = page.metadata.next;
    }
}

#[derive(Deserialize)]
struct Event<T> {
    #[serde(rename = "type")]
    kind: String,
    object: T,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    code: u16,
    message: String,
}

/// One watch, until the server ends it (Ok: how many events came) or it fails.
async fn watch<T: Object, S>(
    client: &ApiClient,
    resource: &Resource,
    version: &mut String,
    convert: &impl Fn(T) -> S,
    sink: &mut impl FnMut(Change<S>),
) -> Result<usize, ApiError> {
    let extra = format!(
        "watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
        crate::percent::encode(version)
    );
    let resp = client.get(&resource.query(&extra), Duration::from_secs(30)).await?;
    let mut body = resp.into_body();
    let mut pending = BytesMut::new();
    let mut events = 0;
    // How far `pending` is known to hold no line end.
    let mut scanned = 0;
    loop {
        let frame = match tokio::time::timeout(WATCH_IDLE, body.frame()).await {
            Err(_) => return Err(ApiError::Transport(format!("{}: the watch went silent", resource.path))),
            Ok(None) => {
                // A last event without its line end.
                if !pending.is_empty() {
                    event(&pending, resource, version, convert, sink)?;
                    events += 1;
                }
                return Ok(events);
            }
            Ok(Some(Err(e))) => {
                return Err(ApiError::Transport(format!("{}: watch cut: {}", resource.path, crate::cause::chain(&e))));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        pending.extend_from_slice(&data);
        while let Some(at) = pending[scanned..].iter().position(|&b| b == b'\n') {
            let line = pending.split_to(scanned + at + 1);
            scanned = 0;
            event(&line[..line.len() - 1], resource, version, convert, sink)?;
            events += 1;
        }
        scanned = pending.len();
        if pending.len() > MAX_EVENT_BYTES {
            // Never held whole: the watch is given up and a list brings back what it held.
            pending.advance(pending.len());
            return Err(ApiError::Status {
                status: http::StatusCode::GONE,
                message: format!("a watch event of {} passed {MAX_EVENT_BYTES} bytes", resource.path),
            });
        }
    }
}

fn event<T: Object, S>(
    line: &[u8],
    resource: &Resource,
    version: &mut String,
    convert: &impl Fn(T) -> S,
    sink: &mut impl FnMut(Change<S>),
) -> Result<(), ApiError> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let event: Event<T> = match serde_json::from_slice(line) {
        Ok(e) => e,
        Err(parse) => {
            // An ERROR event carries a Status, which is not an object of the kind watched.
            return match serde_json::from_slice::<Event<Status>>(line) {
                Ok(e) if e.kind == "ERROR" => Err(ApiError::Status {
                    status: http::StatusCode::from_u16(e.object.code)
                        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
                    message: e.object.message,
                }),
                // Whatever it said is lost: a new list makes up for it.
                _ => Err(ApiError::Status {
                    status: http::StatusCode::GONE,
                    message: format!("a watch event of {} is not understood ({parse}); listing again", resource.path),
                }),
            };
        }
    };
    if event.kind == "ERROR" {
        // Its object is a Status (which parsed as an empty object of the kind watched).
        let status = serde_json::from_slice::<Event<Status>>(line).map(|e| e.object).unwrap_or_default();
        return Err(ApiError::Status {
            status: http::StatusCode::from_u16(status.code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR),
            message: status.message,
        });
    }
    let v = &event.object.meta().resource_version;
    if !v.is_empty() {
        version.clone_from(v);
    }
    match event.kind.as_str() {
        "ADDED" | "MODIFIED" => sink(Change::Applied(convert(event.object))),
        "DELETED" => sink(Change::Deleted(convert(event.object))),
        "BOOKMARK" => {}
        other => {
            tracing::debug!(resource = %resource.path, kind = other, "kubernetes: unknown watch event type ignored")
        }
    }
    Ok(())
}

/// Logs an outage once when it starts (with what to do about it), then at most every five
/// minutes, and once when it ends.
struct Trouble {
    server: String,
    path: String,
    failures: u64,
    last_logged: Option<Instant>,
}

impl Trouble {
    fn new(server: &str, path: &str) -> Trouble {
        Trouble { server: server.to_string(), path: path.to_string(), failures: 0, last_logged: None }
    }

    fn failed(&mut self, what: &str, e: &ApiError) {
        self.failures += 1;
        if self.last_logged.is_some_and(|t| t.elapsed() < Duration::from_secs(300)) {
            return;
        }
        self.last_logged = Some(Instant::now());
        let hint = match e {
            ApiError::Status { status, .. } if status.as_u16() == 401 => {
                " (the API server refused the credentials: check auth_type and the token)"
            }
            ApiError::Status { status, .. } if status.as_u16() == 403 => {
                " (the service account lacks permission: grant it get, list and watch on this resource; see docs/deployment.md)"
            }
            _ => "",
        };
        tracing::warn!(
            server = %self.server,
            resource = %self.path,
            failures = self.failures,
            "kubernetes: cannot {what}: {e}{hint}; retrying"
        );
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(server = %self.server, resource = %self.path, failures = self.failures, "kubernetes: reached the API server again");
        }
        self.failures = 0;
        self.last_logged = None;
    }
}
