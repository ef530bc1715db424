//! The CoreDNS configuration Vigil generates for a `CrossCloudDNS`, loaded by real CoreDNS
//! (v1.15.0) in three clusters (`aws`, `aliyun`, `vmware`). Each cluster's CoreDNS serves
//! its own cluster domain through the `kubernetes` plugin against that cluster's API server
//! and adds the blocks Vigil rendered for it, as the controller would put them into its
//! import ConfigMap. The test checks the names users get: a service that only another cloud
//! has, the local cluster first, failover when a cluster's DNS stops and back when it
//! returns, and per-cluster names.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use vigil_e2e::coredns::CoreDns;
use vigil_e2e::{TestCluster, eventually, free_port};

const ZONE: &str = "clusterset.local";

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
    let ip = created
        .spec
        .and_then(|s| s.cluster_ip)
        .ok_or_else(|| anyhow::anyhow!("no clusterIP for {name}"))?;
    Ok(ip.parse()?)
}

/// The A records CoreDNS at `endpoint` answers for `name`, and the response code.
async fn resolve(endpoint: &str, name: &str) -> anyhow::Result<(Vec<Ipv4Addr>, String)> {
    let address = vigil::dns::resolve(endpoint)
        .await
        .map_err(anyhow::Error::msg)?;
    let name = vigil::dns::Name::from_ascii(format!("{name}."))?;
    vigil::dns::a_records(address, &name)
        .await
        .map_err(anyhow::Error::msg)
}

/// Waits until `name` resolves to exactly `want` at `endpoint`.
async fn wait_answer(
    endpoint: &str,
    name: &str,
    want: Ipv4Addr,
    within: Duration,
) -> anyhow::Result<()> {
    let waited = eventually(
        &format!("{name} -> {want} at {endpoint}"),
        within,
        || async move {
            let (addresses, _) = resolve(endpoint, name).await.unwrap_or_default();
            Ok((addresses == [want]).then_some(()))
        },
    )
    .await;
    if waited.is_err() {
        let last = resolve(endpoint, name).await;
        return waited.map_err(|e| e.context(format!("last answer: {last:?}")));
    }
    waited
}

