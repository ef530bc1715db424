//! The OpenTelemetry Collector configurations Vigil generates, checked by a real Collector
//! (`otelcol-vigil`, built by `make tools` with ocb from `e2e/tools/otelcol/vigil.yaml`):
//! every golden configuration and every one rendered from `examples/` passes the
//! Collector's own `validate`, a typo fails it, and a gateway running the generated VMware
//! configuration delivers to a second Collector exactly the traces its sampling promises.
//! In a real control plane, the operator (with exactly the chart's rights) rolls a
//! pipeline out only after the Collector validated it in a Job, and a configuration the
//! Collector refuses never replaces the running one; and an SLO burning its budget in a
//! real Prometheus raises the sampling of the running configuration, which returns after
//! the burn stops. The pod webhook adds the sidecar collector to the pods that ask for it,
//! and to no other, and keeps doing so across a renewal of its TLS while it runs.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use vigil::api::{MemberCluster, ServiceLevelObjective, SupervisedWorkload, TelemetryPipeline};
use vigil::render::otel::{COLLECTOR_VERSION, render_collector_configs};
use vigil_e2e::jaeger::Jaeger;
use vigil_e2e::otelcol::{
    Backend, Collector, NOT_BUILT, ValidationKubelet, built_components, component_type,
    documented_vmware_gateway, gauge, outside_a_pod, send, send_metrics, span, validate,
    vmware_gateway_config, with_stand_ins,
};
use vigil_e2e::prometheus::PrometheusOptions;
use vigil_e2e::{Exporter, Operator, Prometheus, TestCluster, eventually, repo};

/// The generated configurations under golden test: the insta snapshots of
/// `operator/tests/otel_render.rs`, without their header.
fn goldens() -> anyhow::Result<Vec<(String, String)>> {
    let dir = repo().join("operator/tests/snapshots");
    let mut goldens = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(name) = name
            .strip_prefix("otel_render__")
            .and_then(|n| n.strip_suffix(".snap"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        // `---` header `---` body
        let body = text
            .splitn(3, "---\n")
            .nth(2)
            .ok_or_else(|| anyhow::anyhow!("{}: no insta header", path.display()))?;
        goldens.push((name.to_owned(), body.to_owned()));
    }
    anyhow::ensure!(
        goldens.len() >= 5,
        "only {} golden configurations",
        goldens.len()
    );
    goldens.sort();
    Ok(goldens)
}

/// Every Collector configuration of the `TelemetryPipeline`s in `examples/`.
fn examples() -> anyhow::Result<Vec<(String, String)>> {
    let loaded = vigil::manifest::load(&[repo().join("examples")], "default")?;
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let mut configs = Vec::new();
    for pipeline in &loaded.inventory.telemetry_pipelines {
        for config in render_collector_configs(pipeline, &loaded.inventory, None)? {
            let name = format!(
                "example-{}-{}",
                kube::ResourceExt::name_any(pipeline),
                config.cluster
            );
            configs.push((name, config.yaml));
        }
    }
    anyhow::ensure!(!configs.is_empty(), "examples/ has no TelemetryPipeline");
    Ok(configs)
}

#[test]
fn the_collector_built_is_the_release_vigil_generates_for() -> anyhow::Result<()> {
    let builder = std::fs::read_to_string(repo().join("e2e/tools/otelcol/vigil.yaml"))?;
    let builder: serde_json::Value = serde_yaml_ng::from_str(&builder)?;
    assert_eq!(
        builder["dist"]["version"].as_str(),
        Some(COLLECTOR_VERSION),
        "render/otel.rs and e2e/tools/otelcol/vigil.yaml must name the same Collector release"
    );
    // The stand-ins hide nothing the build could check.
    let built = built_components("otelcol-vigil")?;
    for missing in NOT_BUILT {
        assert!(
            !built.contains(*missing),
            "{missing} is built now: take it out of NOT_BUILT"
        );
    }
    Ok(())
}

#[test]
fn every_generated_configuration_passes_the_collectors_validate() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let built = built_components("otelcol-vigil")?;
    let mut checked = 0;
    let mut used = BTreeSet::new();
    for (name, yaml) in goldens()?.into_iter().chain(examples()?) {
        let (config, removed) = with_stand_ins(&yaml)?;
        let value: serde_json::Value = serde_yaml_ng::from_str(&config)?;
        for section in ["receivers", "processors", "exporters", "extensions"] {
            for id in value[section]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(id, _)| id)
            {
                used.insert(component_type(id).to_owned());
            }
        }
        if let Err(message) = validate(dir.path(), &name, &config)? {
            panic!(
                "{name} (with stand-ins for {removed:?}) is refused by the Collector:\n{message}\n{config}"
            );
        }
        checked += 1;
    }
    // Everything left after the stand-ins is in the build, and the build has no extra
    // component the generator never uses (the builder config is exactly what Vigil needs).
    let generated: BTreeSet<String> = used;
    for kind in &generated {
        assert!(built.contains(kind), "{kind} is generated but not built");
    }
    let canonical: BTreeSet<&str> = [
        "otlp",
        "prometheus",
        "memory_limiter",
        "k8s_attributes",
        "resource_detection",
        "tail_sampling",
        "batch",
        "otlp_grpc",
        "otlp_http",
        "prometheus_remote_write",
        "health_check",
    ]
    .into();
    assert_eq!(
        generated
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        canonical,
        "the components the goldens use (besides NOT_BUILT) changed: update vigil.yaml and this list"
    );
    assert!(checked >= 8, "only {checked} configurations checked");
    Ok(())
}

