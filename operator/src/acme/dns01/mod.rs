//! DNS-01 providers: each publishes and removes `_acme-challenge` TXT values.

mod acs3;
pub mod alidns;
pub mod rfc2136;
pub mod route53;
mod sigv4;

/// Why a DNS provider call failed. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The request did not get an answer (connection, timeout, TLS).
    #[error("{provider}: request failed: {message}")]
    Transport {
        /// `route53`, `alidns` or `rfc2136`.
        provider: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The provider answered with an error.
    #[error("{provider}: {status} {code}: {message}")]
    Api {
        /// `route53`, `alidns` or `rfc2136`.
        provider: &'static str,
        /// HTTP status or DNS response code.
        status: String,
        /// The provider's error code, e.g. `InvalidChangeBatch`.
        code: String,
        /// The provider's message.
        message: String,
    },
    /// The answer could not be understood, or the zone was not found.
    #[error("{provider}: {message}")]
    Other {
        /// `route53`, `alidns` or `rfc2136`.
        provider: &'static str,
        /// What went wrong.
        message: String,
    },
}
