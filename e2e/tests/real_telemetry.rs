//! A `TelemetryPipeline`'s validation Job on a real node: the Job runs `validate` of the
//! pipeline's Collector image for real. The image here is `otelcol-vigil`, built by `make
//! tools`, which lacks the `resource_detection` processor (the Go module proxy of this
//! workplace serves no release of its detectors that matches v0.161.0; see
//! e2e/tools/otelcol/vigil.yaml): the real Collector refuses the configuration in its
//! Job, naming the component, and nothing rolls out, which is what the Job is for when a
//! pipeline's `image` lacks a component Vigil generates. A gateway serving OTLP after a
//! real Job needs an image with every component (the contrib image), which cannot be
//! built here; e2e/tests/telemetry.rs validates every generated configuration with
//! stand-ins for exactly the missing ones.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use vigil::api::{MemberCluster, TelemetryPipeline, TelemetryPipelineStatus};
use vigil_e2e::node::HOST_ADDRESS;
use vigil_e2e::{Operator, TestCluster, eventually, repo};

const IMAGE: &str = "vigil.test/otelcol-vigil:0.161.0";

async fn wait_pipeline(
    api: &Api<TelemetryPipeline>,
    what: &str,
    done: impl Fn(&TelemetryPipelineStatus) -> bool,
) -> anyhow::Result<TelemetryPipelineStatus> {
    let result = eventually(what, Duration::from_secs(120), || async {
        let pipeline = api.get("shop").await?;
        let status = pipeline.status.unwrap_or_default();
        let current = status.observed_generation == pipeline.metadata.generation;
        Ok((current && done(&status)).then_some(status))
    })
    .await;
    match result {
        Ok(status) => Ok(status),
        Err(error) => {
            let last = api.get("shop").await?.status;
            anyhow::bail!("{error:#}; the pipeline's status: {last:#?}")
        }
    }
}

fn condition<'a>(
    status: &'a TelemetryPipelineStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test]
async fn a_real_validation_job_refuses_an_image_without_a_generated_component() {
    let mut cluster = TestCluster::start_with_node("otelreal")
        .await
        .expect("cluster");
    let result = scenario(&cluster).await;
    if result.is_err() {
        cluster.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = cluster.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

async fn scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/otelcol-vigil.tar"))?;
    let operator = Operator::start_with_chart_rbac(cluster, "vigil-otel-real", &[]).await?;
    cluster.ensure_namespace("shop").await?;
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e").force();
    let member = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "onprem"},
        "spec": {"provider": "vmware", "region": "dc1", "local": true}});
    Api::<MemberCluster>::all(client.clone())
        .patch("onprem", &params, &Patch::Apply(&member))
        .await?;
    let pipelines: Api<TelemetryPipeline> = Api::namespaced(client.clone(), "shop");
    let pipeline = |endpoint: String| {
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {"clusters": ["onprem"], "mode": "gateway", "image": IMAGE,
                "signals": {"traces": true, "metrics": false},
                "sampling": {"percentage": 10, "latencyThresholdMs": 500},
                "backends": {"vmware": {"tracesOtlpEndpoint": endpoint}}}})
    };
    let started = Instant::now();
    pipelines
        .patch(
            "shop",
            &params,
            &Patch::Apply(&pipeline(format!("http://{HOST_ADDRESS}:4317"))),
        )
        .await?;
    let refused = wait_pipeline(&pipelines, "the real validation Job's verdict", |s| {
        condition(s, "Validated").is_some_and(|c| c.status == "False")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "refused by a real validation Job in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let validated = condition(&refused, "Validated")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no Validated condition"))?;
    assert_eq!(validated.reason, "ValidationFailed");
    assert!(
        validated
            .message
            .contains("unknown type: \"resource_detection\""),
        "the Collector's own words, from the real Job: {}",
        validated.message
    );
    // Nothing rolled out: no configuration runs, no gateway exists.
    assert_eq!(refused.clusters[0].active_config, None, "{refused:?}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    assert!(deployments.get_opt("vigil-otel-shop").await?.is_none());
    // The Job ran the image's `validate` on the real node, and failed.
    let candidate = refused.clusters[0]
        .candidate_config
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no candidate: {refused:?}"))?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "shop");
    let job = jobs.get(&candidate).await?;
    assert_eq!(job.status.and_then(|s| s.failed), Some(1), "{candidate}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let validation = pods
        .list(&ListParams::default().labels(&format!("job-name={candidate}")))
        .await?
        .items;
    assert!(
        validation.iter().any(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
        }),
        "the validation pod ran on the real node"
    );
    Ok(())
}
