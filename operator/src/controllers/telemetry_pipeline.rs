//! The `TelemetryPipeline` controller: for each cluster it renders the Collector
//! configuration, stores it in a ConfigMap named by its content hash, has the Collector's
//! own `validate` check it in a Job, and only then switches the collectors to it. A
//! configuration that fails keeps the collectors on the last good one, with the Collector's
//! message in `Validated` and in an Event. Old ConfigMaps beyond a short history are pruned.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::Value;

use super::apply::{apply_hashed, delete_if_present};
use super::member_cluster::{describe_kube_error, member_client};
use super::status::{condition, update_status};
use super::{Context, Error, Reconcile, finalizer};
use crate::api::telemetry_pipeline::{
    CollectorMode, PipelineClusterStatus, SamplingStatus, SloBoost,
};
use crate::api::{MemberCluster, READY, TelemetryPipeline, TelemetryPipelineStatus};
use crate::prometheus::any_holds;
use crate::render::otel::{
    COMPONENT_LABEL, CONFIG_ANNOTATION, CollectorConfig, PIPELINE_LABEL, cluster_role_name,
    collector_name, collector_objects, config_map, config_name, render_collector_configs,
    validation_job,
};
use crate::render::slo::page_burn_conditions;
use crate::validate::{FieldError, Validate};

pub use crate::api::telemetry_pipeline::vocabulary::VALIDATED;
use crate::api::telemetry_pipeline::vocabulary::{
    ACCEPTED, APPLY_FAILED, CONFIG_SWITCHED, ROLLED_OUT, SAMPLING_BOOSTED, SAMPLING_RESTORED,
    VALIDATING, VALIDATION_FAILED,
};
/// Set on every valid pipeline: deleting it first removes its collectors, configurations,
/// validation Jobs and cluster-wide RBAC from every cluster it rolled out to.
pub const FINALIZER: &str = "vigil.io/telemetrypipeline-cleanup";
/// Configuration ConfigMaps kept per cluster besides the active one and the candidate.
pub const HISTORY: usize = 3;
/// How soon a validation in progress is looked at again.
const VALIDATING_RECHECK: Duration = Duration::from_secs(2);
/// How often a settled pipeline is checked.
const RESYNC: Duration = Duration::from_secs(60);

/// Where one cluster's rollout stands.
#[derive(Clone, Debug, PartialEq)]
enum Rollout {
    /// The collectors run the configuration of the current spec.
    Running,
    /// Its validation Job has not finished.
    Validating,
    /// The Collector refused it; the collectors keep the last good one.
    Refused(String),
    /// The cluster could not be reached or written.
    Unreachable(String),
}

impl Reconcile for TelemetryPipeline {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let namespace = self.namespace().unwrap_or_default();
        let api: Api<TelemetryPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
        if self.metadata.deletion_timestamp.is_some() {
            return finalize(&self, &ctx, &api).await;
        }
        let boosts = self.spec.sampling.slo_boost.iter();
        let inventory = ctx
            .stores
            .references_and_slos(&namespace, boosts.map(|b| b.slo_ref.name.as_str()));
        let errors = self.validate(&inventory);
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        finalizer::ensure(self.as_ref(), &api, FINALIZER).await?;
        let sampling = decide_sampling(&ctx, &self, &inventory).await;
        let boosted =
            (sampling.percentage != self.spec.sampling.percentage).then_some(sampling.percentage);
        let configs = render_collector_configs(&self, &inventory, boosted)
            .map_err(|e| Error::InvalidSpec(vec![FieldError::new("spec", e.0)]))?;
        let previous = self.status.clone().unwrap_or_default().clusters;
        let (entries, rollouts) = roll_out_all(&ctx, &self, &inventory, &configs, &previous).await;
        let (validated, ready) = conditions(&entries, &rollouts);
        let before = self.status.as_ref().and_then(|s| s.sampling.as_ref());
        if let Some((reason, note)) = sampling_event(before, &sampling) {
            ctx.publish(self.as_ref(), EventType::Normal, reason, note)
                .await;
        }
        let boosts = !self.spec.sampling.slo_boost.is_empty();
        let status = TelemetryPipelineStatus {
            observed_generation: None,
            conditions: vec![ready, validated],
            clusters: entries,
            sampling: Some(sampling),
        };
        update_status(&ctx.client, self.as_ref(), status).await?;
        Ok(Action::requeue(requeue(
            &rollouts,
            boosts,
            ctx.status_interval,
        )))
    }
}

