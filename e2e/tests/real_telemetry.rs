//! `TelemetryPipeline`s on a real node, with the Collector image `make tools` builds
//! (`vigil.test/otelcol-vigil:0.161.0`, see e2e/tools/otelcol/vigil.yaml):
//! - a gateway: its validation Job runs the image's `validate` for real, the Deployment
//!   it then rolls out serves OTLP (a span sent to the pod reaches a backend Collector on
//!   this machine), and a configuration the real Job refuses (it names a component the
//!   image lacks) leaves the running gateway on its last good configuration;
//! - a sidecar: a pod that asks for it gets the Collector as a native sidecar that is
//!   healthy before the app starts, the app's spans reach the backend with its pod's
//!   attributes, and deleting the pipeline leaves the running pod alone.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use vigil::api::{MemberCluster, TelemetryPipeline, TelemetryPipelineStatus};
use vigil_e2e::node::HOST_ADDRESS;
use vigil_e2e::otelcol::{Backend, send, span};
use vigil_e2e::{Operator, TestCluster, eventually, repo};

const IMAGE: &str = "vigil.test/otelcol-vigil:0.161.0";
const APP: &str = "vigil.test/crashers:1";

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

fn validated(status: &TelemetryPipelineStatus) -> bool {
    condition(status, "Validated").is_some_and(|c| c.status == "True")
        && status
            .clusters
            .first()
            .is_some_and(|c| c.active_config.is_some())
}

/// The pipeline `shop` of namespace `shop` on the local VMware cluster `onprem`, in
/// `mode`, exporting traces to the backend at `backend` (`127.0.0.1:<port>`, reached from
/// pods at [`HOST_ADDRESS`]), with `extra` merged into its on-prem backends.
fn pipeline(mode: &str, backend: &str, extra: serde_json::Value) -> serde_json::Value {
    let port = backend.rsplit(':').next().unwrap_or_default();
    let mut vmware =
        serde_json::json!({"tracesOtlpEndpoint": format!("http://{HOST_ADDRESS}:{port}")});
    if let (Some(into), Some(from)) = (vmware.as_object_mut(), extra.as_object()) {
        into.extend(from.clone());
    }
    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"clusters": ["onprem"], "mode": mode, "image": IMAGE,
            "signals": {"traces": true, "metrics": false},
            "sampling": {"percentage": 10, "latencyThresholdMs": 500},
            "backends": {"vmware": vmware}}})
}

/// The node, the images, an operator with the chart's RBAC (and `args`), the namespace
/// `shop` and the local MemberCluster `onprem`.
async fn setup(cluster: &TestCluster, name: &str, args: &[&str]) -> anyhow::Result<Operator> {
    let node = cluster.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/otelcol-vigil.tar"))?;
    node.import_image(&repo().join(".tools/images/crashers.tar"))?;
    let operator = Operator::start_with_chart_rbac(cluster, name, args).await?;
    cluster.ensure_namespace("shop").await?;
    let member = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "onprem"},
        "spec": {"provider": "vmware", "region": "dc1", "local": true}});
    Api::<MemberCluster>::all(cluster.client())
        .patch("onprem", &apply(), &Patch::Apply(&member))
        .await?;
    Ok(operator)
}

fn apply() -> PatchParams {
    PatchParams::apply("vigil-e2e").force()
}

async fn run(name: &str, scenario: impl AsyncFnOnce(&TestCluster) -> anyhow::Result<()>) {
    let mut cluster = TestCluster::start_with_node(name).await.expect("cluster");
    let result = scenario(&cluster).await;
    if result.is_err() {
        cluster.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = cluster.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

/// The one running pod of the gateway, once it is Ready.
async fn ready_gateway(pods: &Api<Pod>) -> anyhow::Result<Pod> {
    eventually("the gateway pod Ready", Duration::from_secs(90), || async {
        let listed = pods
            .list(&ListParams::default().labels("app.kubernetes.io/component=collector"))
            .await?
            .items;
        Ok(listed.into_iter().find(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        }))
    })
    .await
}

fn pod_ip(pod: &Pod) -> anyhow::Result<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or_else(|| anyhow::anyhow!("pod {} has no IP", pod.name_any()))
}

/// Waits until the backend holds a span of trace `trace_id`.
async fn arrives(backend: &Backend, trace_id: &str) -> anyhow::Result<vigil_e2e::otelcol::Span> {
    // tail_sampling decides 10 s after a trace's first span; batch waits up to 5 s more.
    eventually(
        &format!("trace {trace_id} at the backend"),
        Duration::from_secs(60),
        || async {
            Ok(backend
                .spans()?
                .into_iter()
                .find(|s| s.trace_id == trace_id))
        },
    )
    .await
}

