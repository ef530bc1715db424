//! Prometheus metrics of the operator, served on the admin port at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of per-controller metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller, by kind (`MemberCluster`, ...).
    pub controller: String,
}

/// Labels of reconcile errors.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The controller, by kind.
    pub controller: String,
    /// The error's reason, as in the condition and the Event.
    pub reason: String,
}

/// Labels of member cluster probes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// The `MemberCluster`.
    pub cluster: String,
    /// `api` or `dns`.
    pub probe: String,
    /// `success` or `failure`.
    pub result: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    /// The registry encoded at `/metrics`.
    pub registry: Registry,
    /// `vigil_reconcile_duration_seconds{controller}`.
    pub reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    /// `vigil_reconcile_errors_total{controller, reason}`.
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    /// `vigil_reconcile_panics_total{controller}`.
    pub reconcile_panics: Family<ControllerLabels, Counter>,
    /// `vigil_member_cluster_probe_duration_seconds{cluster, probe, result}`.
    pub probe_duration: Family<ProbeLabels, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vigil");
        let reconcile_duration =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let reconcile_errors = Family::default();
        let reconcile_panics = Family::default();
        let probe_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error, by controller and reason",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_panics",
            "Reconciles that panicked and were caught, by controller",
            reconcile_panics.clone(),
        );
        registry.register(
            "member_cluster_probe_duration_seconds",
            "Latency of member cluster probes, by cluster, probe and result",
            probe_duration.clone(),
        );
        Self {
            registry,
            reconcile_duration,
            reconcile_errors,
            reconcile_panics,
            probe_duration,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