/// Rolls each cluster's configuration out (or goes on with its rollout), announcing what
/// changed; a cluster that cannot be reached keeps its configurations in its entry.
async fn roll_out_all(
    ctx: &Context,
    pipeline: &TelemetryPipeline,
    inventory: &crate::inventory::Inventory,
    configs: &[CollectorConfig],
    previous: &[PipelineClusterStatus],
) -> (Vec<PipelineClusterStatus>, Vec<Rollout>) {
    let mut entries = Vec::new();
    let mut rollouts = Vec::new();
    for config in configs {
        let before = previous.iter().find(|c| c.cluster == config.cluster);
        let Some(member) = inventory.member_cluster(&config.cluster) else {
            continue;
        };
        let (entry, rollout) = match roll_out(ctx, pipeline, member, config, before).await {
            Ok(done) => done,
            Err(message) => (
                PipelineClusterStatus {
                    cluster: config.cluster.clone(),
                    active_config: before.and_then(|b| b.active_config.clone()),
                    candidate_config: before.and_then(|b| b.candidate_config.clone()),
                    message: Some(message.clone()),
                },
                Rollout::Unreachable(message),
            ),
        };
        announce(ctx, pipeline, before, &entry, &rollout).await;
        entries.push(entry);
        rollouts.push(rollout);
    }
    (entries, rollouts)
}

/// The Event when the sampling percentage moved: raised by a burning SLO, or back.
fn sampling_event(
    before: Option<&SamplingStatus>,
    now: &SamplingStatus,
) -> Option<(&'static str, String)> {
    let before = before.filter(|b| b.percentage != now.percentage)?;
    let (reason, verb) = if now.boosted_by.is_some() {
        (SAMPLING_BOOSTED, "raised")
    } else {
        (SAMPLING_RESTORED, "returned")
    };
    Some((
        reason,
        format!(
            "trace sampling {verb} from {}% to {}%: {}",
            before.percentage, now.percentage, now.reason
        ),
    ))
}

/// When to look again: soon while a validation Job runs; with the status interval while
/// burns can boost sampling (they are read from Prometheus as often as error budgets);
/// otherwise at the resync.
fn requeue(rollouts: &[Rollout], boosts: bool, status_interval: Duration) -> Duration {
    if rollouts.contains(&Rollout::Validating) {
        VALIDATING_RECHECK
    } else if boosts {
        status_interval.min(RESYNC)
    } else {
        RESYNC
    }
}

/// How long a burn must have stopped before a boost ends, when `holdFor` is unset.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(600);

/// The sampling in force: the highest boost among the SLOs of `spec.sampling.sloBoost`
/// whose page-level burn condition holds in Prometheus now; after the burn stops, the
/// boost stays for its `holdFor` (hysteresis), and then the base percentage returns. When
/// Prometheus cannot be read, a boost in force stays.
async fn decide_sampling(
    ctx: &Context,
    pipeline: &TelemetryPipeline,
    inventory: &crate::inventory::Inventory,
) -> SamplingStatus {
    let spec = &pipeline.spec.sampling;
    let base = SamplingStatus {
        percentage: spec.percentage,
        reason: "spec.sampling.percentage".to_owned(),
        boosted_by: None,
        calm_since: None,
    };
    if spec.slo_boost.is_empty() {
        return base;
    }
    let namespace = pipeline.namespace().unwrap_or_default();
    let mut burning: Option<&SloBoost> = None;
    let mut unknown = Vec::new();
    for boost in &spec.slo_boost {
        let name = &boost.slo_ref.name;
        let Some(slo) = inventory.service_level_objective(&namespace, name) else {
            continue;
        };
        let Some(url) = slo
            .spec
            .prometheus
            .as_ref()
            .map(|p| p.url.clone())
            .or_else(|| ctx.prometheus_url.clone())
        else {
            unknown.push(format!(
                "{name}: no Prometheus URL (spec.prometheus.url or --prometheus-url)"
            ));
            continue;
        };
        let holds = match page_burn_conditions(slo) {
            Ok(conditions) => any_holds(&url, &conditions).await,
            Err(error) => Err(error.message()),
        };
        match holds {
            Ok(true) if burning.is_none_or(|b| b.percentage < boost.percentage) => {
                burning = Some(boost);
            }
            Ok(_) => {}
            Err(error) => unknown.push(format!("{name}: {error}")),
        }
    }
    let previous = pipeline.status.as_ref().and_then(|s| s.sampling.clone());
    let now = k8s_openapi::jiff::Timestamp::now();
    next_sampling(spec, base, previous, burning, &unknown, now)
}

