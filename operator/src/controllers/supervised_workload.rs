//! The `SupervisedWorkload` controller: crash capture and the crash-loop circuit breaker.
//!
//! Every crash of the target's pods (a non-zero exit, a signal, an OOM kill) becomes a
//! snapshot: the termination, the last log lines of the crashed container, and a summary
//! of the panic or exception in them. Snapshots go into a ring in the ConfigMap
//! `<name>-crashes` (owned by the object), each one is announced with a Warning Event, one
//! structured log record and `vigil_workload_crashes_total`. The breaker
//! ([`crate::crash::breaker`]) counts them over its window and acts on the workload.
//!
//! Pods are watched cluster-wide; a pod whose containers show a crash wakes the
//! `SupervisedWorkload` that targets its workload ([`workload_of`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerState, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ApiResource, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::apply::apply_owned;
use super::member_cluster::describe_kube_error;
use super::status::{FIELD_MANAGER, condition, update_status};
use super::{Context, Error, Reconcile};
use crate::api::supervised_workload::{
    BreakerAction, BreakerOverride, ConfigRevision, ConfigRollback, OverrideAction, WorkloadKind,
};
use crate::api::{READY, SupervisedWorkload, SupervisedWorkloadStatus};
use crate::crash::breaker::{self, Phase, Settings, Transition};
use crate::crash::{SEALED_KEY, Snapshot, crashes_of, ring_add};
use crate::metrics::CrashLabels;
use crate::validate::{Validate, parse_duration};

/// Condition type: whether the circuit breaker holds the workload stopped.
pub const CIRCUIT_OPEN: &str = "CircuitOpen";
/// Annotation on the `SupervisedWorkload`: `"true"` pauses the breaker where it is.
pub const PAUSE_ANNOTATION: &str = "vigil.io/breaker-paused";
/// Annotation on the workload: its replica count before the breaker scaled it to zero.
pub const REPLICAS_ANNOTATION: &str = "vigil.io/breaker-replicas";
/// Condition type: the pod isolation profile and its conflicts.
pub const ISOLATED: &str = "Isolated";
/// Condition type: the state of config hot-reload.
pub const CONFIG_RELOADED: &str = "ConfigReloaded";
/// Annotation on the workload: the config revision its pod template refers to.
pub const CONFIG_REVISION_ANNOTATION: &str = "vigil.io/config-revision";
/// Config revisions kept (their ConfigMaps too); older ones are deleted.
const CONFIG_HISTORY: usize = 5;
/// The crash-count window when there is no breaker.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// Crash identities remembered in status.
const SEEN_LIMIT: usize = 200;
/// Crash times remembered in status.
const RECENT_LIMIT: usize = 100;
/// How often an object is looked at without a pod event.
const RESYNC: Duration = Duration::from_secs(300);
/// How long after an instance finished its log is read a second time. The kubelet reports
/// the exit while the runtime may still be copying the last output, the panic itself, into
/// the log file: on a loaded real node a Python traceback read 1 to 2 s after the exit was
/// not there yet. The log is read at once too, because a program that crashes within a
/// second of its start is restarted and crashes again before that, and the kubelet then
/// deletes the first instance and its log. Finish times have a one-second resolution, so
/// the second read comes 2 to 3 s after the exit; a crash seen later reads once. An error
/// exit whose second read shows no panic is read a third time, a settle later.
const LOG_SETTLE: Duration = Duration::from_secs(3);

/// The last status written per object. The reflector store can lag behind a status write
/// by a moment, and a pod event in that moment must not count a crash twice or act twice.
#[derive(Debug, Default)]
pub struct WorkloadRuntime {
    last: Mutex<HashMap<String, SupervisedWorkloadStatus>>,
}

impl WorkloadRuntime {
    fn get(&self, key: &str) -> Option<SupervisedWorkloadStatus> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn put(&self, key: &str, status: &SupervisedWorkloadStatus) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), status.clone());
    }
}

/// The workload a pod belongs to, from its owner: a ReplicaSet's Deployment (the
/// ReplicaSet's name without its `-<pod-template-hash>`), a StatefulSet, a DaemonSet, or a
/// Job's CronJob (the Job's name without its `-<scheduled minute>`).
pub fn workload_of(pod: &Pod) -> Option<(WorkloadKind, String)> {
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))?;
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = pod.labels().get("pod-template-hash")?;
            let name = owner.name.strip_suffix(&format!("-{hash}"))?;
            Some((WorkloadKind::Deployment, name.to_owned()))
        }
        "StatefulSet" => Some((WorkloadKind::StatefulSet, owner.name.clone())),
        "DaemonSet" => Some((WorkloadKind::DaemonSet, owner.name.clone())),
        "Job" => {
            let (name, minute) = owner.name.rsplit_once('-')?;
            minute
                .chars()
                .all(|c| c.is_ascii_digit())
                .then(|| (WorkloadKind::CronJob, name.to_owned()))
        }
        _ => None,
    }
}

/// The `SupervisedWorkload`s of `namespace` (in `store`) that target workload `kind`/`name`.
pub fn targeting(
    store: &Store<DeserializeGuard<SupervisedWorkload>>,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> Vec<SupervisedWorkload> {
    store
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|sw| {
            sw.namespace().as_deref() == Some(namespace)
                && sw.spec.target.kind == kind
                && sw.spec.target.name == name
        })
        .cloned()
        .collect()
}

/// A merge patch of the workload under Vigil's field manager.
fn merge_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// Why the kubelet cannot start a container of a pod the webhook isolated: the waiting
/// reasons of a container that will not start as specified (`CreateContainerConfigError`
/// for `runAsNonRoot` with an image that runs as root, `CreateContainerError` and
/// `RunContainerError` for what the runtime refuses), as `pod/container: reason: message`.
pub fn refused_by_kubelet(pod: &Pod) -> Option<String> {
    if !pod
        .annotations()
        .contains_key(crate::webhook::MUTATED_ANNOTATION)
    {
        return None;
    }
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find_map(|c| {
            let waiting = c.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            matches!(
                reason,
                "CreateContainerConfigError" | "CreateContainerError" | "RunContainerError"
            )
            .then(|| {
                format!(
                    "{}/{}: {reason}: {}",
                    pod.name_any(),
                    c.name,
                    waiting.message.as_deref().unwrap_or("no message")
                )
            })
        })
}

/// The `SupervisedWorkload`s to reconcile because of pod events: a pod whose containers
/// show a crash, or that the kubelet cannot start with its isolation, wakes the objects in
/// its namespace that target its workload. Other pods wake nothing, so a busy cluster
/// costs a watch, not reconciles.
pub fn crash_triggers(
    client: &kube::Client,
    store: Store<DeserializeGuard<SupervisedWorkload>>,
) -> BoxStream<'static, ObjectRef<DeserializeGuard<SupervisedWorkload>>> {
    let pods: Api<Pod> = Api::all(client.clone());
    watcher(pods, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(move |pod| {
            let store = store.clone();
            async move {
                let pod = pod.ok()?;
                if crashes_of(&pod).is_empty() && refused_by_kubelet(&pod).is_none() {
                    return None;
                }
                let namespace = pod.namespace()?;
                let (kind, name) = workload_of(&pod)?;
                Some(futures::stream::iter(
                    targeting(&store, &namespace, kind, &name)
                        .into_iter()
                        .map(|sw| ObjectRef::new(&sw.name_any()).within(&namespace))
                        .collect::<Vec<_>>(),
                ))
            }
        })
        .flatten()
        .boxed()
}