#[test]
fn a_typo_fails_the_check() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, vmware) = goldens()?
        .into_iter()
        .find(|(name, _)| name == "gateway-vmware")
        .ok_or_else(|| anyhow::anyhow!("no gateway-vmware golden"))?;
    let (config, _) = with_stand_ins(&vmware)?;
    assert_eq!(validate(dir.path(), "ok", &config)?, Ok(()));
    let typo = config.replace("otlp_grpc/traces", "otlp_grcp/traces");
    let message = validate(dir.path(), "typo", &typo)?
        .err()
        .ok_or_else(|| anyhow::anyhow!("the Collector accepted an unknown exporter"))?;
    assert!(
        message.contains("unknown type: \"otlp_grcp\""),
        "the Collector's message names the typo: {message}"
    );
    Ok(())
}

/// 32 hex digits, distinct per `seed`, spread like random trace ids.
fn trace_id(kind: &str, seed: usize) -> String {
    vigil::hash::sha256_hex(format!("{kind}-{seed}").as_bytes())[..32].to_owned()
}

/// A gateway Collector on the host running generated configuration `yaml` as its pod
/// would: the stand-ins of this build, the API server of `cluster` instead of a service
/// account, node `node`, and the `OTEL_RESOURCE_ATTRIBUTES` of its Deployment. Returns it
/// with its OTLP/HTTP address.
async fn host_gateway(
    cluster: &TestCluster,
    dir: &std::path::Path,
    yaml: &str,
    node: &str,
    resource: &str,
) -> anyhow::Result<(Collector, String)> {
    let (config, removed) = with_stand_ins(yaml)?;
    assert_eq!(removed, Vec::<String>::new(), "{yaml}");
    let config = outside_a_pod(&config)?;
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let gateway = Collector::start(
        dir,
        "gateway",
        "otelcol-vigil",
        &config,
        &[
            ("KUBECONFIG", &kubeconfig),
            ("K8S_NODE_NAME", node),
            ("OTEL_RESOURCE_ATTRIBUTES", resource),
        ],
    )
    .await?;
    let otlp = gateway
        .otlp_http
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no OTLP/HTTP receiver"))?;
    Ok((gateway, otlp))
}

#[test]
fn the_docs_show_the_gateway_the_tests_run() {
    let file = std::fs::read_to_string(repo().join("docs/telemetry/vmware-gateway.yaml"))
        .expect("the manifest");
    let docs = std::fs::read_to_string(repo().join("docs/telemetry.md")).expect("the docs");
    assert!(
        docs.contains(&format!("```yaml\n{file}```")),
        "docs/telemetry.md must show docs/telemetry/vmware-gateway.yaml as it is"
    );
}

