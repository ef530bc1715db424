//! `MemberCluster`: one cluster of the fleet, the inventory every other kind targets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{NamespacedSecretKeyRef, conditions_schema, impl_has_conditions};

/// One cluster of the fleet: where it runs, how to reach its API server and its DNS.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "MemberCluster",
    status = "MemberClusterStatus",
    shortname = "mc",
    category = "vigil",
    doc = "A cluster of the fleet: provider, region, API server and DNS endpoints. Vigil probes it and the other kinds target it by name.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.kubernetesVersion"),
    printcolumn(name = "API", type_ = "string", json_path = ".status.conditions[?(@.type==\"ApiReachable\")].status"),
    printcolumn(name = "DNS", type_ = "string", json_path = ".status.conditions[?(@.type==\"DnsReachable\")].status"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name must be a DNS label (lowercase letters, digits and '-', at most 63 characters): other kinds use it in DNS names"),
    cel
)]
#[x_kube(validation = Rule::new("self.local || has(self.apiServer)").message("apiServer is required unless local is true").field_path(".apiServer"))]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterSpec {
    /// Cloud provider the cluster runs on: `aws`, `aliyun` (Alibaba Cloud) or `vmware` (on-prem).
    pub provider: Provider,
    /// Provider region, for example `eu-west-1`, `cn-hangzhou` or a datacenter name on-prem.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 63").message("region must be 1 to 63 characters"))]
    pub region: String,
    /// True for the cluster the operator itself runs in; its API server is reached with the
    /// operator's own credentials and `apiServer` may be omitted.
    #[serde(default)]
    pub local: bool,
    /// How to reach the cluster's API server. Required unless `local` is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServer>,
    /// The cluster's DNS service, as seen from the other clusters.
    #[serde(default)]
    pub dns: ClusterDns,
    /// How often Vigil probes the API server and DNS endpoints (Go duration, 5s to 1h).
    #[serde(default = "default_probe_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) >= duration('5s') && duration(self) <= duration('1h')").message("probeInterval must be a duration between 5s and 1h"))]
    pub probe_interval: String,
}

fn default_probe_interval() -> String {
    "30s".to_owned()
}

/// Cloud provider of a member cluster.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Amazon Web Services (EKS or self-managed on EC2).
    Aws,
    /// Alibaba Cloud (ACK or self-managed on ECS).
    Aliyun,
    /// VMware on-prem (vSphere, Tanzu).
    Vmware,
}

impl Provider {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Aliyun => "aliyun",
            Provider::Vmware => "vmware",
        }
    }
}

/// How to reach a member's API server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    /// Secret key holding a kubeconfig for the member's API server. The current context is used.
    pub kubeconfig_secret_ref: NamespacedSecretKeyRef,
}

/// The DNS service of a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDns {
    /// DNS endpoints reachable from the other clusters, as `host:port` (IPv6 as `[addr]:port`).
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(max = 261)))]
    #[x_kube(validation = Rule::new("self.all(e, e.matches('^([A-Za-z0-9.-]+|\\\\[[0-9A-Fa-f:.]+\\\\]):[0-9]{1,5}$'))").message("each dns endpoint must be host:port"))]
    pub endpoints: Vec<String>,
    /// The cluster's own DNS domain for services.
    #[serde(default = "default_cluster_domain")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\\\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("clusterDomain must be a lowercase DNS name"))]
    pub cluster_domain: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            cluster_domain: default_cluster_domain(),
        }
    }
}

fn default_cluster_domain() -> String {
    "cluster.local".to_owned()
}

/// Observed state of a member cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberClusterStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ApiReachable` and `DnsReachable`.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Kubernetes version reported by the member's API server (`gitVersion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<String>,
}

impl_has_conditions!(MemberClusterStatus);

/// The condition types of a MemberCluster's status besides `Ready`, and the reasons its
/// controller writes (in conditions and Events). `docs/member-clusters.md` explains each; a
/// test holds it to that.
pub mod vocabulary {
    /// Condition: the API server answered a version request.
    pub const API_REACHABLE: &str = "ApiReachable";
    /// Condition: every DNS endpoint answered a query.
    pub const DNS_REACHABLE: &str = "DnsReachable";

    /// The probe (or both) answered.
    pub const REACHABLE: &str = "Reachable";
    /// The API server refused or failed the request.
    pub const API_UNREACHABLE: &str = "ApiUnreachable";
    /// The API server did not answer in time.
    pub const API_TIMEOUT: &str = "ApiTimeout";
    /// Neither `spec.apiServer` nor `spec.local`.
    pub const NO_API_SERVER: &str = "NoApiServer";
    /// The kubeconfig Secret does not exist.
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    /// The kubeconfig Secret could not be read.
    pub const SECRET_UNREADABLE: &str = "SecretUnreadable";
    /// The Secret has no such key.
    pub const KUBECONFIG_MISSING: &str = "KubeconfigMissing";
    /// The key holds no usable kubeconfig.
    pub const KUBECONFIG_INVALID: &str = "KubeconfigInvalid";
    /// A DNS endpoint did not answer.
    pub const DNS_UNREACHABLE: &str = "DnsUnreachable";
    /// `spec.dns.endpoints` is empty: nothing to probe.
    pub const NO_ENDPOINTS: &str = "NoEndpoints";

    /// Every condition type and reason above.
    pub const ALL: &[&str] = &[
        API_REACHABLE,
        DNS_REACHABLE,
        REACHABLE,
        API_UNREACHABLE,
        API_TIMEOUT,
        NO_API_SERVER,
        SECRET_NOT_FOUND,
        SECRET_UNREADABLE,
        KUBECONFIG_MISSING,
        KUBECONFIG_INVALID,
        DNS_UNREACHABLE,
        NO_ENDPOINTS,
    ];
}