/// The `SupervisedWorkload`s to reconcile because their source ConfigMap changed or went,
/// from the shared metadata-only watch ([`super::children::ConfigMaps`]): the data is read
/// in the reconcile.
pub fn config_triggers(
    events: BoxStream<'static, super::children::ConfigMapEvent>,
    store: Store<DeserializeGuard<SupervisedWorkload>>,
) -> BoxStream<'static, ObjectRef<DeserializeGuard<SupervisedWorkload>>> {
    events
        .filter_map(move |event| {
            let store = store.clone();
            async move {
                let namespace = event.meta.namespace()?;
                let name = event.meta.name_any();
                Some(futures::stream::iter(
                    store
                        .state()
                        .iter()
                        .filter_map(|guard| guard.0.as_ref().ok())
                        .filter(|sw| {
                            sw.namespace().as_deref() == Some(namespace.as_str())
                                && sw
                                    .spec
                                    .config
                                    .as_ref()
                                    .is_some_and(|c| c.config_map_name == name)
                        })
                        .map(|sw| ObjectRef::new(&sw.name_any()).within(&namespace))
                        .collect::<Vec<_>>(),
                ))
            }
        })
        .flatten()
        .boxed()
}

fn resource(kind: WorkloadKind) -> ApiResource {
    let (group, version, kind) = match kind {
        WorkloadKind::Deployment => ("apps", "v1", "Deployment"),
        WorkloadKind::StatefulSet => ("apps", "v1", "StatefulSet"),
        WorkloadKind::DaemonSet => ("apps", "v1", "DaemonSet"),
        WorkloadKind::CronJob => ("batch", "v1", "CronJob"),
    };
    ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind))
}

/// A workload's `spec.selector` as a label selector string (kube's `Selector`, which
/// refuses an operator Kubernetes does not have).
fn selector_string(selector: &serde_json::Value) -> Result<String, String> {
    let selector: LabelSelector =
        serde_json::from_value(selector.clone()).map_err(|e| format!("spec.selector: {e}"))?;
    kube::core::Selector::try_from(selector)
        .map(|s| s.to_string())
        .map_err(|e| format!("spec.selector: {e}"))
}

/// The selector of the workload's pods; `None` when it has none (a CronJob without Jobs).
async fn pod_selector(
    ctx: &Context,
    namespace: &str,
    kind: WorkloadKind,
    workload: &DynamicObject,
) -> Result<Option<String>, Error> {
    if kind != WorkloadKind::CronJob {
        let selector = selector_string(&workload.data["spec"]["selector"]).map_err(|why| {
            Error::InvalidSpec(vec![crate::validate::FieldError::new(
                "spec.target",
                format!("{kind:?} {}: {why}", workload.name_any()),
            )])
        })?;
        return Ok((!selector.is_empty()).then_some(selector));
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    let uid = workload.uid().unwrap_or_default();
    let names: Vec<String> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|o| o.uid == uid))
        .map(|j| j.name_any())
        .collect();
    Ok((!names.is_empty())
        .then(|| format!("batch.kubernetes.io/job-name in ({})", names.join(","))))
}

/// Waits until [`LOG_SETTLE`] has passed since the newest of `fresh` finished.
async fn settle_logs(fresh: &[Snapshot]) {
    let Some(newest) = fresh.iter().filter_map(|c| parse_time(&c.time)).max() else {
        return;
    };
    let since =
        Duration::try_from(Timestamp::now().duration_since(newest)).unwrap_or(Duration::ZERO);
    if let Some(wait) = LOG_SETTLE.checked_sub(since).filter(|w| !w.is_zero()) {
        tokio::time::sleep(wait).await;
    }
}

/// The last `lines` lines of the crashed instance's log, or why they cannot be read.
async fn read_log(
    pods: &Api<Pod>,
    crash: &Snapshot,
    lines: i32,
    max_bytes: i32,
) -> Result<String, String> {
    let params = LogParams {
        container: Some(crash.container.clone()),
        previous: crashed_instance_is_previous(pods, crash).await?,
        tail_lines: Some(i64::from(lines)),
        limit_bytes: Some(i64::from(max_bytes)),
        ..LogParams::default()
    };
    let text = pods
        .logs(&crash.pod, &params)
        .await
        .map_err(|error| describe_kube_error(&error))?;
    // The kubelet answers 200 with this text when the instance was deleted meanwhile.
    if text.starts_with("unable to retrieve container logs for ") {
        return Err(text.trim().to_owned());
    }
    Ok(text)
}

/// Whether the crashed instance is now the container's previous one (it restarted) rather
/// than its current one (not restarted yet), told by its runtime ID on a fresh read of the
/// pod. The list the crash was found in can be older than a restart: read with that view, a
/// real Go service's snapshot once held the first lines of the next instance instead of
/// its panic. An instance restarted twice since has no log left to read. Without an ID (a
/// status written by hand), the current state decides.
async fn crashed_instance_is_previous(pods: &Api<Pod>, crash: &Snapshot) -> Result<bool, String> {
    let pod = pods
        .get_opt(&crash.pod)
        .await
        .map_err(|error| describe_kube_error(&error))?
        .ok_or_else(|| "the pod is gone".to_owned())?;
    let status = pod
        .status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .find(|c| c.name == crash.container)
        .ok_or_else(|| format!("container {} has no status", crash.container))?;
    let id_of = |state: Option<&ContainerState>| {
        state
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.container_id.clone())
    };
    let current = id_of(status.state.as_ref());
    let last = id_of(status.last_state.as_ref());
    if crash.container_id.is_empty() {
        let terminated = status
            .state
            .as_ref()
            .is_some_and(|s| s.terminated.is_some());
        return Ok(!terminated);
    }
    if current.as_deref() == Some(crash.container_id.as_str()) {
        Ok(false)
    } else if last.as_deref() == Some(crash.container_id.as_str()) {
        Ok(true)
    } else {
        Err(format!(
            "instance {} restarted twice before its log was read",
            crash.container_id
        ))
    }
}

fn settings(object: &SupervisedWorkload) -> Option<(Settings, BreakerAction)> {
    let breaker = object.spec.circuit_breaker.as_ref()?;
    let cooldown = parse_duration(&breaker.cooldown).ok()?;
    let max_cooldown = breaker
        .max_cooldown
        .as_deref()
        .and_then(|d| parse_duration(d).ok())
        .unwrap_or(cooldown.saturating_mul(16));
    Some((
        Settings {
            max_crashes: u32::try_from(breaker.max_crashes).unwrap_or(1),
            window: parse_duration(&breaker.window).ok()?,
            cooldown,
            max_cooldown,
        },
        breaker.action,
    ))
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

impl Reconcile for SupervisedWorkload {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let errors = self.validate(&ctx.stores.references());
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let namespace = self.namespace().unwrap_or_default();
        // By UID: an object deleted and created again starts afresh.
        let key = self
            .uid()
            .unwrap_or_else(|| format!("{namespace}/{}", self.name_any()));
        let kind = self.spec.target.kind;
        let workloads: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &namespace, &resource(kind));
        let previous = ctx
            .workloads
            .get(&key)
            .or_else(|| self.status.clone())
            .unwrap_or_default();
        let Some(workload) = workloads.get_opt(&self.spec.target.name).await? else {
            return target_not_found(&self, &ctx, previous).await;
        };
        let now = Timestamp::now();
        if kind == WorkloadKind::CronJob {
            forbid_overlap(&self, &ctx, &workloads, &workload).await?;
        }
        let (fresh, refused) = new_crashes(&self, &ctx, &workload, &previous, now).await?;
        let breaker = decide_breaker(&self, &previous, &fresh, now);
        record_snapshots(&self, &ctx, &fresh, breaker.sealing()).await?;
        let action_note = match (breaker.transition, settings(&self)) {
            (Some(transition), Some((_, action))) => {
                act(&workloads, &workload, kind, action, transition).await?
            }
            _ => String::new(),
        };
        for (type_, reason, note) in breaker.events(&previous, &action_note, now) {
            ctx.publish(self.as_ref(), type_, reason, note).await;
        }
        let config = match &self.spec.config {
            Some(_) => Some(
                reconcile_config(
                    &self, &ctx, &namespace, &workloads, &workload, &previous, &fresh, now,
                )
                .await?,
            ),
            None => None,
        };
        let isolated = isolation_condition(&self, kind, &workload, &refused);
        announce_refusal(&self, &ctx, &previous, &refused, &isolated).await;
        let status = new_status(&self, &previous, &fresh, &breaker, isolated, config, now);
        update_status(&ctx.client, self.as_ref(), status.clone()).await?;
        ctx.workloads.put(&key, &status);
        Ok(Action::requeue(breaker.next_check(&self, now)))
    }
}

