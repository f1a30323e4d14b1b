//! The `clickhouse` exporter: log records inserted over ClickHouse's HTTP interface
//! (PROTOCOLS.md §5.3) as `INSERT … FORMAT JSONEachRow`, gzip-compressed, into a table it can
//! create itself (`schema`). Errors are classified by ClickHouse's exception code, read from
//! the `X-ClickHouse-Exception-Code` header or, for servers that do not send it (18.16), from
//! the `Code: N.` that starts the body: overload and network codes are retried, data and schema
//! errors are not.

pub mod schema;

use super::http_post::HttpPoster;
use crate::compression::{Compression, CompressionParams, Compressor};
use crate::config::deserialize_duration;
use crate::pipeline::queue::SendingQueueConfig;
use crate::pipeline::retry::RetryConfig;
use crate::pipeline::{Batch, BoxFuture, ExportError, Exporter, Request};
use crate::secret::{Secret, SecretUrl};
use crate::tls::client::TlsClientConfig;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri, header};
use schema::Schema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::OnceCell;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// The HTTP interface, such as `http://clickhouse:8123`. User info is sent as basic auth
    /// unless `username` is set.
    pub endpoint: SecretUrl,
    pub username: Secret,
    pub password: Secret,
    pub database: String,
    pub logs_table_name: String,
    /// Run `CREATE DATABASE/TABLE IF NOT EXISTS` before the first insert.
    pub create_schema: bool,
    /// `compatible` (ClickHouse 18.16 and later) or `modern` (the collector's `otel_logs`, 22.3+).
    pub table_schema: Schema,
    /// `gzip` (default) or `none`.
    pub compress: Compression,
    /// More URL parameters for every query (ClickHouse settings, such as `async_insert: 1`).
    pub connection_params: BTreeMap<String, String>,
    #[serde(deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    pub tls: TlsClientConfig,
    pub sending_queue: SendingQueueConfig,
    pub retry_on_failure: RetryConfig,
    /// An authenticator extension that sets each request's credentials (see `auth::client`).
    #[serde(default)]
    pub auth: Option<crate::auth::AuthSettings>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            endpoint: SecretUrl::default(),
            username: Secret::default(),
            password: Secret::default(),
            database: "default".into(),
            logs_table_name: "otel_logs".into(),
            create_schema: true,
            table_schema: Schema::Compatible,
            compress: Compression::Gzip,
            connection_params: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            tls: TlsClientConfig::default(),
            sending_queue: SendingQueueConfig::default(),
            retry_on_failure: RetryConfig::default(),
            auth: None,
        }
    }
}

fn identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl ClickHouseConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        let uri: Uri = self
            .endpoint
            .expose()
            .parse()
            .map_err(|_| ("endpoint".to_string(), format!("\"{}\" is not a URL", self.endpoint)))?;
        crate::secret::basic_auth_from_userinfo(&uri).map_err(|m| ("endpoint".to_string(), m))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err((
                "endpoint".into(),
                "switchyard speaks ClickHouse's HTTP interface: use http://host:8123 (or https://host:8443)".into(),
            ));
        }
        if !identifier(&self.database) {
            return Err(("database".into(), "letters, digits and _ only".into()));
        }
        if !identifier(&self.logs_table_name) {
            return Err(("logs_table_name".into(), "letters, digits and _ only".into()));
        }
        if self.compress == Compression::Zstd {
            return Err(("compress".into(), "gzip or none".into()));
        }
        self.tls.validate()?;
        self.sending_queue.validate().map_err(|(k, m)| (format!("sending_queue.{k}"), m))?;
        self.retry_on_failure.validate().map_err(|(k, m)| (format!("retry_on_failure.{k}"), m))
    }
}

/// ClickHouse exception codes worth retrying: timeouts, overload, network and replica trouble.
const RETRYABLE_CODES: &[u32] = &[
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (a replica in read-only mode)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    285, // TOO_FEW_LIVE_REPLICAS
    319, // UNKNOWN_STATUS_OF_INSERT
    425, // SYSTEM_ERROR
    999, // KEEPER_EXCEPTION
];

