//! The pod mutating webhook: pods of a workload that a `SupervisedWorkload` targets get its
//! isolation ([`mutate`]) when they are created.
//!
//! - **TLS** from a CA the operator manages itself: the CA and the serving certificate are
//!   generated once (rcgen, ECDSA P-256) and kept in a Secret of the operator's namespace,
//!   so every replica serves the same certificate and a restart changes nothing. The
//!   serving certificate is renewed when less than a third of its year is left.
//! - **Every replica serves** (from its own watch of `SupervisedWorkload`s), so pod creation
//!   never depends on which replica leads. The leader keeps the
//!   `MutatingWebhookConfiguration` and its `caBundle` in sync.
//! - `failurePolicy: Ignore`: a Vigil outage never blocks pod creation. `kube-system`, the
//!   operator's namespace and namespaces labelled `vigil.io/webhook=disabled` are never sent.

pub mod mutate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::core::DeserializeGuard;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio::sync::watch;

use crate::api::supervised_workload::WorkloadKind;
use crate::api::{MemberCluster, SupervisedWorkload, TelemetryPipeline};
use crate::controllers::supervised_workload::{targeting, workload_of};

/// Path the API server posts pod admissions to.
pub const PATH: &str = "/mutate-pods";
/// Annotation on a mutated pod: the `SupervisedWorkload`, its profile and what changed.
pub const MUTATED_ANNOTATION: &str = "vigil.io/isolation";
/// Namespace label that keeps the webhook away.
pub const OPT_OUT_LABEL: (&str, &str) = ("vigil.io/webhook", "disabled");
/// Lifetime of the serving certificate.
const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Lifetime of the CA.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Where and how the webhook is served.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Address of the HTTPS server.
    pub addr: SocketAddr,
    /// The Service in the operator's namespace in front of it, and its port.
    pub service: Option<(String, u16)>,
    /// A URL the API server posts to instead of a Service (an operator outside the
    /// cluster, as in the end-to-end tests).
    pub url: Option<String>,
    /// Name of the `MutatingWebhookConfiguration`.
    pub configuration_name: String,
    /// Secret (operator namespace) with the CA and the serving certificate.
    pub secret_name: String,
    /// The operator's namespace.
    pub namespace: String,
    /// How often the TLS Secret is looked at for a renewal.
    pub tls_check: Duration,
}

/// The webhook's CA and serving certificate, PEM.
#[derive(Clone, Debug)]
pub struct Tls {
    /// The CA certificate (the `caBundle`).
    pub ca_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving key (PKCS#8).
    pub key_pem: String,
}

fn server_names(options: &WebhookOptions) -> Vec<SanType> {
    let mut names = Vec::new();
    if let Some((service, _)) = &options.service {
        for name in [
            format!("{service}.{}.svc", options.namespace),
            format!("{service}.{}.svc.cluster.local", options.namespace),
        ] {
            if let Ok(name) = name.try_into() {
                names.push(SanType::DnsName(name));
            }
        }
    }
    if let Some(host) = options.url.as_deref().and_then(url_host) {
        match host.parse() {
            Ok(ip) => names.push(SanType::IpAddress(ip)),
            Err(_) => {
                if let Ok(name) = host.try_into() {
                    names.push(SanType::DnsName(name));
                }
            }
        }
    }
    names
}

/// The host of an `https://host[:port]/path` URL, without IPv6 brackets.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Valid from the start of today (UTC) for `lifetime`, in whole days.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let day = |t: jiff::Timestamp| {
        let date = t.to_zoned(jiff::tz::TimeZone::UTC).date();
        rcgen::date_time_ymd(
            i32::from(date.year()),
            u8::try_from(date.month()).unwrap_or(1),
            u8::try_from(date.day()).unwrap_or(1),
        )
    };
    let now = jiff::Timestamp::now();
    params.not_before = day(now);
    let later = jiff::SignedDuration::from_secs(i64::try_from(lifetime.as_secs()).unwrap_or(0));
    params.not_after = day(now.checked_add(later).unwrap_or(now));
}

/// New TLS for `options`: a serving certificate signed by the stored CA (`ca`: its
/// certificate and key, PEM), or by a new CA. Returns the CA key too, to be stored.
fn generate(options: &WebhookOptions, ca: Option<(&str, &str)>) -> anyhow::Result<(Tls, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = server_names(options);
    params
        .distinguished_name
        .push(DnType::CommonName, "vigil-webhook");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, SERVING_LIFETIME);
    let (cert, ca_pem, ca_key) = match ca {
        Some((ca_cert, ca_key)) => {
            let signing = KeyPair::from_pem(ca_key).context("the webhook CA key is unreadable")?;
            let issuer = Issuer::from_ca_cert_pem(ca_cert, signing)
                .context("the webhook CA certificate is unreadable")?;
            (
                params.signed_by(&key, &issuer)?,
                ca_cert.to_owned(),
                ca_key.to_owned(),
            )
        }
        None => {
            let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "vigil-webhook-ca");
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            validity(&mut ca_params, CA_LIFETIME);
            let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
            let ca_key = issuer.key().serialize_pem();
            (params.signed_by(&key, &issuer)?, issuer.pem(), ca_key)
        }
    };
    Ok((
        Tls {
            ca_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        ca_key,
    ))
}

