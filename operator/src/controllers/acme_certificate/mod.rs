//! The `AcmeCertificate` controller: issues through the issuer's ACME account, keeps the
//! certificate in a `kubernetes.io/tls` Secret, renews it on time (ARI when offered), backs
//! off after failures, and copies the Secret to member clusters.
//!
//! The working Secret is only ever replaced, in one write, by a certificate that was
//! verified: the chain is signed link by link, the names are the spec's and the public key
//! is the key written next to it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use rcgen::PublicKeyData;

use self::status::{Step, rfc3339, set_condition};
use super::acme_issuer::{required_secret_text, secret_text};
use super::apply::{MANAGED_BY, MANAGED_BY_LABEL};
use super::member_cluster::{describe_kube_error, member_client};
use super::status::{FIELD_MANAGER, condition, update_status};
use super::{Context, Error, Reconcile};

mod policy;
pub mod status;
use crate::acme::account::{AcmeAccount, AcmeError};
use crate::acme::cert::{CertInfo, verify_chain};
use crate::acme::dns01::alidns::{AliDns, AliDnsCredentials};
use crate::acme::dns01::rfc2136::Rfc2136;
use crate::acme::dns01::route53::{Route53, Route53Credentials};
use crate::acme::keys;
use crate::acme::order::{Proof, issue};
use crate::acme::renewal::{
    RETRY_AFTER_MAX, honour_retry_after, next_attempt, renewal_time, retry_delay,
};
use crate::acme::solver::{Dns01, select};
use crate::api::acme_certificate::{ClusterCopy, RotationPolicy};
use crate::api::acme_issuer::Dns01Solver;
use crate::api::{AcmeCertificate, AcmeCertificateStatus, AcmeIssuer, READY};
use crate::metrics::{CertificateLabels, IssuanceLabels};
use crate::validate::{Validate, parse_duration};

/// Condition type: an issuance is in progress (True) or what the last one did (False).
pub const ISSUING: &str = "Issuing";
/// Annotation on the Secret: how many certificates this object has issued.
pub const REVISION_ANNOTATION: &str = "vigil.io/certificate-revision";
/// Annotation on the Secret: when its certificate was issued.
pub const ISSUED_AT_ANNOTATION: &str = "vigil.io/issued-at";
/// Annotation on the Secret: the `AcmeIssuer` that issued it.
pub const ISSUER_ANNOTATION: &str = "vigil.io/issuer";
/// Label on the Secret and its copies: `<namespace>.<name>` of the `AcmeCertificate`.
pub const CERTIFICATE_LABEL: &str = "vigil.io/certificate";

/// The longest a healthy certificate waits between two looks at its Secret (a deleted or
/// edited Secret is noticed within this time) and its ARI window.
const RECHECK: Duration = Duration::from_secs(600);
/// How long a server without ARI is not asked again.
const ARI_UNSUPPORTED_RECHECK: Duration = Duration::from_secs(6 * 3600);
/// How soon a cluster that did not get its copy is tried again.
const DISTRIBUTION_RETRY: Duration = Duration::from_secs(20);

/// The certificate in the Secret, verified against the spec.
struct Current {
    info: CertInfo,
    chain: String,
    key_pem: String,
    revision: i64,
    issuer: Option<String>,
}

