//! The OpenTelemetry Collector configurations of `TelemetryPipeline`: golden snapshots per
//! provider and mode (review changes with `cargo insta review`), and the properties every
//! configuration must have: processors in order, only referenced components, and no secret
//! in the file.

use std::fmt::Write as _;

use vigil::api::member_cluster::Provider;
use vigil::inventory::Inventory;
use vigil::manifest;
use vigil::render::otel::{
    CollectorConfig, SIDECAR_RESOURCE, SIDECAR_VOLUME, collector_container,
    render_collector_configs, site_resource,
};

const BACKENDS: &str = "  backends:
    aws: {region: eu-west-1, xray: true, emfLogGroup: /shop/metrics,
      ampRemoteWriteUrl: https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write,
      credentialsSecretRef: {name: aws-telemetry}}
    aliyun: {endpoint: cn-hangzhou.log.aliyuncs.com, project: shop, logstore: traces,
      credentialsSecretRef: {name: sls-telemetry}}
    vmware: {tracesOtlpEndpoint: tempo.observability.svc:4317,
      prometheusRemoteWriteUrl: http://mimir.observability.svc/api/v1/push,
      lokiUrl: http://loki.observability.svc:3100, opensearchUrl: https://opensearch.observability.svc:9200}
";

fn fixture(spec: &str) -> Inventory {
    let mut yaml = String::new();
    for (i, (name, provider)) in [("aws", "aws"), ("aliyun", "aliyun"), ("vmware", "vmware")]
        .iter()
        .enumerate()
    {
        let _ = write!(
            yaml,
            "---\napiVersion: vigil.io/v1alpha1\nkind: MemberCluster\nmetadata: {{name: {name}}}\nspec:\n  provider: {provider}\n  region: r{i}\n  local: {}\n{}",
            i == 0,
            if i == 0 {
                String::new()
            } else {
                format!(
                    "  apiServer: {{kubeconfigSecretRef: {{namespace: vigil-system, name: {name}-kubeconfig, key: kubeconfig}}}}\n"
                )
            }
        );
    }
    let _ = write!(
        yaml,
        "---\napiVersion: vigil.io/v1alpha1\nkind: TelemetryPipeline\nmetadata: {{name: shop, namespace: shop}}\nspec:\n  clusters: [aws, aliyun, vmware]\n{spec}{BACKENDS}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fixture.yaml");
    std::fs::write(&path, yaml).expect("write");
    let loaded = manifest::load(&[path], "default").expect("readable");
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    loaded.inventory
}

fn render(spec: &str) -> Vec<CollectorConfig> {
    let inventory = fixture(spec);
    render_collector_configs(&inventory.telemetry_pipelines[0], &inventory, None).expect("renders")
}

fn check(config: &CollectorConfig) {
    let yaml = &config.yaml;
    let value: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("YAML");
    // Processors: memory_limiter first, batch last, in every pipeline.
    for (signal, pipeline) in value["service"]["pipelines"]
        .as_object()
        .expect("pipelines")
    {
        let chain: Vec<&str> = pipeline["processors"]
            .as_array()
            .expect("processors")
            .iter()
            .filter_map(|p| p.as_str())
            .collect();
        assert_eq!(chain.first(), Some(&"memory_limiter"), "{signal}");
        assert_eq!(chain.last(), Some(&"batch"), "{signal}");
        // Every referenced component is defined.
        for (kind, list) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            for name in pipeline[list].as_array().expect("list") {
                let name = name.as_str().expect("name");
                assert!(
                    value[kind].get(name).is_some(),
                    "{}: {kind} {name} undefined",
                    config.cluster
                );
            }
        }
    }
    // Credentials are referenced, never inlined.
    for env in &config.env {
        assert!(yaml.contains(&format!("${{env:{}}}", env.name)) || env.name.starts_with("AWS_"));
    }
    fn credentials_from_env(value: &serde_json::Value, cluster: &str) {
        if let Some(map) = value.as_object() {
            for (key, child) in map {
                let key = key.to_lowercase();
                if key.contains("secret") || key.contains("ak-id") || key.contains("access_key") {
                    assert!(
                        child.as_str().is_some_and(|v| v.starts_with("${env:")),
                        "{cluster}: {key} is not taken from the environment"
                    );
                }
                credentials_from_env(child, cluster);
            }
        }
    }
    credentials_from_env(&value, &config.cluster);
}