/// A Warning when the kubelet refused to start isolated pods, once per refusal.
async fn announce_refusal(
    object: &SupervisedWorkload,
    ctx: &Context,
    previous: &SupervisedWorkloadStatus,
    refused: &[String],
    isolated: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
) {
    let was = previous.conditions.iter().find(|c| c.type_ == ISOLATED);
    if !refused.is_empty()
        && was.is_none_or(|c| c.reason != isolated.reason || c.message != isolated.message)
    {
        let note = isolated.message.clone();
        ctx.publish(object, EventType::Warning, "IsolationRefused", note)
            .await;
    }
}

/// The target does not exist (yet): `Ready=False`, the rest of the status kept.
async fn target_not_found(
    object: &SupervisedWorkload,
    ctx: &Context,
    previous: SupervisedWorkloadStatus,
) -> Result<Action, Error> {
    let (kind, target) = (object.spec.target.kind, &object.spec.target.name);
    let namespace = object.namespace().unwrap_or_default();
    let status = SupervisedWorkloadStatus {
        conditions: vec![condition(
            READY,
            Some(false),
            "TargetNotFound",
            format!("{kind:?} {namespace}/{target} does not exist"),
        )],
        ..previous
    };
    update_status(&ctx.client, object, status).await?;
    // The target may be created right after: look again soon.
    Ok(Action::requeue(Duration::from_secs(10)))
}

/// Crashes of the workload's pods not seen before, oldest first, with their logs and
/// panic summaries; and the pods the kubelet refused to start.
async fn new_crashes(
    object: &SupervisedWorkload,
    ctx: &Context,
    workload: &DynamicObject,
    previous: &SupervisedWorkloadStatus,
    now: Timestamp,
) -> Result<(Vec<Snapshot>, Vec<String>), Error> {
    let namespace = object.namespace().unwrap_or_default();
    let kind = object.spec.target.kind;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut seen: HashSet<String> = previous.seen_crashes.iter().cloned().collect();
    let mut fresh = Vec::new();
    let mut refused = Vec::new();
    if let Some(selector) = pod_selector(ctx, &namespace, kind, workload).await? {
        for pod in pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
        {
            refused.extend(refused_by_kubelet(&pod));
            // A pod created after this object: all its restarts are in scope.
            let pod_is_newer = pod.creation_timestamp() >= object.creation_timestamp();
            for mut crash in crashes_of(&pod) {
                if seen.contains(&crash.id()) {
                    continue;
                }
                // Restarts between the last one seen and this one were not seen: the
                // status keeps only the last termination. They count as crashes.
                let prefix = format!("{}/{}/", crash.pod_uid, crash.container);
                let last_seen = seen
                    .iter()
                    .filter_map(|id| id.strip_prefix(&prefix)?.parse::<i32>().ok())
                    .max()
                    .or(pod_is_newer.then_some(0));
                crash.unseen_restarts =
                    last_seen.map_or(0, |last| (crash.restart_count - last - 1).max(0));
                seen.insert(crash.id());
                fresh.push(crash);
            }
        }
    }
    // A termination without a finish time counts as happening now.
    for crash in &mut fresh {
        if crash.time.is_empty() {
            crash.time = now.to_string();
        }
    }
    fresh.sort_by(|a, b| a.time.cmp(&b.time));
    read_logs(object, &pods, &mut fresh).await;
    Ok((fresh, refused))
}

/// Reads the log tail of each crash and summarizes its panic, waiting for the runtime to
/// copy a recent one.
async fn read_logs(object: &SupervisedWorkload, pods: &Api<Pod>, fresh: &mut [Snapshot]) {
    let capture = &object.spec.crash_capture;
    let (lines, max_bytes) = (capture.log_tail_lines, capture.max_snapshot_bytes);
    let read_at = Timestamp::now();
    let mut logs = Vec::with_capacity(fresh.len());
    for crash in fresh.iter() {
        logs.push(read_log(pods, crash, lines, max_bytes).await);
    }
    settle_logs(fresh).await;
    let mut late = Vec::new();
    for (index, (crash, log)) in fresh.iter_mut().zip(logs).enumerate() {
        let unsettled = parse_time(&crash.time)
            .and_then(|t| t.checked_add(LOG_SETTLE).ok())
            .is_none_or(|settled| settled > read_at);
        let log = match log {
            first if unsettled => read_log(pods, crash, lines, max_bytes).await.or(first),
            first => first,
        };
        crash.log_tail = log.unwrap_or_else(|why| format!("log unavailable: {why}"));
        crash.panic = crate::crash::parse::summarize(&crash.log_tail)
            .or_else(|| crate::crash::parse::summarize(&crash.termination_message));
        if unsettled && crash.panic.is_none() && crash.reason == "Error" {
            late.push(index);
        }
    }
    // On a saturated node the runtime can take longer still to copy the panic: a
    // recent crash that exited with an error and shows no panic yet is read once more,
    // a settle later. A tail that still has none is kept as read.
    if !late.is_empty() {
        tokio::time::sleep(LOG_SETTLE).await;
        for index in late {
            let crash = &mut fresh[index];
            if let Ok(log) = read_log(pods, crash, lines, max_bytes).await
                && let Some(panic) = crate::crash::parse::summarize(&log)
            {
                crash.log_tail = log;
                crash.panic = Some(panic);
            }
        }
    }
}

/// What the breaker decided, from the crashes it knew, the fresh ones and a request by
/// hand.
struct BreakerDecision {
    /// The crash-count window.
    window: Duration,
    /// Crash times known, oldest first (those before a close by hand forgotten).
    recent: Vec<Timestamp>,
    /// The breaker after this reconcile.
    after: breaker::State,
    /// The transition it made, if any.
    transition: Option<Transition>,
    /// The manual override in force, as recorded in status.
    breaker_override: Option<BreakerOverride>,
    /// Whether the override is new: this reconcile applied it.
    manual: bool,
    /// Whether the pause annotation holds the breaker.
    paused: bool,
}

impl BreakerDecision {
    fn in_window(&self, t: &Timestamp, now: Timestamp) -> bool {
        Duration::try_from(now.duration_since(*t)).unwrap_or(Duration::ZERO) <= self.window
    }

