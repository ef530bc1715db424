//! `TelemetryPipeline`: OpenTelemetry Collector configuration per cloud.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectRef, SecretRef, conditions_schema, impl_has_conditions};

/// Telemetry collection for a set of clusters, with backends per provider.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "TelemetryPipeline",
    namespaced,
    status = "TelemetryPipelineStatus",
    shortname = "telp",
    category = "vigil",
    doc = "Telemetry for a set of member clusters: Vigil renders an OpenTelemetry Collector configuration for each cluster's provider, validates it, and rolls it out.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(
        name = "Sampling",
        type_ = "number",
        json_path = ".status.sampling.percentage"
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
pub struct TelemetryPipelineSpec {
    /// Names of the `MemberCluster`s the pipeline runs in.
    #[schemars(length(max = 32), inner(length(max = 63)))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("clusters must name at least one MemberCluster"))]
    pub clusters: Vec<String>,
    /// `gateway` (a Deployment), `agent` (a DaemonSet) or `sidecar` (injected into pods).
    #[serde(default)]
    pub mode: CollectorMode,
    /// Which signals are collected.
    #[serde(default)]
    pub signals: Signals,
    /// Backends per provider; a cluster uses the block of its provider.
    #[serde(default)]
    pub backends: Backends,
    /// Trace sampling.
    #[serde(default)]
    pub sampling: Sampling,
    /// Memory limit of the collector in MiB (drives `memory_limiter`), at least 64.
    #[serde(default = "default_memory_limit", rename = "memoryLimitMiB")]
    #[x_kube(validation = Rule::new("self >= 64 && self <= 65536").message("memoryLimitMiB must be between 64 and 65536"))]
    pub memory_limit_mib: i32,
    /// Collector image, for the collectors and the validation Job; it must have every
    /// component of the generated configuration. Default: the contrib image of the release
    /// Vigil generates for (`otel/opentelemetry-collector-contrib:0.161.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Collector replicas in `gateway` mode (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("replicas must be between 1 and 100"))]
    pub replicas: Option<i32>,
}

fn default_memory_limit() -> i32 {
    512
}

/// Collector deployment mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CollectorMode {
    /// A central collector Deployment.
    #[default]
    Gateway,
    /// One collector per node.
    Agent,
    /// A collector container next to each selected pod.
    Sidecar,
}

/// Signals to collect.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.traces || self.metrics || self.logs").message("signals must enable at least one of traces, metrics or logs"))]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    /// Collect traces.
    #[serde(default = "yes")]
    pub traces: bool,
    /// Collect metrics.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// Collect logs.
    #[serde(default)]
    pub logs: bool,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            traces: true,
            metrics: true,
            logs: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// Backends by provider.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backends {
    /// For clusters on AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsBackends>,
    /// For clusters on Alibaba Cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliyun: Option<AliyunBackends>,
    /// For clusters on VMware on-prem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmware: Option<VmwareBackends>,
}

/// AWS backends: X-Ray, CloudWatch EMF, Amazon Managed Prometheus.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsBackends {
    /// AWS region of the endpoints.
    pub region: String,
    /// Send traces to X-Ray.
    #[serde(default)]
    pub xray: bool,
    /// CloudWatch log group for EMF metrics; EMF is off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emf_log_group: Option<String>,
    /// Amazon Managed Prometheus remote-write URL (signed with SigV4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amp_remote_write_url: Option<String>,
    /// Secret with `access-key-id` and `secret-access-key`; the pod's identity when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// Alibaba Cloud backends: Log Service (SLS).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AliyunBackends {
    /// SLS endpoint, e.g. `cn-hangzhou.log.aliyuncs.com`.
    pub endpoint: String,
    /// SLS project.
    pub project: String,
    /// SLS logstore for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logstore: Option<String>,
    /// Secret with `access-key-id` and `access-key-secret`.
    pub credentials_secret_ref: SecretRef,
}

/// On-prem backends.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VmwareBackends {
    /// OTLP/gRPC endpoint of Jaeger or Tempo for traces: `host:port` (TLS), or
    /// `http://host:port` for plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traces_otlp_endpoint: Option<String>,
    /// Prometheus remote-write URL for metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_remote_write_url: Option<String>,
    /// Loki base URL for logs (OTLP HTTP on `/otlp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loki_url: Option<String>,
    /// OpenSearch URL for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opensearch_url: Option<String>,
}

