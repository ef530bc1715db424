//! `SupervisedWorkload`: crash capture, a crash-loop circuit breaker, isolation and
//! validated config hot-reload for an existing workload.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectRef, conditions_schema, impl_has_conditions};

/// Protection for one workload of the namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "SupervisedWorkload",
    namespaced,
    status = "SupervisedWorkloadStatus",
    shortname = "sw",
    category = "vigil",
    doc = "Protection for a Deployment, StatefulSet, DaemonSet or CronJob: hardened pods, crash snapshots, a crash-loop circuit breaker and validated config reload with rollback.",
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.name"),
    printcolumn(
        name = "Kind",
        type_ = "string",
        json_path = ".spec.target.kind",
        priority = 1
    ),
    printcolumn(name = "Breaker", type_ = "string", json_path = ".status.breaker"),
    printcolumn(
        name = "Crashes",
        type_ = "integer",
        json_path = ".status.crashesInWindow"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[serde(rename_all = "camelCase")]
pub struct SupervisedWorkloadSpec {
    /// The workload to protect, in the same namespace. Cannot change after creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("target is immutable: create a new SupervisedWorkload for another workload"))]
    pub target: WorkloadTarget,
    /// Pod isolation applied by the admission webhook.
    #[serde(default)]
    pub isolation: Isolation,
    /// What is kept when a container crashes.
    #[serde(default)]
    pub crash_capture: CrashCapture,
    /// Stop a crash loop instead of restarting forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Validated hot-reload of the workload's ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigReload>,
    /// Telemetry wiring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<WorkloadTelemetry>,
}

/// A workload in the namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTarget {
    /// Kind of the workload.
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 253").message("target.name must be 1 to 253 characters"))]
    pub name: String,
}

/// Supported workload kinds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 CronJob.
    CronJob,
}

/// Pod isolation profile.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Isolation {
    /// `restricted` (non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp),
    /// `baseline`, or `none`.
    #[serde(default)]
    pub profile: IsolationProfile,
    /// Mount the root filesystem read-only (`restricted` only).
    #[serde(default)]
    pub read_only_root_filesystem: bool,
}

/// Isolation profiles, after the Pod Security Standards.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IsolationProfile {
    /// The Pod Security Standard `restricted`.
    #[default]
    Restricted,
    /// The Pod Security Standard `baseline`.
    Baseline,
    /// No changes to pods.
    None,
}

/// Crash snapshot policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrashCapture {
    /// Last log lines kept per crash (1 to 1000).
    #[serde(default = "default_log_tail")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("logTailLines must be between 1 and 1000"))]
    pub log_tail_lines: i32,
    /// Number of snapshots kept per workload (1 to 100); the oldest go first.
    #[serde(default = "default_retain")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("retain must be between 1 and 100"))]
    pub retain: i32,
    /// Upper bound of one snapshot in bytes (1 KiB to 512 KiB, it is stored in a ConfigMap).
    #[serde(default = "default_max_snapshot_bytes")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 524288").message("maxSnapshotBytes must be between 1024 and 524288"))]
    pub max_snapshot_bytes: i32,
}

impl Default for CrashCapture {
    fn default() -> Self {
        Self {
            log_tail_lines: default_log_tail(),
            retain: default_retain(),
            max_snapshot_bytes: default_max_snapshot_bytes(),
        }
    }
}

fn default_log_tail() -> i32 {
    100
}
fn default_retain() -> i32 {
    10
}
fn default_max_snapshot_bytes() -> i32 {
    65536
}

/// The crash-loop circuit breaker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.maxCooldown) || duration(self.maxCooldown) >= duration(self.cooldown)").message("maxCooldown must not be shorter than cooldown").field_path(".maxCooldown"))]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// Crashes within `window` that open the breaker (at least 1).
    #[x_kube(validation = Rule::new("self >= 1").message("maxCrashes must be at least 1"))]
    pub max_crashes: i32,
    /// Sliding window over which crashes are counted (Go duration).
    #[serde(default = "default_breaker_window")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')").message("window must be a positive duration"))]
    pub window: String,
    /// What an open breaker does.
    #[serde(default)]
    pub action: BreakerAction,
    /// How long the breaker stays open before one retry (Go duration).
    #[serde(default = "default_cooldown")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')").message("cooldown must be a positive duration"))]
    pub cooldown: String,
    /// Upper bound of the cooldown, which doubles after each failed retry (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub max_cooldown: Option<String>,
}

fn default_breaker_window() -> String {
    "10m".to_owned()
}
fn default_cooldown() -> String {
    "5m".to_owned()
}

/// Action of an open breaker.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BreakerAction {
    /// Scale the Deployment or StatefulSet to zero.
    #[default]
    ScaleToZero,
    /// Suspend the CronJob.
    Suspend,
    /// Only report (condition, Event, metric).
    AlertOnly,
}

/// Validated hot-reload of a ConfigMap.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReload {
    /// The ConfigMap the workload reads its configuration from.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 253").message("configMapName must be 1 to 253 characters"))]
    pub config_map_name: String,
    /// JSON Schema (draft 2020-12) every key of the ConfigMap must satisfy before it is switched to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub schema: Option<serde_json::Value>,
    /// Roll back to the previous config when the workload crashes within this long after a switch.
    #[serde(default = "default_rollback_within")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')").message("rollbackWithin must be a positive duration"))]
    pub rollback_within: String,
}

