//! Vigil as users run it: the operator image of `make image` on a real node (containerd,
//! runc, a kubelet), installed with the unchanged chart and Helm's defaults, from an OCI
//! registry (the chart packaged with `helm package` and pushed with `helm push`, as
//! `make dist` packages it for a release).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use vigil::api::{AcmeCertificate, MemberCluster, ServiceLevelObjective};
use vigil_e2e::{
    DnsOptions, DnsServer, Pebble, PebbleOptions, Registry, TestCluster, eventually, repo,
};

/// The image `make image` writes, and its name.
fn operator_image() -> anyhow::Result<(PathBuf, String)> {
    let version = env!("CARGO_PKG_VERSION");
    let archive = repo().join(format!("target/image/vigil-{version}-amd64.tar"));
    anyhow::ensure!(
        archive.is_file(),
        "{} is missing: run `make image`",
        archive.display()
    );
    Ok((archive, format!("ghcr.io/vigil-operator/vigil:{version}")))
}

fn pod_phase(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn a_real_node_runs_the_operator_image_and_leaves_nothing_behind() {
    let mut cluster = TestCluster::start_with_node("node").await.expect("cluster");
    let result = node_scenario(&cluster).await;
    if result.is_ok() {
        let left = cluster.stop_node();
        assert!(left.is_empty(), "the node left behind: {left:#?}");
    } else if let Some(node) = cluster.node() {
        node.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
}

async fn node_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    let (archive, image) = operator_image()?;
    node.import_image(&archive)?;
    let ns = cluster.namespace("node").await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), &ns.name);
    // `vigil --version` in the image, as the restricted Pod Security Standard allows it.
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "version"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "vigil", "image": image, "imagePullPolicy": "Never",
                "args": ["--version"],
                "securityContext": {
                    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let done = eventually("the version pod Succeeded", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            let pod = pods.get("version").await?;
            anyhow::ensure!(
                pod_phase(&pod) != "Failed",
                "the pod failed: {:?}",
                pod.status
            );
            Ok((pod_phase(&pod) == "Succeeded").then_some(pod))
        }
    })
    .await?;
    let spec = done.spec.clone().unwrap_or_default();
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
    let ip = done
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let prefix = node.pod_cidr.trim_end_matches("0/24");
    assert!(ip.starts_with(prefix), "pod IP {ip} in {}", node.pod_cidr);
    // The log as the kubelet kept it, through the API server.
    let log = pods.logs("version", &LogParams::default()).await?;
    let revision = String::from_utf8(
        std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(repo())
            .output()?
            .stdout,
    )?;
    assert!(
        log.starts_with(&format!("vigil {} (revision ", env!("CARGO_PKG_VERSION")))
            && log.contains(revision.trim()),
        "vigil --version in the image printed {log:?}"
    );
    Ok(())
}

async fn apply(client: &Client, object: serde_json::Value) -> anyhow::Result<()> {
    let object: kube::core::DynamicObject = serde_json::from_value(object)?;
    let types = object.types.clone().unwrap_or_default();
    let gvk = kube::core::GroupVersionKind::try_from(&types)?;
    let resource = kube::core::ApiResource::from_gvk(&gvk);
    let api: Api<kube::core::DynamicObject> = match object.namespace() {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &object.name_any(),
        &PatchParams::apply("vigil-e2e").force(),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

fn slo(objective: f64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {
            "service": "checkout", "objective": objective,
            "sli": {"ratio": {
                "errors": "http_requests_total{job=\"checkout\",code=~\"5..\"}",
                "total": "http_requests_total{job=\"checkout\"}",
            }},
            "output": {"kind": "ConfigMap"},
        },
    })
}

/// An object's generation, the generation its status was written for, and whether it is Ready.
type Readiness = (Option<i64>, Option<i64>, bool);

async fn wait_ready<K>(
    api: &Api<K>,
    name: &str,
    generation_of: fn(&K) -> Readiness,
) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    eventually(&format!("{name} Ready"), Duration::from_secs(120), || {
        let api = api.clone();
        let name = name.to_owned();
        async move {
            let Some(object) = api.get_opt(&name).await? else {
                return Ok(None);
            };
            let (generation, observed, ready) = generation_of(&object);
            Ok((ready && generation.is_some() && generation == observed).then_some(()))
        }
    })
    .await
}

