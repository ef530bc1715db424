//! The controllers and the runtime they share.
//!
//! Every controller runs the same pipeline: observe (reflector stores -> [`Inventory`]) ->
//! validate -> render -> apply -> status. This module holds what they share: the typed
//! [`Error`], the [`Context`], the reconcile driver (panics caught, metrics, per-object
//! backoff, Events) and the manager that starts them all.

pub mod acme_certificate;
pub mod acme_issuer;
pub mod apply;
pub mod children;
pub mod cross_cloud_dns;
pub mod events;
pub mod finalizer;
mod manager;
pub mod member_cluster;
pub mod panics;
pub mod slo;
pub mod status;
pub mod supervised_workload;
pub mod telemetry_pipeline;

#[cfg(test)]
mod mock;
#[cfg(test)]
mod tests_runtime;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Config};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};
use kube::{Client, Resource};
use tokio::sync::broadcast;
use tracing::Instrument;

pub use manager::{RunOptions, run};

use self::events::Recorder;

use crate::acme::account::AcmeError;
use crate::acme::renewal::{honour_retry_after, next_attempt};
use crate::api::{self, HasConditions, READY, Reference, References};
use crate::inventory::Inventory;
use crate::metrics::{ControllerLabels, ErrorLabels, Metrics};
use crate::validate::{FieldError, summarize};
use status::{HasStatus, condition, update_status};

/// Why a reconcile failed. The variant names the condition reason, the Event reason and
/// the `reason` label of `vigil_reconcile_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec breaks a rule that only the operator can check.
    #[error("invalid spec: {}", summarize(.0))]
    InvalidSpec(Vec<FieldError>),
    /// The spec is valid but names objects that do not exist yet (GitOps applies files in
    /// any order); it is validated again when they appear.
    #[error("waiting for what the spec names: {}", summarize(.0))]
    MissingReference(Vec<FieldError>),
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A Secret the spec refers to is missing or unusable.
    #[error("Secret {namespace}/{name}: {problem}")]
    Secret {
        /// Namespace of the Secret.
        namespace: String,
        /// Name of the Secret.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// What the object wrote elsewhere (in member clusters) could not be removed yet.
    #[error("cleanup before deletion failed: {0}")]
    Cleanup(String),
    /// An ACME server or solver failed; the reason names what.
    #[error("{0}")]
    Acme(AcmeError),
    /// The reconcile panicked; the panic was caught and logged with its backtrace.
    #[error("reconcile panicked at {location}: {message}")]
    Panicked {
        /// The panic message.
        message: String,
        /// Where it panicked.
        location: String,
    },
}

impl Error {
    /// The error of a spec that failed validation with `errors`: `MissingReference` when
    /// every one of them is a reference to an object that does not exist, `InvalidSpec`
    /// otherwise.
    pub fn from_spec(errors: Vec<FieldError>) -> Self {
        if !errors.is_empty() && errors.iter().all(|e| e.missing) {
            Error::MissingReference(errors)
        } else {
            Error::InvalidSpec(errors)
        }
    }

    /// The CamelCase reason of this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::MissingReference(_) => "ReferenceNotFound",
            Error::Kube(_) => "KubernetesApiError",
            Error::Secret { .. } => "SecretUnusable",
            Error::Cleanup(_) => "CleanupFailed",
            Error::Acme(error) => error.reason,
            Error::Panicked { .. } => "ReconcilePanicked",
        }
    }

    /// How long the server behind the error asked to wait (an ACME `Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Acme(error) => error.retry_after,
            _ => None,
        }
    }
}

/// The wait before the next attempt after `error`, when the object's exponential backoff
/// asks for `backoff`: longer when the ACME server asked for longer (`Retry-After`, at most
/// [`RETRY_AFTER_MAX`](crate::acme::renewal::RETRY_AFTER_MAX)).
fn requeue_after(backoff: Duration, error: &Error) -> Duration {
    honour_retry_after(backoff, error.retry_after())
}

