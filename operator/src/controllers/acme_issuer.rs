//! The `AcmeIssuer` controller: keeps the account key in its Secret (created when absent),
//! registers or re-uses the ACME account, and reports `Ready` with the account URI.
//! Accounts are cached for the certificate controller; a registration the ACME server
//! refused with a `Retry-After` is not tried again before then.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::apply::{MANAGED_BY, MANAGED_BY_LABEL};
use super::status::{condition, condition_status, update_status};
use super::{Context, Error, Reconcile};
use crate::acme::account::{self, AcmeAccount, AcmeError};
use crate::acme::renewal::RETRY_AFTER_MAX;
use crate::acme::solver::Http01Tokens;
use crate::api::{AcmeIssuer, AcmeIssuerStatus, READY};
use crate::validate::Validate;

/// Key of the account's private key in its Secret.
pub const ACCOUNT_KEY: &str = "tls.key";

/// What the ACME controllers share: the HTTP-01 tokens being served, cached accounts and
/// the retry schedule of failed issuances, with the waits ACME servers asked for.
pub struct AcmeRuntime {
    /// Tokens served on the challenge port.
    pub tokens: Http01Tokens,
    /// First wait after a failed issuance.
    pub retry_initial: Duration,
    /// Longest wait after repeated failed issuances.
    pub retry_max: Duration,
    accounts: tokio::sync::Mutex<HashMap<String, (String, Arc<AcmeAccount>)>>,
    /// Per issuer: a registration refused with `Retry-After`, for its spec (fingerprint),
    /// until when.
    refusals: std::sync::Mutex<HashMap<String, (String, Instant, AcmeError)>>,
    windows: std::sync::Mutex<HashMap<String, (Option<RenewalWindow>, Instant)>>,
    /// Per certificate: the `Retry-After` of its last failed order, and when it failed.
    order_waits: std::sync::Mutex<HashMap<String, (Duration, Instant)>>,
}

/// A suggested renewal window (ARI): start and end.
pub type RenewalWindow = (jiff::Timestamp, jiff::Timestamp);

impl std::fmt::Debug for AcmeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeRuntime")
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .finish_non_exhaustive()
    }
}

impl AcmeRuntime {
    /// A runtime with no cached account.
    pub fn new(retry_initial: Duration, retry_max: Duration) -> Self {
        Self {
            tokens: Http01Tokens::default(),
            retry_initial,
            retry_max,
            accounts: tokio::sync::Mutex::new(HashMap::new()),
            refusals: std::sync::Mutex::new(HashMap::new()),
            windows: std::sync::Mutex::new(HashMap::new()),
            order_waits: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The `Retry-After` of the last failed order of certificate `id`, if the server sent one.
    pub fn order_wait(&self, id: &str) -> Option<Duration> {
        let waits = self.order_waits.lock().unwrap_or_else(|e| e.into_inner());
        waits.get(id).map(|(wait, _)| *wait)
    }

    /// Remembers the `Retry-After` of the failed order of certificate `id` (`None`: there was
    /// none, or the order succeeded).
    pub fn remember_order_wait(&self, id: &str, wait: Option<Duration>) {
        let mut waits = self.order_waits.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // A wait older than the longest one honoured no longer holds anything back.
        waits.retain(|_, (_, at)| now.duration_since(*at) < RETRY_AFTER_MAX);
        match wait {
            Some(wait) => waits.insert(id.to_owned(), (wait.min(RETRY_AFTER_MAX), now)),
            None => waits.remove(id),
        };
    }

    /// The renewal window the server suggested for certificate `id`, while the answer is
    /// fresh (the server's `Retry-After`).
    pub fn cached_window(&self, id: &str) -> Option<Option<RenewalWindow>> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows
            .get(id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(window, _)| *window)
    }

    /// Remembers the window of certificate `id` for `fresh_for`.
    pub fn remember_window(&self, id: &str, window: Option<RenewalWindow>, fresh_for: Duration) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        windows.retain(|_, (_, until)| *until > now);
        windows.insert(id.to_owned(), (window, now + fresh_for));
    }

