//! `vigil run`: the controller manager. Checks that the CRDs are installed, serves the admin
//! port, wins the leader Lease, runs one controller per kind, and stops cleanly on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::StreamExt as _;
use kube::Client;
use kube::runtime::WatchStreamExt;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use super::children::{ConfigMaps, owner_triggers};
use super::{Backoff, Context, Stores, Watch};
use crate::api;
use crate::metrics::Metrics;

/// Options of `vigil run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub admin_addr: SocketAddr,
    /// Namespace the operator runs in: its Lease, and Secrets of cluster-scoped objects.
    pub namespace: String,
    /// Elect a leader through a Lease so that only one replica writes.
    pub leader_election: bool,
    /// Name of the Lease.
    pub lease_name: String,
    /// How long a leader's Lease lasts without renewal, in seconds.
    pub lease_duration_seconds: u64,
    /// Identity of this replica in the Lease (the pod name).
    pub identity: String,
    /// First retry delay after a failed reconcile.
    pub backoff_base: Duration,
    /// Longest retry delay after repeated failures.
    pub backoff_max: Duration,
    /// Reconciles each controller runs at once.
    pub max_concurrent_reconciles: u16,
    /// Prometheus for SLO budgets when an SLO names none.
    pub prometheus_url: Option<String>,
    /// How often budgets read from Prometheus are refreshed in status.
    pub status_interval: Duration,
    /// Address of the ACME HTTP-01 challenge server.
    pub acme_http01_addr: SocketAddr,
    /// First wait after a failed certificate issuance.
    pub acme_retry_initial: Duration,
    /// Longest wait after repeated failed certificate issuances.
    pub acme_retry_max: Duration,
    /// The pod mutating webhook, when it is served.
    pub webhook: Option<crate::webhook::WebhookOptions>,
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on one port.
async fn serve_admin(
    addr: SocketAddr,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "admin server listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await?;
    Ok(())
}

/// Fails with a clear message when any Vigil CRD is not installed.
async fn check_crds(client: &Client) -> anyhow::Result<()> {
    let resources = client
        .list_api_group_resources(api::API_VERSION)
        .await
        .map_err(|e| anyhow::anyhow!("the Vigil CRDs ({}) are not installed: {e}; install them with `vigil crds | kubectl apply -f -` or the Helm chart", api::API_VERSION))?;
    let missing: Vec<String> = crate::inventory::KINDS
        .iter()
        .filter(|kind| !resources.resources.iter().any(|r| r.kind == **kind))
        .map(|kind| (*kind).to_owned())
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "the CRDs of {} are not installed; install them with `vigil crds | kubectl apply -f -` or the Helm chart",
        missing.join(", ")
    );
    Ok(())
}

async fn terminate_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}