/// Per-object exponential backoff after errors.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Backoff from `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records one more failure of `key` and returns how long to wait before the retry.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        let delay = self.delay(*count);
        *count = count.saturating_add(1);
        delay
    }

    /// What [`Backoff::failed`] returns for the next failure of `key`, without recording it.
    pub fn upcoming(&self, key: &str) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.delay(failures.get(key).copied().unwrap_or(0))
    }

    fn delay(&self, failures: u32) -> Duration {
        self.base
            .saturating_mul(2u32.saturating_pow(failures))
            .min(self.max)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Whether optional APIs (the Prometheus Operator's PrometheusRule, ...) are served,
/// remembered for a minute so that reconciles do not ask the API server every time.
pub struct Discovery {
    client: Client,
    seen: tokio::sync::Mutex<HashMap<String, (Instant, bool)>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// How long an answer is kept.
    const TTL: Duration = Duration::from_secs(60);

    /// Discovery through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            seen: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// True when `group_version` (e.g. `monitoring.coreos.com/v1`) serves `kind`.
    pub async fn has(&self, group_version: &str, kind: &str) -> Result<bool, Error> {
        let key = format!("{group_version}/{kind}");
        if let Some((at, present)) = self.seen.lock().await.get(&key)
            && at.elapsed() < Self::TTL
        {
            return Ok(*present);
        }
        let present = match self.client.list_api_group_resources(group_version).await {
            Ok(list) => list.resources.iter().any(|r| r.kind == kind),
            // 404: the group is not served at all.
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(other) => return Err(Error::Kube(other)),
        };
        self.seen
            .lock()
            .await
            .insert(key, (Instant::now(), present));
        Ok(present)
    }
}

/// The reflector stores of every kind, shared by all controllers.
#[derive(Clone)]
pub struct Stores {
    acme_certificates: Store<DeserializeGuard<api::AcmeCertificate>>,
    acme_issuers: Store<DeserializeGuard<api::AcmeIssuer>>,
    cross_cloud_dns: Store<DeserializeGuard<api::CrossCloudDNS>>,
    member_clusters: Store<DeserializeGuard<api::MemberCluster>>,
    service_level_objectives: Store<DeserializeGuard<api::ServiceLevelObjective>>,
    telemetry_pipelines: Store<DeserializeGuard<api::TelemetryPipeline>>,
    /// Whether each store has its first full list.
    synced: Arc<[Synced]>,
}

/// Whether a watch's store has had its first full list. kube's own `Store::wait_until_ready`
/// wakes only the last of several waiters in different tasks (a oneshot receiver holds one
/// waker), which stalls reconciles and admission reviews that wait on it together; a watch
/// channel wakes them all.
#[derive(Clone, Debug)]
pub struct Synced {
    flag: tokio::sync::watch::Receiver<bool>,
    kind: String,
}

/// How long a reconcile waits for the watches' first lists. A watch that cannot list (a
/// kind forbidden by RBAC, a CRD missing) must not stop every controller: past this, the
/// reconcile goes on and the log names the watches still listing.
pub const SYNC_WAIT: Duration = Duration::from_secs(10);

impl Synced {
    /// A flag for the watch of `kind`, and what sets it: give the setter to
    /// [`synced_on_init`].
    pub fn new(kind: &str) -> (tokio::sync::watch::Sender<bool>, Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (
            tx,
            Self {
                flag: rx,
                kind: kind.to_owned(),
            },
        )
    }

    /// Waits until the store is synced; returns at once if its watch is gone (shutdown).
    pub async fn wait(&self) {
        let _ = self.flag.clone().wait_for(|synced| *synced).await;
    }

    /// Whether the store is synced now.
    pub fn is_synced(&self) -> bool {
        *self.flag.borrow()
    }
}

/// Waits, up to `limit`, until every store of `synced` has its first list; past it, logs
/// the kinds still listing and returns.
pub async fn wait_synced(synced: &[Synced], limit: Duration) {
    let all = async {
        for store in synced {
            store.wait().await;
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        let listing: Vec<&str> = synced
            .iter()
            .filter(|s| !s.is_synced())
            .map(|s| s.kind.as_str())
            .collect();
        tracing::warn!(
            ?listing,
            "watches without a first list yet; going on without them"
        );
    }
}

/// Sets `flag` when a watch stream, after its reflector, ends its first list.
pub fn synced_on_init<K>(
    flag: tokio::sync::watch::Sender<bool>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            flag.send_replace(true);
        }
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}

fn decoded<K: Clone + Resource>(store: &Store<DeserializeGuard<K>>) -> Vec<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store
        .state()
        .iter()
        .filter_map(|g| g.0.as_ref().ok().cloned())
        .collect()
}

impl Stores {
    /// Waits until every store has its first full list. Before that, an object that refers
    /// to another kind would be judged against an empty store: a MemberCluster or an
    /// AcmeIssuer "does not exist" for a moment after every start, and status would say so.
    pub async fn wait_until_ready(&self) {
        wait_synced(&self.synced, SYNC_WAIT).await;
    }

    /// A snapshot of the kinds other objects refer to: every kind but the two that grow
    /// with the number of services (ServiceLevelObjectives and SupervisedWorkloads), which
    /// only TelemetryPipelines refer to. Each reconcile takes one, so it must stay small:
    /// a copy of 10000 SLOs per reconcile made a start with them take gigabytes.
    pub fn references(&self) -> Inventory {
        Inventory {
            acme_certificates: decoded(&self.acme_certificates),
            acme_issuers: decoded(&self.acme_issuers),
            cross_cloud_dns: decoded(&self.cross_cloud_dns),
            member_clusters: decoded(&self.member_clusters),
            telemetry_pipelines: decoded(&self.telemetry_pipelines),
            ..Inventory::default()
        }
    }

    /// [`Stores::references`] with the ServiceLevelObjectives `names` of `namespace` that
    /// exist: what a TelemetryPipeline's sampling boosts refer to.
    pub fn references_and_slos<'a>(
        &self,
        namespace: &str,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Inventory {
        let mut inventory = self.references();
        inventory.service_level_objectives = names
            .into_iter()
            .filter_map(|name| {
                let key = ObjectRef::new(name).within(namespace);
                self.service_level_objectives
                    .get(&key)
                    .and_then(|guard| guard.0.as_ref().ok().cloned())
            })
            .collect();
        inventory
    }
}

/// What every reconcile gets.
pub struct Context {
    /// Client of the cluster the operator runs in.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Publishes Events about reconciled objects.
    pub recorder: Recorder,
    /// Every Vigil object, as the watches see it.
    pub stores: Stores,
    /// Namespace the operator runs in (default for Secrets of cluster-scoped objects).
    pub namespace: String,
    /// Per-object backoff after errors.
    pub backoff: Backoff,
    /// Reconciles each controller runs at once.
    pub concurrency: u16,
    /// Which optional APIs the cluster serves.
    pub discovery: Discovery,
    /// Prometheus to read SLO budgets from when an SLO names none.
    pub prometheus_url: Option<String>,
    /// How often values read from outside (budgets) are refreshed in status.
    pub status_interval: Duration,
    /// ACME accounts, HTTP-01 tokens and the issuance retry schedule.
    pub acme: acme_issuer::AcmeRuntime,
    /// Probe streaks of cross-cloud DNS resolvers.
    pub dns: cross_cloud_dns::DnsRuntime,
    /// The last status of each supervised workload.
    pub workloads: supervised_workload::WorkloadRuntime,
    /// Clients of member clusters, kept while their kubeconfig Secret is unchanged.
    pub member_clients: member_cluster::MemberClients,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Publishes an Event about `object`; a failure is logged, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if let Err(error) = self
            .recorder
            .publish(type_, reason, &note, &object.object_ref(&()))
            .await
        {
            tracing::warn!(%error, reason, "could not publish Event");
        }
    }
}

