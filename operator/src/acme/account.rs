//! ACME accounts: the HTTP client (rustls, optional private CA), registration or re-use of
//! the account bound to a stored key, and the classification of ACME errors, with the
//! server's `Retry-After` when it asked to wait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, BodyWrapper, ExternalAccountKey, HttpClient, Key, NewAccount,
};
use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// An ACME failure with the condition reason it maps to.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AcmeError {
    /// CamelCase reason for conditions and Events.
    pub reason: &'static str,
    /// What happened, for a person; never holds key material.
    pub message: String,
    /// How long the server asked to wait before the next attempt (`Retry-After` of its 429
    /// or 503 answer), when it did.
    pub retry_after: Option<Duration>,
}

impl AcmeError {
    /// An error with `reason` and `message`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, with the server's `Retry-After`.
    pub fn with_retry_after(self, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..self
        }
    }

    /// Classifies an error of the ACME client; `doing` says what was being done, `seen` is
    /// the [`RetryAfter`] of the HTTP client that made the request.
    pub fn from_acme(doing: &str, error: &instant_acme::Error, seen: &RetryAfter) -> Self {
        use instant_acme::Error as E;
        let classified = match error {
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
                format!("{doing}: {}", crate::error_chain::describe(error)),
            ),
            other => Self::new("AcmeClientError", format!("{doing}: {other}")),
        };
        classified.with_retry_after(seen.take_for(error))
    }
}

/// The `Retry-After` of the last error answer an ACME HTTP client received, shared by the
/// requests of one account. instant-acme keeps the headers of an error answer to itself, so
/// the client records them here and the error made next takes the value
/// ([`AcmeError::from_acme`]).
#[derive(Debug, Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<Duration>>>);

impl RetryAfter {
    /// Records an answer: an error answer replaces the value, with its `Retry-After` when it
    /// is a 429 (rate limited) or 503 (unavailable) that carries one (RFC 8555 §6.6).
    fn record(&self, answer: &http::response::Parts, now: Timestamp) {
        let status = answer.status.as_u16();
        if status < 400 {
            return;
        }
        let retry_after = match status {
            429 | 503 => answer
                .headers
                .get(http::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, now)),
            _ => None,
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = retry_after;
    }