#[tokio::test]
async fn a_gateway_validated_by_a_real_job_serves_otlp_and_a_refused_config_keeps_it() {
    run("otelgw", gateway_scenario).await;
}

async fn gateway_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let operator = setup(cluster, "vigil-otel-gateway", &[]).await?;
    let node = cluster.node().expect("a real node");
    let backend = Backend::start(cluster.dir(), "backend").await?;
    let client = cluster.client();
    let pipelines: Api<TelemetryPipeline> = Api::namespaced(client.clone(), "shop");
    let started = Instant::now();
    let first = pipeline("gateway", &backend.endpoint, serde_json::json!({}));
    pipelines
        .patch("shop", &apply(), &Patch::Apply(&first))
        .await?;
    let good = wait_pipeline(&pipelines, "the real validation Job's approval", validated)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    let active = good.clusters[0].active_config.clone().unwrap_or_default();
    // The one docs/telemetry.md shows.
    eprintln!(
        "the validated pipeline's status: {}",
        serde_json::to_string_pretty(&good)?
    );
    eprintln!(
        "validated by a real Job in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // The Job ran the image's `validate` on the real node, and succeeded.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "shop");
    let job = jobs.get(&active).await?;
    assert_eq!(job.status.and_then(|s| s.succeeded), Some(1), "{active}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let validation = pods
        .list(&ListParams::default().labels(&format!("job-name={active}")))
        .await?
        .items;
    assert!(
        validation.iter().any(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
        }),
        "the validation pod ran on the real node"
    );

    // The gateway runs that configuration and serves OTLP: an error span sent to the pod
    // (from this machine, which routes to the node's pods) reaches the backend.
    let gateway = ready_gateway(&pods)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "gateway Ready {:.1}s after the apply",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        gateway.annotations().get("vigil.io/collector-config"),
        Some(&active),
        "the gateway runs the validated configuration"
    );
    let otlp = format!("http://{}:4318", pod_ip(&gateway)?);
    let sent = Instant::now();
    send(
        &otlp,
        "checkout",
        &[span(&"a1".repeat(16), "POST /pay", 15, true)],
    )
    .await?;
    let arrived = arrives(&backend, &"a1".repeat(16)).await?;
    eprintln!(
        "a span through the real gateway in {:.1}s (tail sampling waits 10 s)",
        sent.elapsed().as_secs_f64()
    );
    assert_eq!(
        arrived.resource.get("service.name").map(String::as_str),
        Some("checkout")
    );
    // resource_detection ran in the pod: `k8s_api` read the node the gateway runs on.
    assert_eq!(
        arrived.resource.get("k8s.node.name"),
        Some(&node.name),
        "{:?}",
        arrived.resource
    );

    // A configuration the image cannot run (an OpenSearch exporter, not in otelcol-vigil):
    // the real Job refuses it in the Collector's words, and the gateway keeps serving the
    // last good one.
    let refused = pipeline(
        "gateway",
        &backend.endpoint,
        serde_json::json!({"opensearchUrl": format!("http://{HOST_ADDRESS}:9200")}),
    );
    let mut refused = refused;
    refused["spec"]["signals"]["logs"] = serde_json::json!(true);
    pipelines
        .patch("shop", &apply(), &Patch::Apply(&refused))
        .await?;
    let status = wait_pipeline(&pipelines, "the real Job's refusal", |s| {
        condition(s, "Validated").is_some_and(|c| c.status == "False")
    })
    .await?;
    let verdict = condition(&status, "Validated")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no Validated condition: {status:?}"))?;
    eprintln!("the refusal: {}", serde_json::to_string_pretty(&verdict)?);
    assert_eq!(verdict.reason, "ValidationFailed");
    assert!(
        verdict.message.contains("unknown type: \"opensearch\""),
        "the Collector's own words, from the real Job: {}",
        verdict.message
    );
    assert_eq!(
        status.clusters[0].active_config.as_deref(),
        Some(active.as_str())
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let deployment = deployments.get("vigil-otel-shop").await?;
    let template = deployment
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default();
    assert_eq!(template.get("vigil.io/collector-config"), Some(&active));
    let gateway = ready_gateway(&pods).await?;
    let otlp = format!("http://{}:4318", pod_ip(&gateway)?);
    send(
        &otlp,
        "checkout",
        &[span(&"b2".repeat(16), "POST /pay", 15, true)],
    )
    .await?;
    arrives(&backend, &"b2".repeat(16)).await?;
    eprintln!("gateway scenario: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

#[tokio::test]
async fn a_sidecar_collector_is_up_before_its_app_and_outlives_its_pipeline() {
    run("otelside", sidecar_scenario).await;
}

async fn sidecar_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    // With the pod webhook, reached by URL: the operator runs outside the cluster.
    let port = vigil_e2e::free_port()?;
    let operator = setup(
        cluster,
        "vigil-otel-sidecar",
        &[
            &format!("--webhook-addr=127.0.0.1:{port}"),
            &format!("--webhook-url=https://127.0.0.1:{port}"),
        ],
    )
    .await?;
    let backend = Backend::start(cluster.dir(), "backend").await?;
    let client = cluster.client();
    let pipelines: Api<TelemetryPipeline> = Api::namespaced(client.clone(), "shop");
    let started = Instant::now();
    let sidecar = pipeline("sidecar", &backend.endpoint, serde_json::json!({}));
    pipelines
        .patch("shop", &apply(), &Patch::Apply(&sidecar))
        .await?;
    wait_pipeline(&pipelines, "the real validation Job's approval", validated)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;

    // The webhook in effect (the API server has its configuration, the operator knows the
    // validated pipeline): a server-side dry run of the pod comes back with the sidecar.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let app: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout", "annotations": {"vigil.io/telemetry-pipeline": "shop"}},
        "spec": {"containers": [{"name": "app", "image": APP, "command": ["/crasher", "otlp"]}]}}))?;
    eventually(
        "the webhook adding the sidecar",
        Duration::from_secs(60),
        || async {
            let params = PostParams {
                dry_run: true,
                ..Default::default()
            };
            let admitted = pods.create(&params, &app).await?;
            Ok(admitted
                .spec
                .is_some_and(|s| {
                    s.init_containers
                        .iter()
                        .flatten()
                        .any(|c| c.name == "otelcol")
                })
                .then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    let created = Instant::now();
    pods.create(&PostParams::default(), &app).await?;
    let running = eventually("the app running", Duration::from_secs(90), || async {
        let pod = pods.get("checkout").await?;
        let ready = pod.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        Ok(ready.then_some(pod))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "sidecar pod Ready in {:.1}s",
        created.elapsed().as_secs_f64()
    );
    let spec = running.spec.clone().unwrap_or_default();
    let injected = spec.init_containers.unwrap_or_default();
    assert_eq!(injected.first().map(|c| c.name.as_str()), Some("otelcol"));
    assert_eq!(
        injected[0].restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    // The sidecar was healthy before the app started: the app's first span was taken.
    let app_log = |previous: bool| {
        let pods = pods.clone();
        async move {
            let params = LogParams {
                container: Some("app".into()),
                previous,
                ..Default::default()
            };
            pods.logs("checkout", &params).await
        }
    };
    let first = eventually("the app's first span", Duration::from_secs(30), || async {
        let log = app_log(false).await?;
        Ok(log
            .lines()
            .find(|l| l.contains("span 1 "))
            .map(str::to_owned))
    })
    .await?;
    assert!(first.contains("span 1 exported: 200"), "{first}");
    // Its spans reach the backend through the sidecar, with the pod's attributes.
    let arrived = eventually(
        "the app's spans at the backend",
        Duration::from_secs(60),
        || async {
            Ok(backend
                .spans()?
                .into_iter()
                .find(|s| s.resource.get("service.name").map(String::as_str) == Some("checkout")))
        },
    )
    .await?;
    eprintln!(
        "first app span at the backend {:.1}s after the pod's creation",
        created.elapsed().as_secs_f64()
    );
    for (key, want) in [
        ("k8s.pod.name", "checkout"),
        ("k8s.namespace.name", "shop"),
        (
            "k8s.node.name",
            cluster.node().expect("a real node").name.as_str(),
        ),
    ] {
        assert_eq!(
            arrived.resource.get(key).map(String::as_str),
            Some(want),
            "{:?}",
            arrived.resource
        );
    }
    let uid = running.uid().unwrap_or_default();
    assert_eq!(arrived.resource.get("k8s.pod.uid"), Some(&uid));

    // Deleting the pipeline leaves the running pod alone: same pod, no restart, and the
    // app goes on exporting through its sidecar.
    pipelines.delete("shop", &DeleteParams::default()).await?;
    eventually("the pipeline gone", Duration::from_secs(60), || async {
        Ok(pipelines.get_opt("shop").await?.is_none().then_some(()))
    })
    .await?;
    let before = backend.spans()?.len();
    eventually(
        "spans after the deletion",
        Duration::from_secs(60),
        || async { Ok((backend.spans()?.len() > before).then_some(())) },
    )
    .await?;
    let pod = pods.get("checkout").await?;
    assert_eq!(pod.uid(), running.uid());
    let restarts: i32 = pod
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    assert_eq!(restarts, 0, "{:?}", pod.status);
    eprintln!("sidecar scenario: {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
