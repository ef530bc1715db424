//! A `Dedicated` CrossCloudDNS that answers: Vigil's own CoreDNS Deployment runs on a real
//! node of cluster `a` (the CoreDNS built by `make tools`, imported as the image Vigil
//! deploys by default), reads `a`'s Services through the API server with its
//! ServiceAccount, and resolves a Service that only cluster `b` has by forwarding to `b`'s
//! CoreDNS. The member clusters' DNS endpoints are at `198.18.0.1`, where the pod (through
//! the node's DNAT) and the operator on this machine ([`HostAddressOnHost`]) both reach
//! the CoreDNS each cluster has on loopback.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use vigil::api::CrossCloudDNS;
use vigil_e2e::coredns::{self, CoreDns};
use vigil_e2e::node::HOST_ADDRESS;
use vigil_e2e::{HostAddressOnHost, Operator, TestCluster, eventually, free_port, repo};

/// Creates a ClusterIP Service `<name>` in namespace `shop`; returns its address.
async fn service(cluster: &TestCluster, name: &str) -> anyhow::Result<Ipv4Addr> {
    cluster.ensure_namespace("shop").await?;
    let services: Api<Service> = Api::namespaced(cluster.client(), "shop");
    let service: Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"ports": [{"port": 80}], "selector": {"app": name}},
    }))?;
    let created = services.create(&PostParams::default(), &service).await?;
    Ok(created
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| anyhow::anyhow!("no clusterIP for {name}"))?
        .parse()?)
}

/// The A records the DNS server at `endpoint` answers for `name`.
async fn resolve(endpoint: &str, name: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let address = vigil::dns::resolve(endpoint)
        .await
        .map_err(anyhow::Error::msg)?;
    let name = vigil::dns::Name::from_ascii(format!("{name}."))?;
    Ok(vigil::dns::a_records(address, &name)
        .await
        .map_err(anyhow::Error::msg)?
        .0)
}

