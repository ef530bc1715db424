//! ACME accounts: the HTTP client (rustls, optional private CA), registration or re-use of
//! the account bound to a stored key, and the classification of ACME errors.

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, ExternalAccountKey, HttpClient, Key, NewAccount,
};
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// An ACME failure with the condition reason it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AcmeError {
    /// CamelCase reason for conditions and Events.
    pub reason: &'static str,
    /// What happened, for a person; never holds key material.
    pub message: String,
}

impl AcmeError {
    /// An error with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// Classifies an error of the ACME client; `doing` says what was being done.
    pub fn from_acme(doing: &str, error: &instant_acme::Error) -> Self {
        use instant_acme::Error as E;
        match error {
            E::Api(problem) => {
                let kind = problem
                    .r#type
                    .as_deref()
                    .and_then(|t| t.strip_prefix("urn:ietf:params:acme:error:"))
                    .unwrap_or("");
                let reason = match kind {
                    "rateLimited" => "RateLimited",
                    "externalAccountRequired" => "ExternalAccountRequired",
                    "accountDoesNotExist" => "AccountDoesNotExist",
                    "unauthorized" | "incorrectResponse" | "connection" | "dns" | "tls" | "caa" => {
                        "ChallengeFailed"
                    }
                    "rejectedIdentifier" | "unsupportedIdentifier" => "IdentifierRejected",
                    "badCSR" => "CsrRejected",
                    _ => "AcmeServerError",
                };
                Self::new(
                    reason,
                    format!("{doing}: the ACME server answered: {problem}"),
                )
            }
            E::Timeout(_) => Self::new(
                "AcmeTimeout",
                format!("{doing}: the ACME server did not finish in time"),
            ),
            E::Hyper(_) | E::Http(_) | E::InvalidUri(_) | E::Other(_) => Self::new(
                "AcmeServerUnreachable",
                format!("{doing}: {}", innermost(error)),
            ),
            other => Self::new("AcmeClientError", format!("{doing}: {other}")),
        }
    }
}

/// The innermost cause of an error chain, prefixed with the outer message when different.
fn innermost(error: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let (outer, inner) = (error.to_string(), cause.to_string());
    if outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

/// An ACME HTTP client that counts its requests.
struct Counted {
    inner: HyperClient<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        BodyWrapper<Bytes>,
    >,
    requests: Option<Counter>,
}

impl HttpClient for Counted {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>,
    > {
        if let Some(requests) = &self.requests {
            requests.inc();
        }
        HttpClient::request(&self.inner, request)
    }
}

/// The HTTP client for one ACME directory: rustls with ring, the Mozilla roots and the
/// issuer's `caBundle`; each request is counted in `requests`.
pub fn http_client(
    ca_bundle: Option<&str>,
    requests: Option<Counter>,
) -> Result<Box<dyn HttpClient>, AcmeError> {
    let tls = crate::tls::client_config(ca_bundle)
        .map_err(|e| AcmeError::new("InvalidCaBundle", e.to_string()))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let inner = HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(Box::new(Counted { inner, requests }))
}

/// A new account key: ECDSA P-256 (what ACME servers and instant-acme support), as
/// PKCS #8 PEM for the Secret.
pub fn generate_key() -> Result<String, AcmeError> {
    let (_, der) = Key::generate_pkcs8()
        .map_err(|e| AcmeError::new("AcmeClientError", format!("account key: {e}")))?;
    Ok(pkcs8_pem(der.secret_pkcs8_der()))
}

fn pkcs8_pem(der: &[u8]) -> String {
    super::cert::pem_block("PRIVATE KEY", der)
}

fn parse_key(pem: &str) -> Result<(Key, PrivateKeyDer<'static>), AcmeError> {
    use rustls::pki_types::pem::PemObject;
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        AcmeError::new(
            "AccountKeyInvalid",
            "tls.key is not a PKCS #8 PEM private key",
        )
    })?;
    let key = Key::from_pkcs8_der(der.clone_key()).map_err(|_| {
        AcmeError::new(
            "AccountKeyInvalid",
            "tls.key is not an ECDSA P-256 key (the only account key type supported)",
        )
    })?;
    Ok((key, PrivateKeyDer::Pkcs8(der)))
}

