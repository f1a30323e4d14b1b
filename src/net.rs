//! Listening: checking `host:port` endpoints, binding them, and serving HTTP/1.1 and HTTP/2
//! (including gRPC's cleartext HTTP/2) with graceful shutdown.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How long a client may take to send a request's headers (slow clients hold a connection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks that `endpoint` is `host:port` with a numeric port, as the collector expects.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let bad = || format!("invalid address \"{endpoint}\": expected host:port, such as localhost:4317 or 0.0.0.0:4317");
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(bad());
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad());
    }
    port.parse::<u16>().map_err(|_| bad())?;
    Ok(())
}

/// The addresses `endpoint` resolves to, IPv4 first. `:4317` means every interface, as in the
/// collector; `localhost` may resolve to ::1 first, but clients mostly dial 127.0.0.1.
async fn resolve(endpoint: &str) -> Result<Vec<SocketAddr>, String> {
    check_endpoint(endpoint)?;
    let target = if endpoint.starts_with(':') { format!("0.0.0.0{endpoint}") } else { endpoint.to_string() };
    let mut addrs: Vec<SocketAddr> =
        tokio::net::lookup_host(&target).await.map_err(|e| format!("cannot resolve {endpoint}: {e}"))?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    Ok(addrs)
}

/// Binds a TCP listener on `endpoint`, trying each address it resolves to, IPv4 first.
pub async fn bind(endpoint: &str) -> Result<TcpListener, String> {
    let mut last = format!("{endpoint} resolves to no address");
    for addr in resolve(endpoint).await? {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = format!("cannot listen on {addr}: {e}"),
        }
    }
    Err(last)
}

/// Binds a UDP socket on `endpoint`, as `bind` does for TCP.
pub async fn bind_udp(endpoint: &str) -> Result<UdpSocket, String> {
    let mut last = format!("{endpoint} resolves to no address");
    for addr in resolve(endpoint).await? {
        match UdpSocket::bind(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot listen on {addr}/udp: {e}"),
        }
    }
    Err(last)
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` with `handler` until `shutdown` fires, then lets
/// requests in progress finish (up to `grace`).
pub async fn serve<H, F>(listener: TcpListener, handler: H, shutdown: CancellationToken, grace: Duration)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<BoxBody>> + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let fut = handler(req);
            async move { Ok::<_, Infallible>(fut.await) }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new()).keep_alive_interval(Some(Duration::from_secs(30)));
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}

/// The response body type every switchyard HTTP handler returns.
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A one-line plain-text answer (the error style of the Jaeger and Zipkin endpoints).
pub fn text(status: http::StatusCode, message: &str) -> Response<BoxBody> {
    response(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// A complete response with `status`, `content_type` and `body`.
pub fn response(status: http::StatusCode, content_type: &str, body: impl Into<bytes::Bytes>) -> Response<BoxBody> {
    use http_body_util::BodyExt;
    let body = http_body_util::Full::new(body.into()).map_err(|never| match never {}).boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_host_means_every_interface() {
        let l = bind(":0").await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_unspecified());
    }

    #[test]
    fn endpoints() {
        assert!(check_endpoint("localhost:4317").is_ok());
        assert!(check_endpoint("0.0.0.0:1").is_ok());
        assert!(check_endpoint("[::1]:4317").is_ok());
        assert!(check_endpoint(":4317").is_ok());
        assert!(check_endpoint("localhost").is_err());
        assert!(check_endpoint("localhost:http").is_err());
        assert!(check_endpoint("localhost:70000").is_err());
        assert!(check_endpoint("http://localhost:4317").is_err());
    }
}