    /// Whether the newest snapshot is sealed: the breaker opened.
    fn sealing(&self) -> bool {
        matches!(self.transition, Some(Transition::Open | Transition::Reopen))
    }

    /// When to look again: the breaker's next check, between 1 s and the resync.
    fn next_check(&self, object: &SupervisedWorkload, now: Timestamp) -> Duration {
        settings(object)
            .and_then(|(s, _)| breaker::next_check(&s, &self.after, now))
            .map_or(RESYNC, |d| d.clamp(Duration::from_secs(1), RESYNC))
    }

    /// The Events of this decision: an override applied or cleared, or the breaker's own
    /// transition (`action_note` says what was done to the workload).
    fn events(
        &self,
        previous: &SupervisedWorkloadStatus,
        action_note: &str,
        now: Timestamp,
    ) -> Vec<(EventType, &'static str, String)> {
        let mut events = Vec::new();
        let after = &self.after;
        if let (true, Some(asked)) = (self.manual, &self.breaker_override) {
            let done = if action_note.is_empty() {
                format!("the breaker was already {}", after.phase.as_str())
            } else {
                action_note.to_owned()
            };
            let note = format!(
                "{} by hand (vigil breaker {}): {}; {done}",
                match asked.action {
                    OverrideAction::Open => "opened",
                    OverrideAction::Close => "closed",
                },
                match asked.action {
                    OverrideAction::Open => "open",
                    OverrideAction::Close => "close",
                },
                asked.reason
            );
            events.push((EventType::Normal, "CircuitOverridden", note));
        } else if previous.breaker_override.is_some() && self.breaker_override.is_none() {
            events.push((
                EventType::Normal,
                "CircuitOverrideCleared",
                format!(
                    "the breaker runs by itself again from {}",
                    after.phase.as_str()
                ),
            ));
        }
        if let Some(transition) = self.transition.filter(|_| !self.manual) {
            let window = self.window;
            events.push(match transition {
                Transition::Open => (
                    EventType::Warning,
                    "CircuitOpened",
                    format!(
                        "{} crashes within {}; {action_note}",
                        self.recent
                            .iter()
                            .filter(|t| self.in_window(t, now))
                            .count(),
                        humantime(window)
                    ),
                ),
                Transition::Reopen => (
                    EventType::Warning,
                    "CircuitReopened",
                    format!(
                        "crashed again on probation; {action_note}; next retry in {}",
                        humantime(after.cooldown)
                    ),
                ),
                Transition::HalfOpen => (
                    EventType::Normal,
                    "CircuitHalfOpen",
                    format!(
                        "cooldown over; {action_note}; probation for {}",
                        humantime(window)
                    ),
                ),
                Transition::Close => (
                    EventType::Normal,
                    "CircuitClosed",
                    format!("no crash on probation; {action_note}"),
                ),
            });
        }
        events
    }
}

/// The breaker's step (pure): the crashes known and fresh, a manual override (a new one
/// moves the breaker at once; an `Open` one holds it open; a `Close` one forgets the
/// crashes before it), the pause annotation.
fn decide_breaker(
    object: &SupervisedWorkload,
    previous: &SupervisedWorkloadStatus,
    fresh: &[Snapshot],
    now: Timestamp,
) -> BreakerDecision {
    let window = settings(object).map_or(DEFAULT_WINDOW, |(s, _)| s.window);
    let mut recent: Vec<Timestamp> = previous
        .recent_crashes
        .iter()
        .filter_map(|t| parse_time(t))
        .chain(fresh.iter().flat_map(|c| {
            let times = 1 + usize::try_from(c.unseen_restarts).unwrap_or(0);
            std::iter::repeat_n(parse_time(&c.time), times).flatten()
        }))
        .collect();
    recent.sort();
    let paused = object
        .annotations()
        .get(PAUSE_ANNOTATION)
        .is_some_and(|v| v == "true");
    let before = breaker::State {
        phase: Phase::parse(previous.breaker.as_deref()),
        since: previous.breaker_since.as_deref().and_then(parse_time),
        cooldown: Duration::from_secs(
            u64::try_from(previous.breaker_cooldown_seconds.unwrap_or(0)).unwrap_or(0),
        ),
    };
    // A manual override (validated before): a new one moves the breaker at once.
    let overriding = BreakerOverride::requested(object).ok().flatten();
    let applied = previous.breaker_override.as_ref().filter(|o| {
        overriding
            .as_ref()
            .is_some_and(|r| r.requested_at == o.requested_at)
    });
    if let Some(asked) = overriding
        .as_ref()
        .filter(|o| o.action == OverrideAction::Close)
        && let Some(at) = parse_time(&asked.requested_at)
    {
        // Termination times are kept to the second: one in the second of the request
        // counts, as on probation (a crash missed is worse than one counted).
        recent.retain(|t| t.as_second() >= at.as_second());
    }
    let (after, transition) = match (settings(object), &overriding) {
        (None, _) => (before.clone(), None),
        (Some((settings, _)), Some(asked)) if applied.is_none() => {
            let to = match asked.action {
                OverrideAction::Open => Phase::Open,
                OverrideAction::Close => Phase::Closed,
            };
            breaker::force(&settings, &before, to, now)
        }
        (Some(_), Some(asked)) if asked.action == OverrideAction::Open => (before.clone(), None),
        (Some((settings, _)), _) if !paused => breaker::step(&settings, &before, &recent, now),
        _ => (before.clone(), None),
    };
    let breaker_override = match (&overriding, applied) {
        (Some(_), Some(applied)) => Some(applied.clone()),
        (Some(asked), None) if settings(object).is_some() => Some(BreakerOverride {
            applied_at: Some(now.to_string()),
            ..asked.clone()
        }),
        _ => None,
    };
    let manual = breaker_override.is_some() && applied.is_none();
    BreakerDecision {
        window,
        recent,
        after,
        transition,
        breaker_override,
        manual,
        paused,
    }
}

/// The ring ConfigMap of snapshots.
fn snapshots_config_map(object: &SupervisedWorkload) -> String {
    format!("{}-crashes", object.name_any())
}

/// The fresh snapshots (and the sealed one when the breaker opened) in one write of the
/// ring ConfigMap, and one Event per crash.
async fn record_snapshots(
    object: &SupervisedWorkload,
    ctx: &Context,
    fresh: &[Snapshot],
    sealing: bool,
) -> Result<(), Error> {
    let namespace = object.namespace().unwrap_or_default();
    let capture = &object.spec.crash_capture;
    let config_map_name = snapshots_config_map(object);
    let max_bytes = usize::try_from(capture.max_snapshot_bytes).unwrap_or(65536);
    if !fresh.is_empty() || sealing {
        let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
        let data: BTreeMap<String, String> = config_maps
            .get_opt(&config_map_name)
            .await?
            .and_then(|cm| cm.data)
            .unwrap_or_default();
        let texts: Vec<String> = fresh.iter().map(|c| c.to_bounded_json(max_bytes)).collect();
        let (mut data, _) = ring_add(&data, &texts, usize::try_from(capture.retain).unwrap_or(10));
        if sealing {
            let newest = texts.last().cloned().or_else(|| {
                data.iter()
                    .filter(|(k, _)| k.starts_with("crash-"))
                    .map(|(_, v)| v.clone())
                    .next_back()
            });
            if let Some(newest) = newest {
                data.insert(SEALED_KEY.to_owned(), newest);
            }
        }
        let ring: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config_map_name, "namespace": namespace,
                "labels": {"vigil.io/supervised-workload": object.name_any()}},
            "data": data,
        }))
        .map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
        apply_owned(&ctx.client, object, ring).await?;
    }
    for crash in fresh {
        announce_crash(object, ctx, &namespace, crash).await;
    }
    Ok(())
}