fn certificate_key(cert: &AcmeCertificate) -> String {
    format!(
        "{}.{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    )
}

impl Reconcile for AcmeCertificate {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let inventory = ctx.stores.references();
        let errors = self.validate(&inventory);
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let issuer = inventory
            .acme_issuer(&self.spec.issuer_ref.name)
            .cloned()
            .ok_or_else(|| {
                Error::Acme(AcmeError::new(
                    "IssuerNotFound",
                    format!("AcmeIssuer {:?} does not exist", self.spec.issuer_ref.name),
                ))
            })?;
        let now = Timestamp::now();
        let mut status = status::carried_over(&self);
        let seen = observe(&ctx, &self, &issuer, &status).await?;
        let trigger = policy::trigger(&seen.as_policy(&issuer.name_any(), now));
        let (mut current, mut renewal) = (seen.current.ok(), seen.renewal);
        let failures = status.failed_issuance_attempts.unwrap_or(0);
        let wait = retry_wait(&ctx, failures, ctx.acme.order_wait(&certificate_key(&self)));
        let mut requeue = RECHECK;
        match (
            status::next_step(trigger.is_some(), &status, wait, now),
            trigger,
        ) {
            (Step::Wait(wait), _) => requeue = wait,
            (Step::Issue, Some(why)) => {
                match attempt(&ctx, &self, &issuer, &current, &mut status, &why).await {
                    Ok(issued) => {
                        (renewal, current) = (None, Some(issued));
                        // Any new certificate answers the request made before it.
                        if let Some(request) = seen.requested {
                            status.renew_request = Some(request);
                        }
                    }
                    Err(retry) => requeue = retry,
                }
            }
            _ => {}
        }
        requeue = match &current {
            Some(current) => {
                let renew_at = match renewal {
                    Some(at) => at,
                    None => planned_renewal(&ctx, &self, &issuer, &current.info).await,
                };
                report(&ctx, &self, current, renew_at, &mut status, now, requeue).await
            }
            None => {
                status::not_issued(&mut status);
                requeue
            }
        };
        update_status(&ctx.client, self.as_ref(), status).await?;
        Ok(Action::requeue(requeue.max(Duration::from_secs(1))))
    }
}

/// [`run_issuance`], or how long to wait before the next attempt after it failed.
async fn attempt(
    ctx: &Context,
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
    current: &Option<Current>,
    status: &mut AcmeCertificateStatus,
    trigger: &policy::Trigger,
) -> Result<Current, Duration> {
    run_issuance(ctx, cert, issuer, current.as_ref(), status, trigger)
        .await
        .map_err(|error| {
            let failures = status.failed_issuance_attempts.unwrap_or(1);
            tracing::warn!(certificate = %certificate_key(cert), reason = error.reason, %error, "issuance failed");
            retry_wait(ctx, failures, error.retry_after)
        })
}

/// What the reconcile sees before deciding.
struct Seen {
    /// The certificate in the Secret, or why there is none usable.
    current: Result<Current, String>,
    /// Whether its key is of the spec's algorithm and size.
    key_fits: bool,
    /// Its renewal time (planned again only when a new certificate replaces it).
    renewal: Option<Timestamp>,
    /// A renewal asked for by hand (`vigil renew`) and not answered yet.
    requested: Option<String>,
}

impl Seen {
    fn as_policy<'a>(&'a self, issuer: &'a str, now: Timestamp) -> policy::Observed<'a> {
        policy::Observed {
            current: match &self.current {
                Ok(c) => Ok(policy::Current {
                    issuer: c.issuer.as_deref(),
                    key_fits: self.key_fits,
                }),
                Err(why) => Err(why.as_str()),
            },
            issuer,
            renewal: self.renewal,
            now,
            requested: self.requested.as_deref(),
        }
    }
}

async fn observe(
    ctx: &Context,
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
    status: &AcmeCertificateStatus,
) -> Result<Seen, Error> {
    let namespace = cert.namespace().unwrap_or_default();
    let current = read_current(ctx, &namespace, cert).await?;
    let renewal = match &current {
        Ok(current) => Some(planned_renewal(ctx, cert, issuer, &current.info).await),
        Err(_) => None,
    };
    let requested = cert
        .annotations()
        .get(crate::api::acme_certificate::RENEW_ANNOTATION)
        .filter(|at| status.renew_request.as_ref() != Some(*at))
        .cloned();
    let key_fits = current
        .as_ref()
        .is_ok_and(|c| key_matches(&c.key_pem, cert));
    Ok(Seen {
        current,
        key_fits,
        renewal,
        requested,
    })
}