/// The decision of [`decide_sampling`], given what Prometheus said.
fn next_sampling(
    spec: &crate::api::telemetry_pipeline::Sampling,
    base: SamplingStatus,
    previous: Option<SamplingStatus>,
    burning: Option<&SloBoost>,
    unknown: &[String],
    now: k8s_openapi::jiff::Timestamp,
) -> SamplingStatus {
    let unknown_note = if unknown.is_empty() {
        String::new()
    } else {
        format!("; burn unknown for {}", unknown.join(", "))
    };
    if let Some(boost) = burning {
        return SamplingStatus {
            percentage: boost.percentage,
            reason: format!(
                "SLO {} burns its error budget at the page level{unknown_note}",
                boost.slo_ref.name
            ),
            boosted_by: Some(boost.slo_ref.name.clone()),
            calm_since: None,
        };
    }
    let held = previous.filter(|p| p.boosted_by.is_some() && p.percentage > spec.percentage);
    let Some(held) = held else {
        return SamplingStatus {
            reason: format!(
                "spec.sampling.percentage: no SLO of spec.sampling.sloBoost burns at the page level{unknown_note}"
            ),
            ..base
        };
    };
    let by = held.boosted_by.clone().unwrap_or_default();
    if !unknown.is_empty() {
        return SamplingStatus {
            reason: format!("SLO {by} burned; kept while the burn cannot be read{unknown_note}"),
            ..held
        };
    }
    let hold = spec
        .slo_boost
        .iter()
        .find(|b| b.slo_ref.name == by)
        .and_then(|b| b.hold_for.as_deref())
        .and_then(|h| crate::validate::parse_duration(h).ok())
        .unwrap_or(DEFAULT_HOLD);
    let calm_since = held
        .calm_since
        .as_deref()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .unwrap_or(now);
    let calm = now
        .duration_since(calm_since)
        .try_into()
        .unwrap_or(Duration::ZERO);
    if calm >= hold {
        return SamplingStatus {
            reason: format!(
                "spec.sampling.percentage: SLO {by} stopped burning {}s ago",
                calm.as_secs()
            ),
            ..base
        };
    }
    SamplingStatus {
        percentage: held.percentage,
        reason: format!(
            "SLO {by} stopped burning at {calm_since}; the boost holds until it has been calm for {}s",
            hold.as_secs()
        ),
        boosted_by: Some(by),
        calm_since: Some(calm_since.to_string()),
    }
}