/// The new status (pure): the conditions, the breaker, the crash bookkeeping and the
/// config revisions.
fn new_status(
    object: &SupervisedWorkload,
    previous: &SupervisedWorkloadStatus,
    fresh: &[Snapshot],
    breaker: &BreakerDecision,
    isolated: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    config: Option<ConfigOutcome>,
    now: Timestamp,
) -> SupervisedWorkloadStatus {
    let (kind, target) = (object.spec.target.kind, &object.spec.target.name);
    let (window, after, paused) = (breaker.window, &breaker.after, breaker.paused);
    let breaker_override = breaker.breaker_override.clone();
    let config_map_name = snapshots_config_map(object);
    let mut seen_list: Vec<String> = previous.seen_crashes.clone();
    seen_list.extend(fresh.iter().map(Snapshot::id));
    let excess = seen_list.len().saturating_sub(SEEN_LIMIT);
    seen_list.drain(..excess);
    let recent_kept: Vec<String> = breaker
        .recent
        .iter()
        .filter(|t| breaker.in_window(t, now))
        .map(|t| t.to_string())
        .collect();
    let recent_kept = recent_kept[recent_kept.len().saturating_sub(RECENT_LIMIT)..].to_vec();
    let crashes_in_window = i32::try_from(recent_kept.len()).unwrap_or(i32::MAX);
    let last_crash = fresh
        .last()
        .map(Snapshot::one_line)
        .or(previous.last_crash.clone());
    let breaker_condition = match (settings(object), after.phase) {
        (None, _) => None,
        (Some(_), phase) => {
            // The override is named while the phase is the one it set: after a close
            // by hand, a later automatic opening is the breaker's own.
            let by_hand = breaker_override.as_ref().filter(|o| {
                matches!(
                    (o.action, phase),
                    (OverrideAction::Open, Phase::Open) | (OverrideAction::Close, Phase::Closed)
                )
            });
            let pause = match (by_hand, paused) {
                (Some(o), _) => format!(
                    " ({} by hand at {}: {}{})",
                    match o.action {
                        OverrideAction::Open => "opened",
                        OverrideAction::Close => "closed",
                    },
                    o.applied_at.as_deref().unwrap_or(&o.requested_at),
                    o.reason,
                    match o.action {
                        OverrideAction::Open => "; held open until vigil breaker close or clear",
                        OverrideAction::Close => "",
                    }
                ),
                (None, true) => format!(" (paused by annotation {PAUSE_ANNOTATION})"),
                (None, false) => String::new(),
            };
            Some(match phase {
                Phase::Open => condition(
                    CIRCUIT_OPEN,
                    Some(true),
                    "CrashLoop",
                    format!(
                        "open since {}, retry after {}{pause}; last crash: {}; sealed snapshot in ConfigMap {config_map_name} key {SEALED_KEY}",
                        after.since.map(|t| t.to_string()).unwrap_or_default(),
                        humantime(after.cooldown),
                        last_crash.clone().unwrap_or_default()
                    ),
                ),
                Phase::HalfOpen => condition(
                    CIRCUIT_OPEN,
                    Some(false),
                    "Probation",
                    format!(
                        "half-open since {}: one replica on probation for {}{pause}",
                        after.since.map(|t| t.to_string()).unwrap_or_default(),
                        humantime(window)
                    ),
                ),
                Phase::Closed => condition(
                    CIRCUIT_OPEN,
                    Some(false),
                    "Closed",
                    format!(
                        "{crashes_in_window} crashes within {}{pause}",
                        humantime(window)
                    ),
                ),
            })
        }
    };
    let ready = condition(
        READY,
        Some(true),
        "Supervising",
        format!(
            "capturing crashes of {kind:?} {target} ({crashes_in_window} within {})",
            humantime(window),
        ),
    );
    SupervisedWorkloadStatus {
        observed_generation: None,
        conditions: std::iter::once(ready)
            .chain(std::iter::once(isolated))
            .chain(breaker_condition)
            .chain(config.as_ref().map(|c| c.condition.clone()))
            .collect(),
        breaker: settings(object).map(|_| after.phase.as_str().to_owned()),
        breaker_since: after.since.map(|t| t.to_string()),
        breaker_cooldown_seconds: settings(object)
            .map(|_| i64::try_from(after.cooldown.as_secs()).unwrap_or(i64::MAX)),
        last_crash,
        crashes_in_window,
        crashes_total: previous.crashes_total
            + fresh
                .iter()
                .map(|c| 1 + i64::from(c.unseen_restarts))
                .sum::<i64>(),
        snapshots_config_map: (previous.snapshots_config_map.is_some() || !fresh.is_empty())
            .then(|| config_map_name.clone()),
        recent_crashes: recent_kept,
        seen_crashes: seen_list,
        config_revision: config.as_ref().and_then(|c| c.revision.clone()),
        config_switched_at: config.as_ref().and_then(|c| c.switched_at.clone()),
        config_revisions: config
            .as_ref()
            .map(|c| c.revisions.clone())
            .unwrap_or_default(),
        breaker_override,
        config_rollback: config.and_then(|c| c.rollback),
    }
}