/// Reports the certificate in the Secret (status, expiry metric) and copies it to the
/// member clusters; returns when to look again.
async fn report(
    ctx: &Context,
    cert: &AcmeCertificate,
    current: &Current,
    renew_at: Timestamp,
    status: &mut AcmeCertificateStatus,
    now: Timestamp,
    requeue: Duration,
) -> Duration {
    let info = &current.info;
    let mut requeue = match status::issued(status, info, current.revision, renew_at, now) {
        // Wake up at the renewal time (at once when it has come).
        Some(renewal) => requeue.min(renewal),
        // Failing: the retry delay decides.
        None => requeue,
    };
    ctx.metrics
        .certificate_expiration
        .get_or_create(&CertificateLabels {
            namespace: cert.namespace().unwrap_or_default(),
            name: cert.name_any(),
        })
        .set(info.not_after.as_second() as f64);
    let copies = distribute(ctx, cert, current, &status.distribution).await;
    if copies.iter().any(|c| c.last_error.is_some()) {
        requeue = requeue.min(DISTRIBUTION_RETRY);
    }
    status.distribution = copies;
    requeue
}

/// The wait after `failures` failed issuances in a row: the backoff, or the ACME server's
/// `Retry-After` of the last one when longer (at most [`RETRY_AFTER_MAX`]).
fn retry_wait(ctx: &Context, failures: i32, retry_after: Option<Duration>) -> Duration {
    let backoff = retry_delay(
        u32::try_from(failures).unwrap_or(0),
        ctx.acme.retry_initial,
        ctx.acme.retry_max,
    );
    honour_retry_after(backoff, retry_after)
}

/// The Secret's certificate, or why there is none usable.
async fn read_current(
    ctx: &Context,
    namespace: &str,
    cert: &AcmeCertificate,
) -> Result<Result<Current, String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_opt(&cert.spec.secret_name).await? else {
        return Ok(Err("there is no certificate yet".to_owned()));
    };
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let (Some(chain), Some(key_pem)) = (text("tls.crt"), text("tls.key")) else {
        return Ok(Err(format!(
            "Secret {} has no tls.crt or tls.key",
            cert.spec.secret_name
        )));
    };
    let key = match keys::parse(&key_pem) {
        Ok(key) => key,
        Err(_) => return Ok(Err("the Secret's tls.key does not parse".to_owned())),
    };
    let info = match verify_chain(&chain, &cert.spec.dns_names, &key.subject_public_key_info()) {
        Ok(info) => info,
        Err(e) => return Ok(Err(format!("the Secret's certificate is unusable: {e}"))),
    };
    let annotations = secret.metadata.annotations.unwrap_or_default();
    Ok(Ok(Current {
        info,
        chain,
        key_pem,
        revision: annotations
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        issuer: annotations.get(ISSUER_ANNOTATION).cloned(),
    }))
}

fn key_matches(key_pem: &str, cert: &AcmeCertificate) -> bool {
    keys::parse(key_pem).is_ok_and(|key| keys::matches(&key, &cert.spec.private_key))
}

/// When the current certificate is renewed: the spec's policy, or the ACME server's
/// suggested window (ARI) when it offers one.
async fn planned_renewal(
    ctx: &Context,
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
    info: &CertInfo,
) -> Timestamp {
    let renew_before = cert
        .spec
        .renew_before
        .as_deref()
        .and_then(|d| parse_duration(d).ok());
    let window = match ctx.acme.account(ctx, issuer).await {
        Ok(account) => suggested_window(ctx, &account, info).await,
        Err(_) => None,
    };
    renewal_time(
        info.not_before,
        info.not_after,
        renew_before,
        cert.spec.renew_before_percentage,
        window,
        &certificate_key(cert),
    )
}

/// The ARI window of the certificate, when the server offers renewal information; asked
/// again only after the server's `Retry-After` (kept between 1 minute and
/// [`RETRY_AFTER_MAX`]), also when it refused to answer.
async fn suggested_window(
    ctx: &Context,
    account: &AcmeAccount,
    info: &CertInfo,
) -> Option<(Timestamp, Timestamp)> {
    let der = rustls::pki_types::CertificateDer::from(info.leaf_der.as_slice());
    let id = instant_acme::CertificateIdentifier::try_from(&der).ok()?;
    let key = id.to_string();
    if let Some(window) = ctx.acme.cached_window(&key) {
        return window;
    }
    let (window, fresh_for) = match account.account.renewal_info(&id).await {
        Ok((renewal, retry_after)) => {
            let window = renewal.suggested_window;
            let start = Timestamp::from_second(window.start.unix_timestamp()).ok();
            let end = Timestamp::from_second(window.end.unix_timestamp()).ok();
            (start.zip(end), retry_after)
        }
        Err(instant_acme::Error::Unsupported(_)) => (None, ARI_UNSUPPORTED_RECHECK),
        Err(error) => {
            tracing::debug!(%error, "no renewal information");
            let retry_after = account.retry_after.take_for(&error);
            (None, retry_after.unwrap_or(Duration::from_secs(300)))
        }
    };
    let fresh_for = fresh_for.clamp(Duration::from_secs(60), RETRY_AFTER_MAX);
    ctx.acme.remember_window(&key, window, fresh_for);
    window
}