/// Gives every `kubernetes` plugin of a rendered file the test cluster's kubeconfig (in a
/// pod the plugin uses the in-cluster service account instead).
fn with_kubeconfig(server: &str, kubeconfig: &Path) -> String {
    let mut out = String::new();
    let kubeconfig = format!("        kubeconfig \"{}\"", kubeconfig.display());
    for line in server.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("kubernetes ") {
            let zone = trimmed
                .trim_start_matches("kubernetes ")
                .trim_end_matches(" {");
            let _ = writeln!(out, "    kubernetes {zone} {{\n{kubeconfig}");
            if !trimmed.ends_with('{') {
                let _ = writeln!(out, "    }}");
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

async fn scenario(clusters: &[&TestCluster; 3]) -> anyhow::Result<()> {
    let names = ["aws", "aliyun", "vmware"];
    let domains = ["cluster.local", "cluster.local", "onprem.local"];
    let ports = [free_port()?, free_port()?, free_port()?];
    let [aws, aliyun, vmware] = *clusters;
    // orders: only in aliyun. web: aws and vmware. pay: aliyun and vmware.
    let orders = service(aliyun, "orders").await?;
    let web_aws = service(aws, "web").await?;
    let web_vmware = service(vmware, "web").await?;
    let pay_aliyun = service(aliyun, "pay").await?;
    let pay_vmware = service(vmware, "pay").await?;

    // The objects a user keeps in Git; aws asks aliyun before vmware.
    let mut yaml = String::new();
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            yaml,
            "---\napiVersion: vigil.io/v1alpha1\nkind: MemberCluster\nmetadata: {{name: {name}}}\nspec:\n  provider: {name}\n  region: r1\n  local: {}\n{}  dns: {{endpoints: [\"127.0.0.1:{}\"], clusterDomain: {}}}\n",
            i == 0,
            if i == 0 {
                String::new()
            } else {
                format!(
                    "  apiServer: {{kubeconfigSecretRef: {{namespace: vigil-system, name: {name}-kubeconfig, key: kubeconfig}}}}\n"
                )
            },
            ports[i],
            domains[i]
        );
    }
    yaml.push_str("---\napiVersion: vigil.io/v1alpha1\nkind: CrossCloudDNS\nmetadata: {name: clusterset}\nspec:\n  clusters: [aws, aliyun, vmware]\n  failover: [aliyun, vmware]\n  edns0: {tagSourceCluster: true}\n");
    let manifests = aws.dir().join("clusterset.yaml");
    std::fs::write(&manifests, yaml)?;
    let loaded = vigil::manifest::load(&[manifests], "default")?;
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let inventory = loaded.inventory;
    let configs = vigil::render::dns::render_cross_cloud_dns(
        &inventory.cross_cloud_dns[0],
        &inventory,
        &|_| true,
    )
    .map_err(anyhow::Error::msg)?;

    let mut servers = Vec::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let config = configs
            .iter()
            .find(|c| c.cluster == names[i])
            .ok_or_else(|| anyhow::anyhow!("nothing rendered for {}", names[i]))?;
        let corefile = format!(
            "# The cluster's own DNS.\n{domain}:{port} {{\n    errors\n    log\n{kubernetes}}}\n\n{vigil}",
            domain = domains[i],
            port = ports[i],
            kubernetes = vigil_e2e::coredns::kubernetes_block(domains[i], cluster.kubeconfig()),
            vigil = with_kubeconfig(&config.server, cluster.kubeconfig()),
        );
        servers.push(CoreDns::start(cluster.dir(), names[i], &corefile, ports[i]).await?);
    }
    let [aws_dns, _, _] = [
        &servers[0].endpoint,
        &servers[1].endpoint,
        &servers[2].endpoint,
    ];
    let aws_dns = aws_dns.clone();
    let aliyun_dns = servers[1].endpoint.clone();
    let within = Duration::from_secs(30);

    // A service only aliyun has resolves from aws and vmware.
    wait_answer(&aws_dns, &format!("orders.shop.svc.{ZONE}"), orders, within).await?;
    wait_answer(
        &servers[2].endpoint,
        &format!("orders.shop.svc.{ZONE}"),
        orders,
        within,
    )
    .await?;
    // The local cluster first: aws has web, so aws answers its own; aliyun (no web) gets
    // vmware's, the only other one.
    wait_answer(&aws_dns, &format!("web.shop.svc.{ZONE}"), web_aws, within).await?;
    wait_answer(
        &aliyun_dns,
        &format!("web.shop.svc.{ZONE}"),
        web_vmware,
        within,
    )
    .await?;
    // Failover order: aws asks aliyun before vmware for pay.
    wait_answer(
        &aws_dns,
        &format!("pay.shop.svc.{ZONE}"),
        pay_aliyun,
        within,
    )
    .await?;
    // Per-cluster names reach exactly their cluster.
    wait_answer(
        &aws_dns,
        &format!("pay.shop.svc.vmware.{ZONE}"),
        pay_vmware,
        within,
    )
    .await?;
    wait_answer(
        &aws_dns,
        &format!("pay.shop.svc.aliyun.{ZONE}"),
        pay_aliyun,
        within,
    )
    .await?;
    wait_answer(
        &aws_dns,
        &format!("web.shop.svc.aws.{ZONE}"),
        web_aws,
        within,
    )
    .await?;
    let (none, rcode) = resolve(&aws_dns, &format!("web.shop.svc.aliyun.{ZONE}")).await?;
    assert!(none.is_empty(), "aliyun has no web: {none:?}");
    assert_eq!(rcode, "Non-Existent Domain");
    // The remote saw the name in its own domain (vmware: onprem.local).
    let vmware_log = servers[2].log();
    assert!(
        vmware_log.contains("pay.shop.svc.onprem.local."),
        "vmware's CoreDNS did not see the rewritten name:\n{vmware_log}"
    );

    // aliyun's DNS stops: pay comes from vmware within the health-check interval (plus
    // the 30 s the positive answer may stay cached).
    servers[1].stop();
    let started = std::time::Instant::now();
    wait_answer(
        &aws_dns,
        &format!("pay.shop.svc.{ZONE}"),
        pay_vmware,
        Duration::from_secs(60),
    )
    .await?;
    eprintln!(
        "failover to vmware after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    // aliyun's DNS returns: the order is restored.
    servers[1].restart().await?;
    let started = std::time::Instant::now();
    wait_answer(
        &aws_dns,
        &format!("pay.shop.svc.{ZONE}"),
        pay_aliyun,
        Duration::from_secs(60),
    )
    .await?;
    eprintln!(
        "back to aliyun after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn generated_coredns_configuration_resolves_across_three_clusters() {
    let (aws, aliyun, vmware) = tokio::join!(
        TestCluster::start("aws"),
        TestCluster::start("aliyun"),
        TestCluster::start("vmware")
    );
    let (aws, aliyun, vmware) = (
        aws.expect("aws"),
        aliyun.expect("aliyun"),
        vmware.expect("vmware"),
    );
    scenario(&[&aws, &aliyun, &vmware])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}
