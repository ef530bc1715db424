//! The inventory: every Vigil object a reconcile or an offline run can see.
//!
//! The controller builds it from its reflector stores, `vigil validate` and `vigil render`
//! from manifest files; validation and rendering read only this, so both paths agree.

use kube::{Resource, ResourceExt};

use crate::api::{
    AcmeCertificate, AcmeIssuer, CrossCloudDNS, MemberCluster, ServiceLevelObjective,
    SupervisedWorkload, TelemetryPipeline,
};

/// One Vigil object of any kind.
#[derive(Clone, Debug)]
pub enum Object {
    /// An `AcmeCertificate`.
    AcmeCertificate(AcmeCertificate),
    /// An `AcmeIssuer`.
    AcmeIssuer(AcmeIssuer),
    /// A `CrossCloudDNS`.
    CrossCloudDNS(CrossCloudDNS),
    /// A `MemberCluster`.
    MemberCluster(MemberCluster),
    /// A `ServiceLevelObjective`.
    ServiceLevelObjective(ServiceLevelObjective),
    /// A `SupervisedWorkload`.
    SupervisedWorkload(SupervisedWorkload),
    /// A `TelemetryPipeline`.
    TelemetryPipeline(TelemetryPipeline),
}

/// Every kind of the API, by its `kind` name.
pub const KINDS: [&str; 7] = [
    "AcmeCertificate",
    "AcmeIssuer",
    "CrossCloudDNS",
    "MemberCluster",
    "ServiceLevelObjective",
    "SupervisedWorkload",
    "TelemetryPipeline",
];

impl Object {
    /// The object's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::AcmeCertificate(_) => "AcmeCertificate",
            Object::AcmeIssuer(_) => "AcmeIssuer",
            Object::CrossCloudDNS(_) => "CrossCloudDNS",
            Object::MemberCluster(_) => "MemberCluster",
            Object::ServiceLevelObjective(_) => "ServiceLevelObjective",
            Object::SupervisedWorkload(_) => "SupervisedWorkload",
            Object::TelemetryPipeline(_) => "TelemetryPipeline",
        }
    }

    /// `namespace/name` for namespaced objects, `name` for cluster-scoped ones.
    pub fn key(&self) -> String {
        let meta = match self {
            Object::AcmeCertificate(o) => o.meta(),
            Object::AcmeIssuer(o) => o.meta(),
            Object::CrossCloudDNS(o) => o.meta(),
            Object::MemberCluster(o) => o.meta(),
            Object::ServiceLevelObjective(o) => o.meta(),
            Object::SupervisedWorkload(o) => o.meta(),
            Object::TelemetryPipeline(o) => o.meta(),
        };
        let name = meta.name.clone().unwrap_or_default();
        match &meta.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        }
    }
}

/// Every Vigil object known, by kind.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    /// `AcmeCertificate`s.
    pub acme_certificates: Vec<AcmeCertificate>,
    /// `AcmeIssuer`s.
    pub acme_issuers: Vec<AcmeIssuer>,
    /// `CrossCloudDNS` objects.
    pub cross_cloud_dns: Vec<CrossCloudDNS>,
    /// `MemberCluster`s.
    pub member_clusters: Vec<MemberCluster>,
    /// `ServiceLevelObjective`s.
    pub service_level_objectives: Vec<ServiceLevelObjective>,
    /// `SupervisedWorkload`s.
    pub supervised_workloads: Vec<SupervisedWorkload>,
    /// `TelemetryPipeline`s.
    pub telemetry_pipelines: Vec<TelemetryPipeline>,
}

fn find<'a, K: ResourceExt>(list: &'a [K], namespace: Option<&str>, name: &str) -> Option<&'a K> {
    list.iter()
        .find(|o| o.name_any() == name && o.namespace().as_deref() == namespace)
}

impl Inventory {
    /// Adds one object.
    pub fn insert(&mut self, object: Object) {
        match object {
            Object::AcmeCertificate(o) => self.acme_certificates.push(o),
            Object::AcmeIssuer(o) => self.acme_issuers.push(o),
            Object::CrossCloudDNS(o) => self.cross_cloud_dns.push(o),
            Object::MemberCluster(o) => self.member_clusters.push(o),
            Object::ServiceLevelObjective(o) => self.service_level_objectives.push(o),
            Object::SupervisedWorkload(o) => self.supervised_workloads.push(o),
            Object::TelemetryPipeline(o) => self.telemetry_pipelines.push(o),
        }
    }

    /// The `MemberCluster` of that name.
    pub fn member_cluster(&self, name: &str) -> Option<&MemberCluster> {
        find(&self.member_clusters, None, name)
    }

    /// The `AcmeIssuer` of that name.
    pub fn acme_issuer(&self, name: &str) -> Option<&AcmeIssuer> {
        find(&self.acme_issuers, None, name)
    }

    /// The `ServiceLevelObjective` of that namespace and name.
    pub fn service_level_objective(&self, ns: &str, name: &str) -> Option<&ServiceLevelObjective> {
        find(&self.service_level_objectives, Some(ns), name)
    }

    /// The `TelemetryPipeline` of that namespace and name.
    pub fn telemetry_pipeline(&self, ns: &str, name: &str) -> Option<&TelemetryPipeline> {
        find(&self.telemetry_pipelines, Some(ns), name)
    }

    /// Number of objects of all kinds.
    pub fn len(&self) -> usize {
        self.acme_certificates.len()
            + self.acme_issuers.len()
            + self.cross_cloud_dns.len()
            + self.member_clusters.len()
            + self.service_level_objectives.len()
            + self.supervised_workloads.len()
            + self.telemetry_pipelines.len()
    }

    /// True when the inventory holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
