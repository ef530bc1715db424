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
pub use common::{
    API_VERSION, CATEGORY, GROUP, HasConditions, READY, Reference, References, VERSION,
};
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

/// What each kind names: the kinds below name others; the rest name none.
mod references {
    use kube::ResourceExt;

    use super::{
        AcmeCertificate, AcmeIssuer, CrossCloudDNS, MemberCluster, Reference, References,
        ServiceLevelObjective, SupervisedWorkload, TelemetryPipeline,
    };

    const ACME_ISSUER: &str = "AcmeIssuer";
    const MEMBER_CLUSTER: &str = "MemberCluster";
    const SERVICE_LEVEL_OBJECTIVE: &str = "ServiceLevelObjective";
    const TELEMETRY_PIPELINE: &str = "TelemetryPipeline";

    fn members<'a>(names: impl IntoIterator<Item = &'a String>) -> impl Iterator<Item = Reference> {
        names
            .into_iter()
            .map(|name| Reference::cluster(MEMBER_CLUSTER, name))
    }

    impl References for AcmeCertificate {
        fn references(&self) -> Vec<Reference> {
            let issuer = Reference::cluster(ACME_ISSUER, &self.spec.issuer_ref.name);
            let copies = self.spec.distribute.iter().flat_map(|d| &d.clusters);
            std::iter::once(issuer).chain(members(copies)).collect()
        }
    }

    impl References for CrossCloudDNS {
        fn references(&self) -> Vec<Reference> {
            members(self.spec.clusters.iter().chain(&self.spec.failover)).collect()
        }
    }

    impl References for TelemetryPipeline {
        fn references(&self) -> Vec<Reference> {
            let namespace = self.namespace().unwrap_or_default();
            let boosts = self.spec.sampling.slo_boost.iter().map(|boost| {
                Reference::namespaced(SERVICE_LEVEL_OBJECTIVE, &namespace, &boost.slo_ref.name)
            });
            members(&self.spec.clusters).chain(boosts).collect()
        }
    }

    impl References for SupervisedWorkload {
        fn references(&self) -> Vec<Reference> {
            let namespace = self.namespace().unwrap_or_default();
            self.spec
                .telemetry
                .iter()
                .map(|t| {
                    Reference::namespaced(TELEMETRY_PIPELINE, &namespace, &t.pipeline_ref.name)
                })
                .collect()
        }
    }

    impl References for AcmeIssuer {}
    impl References for MemberCluster {}
    impl References for ServiceLevelObjective {}

    #[cfg(test)]
    mod tests {
        use std::collections::{BTreeMap, HashSet};

        use kube::Resource;

        use super::*;

        fn itself<K: Resource<DynamicType = ()>>(object: &K) -> Reference {
            Reference {
                kind: K::kind(&()).into_owned().into(),
                namespace: object.meta().namespace.clone(),
                name: object.meta().name.clone().unwrap_or_default(),
            }
        }

        /// Every reference of `examples/` resolves, and every kind of reference appears.
        #[test]
        fn each_kind_names_what_its_spec_names() {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
            let loaded = crate::manifest::load(&[root], "default").expect("the examples");
            assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
            let i = &loaded.inventory;
            let mut exists = HashSet::new();
            let mut named: Vec<(Reference, Vec<Reference>)> = Vec::new();
            macro_rules! each {
                ($($field:ident),*) => {$(
                    for object in &i.$field {
                        exists.insert(itself(object));
                        named.push((itself(object), object.references()));
                    }
                )*};
            }
            each!(
                acme_certificates,
                acme_issuers,
                cross_cloud_dns,
                member_clusters,
                service_level_objectives,
                supervised_workloads,
                telemetry_pipelines
            );
            let mut seen = BTreeMap::new();
            for (object, references) in &named {
                for reference in references {
                    assert!(
                        exists.contains(reference),
                        "{object:?} names {reference:?}, which the examples do not have"
                    );
                    *seen
                        .entry((object.kind.clone(), reference.kind.clone()))
                        .or_insert(0) += 1;
                }
            }
            for pair in [
                ("AcmeCertificate", "AcmeIssuer"),
                ("AcmeCertificate", "MemberCluster"),
                ("CrossCloudDNS", "MemberCluster"),
                ("TelemetryPipeline", "MemberCluster"),
                ("TelemetryPipeline", "ServiceLevelObjective"),
                ("SupervisedWorkload", "TelemetryPipeline"),
            ] {
                assert!(
                    seen.contains_key(&(pair.0.into(), pair.1.into())),
                    "no {pair:?} in the examples: {seen:?}"
                );
            }
        }
    }
}