/// Starts the webhook's HTTPS server with its TLS (made or read from its Secret, and kept
/// fresh while it runs) and watches of SupervisedWorkloads, TelemetryPipelines and
/// MemberClusters; returns the TLS in force, for the webhook configuration's caBundle.
async fn start_webhook(
    client: &Client,
    options: &crate::webhook::WebhookOptions,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<watch::Receiver<crate::webhook::Tls>> {
    let tls = crate::webhook::ensure_tls(client, options)
        .await
        .context("cannot set up the webhook's TLS")?;
    crate::webhook::server_config(&tls)?;
    let (tls_tx, tls_rx) = watch::channel(tls);
    tokio::spawn(crate::webhook::keep_tls(
        client.clone(),
        options.clone(),
        tls_tx,
        stop.clone(),
    ));
    let (workloads, workloads_synced) = reflect(client);
    let (pipelines, pipelines_synced) = reflect(client);
    let (members, members_synced) = reflect(client);
    let stores = crate::webhook::Stores {
        workloads,
        pipelines,
        members,
        synced: [workloads_synced, pipelines_synced, members_synced].into(),
    };
    let addr = options.addr;
    let served = tls_rx.clone();
    tokio::spawn(async move {
        if let Err(error) = crate::webhook::serve(addr, served, stores, stop).await {
            tracing::error!(error = %format!("{error:#}"), "the webhook stopped");
        }
    });
    Ok(tls_rx)
}

/// A store of every object of kind `K`, kept by a watch of its own.
fn reflect<K>(
    client: &Client,
) -> (
    kube::runtime::reflector::Store<kube::core::DeserializeGuard<K>>,
    super::Synced,
)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: kube::Api<kube::core::DeserializeGuard<K>> = kube::Api::all(client.clone());
    let (store, writer) = kube::runtime::reflector::store();
    let (flag, synced) = super::Synced::new(&K::kind(&()));
    let watch = kube::runtime::watcher(api, kube::runtime::watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .inspect(super::synced_on_init(flag))
        .for_each(|_| async {});
    tokio::spawn(watch);
    (store, synced)
}

/// Keeps the MutatingWebhookConfiguration (and its caBundle) as it should be while this
/// replica leads: at once, every five minutes, and as soon as the CA changes.
async fn keep_webhook_configuration(
    client: Client,
    options: crate::webhook::WebhookOptions,
    mut tls: watch::Receiver<crate::webhook::Tls>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let ca_pem = tls.borrow_and_update().ca_pem.clone();
        let configuration = crate::webhook::configuration(&options, &ca_pem);
        if let Err(error) =
            super::apply::apply_hashed(&client, super::status::FIELD_MANAGER, configuration).await
        {
            tracing::warn!(%error, "could not apply the MutatingWebhookConfiguration");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(300)) => {}
            changed = tls.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Runs the controller manager until SIGTERM, or until leadership is lost (an error, so
/// that the pod restarts and stands for election again).
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    super::panics::install_hook();
    let client = Client::try_default()
        .await
        .context("cannot build a Kubernetes client (kubeconfig or in-cluster)")?;
    // CRDs installed together with the operator (one `helm install`) may need a moment to
    // be served: look a few times before giving up.
    let mut attempt = 0;
    while let Err(error) = check_crds(&client).await {
        attempt += 1;
        if attempt == 5 {
            return Err(error);
        }
        tracing::warn!(%error, attempt, "Vigil CRDs not served yet; looking again");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let admin = tokio::spawn(serve_admin(
        options.admin_addr,
        AdminState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        stop_rx.clone(),
    ));
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        terminate_signal().await;
        let _ = signal_tx.send(true);
    });
    // The webhook is served by every replica, from its own watch of SupervisedWorkloads.
    let webhook = match &options.webhook {
        Some(webhook) => Some(start_webhook(&client, webhook, stop_rx.clone()).await?),
        None => None,
    };
    ready.store(true, Ordering::Release);

    let leader = if options.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), &options.lease_name)
            .with_namespace(&options.namespace)
            .with_identity(&options.identity)
            .with_duration(options.lease_duration_seconds)
            .with_grace(options.lease_duration_seconds.div_ceil(3).max(1))
            .with_field_manager(super::status::FIELD_MANAGER)
            .build()
            .await
            .context("cannot set up leader election")?;
        let (mut leading, task) = manager.watch().await;
        tracing::info!(identity = %options.identity, lease = %options.lease_name, "waiting to become the leader");
        let mut stop = stop_rx.clone();
        let won = tokio::select! {
            won = leading.wait_for(|l| *l) => { won.context("leader election stopped")?; true }
            _ = stop.wait_for(|s| *s) => false,
        };
        if !won {
            drop(leading);
            let _ = task.await;
            let _ = admin.await;
            return Ok(());
        }
        tracing::info!(identity = %options.identity, "became the leader");
        Some((leading, task))
    } else {
        None
    };

    if let (Some(webhook), Some(tls)) = (&options.webhook, &webhook) {
        tokio::spawn(keep_webhook_configuration(
            client.clone(),
            webhook.clone(),
            tls.clone(),
            stop_rx.clone(),
        ));
    }
    let controllers = run_controllers(client, metrics, &options, stop_rx.clone());
    let lost = match leader {
        Some((mut leading, task)) => {
            let lost = tokio::select! {
                _ = controllers => false,
                _ = leading.wait_for(|l| !*l) => true,
            };
            // Dropping the channel releases the Lease, so that another replica takes over
            // at once instead of waiting for it to expire.
            drop(leading);
            let _ = task.await;
            lost
        }
        None => {
            controllers.await;
            false
        }
    };
    let _ = stop_tx.send(true);
    let _ = admin.await;
    anyhow::ensure!(
        !lost,
        "lost the leader Lease; exiting so that a new election decides"
    );
    tracing::info!("stopped");
    Ok(())
}

