//! `AcmeCertificate`: a certificate issued by an [`AcmeIssuer`](super::AcmeIssuer), renewed
//! before expiry and distributed to member clusters.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{LocalObjectRef, conditions_schema, impl_has_conditions};

/// A TLS certificate for a set of DNS names.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "AcmeCertificate",
    namespaced,
    status = "AcmeCertificateStatus",
    shortname = "acmecert",
    category = "vigil",
    doc = "A TLS certificate issued over ACME, kept in a kubernetes.io/tls Secret, renewed before it expires and copied to every target cluster.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(name = "Renewal", type_ = "string", json_path = ".status.renewalTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    cel
)]
#[x_kube(validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set at most one of renewBefore and renewBeforePercentage"))]
#[serde(rename_all = "camelCase")]
pub struct AcmeCertificateSpec {
    /// The cluster-scoped `AcmeIssuer` to issue from.
    pub issuer_ref: LocalObjectRef,
    /// DNS names of the certificate (subject alternative names); `*.` wildcards need a DNS-01 solver.
    #[schemars(length(max = 100), inner(length(max = 253)))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 100").message("dnsNames must hold 1 to 100 names"))]
    #[x_kube(validation = Rule::new("self.all(n, n.size() <= 253 && n.matches('^(\\\\*\\\\.)?([a-z0-9]([-a-z0-9]*[a-z0-9])?\\\\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$'))").message("every dnsNames entry must be a lowercase DNS name, optionally starting with *."))]
    pub dns_names: Vec<String>,
    /// Name of the `kubernetes.io/tls` Secret written in this namespace (and in target clusters).
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("secretName must be a DNS subdomain name"))]
    pub secret_name: String,
    /// Private key policy.
    #[serde(default)]
    pub private_key: PrivateKeyPolicy,
    /// Renew this long before expiry (Go duration, e.g. `720h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')").message("renewBefore must be a positive duration"))]
    pub renew_before: Option<String>,
    /// Renew when this percentage of the lifetime is left (1 to 99). By default a certificate is
    /// renewed when two thirds of its lifetime has passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 99").message("renewBeforePercentage must be between 1 and 99"))]
    pub renew_before_percentage: Option<i32>,
    /// Member clusters that receive a copy of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribute: Option<Distribution>,
}

/// Private key algorithm, size and rotation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.size) || (self.algorithm == 'ECDSA' ? self.size in [256, 384] : self.size in [2048, 3072, 4096])").message("privateKey.size must be 256 or 384 for ECDSA and 2048, 3072 or 4096 for RSA"))]
#[serde(rename_all = "camelCase")]
pub struct PrivateKeyPolicy {
    /// Key algorithm.
    #[serde(default)]
    pub algorithm: KeyAlgorithm,
    /// Key size in bits: 256 or 384 for ECDSA (default 256), 2048, 3072 or 4096 for RSA (default 2048).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,
    /// `Always` makes a new key at every renewal; `Never` keeps the key.
    #[serde(default)]
    pub rotation_policy: RotationPolicy,
}

/// Key algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 or P-384.
    #[default]
    #[serde(rename = "ECDSA")]
    Ecdsa,
    /// RSA.
    #[serde(rename = "RSA")]
    Rsa,
}

/// When the private key changes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RotationPolicy {
    /// A new key at every issuance.
    #[default]
    Always,
    /// The same key for every issuance.
    Never,
}

/// Clusters that receive the certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Distribution {
    /// Names of `MemberCluster`s.
    #[schemars(length(max = 32), inner(length(max = 63)))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("distribute.clusters must name at least one MemberCluster"))]
    pub clusters: Vec<String>,
    /// Namespace of the copies; the certificate's own namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Observed state of a certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeCertificateStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Issuing` and per-step conditions.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Start of validity of the current certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// End of validity of the current certificate (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the next renewal is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// Number of certificates issued so far for this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Failed issuances in a row since the last success or spec change; retries back off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i32>,
    /// When the last issuance failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// The last renewal request (`vigil renew`, the annotation `vigil.io/renew-requested-at`)
    /// that a new certificate answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_request: Option<String>,
    /// The copies in member clusters, one entry per cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribution: Vec<ClusterCopy>,
}

/// The annotation `vigil renew` sets (an RFC 3339 time): a request to issue now. Each new
/// value is answered by one issuance, under the usual failure backoff.
pub const RENEW_ANNOTATION: &str = "vigil.io/renew-requested-at";

/// The copy of the Secret in one member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCopy {
    /// Name of the `MemberCluster`.
    pub cluster: String,
    /// Namespace of the copy.
    pub namespace: String,
    /// Revision of the certificate the cluster holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Why the last copy failed; empty when the cluster is up to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl_has_conditions!(AcmeCertificateStatus);
