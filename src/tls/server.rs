//! TLS for receivers that take TCP connections (`tls` with the collector's server keys):
//! the server certificate and key, and optionally the CAs that client certificates must chain
//! to (then a client without a valid certificate is refused).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: Option<String>,
}

impl TlsServerConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (key, file) in [
            ("tls.cert_file", Some(&self.cert_file)),
            ("tls.key_file", Some(&self.key_file)),
            ("tls.client_ca_file", self.client_ca_file.as_ref()),
        ] {
            if let Some(f) = file
                && !f.is_file()
            {
                return Err((key.into(), format!("cannot read {}", f.display())));
            }
        }
        match self.min_version.as_deref() {
            None | Some("1.2" | "1.3") => Ok(()),
            Some(v) => Err(("tls.min_version".into(), format!("\"{v}\": use \"1.2\" or \"1.3\""))),
        }
    }

    /// The acceptor, with certificates read now (a bad file is an error at start).
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version.as_deref() {
            Some("1.3") => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match &self.client_ca_file {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(ca)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("tls.client_ca_file {}: {e}", ca.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("tls.client_ca_file {}: no certificate in it", ca.display()));
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| format!("tls.client_ca_file: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| format!("tls.cert_file {}: {e}", self.cert_file.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| format!("tls.key_file {}: {e}", self.key_file.display()))?;
        let config = builder.with_single_cert(chain, key).map_err(|e| format!("TLS certificate and key: {e}"))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
