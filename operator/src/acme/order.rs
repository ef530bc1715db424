//! One issuance: order -> authorizations -> challenges -> finalize -> certificate chain.
//! Every challenge answer published (HTTP-01 token, DNS-01 TXT value) is removed again,
//! whatever the outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder, OrderStatus,
    RetryPolicy,
};
use rcgen::KeyPair;

use super::account::{AcmeAccount, AcmeError};
use super::solver::{Dns01, Http01Tokens};

/// How the names of one order are proven.
#[derive(Debug, Clone)]
pub enum Proof {
    /// HTTP-01 through the operator's challenge server.
    Http01,
    /// DNS-01 through a provider.
    Dns01(Arc<Dns01>),
}

/// Counters of the ACME requests an issuance made, for metrics and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OrderStats {
    /// Authorizations that needed a challenge (not already valid).
    pub challenges: u32,
}

/// What to wait for: the order to become ready, then the certificate.
fn retries() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(180))
}

enum Published {
    Token(String),
    Txt(Arc<Dns01>, String, String),
}

/// Orders a certificate for `names` (each with its [`Proof`]) and returns the PEM chain.
/// `replaces` names the certificate being renewed (ARI). An error caused by a 429 or 503
/// answer carries the server's `Retry-After`.
pub async fn issue(
    account: &AcmeAccount,
    names: &[String],
    proofs: &HashMap<String, Proof>,
    tokens: &Http01Tokens,
    key: &KeyPair,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<(String, OrderStats), AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut new = NewOrder::new(&identifiers);
    if let Some(replaces) = replaces {
        new = new.replaces(replaces);
    }
    let seen = &account.retry_after;
    let mut order = account
        .account
        .new_order(&new)
        .await
        .map_err(|e| AcmeError::from_acme("creating the order", &e, seen))?;
    let mut published = Vec::new();
    let mut stats = OrderStats::default();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization
                .map_err(|e| AcmeError::from_acme("reading an authorization", &e, seen))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::new(
                        "ChallengeFailed",
                        format!(
                            "authorization for {} is {other:?}",
                            authorization.identifier()
                        ),
                    ));
                }
            }
            let name = authorization.identifier().to_string();
            let proof = proofs.get(&name).ok_or_else(|| {
                AcmeError::new("NoSolver", format!("no solver of the issuer serves {name}"))
            })?;
            let kind = match proof {
                Proof::Http01 => ChallengeType::Http01,
                Proof::Dns01(_) => ChallengeType::Dns01,
            };
            let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
                AcmeError::new(
                    "ChallengeUnavailable",
                    format!("the ACME server offers no {kind:?} challenge for {name}"),
                )
            })?;
            let key_authorization = challenge.key_authorization();
            match proof {
                Proof::Http01 => {
                    tokens.insert(&challenge.token, key_authorization.as_str());
                    published.push(Published::Token(challenge.token.clone()));
                }
                Proof::Dns01(provider) => {
                    let fqdn = format!("_acme-challenge.{}", name.trim_start_matches("*."));
                    let value = key_authorization.dns_value();
                    provider.add_txt(&fqdn, &value).await.map_err(|e| {
                        AcmeError::new("SolverFailed", format!("publishing {fqdn}: {e}"))
                    })?;
                    published.push(Published::Txt(
                        provider.clone(),
                        fqdn.clone(),
                        value.clone(),
                    ));
                    provider
                        .wait_visible(&fqdn, &value)
                        .await
                        .map_err(|e| AcmeError::new("PropagationTimeout", e))?;
                }
            }
            stats.challenges += 1;
            challenge
                .set_ready()
                .await
                .map_err(|e| AcmeError::from_acme("answering the challenge", &e, seen))?;
        }
        let status = order
            .poll_ready(&retries())
            .await
            .map_err(|e| AcmeError::from_acme("waiting for the challenges", &e, seen))?;
        if status != OrderStatus::Ready {
            return Err(failed_challenges(&mut order).await);
        }
        let csr = super::keys::csr(names, key)
            .map_err(|e| AcmeError::new("AcmeClientError", e.to_string()))?;
        order
            .finalize_csr(&csr)
            .await
            .map_err(|e| AcmeError::from_acme("finalizing the order", &e, seen))?;
        order
            .poll_certificate(&retries())
            .await
            .map_err(|e| AcmeError::from_acme("downloading the certificate", &e, seen))
    }
    .await;
    for item in published {
        match item {
            Published::Token(token) => tokens.remove(&token),
            Published::Txt(provider, fqdn, value) => {
                if let Err(error) = provider.remove_txt(&fqdn, &value).await {
                    tracing::warn!(%fqdn, %error, "could not remove a challenge record");
                }
            }
        }
    }
    result.map(|chain| (chain, stats))
}