/// Issues a certificate, verifies it and replaces the Secret in one write. Records the
/// outcome in `status` (Issuing, failures) and as an Event.
async fn run_issuance(
    ctx: &Context,
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
    current: Option<&Current>,
    status: &mut AcmeCertificateStatus,
    trigger: &policy::Trigger,
) -> Result<Current, AcmeError> {
    let why = trigger.why();
    let mut issuing = status.clone();
    set_condition(
        &mut issuing,
        condition(
            ISSUING,
            Some(true),
            trigger.name(),
            format!("issuing: {why}"),
        ),
    );
    if let Err(error) = update_status(&ctx.client, cert, issuing).await {
        tracing::warn!(%error, "could not record the issuance start");
    }
    let result = issue_and_store(ctx, cert, issuer, current).await;
    ctx.acme.remember_order_wait(
        &certificate_key(cert),
        result.as_ref().err().and_then(|e| e.retry_after),
    );
    let outcome = match &result {
        Ok(_) => "success".to_owned(),
        Err(error) => error.reason.to_owned(),
    };
    ctx.metrics
        .issuances
        .get_or_create(&IssuanceLabels { result: outcome })
        .inc();
    match &result {
        Ok(issued) => {
            status.failed_issuance_attempts = None;
            status.last_failure_time = None;
            let message = format!(
                "revision {} issued because {why}, valid until {}",
                issued.revision,
                rfc3339(issued.info.not_after)
            );
            set_condition(
                status,
                condition(ISSUING, Some(false), "Issued", message.clone()),
            );
            let reason = if current.is_some() {
                "Renewed"
            } else {
                "Issued"
            };
            ctx.publish(cert, EventType::Normal, reason, message).await;
        }
        Err(error) => {
            status.failed_issuance_attempts = Some(
                status
                    .failed_issuance_attempts
                    .unwrap_or(0)
                    .saturating_add(1),
            );
            status.last_failure_time = Some(rfc3339(Timestamp::now()));
            let mut message = format!("{why}, but the issuance failed: {error}");
            if let Some(retry_after) = error.retry_after {
                let failures = status.failed_issuance_attempts.unwrap_or(1);
                let wait = retry_wait(ctx, failures, Some(retry_after));
                message = format!("{message}; {}", next_attempt(wait));
            }
            set_condition(
                status,
                condition(ISSUING, Some(false), error.reason, message.clone()),
            );
            if current.is_none() {
                set_condition(
                    status,
                    condition(READY, Some(false), error.reason, message.clone()),
                );
            }
            ctx.publish(cert, EventType::Warning, "IssuanceFailed", message)
                .await;
        }
    }
    result
}

