//! The harness itself and the CRDs on a real API server.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use vigil_e2e::{TestCluster, eventually, tool};

#[tokio::test]
async fn the_crds_are_accepted_established_and_explained() {
    let cluster = TestCluster::start("crds").await.expect("cluster");
    crds_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn crds_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    cluster.install_crds().await?;
    // The API server publishes a new CRD's OpenAPI schema a moment after it is Established.
    let kubectl = tool("kubectl")?;
    let text = eventually("kubectl explain", Duration::from_secs(30), || {
        let kubectl = kubectl.clone();
        async move {
            let explain = std::process::Command::new(&kubectl)
                .args(["explain", "memberclusters.spec.dns.clusterDomain"])
                .env("KUBECONFIG", cluster.kubeconfig())
                .output()?;
            anyhow::ensure!(
                explain.status.success(),
                "{}",
                String::from_utf8_lossy(&explain.stderr)
            );
            Ok(Some(String::from_utf8_lossy(&explain.stdout).into_owned()))
        }
    })
    .await?;
    assert!(
        text.contains("The cluster's own DNS domain for services."),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_pod_is_scheduled_and_runs_on_a_simulated_node() {
    let cluster = TestCluster::start("pods").await.expect("cluster");
    pod_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn pod_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let namespace = cluster.namespace("pods").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &namespace.name);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hello"},
        "spec": {"containers": [{"name": "hello", "image": "registry.invalid/hello:1"}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let node = eventually("pod Running", Duration::from_secs(60), || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("hello").await?;
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
            anyhow::ensure!(
                phase.as_deref() == Some("Running"),
                "pod is {phase:?}: {:?}",
                pod.status.and_then(|s| s.conditions)
            );
            Ok(pod.spec.and_then(|s| s.node_name))
        }
    })
    .await?;
    assert!(node.starts_with("pods-node-"), "scheduled on {node}");
    Ok(())
}
