//! Any bytes as the body of an AdmissionReview the pod webhook receives: decoding, every
//! isolation profile, the collector sidecar and the JSON patch sent back must never panic,
//! and the patch must turn the pod the API server sent into exactly the mutated pod.
#![no_main]

use std::sync::LazyLock;

use kube::core::admission::{AdmissionRequest, AdmissionReview};
use libfuzzer_sys::fuzz_target;
use vigil::api::{SupervisedWorkload, TelemetryPipeline};

/// One workload of each isolation profile (and read-only roots), parsed once.
static WORKLOADS: LazyLock<Vec<SupervisedWorkload>> = LazyLock::new(|| {
    [
        r#"{"profile": "restricted", "readOnlyRootFilesystem": true}"#,
        r#"{"profile": "restricted"}"#,
        r#"{"profile": "baseline"}"#,
        r#"{"profile": "none"}"#,
    ]
    .iter()
    .map(|isolation| {
        serde_json::from_str(&format!(
            r#"{{"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
                "metadata": {{"name": "checkout", "namespace": "shop"}},
                "spec": {{"target": {{"kind": "Deployment", "name": "checkout"}}, "isolation": {isolation}}}}}"#
        ))
        .expect("a workload")
    })
    .collect()
});

static PIPELINE: LazyLock<TelemetryPipeline> = LazyLock::new(|| {
    serde_json::from_str(
        r#"{"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {"clusters": ["onprem"], "mode": "sidecar",
                "backends": {"vmware": {"tracesOtlpEndpoint": "http://jaeger:4317"}}}}"#,
    )
    .expect("a pipeline")
});

fuzz_target!(|data: &[u8]| {
    let Ok(review) =
        serde_json::from_slice::<AdmissionReview<k8s_openapi::api::core::v1::Pod>>(data)
    else {
        return;
    };
    let Ok(request): Result<AdmissionRequest<k8s_openapi::api::core::v1::Pod>, _> =
        review.try_into()
    else {
        return;
    };
    let Some(pod) = request.object.as_ref() else {
        return;
    };
    let Ok(original) = serde_json::to_value(pod) else {
        return;
    };
    let key = vigil::webhook::mutate::idempotency_key(
        "shop",
        pod.metadata.name.as_deref().unwrap_or("job"),
    );
    for workload in WORKLOADS.iter() {
        let mut mutated = vigil::webhook::mutate::mutate(&original, workload, key.as_deref()).pod;
        let site = vigil::render::otel::site_resource(
            "onprem",
            vigil::api::member_cluster::Provider::Vmware,
            "dc1",
        );
        let collector =
            vigil::render::otel::collector_container(&PIPELINE, &[], &site, "vigil-otelcol-config");
        let volume = vigil::render::otel::sidecar_volume("vigil-otel-shop-0123456789");
        let _ = vigil::webhook::mutate::inject_collector(&mut mutated, collector, volume);
        // What the API server applies: the patch, to the pod it sent.
        let patch = json_patch::diff(&original, &mutated);
        let mut patched = original.clone();
        json_patch::patch(&mut patched, &patch).expect("the patch applies to the pod it came from");
        assert_eq!(patched, mutated, "the patch makes exactly the mutated pod");
    }
});