/// `Validated` and `Ready` from the clusters' rollouts.
fn conditions(
    entries: &[PipelineClusterStatus],
    rollouts: &[Rollout],
) -> (
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
) {
    let describe = |pick: &dyn Fn(&Rollout) -> Option<String>| -> Vec<String> {
        entries
            .iter()
            .zip(rollouts)
            .filter_map(|(entry, rollout)| pick(rollout).map(|m| format!("{}: {m}", entry.cluster)))
            .collect()
    };
    let refused = describe(&|r| match r {
        Rollout::Refused(message) => Some(message.clone()),
        _ => None,
    });
    let validating = describe(&|r| (*r == Rollout::Validating).then(String::new));
    let unreachable = describe(&|r| match r {
        Rollout::Unreachable(message) => Some(message.clone()),
        _ => None,
    });
    let validated = if !refused.is_empty() {
        condition(
            VALIDATED,
            Some(false),
            VALIDATION_FAILED,
            format!(
                "the Collector refused the new configuration, the collectors keep the last good one: {}",
                refused.join("; ")
            ),
        )
    } else if !validating.is_empty() {
        condition(
            VALIDATED,
            None,
            VALIDATING,
            format!(
                "the Collector is validating the new configuration in {}",
                validating
                    .iter()
                    .map(|v| v.trim_end_matches(": "))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        condition(
            VALIDATED,
            Some(true),
            ACCEPTED,
            "the Collector accepted the configuration of every cluster it reached",
        )
    };
    let ready = if let Some(first) = unreachable.first() {
        condition(
            READY,
            Some(false),
            APPLY_FAILED,
            format!("not rolled out in {first}"),
        )
    } else if !refused.is_empty() {
        condition(
            READY,
            Some(false),
            VALIDATION_FAILED,
            "the collectors run the last good configuration, not the current spec (see Validated)",
        )
    } else if !validating.is_empty() {
        condition(
            READY,
            Some(false),
            VALIDATING,
            "waiting for the validation Jobs",
        )
    } else {
        condition(
            READY,
            Some(true),
            ROLLED_OUT,
            format!(
                "every cluster runs the configuration of this spec ({} clusters)",
                entries.len()
            ),
        )
    };
    (validated, ready)
}

/// An Event when a cluster's collectors switch, and when the Collector refuses a
/// configuration (once per configuration).
async fn announce(
    ctx: &Context,
    pipeline: &TelemetryPipeline,
    before: Option<&PipelineClusterStatus>,
    after: &PipelineClusterStatus,
    rollout: &Rollout,
) {
    let cluster = &after.cluster;
    if let Some(active) = &after.active_config
        && before.and_then(|b| b.active_config.as_ref()) != Some(active)
    {
        ctx.publish(
            pipeline,
            EventType::Normal,
            CONFIG_SWITCHED,
            format!("{cluster}: the collectors run ConfigMap {active}, validated by the Collector"),
        )
        .await;
    }
    if let Rollout::Refused(message) = rollout
        && (before.and_then(|b| b.candidate_config.as_ref()) != after.candidate_config.as_ref()
            || before.and_then(|b| b.message.as_ref()).is_none())
    {
        ctx.publish(
            pipeline,
            EventType::Warning,
            VALIDATION_FAILED,
            format!(
                "{cluster}: the Collector refused ConfigMap {}: {message}; the collectors keep {}",
                after.candidate_config.as_deref().unwrap_or_default(),
                after
                    .active_config
                    .as_deref()
                    .unwrap_or("nothing (none was ever valid)")
            ),
        )
        .await;
    }
}

/// One cluster: store the configuration, validate it, switch, prune.
async fn roll_out(
    ctx: &Context,
    pipeline: &TelemetryPipeline,
    member: &MemberCluster,
    config: &CollectorConfig,
    before: Option<&PipelineClusterStatus>,
) -> Result<(PipelineClusterStatus, Rollout), String> {
    let (client, server) = member_client(member, ctx).await.map_err(|f| f.message)?;
    let failed =
        |error: kube::Error| format!("API server {server}: {}", describe_kube_error(&error));
    let writer = Writer {
        client: client.clone(),
        manager: collector_name(pipeline),
        owner: member
            .spec
            .local
            .then(|| pipeline.controller_owner_ref(&()))
            .flatten(),
    };
    let namespace = pipeline.namespace().unwrap_or_default();
    let candidate = config_name(pipeline, config);
    writer
        .apply(config_map(pipeline, config, &candidate))
        .await
        .map_err(failed)?;
    let running = running_config(&client, pipeline, before)
        .await
        .map_err(failed)?;
    let mut entry = PipelineClusterStatus {
        cluster: config.cluster.clone(),
        active_config: running.clone(),
        candidate_config: None,
        message: None,
    };
    let rollout = if running.as_deref() == Some(candidate.as_str()) {
        // Already switched: keep the objects as rendered (a no-op when they are).
        switch(&writer, pipeline, config, &candidate)
            .await
            .map_err(failed)?;
        Rollout::Running
    } else {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        let job = match jobs.get_opt(&candidate).await.map_err(failed)? {
            Some(job) => job,
            None => {
                writer
                    .apply(validation_job(pipeline, &candidate))
                    .await
                    .map_err(failed)?;
                jobs.get(&candidate).await.map_err(failed)?
            }
        };
        match job_outcome(&job) {
            Some(Ok(())) => {
                switch(&writer, pipeline, config, &candidate)
                    .await
                    .map_err(failed)?;
                entry.active_config = Some(candidate.clone());
                Rollout::Running
            }
            Some(Err(reason)) => {
                let message = termination_message(&client, &namespace, &candidate)
                    .await
                    .unwrap_or(reason);
                entry.candidate_config = Some(candidate.clone());
                entry.message = Some(message.clone());
                Rollout::Refused(message)
            }
            None => {
                entry.candidate_config = Some(candidate.clone());
                Rollout::Validating
            }
        }
    };
    prune(
        &client,
        pipeline,
        &[entry.active_config.as_deref(), Some(candidate.as_str())],
        HISTORY,
    )
    .await
    .map_err(failed)?;
    Ok((entry, rollout))
}

/// Writes objects into one cluster under the pipeline's own field manager; in the local
/// cluster, namespaced objects are owned by the pipeline and go with it.
struct Writer {
    client: Client,
    manager: String,
    owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
}

impl Writer {
    async fn apply(&self, mut object: Value) -> Result<(), kube::Error> {
        if let Some(owner) = &self.owner
            && object
                .pointer("/metadata/namespace")
                .is_some_and(|n| !n.is_null())
        {
            object["metadata"]["ownerReferences"] = serde_json::json!([owner]);
        }
        apply_hashed(&self.client, &self.manager, object)
            .await
            .map(|_| ())
    }
}

/// The ConfigMap the collectors run: from the Deployment's or DaemonSet's pod template,
/// or, for sidecars (whose pods the webhook writes), the last one in status.
async fn running_config(
    client: &Client,
    pipeline: &TelemetryPipeline,
    before: Option<&PipelineClusterStatus>,
) -> Result<Option<String>, kube::Error> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = collector_name(pipeline);
    let template = match pipeline.spec.mode {
        CollectorMode::Sidecar => {
            return Ok(before.and_then(|b| b.active_config.clone()));
        }
        CollectorMode::Gateway => Api::<Deployment>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await?
            .and_then(|d| d.spec)
            .map(|s| s.template),
        CollectorMode::Agent => Api::<DaemonSet>::namespaced(client.clone(), &namespace)
            .get_opt(&name)
            .await?
            .and_then(|d| d.spec)
            .map(|s| s.template),
    };
    Ok(template
        .and_then(|t| t.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(CONFIG_ANNOTATION).cloned()))
}

/// Points the collectors at `config_map`, and removes the workload of another mode.
async fn switch(
    writer: &Writer,
    pipeline: &TelemetryPipeline,
    config: &CollectorConfig,
    config_map: &str,
) -> Result<(), kube::Error> {
    for object in collector_objects(pipeline, config, config_map) {
        writer.apply(object).await?;
    }
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = collector_name(pipeline);
    let client = &writer.client;
    let mode = pipeline.spec.mode;
    if mode != CollectorMode::Gateway {
        delete_if_present(
            &Api::<Deployment>::namespaced(client.clone(), &namespace),
            &name,
        )
        .await?;
        delete_if_present(
            &Api::<Service>::namespaced(client.clone(), &namespace),
            &name,
        )
        .await?;
    }
    if mode != CollectorMode::Agent {
        delete_if_present(
            &Api::<DaemonSet>::namespaced(client.clone(), &namespace),
            &name,
        )
        .await?;
    }
    Ok(())
}

/// `Some(Ok)` when the Job succeeded, `Some(Err(reason))` when it failed, `None` while it
/// runs.
fn job_outcome(job: &Job) -> Option<Result<(), String>> {
    let status = job.status.as_ref()?;
    for condition in status.conditions.iter().flatten() {
        if condition.status != "True" {
            continue;
        }
        match condition.type_.as_str() {
            "Complete" => return Some(Ok(())),
            "Failed" => {
                return Some(Err(condition
                    .message
                    .clone()
                    .unwrap_or_else(|| "the validation Job failed".to_owned())));
            }
            _ => {}
        }
    }
    None
}

/// What the validation container said when it stopped: the Collector's error, kept short.
async fn termination_message(client: &Client, namespace: &str, job: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .ok()?;
    list.items.iter().find_map(|pod| {
        pod.status
            .as_ref()?
            .container_statuses
            .iter()
            .flatten()
            .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
            .map(|m| shorten(m.trim()))
    })
}

/// At most 1000 characters, from the end (where the Collector puts its error).
fn shorten(message: &str) -> String {
    const MAX: usize = 1000;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut start = message.len() - MAX;
    while !message.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &message[start..])
}