/// Whether the serving certificate `pem` is valid for at least another third of its
/// lifetime and names every server name of `options`.
fn still_good(pem: &str, options: &WebhookOptions) -> bool {
    let Ok((_, block)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = block.parse_x509() else {
        return false;
    };
    let not_after = cert.validity().not_after.timestamp();
    let left = not_after - jiff::Timestamp::now().as_second();
    let lifetime = i64::try_from(SERVING_LIFETIME.as_secs()).unwrap_or(i64::MAX);
    let names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    let wanted = server_names(options);
    let named = wanted.iter().all(|w| {
        let w = match w {
            SanType::DnsName(n) => format!("DNSName({})", n.as_str()),
            SanType::IpAddress(ip) => format!("IPAddress({ip})"),
            _ => return true,
        };
        names.iter().any(|n| n == &w)
    });
    left > lifetime / 3 && named
}

/// The webhook's TLS, from its Secret: created when missing, the serving certificate
/// renewed (with the same CA) when it is due or no longer names the server.
pub async fn ensure_tls(client: &Client, options: &WebhookOptions) -> anyhow::Result<Tls> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &options.namespace);
    let text = |s: &Secret, key: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    for _ in 0..3 {
        let current = secrets.get_opt(&options.secret_name).await?;
        let stored = current.as_ref().and_then(|s| {
            Some((
                text(s, "ca.crt")?,
                text(s, "ca.key")?,
                text(s, "tls.crt")?,
                text(s, "tls.key")?,
            ))
        });
        if let Some((ca, _, cert, key)) = &stored
            && still_good(cert, options)
        {
            return Ok(Tls {
                ca_pem: ca.clone(),
                cert_pem: cert.clone(),
                key_pem: key.clone(),
            });
        }
        let (tls, ca_key) = generate(
            options,
            stored
                .as_ref()
                .map(|(ca, key, _, _)| (ca.as_str(), key.as_str())),
        )?;
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": options.secret_name, "namespace": options.namespace,
                "resourceVersion": current.as_ref().and_then(|s| s.metadata.resource_version.clone()),
                "labels": {"app.kubernetes.io/managed-by": "vigil"}},
            "type": "Opaque",
            "stringData": {"ca.crt": tls.ca_pem, "ca.key": ca_key, "tls.crt": tls.cert_pem, "tls.key": tls.key_pem},
        }))?;
        let written = match current {
            // A merge patch carrying the resourceVersion: another replica's renewal in
            // between makes it fail with 409, and that replica's certificate is used.
            Some(_) => {
                secrets
                    .patch(
                        &options.secret_name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&secret),
                    )
                    .await
            }
            None => secrets.create(&Default::default(), &secret).await,
        };
        match written {
            Ok(_) => return Ok(tls),
            // Another replica wrote it first: use theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    anyhow::bail!("the webhook TLS Secret keeps changing under us")
}

/// A `rustls` server configuration for `tls`.
pub fn server_config(tls: &Tls) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What the webhook reads: watches of the kinds that decide what a pod gets.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // reflector stores have no Debug
pub struct Stores {
    /// `SupervisedWorkload`s: isolation, and a sidecar through `telemetry.pipelineRef`.
    pub workloads: Store<DeserializeGuard<SupervisedWorkload>>,
    /// `TelemetryPipeline`s: the sidecar and its validated configuration.
    pub pipelines: Store<DeserializeGuard<TelemetryPipeline>>,
    /// `MemberCluster`s: which one is this cluster, whose configuration the sidecar runs.
    pub members: Store<DeserializeGuard<MemberCluster>>,
    /// Whether each store has its first full list.
    pub synced: std::sync::Arc<[crate::controllers::Synced]>,
}

/// How long a review waits for the stores' first list: under the 5 s timeout the webhook
/// configuration gives the API server.
const STORES_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// What a request handler needs.
#[derive(Clone)]
struct Handler {
    stores: Stores,
}