fn ready_of(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn leader(leases: &Api<Lease>) -> anyhow::Result<Option<String>> {
    Ok(leases
        .get_opt("vigil-leader")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

async fn vigil_pods(pods: &Api<Pod>) -> anyhow::Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=vigil"))
        .await?
        .items)
}

#[tokio::test]
async fn the_chart_runs_vigil_in_a_pod_on_a_real_node() {
    let cluster = TestCluster::start_with_node("chart")
        .await
        .expect("cluster");
    chart_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn chart_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    let (archive, _) = operator_image()?;
    node.import_image(&archive)?;
    let client = cluster.client();
    // The restricted Pod Security Standard, enforced where Vigil runs.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["vigil-system", "shop"] {
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
        }))?;
        namespaces
            .patch(
                name,
                &PatchParams::apply("vigil-e2e"),
                &Patch::Apply(&namespace),
            )
            .await?;
    }

    // The chart as a release ships it: packaged, pushed to an OCI registry.
    let version = env!("CARGO_PKG_VERSION");
    let registry = Registry::start(cluster.dir()).await?;
    let packages = cluster.dir().join("charts");
    let source = repo().join("charts/vigil");
    cluster.run_tool(
        "helm",
        &[
            "package",
            &source.to_string_lossy(),
            "--destination",
            &packages.to_string_lossy(),
        ],
    )?;
    let package = packages.join(format!("vigil-{version}.tgz"));
    let pushed = cluster.run_tool(
        "helm",
        &[
            "push",
            &package.to_string_lossy(),
            &registry.oci("charts"),
            "--plain-http",
        ],
    )?;
    eprintln!("{}", pushed.trim());
    let chart = registry.oci("charts/vigil");

    // Helm's defaults: one replica of the image, leader election, the webhook.
    let installing = Instant::now();
    cluster.run_tool(
        "helm",
        &[
            "install",
            "vigil",
            &chart,
            "--version",
            version,
            "--plain-http",
            "--namespace",
            "vigil-system",
            "--wait",
            "--timeout",
            "180s",
        ],
    )?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "vigil-system");
    let running = vigil_pods(&pods).await?;
    anyhow::ensure!(running.len() == 1, "one operator pod: {}", running.len());
    let pod = &running[0];
    anyhow::ensure!(
        pod_phase(pod) == "Running" && pod_ready(pod),
        "the operator pod is Running and Ready (/readyz): {:?}",
        pod.status
    );
    eprintln!(
        "chart installed, operator pod Ready in {:.1}s",
        installing.elapsed().as_secs_f64()
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), "vigil-system");
    let holder = eventually("the pod holds the Lease", Duration::from_secs(60), || {
        let leases = leases.clone();
        async move { leader(&leases).await }
    })
    .await?;
    assert_eq!(holder, pod.name_any(), "the Lease holder is the pod");

    // Its logs, as `kubectl logs` shows them: one JSON record a line.
    let logs = cluster.run_tool("kubectl", &["-n", "vigil-system", "logs", "deploy/vigil"])?;
    let records: Vec<serde_json::Value> = logs
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("a log line is not JSON ({e}):\n{logs}"))?;
    assert!(
        records.iter().any(|r| r["message"] == "became the leader"),
        "the log says it became the leader:\n{logs}"
    );

    // It reconciles: an SLO and a MemberCluster Ready.
    apply(&client, slo(99.0)).await?;
    apply(
        &client,
        serde_json::json!({
            "apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": "local"},
            "spec": {"provider": "aws", "region": "eu-west-1", "local": true},
        }),
    )
    .await?;
    let slos: Api<ServiceLevelObjective> = Api::namespaced(client.clone(), "shop");
    let members: Api<MemberCluster> = Api::all(client.clone());
    wait_ready(&slos, "checkout", |s| {
        let status = s.status.clone().unwrap_or_default();
        (
            s.metadata.generation,
            status.observed_generation,
            ready_of(&status.conditions),
        )
    })
    .await?;
    wait_ready(&members, "local", |m| {
        let status = m.status.clone().unwrap_or_default();
        (
            m.metadata.generation,
            status.observed_generation,
            ready_of(&status.conditions),
        )
    })
    .await?;

    // And a certificate: the pod asks Pebble on this machine (through HOST_ADDRESS) and
    // serves the HTTP-01 challenge itself; Pebble's resolver sends the name to the pod.
    issue_certificate(cluster, &client, pod).await?;

    // The webhook is served from the pod: a pod of a supervised Deployment is isolated.
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    eventually(
        "the webhook configuration with its CA",
        Duration::from_secs(60),
        || {
            let webhooks = webhooks.clone();
            async move {
                Ok(webhooks.get_opt("vigil").await?.filter(|w| {
                    w.webhooks
                        .iter()
                        .flatten()
                        .all(|h| h.client_config.ca_bundle.is_some())
                }))
            }
        },
    )
    .await?;
    for file in ["checkout.yaml", "checkout-deployment.yaml"] {
        let text = std::fs::read_to_string(repo().join("examples/supervised-workload").join(file))?;
        for document in text.split("\n---") {
            let value: serde_json::Value = serde_yaml_ng::from_str(document)?;
            if !value.is_null() {
                apply(&client, value).await?;
            }
        }
    }
    let shop_pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    eventually(
        "a checkout pod isolated by the webhook",
        Duration::from_secs(120),
        || {
            let shop_pods = shop_pods.clone();
            async move {
                Ok(shop_pods
                    .list(&ListParams::default().labels("app=checkout"))
                    .await?
                    .items
                    .into_iter()
                    .find(|p| p.annotations().contains_key("vigil.io/isolation")))
            }
        },
    )
    .await?;

    // Two replicas: the new one stands by, the leader keeps the Lease and goes on working.
    cluster.run_tool(
        "helm",
        &[
            "upgrade",
            "vigil",
            &chart,
            "--version",
            version,
            "--plain-http",
            "--namespace",
            "vigil-system",
            "--reuse-values",
            "--set",
            "replicas=2",
            "--wait",
            "--timeout",
            "180s",
        ],
    )?;
    let both = vigil_pods(&pods).await?;
    anyhow::ensure!(
        both.len() == 2 && both.iter().all(pod_ready),
        "two Ready replicas: {:?}",
        both.iter()
            .map(|p| (p.name_any(), pod_phase(p)))
            .collect::<Vec<_>>()
    );
    assert_eq!(leader(&leases).await?.as_deref(), Some(holder.as_str()));
    apply(&client, slo(99.5)).await?;
    wait_ready(&slos, "checkout", |s| {
        let status = s.status.clone().unwrap_or_default();
        (
            s.metadata.generation,
            status.observed_generation,
            ready_of(&status.conditions),
        )
    })
    .await?;
    assert_eq!(leader(&leases).await?.as_deref(), Some(holder.as_str()));

    // Uninstalled, the CRDs and the objects stay.
    cluster.run_tool(
        "helm",
        &[
            "uninstall",
            "vigil",
            "--namespace",
            "vigil-system",
            "--wait",
        ],
    )?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    anyhow::ensure!(
        crds.get_opt("servicelevelobjectives.vigil.io")
            .await?
            .is_some(),
        "helm uninstall kept the CRDs"
    );
    anyhow::ensure!(slos.get_opt("checkout").await?.is_some(), "and the SLO");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "vigil-system");
    anyhow::ensure!(
        deployments.get_opt("vigil").await?.is_none(),
        "the Deployment is gone"
    );
    Ok(())
}