/// A kind with a controller.
pub trait Reconcile: HasStatus + References + Send + Sync + 'static {
    /// Brings the world in line with `self` and reports in its status.
    fn reconcile(
        self: Arc<Self>,
        ctx: Arc<Context>,
    ) -> impl Future<Output = Result<Action, Error>> + Send;
}

fn object_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}", K::kind(&()), ObjectRef::from_obj(object))
}

/// Annotations through which a user asks a controller to act now (`vigil renew`): a new
/// value wakes the object although its generation did not change.
pub const REQUEST_ANNOTATIONS: &[&str] = &[
    crate::api::acme_certificate::RENEW_ANNOTATION,
    crate::api::supervised_workload::BREAKER_OVERRIDE_ANNOTATION,
    crate::api::supervised_workload::CONFIG_ROLLBACK_ANNOTATION,
];

/// What the trigger stream lets through: a new generation (a spec change, not a status
/// write), or a new value of a request annotation.
fn spec_or_request<K: Resource>(object: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    predicates::generation(object).hash(&mut hasher);
    let annotations = object.meta().annotations.as_ref();
    for key in REQUEST_ANNOTATIONS {
        annotations.and_then(|a| a.get(*key)).hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// Runs one reconcile with everything around it: a panic caught and counted, the duration
/// observed, the error counted, reported in the `Ready` condition and as an Event.
async fn drive<K: Reconcile>(
    object: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.stores.wait_until_ready().await;
    let controller = K::kind(&()).to_string();
    let span = tracing::info_span!("reconcile", controller = %controller, object = %ObjectRef::from_obj(object.as_ref()));
    let started = Instant::now();
    let result = async {
        match &object.0 {
        Ok(typed) => {
            let typed = Arc::new(typed.clone());
            let result = match panics::catch(K::reconcile(typed.clone(), ctx.clone())).await {
                Ok(result) => result,
                Err(panic) => {
                    ctx.metrics
                        .reconcile_panics
                        .get_or_create(&ControllerLabels {
                            controller: controller.clone(),
                        })
                        .inc();
                    tracing::error!(
                        controller,
                        object = %object_key(typed.as_ref()),
                        panic.message = %panic.message,
                        panic.location = %panic.location,
                        panic.backtrace = %panic.backtrace,
                        "reconcile panicked; retrying with backoff"
                    );
                    Err(Error::Panicked {
                        message: panic.message,
                        location: panic.location,
                    })
                }
            };
            match &result {
                Ok(_) => ctx.backoff.succeeded(&object_key(typed.as_ref())),
                Err(error) => report_error(typed.as_ref(), error, &ctx).await,
            }
            result
        }
        Err(invalid) => {
            // A malformed object cannot be decoded, so no status can be written for it: say
            // so in an Event and the log, and wait for the next change.
            let reference = object.object_ref(&());
            let note = format!("cannot decode the object: {}", invalid.error);
            if let Err(error) = ctx
                .recorder
                .publish(EventType::Warning, "MalformedObject", &note, &reference)
                .await
            {
                tracing::warn!(%error, "could not publish Event");
            }
            tracing::warn!(controller, object = ?reference.name, error = %invalid.error, "malformed object");
            Ok(Action::await_change())
        }
        }
    }
    .instrument(span)
    .await;
    ctx.metrics
        .reconcile_duration
        .get_or_create(&ControllerLabels { controller })
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Counts the error and reports it on the object: `Ready` turns False with the error's
/// reason (other conditions are kept) and a Warning Event is published. When the server
/// asked to wait, the message says when the next attempt is (the same wait reads the same,
/// so that a repeated answer does not rewrite the status).
async fn report_error<K: Reconcile>(object: &K, error: &Error, ctx: &Context) {
    let controller = K::kind(&()).to_string();
    let reason = error.reason();
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ErrorLabels {
            controller: controller.clone(),
            reason: reason.to_owned(),
        })
        .inc();
    tracing::warn!(controller, object = %object_key(object), reason, %error, "reconcile failed");
    let mut status = object.status().cloned().unwrap_or_default();
    let mut conditions: Vec<_> = status
        .conditions()
        .iter()
        .filter(|c| c.type_ != READY)
        .cloned()
        .collect();
    let message = match error.retry_after() {
        Some(_) => {
            let wait = requeue_after(ctx.backoff.upcoming(&object_key(object)), error);
            format!("{error}; {}", next_attempt(wait))
        }
        None => error.to_string(),
    };
    conditions.insert(0, condition(READY, Some(false), reason, message.clone()));
    *status.conditions_mut() = conditions;
    match update_status(&ctx.client, object, status).await {
        Ok(true) => {
            ctx.publish(object, EventType::Warning, reason, message)
                .await
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(object = %object_key(object), error = %e, "could not report the error in status")
        }
    }
}

/// Retries a failed object after its backoff, or after the ACME server's `Retry-After` when
/// that is longer.
fn error_policy<K: Reconcile>(
    object: Arc<DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    match &object.0 {
        Ok(typed) => Action::requeue(requeue_after(ctx.backoff.failed(&object_key(typed)), error)),
        Err(_) => Action::await_change(),
    }
}

/// The objects a watch applied, each yielded once its store holds it. A relist's objects
/// (`InitApply`) reach the store only when the list ends (`InitDone`), all at once; yielded
/// as they arrive, a reconcile would read the version from before the relist out of the
/// store while the generation predicate already counts the new generation as seen, and a
/// change made while the watch was down (an API server restart) would be lost until the
/// next periodic requeue. So a relist yields every object of the store after `InitDone`,
/// and the predicate lets through those whose generation it has not seen.
fn stored_objects<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    store: Store<K>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    events.flat_map(move |event| {
        let objects: Vec<Result<Arc<K>, watcher::Error>> = match event {
            Ok(watcher::Event::Apply(object)) => vec![Ok(Arc::new(object))],
            Ok(watcher::Event::InitDone) => store.state().into_iter().map(Ok).collect(),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Delete(_)) => {
                Vec::new()
            }
            Err(error) => vec![Err(error)],
        };
        // Copies are made one at a time as the controller takes them, not for a whole list.
        futures::stream::iter(objects).map(|object| object.map(Arc::unwrap_or_clone))
    })
}

