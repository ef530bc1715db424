//! TLS client configuration: one place that picks the crypto provider (ring) and the roots.
//!
//! Every outgoing HTTPS connection the operator makes (ACME directories, Route 53, Alibaba
//! Cloud DNS, Prometheus) uses [`client_config`], so no code path depends on a process-wide
//! default provider being installed.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM bundle holds no certificate, or one that does not parse.
    #[error("caBundle: {0}")]
    Bundle(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// A rustls client configuration trusting the Mozilla roots plus the certificates of
/// `extra_roots_pem` (a PEM bundle, e.g. an `AcmeIssuer`'s `caBundle`).
pub fn client_config(extra_roots_pem: Option<&str>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(pem) = extra_roots_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| TlsError::Bundle(format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::Bundle(format!("certificate rejected: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::Bundle("holds no PEM certificate".into()));
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// A reqwest client over [`client_config`] with the given request timeout.
pub fn http_client(
    extra_roots_pem: Option<&str>,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(extra_roots_pem)?)
        .timeout(timeout)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TlsError::Client(e.to_string()))
}