#[test]
fn gateway_per_provider() {
    let configs = render(
        "  mode: gateway\n  signals: {traces: true, metrics: true, logs: true}\n  sampling: {percentage: 10, latencyThresholdMs: 500}\n",
    );
    for config in &configs {
        check(config);
    }
    assert_eq!(
        configs[1]
            .env
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>(),
        [
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        ]
    );
    insta::assert_snapshot!("gateway-aws", configs[0].yaml);
    insta::assert_snapshot!("gateway-aliyun", configs[1].yaml);
    insta::assert_snapshot!("gateway-vmware", configs[2].yaml);
}

#[test]
fn agent_and_sidecar() {
    let agent = render("  mode: agent\n");
    check(&agent[0]);
    assert!(agent[0].yaml.contains("spec.nodeName=${env:K8S_NODE_NAME}"));
    assert!(agent[0].yaml.contains("node_from_env_var: K8S_NODE_NAME"));
    insta::assert_snapshot!("agent-aws", agent[0].yaml);
    insta::assert_snapshot!("agent-aliyun", agent[1].yaml);
    insta::assert_snapshot!("agent-vmware", agent[2].yaml);
    let sidecar = render("  mode: sidecar\n  sampling: {percentage: 100, keepErrors: false}\n");
    for config in &sidecar {
        check(config);
        assert!(
            !config.yaml.contains("k8s_attributes"),
            "the sidecar knows its pod"
        );
        let value: serde_json::Value = serde_yaml_ng::from_str(&config.yaml).expect("YAML");
        assert!(
            value["receivers"].get("prometheus").is_none(),
            "a sidecar does not scrape"
        );
        assert!(
            !config.yaml.contains("k8s_api"),
            "a sidecar runs as its pod's ServiceAccount, which may not read nodes"
        );
    }
    // The sidecar gets its pod from the downward API, and holds the app until it is up.
    let inventory = fixture("  mode: sidecar\n");
    let pipeline = &inventory.telemetry_pipelines[0];
    let site = site_resource("onprem", Provider::Vmware, "dc1");
    assert_eq!(
        site,
        "k8s.cluster.name=onprem,cloud.provider=vmware,cloud.region=dc1"
    );
    assert_eq!(
        site_resource("hangzhou", Provider::Aliyun, "cn-hangzhou"),
        "k8s.cluster.name=hangzhou,cloud.provider=alibaba_cloud,cloud.region=cn-hangzhou"
    );
    let container = collector_container(pipeline, &[], &site, SIDECAR_VOLUME);
    let env = container["env"].as_array().expect("env");
    let attributes = env
        .iter()
        .find(|e| e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        .expect("OTEL_RESOURCE_ATTRIBUTES");
    assert_eq!(attributes["value"], format!("{SIDECAR_RESOURCE},{site}"));
    // Kubernetes expands `$(NAME)` only for variables defined before it.
    let position = |name: &str| env.iter().position(|e| e["name"] == name);
    for variable in [
        "K8S_POD_NAME",
        "K8S_NAMESPACE_NAME",
        "K8S_POD_UID",
        "K8S_NODE_NAME",
    ] {
        assert!(SIDECAR_RESOURCE.contains(&format!("$({variable})")));
        assert!(
            position(variable) < position("OTEL_RESOURCE_ATTRIBUTES"),
            "{variable}"
        );
    }
    assert_eq!(container["startupProbe"]["httpGet"]["port"], 13133);
    let gateway = fixture("  mode: gateway\n");
    let container = collector_container(&gateway.telemetry_pipelines[0], &[], &site, "config");
    assert!(container.get("startupProbe").is_none(), "{container}");
    // A gateway says where it runs; the pods it serves are found by k8s_attributes.
    let attributes = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        .cloned();
    assert_eq!(
        attributes.map(|a| a["value"].clone()),
        Some(site.clone().into())
    );
    insta::assert_snapshot!("sidecar-aws", sidecar[0].yaml);
    insta::assert_snapshot!("sidecar-aliyun", sidecar[1].yaml);
    insta::assert_snapshot!("sidecar-vmware", sidecar[2].yaml);
}

#[test]
fn a_boost_overrides_the_sampling_percentage() {
    let inventory = fixture("  sampling: {percentage: 5}\n");
    let boosted =
        render_collector_configs(&inventory.telemetry_pipelines[0], &inventory, Some(50.0))
            .expect("renders");
    assert!(
        boosted[0].yaml.contains("sampling_percentage: 50.0"),
        "{}",
        boosted[0].yaml
    );
}