async fn issue_and_store(
    ctx: &Context,
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
    current: Option<&Current>,
) -> Result<Current, AcmeError> {
    let account = ctx.acme.account(ctx, issuer).await.map_err(|e| {
        AcmeError::new(
            "IssuerNotReady",
            format!("AcmeIssuer {}: {e}", issuer.name_any()),
        )
        .with_retry_after(e.retry_after())
    })?;
    let proofs = proofs(ctx, cert, issuer).await?;
    let key = match current {
        Some(c)
            if cert.spec.private_key.rotation_policy == RotationPolicy::Never
                && key_matches(&c.key_pem, cert) =>
        {
            keys::parse(&c.key_pem)
        }
        _ => keys::generate(&cert.spec.private_key),
    }
    .map_err(|e| AcmeError::new("KeyGenerationFailed", e.to_string()))?;
    let replaces = current.and_then(|c| {
        let der = rustls::pki_types::CertificateDer::from(c.info.leaf_der.as_slice());
        instant_acme::CertificateIdentifier::try_from(&der)
            .ok()
            .map(|id| id.into_owned())
    });
    let attempt = issue(
        &account,
        &cert.spec.dns_names,
        &proofs,
        &ctx.acme.tokens,
        &key,
        replaces.clone(),
    )
    .await;
    let (chain, _) = match attempt {
        // A server without ARI, or one that refuses the replacement (the old certificate
        // was already replaced), gets a plain order.
        Err(error)
            if replaces.is_some()
                && error.reason != "RateLimited"
                && is_replacement_problem(&error) =>
        {
            issue(
                &account,
                &cert.spec.dns_names,
                &proofs,
                &ctx.acme.tokens,
                &key,
                None,
            )
            .await?
        }
        other => other?,
    };
    let info = verify_chain(&chain, &cert.spec.dns_names, &key.subject_public_key_info()).map_err(
        |e| {
            AcmeError::new(
                "InvalidCertificate",
                format!("the issued certificate was refused: {e}"),
            )
        },
    )?;
    let revision = current.map(|c| c.revision).unwrap_or(0) + 1;
    let key_pem = key.serialize_pem();
    let secret = tls_secret(cert, issuer, &chain, &key_pem, &info, revision);
    let namespace = cert.namespace().unwrap_or_default();
    Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &cert.spec.secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|e| {
            AcmeError::new(
                "SecretWriteFailed",
                format!(
                    "Secret {}: {}",
                    cert.spec.secret_name,
                    describe_kube_error(&e)
                ),
            )
        })?;
    Ok(Current {
        info,
        chain,
        key_pem,
        revision,
        issuer: Some(issuer.name_any()),
    })
}

fn is_replacement_problem(error: &AcmeError) -> bool {
    error.message.contains("replaces") || error.message.contains("alreadyReplaced")
}

/// The `kubernetes.io/tls` Secret for a verified certificate.
fn tls_secret(
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
    chain: &str,
    key_pem: &str,
    info: &CertInfo,
    revision: i64,
) -> serde_json::Value {
    let data = tls_data(chain, key_pem, info.root_pem.as_deref());
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": cert.spec.secret_name,
            "namespace": cert.namespace(),
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                CERTIFICATE_LABEL: certificate_key(cert),
            },
            "annotations": {
                REVISION_ANNOTATION: revision.to_string(),
                ISSUED_AT_ANNOTATION: rfc3339(Timestamp::now()),
                ISSUER_ANNOTATION: issuer.name_any(),
            },
        },
        "type": "kubernetes.io/tls",
        "data": data,
    })
}

/// The `data` of a `kubernetes.io/tls` Secret: `tls.crt`, `tls.key` and `ca.crt` when the
/// root is known.
fn tls_data(chain: &str, key_pem: &str, root_pem: Option<&str>) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut data = serde_json::Map::new();
    data.insert("tls.crt".into(), b64(chain).into());
    data.insert("tls.key".into(), b64(key_pem).into());
    if let Some(root) = root_pem {
        data.insert("ca.crt".into(), b64(root).into());
    }
    data.into()
}

/// How each name is proven, with the DNS providers' credentials loaded from Secrets.
async fn proofs(
    ctx: &Context,
    cert: &AcmeCertificate,
    issuer: &AcmeIssuer,
) -> Result<HashMap<String, Proof>, AcmeError> {
    let mut providers: HashMap<usize, Arc<Dns01>> = HashMap::new();
    let mut proofs = HashMap::new();
    for name in &cert.spec.dns_names {
        let solver = select(&issuer.spec.solvers, name).ok_or_else(|| {
            AcmeError::new(
                "NoSolver",
                format!(
                    "no solver of AcmeIssuer {} serves {name}",
                    issuer.name_any()
                ),
            )
        })?;
        let index = issuer
            .spec
            .solvers
            .iter()
            .position(|s| s == solver)
            .unwrap_or_default();
        let proof = match &solver.dns01 {
            None => Proof::Http01,
            Some(dns01) => {
                let provider = match providers.get(&index) {
                    Some(provider) => provider.clone(),
                    None => {
                        let provider = dns01_provider(ctx, dns01).await.map_err(|e| {
                            AcmeError::new(
                                "SolverMisconfigured",
                                format!("spec.solvers[{index}].dns01: {e}"),
                            )
                        })?;
                        let provider = Arc::new(provider);
                        providers.insert(index, provider.clone());
                        provider
                    }
                };
                Proof::Dns01(provider)
            }
        };
        proofs.insert(name.clone(), proof);
    }
    Ok(proofs)
}