async fn admit(
    State(handler): State<Handler>,
    axum::Json(review): axum::Json<AdmissionReview<Pod>>,
) -> axum::Json<AdmissionReview<kube::core::DynamicObject>> {
    let request: AdmissionRequest<Pod> = match review.try_into() {
        Ok(request) => request,
        Err(error) => {
            return axum::Json(AdmissionResponse::invalid(error.to_string()).into_review());
        }
    };
    // Right after a start, the stores may not hold their first list yet: a pod judged
    // against them would lose its isolation or sidecar. Wait for them, within the
    // webhook's timeout.
    crate::controllers::wait_synced(&handler.stores.synced, STORES_WAIT).await;
    let response = AdmissionResponse::from(&request);
    let response = match review_pod(&handler, &request) {
        Some(patch) => match response.clone().with_patch(patch) {
            Ok(patched) => patched,
            Err(error) => {
                tracing::warn!(%error, "could not serialize the pod patch; admitting unchanged");
                response
            }
        },
        None => response,
    };
    axum::Json(response.into_review())
}

/// The JSON patch for a pod: the isolation of the `SupervisedWorkload` targeting its
/// workload, and the collector sidecar it asks for (annotation or `telemetry.pipelineRef`).
/// `None` when nothing changes.
fn review_pod(handler: &Handler, request: &AdmissionRequest<Pod>) -> Option<json_patch::Patch> {
    let pod = request.object.as_ref()?;
    let namespace = request.namespace.clone().or_else(|| pod.namespace())?;
    let original = serde_json::to_value(pod).ok()?;
    let mut mutated = original.clone();
    let workload = workload_of(pod).and_then(|(kind, name)| {
        targeting(&handler.stores.workloads, &namespace, kind, &name)
            .into_iter()
            .next()
            .map(|w| (kind, w))
    });
    let pod_name = pod
        .metadata
        .generate_name
        .as_deref()
        .or(pod.metadata.name.as_deref())
        .unwrap_or_default()
        .to_owned();
    if let Some((kind, workload)) = &workload {
        let key = (*kind == WorkloadKind::CronJob)
            .then(|| {
                let job = pod
                    .owner_references()
                    .iter()
                    .find(|o| o.kind == "Job")
                    .map(|o| o.name.clone())?;
                mutate::idempotency_key(&namespace, &job)
            })
            .flatten();
        let mutation = mutate::mutate(&mutated, workload, key.as_deref());
        if !mutation.changes.is_empty() {
            mutated = mutation.pod;
            annotate(
                &mut mutated,
                MUTATED_ANNOTATION,
                format!(
                    "{:?} from SupervisedWorkload {}: {}",
                    workload.spec.isolation.profile,
                    workload.name_any(),
                    mutation.changes.join("; ")
                ),
            );
            tracing::info!(
                namespace,
                workload = %workload.spec.target.name,
                pod = pod_name,
                changes = mutation.changes.len(),
                conflicts = mutation.conflicts.len(),
                "pod isolated"
            );
        }
    }
    let requested = pod
        .annotations()
        .get(mutate::SIDECAR_REQUEST_ANNOTATION)
        .cloned()
        .or_else(|| {
            workload
                .as_ref()
                .and_then(|(_, w)| w.spec.telemetry.as_ref())
                .map(|t| t.pipeline_ref.name.clone())
        });
    if let Some(pipeline) = requested {
        let outcome = match sidecar(&handler.stores, &namespace, &pipeline) {
            Ok((collector, volume, config_map)) => {
                let changes = mutate::inject_collector(&mut mutated, collector, volume);
                if changes.is_empty() {
                    None
                } else {
                    tracing::info!(
                        namespace,
                        pipeline,
                        pod = pod_name,
                        config_map,
                        "collector sidecar injected"
                    );
                    Some(format!(
                        "TelemetryPipeline {pipeline}, ConfigMap {config_map}: {}",
                        changes.join("; ")
                    ))
                }
            }
            Err(why) => {
                tracing::warn!(
                    namespace,
                    pipeline,
                    pod = pod_name,
                    why,
                    "collector sidecar not injected"
                );
                Some(format!("not injected: {why}"))
            }
        };
        if let Some(note) = outcome {
            annotate(&mut mutated, mutate::SIDECAR_ANNOTATION, note);
        }
    }
    (mutated != original).then(|| json_patch::diff(&original, &mutated))
}

fn annotate(pod: &mut serde_json::Value, key: &str, value: String) {
    if !pod["metadata"]["annotations"].is_object() {
        pod["metadata"]["annotations"] = serde_json::json!({});
    }
    pod["metadata"]["annotations"][key] = serde_json::json!(value);
}