fn default_rollback_within() -> String {
    "5m".to_owned()
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "JSON Schema (draft 2020-12) every key of the ConfigMap must satisfy before it is switched to.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Telemetry for the workload.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTelemetry {
    /// The `TelemetryPipeline` (same namespace) whose sidecar is injected.
    pub pipeline_ref: LocalObjectRef,
}

/// Observed state of a supervised workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupervisedWorkloadStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and the state of each protection.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// State of the circuit breaker: `Closed`, `Open` or `HalfOpen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// When the breaker entered its state (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_since: Option<String>,
    /// The cooldown of the breaker's current or next opening, in seconds; it doubles after
    /// each crash on probation, up to `maxCooldown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_cooldown_seconds: Option<i64>,
    /// The last crash, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_crash: Option<String>,
    /// Crashes within the breaker's window (10 minutes without a breaker).
    #[serde(default)]
    pub crashes_in_window: i32,
    /// Crashes recorded since the object was created.
    #[serde(default)]
    pub crashes_total: i64,
    /// The ConfigMap holding the crash snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots_config_map: Option<String>,
    /// When the recent crashes happened (RFC 3339), for the window; at most 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub recent_crashes: Vec<String>,
    /// The config revision the workload runs: an immutable ConfigMap named by its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_revision: Option<String>,
    /// When the workload was last switched to a config revision (RFC 3339); a crash within
    /// `rollbackWithin` after it switches back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_switched_at: Option<String>,
    /// The last config revisions, newest first; at most 5.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub config_revisions: Vec<ConfigRevision>,
    /// Crashes already recorded, as `<pod UID>/<container>/<restart count>`, so that a
    /// termination seen again after an operator restart is not counted twice; at most 200.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    pub seen_crashes: Vec<String>,
    /// The manual breaker override in force (`vigil breaker open|close`, the annotation
    /// `vigil.io/breaker-override`), with the time the controller applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_override: Option<BreakerOverride>,
    /// The last config rollback request (`vigil config rollback`, the annotation
    /// `vigil.io/config-rollback`) and how it was answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_rollback: Option<ConfigRollback>,
}

/// The annotation `vigil breaker open|close` sets: a [`BreakerOverride`] as JSON.
pub const BREAKER_OVERRIDE_ANNOTATION: &str = "vigil.io/breaker-override";
/// The annotation `vigil config rollback` sets: a [`ConfigRollback`] as JSON.
pub const CONFIG_ROLLBACK_ANNOTATION: &str = "vigil.io/config-rollback";

/// A manual override of the breaker. `Open` holds the breaker open (the action runs) until
/// the override is cleared or replaced; `Close` closes it now (the workload is restored)
/// and forgets the crashes before it, after which the breaker counts again as usual.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BreakerOverride {
    /// `Open` or `Close`.
    pub action: OverrideAction,
    /// Why, in the words of who asked; shown in the condition and the Event.
    pub reason: String,
    /// When it was asked for (RFC 3339); a new time is a new request.
    pub requested_at: String,
    /// When the controller applied it (RFC 3339); set in status only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<String>,
}

/// What a manual breaker override does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum OverrideAction {
    /// Open the breaker and hold it open.
    Open,
    /// Close the breaker now.
    Close,
}

/// A request to switch back to a kept config revision, through the same validated switch.
/// The revision it leaves is marked `RolledBack` and not used again until the source
/// ConfigMap changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigRollback {
    /// The revision (ConfigMap name) to run, one of `status.configRevisions`.
    pub revision: String,
    /// Why, in the words of who asked.
    pub reason: String,
    /// When it was asked for (RFC 3339); a new time is a new request.
    pub requested_at: String,
    /// How the controller answered: `Switched`, `AlreadyActive` or `Refused: <why>`; set in
    /// status only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl BreakerOverride {
    /// Reads the annotation of `object`: `None` when absent, an error naming it when the
    /// value is not a well-formed request.
    pub fn requested(object: &SupervisedWorkload) -> Result<Option<Self>, String> {
        request(object, BREAKER_OVERRIDE_ANNOTATION)
    }
}

impl ConfigRollback {
    /// Reads the annotation of `object`, as [`BreakerOverride::requested`] does.
    pub fn requested(object: &SupervisedWorkload) -> Result<Option<Self>, String> {
        request(object, CONFIG_ROLLBACK_ANNOTATION)
    }
}

fn request<T: serde::de::DeserializeOwned>(
    object: &SupervisedWorkload,
    key: &str,
) -> Result<Option<T>, String> {
    let Some(text) = object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
    else {
        return Ok(None);
    };
    serde_json::from_str(text).map(Some).map_err(|e| {
        format!("is not a request Vigil reads ({e}); `vigil breaker` and `vigil config rollback` write it")
    })
}

/// One revision of a workload's config.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRevision {
    /// The immutable ConfigMap holding it.
    pub name: String,
    /// Hash of its content.
    pub hash: String,
    /// When the workload was switched to it (RFC 3339).
    pub switched_at: String,
    /// `Active`, `Superseded` (a later one replaced it) or `RolledBack` (its pods crashed
    /// within `rollbackWithin`; it is not used again until the content changes).
    pub state: String,
    /// What changed from the revision before it, in one line.
    pub change: String,
}

impl_has_conditions!(SupervisedWorkloadStatus);