/// A supervised CronJob never runs twice at once: `concurrencyPolicy: Forbid`.
async fn forbid_overlap(
    object: &SupervisedWorkload,
    ctx: &Context,
    workloads: &Api<DynamicObject>,
    cronjob: &DynamicObject,
) -> Result<(), Error> {
    let policy = cronjob.data["spec"]["concurrencyPolicy"]
        .as_str()
        .unwrap_or("Allow");
    if policy == "Forbid" {
        return Ok(());
    }
    let params = merge_params();
    let patch = serde_json::json!({"spec": {"concurrencyPolicy": "Forbid"}});
    workloads
        .patch(&cronjob.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    ctx.publish(
        object,
        EventType::Normal,
        "OverlapForbidden",
        format!(
            "CronJob {} had concurrencyPolicy {policy}; set to Forbid so that runs never overlap",
            cronjob.name_any()
        ),
    )
    .await;
    Ok(())
}

/// `Isolated`: what the pod webhook does to the workload's pods, the settings of its pod
/// template that contradict the profile (reported, not overridden), and the isolated pods
/// the kubelet cannot start (`refused`, from [`refused_by_kubelet`]).
fn isolation_condition(
    object: &SupervisedWorkload,
    kind: WorkloadKind,
    workload: &DynamicObject,
    refused: &[String],
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let template = if kind == WorkloadKind::CronJob {
        &workload.data["spec"]["jobTemplate"]["spec"]["template"]
    } else {
        &workload.data["spec"]["template"]
    };
    let profile = object.spec.isolation.profile;
    if let Some(first) = refused.first() {
        let more = match refused.len() {
            1 => String::new(),
            n => format!(" (and {} more pods)", n - 1),
        };
        return condition(
            ISOLATED,
            Some(false),
            "KubeletRefused",
            format!(
                "the kubelet cannot start pods isolated with the {profile:?} profile: {first}{more}{hint}",
                hint = if first.contains("runAsNonRoot") {
                    "; give the image a numeric non-root USER or set runAsUser in the pod template"
                } else {
                    ""
                }
            ),
        );
    }
    let mutation = crate::webhook::mutate::mutate(template, object, None);
    if !mutation.conflicts.is_empty() {
        return condition(
            ISOLATED,
            Some(false),
            "Conflict",
            format!(
                "the pod template contradicts the {profile:?} profile, left as it is: {}",
                mutation.conflicts.join("; ")
            ),
        );
    }
    condition(
        ISOLATED,
        Some(true),
        "Applied",
        format!("new pods get the {profile:?} profile from the pod webhook"),
    )
}

/// What config hot-reload decided.
struct ConfigOutcome {
    condition: k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    revision: Option<String>,
    switched_at: Option<String>,
    revisions: Vec<ConfigRevision>,
    rollback: Option<ConfigRollback>,
}

/// Validated config hot-reload. A crash within `rollbackWithin` of a switch switches back
/// to the revision before it. Otherwise the source ConfigMap is checked against the
/// schema: an invalid one is rejected (the running revision stays); a valid, new content
/// becomes an immutable ConfigMap `<source>-<hash>` and the pod template is pointed at it
/// in one patch, so every pod sees either the old or the new config, never a mix.
#[allow(clippy::too_many_arguments)]
async fn reconcile_config(
    object: &SupervisedWorkload,
    ctx: &Context,
    namespace: &str,
    workloads: &Api<DynamicObject>,
    workload: &DynamicObject,
    previous: &SupervisedWorkloadStatus,
    fresh: &[Snapshot],
    now: Timestamp,
) -> Result<ConfigOutcome, Error> {
    use crate::workload_config::{check, compile, content_hash, diff_summary, revision_name};
    let Some(config) = &object.spec.config else {
        return Err(Error::InvalidSpec(Vec::new()));
    };
    let source = &config.config_map_name;
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let mut revisions = previous.config_revisions.clone();
    let active = previous.config_revision.clone();
    let kind = object.spec.target.kind;
    // Every name the template may point at: the source and every revision.
    let known: Vec<String> = std::iter::once(source.clone())
        .chain(revisions.iter().map(|r| r.name.clone()))
        .collect();
    let now_text = now.to_string();

    // A rollback asked for by hand (validated above), answered once.
    let mut rollback = previous.config_rollback.clone();
    if let Some(asked) = ConfigRollback::requested(object)
        .ok()
        .flatten()
        .filter(|asked| rollback.as_ref().map(|r| &r.requested_at) != Some(&asked.requested_at))
    {
        let target = revisions.iter().find(|r| r.name == asked.revision).cloned();
        let answer = |outcome: &str| {
            Some(ConfigRollback {
                outcome: Some(outcome.to_owned()),
                ..asked.clone()
            })
        };
        let refused = match &target {
            None => Some(format!(
                "revision {} is not kept (kept: {}); vigil config history lists them",
                asked.revision,
                revisions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(target) if active.as_deref() == Some(target.name.as_str()) => {
                rollback = answer("AlreadyActive");
                None
            }
            Some(target) => {
                let data = config_maps
                    .get_opt(&target.name)
                    .await?
                    .and_then(|cm| cm.data)
                    .unwrap_or_default();
                let problems = match &config.schema {
                    Some(schema) => compile(schema)
                        .map(|validator| check(&validator, &data))
                        .unwrap_or_else(|e| vec![e]),
                    None => Vec::new(),
                };
                if !problems.is_empty() {
                    Some(format!(
                        "revision {} does not pass spec.config.schema: {}",
                        target.name,
                        problems.join("; ")
                    ))
                } else if switch(workloads, workload, kind, &known, &target.name).await? == 0 {
                    Some(format!(
                        "the pod template of {kind:?} {} refers to none of {}",
                        object.spec.target.name,
                        known.join(", ")
                    ))
                } else {
                    let left = active.clone().unwrap_or_default();
                    for revision in &mut revisions {
                        if revision.name == left {
                            revision.state = "RolledBack".to_owned();
                        } else if revision.name == target.name {
                            revision.state = "Active".to_owned();
                            revision.switched_at = now_text.clone();
                        }
                    }
                    rollback = answer("Switched");
                    let message = format!(
                        "rolled back by hand to {} (vigil config rollback): {}; {left} is not used again until {source} changes",
                        target.name, asked.reason
                    );
                    ctx.publish(
                        object,
                        EventType::Normal,
                        "ConfigRolledBack",
                        message.clone(),
                    )
                    .await;
                    return Ok(ConfigOutcome {
                        condition: condition(
                            CONFIG_RELOADED,
                            Some(true),
                            "RolledBackByHand",
                            message,
                        ),
                        revision: Some(target.name.clone()),
                        switched_at: Some(now_text),
                        revisions,
                        rollback,
                    });
                }
            }
        };
        if let Some(why) = refused {
            rollback = answer(&format!("Refused: {why}"));
            ctx.publish(
                object,
                EventType::Warning,
                "ConfigRollbackRefused",
                format!("rollback to {} refused: {why}", asked.revision),
            )
            .await;
        }
    }
    let kept = |condition, revisions: Vec<ConfigRevision>| ConfigOutcome {
        condition,
        revision: active.clone(),
        switched_at: previous.config_switched_at.clone(),
        revisions,
        rollback: rollback.clone(),
    };

    // A crash soon after the last switch: back to the revision before it.
    let within = parse_duration(&config.rollback_within).unwrap_or(Duration::from_secs(300));
    let switched = previous.config_switched_at.as_deref().and_then(parse_time);
    if let (Some(active_name), Some(switched)) = (&active, switched) {
        let crashed = fresh.iter().filter_map(|c| parse_time(&c.time)).any(|t| {
            t.as_second() >= switched.as_second()
                && Duration::try_from(t.duration_since(switched)).unwrap_or(Duration::ZERO)
                    <= within
        });
        let good = revisions.iter().find(|r| r.state == "Superseded").cloned();
        if crashed && let Some(good) = good {
            switch(workloads, workload, kind, &known, &good.name).await?;
            let change = revisions
                .iter()
                .find(|r| &r.name == active_name)
                .map(|r| r.change.clone())
                .unwrap_or_default();
            for revision in &mut revisions {
                if &revision.name == active_name {
                    revision.state = "RolledBack".to_owned();
                } else if revision.name == good.name {
                    revision.state = "Active".to_owned();
                    revision.switched_at = now_text.clone();
                }
            }
            let message = format!(
                "pods crashed within {} of the switch to {active_name} ({change}); switched back to {}",
                humantime(within),
                good.name
            );
            ctx.publish(
                object,
                EventType::Warning,
                "ConfigRolledBack",
                message.clone(),
            )
            .await;
            return Ok(ConfigOutcome {
                condition: condition(CONFIG_RELOADED, Some(false), "RolledBack", message),
                revision: Some(good.name),
                switched_at: Some(now_text),
                revisions,
                rollback,
            });
        }
    }

    let Some(current) = config_maps.get_opt(source).await? else {
        return Ok(kept(
            condition(
                CONFIG_RELOADED,
                Some(false),
                "SourceNotFound",
                format!("ConfigMap {namespace}/{source} does not exist"),
            ),
            revisions,
        ));
    };
    let data: BTreeMap<String, String> = current.data.unwrap_or_default();
    let running = active
        .as_deref()
        .map(|a| format!("still running {a}"))
        .unwrap_or_else(|| "the workload keeps what it has".to_owned());
    if let Some(schema) = &config.schema {
        let validator = compile(schema).map_err(|e| {
            Error::InvalidSpec(vec![crate::validate::FieldError::new(
                "spec.config.schema",
                e,
            )])
        })?;
        let problems = check(&validator, &data);
        if !problems.is_empty() {
            let message = format!(
                "ConfigMap {source} rejected, {running}: {}",
                problems.join("; ")
            );
            let said = previous
                .conditions
                .iter()
                .any(|c| c.type_ == CONFIG_RELOADED && c.message == message);
            if !said {
                ctx.publish(
                    object,
                    EventType::Warning,
                    "ConfigRejected",
                    message.clone(),
                )
                .await;
            }
            return Ok(kept(
                condition(CONFIG_RELOADED, Some(false), "InvalidConfig", message),
                revisions,
            ));
        }
    }
    let hash = content_hash(&data);
    if let Some(same) = revisions.iter().find(|r| r.hash == hash) {
        let (status, reason, message) = if same.state == "RolledBack" {
            (
                false,
                "RolledBack",
                format!(
                    "the content of {source} is revision {}, which was rolled back; {running} until {source} changes",
                    same.name
                ),
            )
        } else {
            (
                true,
                "Active",
                format!("running revision {} of {source}", same.name),
            )
        };
        if same.state == "RolledBack" || active.as_deref() == Some(same.name.as_str()) {
            return Ok(kept(
                condition(CONFIG_RELOADED, Some(status), reason, message),
                revisions,
            ));
        }
    }

    // A new revision: store it, then switch in one patch.
    let name = revision_name(source, &hash);
    let revision: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace,
            "labels": {"vigil.io/supervised-workload": object.name_any(), "vigil.io/config-source": source}},
        "immutable": true,
        "data": data,
    }))
    .map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    apply_owned(&ctx.client, object, revision).await?;
    let before: BTreeMap<String, String> = match &active {
        Some(active) => config_maps
            .get_opt(active)
            .await?
            .and_then(|cm| cm.data)
            .unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let change = if active.is_some() {
        diff_summary(&before, &data)
    } else {
        "first revision".to_owned()
    };
    if switch(workloads, workload, kind, &known, &name).await? == 0 {
        return Ok(kept(
            condition(
                CONFIG_RELOADED,
                Some(false),
                "NoReference",
                format!(
                    "the pod template of {kind:?} {} does not refer to ConfigMap {source} (volume, envFrom or env): nothing to switch",
                    object.spec.target.name
                ),
            ),
            revisions,
        ));
    }
    for revision in &mut revisions {
        if revision.state == "Active" {
            revision.state = "Superseded".to_owned();
        }
    }
    revisions.retain(|r| r.name != name);
    revisions.insert(
        0,
        ConfigRevision {
            name: name.clone(),
            hash,
            switched_at: now_text.clone(),
            state: "Active".to_owned(),
            change: change.clone(),
        },
    );
    for dropped in revisions.split_off(revisions.len().min(CONFIG_HISTORY)) {
        let _ = config_maps
            .delete(&dropped.name, &kube::api::DeleteParams::default())
            .await;
    }
    let message = format!(
        "switched {kind:?} {} to {name}: {change}",
        object.spec.target.name
    );
    ctx.publish(object, EventType::Normal, "ConfigSwitched", message.clone())
        .await;
    Ok(ConfigOutcome {
        condition: condition(CONFIG_RELOADED, Some(true), "Switched", message),
        revision: Some(name),
        switched_at: Some(now_text),
        revisions,
        rollback,
    })
}