/// What a kind announces to the kinds that refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// This object was created, deleted, or its spec changed.
    Object(Reference),
    /// Anything may have changed: the watch listed again after being down, or a
    /// subscriber missed changes.
    Everything,
}

fn reference<K: Resource>(kind: std::borrow::Cow<'static, str>, object: &K) -> Reference {
    let meta = object.meta();
    Reference {
        kind,
        namespace: meta.namespace.clone(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// The objects of `stored` that `change` concerns: those naming the object that changed
/// (or all of them). An object that cannot be decoded names nothing.
fn dependents<K: References + Resource<DynamicType = ()>>(
    stored: &[Arc<DeserializeGuard<K>>],
    change: &Change,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    stored
        .iter()
        .filter(|object| match change {
            Change::Everything => true,
            Change::Object(changed) => object
                .0
                .as_ref()
                .is_ok_and(|k| k.references().contains(changed)),
        })
        .map(|object| ObjectRef::from_obj(object.as_ref()))
        .collect()
}

/// A watch of one kind, with its store, before its controller runs.
pub struct Watch<K: Reconcile> {
    store: Store<DeserializeGuard<K>>,
    synced: Synced,
    changes: broadcast::Sender<Change>,
    stream: futures::stream::BoxStream<'static, Result<DeserializeGuard<K>, watcher::Error>>,
    triggers: Vec<futures::stream::BoxStream<'static, ObjectRef<DeserializeGuard<K>>>>,
}

impl<K: Reconcile> std::fmt::Debug for Watch<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// What the stores never read, dropped before an object is stored: `managedFields` (as
/// large as the spec, once per manager) and kubectl's copy of the whole object in
/// `last-applied-configuration`. Vigil reads its children's managed fields through their
/// own watch (`children.rs`), never its kinds'.
fn forget_unread<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

impl<K: Reconcile> Watch<K> {
    /// Watches every object of the kind, cluster-wide. Only spec changes (new generations)
    /// trigger a reconcile: the operator's own status writes do not wake it up. Every spec
    /// change and deletion is also announced to [`Watch::subscribe`]rs.
    pub fn new(client: &Client) -> Self {
        let api: Api<DeserializeGuard<K>> = Api::all(client.clone());
        let (store, writer) = reflector::store();
        let (flag, synced) = Synced::new(&K::kind(&()));
        let (changes, _) = broadcast::channel(256);
        let (deleted, changed) = (changes.clone(), changes.clone());
        let kind: std::borrow::Cow<'static, str> = K::kind(&()).into_owned().into();
        let kind_deleted = kind.clone();
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(forget_unread)
            .reflect(writer)
            .inspect(synced_on_init(flag))
            .inspect(move |event| match event {
                Ok(watcher::Event::Delete(object)) => {
                    let _ = deleted.send(Change::Object(reference(kind_deleted.clone(), object)));
                }
                // A relist may have dropped objects deleted while the watch was down.
                Ok(watcher::Event::InitDone) => {
                    let _ = deleted.send(Change::Everything);
                }
                _ => {}
            });
        let stream = stored_objects(events, store.clone())
            .predicate_filter(spec_or_request, Default::default())
            .inspect(move |object| {
                if let Ok(object) = object {
                    let _ = changed.send(Change::Object(reference(kind.clone(), object)));
                }
            })
            .boxed();
        Self {
            store,
            synced,
            changes,
            stream,
            triggers: Vec::new(),
        }
    }

    /// Also reconciles the objects `triggers` names (events of other kinds, such as pods).
    pub fn trigger_on(
        &mut self,
        triggers: futures::stream::BoxStream<'static, ObjectRef<DeserializeGuard<K>>>,
    ) {
        self.triggers.push(triggers);
    }

    /// The store of this kind.
    pub fn store(&self) -> Store<DeserializeGuard<K>> {
        self.store.clone()
    }

    /// Whether the store of this kind has its first full list.
    pub fn synced(&self) -> Synced {
        self.synced.clone()
    }

    /// A receiver of this kind's spec changes and deletions, for kinds that refer to it.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Runs the controller until `shutdown` resolves. An object is reconciled again when
    /// an object it names ([`References`]) is created, changed or deleted (`referenced`,
    /// from [`Watch::subscribe`]), so that a reference to an object that did not exist yet
    /// is validated again once it does; objects that do not name it are left alone.
    pub async fn run(
        self,
        ctx: Arc<Context>,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
        referenced: Vec<broadcast::Receiver<Change>>,
    ) {
        let store = self.store.clone();
        let mut controller = Controller::for_stream(self.stream, self.store)
            .with_config(Config::default().concurrency(ctx.concurrency))
            .graceful_shutdown_on(shutdown);
        for triggers in self.triggers {
            controller = controller.reconcile_on(triggers);
        }
        if !referenced.is_empty() {
            let changes = futures::stream::select_all(referenced.into_iter().map(|changes| {
                futures::stream::unfold(changes, |mut changes| async move {
                    match changes.recv().await {
                        Ok(change) => Some((change, changes)),
                        // Missed changes could have named anything.
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            Some((Change::Everything, changes))
                        }
                        Err(broadcast::error::RecvError::Closed) => None,
                    }
                })
                .boxed()
            }));
            let triggers = changes
                .flat_map(move |change| futures::stream::iter(dependents(&store.state(), &change)));
            controller = controller.reconcile_on(triggers);
        }
        controller
            .run(drive::<K>, error_policy::<K>, ctx)
            .for_each(|result| async move {
                if let Err(error) = result {
                    tracing::debug!(controller = %K::kind(&()), %error, "reconcile loop");
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Certificates `a` (issuer `pebble`, copies to `aws`) and `b` (issuer `other`) in
    /// namespace `web`, and one that cannot be decoded.
    fn certificates() -> Vec<Arc<DeserializeGuard<api::AcmeCertificate>>> {
        let certificate = |name: &str, issuer: &str, copies: &str| {
            let object: api::AcmeCertificate = serde_yaml_ng::from_str(&format!(
                "apiVersion: vigil.io/v1alpha1\nkind: AcmeCertificate\nmetadata: {{name: {name}, namespace: web}}\nspec:\n  secretName: {name}-tls\n  dnsNames: [{name}.example.com]\n  issuerRef: {{name: {issuer}}}\n{copies}"
            ))
            .expect("a certificate");
            Arc::new(DeserializeGuard(Ok(object)))
        };
        let broken = kube::core::error_boundary::InvalidObject {
            error: "spec: missing field `issuerRef`".into(),
            metadata: kube::core::ObjectMeta {
                name: Some("c".into()),
                namespace: Some("web".into()),
                ..Default::default()
            },
        };
        vec![
            certificate("a", "pebble", "  distribute: {clusters: [aws]}\n"),
            certificate("b", "other", ""),
            Arc::new(DeserializeGuard(Err(broken))),
        ]
    }

    #[test]
    fn a_change_reconciles_only_the_objects_that_name_it() {
        let stored = certificates();
        let names = |change: Change| -> Vec<String> {
            dependents(&stored, &change)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        let cluster = |kind, name| Change::Object(Reference::cluster(kind, name));
        assert_eq!(names(cluster("MemberCluster", "aws")), ["a"]);
        assert_eq!(names(cluster("AcmeIssuer", "pebble")), ["a"]);
        assert_eq!(names(cluster("AcmeIssuer", "other")), ["b"]);
        // Created before anything names it, or named by nothing stored.
        assert!(names(cluster("MemberCluster", "vmware")).is_empty());
        // The same name in another kind is another object.
        assert!(names(cluster("MemberCluster", "pebble")).is_empty());
        assert!(
            names(Change::Object(Reference::namespaced(
                "AcmeIssuer",
                "web",
                "pebble"
            )))
            .is_empty()
        );
        // After a relist or missed changes, everything (the broken one too: its error is
        // reported again).
        assert_eq!(names(Change::Everything), ["a", "b", "c"]);
    }

    #[test]
    fn a_spec_that_only_names_missing_objects_waits_and_any_other_problem_is_invalid() {
        let missing =
            || FieldError::missing("spec.issuerRef.name", "AcmeIssuer \"le\" does not exist");
        let wrong = || FieldError::new("spec.dnsNames[0]", "must be a DNS name");
        let waiting = Error::from_spec(vec![missing(), missing()]);
        assert_eq!(waiting.reason(), "ReferenceNotFound");
        assert_eq!(
            waiting.to_string(),
            "waiting for what the spec names: spec.issuerRef.name: AcmeIssuer \"le\" does not exist; spec.issuerRef.name: AcmeIssuer \"le\" does not exist"
        );
        assert_eq!(
            Error::from_spec(vec![missing(), wrong()]).reason(),
            "InvalidSpec"
        );
        assert_eq!(Error::from_spec(vec![wrong()]).reason(), "InvalidSpec");
        assert_eq!(Error::from_spec(Vec::new()).reason(), "InvalidSpec");
    }

    #[tokio::test]
    async fn a_watch_that_never_lists_holds_reconciles_only_up_to_the_limit() {
        let (set, synced) = Synced::new("AcmeIssuer");
        let (_never, listing) = Synced::new("MemberCluster");
        set.send_replace(true);
        assert!(synced.is_synced() && !listing.is_synced());
        // Returns (instead of waiting for ever) although MemberCluster never lists.
        wait_synced(&[synced.clone(), listing], Duration::from_millis(50)).await;
        // Every store synced: no wait at all, whatever the limit.
        wait_synced(&[synced], Duration::from_secs(3600)).await;
    }

    fn config_map(name: &str, generation: i64) -> k8s_openapi::api::core::v1::ConfigMap {
        let mut map = k8s_openapi::api::core::v1::ConfigMap::default();
        map.metadata.name = Some(name.to_owned());
        map.metadata.namespace = Some("fleet".to_owned());
        map.metadata.generation = Some(generation);
        map
    }

    /// An API server restart: the watch relists, and `a` is at a new generation. Each object
    /// the controller is given must be the one its store holds at that moment (the reconcile
    /// reads the store), or the change is lost: the generation predicate has seen it.
    #[tokio::test]
    async fn a_relist_yields_its_objects_only_once_the_store_holds_them() {
        use watcher::Event::{Apply, Init, InitApply, InitDone};
        let (store, writer) = reflector::store();
        let events = futures::stream::iter([
            Init,
            InitApply(config_map("a", 1)),
            InitApply(config_map("b", 1)),
            InitDone,
            Apply(config_map("b", 2)),
            // The watch expired (410 Gone): a relist from a fresh watch cache.
            Init,
            InitApply(config_map("a", 2)),
            InitApply(config_map("b", 2)),
            InitDone,
            Apply(config_map("a", 3)),
        ])
        .map(Ok)
        .reflect(writer);
        let mut seen = Vec::new();
        let mut objects = std::pin::pin!(stored_objects(events, store.clone()));
        while let Some(object) = objects.next().await {
            let object = object.expect("no watch error");
            let stored = store
                .get(&ObjectRef::from_obj(&object))
                .and_then(|s| s.metadata.generation);
            assert_eq!(
                stored,
                object.metadata.generation,
                "{} yielded before the store holds it",
                object.metadata.name.as_deref().unwrap_or_default()
            );
            seen.push((
                object.metadata.name.clone().unwrap_or_default(),
                object.metadata.generation.unwrap_or_default(),
            ));
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a".into(), 1),
                ("a".into(), 2),
                ("a".into(), 3),
                ("b".into(), 1),
                ("b".into(), 2),
                ("b".into(), 2)
            ]
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));
        let delays: Vec<u64> = (0..6).map(|_| backoff.failed("a").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 60, 60]);
        assert_eq!(
            backoff.failed("b").as_secs(),
            5,
            "objects back off independently"
        );
        backoff.succeeded("a");
        assert_eq!(backoff.failed("a").as_secs(), 5);
    }

    fn rate_limited(retry_after: Option<Duration>) -> Error {
        Error::Acme(
            AcmeError::new("RateLimited", "too many new registrations")
                .with_retry_after(retry_after),
        )
    }

    #[test]
    fn an_acme_retry_after_outlasts_the_backoff_up_to_six_hours() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let hour = Duration::from_secs(3600);
        assert_eq!(
            requeue_after(backoff.failed("a"), &rate_limited(Some(hour))),
            hour
        );
        assert_eq!(
            requeue_after(
                backoff.failed("a"),
                &rate_limited(Some(Duration::from_secs(10 * 86400)))
            ),
            Duration::from_secs(6 * 3600)
        );
        // A 429 without Retry-After, and any other error, wait for the backoff.
        assert_eq!(
            requeue_after(backoff.failed("a"), &rate_limited(None)),
            Duration::from_secs(4)
        );
        assert_eq!(
            requeue_after(backoff.failed("a"), &Error::Cleanup("x".into())),
            Duration::from_secs(8)
        );
        assert_eq!(backoff.upcoming("a"), Duration::from_secs(16));
        assert_eq!(backoff.failed("a"), Duration::from_secs(16));
    }
}
