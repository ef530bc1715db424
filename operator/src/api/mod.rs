//! The Vigil API: group `vigil.io`, version `v1alpha1`, one module per kind.

pub mod acme_certificate;
pub mod acme_issuer;
pub mod common;
pub mod cross_cloud_dns;
pub mod member_cluster;
pub mod service_level_objective;
pub mod supervised_workload;
pub mod telemetry_pipeline;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use acme_certificate::{AcmeCertificate, AcmeCertificateSpec, AcmeCertificateStatus};
pub use acme_issuer::{AcmeIssuer, AcmeIssuerSpec, AcmeIssuerStatus};
pub use common::{API_VERSION, CATEGORY, GROUP, HasConditions, READY, VERSION};
pub use cross_cloud_dns::{CrossCloudDNS, CrossCloudDNSSpec, CrossCloudDNSStatus};
pub use member_cluster::{MemberCluster, MemberClusterSpec, MemberClusterStatus, Provider};
pub use service_level_objective::{
    ServiceLevelObjective, ServiceLevelObjectiveSpec, ServiceLevelObjectiveStatus,
};
pub use supervised_workload::{
    SupervisedWorkload, SupervisedWorkloadSpec, SupervisedWorkloadStatus,
};
pub use telemetry_pipeline::{TelemetryPipeline, TelemetryPipelineSpec, TelemetryPipelineStatus};

/// Every CRD of the API, in a stable order (the order of `vigil crds` and of `crds/`).
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        AcmeCertificate::crd(),
        AcmeIssuer::crd(),
        CrossCloudDNS::crd(),
        MemberCluster::crd(),
        ServiceLevelObjective::crd(),
        SupervisedWorkload::crd(),
        TelemetryPipeline::crd(),
    ]
}