/// Points the workload's pod template at ConfigMap `to` instead of any of `from`, and
/// records it in the annotation `vigil.io/config-revision`, in one patch. Returns how many
/// references changed (0: the template refers to none of them, nothing was written).
async fn switch(
    workloads: &Api<DynamicObject>,
    workload: &DynamicObject,
    kind: WorkloadKind,
    from: &[String],
    to: &str,
) -> Result<usize, Error> {
    let cron = kind == WorkloadKind::CronJob;
    let mut template = if cron {
        workload.data["spec"]["jobTemplate"]["spec"]["template"].clone()
    } else {
        workload.data["spec"]["template"].clone()
    };
    let changed = crate::workload_config::rewrite_references(&mut template, from, to);
    if changed == 0 {
        return Ok(0);
    }
    let spec = if cron {
        serde_json::json!({"jobTemplate": {"spec": {"template": template}}})
    } else {
        serde_json::json!({"template": template})
    };
    let patch = serde_json::json!({
        "metadata": {"annotations": {CONFIG_REVISION_ANNOTATION: to}},
        "spec": spec,
    });
    let params = merge_params();
    workloads
        .patch(&workload.name_any(), &params, &Patch::Merge(&patch))
        .await?;
    Ok(changed)
}

/// A Warning Event, one structured log record and the crash counter for one crash.
async fn announce_crash(
    object: &SupervisedWorkload,
    ctx: &Context,
    namespace: &str,
    crash: &Snapshot,
) {
    let workload = &object.spec.target.name;
    ctx.metrics
        .workload_crashes
        .get_or_create(&CrashLabels {
            namespace: namespace.to_owned(),
            workload: workload.clone(),
            container: crash.container.clone(),
            reason: crash.reason.clone(),
        })
        .inc_by(1 + u64::try_from(crash.unseen_restarts).unwrap_or(0));
    tracing::warn!(
        namespace,
        workload,
        pod = %crash.pod,
        node = crash.node.as_deref().unwrap_or_default(),
        container = %crash.container,
        image = %crash.image,
        exit_code = crash.exit_code,
        signal = crash.signal.unwrap_or_default(),
        reason = %crash.reason,
        restart_count = crash.restart_count,
        panic = crash.panic.as_ref().map(|p| p.message.as_str()).unwrap_or_default(),
        frames = crash.panic.as_ref().map(|p| p.frames.join(" | ")).unwrap_or_default(),
        "container crashed"
    );
    ctx.publish(object, EventType::Warning, "Crashed", crash.one_line())
        .await;
}

/// Runs the breaker's action for `transition` on the workload; returns what it did.
async fn act(
    workloads: &Api<DynamicObject>,
    workload: &DynamicObject,
    kind: WorkloadKind,
    action: BreakerAction,
    transition: Transition,
) -> Result<String, Error> {
    let name = workload.name_any();
    let what = format!("{kind:?} {name}");
    let replicas = workload.data["spec"]["replicas"].as_i64().unwrap_or(1);
    let saved = workload
        .annotations()
        .get(REPLICAS_ANNOTATION)
        .and_then(|v| v.parse::<i64>().ok());
    let (patch, note) = match (action, transition) {
        (BreakerAction::AlertOnly, _) => {
            return Ok("AlertOnly: the workload is left as it is".to_owned());
        }
        (BreakerAction::ScaleToZero, Transition::Open | Transition::Reopen) => {
            // The replica count to restore is the one before the first opening.
            let keep = saved.unwrap_or(replicas);
            (
                serde_json::json!({"metadata": {"annotations": {REPLICAS_ANNOTATION: keep.to_string()}},
                    "spec": {"replicas": 0}}),
                format!("scaled {what} to 0 (from {keep})"),
            )
        }
        (BreakerAction::ScaleToZero, Transition::HalfOpen) => (
            serde_json::json!({"spec": {"replicas": 1}}),
            format!("scaled {what} to 1"),
        ),
        (BreakerAction::ScaleToZero, Transition::Close) => {
            let restore = saved.unwrap_or(replicas.max(1));
            (
                serde_json::json!({"metadata": {"annotations": {REPLICAS_ANNOTATION: null}},
                    "spec": {"replicas": restore}}),
                format!("restored {what} to {restore} replicas"),
            )
        }
        (BreakerAction::Suspend, Transition::Open | Transition::Reopen) => (
            serde_json::json!({"spec": {"suspend": true}}),
            format!("suspended {what}"),
        ),
        (BreakerAction::Suspend, Transition::HalfOpen | Transition::Close) => (
            serde_json::json!({"spec": {"suspend": false}}),
            format!("resumed {what}"),
        ),
    };
    let params = merge_params();
    workloads
        .patch(&name, &params, &Patch::Merge(&patch))
        .await?;
    Ok(note)
}