async fn dns01_provider(ctx: &Context, spec: &Dns01Solver) -> Result<Dns01, String> {
    let text = |reference: &crate::api::common::SecretRef, key: &'static str| {
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| ctx.namespace.clone());
        let name = reference.name.clone();
        let key = reference.key.clone().unwrap_or_else(|| key.to_owned());
        async move {
            required_secret_text(ctx, &namespace, &name, &key)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let optional = |reference: &crate::api::common::SecretRef, key: &'static str| {
        let namespace = reference
            .namespace
            .clone()
            .unwrap_or_else(|| ctx.namespace.clone());
        let name = reference.name.clone();
        async move {
            secret_text(ctx, &namespace, &name, key)
                .await
                .ok()
                .flatten()
        }
    };
    let http = || crate::tls::http_client(None, Duration::from_secs(30)).map_err(|e| e.to_string());
    if let Some(p) = &spec.rfc2136 {
        let secret = text(&p.tsig_secret_ref, "tsig-secret").await?;
        return Rfc2136::new(&p.nameserver, &p.tsig_key_name, p.tsig_algorithm, &secret)
            .map(Dns01::Rfc2136)
            .map_err(|e| e.to_string());
    }
    if let Some(p) = &spec.route53 {
        let credentials = Route53Credentials {
            access_key_id: text(&p.credentials_secret_ref, "access-key-id").await?,
            secret_access_key: text(&p.credentials_secret_ref, "secret-access-key").await?,
            session_token: optional(&p.credentials_secret_ref, "session-token").await,
        };
        return Ok(Dns01::Route53(Route53::new(
            http()?,
            p.endpoint.clone(),
            credentials,
            p.hosted_zone_id.clone(),
        )));
    }
    if let Some(p) = &spec.alidns {
        let credentials = AliDnsCredentials {
            access_key_id: text(&p.credentials_secret_ref, "access-key-id").await?,
            access_key_secret: text(&p.credentials_secret_ref, "access-key-secret").await?,
        };
        return Ok(Dns01::AliDns(AliDns::new(
            http()?,
            p.endpoint.clone(),
            &p.region_id,
            credentials,
        )));
    }
    Err("no provider is set".to_owned())
}