/// Runs one controller per kind until `stop` turns true.
async fn run_controllers(
    client: Client,
    metrics: Arc<Metrics>,
    options: &RunOptions,
    stop: watch::Receiver<bool>,
) {
    let acme_certificates = Watch::<api::AcmeCertificate>::new(&client);
    let acme_issuers = Watch::<api::AcmeIssuer>::new(&client);
    let cross_cloud_dns = Watch::<api::CrossCloudDNS>::new(&client);
    let member_clusters = Watch::<api::MemberCluster>::new(&client);
    let mut service_level_objectives = Watch::<api::ServiceLevelObjective>::new(&client);
    let mut supervised_workloads = Watch::<api::SupervisedWorkload>::new(&client);
    supervised_workloads.trigger_on(super::supervised_workload::crash_triggers(
        &client,
        supervised_workloads.store(),
    ));
    // One watch of every ConfigMap's metadata: a workload's config source, and the
    // children Vigil writes (an SLO's rule file, a pipeline's configurations).
    let config_maps = ConfigMaps::default();
    supervised_workloads.trigger_on(super::supervised_workload::config_triggers(
        config_maps.subscribe(),
        supervised_workloads.store(),
    ));
    service_level_objectives.trigger_on(owner_triggers(config_maps.subscribe()));
    let mut telemetry_pipelines = Watch::<api::TelemetryPipeline>::new(&client);
    telemetry_pipelines.trigger_on(owner_triggers(config_maps.subscribe()));
    // Which kinds each kind refers to: a change there validates it again.
    let certificate_refs = vec![acme_issuers.subscribe(), member_clusters.subscribe()];
    let dns_refs = vec![member_clusters.subscribe()];
    let pipeline_refs = vec![
        member_clusters.subscribe(),
        service_level_objectives.subscribe(),
    ];
    let workload_refs = vec![telemetry_pipelines.subscribe()];
    let stores = Stores {
        acme_certificates: acme_certificates.store.clone(),
        acme_issuers: acme_issuers.store.clone(),
        cross_cloud_dns: cross_cloud_dns.store.clone(),
        member_clusters: member_clusters.store.clone(),
        service_level_objectives: service_level_objectives.store.clone(),
        telemetry_pipelines: telemetry_pipelines.store.clone(),
        synced: [
            acme_certificates.synced(),
            acme_issuers.synced(),
            cross_cloud_dns.synced(),
            member_clusters.synced(),
            service_level_objectives.synced(),
            supervised_workloads.synced(),
            telemetry_pipelines.synced(),
        ]
        .into(),
    };
    let ctx = Arc::new(Context {
        recorder: super::events::Recorder::new(client.clone(), "vigil", &options.identity),
        discovery: super::Discovery::new(client.clone()),
        client,
        metrics,
        stores,
        namespace: options.namespace.clone(),
        backoff: Backoff::new(options.backoff_base, options.backoff_max),
        concurrency: options.max_concurrent_reconciles,
        prometheus_url: options.prometheus_url.clone(),
        status_interval: options.status_interval,
        acme: super::acme_issuer::AcmeRuntime::new(
            options.acme_retry_initial,
            options.acme_retry_max,
        ),
        dns: super::cross_cloud_dns::DnsRuntime::default(),
        workloads: super::supervised_workload::WorkloadRuntime::default(),
        member_clients: super::member_cluster::MemberClients::default(),
    });
    let challenges = tokio::spawn(serve_challenges(
        options.acme_http01_addr,
        ctx.acme.tokens.clone(),
        stop.clone(),
    ));
    let shutdown = |stop: &watch::Receiver<bool>| {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    tracing::info!("controllers starting");
    tokio::join!(
        acme_certificates.run(ctx.clone(), shutdown(&stop), certificate_refs),
        acme_issuers.run(ctx.clone(), shutdown(&stop), Vec::new()),
        cross_cloud_dns.run(ctx.clone(), shutdown(&stop), dns_refs),
        member_clusters.run(ctx.clone(), shutdown(&stop), Vec::new()),
        service_level_objectives.run(ctx.clone(), shutdown(&stop), Vec::new()),
        supervised_workloads.run(ctx.clone(), shutdown(&stop), workload_refs),
        telemetry_pipelines.run(ctx.clone(), shutdown(&stop), pipeline_refs),
        config_maps.run(ctx.client.clone(), shutdown(&stop)),
    );
    let _ = challenges.await;
}

/// Serves ACME HTTP-01 challenge answers until `stop` turns true. Only the leader has
/// tokens to serve: the challenge port is opened once this replica leads.
async fn serve_challenges(
    addr: SocketAddr,
    tokens: crate::acme::solver::Http01Tokens,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%addr, %error, "cannot open the ACME HTTP-01 challenge port; HTTP-01 challenges will fail");
            return;
        }
    };
    tracing::info!(%addr, "serving ACME HTTP-01 challenges");
    let served = axum::serve(listener, tokens.router())
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(error) = served {
        tracing::error!(%error, "the ACME HTTP-01 challenge server stopped");
    }
}