    /// The account of `issuer`, registered (and its key stored) when needed. Cached until
    /// the issuer's spec changes. A registration refused with `Retry-After` fails again with
    /// the same error, without asking the server, until that wait (at most
    /// [`RETRY_AFTER_MAX`]) is over or the spec changes.
    pub async fn account(
        &self,
        ctx: &Context,
        issuer: &AcmeIssuer,
    ) -> Result<Arc<AcmeAccount>, Error> {
        let name = issuer.name_any();
        let fingerprint = format!(
            "{}/{}",
            issuer.uid().unwrap_or_default(),
            issuer.metadata.generation.unwrap_or_default()
        );
        let mut accounts = self.accounts.lock().await;
        if let Some((seen, account)) = accounts.get(&name)
            && *seen == fingerprint
        {
            return Ok(account.clone());
        }
        if let Some(refused) = self.refused(&name, &fingerprint) {
            return Err(Error::Acme(refused));
        }
        let registered = register(ctx, issuer).await;
        let refusal = match &registered {
            Err(Error::Acme(error)) => Some(error),
            _ => None,
        };
        self.remember_refusal(&name, &fingerprint, refusal);
        let account = Arc::new(registered?);
        accounts.insert(name, (fingerprint, account.clone()));
        Ok(account)
    }

    /// The refusal of `issuer`'s registration still in force for spec `fingerprint`, with
    /// the wait that is left.
    fn refused(&self, issuer: &str, fingerprint: &str) -> Option<AcmeError> {
        let refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        let (seen, until, error) = refusals.get(issuer)?;
        let left = until.checked_duration_since(Instant::now())?;
        (seen == fingerprint).then(|| error.clone().with_retry_after(Some(left)))
    }

    /// Remembers how a registration of `issuer` ended: a refusal is kept when the server
    /// asked to wait, anything else forgets the previous one.
    fn remember_refusal(&self, issuer: &str, fingerprint: &str, refusal: Option<&AcmeError>) {
        let mut refusals = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
        match refusal.and_then(|error| Some((error, error.retry_after?))) {
            Some((error, wait)) => {
                let until = Instant::now() + wait.min(RETRY_AFTER_MAX);
                refusals.insert(
                    issuer.to_owned(),
                    (fingerprint.to_owned(), until, error.clone()),
                );
            }
            None => {
                refusals.remove(issuer);
            }
        }
    }

    /// Forgets the account of `issuer` (after an error that may come from a stale account).
    pub async fn forget(&self, issuer: &str) {
        self.accounts.lock().await.remove(issuer);
    }
}

fn secret_namespace(ctx: &Context, namespace: Option<&String>) -> String {
    namespace.cloned().unwrap_or_else(|| ctx.namespace.clone())
}

/// Reads the key `key` of a Secret as UTF-8; `Ok(None)` when the Secret does not exist.
pub async fn secret_text(
    ctx: &Context,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_opt(name).await? else {
        return Ok(None);
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Error::Secret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            problem: format!("has no key {key:?}"),
        })?;
    String::from_utf8(value.0.clone())
        .map(Some)
        .map_err(|_| Error::Secret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            problem: format!("key {key:?} is not UTF-8 text"),
        })
}

/// Like [`secret_text`], but the Secret must exist.
pub async fn required_secret_text(
    ctx: &Context,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<String, Error> {
    secret_text(ctx, namespace, name, key)
        .await?
        .ok_or_else(|| Error::Secret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            problem: "does not exist".to_owned(),
        })
}

