//! `ServiceLevelObjective`: an SLO that becomes Prometheus recording rules and
//! multiwindow multi-burn-rate alerts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{conditions_schema, impl_has_conditions};

/// A service level objective on one SLI over a rolling window.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "ServiceLevelObjective",
    namespaced,
    status = "ServiceLevelObjectiveStatus",
    shortname = "slo",
    category = "vigil",
    doc = "A service level objective: Vigil generates Prometheus recording rules and multiwindow multi-burn-rate alerts for it and reports the error budget.",
    printcolumn(name = "Service", type_ = "string", json_path = ".spec.service"),
    printcolumn(name = "Objective", type_ = "number", json_path = ".spec.objective"),
    printcolumn(name = "Window", type_ = "string", json_path = ".spec.window"),
    printcolumn(
        name = "Budget",
        type_ = "string",
        json_path = ".status.errorBudgetRemaining"
    ),
    printcolumn(
        name = "Burn1h",
        type_ = "string",
        json_path = ".status.burnRate",
        priority = 1
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
pub struct ServiceLevelObjectiveSpec {
    /// Name of the service the objective is about; becomes the `service` label of every rule.
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 128").message("service must be 1 to 128 characters"))]
    pub service: String,
    /// Target, in percent of good events: strictly between 0 and 100, for example 99.9.
    #[x_kube(validation = Rule::new("self > 0.0 && self < 100.0").message("objective must be a percentage strictly between 0 and 100"))]
    pub objective: f64,
    /// Rolling window of the objective: `Nd` (days) or `Nh` (hours), for example `30d`, `28d`, `7d`.
    #[serde(default = "default_window")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.matches('^[1-9][0-9]{0,2}[dh]$')").message("window must be a number of days or hours such as 30d or 12h"))]
    pub window: String,
    /// The service level indicator: exactly one of `ratio`, `latency` or `boolGauge`.
    pub sli: Sli,
    /// Labels of the SLI series that split the objective: one error budget, and one set of
    /// alerts, per value set (for example `[route]`). Empty means one budget for the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(max = 128)))]
    #[x_kube(validation = Rule::new("self.all(l, l.matches('^[a-zA-Z_][a-zA-Z0-9_]*$') && !(l in ['vigil_slo', 'service', 'severity', 'long', 'short']))").message("grouping must list Prometheus label names other than vigil_slo, service, severity, long and short"))]
    pub grouping: Vec<String>,
    /// Alert tiers; both are on by default.
    #[serde(default)]
    pub alerting: Alerting,
    /// Where the generated rules go.
    #[serde(default)]
    pub output: RuleOutput,
    /// Which ruler evaluates the rules; `thanos` adds the partial-response strategy.
    #[serde(default)]
    pub ruler: Ruler,
    /// Prometheus to read the current error budget from, for the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSource>,
}

fn default_window() -> String {
    "30d".to_owned()
}

/// The service level indicator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("[has(self.ratio), has(self.latency), has(self.boolGauge)].filter(x, x).size() == 1").message("sli must set exactly one of ratio, latency or boolGauge"))]
#[serde(rename_all = "camelCase")]
pub struct Sli {
    /// Ratio of bad events to all events, from two counter selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<RatioSli>,
    /// Requests slower than a threshold, from a histogram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencySli>,
    /// A gauge that is 1 when the service is good and 0 when bad.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bool_gauge: Option<BoolGaugeSli>,
}

/// Errors over total, from counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RatioSli {
    /// PromQL series selector of the counter of bad events, e.g. `http_requests_total{job="api",code=~"5.."}`.
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("errors must be a PromQL selector"))]
    pub errors: String,
    /// PromQL series selector of the counter of all events, e.g. `http_requests_total{job="api"}`.
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("total must be a PromQL selector"))]
    pub total: String,
}

/// Requests slower than a threshold, from a histogram.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencySli {
    /// Histogram metric selector without the `_bucket` suffix, e.g. `http_request_duration_seconds{job="api"}`.
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("metric must be a PromQL selector"))]
    pub metric: String,
    /// Requests slower than this many seconds are bad. For classic histograms it must be a bucket boundary.
    #[x_kube(validation = Rule::new("self > 0.0").message("thresholdSeconds must be greater than 0"))]
    pub threshold_seconds: f64,
    /// True when the metric is a native histogram (uses `histogram_fraction`).
    #[serde(default)]
    pub native: bool,
}