/// The documented VMware gateway's metrics reach a real Prometheus through its
/// remote-write receiver, labelled with the cluster, provider and region they come from.
#[tokio::test]
async fn the_gateway_remote_writes_metrics_labelled_with_their_cluster() -> anyhow::Result<()> {
    // k8s_attributes and pod discovery watch the API from the start: give them one.
    let cluster = TestCluster::start("otel-rw").await?;
    let dir = tempfile::tempdir()?;
    let prometheus = Prometheus::start_with(
        dir.path(),
        &PrometheusOptions {
            remote_write_receiver: true,
            ..PrometheusOptions::default()
        },
    )
    .await?;
    // Its traces go nowhere here: the Jaeger test below takes them.
    let (yaml, resource) = documented_vmware_gateway(
        &format!("http://127.0.0.1:{}", vigil_e2e::free_port()?),
        &format!("{}/api/v1/write", prometheus.url),
    )?;
    let (gateway, otlp) =
        host_gateway(&cluster, dir.path(), &yaml, "otel-rw-node-0", &resource).await?;
    send_metrics(&otlp, "checkout", &[gauge("checkout_queue_depth", 7.0)]).await?;
    let started = std::time::Instant::now();
    let series = eventually(
        "checkout_queue_depth in Prometheus",
        Duration::from_secs(60),
        || async {
            let answer = prometheus.api("query?query=checkout_queue_depth").await?;
            Ok(answer["data"]["result"]
                .as_array()
                .and_then(|r| r.first())
                .cloned())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}\n{}", gateway.log(), prometheus.log_tail()))?;
    eprintln!(
        "remote-written in {:.1}s: {series}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(series["value"][1], "7", "{series}");
    let labels = &series["metric"];
    for (label, value) in [
        ("k8s_cluster_name", "onprem"),
        ("cloud_provider", "vmware"),
        ("cloud_region", "dc1"),
        ("job", "checkout"),
    ] {
        assert_eq!(labels[label], value, "{label} in {series}");
    }
    Ok(())
}

/// The documented VMware gateway sends what its sampling keeps to a real Jaeger: every
/// error trace and every slow one (and, at 0%, nothing else), each with where it comes
/// from.
#[tokio::test]
async fn a_real_jaeger_gets_the_sampled_traces_with_their_cluster() -> anyhow::Result<()> {
    let cluster = TestCluster::start("otel-jaeger").await?;
    let dir = tempfile::tempdir()?;
    let jaeger = Jaeger::start(dir.path()).await?;
    // Its metrics go nowhere here: the remote-write test above takes them.
    let (yaml, resource) = documented_vmware_gateway(
        &jaeger.otlp_grpc,
        &format!("http://127.0.0.1:{}/api/v1/write", vigil_e2e::free_port()?),
    )?;
    let (gateway, otlp) =
        host_gateway(&cluster, dir.path(), &yaml, "otel-jaeger-node-0", &resource).await?;
    let ordinary: Vec<String> = (0..40).map(|i| trace_id("jaeger-ok", i)).collect();
    let errors: Vec<String> = (0..5).map(|i| trace_id("jaeger-error", i)).collect();
    let slow: Vec<String> = (0..5).map(|i| trace_id("jaeger-slow", i)).collect();
    let mut spans = Vec::new();
    spans.extend(ordinary.iter().map(|t| span(t, "GET /cart", 12, false)));
    spans.extend(errors.iter().map(|t| span(t, "POST /pay", 15, true)));
    spans.extend(slow.iter().map(|t| span(t, "GET /search", 900, false)));
    send(&otlp, "checkout", &spans).await?;
    let started = std::time::Instant::now();

    // tail_sampling decides 10 s after a trace's first span; batch waits up to 5 s more.
    let short = |id: &str| id.trim_start_matches('0').to_owned();
    let wanted: BTreeSet<String> = errors.iter().chain(&slow).map(|t| short(t)).collect();
    let traces = eventually(
        "every error and slow trace in Jaeger",
        Duration::from_secs(60),
        || async {
            let traces = jaeger.traces("checkout").await?;
            let found: BTreeSet<String> = traces
                .iter()
                .filter_map(|t| t["traceID"].as_str())
                .map(short)
                .collect();
            Ok(wanted.iter().all(|t| found.contains(t)).then_some(traces))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}\n{}", gateway.log(), jaeger.log_tail()))?;
    eprintln!(
        "{} traces queryable in Jaeger {:.1}s after they were sent",
        traces.len(),
        started.elapsed().as_secs_f64()
    );
    // Nothing else: the ordinary traces were sampled at 0%.
    let found: BTreeSet<String> = traces
        .iter()
        .filter_map(|t| t["traceID"].as_str())
        .map(short)
        .collect();
    assert_eq!(found, wanted);
    // Each says where it comes from: the service, and the cluster, provider and region
    // Vigil sets on the gateway.
    for trace in &traces {
        for process in trace["processes"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            assert_eq!(process["serviceName"], "checkout", "{process}");
            let tags: std::collections::BTreeMap<&str, &serde_json::Value> = process["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| Some((t["key"].as_str()?, &t["value"])))
                .collect();
            for (key, value) in [
                ("k8s.cluster.name", "onprem"),
                ("cloud.provider", "vmware"),
                ("cloud.region", "dc1"),
            ] {
                assert_eq!(
                    tags.get(key).and_then(|v| v.as_str()),
                    Some(value),
                    "{key} in {process}"
                );
            }
        }
    }
    Ok(())
}

/// The gateway of the VMware example, with its traces sent to a backend Collector: every
/// error trace and every slow trace arrives, and about `percentage` of the others.
#[tokio::test]
async fn the_gateway_keeps_what_its_sampling_promises() -> anyhow::Result<()> {
    // k8s_attributes watches pods from the start: give it a real API server.
    let cluster = TestCluster::start("otel").await?;
    let dir = tempfile::tempdir()?;
    let backend = Backend::start(dir.path(), "backend").await?;
    let yaml = vmware_gateway_config(&format!("http://{}", backend.endpoint), 20.0)?;
    let (gateway, otlp) = host_gateway(&cluster, dir.path(), &yaml, "otel-node-0", "").await?;

    let ordinary: Vec<String> = (0..1000).map(|i| trace_id("ok", i)).collect();
    let errors: Vec<String> = (0..50).map(|i| trace_id("error", i)).collect();
    let slow: Vec<String> = (0..50).map(|i| trace_id("slow", i)).collect();
    let mut spans = Vec::new();
    spans.extend(ordinary.iter().map(|t| span(t, "GET /cart", 12, false)));
    spans.extend(errors.iter().map(|t| span(t, "POST /pay", 15, true)));
    spans.extend(slow.iter().map(|t| span(t, "GET /search", 900, false)));
    for chunk in spans.chunks(100) {
        send(&otlp, "checkout", chunk).await?;
    }

    // tail_sampling decides 10 s after a trace's first span; batch waits up to 5 s more.
    let wanted: BTreeSet<&String> = errors.iter().chain(&slow).collect();
    eventually(
        "every error and slow trace at the backend",
        Duration::from_secs(60),
        || {
            let received = backend.spans();
            let wanted = &wanted;
            async move {
                let received: BTreeSet<String> =
                    received?.into_iter().map(|s| s.trace_id).collect();
                Ok(wanted.iter().all(|t| received.contains(*t)).then_some(()))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", gateway.log()))?;
    // Decisions for all traces were taken together; let the last batch land.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let received: BTreeSet<String> = backend.spans()?.into_iter().map(|s| s.trace_id).collect();
    let kept = ordinary.iter().filter(|t| received.contains(*t)).count();
    // 20 % of 1000, hashed from the trace ids: Binomial(1000, 0.2) has a standard
    // deviation of 12.6; these bounds are 6 of them away.
    assert!(
        (125..=275).contains(&kept),
        "{kept} of 1000 ordinary traces kept at 20 %"
    );
    assert_eq!(
        received.len(),
        kept + wanted.len(),
        "the backend received traces nobody sent"
    );
    drop(cluster);
    Ok(())
}

/// The local cluster as MemberCluster `onprem`, on VMware.
async fn local_onprem(client: &kube::Client) -> anyhow::Result<()> {
    let member = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "onprem"},
        "spec": {"provider": "vmware", "region": "dc1", "local": true}});
    Api::<MemberCluster>::all(client.clone())
        .patch(
            "onprem",
            &PatchParams::apply("vigil-e2e").force(),
            &Patch::Apply(&member),
        )
        .await?;
    Ok(())
}

/// The pipeline's status once `done` holds for it, for the current generation.
async fn wait_pipeline(
    api: &Api<TelemetryPipeline>,
    what: &str,
    done: impl Fn(&vigil::api::TelemetryPipelineStatus) -> bool,
) -> anyhow::Result<vigil::api::TelemetryPipelineStatus> {
    wait_pipeline_for(api, what, Duration::from_secs(60), done).await
}

/// [`wait_pipeline`] with a time limit.
async fn wait_pipeline_for(
    api: &Api<TelemetryPipeline>,
    what: &str,
    limit: Duration,
    done: impl Fn(&vigil::api::TelemetryPipelineStatus) -> bool,
) -> anyhow::Result<vigil::api::TelemetryPipelineStatus> {
    let result = eventually(what, limit, || async {
        // Only a status written for the current spec counts.
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
    status: &'a vigil::api::TelemetryPipelineStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The ConfigMap the gateway Deployment's pods mount.
async fn mounted(deployments: &Api<Deployment>) -> anyhow::Result<Option<String>> {
    Ok(deployments
        .get_opt("vigil-otel-shop")
        .await?
        .and_then(|d| d.spec)
        .and_then(|s| s.template.spec)
        .and_then(|p| p.volumes)
        .and_then(|v| v.into_iter().find_map(|v| v.config_map.map(|c| c.name))))
}

#[tokio::test]
async fn a_refused_configuration_never_replaces_the_running_one() -> anyhow::Result<()> {
    let cluster = TestCluster::start("otel-rollout").await?;
    let _operator = Operator::start_with_chart_rbac(&cluster, "vigil-telemetry", &[]).await?;
    let dir = tempfile::tempdir()?;
    let kubelet = ValidationKubelet::start(cluster.client(), dir.path());
    cluster.ensure_namespace("shop").await?;
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e").force();
    local_onprem(&client).await?;
    let pipelines: Api<TelemetryPipeline> = Api::namespaced(client.clone(), "shop");
    let pipeline = |endpoint: &str| {
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
            "metadata": {"name": "shop", "namespace": "shop"},
            "spec": {"clusters": ["onprem"], "mode": "gateway",
                "signals": {"traces": true, "metrics": false},
                "sampling": {"percentage": 10, "latencyThresholdMs": 500},
                "backends": {"vmware": {"tracesOtlpEndpoint": endpoint}}}})
    };
    pipelines
        .patch(
            "shop",
            &params,
            &Patch::Apply(&pipeline("http://tempo.observability.svc:4317")),
        )
        .await?;
    let first = wait_pipeline(&pipelines, "the first configuration rolled out", |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await?;
    let good = first.clusters[0]
        .active_config
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no active config: {first:?}"))?;
    assert_eq!(
        condition(&first, "Validated").map(|c| c.reason.as_str()),
        Some("Validated")
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    assert_eq!(mounted(&deployments).await?.as_deref(), Some(good.as_str()));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "shop");
    assert!(
        jobs.get_opt(&good).await?.is_some(),
        "the running configuration was validated by a Job"
    );
    assert!(kubelet.runs() >= 1, "the Collector validated it");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let stored = config_maps.get(&good).await?;
    assert_eq!(stored.immutable, Some(true));
    assert!(
        stored.data.unwrap_or_default()["config.yaml"]
            .contains("endpoint: tempo.observability.svc:4317"),
        "the ConfigMap holds the rendered configuration"
    );

    // A port forgotten: Vigil's own checks let it through, the Collector does not.
    pipelines
        .patch(
            "shop",
            &params,
            &Patch::Apply(&pipeline("http://tempo.observability.svc")),
        )
        .await?;
    let refused = wait_pipeline(&pipelines, "the broken configuration refused", |s| {
        condition(s, "Validated").is_some_and(|c| c.status == "False")
    })
    .await?;
    let validated = condition(&refused, "Validated")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no Validated condition"))?;
    assert_eq!(validated.reason, "ValidationFailed");
    assert!(
        validated.message.contains("missing port in address"),
        "the Collector's own words: {}",
        validated.message
    );
    assert_eq!(
        refused.clusters[0].active_config.as_deref(),
        Some(good.as_str())
    );
    let bad = refused.clusters[0]
        .candidate_config
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no candidate: {refused:?}"))?;
    assert_ne!(bad, good);
    assert_eq!(
        condition(&refused, "Ready").map(|c| c.reason.as_str()),
        Some("ValidationFailed")
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    eventually(
        "a ValidationFailed Event",
        Duration::from_secs(20),
        || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .iter()
                .find(|e| {
                    e.reason.as_deref() == Some("ValidationFailed")
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains(&bad) && n.contains(&good))
                })
                .map(|_| ()))
        },
    )
    .await?;
    // The collectors never moved: over several reconciles the Deployment still mounts the
    // good configuration.
    for _ in 0..5 {
        assert_eq!(mounted(&deployments).await?.as_deref(), Some(good.as_str()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Fixed: rolled out, and history beyond HISTORY is pruned.
    for port in [4317, 4318, 4319, 4320] {
        pipelines
            .patch(
                "shop",
                &params,
                &Patch::Apply(&pipeline(&format!("http://tempo.observability.svc:{port}"))),
            )
            .await?;
        let settled = wait_pipeline(&pipelines, "the fixed configuration rolled out", |s| {
            condition(s, "Ready").is_some_and(|c| c.status == "True")
                && s.clusters[0].candidate_config.is_none()
        })
        .await?;
        let active = settled.clusters[0]
            .active_config
            .clone()
            .unwrap_or_default();
        assert_eq!(
            mounted(&deployments).await?.as_deref(),
            Some(active.as_str())
        );
    }
    let kept = eventually(
        "old configurations pruned",
        Duration::from_secs(20),
        || async {
            let list = config_maps
                .list(&ListParams::default().labels("vigil.io/telemetry-pipeline=shop"))
                .await?;
            let names: Vec<String> = list.items.iter().map(ResourceExt::name_any).collect();
            Ok(
                (names.len() <= 1 + vigil::controllers::telemetry_pipeline::HISTORY)
                    .then_some(names),
            )
        },
    )
    .await?;
    assert!(
        !kept.contains(&good),
        "the first configuration was pruned: {kept:?}"
    );

    // Deleted: the finalizer takes everything away first, the cluster-wide RBAC too.
    let cluster_wide = "vigil-otel-shop-shop";
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    assert!(roles.get_opt(cluster_wide).await?.is_some());
    assert!(
        pipelines
            .get("shop")
            .await?
            .finalizers()
            .contains(&vigil::controllers::telemetry_pipeline::FINALIZER.to_owned())
    );
    pipelines.delete("shop", &DeleteParams::default()).await?;
    eventually("the pipeline gone", Duration::from_secs(30), || async {
        Ok(pipelines.get_opt("shop").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        roles.get_opt(cluster_wide).await?.is_none(),
        "ClusterRole left"
    );
    assert!(
        bindings.get_opt(cluster_wide).await?.is_none(),
        "ClusterRoleBinding left"
    );
    assert_eq!(left_of(&deployments).await?, Vec::<String>::new());
    assert_eq!(left_of(&config_maps).await?, Vec::<String>::new());
    assert_eq!(left_of(&jobs).await?, Vec::<String>::new());
    Ok(())
}

/// The pipeline's objects of one kind that are not being deleted.
async fn left_of<K>(api: &Api<K>) -> anyhow::Result<Vec<String>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .map(ResourceExt::name_any)
        .filter(|name| name.starts_with("vigil-otel-shop"))
        .collect())
}

/// The configuration the pipeline's collectors run, from their ConfigMap.
async fn running_config(
    config_maps: &Api<ConfigMap>,
    status: &vigil::api::TelemetryPipelineStatus,
) -> anyhow::Result<String> {
    let name = status
        .clusters
        .first()
        .and_then(|c| c.active_config.clone())
        .ok_or_else(|| anyhow::anyhow!("no active config: {status:?}"))?;
    Ok(config_maps
        .get(&name)
        .await?
        .data
        .unwrap_or_default()
        .remove("config.yaml")
        .unwrap_or_default())
}

/// Waits for an Event of `reason` on the pipeline whose note contains `text`.
async fn wait_event(events: &Api<Event>, reason: &str, text: &str) -> anyhow::Result<String> {
    eventually(
        &format!("a {reason} Event"),
        Duration::from_secs(30),
        || async {
            let list = events.list(&ListParams::default()).await?;
            Ok(list.items.iter().find_map(|e| {
                (e.reason.as_deref() == Some(reason))
                    .then(|| e.note.clone().unwrap_or_default())
                    .filter(|n| n.contains(text))
            }))
        },
    )
    .await
}

#[tokio::test]
async fn sampling_rises_while_an_slo_burns_in_a_real_prometheus() -> anyhow::Result<()> {
    let cluster = TestCluster::start("otel-boost").await?;
    let _operator =
        Operator::start_with_chart_rbac(&cluster, "vigil-boost", &["--status-interval-seconds=2"])
            .await?;
    let dir = tempfile::tempdir()?;
    let _kubelet = ValidationKubelet::start(cluster.client(), dir.path());
    cluster.ensure_namespace("shop").await?;
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e").force();

    // 20 % of requests fail against a 99 % objective: 20 times the budget, above the
    // 14.4x page threshold over 1 h and over 5 min as soon as Prometheus has two scrapes.
    let exporter = Exporter::start(80.0, 20.0).await?;
    let prometheus = Prometheus::start(cluster.dir(), "shop", &exporter.address).await?;
    let slos: Api<ServiceLevelObjective> = Api::namespaced(client.clone(), "shop");
    let slo = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {"service": "checkout", "objective": 99, "window": "30d",
            "sli": {"ratio": {"errors": "http_requests_total{job=\"shop\",code=\"500\"}",
                "total": "http_requests_total{job=\"shop\"}"}},
            "output": {"kind": "ConfigMap"}, "prometheus": {"url": prometheus.url}}});
    slos.patch("checkout", &params, &Patch::Apply(&slo)).await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let rules = eventually("the SLO's rule file", Duration::from_secs(30), || async {
        Ok(config_maps
            .get_opt("checkout-slo-rules")
            .await?
            .and_then(|c| c.data)
            .and_then(|d| d.get("checkout.rules.yaml").cloned()))
    })
    .await?;
    std::fs::write(prometheus.rules_dir.join("checkout.rules.yaml"), rules)?;
    prometheus.reload().await?;

    local_onprem(&client).await?;
    let pipelines: Api<TelemetryPipeline> = Api::namespaced(client.clone(), "shop");
    let pipeline = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"clusters": ["onprem"], "mode": "gateway",
            "signals": {"traces": true, "metrics": false},
            "sampling": {"percentage": 10,
                "sloBoost": [{"sloRef": {"name": "checkout"}, "percentage": 75, "holdFor": "10s"}]},
            "backends": {"vmware": {"tracesOtlpEndpoint": "http://tempo.observability.svc:4317"}}}});
    pipelines
        .patch("shop", &params, &Patch::Apply(&pipeline))
        .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), "shop");

    let boosted = wait_pipeline_for(
        &pipelines,
        "sampling boosted and rolled out",
        Duration::from_secs(120),
        |s| {
            s.sampling.as_ref().is_some_and(|p| p.percentage == 75.0)
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\nprometheus:\n{}", prometheus.log_tail()))?;
    let sampling = boosted.sampling.clone().unwrap_or_default();
    assert_eq!(sampling.boosted_by.as_deref(), Some("checkout"));
    assert!(
        sampling.reason.contains("SLO checkout burns"),
        "{}",
        sampling.reason
    );
    assert!(
        running_config(&config_maps, &boosted)
            .await?
            .contains("sampling_percentage: 75.0"),
        "the collectors run the boosted configuration"
    );
    let note = wait_event(&events, "SamplingBoosted", "from 10% to 75%").await?;
    assert!(note.contains("checkout"), "{note}");

    // The errors stop: once the 5-minute error ratio is below the threshold and 10 s have
    // passed, sampling returns.
    exporter.set_rates(100.0, 0.0);
    let calm = wait_pipeline_for(
        &pipelines,
        "the boost holding while the burn has just stopped",
        Duration::from_secs(240),
        |s| {
            s.sampling
                .as_ref()
                .is_some_and(|p| p.calm_since.is_some() || p.percentage == 10.0)
        },
    )
    .await?;
    let restored = wait_pipeline_for(
        &pipelines,
        "sampling back to 10 % and rolled out",
        Duration::from_secs(60),
        |s| {
            s.sampling.as_ref().is_some_and(|p| p.percentage == 10.0)
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        },
    )
    .await?;
    assert!(
        calm.sampling.as_ref().is_some_and(|p| p.percentage == 75.0),
        "the boost held after the burn stopped (hysteresis): {:?}",
        calm.sampling
    );
    assert_eq!(
        restored.sampling.clone().unwrap_or_default().boosted_by,
        None
    );
    assert!(
        running_config(&config_maps, &restored)
            .await?
            .contains("sampling_percentage: 10.0"),
        "the collectors run the base configuration again"
    );
    wait_event(&events, "SamplingRestored", "from 75% to 10%").await?;
    Ok(())
}

/// The pods of Deployment `app` once there are `count`.
async fn pods_of(pods: &Api<Pod>, app: &str, count: usize) -> anyhow::Result<Vec<Pod>> {
    eventually(
        &format!("{count} pods of {app}"),
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await?;
            Ok((list.items.len() == count).then_some(list.items))
        },
    )
    .await
}

#[tokio::test]
async fn the_webhook_adds_the_sidecar_to_the_pods_that_ask_and_no_other() -> anyhow::Result<()> {
    let cluster = TestCluster::start("otel-sidecar").await?;
    let port = vigil_e2e::free_port()?;
    let _operator = Operator::start_with_chart_rbac(
        &cluster,
        "vigil-sidecar",
        &[
            &format!("--webhook-addr=127.0.0.1:{port}"),
            &format!("--webhook-url=https://127.0.0.1:{port}"),
            "--webhook-tls-check-seconds=1",
        ],
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let _kubelet = ValidationKubelet::start(cluster.client(), dir.path());
    cluster.ensure_namespace("shop").await?;
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e").force();
    local_onprem(&client).await?;
    // Asked for by a SupervisedWorkload (read by the webhook from its own watch).
    let supervised = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"target": {"kind": "Deployment", "name": "orders"},
            "isolation": {"profile": "none"},
            "telemetry": {"pipelineRef": {"name": "shop"}}}});
    Api::<SupervisedWorkload>::namespaced(client.clone(), "shop")
        .patch("orders", &params, &Patch::Apply(&supervised))
        .await?;
    let pipelines: Api<TelemetryPipeline> = Api::namespaced(client.clone(), "shop");
    let pipeline = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
        "metadata": {"name": "shop", "namespace": "shop"},
        "spec": {"clusters": ["onprem"], "mode": "sidecar", "memoryLimitMiB": 128,
            "signals": {"traces": true, "metrics": false},
            "backends": {"vmware": {"tracesOtlpEndpoint": "http://tempo.observability.svc:4317"}}}});
    pipelines
        .patch("shop", &params, &Patch::Apply(&pipeline))
        .await?;
    let ready = wait_pipeline(&pipelines, "the sidecar configuration validated", |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await?;
    let config = ready.clusters[0].active_config.clone().unwrap_or_default();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    assert!(
        deployments.get_opt("vigil-otel-shop").await?.is_none(),
        "a sidecar pipeline runs no gateway"
    );

    // Three Deployments: one asks by annotation, one through its SupervisedWorkload, one
    // does not ask.
    let deployment = |name: &str, annotations: serde_json::Value| {
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {"containers": [{"name": "app", "image": format!("registry.example/{name}:1")}]}}}})
    };
    // The webhook reads pipelines from its own watch: a dry-run pod (which goes through
    // admission) shows when it has seen the validated configuration.
    let probe: Pod = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "probe", "namespace": "shop",
            "annotations": {"vigil.io/telemetry-pipeline": "shop"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/probe:1"}]}}))?;
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..kube::api::PostParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    eventually(
        "the webhook serving the sidecar",
        Duration::from_secs(30),
        || async {
            let admitted = pods.create(&dry_run, &probe).await?;
            Ok(admitted
                .spec
                .and_then(|s| s.init_containers)
                .is_some_and(|c| !c.is_empty())
                .then_some(()))
        },
    )
    .await?;
    for (name, annotations) in [
        (
            "checkout",
            serde_json::json!({"vigil.io/telemetry-pipeline": "shop"}),
        ),
        ("orders", serde_json::json!({})),
        ("ledger", serde_json::json!({})),
    ] {
        deployments
            .patch(name, &params, &Patch::Apply(&deployment(name, annotations)))
            .await?;
    }
    for app in ["checkout", "orders"] {
        for pod in pods_of(&pods, app, 2).await? {
            let spec = pod.spec.clone().unwrap_or_default();
            let init = spec.init_containers.clone().unwrap_or_default();
            let sidecar = init
                .first()
                .ok_or_else(|| anyhow::anyhow!("{app}: no sidecar in {}", pod.name_any()))?;
            assert_eq!(sidecar.name, "otelcol");
            assert_eq!(
                sidecar.restart_policy.as_deref(),
                Some("Always"),
                "a native sidecar"
            );
            assert_eq!(
                sidecar.image.as_deref(),
                Some("otel/opentelemetry-collector-contrib:0.161.0")
            );
            let volume = spec
                .volumes
                .unwrap_or_default()
                .into_iter()
                .find(|v| v.name == "vigil-otelcol-config")
                .and_then(|v| v.config_map)
                .map(|c| c.name);
            assert_eq!(
                volume.as_deref(),
                Some(config.as_str()),
                "the validated configuration"
            );
            let env = spec.containers[0].env.clone().unwrap_or_default();
            assert!(
                env.iter().any(|e| e.name == "OTEL_EXPORTER_OTLP_ENDPOINT"
                    && e.value.as_deref() == Some("http://localhost:4318")),
                "{app}: the app exports to its sidecar"
            );
            let note = pod
                .annotations()
                .get("vigil.io/telemetry-sidecar")
                .cloned()
                .unwrap_or_default();
            assert!(note.contains(&config), "{note}");
        }
    }
    for pod in pods_of(&pods, "ledger", 2).await? {
        let spec = pod.spec.clone().unwrap_or_default();
        assert!(
            spec.init_containers.unwrap_or_default().is_empty(),
            "ledger did not ask"
        );
        assert!(spec.containers[0].env.is_none(), "ledger is left alone");
        assert!(!pod.annotations().contains_key("vigil.io/telemetry-sidecar"));
    }

    // TLS rotation while serving: the webhook's Secret is lost; the operator makes a new
    // CA and serving certificate, serves them and puts the CA into the configuration,
    // without a restart. New pods still get their sidecar (with failurePolicy Ignore, a
    // TLS mismatch would admit them unchanged).
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use k8s_openapi::api::core::v1::Secret;
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let ca_bundle = |c: &MutatingWebhookConfiguration| {
        c.webhooks
            .as_ref()
            .and_then(|w| w.first())
            .and_then(|w| w.client_config.ca_bundle.clone())
            .map(|b| b.0)
            .unwrap_or_default()
    };
    let before = ca_bundle(&configurations.get("vigil").await?);
    assert!(!before.is_empty(), "the configuration has a caBundle");
    Api::<Secret>::namespaced(client.clone(), "vigil-system")
        .delete("vigil-webhook-tls", &Default::default())
        .await?;
    eventually(
        "a new CA in the webhook configuration",
        Duration::from_secs(30),
        || async {
            let now = ca_bundle(&configurations.get("vigil").await?);
            Ok((!now.is_empty() && now != before).then_some(()))
        },
    )
    .await?;
    deployments
        .patch(
            "payments",
            &params,
            &Patch::Apply(&deployment(
                "payments",
                serde_json::json!({"vigil.io/telemetry-pipeline": "shop"}),
            )),
        )
        .await?;
    for pod in pods_of(&pods, "payments", 2).await? {
        let init = pod.spec.and_then(|s| s.init_containers).unwrap_or_default();
        assert_eq!(
            init.first().map(|c| c.name.as_str()),
            Some("otelcol"),
            "the webhook serves the renewed certificate"
        );
    }
    Ok(())
}