/// The pipeline is being deleted: remove what it wrote in every cluster of its spec or
/// status, then let it go.
async fn finalize(
    pipeline: &TelemetryPipeline,
    ctx: &Context,
    api: &Api<TelemetryPipeline>,
) -> Result<Action, Error> {
    let inventory = ctx.stores.references();
    let written = pipeline
        .status
        .iter()
        .flat_map(|s| &s.clusters)
        .map(|c| &c.cluster);
    let clusters = finalizer::spec_and_status_clusters(&pipeline.spec.clusters, written);
    finalizer::release_after_clean_up(pipeline, api, FINALIZER, &inventory, &clusters, |member| {
        clean_up(ctx, pipeline, member)
    })
    .await
}

/// Removes from one cluster everything a pipeline writes there.
async fn clean_up(
    ctx: &Context,
    pipeline: &TelemetryPipeline,
    member: &MemberCluster,
) -> Result<(), String> {
    let (client, server) = member_client(member, ctx).await.map_err(|f| f.message)?;
    let failed =
        |error: kube::Error| format!("API server {server}: {}", describe_kube_error(&error));
    let namespace = pipeline.namespace().unwrap_or_default();
    let name = collector_name(pipeline);
    delete_if_present(
        &Api::<Deployment>::namespaced(client.clone(), &namespace),
        &name,
    )
    .await
    .map_err(failed)?;
    delete_if_present(
        &Api::<DaemonSet>::namespaced(client.clone(), &namespace),
        &name,
    )
    .await
    .map_err(failed)?;
    delete_if_present(
        &Api::<Service>::namespaced(client.clone(), &namespace),
        &name,
    )
    .await
    .map_err(failed)?;
    delete_if_present(
        &Api::<ServiceAccount>::namespaced(client.clone(), &namespace),
        &name,
    )
    .await
    .map_err(failed)?;
    let cluster_wide = cluster_role_name(pipeline);
    delete_if_present(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        &cluster_wide,
    )
    .await
    .map_err(failed)?;
    delete_if_present(&Api::<ClusterRole>::all(client.clone()), &cluster_wide)
        .await
        .map_err(failed)?;
    prune(&client, pipeline, &[], 0).await.map_err(failed)
}