/// The exception code of an answer: the header, else `Code: N` at the start of the body.
pub fn exception_code(headers: &http::HeaderMap, body: &[u8]) -> Option<u32> {
    if let Some(code) = headers.get("x-clickhouse-exception-code").and_then(|v| v.to_str().ok()?.trim().parse().ok()) {
        return Some(code);
    }
    let text = std::str::from_utf8(&body[..body.len().min(64)]).ok()?;
    let rest = text.trim_start().strip_prefix("Code:")?.trim_start();
    rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())].parse().ok()
}

pub struct ClickHouseExporter {
    cfg: ClickHouseConfig,
    insert: Uri,
    base: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    poster: HttpPoster,
    compressor: Compressor,
    schema_ready: OnceCell<()>,
}

fn query_uri(base: &str, params: &BTreeMap<String, String>, query: &str) -> Result<Uri, String> {
    let mut url = format!("{base}/?query={}", encode(query));
    for (k, v) in params {
        url.push_str(&format!("&{}={}", encode(k), encode(v)));
    }
    url.parse().map_err(|e| format!("endpoint: {e}"))
}

/// Percent-encoding for a URL query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl ClickHouseExporter {
    pub fn new(cfg: &ClickHouseConfig) -> Result<ClickHouseExporter, String> {
        // With `username` set, the X-ClickHouse headers carry the credentials and any user info
        // is dropped (ClickHouse refuses a request with both).
        let mut base = cfg.endpoint.expose().trim_end_matches('/').to_string();
        if !cfg.username.is_empty() {
            let uri: Uri = base.parse().map_err(|e| format!("endpoint: {e}"))?;
            let (stripped, _) = crate::secret::basic_auth_from_userinfo(&uri)?;
            base = stripped.to_string().trim_end_matches('/').to_string();
        }
        let mut params = cfg.connection_params.clone();
        params.insert("database".into(), cfg.database.clone());
        let insert = query_uri(&base, &params, &format!("INSERT INTO `{}` FORMAT JSONEachRow", cfg.logs_table_name))?;
        let mut headers = Vec::new();
        if !cfg.username.is_empty() {
            let value = |v: &Secret| {
                crate::secret::header_value(v.expose())
                    .map_err(|_| "username and password must be header-safe".to_string())
            };
            headers.push((HeaderName::from_static("x-clickhouse-user"), value(&cfg.username)?));
            headers.push((HeaderName::from_static("x-clickhouse-key"), value(&cfg.password)?));
        }
        let compressor = Compressor::new(cfg.compress, &CompressionParams::default());
        Ok(ClickHouseExporter {
            cfg: cfg.clone(),
            insert,
            base,
            headers,
            poster: HttpPoster::new(&cfg.tls, cfg.timeout)?,
            compressor,
            schema_ready: OnceCell::new(),
        })
    }

    /// Runs one statement; the error says what ClickHouse answered.
    async fn run(&self, uri: &Uri, body: Bytes, compressed: bool) -> Result<(), ExportError> {
        let mut headers = self.headers.clone();
        headers.push((header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8")));
        if compressed {
            headers.push((header::CONTENT_ENCODING, HeaderValue::from_static("gzip")));
        }
        let (parts, answer) = self.poster.post(uri, &headers, body, 64 * 1024, None).await?;
        let code = exception_code(&parts.headers, &answer);
        // An error raised after the answer started streaming comes under a 200, with the header.
        let failed = !parts.status.is_success() || parts.headers.contains_key("x-clickhouse-exception-code");
        if !failed {
            return Ok(());
        }
        let text: String = String::from_utf8_lossy(&answer).trim().chars().take(500).collect();
        let reason = format!(
            "ClickHouse answered {} (code {}): {text}",
            parts.status,
            code.map_or("none".into(), |c| c.to_string())
        );
        let retry = match code {
            Some(c) => RETRYABLE_CODES.contains(&c),
            None => matches!(parts.status.as_u16(), 429 | 502..=504),
        };
        Err(if retry {
            ExportError::Retryable { after: super::otlphttp::retry_after(&parts.headers), reason }
        } else {
            ExportError::Permanent { reason }
        })
    }

    async fn create_schema(&self) -> Result<(), ExportError> {
        let db = &self.cfg.database;
        for statement in [
            format!("CREATE DATABASE IF NOT EXISTS `{db}`"),
            schema::create_table(self.cfg.table_schema, db, &self.cfg.logs_table_name),
        ] {
            let uri = query_uri(&self.base, &self.cfg.connection_params, "")
                .map_err(|reason| ExportError::Permanent { reason })?;
            self.run(&uri, Bytes::from(statement), false).await.map_err(|e| match e {
                ExportError::Permanent { reason } => ExportError::Permanent {
                    reason: format!(
                        "creating the schema (create_schema: true, table_schema: {:?}) failed: {reason}",
                        self.cfg.table_schema
                    ),
                },
                retry => retry,
            })?;
        }
        tracing::info!(database = %db, table = %self.cfg.logs_table_name, "ClickHouse logs table ready");
        Ok(())
    }

    async fn send(&self, batch: &Batch) -> Result<(), ExportError> {
        let Ok(Request::Logs(logs)) = batch.request() else {
            return Err(ExportError::Permanent { reason: "the clickhouse exporter takes logs only".into() });
        };
        if self.cfg.create_schema {
            self.schema_ready.get_or_try_init(|| self.create_schema()).await?;
        }
        let (rows, n) = schema::rows(logs, self.cfg.table_schema);
        if n == 0 {
            return Ok(());
        }
        match self.compressor.compress(rows.as_bytes()).map_err(|reason| ExportError::Permanent { reason })? {
            Some(gz) => self.run(&self.insert, Bytes::from(gz), true).await,
            None => self.run(&self.insert, Bytes::from(rows), false).await,
        }
    }
}

impl Exporter for ClickHouseExporter {
    fn export<'a>(&'a self, batch: &'a Batch) -> BoxFuture<'a, Result<(), ExportError>> {
        Box::pin(async move { crate::auth::client::scrubbed(self.poster.auth(), self.send(batch).await) })
    }
}

/// The `clickhouse` exporter's registration.
pub const REGISTRATION: crate::registry::Registration = crate::registry::Registration::exporter::<ClickHouseConfig>(
    "clickhouse",
    &[crate::signal::Signal::Logs],
    "ClickHouse over its HTTP interface (JSONEachRow inserts)",
);

impl crate::pipeline::component::ExporterSettings for ClickHouseConfig {
    fn validate(&self) -> crate::pipeline::component::Checked {
        ClickHouseConfig::validate(self).map_err(Into::into)
    }

    fn build<'a>(
        &'a self,
        ctx: &'a crate::pipeline::component::ExporterContext,
    ) -> crate::pipeline::BoxFuture<'a, Result<std::sync::Arc<dyn crate::pipeline::Exporter>, String>> {
        Box::pin(async move {
            let mut exporter = ClickHouseExporter::new(self)?;
            exporter.poster =
                exporter.poster.authenticated(crate::auth::client::ClientAuth::new(self.auth.as_ref(), &ctx.auth));
            Ok(std::sync::Arc::new(exporter) as _)
        })
    }

    fn queue(&self) -> crate::pipeline::queue::QueueSettings {
        self.sending_queue.settings(self.retry_on_failure.clone())
    }

    fn scrubber(&self) -> crate::secret::Scrubber {
        crate::secret::Scrubber::new([&self.username, &self.password], [&self.endpoint])
    }
    fn authenticator(&self) -> Option<&str> {
        self.auth.as_ref().map(|a| a.authenticator.as_str())
    }

    fn destination(&self) -> String {
        format!("{} (ClickHouse HTTP)", self.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_codes_from_the_header_or_the_body() {
        let mut h = http::HeaderMap::new();
        assert_eq!(exception_code(&h, b"Code: 117, e.displayText() = DB::Exception: Unknown field"), Some(117));
        assert_eq!(exception_code(&h, b"Code: 60. DB::Exception: Table otel.nope doesn't exist"), Some(60));
        assert_eq!(exception_code(&h, b"Bad Gateway"), None);
        h.insert("x-clickhouse-exception-code", HeaderValue::from_static("241"));
        assert_eq!(exception_code(&h, b""), Some(241));
    }

    #[test]
    fn the_insert_url_names_database_table_and_settings() {
        let cfg = ClickHouseConfig {
            endpoint: "http://127.0.0.1:8123/".into(),
            connection_params: [("async_insert".to_string(), "1".to_string())].into(),
            ..Default::default()
        };
        let e = ClickHouseExporter::new(&cfg).unwrap();
        assert_eq!(
            e.insert.to_string(),
            "http://127.0.0.1:8123/?query=INSERT%20INTO%20%60otel_logs%60%20FORMAT%20JSONEachRow&async_insert=1&database=default"
        );
    }
}