/// A 0/1 gauge of good service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoolGaugeSli {
    /// PromQL query returning 1 while the service is good and 0 while it is bad.
    #[schemars(length(max = 4096))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("query must be a PromQL expression"))]
    pub query: String,
}

/// The two alert tiers of the multiwindow multi-burn-rate policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alerting {
    /// Fast burn: a person is paged.
    #[serde(default)]
    pub page: AlertTier,
    /// Slow burn: a ticket is opened.
    #[serde(default)]
    pub ticket: AlertTier,
    /// Also alert when the SLI's series are absent for this long (Go duration); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absent_for: Option<String>,
}

/// One alert tier.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertTier {
    /// Generate no alert for this tier.
    #[serde(default)]
    pub disabled: bool,
    /// How long the condition must hold before the alert fires (Prometheus `for`, e.g. `2m`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h|d|w|y))+$')").message("for must be a Prometheus duration such as 2m or 1h30m"))]
    pub for_: Option<String>,
    /// Extra labels on the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on the alert (for example `runbook_url`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Where generated rules are written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleOutput {
    /// `PrometheusRule` (Prometheus Operator) or `ConfigMap` (a rule file for any Prometheus).
    #[serde(default)]
    pub kind: RuleOutputKind,
    /// Labels on the generated object, for rule selectors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Kind of the object holding generated rules.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RuleOutputKind {
    /// A `monitoring.coreos.com/v1` PrometheusRule.
    #[default]
    PrometheusRule,
    /// A ConfigMap with one rule file, `<name>.rules.yaml`.
    ConfigMap,
}

/// The component that evaluates the rules.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ruler {
    /// Prometheus itself.
    #[default]
    Prometheus,
    /// Thanos Ruler.
    Thanos,
}

/// A Prometheus to query for the status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusSource {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus.monitoring:9090`.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("isURL(self) && (self.startsWith('http://') || self.startsWith('https://'))").message("prometheus.url must be an http or https URL"))]
    pub url: String,
}

/// Observed state of an SLO.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceLevelObjectiveStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and the conditions of each step.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Error budget left over the window, in percent, as last read from Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget_remaining: Option<String>,
    /// Burn rate over the last hour (1 spends the budget exactly over the window), as last
    /// read from Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burn_rate: Option<String>,
}

impl_has_conditions!(ServiceLevelObjectiveStatus);

/// The condition types of an SLO's status besides `Ready`, and the reasons its controller
/// writes (in conditions and Events). `docs/slo.md` explains each; a test holds it to that.
pub mod vocabulary {
    /// Condition: the rules are applied (how many, where).
    pub const RULES_GENERATED: &str = "RulesGenerated";
    /// Condition: the error budget could be read from Prometheus.
    pub const BUDGET_KNOWN: &str = "BudgetKnown";

    /// `Ready`: the rules are applied.
    pub const RULES_APPLIED: &str = "RulesApplied";
    /// `RulesGenerated`: in a PrometheusRule.
    pub const IN_PROMETHEUS_RULE: &str = "PrometheusRule";
    /// `RulesGenerated`: in a ConfigMap rule file.
    pub const IN_CONFIG_MAP: &str = "ConfigMap";
    /// `BudgetKnown`: read from Prometheus.
    pub const QUERIED: &str = "Queried";
    /// `BudgetKnown`: Prometheus has no budget series for the SLO yet.
    pub const NO_DATA: &str = "NoData";
    /// `BudgetKnown`: no Prometheus to ask (neither `spec.prometheus.url` nor
    /// `--prometheus-url`).
    pub const NO_PROMETHEUS: &str = "NoPrometheus";
    /// `BudgetKnown`: the query failed.
    pub const PROMETHEUS_UNREACHABLE: &str = "PrometheusUnreachable";
    /// Event: the rules were applied for the first time.
    pub const RULES_GENERATED_EVENT: &str = RULES_GENERATED;

    /// Every condition type and reason above.
    pub const ALL: &[&str] = &[
        RULES_GENERATED,
        BUDGET_KNOWN,
        RULES_APPLIED,
        IN_PROMETHEUS_RULE,
        IN_CONFIG_MAP,
        QUERIED,
        NO_DATA,
        NO_PROMETHEUS,
        PROMETHEUS_UNREACHABLE,
    ];
}