async fn create_key_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
    key_pem: String,
) -> Result<(), Error> {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            ACCOUNT_KEY.to_owned(),
            ByteString(key_pem.into_bytes()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(ctx.client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

/// Registers (or finds) the account of `issuer`.
async fn register(ctx: &Context, issuer: &AcmeIssuer) -> Result<AcmeAccount, Error> {
    let spec = &issuer.spec;
    let key_ref = &spec.private_key_secret_ref;
    let namespace = secret_namespace(ctx, key_ref.namespace.as_ref());
    let key_name = key_ref.key.as_deref().unwrap_or(ACCOUNT_KEY);
    let mut key_pem = secret_text(ctx, &namespace, &key_ref.name, key_name).await?;
    let eab = match &spec.external_account_binding {
        Some(binding) => {
            let reference = &binding.key_secret_ref;
            let hmac_namespace = secret_namespace(ctx, reference.namespace.as_ref());
            let text = required_secret_text(
                ctx,
                &hmac_namespace,
                &reference.name,
                reference.key.as_deref().unwrap_or("secret"),
            )
            .await?;
            use base64::Engine as _;
            let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .map_err(|_| Error::Secret {
                    namespace: hmac_namespace.clone(),
                    name: reference.name.clone(),
                    problem: "the External Account Binding key is not base64url".to_owned(),
                })?;
            Some((binding.key_id.clone(), hmac))
        }
        None => None,
    };
    if key_pem.is_none() && eab.is_none() {
        // Store the key before registering, so that a crash in between cannot leave an
        // account whose key is lost.
        let pem = account::generate_key().map_err(Error::Acme)?;
        create_key_secret(ctx, &namespace, &key_ref.name, pem.clone()).await?;
        key_pem = Some(pem);
    }
    let registered = account::register(
        &spec.server,
        spec.ca_bundle.as_deref(),
        key_pem.as_deref(),
        spec.email.as_deref(),
        eab.as_ref()
            .map(|(id, hmac)| (id.as_str(), hmac.as_slice())),
        Some(ctx.metrics.acme_requests.clone()),
    )
    .await
    .map_err(Error::Acme)?;
    if let Some(pem) = registered.new_key_pem {
        create_key_secret(ctx, &namespace, &key_ref.name, pem).await?;
    }
    Ok(registered.account)
}

impl Reconcile for AcmeIssuer {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let errors = self.validate(&ctx.stores.references());
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let account = match ctx.acme.account(&ctx, &self).await {
            Ok(account) => account,
            Err(error) => {
                ctx.acme.forget(&self.name_any()).await;
                return Err(error);
            }
        };
        let was_ready = self
            .status
            .as_ref()
            .and_then(|s| condition_status(&s.conditions, READY))
            == Some("True");
        let status = AcmeIssuerStatus {
            observed_generation: None,
            conditions: vec![condition(
                READY,
                Some(true),
                "AccountRegistered",
                format!("the ACME account is registered at {}", self.spec.server),
            )],
            account_uri: Some(account.account.id().to_owned()),
        };
        if update_status(&ctx.client, self.as_ref(), status).await? && !was_ready {
            ctx.publish(
                self.as_ref(),
                EventType::Normal,
                "AccountRegistered",
                format!("ACME account {}", account.account.id()),
            )
            .await;
        }
        Ok(Action::requeue(Duration::from_secs(3600)))
    }
}

impl From<AcmeError> for Error {
    fn from(error: AcmeError) -> Self {
        Error::Acme(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_registration_is_not_retried_before_its_retry_after() {
        let acme = AcmeRuntime::new(Duration::from_secs(3600), Duration::from_secs(32 * 3600));
        let hour = Duration::from_secs(3600);
        let refused = AcmeError::new("RateLimited", "registering the account: too many")
            .with_retry_after(Some(hour));
        acme.remember_refusal("le", "uid/1", Some(&refused));
        let again = acme.refused("le", "uid/1").expect("still refused");
        assert_eq!(
            (again.reason, again.message.as_str()),
            (refused.reason, refused.message.as_str())
        );
        assert!(again.retry_after.is_some_and(|left| left <= hour));
        assert!(
            acme.refused("le", "uid/2").is_none(),
            "a spec change may try again"
        );
        // A refusal without Retry-After, or a success, forgets it.
        acme.remember_refusal("le", "uid/1", Some(&AcmeError::new("AcmeServerError", "x")));
        assert!(acme.refused("le", "uid/1").is_none());
    }

    #[test]
    fn an_order_wait_is_remembered_up_to_six_hours_and_forgotten_on_success() {
        let acme = AcmeRuntime::new(Duration::from_secs(3600), Duration::from_secs(32 * 3600));
        acme.remember_order_wait("shop.web", Some(Duration::from_secs(30 * 86400)));
        assert_eq!(acme.order_wait("shop.web"), Some(RETRY_AFTER_MAX));
        acme.remember_order_wait("shop.web", None);
        assert_eq!(acme.order_wait("shop.web"), None);
    }
}