    /// Takes the recorded value for `error`: none when `error` is a problem document of
    /// another status (an order that became invalid, not the answer recorded).
    pub fn take_for(&self, error: &instant_acme::Error) -> Option<Duration> {
        let recorded = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        match error {
            instant_acme::Error::Api(problem)
                if problem.status.is_some_and(|s| s != 429 && s != 503) =>
            {
                None
            }
            _ => recorded,
        }
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date (IMF-fixdate)
/// measured from `now`; a date in the past is no wait.
fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

/// An ACME HTTP client that counts its requests and records the `Retry-After` of error
/// answers.
struct Observed<C> {
    inner: C,
    requests: Option<Counter>,
    retry_after: RetryAfter,
}

impl<C: HttpClient> HttpClient for Observed<C> {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>,
    > {
        if let Some(requests) = &self.requests {
            requests.inc();
        }
        let answer = self.inner.request(request);
        let retry_after = self.retry_after.clone();
        Box::pin(async move {
            let answer = answer.await?;
            retry_after.record(&answer.parts, Timestamp::now());
            Ok(answer)
        })
    }
}

/// `inner`, with each request counted in `requests` and the `Retry-After` of error answers
/// recorded in `retry_after`.
pub fn observed(
    inner: impl HttpClient,
    requests: Option<Counter>,
    retry_after: &RetryAfter,
) -> Box<dyn HttpClient> {
    Box::new(Observed {
        inner,
        requests,
        retry_after: retry_after.clone(),
    })
}

/// The HTTP client for one ACME directory: rustls with ring, the Mozilla roots and the
/// issuer's `caBundle`; each request is counted in `requests`, and the `Retry-After` of
/// error answers is recorded in `retry_after`.
pub fn http_client(
    ca_bundle: Option<&str>,
    requests: Option<Counter>,
    retry_after: &RetryAfter,
) -> Result<Box<dyn HttpClient>, AcmeError> {
    let tls = crate::tls::client_config(ca_bundle)
        .map_err(|e| AcmeError::new("InvalidCaBundle", e.to_string()))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let inner = HyperClient::builder(TokioExecutor::new()).build(connector);
    Ok(observed(inner, requests, retry_after))
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

/// An ACME account, with the [`RetryAfter`] of its HTTP client for the errors of its
/// requests.
pub struct AcmeAccount {
    /// The account.
    pub account: Account,
    /// What the account's HTTP client saw of `Retry-After`.
    pub retry_after: RetryAfter,
}

impl std::fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeAccount")
            .field("account", &self.account.id())
            .finish_non_exhaustive()
    }
}

/// What registering produced: the account, and the key to store when it is new.
pub struct Registered {
    /// The account.
    pub account: AcmeAccount,
    /// PEM of a key made during registration (External Account Binding), to be stored.
    pub new_key_pem: Option<String>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("account", &self.account.account.id())
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
    let seen = RetryAfter::default();
    let client = || http_client(ca_bundle, requests.clone(), &seen);
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
            Account::builder_with_http(client()?)
                .create(&new, directory.to_owned(), Some(&eab))
                .await
                .map_err(|e| AcmeError::from_acme("registering the account", &e, &seen))?;
        let pem = pkcs8_pem(credentials.private_key().secret_pkcs8_der());
        return Ok(Registered {
            account: AcmeAccount {
                account,
                retry_after: seen,
            },
            new_key_pem: Some(pem),
        });
    };
    let existing = Account::builder_with_http(client()?)
        .from_key(parse_key(key_pem)?, directory.to_owned())
        .await;
    let account = match existing {
        Ok((account, _)) => account,
        Err(error) => {
            let error = AcmeError::from_acme("looking up the account", &error, &seen);
            if error.reason != "AccountDoesNotExist" {
                return Err(error);
            }
            if eab.is_some() {
                return Err(AcmeError::new(
                    "AccountDoesNotExist",
                    "the stored account key has no account on this server, and a new account with External Account Binding needs a new key: delete the key Secret to register one",
                ));
            }
            let (account, _) = Account::builder_with_http(client()?)
                .create_from_key(parse_key(key_pem)?, directory.to_owned())
                .await
                .map_err(|e| AcmeError::from_acme("registering the account", &e, &seen))?;
            if !contacts.is_empty() {
                account.update_contacts(&contacts).await.map_err(|e| {
                    AcmeError::from_acme("setting the account's contact", &e, &seen)
                })?;
            }
            account
        }
    };
    Ok(Registered {
        account: AcmeAccount {
            account,
            retry_after: seen,
        },
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
        let error = AcmeError::from_acme(
            "ordering",
            &instant_acme::Error::Api(problem),
            &RetryAfter::default(),
        );
        assert_eq!(error.reason, "RateLimited");
        assert!(
            error.message.contains("too many new orders"),
            "{}",
            error.message
        );
    }

    #[test]
    fn retry_after_is_delay_seconds_or_an_http_date() {
        let now: Timestamp = "2015-10-21T06:28:00Z".parse().expect("time");
        let parse = |value| parse_retry_after(value, now);
        assert_eq!(parse("3600"), Some(Duration::from_secs(3600)));
        assert_eq!(parse(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(parse("Wed, 21 Oct 2015 05:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("in an hour"), None);
        assert_eq!(parse("-5"), None);
    }

    #[test]
    fn only_429_and_503_answers_carry_a_wait_and_it_is_taken_once() {
        let now = Timestamp::UNIX_EPOCH;
        let answer = |status: u16, retry_after: Option<&str>| {
            let mut answer = http::Response::builder().status(status);
            if let Some(value) = retry_after {
                answer = answer.header("Retry-After", value);
            }
            answer.body(()).expect("answer").into_parts().0
        };
        let unreachable = instant_acme::Error::Other("connection reset".into());
        let seen = RetryAfter::default();
        seen.record(&answer(429, Some("3600")), now);
        // A success in between (another order of the account) changes nothing.
        seen.record(&answer(200, Some("1")), now);
        assert_eq!(seen.take_for(&unreachable), Some(Duration::from_secs(3600)));
        assert_eq!(seen.take_for(&unreachable), None, "taken once");
        seen.record(&answer(503, Some("120")), now);
        seen.record(&answer(400, Some("60")), now);
        assert_eq!(
            seen.take_for(&unreachable),
            None,
            "the last error answer counts"
        );
        seen.record(&answer(429, None), now);
        assert_eq!(seen.take_for(&unreachable), None);
        // An order that became invalid is a problem of its own status, not the 429's.
        seen.record(&answer(429, Some("3600")), now);
        let invalid: instant_acme::Problem = serde_json::from_value(serde_json::json!({
            "type": "urn:ietf:params:acme:error:unauthorized",
            "status": 403
        }))
        .expect("problem");
        assert_eq!(seen.take_for(&instant_acme::Error::Api(invalid)), None);
    }
}