#[tokio::test]
async fn a_dedicated_coredns_on_a_real_node_resolves_a_service_only_another_cluster_has() {
    let mut host_address = HostAddressOnHost::claim().expect("198.18.0.1 on this machine");
    let (a, b) = tokio::join!(
        TestCluster::start_with_node("dnsa"),
        TestCluster::start("dnsb")
    );
    let (mut a, b) = (a.expect("cluster a"), b.expect("cluster b"));
    let result = scenario(&a, &b).await;
    if result.is_err() {
        a.print_logs();
    }
    host_address.release();
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = a.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

async fn scenario(a: &TestCluster, b: &TestCluster) -> anyhow::Result<()> {
    let node = a.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/coredns.tar"))?;
    let home = a.client();
    a.install_crds().await?;
    a.ensure_namespace("vigil-system").await?;
    let local = service(a, "cart").await?;
    let orders = service(b, "orders").await?;

    // Each cluster's own CoreDNS on loopback, reached at HOST_ADDRESS.
    let mut servers = Vec::new();
    let mut endpoints = Vec::new();
    for (cluster, name) in [(a, "a"), (b, "b")] {
        let port = free_port()?;
        let corefile = format!(
            "cluster.local:{port} {{\n    errors\n{}}}\n",
            coredns::kubernetes_block("cluster.local", cluster.kubeconfig())
        );
        servers.push(CoreDns::start(cluster.dir(), name, &corefile, port).await?);
        endpoints.push(format!("{HOST_ADDRESS}:{port}"));
    }
    let params = PatchParams::apply("vigil-e2e");
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "b-kubeconfig", "namespace": "vigil-system"},
        "stringData": {"kubeconfig": b.admin_kubeconfig_yaml()?}});
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(home.clone(), "vigil-system")
        .patch("b-kubeconfig", &params, &Patch::Apply(&secret))
        .await?;
    let members: Api<vigil::api::MemberCluster> = Api::all(home.clone());
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let mut spec = serde_json::json!({"provider": "aws", "region": "r1", "probeInterval": "5s",
            "dns": {"endpoints": [endpoints[i]], "clusterDomain": "cluster.local"}});
        if i == 0 {
            spec["local"] = true.into();
        } else {
            spec["apiServer"] = serde_json::json!({"kubeconfigSecretRef":
                {"namespace": "vigil-system", "name": "b-kubeconfig", "key": "kubeconfig"}});
        }
        let member = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": name}, "spec": spec});
        members.patch(name, &params, &Patch::Apply(&member)).await?;
    }
    let dns: Api<CrossCloudDNS> = Api::all(home.clone());
    let object = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS",
        "metadata": {"name": "clusterset"},
        "spec": {"clusters": ["a", "b"],
            "target": {"mode": "Dedicated", "replicas": 1, "listenerPortBase": 24000}}});
    dns.patch("clusterset", &params, &Patch::Apply(&object))
        .await?;
    let operator = Operator::start(a.kubeconfig(), a.dir(), "vigil-dedicated", &[])?;

    // Vigil's CoreDNS runs on the real node and is ready (its readiness probe answers).
    let pods: Api<Pod> = Api::namespaced(home.clone(), "kube-system");
    let started = Instant::now();
    let pod = eventually(
        "the dedicated CoreDNS pod ready",
        Duration::from_secs(120),
        || {
            let pods = pods.clone();
            async move {
                Ok(pods
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .find(|p| {
                        p.spec
                            .as_ref()
                            .is_some_and(|s| s.containers.iter().any(|c| c.name == "coredns"))
                            && p.status
                                .as_ref()
                                .and_then(|s| s.container_statuses.as_ref())
                                .is_some_and(|c| c.iter().all(|c| c.ready))
                    }))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "dedicated CoreDNS ready {:.1}s after the operator started",
        started.elapsed().as_secs_f64()
    );
    let deployments: Api<Deployment> = Api::namespaced(home.clone(), "kube-system");
    let owner = pod
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|o| o.name)
        .unwrap_or_default();
    assert!(
        deployments
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(
                |d| owner.starts_with(&format!("{}-", d.metadata.name.clone().unwrap_or_default()))
            ),
        "the pod belongs to Vigil's Deployment: {owner}"
    );
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name.as_str())
    );
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .ok_or_else(|| anyhow::anyhow!("the CoreDNS pod has no IP"))?;
    let endpoint = format!("{ip}:{}", vigil::render::dns::DEDICATED_PORT);

    // From the node, at the Service's endpoint: a service only b has, through the chain to
    // b's CoreDNS, and a's own service, through the kubernetes plugin in the pod.
    let remote = "orders.shop.svc.clusterset.local";
    eventually(
        &format!("{remote} at {endpoint}"),
        Duration::from_secs(90),
        || async {
            Ok((resolve(&endpoint, remote).await.unwrap_or_default() == [orders]).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    let own = "cart.shop.svc.clusterset.local";
    eventually(
        &format!("{own} at {endpoint}"),
        Duration::from_secs(60),
        || async {
            Ok((resolve(&endpoint, own).await.unwrap_or_default() == [local]).then_some(()))
        },
    )
    .await?;

    // How long a cross-cluster lookup takes through the chain (cache included, as a
    // client sees it): 200 lookups one after the other.
    let mut took = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        assert_eq!(resolve(&endpoint, remote).await?, [orders]);
        took.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    // The one docs/dns.md shows.
    if let Some(status) = dns.get("clusterset").await?.status {
        eprintln!(
            "the dedicated object's status: {}",
            serde_json::to_string_pretty(&status)?
        );
    }
    eprintln!(
        "{remote} through the dedicated CoreDNS: p50 {:.2} ms, p99 {:.2} ms over {} lookups",
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        took.len()
    );
    drop(servers);
    Ok(())
}