/// The reason the order became invalid, from the first failed challenge.
async fn failed_challenges(order: &mut instant_acme::Order) -> AcmeError {
    let mut details = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let name = authorization.identifier().to_string();
        if let Ok(state) = authorization.refresh().await {
            for challenge in &state.challenges {
                if let Some(problem) = &challenge.error {
                    details.push(format!("{name}: {problem}"));
                }
            }
        }
    }
    if details.is_empty() {
        details.push("the order became invalid".to_owned());
    }
    AcmeError::new("ChallengeFailed", details.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::account::{RetryAfter, observed};
    use instant_acme::{Account, BodyWrapper, BytesResponse, HttpClient, Key};
    use std::pin::Pin;

    /// An ACME server that registers accounts and answers every new order with a rate
    /// limit, as Let's Encrypt does past 300 orders in 3 hours, with `retry_after` as its
    /// `Retry-After` header.
    struct RateLimited {
        retry_after: Option<&'static str>,
    }

    const BASE: &str = "https://acme.test";

    impl HttpClient for RateLimited {
        fn request(
            &self,
            request: http::Request<BodyWrapper<bytes::Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
        {
            let path = request.uri().path().to_owned();
            let response = |status: u16, body: String| {
                let mut response = http::Response::builder()
                    .status(status)
                    .header("Replay-Nonce", "bm9uY2U")
                    .header("Content-Type", "application/json")
                    .header("Location", format!("{BASE}/acct/1"));
                if let Some(retry_after) = self.retry_after {
                    response = response.header("Retry-After", retry_after);
                }
                response.body(body).expect("response")
            };
            let answer = match path.as_str() {
                "/dir" => response(
                    200,
                    serde_json::json!({
                        "newNonce": format!("{BASE}/nonce"),
                        "newAccount": format!("{BASE}/account"),
                        "newOrder": format!("{BASE}/order"),
                        "revokeCert": format!("{BASE}/revoke"),
                        "keyChange": format!("{BASE}/key"),
                    })
                    .to_string(),
                ),
                "/nonce" => response(200, String::new()),
                "/account" => response(201, r#"{"status":"valid"}"#.to_owned()),
                _ => response(
                    429,
                    serde_json::json!({
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": "too many new orders (300) from this account in the last 3h0m0s",
                        "status": 429,
                    })
                    .to_string(),
                ),
            };
            Box::pin(async move { Ok(BytesResponse::from(answer)) })
        }
    }

    /// What ordering a certificate from `server` fails with.
    async fn order_error(server: RateLimited) -> AcmeError {
        let (key, der) = Key::generate_pkcs8().expect("key");
        let retry_after = RetryAfter::default();
        let (account, _) = Account::builder_with_http(observed(server, None, &retry_after))
            .create_from_key(
                (key, rustls::pki_types::PrivateKeyDer::Pkcs8(der)),
                format!("{BASE}/dir"),
            )
            .await
            .expect("account");
        let account = AcmeAccount {
            account,
            retry_after,
        };
        let tokens = Http01Tokens::default();
        let names = vec!["web.example.com".to_owned()];
        let proofs = HashMap::from([(names[0].clone(), Proof::Http01)]);
        let cert_key = rcgen::KeyPair::generate().expect("key");
        issue(&account, &names, &proofs, &tokens, &cert_key, None)
            .await
            .expect_err("rate limited")
    }

    #[tokio::test]
    async fn a_rate_limit_is_a_clear_reason() {
        let error = order_error(RateLimited {
            retry_after: Some("3600"),
        })
        .await;
        assert_eq!(error.reason, "RateLimited");
        assert!(
            error
                .message
                .starts_with("creating the order: the ACME server answered:")
                && error.message.contains("too many new orders"),
            "{}",
            error.message
        );
        assert_eq!(error.retry_after, Some(Duration::from_secs(3600)));
    }

    #[tokio::test]
    async fn a_rate_limit_without_retry_after_asks_for_no_wait() {
        let error = order_error(RateLimited { retry_after: None }).await;
        assert_eq!(error.reason, "RateLimited");
        assert_eq!(error.retry_after, None);
    }
}
