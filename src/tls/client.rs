//! Client TLS for the OTLP exporters: the collector's `tls` settings (`insecure`, `ca_file`,
//! `cert_file`/`key_file` for mTLS, `insecure_skip_verify`, `server_name_override`) turned into
//! one rustls connector that both the HTTP and the gRPC exporter dial through. Without
//! `ca_file`, the system's trust store is used.

use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// gRPC only: dial `host:port` in plaintext.
    #[serde(default)]
    pub insecure: bool,
    /// Accept any server certificate (testing only; logged as a warning).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file of the certificate authorities to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) and key, for mutual TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name to check the server certificate against, instead of the endpoint's host.
    #[serde(default)]
    pub server_name_override: Option<String>,
}

/// Which HTTP version the connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl TlsClientConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(("tls.cert_file".into(), "cert_file and key_file go together".into()));
        }
        for (key, file) in
            [("tls.ca_file", &self.ca_file), ("tls.cert_file", &self.cert_file), ("tls.key_file", &self.key_file)]
        {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err((key.into(), format!("cannot read {}", f.display())));
            }
        }
        if let Some(name) = &self.server_name_override {
            ServerName::try_from(name.clone())
                .map_err(|_| ("tls.server_name_override".to_string(), format!("invalid name \"{name}\"")))?;
        }
        Ok(())
    }

    /// Whether any setting other than `insecure` is given.
    pub fn has_settings(&self) -> bool {
        self.insecure_skip_verify
            || self.ca_file.is_some()
            || self.cert_file.is_some()
            || self.key_file.is_some()
            || self.server_name_override.is_some()
    }

    /// The files' contents, as the material the connector is built from.
    fn material(&self) -> Result<PemMaterial, String> {
        let read = |key: &str, f: &PathBuf| std::fs::read(f).map_err(|e| format!("{key} {}: {e}", f.display()));
        Ok(PemMaterial {
            ca: self
                .ca_file
                .as_ref()
                .map(|f| read("tls.ca_file", f).map(|pem| (format!("tls.ca_file {}", f.display()), pem)))
                .transpose()?,
            cert_and_key: match (&self.cert_file, &self.key_file) {
                (Some(c), Some(k)) => Some((read("tls.cert_file", c)?, read("tls.key_file", k)?)),
                _ => None,
            },
            insecure_skip_verify: self.insecure_skip_verify,
            server_name_override: self.server_name_override.clone(),
        })
    }

    /// A connector that speaks TLS to `https` URIs and plaintext to `http` ones.
    pub fn connector(
        &self,
        protocol: Protocol,
        connect_timeout: Duration,
    ) -> Result<HttpsConnector<HttpConnector>, String> {
        self.material()?.connector(protocol, connect_timeout)
    }
}

/// What a TLS client is built from, as PEM bytes: read from the `tls` settings' files, or given
/// inline (a kubeconfig's `certificate-authority-data`).
#[derive(Clone, Default)]
pub struct PemMaterial {
    /// Where the authorities came from (for errors, such as `tls.ca_file /etc/ca.pem`), and their PEM.
    pub ca: Option<(String, Vec<u8>)>,
    /// PEM client certificate chain and key, for mutual TLS.
    pub cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
    pub insecure_skip_verify: bool,
    pub server_name_override: Option<String>,
}

impl PemMaterial {
    fn client_config(&self) -> Result<ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = if self.insecure_skip_verify {
            tracing::warn!("tls.insecure_skip_verify is set: server certificates are not checked");
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                provider.signature_verification_algorithms,
            )))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        match &self.cert_and_key {
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("client certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("client key: {e}"))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("TLS client certificate: {e}"))
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.ca {
            Some((from, pem)) => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{from}: {e}"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("{from}: no certificate in it"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    tracing::warn!(
                        errors = ?found.errors,
                        "the system trust store is empty (install ca-certificates, or set tls.ca_file): https endpoints will fail verification"
                    );
                }
            }
        }
        Ok(roots)
    }

    /// A connector that speaks TLS to `https` URIs and plaintext to `http` ones.
    pub fn connector(
        &self,
        protocol: Protocol,
        connect_timeout: Duration,
    ) -> Result<HttpsConnector<HttpConnector>, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let mut builder = HttpsConnectorBuilder::new().with_tls_config(self.client_config()?).https_or_http();
        if let Some(name) = &self.server_name_override {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| format!("invalid tls.server_name_override \"{name}\""))?;
            builder = builder.with_server_name_resolver(FixedServerNameResolver::new(name));
        }
        Ok(match protocol {
            Protocol::Http1 => builder.enable_http1().wrap_connector(http),
            Protocol::Http2 => builder.enable_http2().wrap_connector(http),
        })
    }
}

/// The verifier behind `insecure_skip_verify`: any certificate, but real signature checks.
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
