//! Prometheus metrics of the operator, served on the admin port at `/metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

/// Labels of per-certificate metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// Namespace of the `AcmeCertificate`.
    pub namespace: String,
    /// Name of the `AcmeCertificate`.
    pub name: String,
}

/// Labels of issuance outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuanceLabels {
    /// `success` or the failure reason.
    pub result: String,
}

/// Labels of workload crashes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrashLabels {
    /// Namespace of the `SupervisedWorkload`.
    pub namespace: String,
    /// The workload (the `SupervisedWorkload`'s target name).
    pub workload: String,
    /// The container that crashed.
    pub container: String,
    /// The kubelet's reason: `Error`, `OOMKilled`, ...
    pub reason: String,
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
    /// `vigil_certificate_expiration_timestamp_seconds{namespace, name}`.
    pub certificate_expiration: Family<CertificateLabels, Gauge<f64, AtomicU64>>,
    /// `vigil_certificate_issuances_total{result}`.
    pub issuances: Family<IssuanceLabels, Counter>,
    /// `vigil_acme_http_requests_total`: every HTTP request sent to ACME servers.
    pub acme_requests: Counter,
    /// `vigil_workload_crashes_total`: container crashes of supervised workloads.
    pub workload_crashes: Family<CrashLabels, Counter>,
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
        let certificate_expiration = Family::default();
        let issuances = Family::default();
        let acme_requests = Counter::default();
        registry.register(
            "certificate_expiration_timestamp_seconds",
            "When each AcmeCertificate's current certificate expires (Unix seconds)",
            certificate_expiration.clone(),
        );
        registry.register(
            "certificate_issuances",
            "Certificate issuances, by result (success or the failure reason)",
            issuances.clone(),
        );
        registry.register(
            "acme_http_requests",
            "HTTP requests sent to ACME servers",
            acme_requests.clone(),
        );
        let workload_crashes = Family::default();
        registry.register(
            "workload_crashes",
            "Container crashes of supervised workloads (non-zero exits, signals, OOM kills)",
            workload_crashes.clone(),
        );
        Self {
            registry,
            workload_crashes,
            certificate_expiration,
            issuances,
            acme_requests,
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
