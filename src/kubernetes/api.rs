//! Reaching the Kubernetes API server: the collector's `auth_type` (serviceAccount, kubeConfig,
//! none), one HTTP client with the cluster's certificate authority, and GET requests carrying
//! the credentials. A service account's token file is read again at each request: kubelet
//! rotates it.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where a pod's service account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Hash)]
pub enum AuthType {
    /// No credentials (an API server proxy, `kubectl proxy`).
    #[serde(rename = "none")]
    None,
    /// The pod's service account: the in-cluster address, token and certificate authority.
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// A kubeconfig file's context.
    #[serde(rename = "kubeConfig")]
    KubeConfig,
}

/// How to reach the API server, as components' settings spell it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ApiSettings {
    pub auth_type: AuthType,
    /// For kubeConfig: the file (default `KUBECONFIG`, then `~/.kube/config`).
    pub kube_config_path: Option<String>,
    /// For kubeConfig: the context (default the file's current-context).
    pub context: Option<String>,
    /// For none: the API server's URL instead of the in-cluster address (Prometheus's
    /// `api_server`).
    pub server: Option<String>,
}

enum Token {
    None,
    Fixed(String),
    File(PathBuf),
    Basic(String),
}

/// A failed API call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status, and the message of its `Status` body.
    #[error("{status}: {message}")]
    Status { status: StatusCode, message: String },
    /// No answer: the server could not be reached, or the answer was cut or malformed.
    #[error("{0}")]
    Transport(String),
}

impl ApiError {
    pub fn is_gone(&self) -> bool {
        matches!(self, ApiError::Status { status, .. } if *status == StatusCode::GONE)
    }
}

/// A connection to one API server.
pub struct ApiClient {
    /// `https://host:port`, without a trailing slash.
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    token: Token,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `settings`; fails when the credentials or the address cannot be found.
    pub fn new(settings: &ApiSettings) -> Result<ApiClient, String> {
        let (base, tls, token) = match settings.auth_type {
            AuthType::None if settings.server.is_some() => {
                let server = settings.server.clone().unwrap_or_default();
                (server.trim_end_matches('/').to_string(), crate::tls::client::PemMaterial::default(), Token::None)
            }
            AuthType::ServiceAccount | AuthType::None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    "KUBERNETES_SERVICE_HOST is not set: switchyard is not running in a Kubernetes pod (use auth_type: kubeConfig outside a cluster)".to_string()
                })?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                let dir = std::path::Path::new(SERVICE_ACCOUNT_DIR);
                let ca_path = dir.join("ca.crt");
                let ca = std::fs::read(&ca_path).ok().map(|pem| (ca_path.display().to_string(), pem));
                let token = if settings.auth_type == AuthType::None {
                    Token::None
                } else {
                    let file = dir.join("token");
                    if !file.is_file() {
                        return Err(format!(
                            "no service account token at {} (is automountServiceAccountToken off?)",
                            file.display()
                        ));
                    }
                    Token::File(file)
                };
                let tls = crate::tls::client::PemMaterial { ca, ..Default::default() };
                (format!("https://{host}:{port}"), tls, token)
            }
            AuthType::KubeConfig => {
                let file = super::kubeconfig::locate(settings.kube_config_path.as_deref())?;
                let r = super::kubeconfig::resolve(&file, settings.context.as_deref())?;
                let token = match (r.token, r.token_file, r.basic) {
                    (Some(t), _, _) => Token::Fixed(t),
                    (None, Some(f), _) => Token::File(f),
                    (None, None, Some((user, password))) => {
                        use base64::Engine;
                        Token::Basic(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
                    }
                    _ => Token::None,
                };
                (r.server, r.tls, token)
            }
        };
        let uri: http::Uri = base.parse().map_err(|e| format!("API server address \"{base}\": {e}"))?;
        if uri.host().is_none() || !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(format!("API server address \"{base}\" is not an http(s) URL"));
        }
        let connector = tls.connector(crate::tls::client::Protocol::Http1, Duration::from_secs(10))?;
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector);
        Ok(ApiClient { base, client, token })
    }

    /// The server's address, for messages.
    pub fn server(&self) -> &str {
        &self.base
    }

    fn authorization(&self) -> Result<Option<String>, ApiError> {
        Ok(match &self.token {
            Token::None => None,
            Token::Fixed(t) => Some(format!("Bearer {t}")),
            Token::Basic(b) => Some(format!("Basic {b}")),
            Token::File(f) => {
                let t = std::fs::read_to_string(f)
                    .map_err(|e| ApiError::Transport(format!("cannot read the token {}: {e}", f.display())))?;
                Some(format!("Bearer {}", t.trim()))
            }
        })
    }

    /// GETs `path_and_query`; the answer's head is awaited for at most `head_timeout`. An
    /// error status comes back as `ApiError::Status` with the server's message.
    pub async fn get(&self, path_and_query: &str, head_timeout: Duration) -> Result<Response<Incoming>, ApiError> {
        let mut req = Request::get(format!("{}{path_and_query}", self.base))
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("switchyard/", env!("CARGO_PKG_VERSION")));
        if let Some(auth) = self.authorization()? {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Empty::new()).map_err(|e| ApiError::Transport(e.to_string()))?;
        let resp = tokio::time::timeout(head_timeout, self.client.request(req))
            .await
            .map_err(|_| ApiError::Transport(format!("{}: no answer in {head_timeout:?}", self.base)))?
            .map_err(|e| ApiError::Transport(format!("{}: {}", self.base, crate::cause::chain(&e))))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(ApiError::Status { status, message: status_message(&body) })
    }

    /// GETs `path_and_query` and parses its JSON body of at most `limit` bytes.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        timeout: Duration,
        limit: usize,
    ) -> Result<T, ApiError> {
        let exchange = async {
            let resp = self.get(path_and_query, timeout).await?;
            let body = http_body_util::Limited::new(resp.into_body(), limit).collect().await.map_err(|e| {
                ApiError::Transport(format!("{path_and_query}: the answer was cut or exceeds {limit} bytes: {e}"))
            })?;
            serde_json::from_slice(&body.to_bytes())
                .map_err(|e| ApiError::Transport(format!("{path_and_query}: not the JSON expected: {e}")))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ApiError::Transport(format!("{path_and_query}: no whole answer in {timeout:?}")))?
    }
}

/// The `message` of a Kubernetes `Status` body, or the start of whatever the body is.
pub fn status_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Status {
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Status>(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
    }
}
