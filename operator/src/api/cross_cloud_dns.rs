//! `CrossCloudDNS`: shared service discovery across member clusters through CoreDNS.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{conditions_schema, impl_has_conditions};

/// Clusters that resolve each other's services under one shared zone.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vigil.io",
    version = "v1alpha1",
    kind = "CrossCloudDNS",
    plural = "crossclouddnses",
    status = "CrossCloudDNSStatus",
    shortname = "ccdns",
    category = "vigil",
    doc = "Service discovery across member clusters: Vigil writes the CoreDNS configuration each cluster needs so that <svc>.<ns>.svc.<zone> resolves from every cloud, and reports the health of every remote resolver.",
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.target.mode"),
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
#[x_kube(validation = Rule::new("self.failover.all(c, c in self.clusters)").message("every failover entry must also be listed in clusters").field_path(".failover"))]
#[serde(rename_all = "camelCase")]
pub struct CrossCloudDNSSpec {
    /// Names of the `MemberCluster`s that share the zone.
    #[schemars(length(max = 32), inner(length(max = 63)))]
    #[x_kube(validation = Rule::new("self.size() >= 2").message("clusters must name at least two MemberClusters"))]
    #[x_kube(validation = Rule::new("self.all(c, self.exists_one(d, d == c))").message("clusters must not repeat a name"))]
    pub clusters: Vec<String>,
    /// The shared zone.
    #[serde(default = "default_zone")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\\\.)+[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("zone must be a lowercase DNS name with at least two labels"))]
    pub zone: String,
    /// Order in which remote clusters answer for a service the local cluster does not have;
    /// clusters not listed come after, by name.
    #[serde(default)]
    #[schemars(length(max = 32), inner(length(max = 63)))]
    pub failover: Vec<String>,
    /// Tag forwarded queries with the asking cluster in an EDNS0 option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edns0: Option<Edns0>,
    /// Where the CoreDNS configuration goes.
    #[serde(default)]
    pub target: DnsTarget,
}

fn default_zone() -> String {
    "clusterset.local".to_owned()
}

/// EDNS0 tagging of forwarded queries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Edns0 {
    /// Add the asking cluster's name to forwarded queries.
    #[serde(default)]
    pub tag_source_cluster: bool,
    /// EDNS0 option code, from the local/experimental range 65001 to 65534.
    #[serde(default = "default_option_code")]
    #[x_kube(validation = Rule::new("self >= 65001 && self <= 65534").message("optionCode must be in the local/experimental range 65001 to 65534"))]
    pub option_code: i32,
}

fn default_option_code() -> i32 {
    65001
}

/// Where Vigil writes CoreDNS configuration in each cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsTarget {
    /// `CoreDNSCustom` adds server blocks to the cluster CoreDNS's import ConfigMap;
    /// `Dedicated` runs a Vigil-managed CoreDNS for DNS services that cannot be edited.
    #[serde(default)]
    pub mode: DnsTargetMode,
    /// The import ConfigMap (default `kube-system/coredns-custom`); `CoreDNSCustom` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapRef>,
    /// Namespace of the Vigil-managed CoreDNS in each cluster (default `kube-system`);
    /// `Dedicated` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// CoreDNS image of the Vigil-managed CoreDNS (default: the CoreDNS release Vigil's
    /// configuration is tested with); `Dedicated` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Replicas of the Vigil-managed CoreDNS (default 2); `Dedicated` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 10").message("replicas must be between 1 and 10"))]
    pub replicas: Option<i32>,
    /// First port of the loopback listeners (one per remote cluster, on 127.0.0.1 inside
    /// the CoreDNS pod); default 10000. Change it when those ports are taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1024 && self <= 64000").message("listenerPortBase must be between 1024 and 64000"))]
    pub listener_port_base: Option<i32>,
}

/// How CoreDNS is configured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DnsTargetMode {
    /// `*.server` keys in the cluster CoreDNS's import ConfigMap.
    #[default]
    #[serde(rename = "CoreDNSCustom")]
    CoreDnsCustom,
    /// A CoreDNS Deployment managed by Vigil.
    Dedicated,
}

/// A ConfigMap in a namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapRef {
    /// Namespace of the ConfigMap.
    pub namespace: String,
    /// Name of the ConfigMap.
    pub name: String,
}

/// Observed state of cross-cloud DNS.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossCloudDNSStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and the health of remote resolvers.
    #[serde(default)]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// One entry per cluster: its resolver's health, whether the others ask it, and whether
    /// its configuration is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<DnsClusterStatus>,
}

/// The state of one cluster of a `CrossCloudDNS`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsClusterStatus {
    /// Name of the `MemberCluster`.
    pub cluster: String,
    /// Whether its DNS endpoints answered the last probes.
    pub resolver_healthy: bool,
    /// Whether the other clusters ask it for shared names; a resolver that stops answering
    /// leaves after a few failed probes and comes back after a few good ones.
    pub in_failover: bool,
    /// Whether its CoreDNS configuration is applied.
    pub applied: bool,
    /// The ClusterIP of the Vigil-managed CoreDNS (`Dedicated`): the cluster's own DNS must
    /// forward the zone there (the `stub-domain.server` key of its ConfigMap has the block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated_address: Option<String>,
    /// What went wrong last, when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl_has_conditions!(CrossCloudDNSStatus);

/// The reasons the CrossCloudDNS controller writes (in `Ready` and Events). `docs/dns.md`
/// explains each; a test holds it to that.
pub mod vocabulary {
    /// `Ready`: applied to every cluster.
    pub const APPLIED: &str = "Applied";
    /// `Ready=False`: a cluster could not be reached or written.
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Warning Event: a cluster's resolver stopped answering and it left the failover chain.
    pub const CLUSTER_LEFT: &str = "ClusterLeft";
    /// Event: it answers again and rejoined.
    pub const CLUSTER_REJOINED: &str = "ClusterRejoined";

    /// Every reason above.
    pub const ALL: &[&str] = &[APPLIED, APPLY_FAILED, CLUSTER_LEFT, CLUSTER_REJOINED];
}