/// Copies the Secret to every cluster of `spec.distribute`, and removes the copies of
/// clusters no longer listed. One cluster's failure is recorded for it alone.
async fn distribute(
    ctx: &Context,
    cert: &AcmeCertificate,
    current: &Current,
    previous: &[ClusterCopy],
) -> Vec<ClusterCopy> {
    let own_namespace = cert.namespace().unwrap_or_default();
    let (clusters, namespace) = match &cert.spec.distribute {
        Some(d) => (
            d.clusters.clone(),
            d.namespace.clone().unwrap_or_else(|| own_namespace.clone()),
        ),
        None => (Vec::new(), own_namespace.clone()),
    };
    let inventory = ctx.stores.references();
    let copy = copy_of(cert, current);
    let wanted = clusters.iter().map(|cluster| {
        let member = inventory.member_cluster(cluster).cloned();
        let copy = copy.clone();
        let namespace = namespace.clone();
        let own_namespace = own_namespace.clone();
        async move {
            let mut entry = ClusterCopy {
                cluster: cluster.clone(),
                namespace: namespace.clone(),
                revision: previous
                    .iter()
                    .find(|p| p.cluster == *cluster && p.namespace == namespace)
                    .and_then(|p| p.revision),
                last_error: None,
            };
            let result = match member {
                None => Err(format!("MemberCluster {cluster} does not exist")),
                Some(member) if member.spec.local && namespace == own_namespace => Ok(()),
                Some(member) => put_copy(ctx, &member, &namespace, &copy, current.revision).await,
            };
            match result {
                Ok(()) => entry.revision = Some(current.revision),
                Err(error) => entry.last_error = Some(error),
            }
            entry
        }
    });
    let mut copies: Vec<ClusterCopy> = futures::future::join_all(wanted).await;
    let removed: Vec<&ClusterCopy> = previous
        .iter()
        .filter(|p| {
            !copies
                .iter()
                .any(|c| c.cluster == p.cluster && c.namespace == p.namespace)
        })
        .collect();
    for gone in removed {
        let member = inventory.member_cluster(&gone.cluster);
        let result = match member {
            // The cluster itself is gone: nothing left to reach.
            None => Ok(()),
            Some(member) if member.spec.local && gone.namespace == own_namespace => Ok(()),
            Some(member) => remove_copy(ctx, member, &gone.namespace, cert).await,
        };
        if let Err(error) = result {
            copies.push(ClusterCopy {
                last_error: Some(format!("removing the copy: {error}")),
                ..gone.clone()
            });
        }
    }
    for copy in &copies {
        let before = previous
            .iter()
            .find(|p| p.cluster == copy.cluster && p.namespace == copy.namespace);
        if copy.last_error.is_none() && before.and_then(|b| b.revision) != copy.revision {
            ctx.publish(
                cert,
                EventType::Normal,
                "Distributed",
                format!(
                    "revision {} copied to cluster {} (namespace {})",
                    current.revision, copy.cluster, copy.namespace
                ),
            )
            .await;
        }
        if let Some(error) = &copy.last_error
            && before.and_then(|b| b.last_error.as_ref()) != Some(error)
        {
            ctx.publish(
                cert,
                EventType::Warning,
                "DistributionFailed",
                format!("cluster {}: {error}", copy.cluster),
            )
            .await;
        }
    }
    copies
}

/// The copy written to member clusters: the same type, data and revision annotation, and
/// labels that say where it comes from.
fn copy_of(cert: &AcmeCertificate, current: &Current) -> serde_json::Value {
    let data = tls_data(
        &current.chain,
        &current.key_pem,
        current.info.root_pem.as_deref(),
    );
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": cert.spec.secret_name,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY,
                CERTIFICATE_LABEL: certificate_key(cert),
            },
            "annotations": {
                REVISION_ANNOTATION: current.revision.to_string(),
            },
        },
        "type": "kubernetes.io/tls",
        "data": data,
    })
}

/// Writes `copy` into `namespace` of `member` unless it already holds this revision.
async fn put_copy(
    ctx: &Context,
    member: &crate::api::MemberCluster,
    namespace: &str,
    copy: &serde_json::Value,
    revision: i64,
) -> Result<(), String> {
    let (client, server) = member_client(member, ctx).await.map_err(|f| f.message)?;
    let name = copy["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let failed = |e: kube::Error| format!("API server {server}: {}", describe_kube_error(&e));
    if let Some(existing) = secrets.get_opt(&name).await.map_err(failed)? {
        let held = existing
            .annotations()
            .get(REVISION_ANNOTATION)
            .and_then(|r| r.parse::<i64>().ok());
        let ours = existing.labels().get(CERTIFICATE_LABEL).map(String::as_str)
            == copy["metadata"]["labels"][CERTIFICATE_LABEL].as_str();
        if ours && held == Some(revision) {
            return Ok(());
        }
    }
    secrets
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(copy),
        )
        .await
        .map(|_| ())
        .map_err(failed)
}

async fn remove_copy(
    ctx: &Context,
    member: &crate::api::MemberCluster,
    namespace: &str,
    cert: &AcmeCertificate,
) -> Result<(), String> {
    let (client, server) = member_client(member, ctx).await.map_err(|f| f.message)?;
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    match secrets.get_opt(&cert.spec.secret_name).await {
        Ok(Some(secret))
            if secret.labels().get(CERTIFICATE_LABEL) == Some(&certificate_key(cert)) =>
        {
            secrets
                .delete(&cert.spec.secret_name, &DeleteParams::default())
                .await
                .map(|_| ())
                .map_err(|e| format!("API server {server}: {}", describe_kube_error(&e)))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("API server {server}: {}", describe_kube_error(&e))),
    }
}