/// Deletes the pipeline's configuration ConfigMaps (and their validation Jobs) beyond
/// `keep` and the `history` newest.
async fn prune(
    client: &Client,
    pipeline: &TelemetryPipeline,
    keep: &[Option<&str>],
    history: usize,
) -> Result<(), kube::Error> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let selector = format!(
        "{COMPONENT_LABEL}=collector-config,{PIPELINE_LABEL}={}",
        pipeline.name_any()
    );
    let mut list = config_maps
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items;
    list.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    for old in list
        .iter()
        .map(ResourceExt::name_any)
        .filter(|name| !keep.contains(&Some(name.as_str())))
        .skip(history)
    {
        delete_if_present(&jobs, &old).await?;
        delete_if_present(&config_maps, &old).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(percentage: f64, boosted_by: Option<&str>, reason: &str) -> SamplingStatus {
        SamplingStatus {
            percentage,
            reason: reason.into(),
            boosted_by: boosted_by.map(Into::into),
            calm_since: None,
        }
    }

    #[test]
    fn a_moved_percentage_is_announced_once_either_way() {
        let base = sampling(10.0, None, "the base percentage");
        let boosted = sampling(
            100.0,
            Some("checkout"),
            "SLO shop/checkout burns its budget",
        );
        assert_eq!(sampling_event(None, &base), None, "the first status");
        assert_eq!(sampling_event(Some(&base), &base), None);
        assert_eq!(
            sampling_event(Some(&base), &boosted),
            Some((
                "SamplingBoosted",
                "trace sampling raised from 10% to 100%: SLO shop/checkout burns its budget".into()
            ))
        );
        assert_eq!(
            sampling_event(Some(&boosted), &base),
            Some((
                "SamplingRestored",
                "trace sampling returned from 100% to 10%: the base percentage".into()
            ))
        );
    }

    #[test]
    fn a_running_validation_is_looked_at_soon_and_burns_at_the_status_interval() {
        let interval = Duration::from_secs(15);
        let running = [Rollout::Running, Rollout::Refused("bad".into())];
        let validating = [Rollout::Running, Rollout::Validating];
        assert_eq!(requeue(&validating, true, interval), VALIDATING_RECHECK);
        assert_eq!(requeue(&running, true, interval), interval);
        assert_eq!(requeue(&running, true, Duration::from_secs(600)), RESYNC);
        assert_eq!(requeue(&running, false, interval), RESYNC);
        assert_eq!(requeue(&[], false, interval), RESYNC);
    }

    #[test]
    fn a_boost_holds_until_the_burn_has_stopped_for_hold_for() {
        let spec: crate::api::telemetry_pipeline::Sampling =
            serde_json::from_value(serde_json::json!({
                "percentage": 10,
                "sloBoost": [{"sloRef": {"name": "checkout"}, "percentage": 80, "holdFor": "60s"}],
            }))
            .expect("sampling");
        let base = || SamplingStatus {
            percentage: 10.0,
            reason: "spec.sampling.percentage".into(),
            ..SamplingStatus::default()
        };
        let t =
            |s: i64| k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).expect("time");
        let boost = &spec.slo_boost[0];
        let burning = next_sampling(&spec, base(), None, Some(boost), &[], t(0));
        assert_eq!(
            (burning.percentage, burning.calm_since.as_deref()),
            (80.0, None)
        );
        let calm = next_sampling(&spec, base(), Some(burning.clone()), None, &[], t(5));
        assert_eq!(calm.percentage, 80.0, "{}", calm.reason);
        assert!(calm.calm_since.is_some());
        let still = next_sampling(&spec, base(), Some(calm.clone()), None, &[], t(64));
        assert_eq!(still.percentage, 80.0, "{}", still.reason);
        // A burn in between starts the hold again.
        let again = next_sampling(&spec, base(), Some(still.clone()), Some(boost), &[], t(30));
        assert_eq!(again.calm_since, None);
        let over = next_sampling(&spec, base(), Some(calm), None, &[], t(66));
        assert_eq!((over.percentage, over.boosted_by), (10.0, None));
        // Prometheus unreadable: the boost stays.
        let kept = next_sampling(
            &spec,
            base(),
            Some(burning),
            None,
            &["checkout: down".into()],
            t(900),
        );
        assert_eq!(kept.percentage, 80.0);
    }

    #[test]
    fn messages_keep_their_end() {
        let long = format!("{}Error: unknown type: \"otlp_grcp\"", "x".repeat(2000));
        let short = shorten(&long);
        assert!(short.ends_with("unknown type: \"otlp_grcp\""));
        assert!(short.chars().count() <= 1001);
        assert_eq!(shorten("fine"), "fine");
    }

    #[test]
    fn a_refusal_outranks_validation_in_progress() {
        let entry = |cluster: &str| PipelineClusterStatus {
            cluster: cluster.into(),
            ..PipelineClusterStatus::default()
        };
        let (validated, ready) = conditions(
            &[entry("aws"), entry("vmware")],
            &[
                Rollout::Validating,
                Rollout::Refused("unknown type: \"x\"".into()),
            ],
        );
        assert_eq!(validated.status, "False");
        assert!(validated.message.contains("vmware: unknown type"));
        assert_eq!(ready.reason, "ValidationFailed");
        let (validated, ready) = conditions(&[entry("aws")], &[Rollout::Running]);
        assert_eq!(
            (validated.status.as_str(), ready.status.as_str()),
            ("True", "True")
        );
    }
}