/// An AcmeIssuer for a Pebble on this machine and a certificate in the release namespace
/// (the one the chart's defaults let Vigil write Secrets in), Ready with its Secret.
async fn issue_certificate(
    cluster: &TestCluster,
    client: &Client,
    pod: &Pod,
) -> anyhow::Result<()> {
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .ok_or_else(|| anyhow::anyhow!("the operator pod has no IP"))?;
    let dns = DnsServer::start_with(
        cluster.dir(),
        DnsOptions {
            zone: "certs.test".to_owned(),
            port: None,
            records: vec![("web".to_owned(), pod_ip)],
            tsig: None,
        },
    )
    .await?;
    // The chart's challenge port (acme.http01Port).
    let pebble = Pebble::start(
        cluster.dir(),
        PebbleOptions {
            http_port: 8089,
            dns_server: dns.endpoint.clone(),
            ..PebbleOptions::default()
        },
    )
    .await?;
    let directory = pebble
        .directory_url()
        .replace("localhost", vigil_e2e::node::HOST_ADDRESS);
    apply(
        client,
        serde_json::json!({
            "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer", "metadata": {"name": "pebble"},
            "spec": {"server": directory, "caBundle": pebble.ca_pem,
                "privateKeySecretRef": {"name": "pebble-account"}, "solvers": [{"http01": {}}]},
        }),
    )
    .await?;
    apply(
        client,
        serde_json::json!({
            "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
            "metadata": {"name": "web", "namespace": "vigil-system"},
            "spec": {"issuerRef": {"name": "pebble"}, "dnsNames": ["web.certs.test"], "secretName": "web-tls"},
        }),
    )
    .await?;
    let certs: Api<AcmeCertificate> = Api::namespaced(client.clone(), "vigil-system");
    let issued = wait_ready(&certs, "web", |c| {
        let status = c.status.clone().unwrap_or_default();
        (
            c.metadata.generation,
            status.observed_generation,
            ready_of(&status.conditions),
        )
    })
    .await;
    if issued.is_err() {
        eprintln!("{}", pebble.log_tail());
    }
    issued?;
    let secret = Api::<Secret>::namespaced(client.clone(), "vigil-system")
        .get("web-tls")
        .await?;
    let data = secret.data.unwrap_or_default();
    let chain = data
        .get("tls.crt")
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default();
    anyhow::ensure!(
        chain.contains("-----BEGIN CERTIFICATE-----") && data.contains_key("tls.key"),
        "web-tls holds a certificate and its key: {:?}",
        data.keys().collect::<Vec<_>>()
    );
    anyhow::ensure!(
        pebble.log().contains("Issued certificate serial"),
        "Pebble issued it"
    );
    Ok(())
}