/// What registering produced: the account, and the key to store when it is new.
pub struct Registered {
    /// The account.
    pub account: Account,
    /// PEM of a key made during registration (External Account Binding), to be stored.
    pub new_key_pem: Option<String>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("account", &self.account.id())
            .field("new_key", &self.new_key_pem.is_some())
            .finish()
    }
}

/// Binds to the account of `key_pem` on `directory`, registering it when the server does
/// not know the key. With External Account Binding and no stored key, a new account (and
/// key) is registered with the binding.
pub async fn register(
    directory: &str,
    ca_bundle: Option<&str>,
    key_pem: Option<&str>,
    email: Option<&str>,
    eab: Option<(&str, &[u8])>,
    requests: Option<Counter>,
) -> Result<Registered, AcmeError> {
    let contact = email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let Some(key_pem) = key_pem else {
        let Some((key_id, hmac)) = eab else {
            return Err(AcmeError::new(
                "AcmeClientError",
                "no account key to register with",
            ));
        };
        let eab = ExternalAccountKey::new(key_id.to_owned(), hmac);
        let new = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials): (Account, AccountCredentials) =
            Account::builder_with_http(http_client(ca_bundle, requests.clone())?)
                .create(&new, directory.to_owned(), Some(&eab))
                .await
                .map_err(|e| AcmeError::from_acme("registering the account", &e))?;
        let pem = pkcs8_pem(credentials.private_key().secret_pkcs8_der());
        return Ok(Registered {
            account,
            new_key_pem: Some(pem),
        });
    };
    let existing = Account::builder_with_http(http_client(ca_bundle, requests.clone())?)
        .from_key(parse_key(key_pem)?, directory.to_owned())
        .await;
    let account = match existing {
        Ok((account, _)) => account,
        Err(error) => {
            let error = AcmeError::from_acme("looking up the account", &error);
            if error.reason != "AccountDoesNotExist" {
                return Err(error);
            }
            if eab.is_some() {
                return Err(AcmeError::new(
                    "AccountDoesNotExist",
                    "the stored account key has no account on this server, and a new account with External Account Binding needs a new key: delete the key Secret to register one",
                ));
            }
            let (account, _) =
                Account::builder_with_http(http_client(ca_bundle, requests.clone())?)
                    .create_from_key(parse_key(key_pem)?, directory.to_owned())
                    .await
                    .map_err(|e| AcmeError::from_acme("registering the account", &e))?;
            if !contacts.is_empty() {
                account
                    .update_contacts(&contacts)
                    .await
                    .map_err(|e| AcmeError::from_acme("setting the account's contact", &e))?;
            }
            account
        }
    };
    Ok(Registered {
        account,
        new_key_pem: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_garbage_is_refused_without_echo() {
        let pem = generate_key().expect("key");
        assert!(parse_key(&pem).is_ok());
        let error = parse_key("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
            .err()
            .expect("refused");
        assert_eq!(error.reason, "AccountKeyInvalid");
        assert!(!error.message.contains("c2VjcmV0"));
    }

    #[test]
    fn problems_map_to_reasons() {
        let problem: instant_acme::Problem = serde_json::from_value(serde_json::json!({
            "type": "urn:ietf:params:acme:error:rateLimited",
            "detail": "too many new orders",
            "status": 429
        }))
        .expect("problem");
        let error = AcmeError::from_acme("ordering", &instant_acme::Error::Api(problem));
        assert_eq!(error.reason, "RateLimited");
        assert!(
            error.message.contains("too many new orders"),
            "{}",
            error.message
        );
    }
}