/// Trace sampling policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sampling {
    /// Percentage of ordinary traces kept (0 to 100).
    #[serde(default = "default_percentage")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 100.0").message("sampling.percentage must be between 0 and 100"))]
    pub percentage: f64,
    /// Keep every trace that has an error.
    #[serde(default = "yes")]
    pub keep_errors: bool,
    /// Keep every trace slower than this many milliseconds; off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0").message("latencyThresholdMs must be greater than 0"))]
    pub latency_threshold_ms: Option<i64>,
    /// Raise the percentage while an SLO burns its error budget.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub slo_boost: Vec<SloBoost>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            percentage: default_percentage(),
            keep_errors: true,
            latency_threshold_ms: None,
            slo_boost: Vec::new(),
        }
    }
}

fn default_percentage() -> f64 {
    10.0
}

/// A sampling boost tied to an SLO.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloBoost {
    /// The `ServiceLevelObjective` (same namespace) whose burn alerts raise sampling.
    pub slo_ref: LocalObjectRef,
    /// Percentage kept while the SLO burns.
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 100.0").message("sloBoost percentage must be greater than 0 and at most 100"))]
    pub percentage: f64,
    /// How long the burn must have stopped before sampling returns to the base percentage
    /// (a Go duration; default `10m`), so that a burn that flickers does not flip sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub hold_for: Option<String>,
}

/// The sampling in force and why.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SamplingStatus {
    /// Percentage of ordinary traces kept now.
    pub percentage: f64,
    /// Why: the base percentage, or the SLO whose burn raised it.
    pub reason: String,
    /// The SLO whose burn holds the boost, while sampling is boosted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boosted_by: Option<String>,
    /// When the burn of `boostedBy` was first seen stopped (RFC 3339); sampling returns
    /// `holdFor` later if it stays stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calm_since: Option<String>,
}

/// Observed state of a pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryPipelineStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and per-cluster rollout conditions.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The rollout in each cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<PipelineClusterStatus>,
    /// Trace sampling in force, raised while an SLO of `spec.sampling.sloBoost` burns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingStatus>,
}

impl_has_conditions!(TelemetryPipelineStatus);

/// The condition types of a TelemetryPipeline's status besides `Ready`, and the reasons its
/// controller writes (in conditions and Events). `docs/telemetry.md` explains each; a test
/// holds it to that.
pub mod vocabulary {
    /// Condition: whether the Collector accepted the configuration of this spec.
    pub const VALIDATED: &str = "Validated";

    /// `Ready`: every cluster runs the configuration of this spec.
    pub const ROLLED_OUT: &str = "RolledOut";
    /// A validation Job has not finished.
    pub const VALIDATING: &str = "Validating";
    /// `Validated`: the Collector accepted it.
    pub const ACCEPTED: &str = "Validated";
    /// The Collector refused it; the collectors keep the last good one (also a Warning).
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
    /// A cluster could not be reached or written.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Event: a cluster's collectors switched to a validated configuration.
    pub const CONFIG_SWITCHED: &str = "ConfigSwitched";
    /// Event: a burning SLO raised the sampling.
    pub const SAMPLING_BOOSTED: &str = "SamplingBoosted";
    /// Event: the sampling returned to its base.
    pub const SAMPLING_RESTORED: &str = "SamplingRestored";

    /// Every condition type and reason above.
    pub const ALL: &[&str] = &[
        VALIDATED,
        ROLLED_OUT,
        VALIDATING,
        ACCEPTED,
        VALIDATION_FAILED,
        APPLY_FAILED,
        CONFIG_SWITCHED,
        SAMPLING_BOOSTED,
        SAMPLING_RESTORED,
    ];
}

/// Where one cluster's Collector configuration stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineClusterStatus {
    /// The `MemberCluster`.
    pub cluster: String,
    /// The ConfigMap (named by its content hash) the collectors run: the last one that
    /// passed validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_config: Option<String>,
    /// The ConfigMap of the current spec, while it is validated or after it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_config: Option<String>,
    /// What the Collector said about a failed candidate, or why the cluster is not reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