/// The sidecar container, its volume and the ConfigMap it runs, for pipeline `name` of
/// `namespace`: a `sidecar` pipeline whose configuration for this cluster (the local
/// `MemberCluster`) passed validation. Otherwise why not.
fn sidecar(
    stores: &Stores,
    namespace: &str,
    name: &str,
) -> Result<(serde_json::Value, serde_json::Value, String), String> {
    use crate::api::telemetry_pipeline::CollectorMode;
    use crate::render::otel;
    let pipelines = stores.pipelines.state();
    let pipeline = pipelines
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .find(|p| p.namespace().as_deref() == Some(namespace) && p.name_any() == name)
        .ok_or_else(|| format!("TelemetryPipeline {namespace}/{name} does not exist"))?;
    if pipeline.spec.mode != CollectorMode::Sidecar {
        return Err(format!(
            "TelemetryPipeline {name} runs in {:?} mode, not sidecar",
            pipeline.spec.mode
        ));
    }
    let members = stores.members.state();
    let local = members
        .iter()
        .filter_map(|g| g.0.as_ref().ok())
        .find(|m| m.spec.local)
        .ok_or("no MemberCluster has local: true, so the webhook cannot tell which cluster's configuration to run")?;
    let config_map = pipeline
        .status
        .as_ref()
        .and_then(|s| s.clusters.iter().find(|c| c.cluster == local.name_any()))
        .and_then(|c| c.active_config.clone())
        .ok_or_else(|| {
            format!(
                "TelemetryPipeline {name} has no validated configuration for cluster {} yet",
                local.name_any()
            )
        })?;
    let env = otel::collector_env(pipeline, local.spec.provider);
    Ok((
        otel::collector_container(
            pipeline,
            &env,
            &otel::site_resource(&local.name_any(), local.spec.provider, &local.spec.region),
            otel::SIDECAR_VOLUME,
        ),
        otel::sidecar_volume(&config_map),
        config_map,
    ))
}

/// Keeps the webhook's TLS fresh while it runs: every `options.tls_check`, the Secret is
/// read again through [`ensure_tls`] (which renews a serving certificate due for renewal,
/// and makes a new CA if the Secret was deleted). A change is published on `tls`, which
/// the server reads for each new connection.
pub async fn keep_tls(
    client: Client,
    options: WebhookOptions,
    tls: watch::Sender<Tls>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(options.tls_check) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match ensure_tls(&client, &options).await {
            Ok(fresh) => {
                let renewed = tls.borrow().cert_pem != fresh.cert_pem;
                if renewed {
                    let new_ca = tls.borrow().ca_pem != fresh.ca_pem;
                    tracing::info!(new_ca, "webhook serving certificate renewed");
                    tls.send_replace(fresh);
                }
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "could not renew the webhook's TLS; serving the current certificate");
            }
        }
    }
}

/// Serves the webhook over HTTPS on `addr` until `stop` turns true, with the TLS currently
/// in `tls` for each new connection.
pub async fn serve(
    addr: SocketAddr,
    mut tls: watch::Receiver<Tls>,
    stores: Stores,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the webhook"))?;
    let mut acceptor =
        tokio_rustls::TlsAcceptor::from(Arc::new(server_config(&tls.borrow_and_update())?));
    let router = Router::new()
        .route(PATH, post(admit))
        .with_state(Handler { stores });
    tracing::info!(%addr, "webhook serving");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => { tracing::warn!(%error, "webhook accept failed"); continue; }
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        if tls.has_changed().unwrap_or(false) {
            match server_config(&tls.borrow_and_update()) {
                Ok(config) => acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config)),
                Err(error) => {
                    tracing::warn!(%error, "the renewed webhook certificate is unusable; keeping the current one")
                }
            }
        }
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The `MutatingWebhookConfiguration`, applied by the leader (again when the CA changes).
pub fn configuration(options: &WebhookOptions, ca_pem: &str) -> serde_json::Value {
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let client_config = match (&options.url, &options.service) {
        (Some(url), _) => {
            serde_json::json!({"url": format!("{}{PATH}", url.trim_end_matches('/')), "caBundle": ca_bundle})
        }
        (None, Some((service, port))) => serde_json::json!({"service": {
            "namespace": options.namespace, "name": service, "path": PATH, "port": port},
            "caBundle": ca_bundle}),
        (None, None) => serde_json::json!({"caBundle": ca_bundle}),
    };
    serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": options.configuration_name,
            "labels": {"app.kubernetes.io/managed-by": "vigil"}},
        "webhooks": [{
            "name": "pods.vigil.io",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "clientConfig": client_config,
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                    "values": ["kube-system", options.namespace]},
                {"key": OPT_OUT_LABEL.0, "operator": "NotIn", "values": [OPT_OUT_LABEL.1]},
            ]},
        }],
    })
}
