//! A stand-in OTLP/HTTP backend for exporter tests (no vendor's server can be installed here):
//! it checks every request strictly (POST, path, content type, gzip, an `api-key` header when
//! one is required), decodes the traces, records them with the time they came, and answers as
//! the test scripts it (status and headers per request, then 200).

use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request the backend took (answered 200) or refused (scripted error).
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub status: u16,
    pub span_names: Vec<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    script: VecDeque<(u16, Vec<(String, String)>)>,
    received: Vec<Received>,
    /// Every request answered 200, decoded.
    accepted: Vec<ExportTraceServiceRequest>,
}

#[derive(Clone)]
pub struct Vendor {
    pub port: u16,
    api_key: Option<String>,
    /// Serve TLS with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Reads requests but never answers: a backend that hangs.
    hang: bool,
    state: Arc<Mutex<State>>,
}

impl Vendor {
    /// Listens on `port` (0 for any free port).
    pub fn start(port: u16, api_key: Option<&str>) -> Vendor {
        Vendor::listen(port, api_key, false, None)
    }

    /// A backend that takes connections and requests and never answers.
    pub fn start_hanging() -> Vendor {
        Vendor::listen(0, None, true, None)
    }

    /// A backend on HTTPS; with `client_ca`, it requires a client certificate signed by it.
    pub fn start_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Vendor {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(cert).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(ca).unwrap() {
                    roots.add(c.unwrap()).unwrap();
                }
                builder.with_client_cert_verifier(
                    rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap(),
                )
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder.with_single_cert(chain, key).unwrap();
        Vendor::listen(0, None, false, Some(Arc::new(config)))
    }

    fn listen(port: u16, api_key: Option<&str>, hang: bool, tls: Option<Arc<rustls::ServerConfig>>) -> Vendor {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("vendor port");
        let port = listener.local_addr().expect("addr").port();
        let vendor = Vendor { port, api_key: api_key.map(str::to_string), tls, hang, state: Arc::default() };
        let v = vendor.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let v = v.clone();
                std::thread::spawn(move || match &v.tls {
                    Some(cfg) => {
                        if let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) {
                            v.serve(rustls::StreamOwned::new(conn, stream));
                        }
                    }
                    None => v.serve(stream),
                });
            }
        });
        vendor
    }

    /// The next requests get these answers, in order; later ones get 200.
    pub fn script(&self, answers: &[(u16, &[(&str, &str)])]) {
        let mut s = self.state.lock().unwrap();
        for (code, headers) in answers {
            s.script.push_back((*code, headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()));
        }
    }

    /// The requests answered 200, decoded, in arrival order.
    pub fn accepted_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.state.lock().unwrap().accepted.clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Names of the spans the backend accepted (answered 200), sorted.
    pub fn accepted_spans(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.received().into_iter().filter(|r| r.status == 200).flat_map(|r| r.span_names).collect();
        v.sort();
        v
    }

    fn serve<S: Read + Write>(&self, stream: S) {
        let mut reader = BufReader::new(stream);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                if h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let len: usize = get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if self.hang {
                self.state.lock().unwrap().received.push(Received {
                    at: Instant::now(),
                    status: 0,
                    span_names: Vec::new(),
                    headers,
                });
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            let (status, extra, names) = self.answer(&method, &path, &get, body);
            self.state.lock().unwrap().received.push(Received {
                at: Instant::now(),
                status,
                span_names: names,
                headers: headers.clone(),
            });
            let mut resp =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\ncontent-type: application/x-protobuf\r\n");
            for (k, v) in extra {
                resp.push_str(&format!("{k}: {v}\r\n"));
            }
            resp.push_str("\r\n");
            if reader.get_mut().write_all(resp.as_bytes()).and_then(|_| reader.get_mut().flush()).is_err() {
                return;
            }
        }
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        get: &dyn Fn(&str) -> Option<String>,
        body: Vec<u8>,
    ) -> (u16, Vec<(String, String)>, Vec<String>) {
        let strict = |ok: bool, code: u16| if ok { None } else { Some(code) };
        let refusal = strict(method == "POST", 405)
            .or(strict(path == "/v1/traces", 404))
            .or(strict(get("content-type").as_deref() == Some("application/x-protobuf"), 415))
            .or(strict(self.api_key.is_none() || get("api-key") == self.api_key, 401));
        if let Some(code) = refusal {
            return (code, Vec::new(), Vec::new());
        }
        let raw = if get("content-encoding").as_deref() == Some("gzip") {
            let mut out = Vec::new();
            if GzDecoder::new(&body[..]).read_to_end(&mut out).is_err() {
                return (400, Vec::new(), Vec::new());
            }
            out
        } else {
            body
        };
        let Ok(request) = ExportTraceServiceRequest::decode(&raw[..]) else { return (400, Vec::new(), Vec::new()) };
        let names = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect();
        let mut state = self.state.lock().unwrap();
        let (status, extra) = state.script.pop_front().unwrap_or((200, Vec::new()));
        if status == 200 {
            state.accepted.push(request);
        }
        (status, extra, names)
    }
}