/// `90s`, `5m`, `1h30m`: a duration as users write it in the spec.
fn humantime(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::supervised_workload::BREAKER_OVERRIDE_ANNOTATION;

    fn pod(owner_kind: &str, owner: &str, hash: Option<&str>) -> Pod {
        let mut labels = serde_json::Map::new();
        if let Some(hash) = hash {
            labels.insert("pod-template-hash".into(), hash.into());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": labels, "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": owner_kind, "name": owner, "uid": "u", "controller": true}]},
        }))
        .expect("a pod")
    }

    #[test]
    fn pods_map_to_their_workload() {
        assert_eq!(
            workload_of(&pod(
                "ReplicaSet",
                "checkout-7d4b9c8f6d",
                Some("7d4b9c8f6d")
            )),
            Some((WorkloadKind::Deployment, "checkout".to_owned()))
        );
        assert_eq!(
            workload_of(&pod("StatefulSet", "db", None)),
            Some((WorkloadKind::StatefulSet, "db".to_owned()))
        );
        assert_eq!(
            workload_of(&pod("Job", "nightly-report-29561040", None)),
            Some((WorkloadKind::CronJob, "nightly-report".to_owned()))
        );
        assert_eq!(workload_of(&pod("Job", "one-off", None)), None);
        assert_eq!(workload_of(&pod("ReplicaSet", "bare-rs", None)), None);
    }

    /// The example: at most 5 crashes in 10m, a 5m cooldown.
    fn checkout(annotations: &[(&str, &str)]) -> SupervisedWorkload {
        let text = include_str!("../../../examples/supervised-workload/checkout.yaml");
        let mut object: SupervisedWorkload = serde_yaml_ng::from_str(text).expect("the example");
        object.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        object
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("a time")
    }

    fn crashes(times: &[i64]) -> Vec<Snapshot> {
        times
            .iter()
            .map(|t| {
                serde_json::from_value(serde_json::json!({
                    "time": at(*t).to_string(), "pod": "p", "podUid": "u", "container": "c",
                    "containerId": format!("containerd://{t}"), "image": "i", "exitCode": 2,
                    "reason": "Error", "restartCount": 1, "terminationMessage": "", "logTail": ""
                }))
                .expect("a snapshot")
            })
            .collect()
    }

    /// (transition, phase after, manual, the Events' reasons) of a decision.
    fn decided(
        object: &SupervisedWorkload,
        previous: &SupervisedWorkloadStatus,
        fresh: &[Snapshot],
    ) -> (Option<Transition>, Phase, bool, Vec<&'static str>) {
        let decision = decide_breaker(object, previous, fresh, at(100));
        let events = decision.events(previous, "scaled Deployment checkout to 0", at(100));
        (
            decision.transition,
            decision.after.phase,
            decision.manual,
            events.into_iter().map(|(_, reason, _)| reason).collect(),
        )
    }

    #[test]
    fn the_breaker_opens_on_the_fifth_crash_unless_paused_or_held() {
        let fresh = SupervisedWorkloadStatus::default();
        let open =
            r#"{"action":"Open","reason":"bad release","requestedAt":"2027-01-15T08:00:50Z"}"#;
        let cases = [
            (
                "four crashes",
                checkout(&[]),
                crashes(&[10, 20, 30, 40]),
                (None, Phase::Closed, false, vec![]),
            ),
            (
                "five crashes",
                checkout(&[]),
                crashes(&[10, 20, 30, 40, 50]),
                (
                    Some(Transition::Open),
                    Phase::Open,
                    false,
                    vec!["CircuitOpened"],
                ),
            ),
            (
                "paused",
                checkout(&[(PAUSE_ANNOTATION, "true")]),
                crashes(&[10, 20, 30, 40, 50]),
                (None, Phase::Closed, false, vec![]),
            ),
            (
                "opened by hand without a crash",
                checkout(&[(BREAKER_OVERRIDE_ANNOTATION, open)]),
                Vec::new(),
                (
                    Some(Transition::Open),
                    Phase::Open,
                    true,
                    vec!["CircuitOverridden"],
                ),
            ),
        ];
        for (case, object, fresh_crashes, expected) in cases {
            assert_eq!(decided(&object, &fresh, &fresh_crashes), expected, "{case}");
        }
        let opened = decide_breaker(
            &checkout(&[]),
            &fresh,
            &crashes(&[10, 20, 30, 40, 50]),
            at(100),
        );
        assert!(opened.sealing());
        let events = opened.events(&fresh, "scaled Deployment checkout to 0", at(100));
        assert_eq!(
            events[0].2,
            "5 crashes within 10m; scaled Deployment checkout to 0"
        );
        // Crashes older than the window do not count.
        let (transition, ..) = decided(&checkout(&[]), &fresh, &crashes(&[-900, 10, 20, 30, 40]));
        assert_eq!(transition, None);
    }

    #[test]
    fn an_override_is_applied_once_and_its_removal_is_told() {
        let open =
            r#"{"action":"Open","reason":"bad release","requestedAt":"2027-01-15T08:00:50Z"}"#;
        let object = checkout(&[(BREAKER_OVERRIDE_ANNOTATION, open)]);
        let first = decide_breaker(&object, &SupervisedWorkloadStatus::default(), &[], at(100));
        let status = SupervisedWorkloadStatus {
            breaker: Some(first.after.phase.as_str().to_owned()),
            breaker_since: first.after.since.map(|t| t.to_string()),
            breaker_cooldown_seconds: Some(300),
            breaker_override: first.breaker_override.clone(),
            ..Default::default()
        };
        assert_eq!(
            first.events(&SupervisedWorkloadStatus::default(), "", at(100))[0].2,
            "opened by hand (vigil breaker open): bad release; the breaker was already Open"
        );
        // Seen again: held open, nothing new to tell.
        assert_eq!(
            decided(&object, &status, &crashes(&[60])),
            (None, Phase::Open, false, vec![])
        );
        // The annotation removed: cleared, and said so.
        let (_, _, manual, events) = decided(&checkout(&[]), &status, &[]);
        assert!(!manual);
        assert_eq!(events, ["CircuitOverrideCleared"]);
    }

    #[test]
    fn selectors_and_durations_read_as_users_write_them() {
        let selector = serde_json::json!({"matchLabels": {"app": "checkout"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"}]});
        assert_eq!(
            selector_string(&selector).as_deref(),
            Ok("app=checkout,tier in (api,web),!canary")
        );
        let odd = serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "Near"}]});
        assert!(selector_string(&odd).is_err_and(|e| e.starts_with("spec.selector: ")));
        assert_eq!(humantime(Duration::from_secs(90)), "1m30s");
        assert_eq!(humantime(Duration::from_secs(3600)), "1h");
        assert_eq!(humantime(Duration::ZERO), "0s");
    }
}
