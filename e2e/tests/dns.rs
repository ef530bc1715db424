//! The CoreDNS configuration Vigil generates for a `CrossCloudDNS`, loaded by real CoreDNS
//! (v1.15.0) in three clusters (`aws`, `aliyun`, `vmware`). Each cluster's CoreDNS serves
//! its own cluster domain through the `kubernetes` plugin against that cluster's API server
//! and adds the blocks Vigil rendered for it, as the controller would put them into its
//! import ConfigMap. The test checks the names users get: a service that only another cloud
//! has, the local cluster first, failover when a cluster's DNS stops and back when it
//! returns, and per-cluster names.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use vigil_e2e::coredns::CoreDns;
use vigil_e2e::{Operator, TestCluster, eventually, free_port};

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

/// A resolver that answers every A query with 10.9.9.9 and remembers, for each query, the
/// name asked and the value of EDNS0 option `code`: what a remote cluster receives.
async fn recording_resolver(
    code: u16,
) -> anyhow::Result<(u16, std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>)> {
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    use hickory_proto::rr::{RData, Record};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let port = socket.local_addr()?.port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buffer).await {
            let Ok(query) = Message::from_vec(&buffer[..n]) else {
                continue;
            };
            let tag = query
                .edns
                .as_ref()
                .and_then(|e| e.option(EdnsCode::Unknown(code)))
                .map(|o| match o {
                    EdnsOption::Unknown(_, data) => String::from_utf8_lossy(data).into_owned(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.message_type = MessageType::Response;
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            for q in &query.queries {
                record
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((q.name().to_ascii(), tag.clone()));
                reply.add_query(q.clone());
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    5,
                    RData::A(A(Ipv4Addr::new(10, 9, 9, 9))),
                ));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    Ok((port, seen))
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
    // A fourth member whose "DNS" is a recording resolver: what a remote cluster receives.
    let (probe_port, seen) = recording_resolver(65001).await?;
    let _ = write!(
        yaml,
        "---\napiVersion: vigil.io/v1alpha1\nkind: MemberCluster\nmetadata: {{name: probe}}\nspec:\n  provider: vmware\n  region: r9\n  apiServer: {{kubeconfigSecretRef: {{namespace: vigil-system, name: probe-kubeconfig, key: kubeconfig}}}}\n  dns: {{endpoints: [\"127.0.0.1:{probe_port}\"], clusterDomain: probe.local}}\n"
    );
    yaml.push_str("---\napiVersion: vigil.io/v1alpha1\nkind: CrossCloudDNS\nmetadata: {name: clusterset}\nspec:\n  clusters: [aws, aliyun, vmware, probe]\n  failover: [aliyun, vmware]\n  edns0: {tagSourceCluster: true}\n  target: {listenerPortBase: 20000}\n");
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
            vigil = vigil_e2e::coredns::with_kubeconfig(&config.server, cluster.kubeconfig()),
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
    // The remote saw the name in its own domain (vmware: onprem.local). CoreDNS's `log`
    // plugin writes its line after the answer has gone out, so the answer can reach aws
    // (and this test) before the line reaches vmware's log file.
    let vmware = &servers[2];
    eventually(
        "vmware's CoreDNS logs the rewritten name",
        Duration::from_secs(5),
        || async {
            let log = vmware.log();
            if log.contains("pay.shop.svc.onprem.local.") {
                Ok(Some(()))
            } else {
                Err(anyhow::anyhow!("its log:\n{log}"))
            }
        },
    )
    .await?;

    // EDNS0: a forwarded query carries the asking cluster in option 65001, with the name
    // rewritten into the remote's domain.
    wait_answer(
        &aws_dns,
        &format!("ledger.shop.svc.probe.{ZONE}"),
        Ipv4Addr::new(10, 9, 9, 9),
        within,
    )
    .await?;
    let received = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(
        received
            .iter()
            .any(|(name, tag)| name == "ledger.shop.svc.probe.local." && tag == "aws"),
        "the remote received {received:?}"
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

async fn controller_scenario(clusters: &mut [TestCluster; 3]) -> anyhow::Result<()> {
    use kube::api::{Patch, PatchParams};
    use vigil::api::CrossCloudDNS;
    let names = ["aws", "aliyun", "vmware"];
    let domains = ["cluster.local", "cluster.local", "onprem.local"];
    let ports = [free_port()?, free_port()?, free_port()?];
    let home = clusters[0].client();
    clusters[0].install_crds().await?;
    clusters[0].ensure_namespace("vigil-system").await?;
    let pay_aliyun = service(&clusters[1], "pay").await?;
    let pay_vmware = service(&clusters[2], "pay").await?;
    let orders = service(&clusters[1], "orders").await?;

    // Each cluster's CoreDNS: its own domain, plus whatever the import folder holds.
    let mut servers = Vec::new();
    let mut syncs = Vec::new();
    for (i, cluster) in clusters.iter().enumerate() {
        let custom = cluster.dir().join("coredns-custom");
        std::fs::create_dir_all(&custom)?;
        std::fs::write(custom.join("placeholder.server"), "# nothing yet\n")?;
        let corefile = format!(
            "{domain}:{port} {{\n    errors\n    log\n    reload 2s 1s\n{kubernetes}}}\n\nimport {custom}/*.server\n",
            domain = domains[i],
            port = ports[i],
            kubernetes = vigil_e2e::coredns::kubernetes_block(domains[i], cluster.kubeconfig()),
            custom = custom.display(),
        );
        servers.push(CoreDns::start(cluster.dir(), names[i], &corefile, ports[i]).await?);
        syncs.push(vigil_e2e::coredns::project_config_map(
            cluster,
            "kube-system",
            "coredns-custom",
            custom,
            &["placeholder.server"],
        ));
    }

    let params = PatchParams::apply("vigil-e2e");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(home.clone(), "vigil-system");
    let members: Api<vigil::api::MemberCluster> = Api::all(home.clone());
    for (i, name) in names.iter().enumerate() {
        let mut spec = serde_json::json!({"provider": name, "region": "r1", "probeInterval": "5s",
            "dns": {"endpoints": [format!("127.0.0.1:{}", ports[i])], "clusterDomain": domains[i]}});
        if i == 0 {
            spec["local"] = true.into();
        } else {
            let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-kubeconfig"), "namespace": "vigil-system"},
                "stringData": {"kubeconfig": clusters[i].admin_kubeconfig_yaml()?}});
            secrets
                .patch(
                    &format!("{name}-kubeconfig"),
                    &params,
                    &Patch::Apply(&secret),
                )
                .await?;
            spec["apiServer"] = serde_json::json!({"kubeconfigSecretRef": {"namespace": "vigil-system", "name": format!("{name}-kubeconfig"), "key": "kubeconfig"}});
        }
        let member = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": name}, "spec": spec});
        members.patch(name, &params, &Patch::Apply(&member)).await?;
    }
    let dns: Api<CrossCloudDNS> = Api::all(home.clone());
    let object = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS",
        "metadata": {"name": "clusterset"},
        "spec": {"clusters": names, "failover": ["aliyun", "vmware"],
            // Its own listener ports: the other test's CoreDNS run on this host too.
            "target": {"listenerPortBase": 21000}}});
    dns.patch("clusterset", &params, &Patch::Apply(&object))
        .await?;
    let operator = Operator::start(
        clusters[0].kubeconfig(),
        clusters[0].dir(),
        "vigil-dns",
        &[],
    )?;
    let outcome: anyhow::Result<()> = async {
        let status = |dns: Api<CrossCloudDNS>| async move {
            Ok::<_, anyhow::Error>(dns.get("clusterset").await?.status.unwrap_or_default())
        };
        let wait_status =
            |what: &'static str, check: fn(&vigil::api::CrossCloudDNSStatus) -> bool| {
                let dns = dns.clone();
                async move {
                    eventually(what, Duration::from_secs(60), || {
                        let dns = dns.clone();
                        async move {
                            let s = status(dns).await?;
                            Ok(check(&s).then_some(s))
                        }
                    })
                    .await
                }
            };
        let applied = wait_status("Ready=True, applied to every cluster", |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
                && s.clusters.iter().all(|c| c.applied && c.in_failover)
        })
        .await?;
        eprintln!("applied: {:?}", applied.conditions);
        let aws_dns = servers[0].endpoint.clone();
        wait_answer(
            &aws_dns,
            &format!("orders.shop.svc.{ZONE}"),
            orders,
            Duration::from_secs(30),
        )
        .await?;
        wait_answer(
            &aws_dns,
            &format!("pay.shop.svc.{ZONE}"),
            pay_aliyun,
            Duration::from_secs(30),
        )
        .await?;
        // Nothing changes, nothing is written: the ConfigMap stays at one version.
        let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(home.clone(), "kube-system");
        let before = config_maps
            .get("coredns-custom")
            .await?
            .metadata
            .resource_version;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let after = config_maps
            .get("coredns-custom")
            .await?
            .metadata
            .resource_version;
        assert_eq!(before, after, "a healthy mesh rewrites nothing");

        // aliyun's DNS stops: it leaves the chain (status, Event, aws's configuration) and
        // pay comes from vmware.
        servers[1].stop();
        let left = wait_status("aliyun out of the failover chain", |s| {
            s.clusters
                .iter()
                .any(|c| c.cluster == "aliyun" && !c.in_failover && !c.resolver_healthy)
        })
        .await?;
        eprintln!("after aliyun stopped: {:?}", left.clusters);
        let ready = left
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(
            ready.contains("out of the failover chain: aliyun"),
            "{ready}"
        );
        // `vigil status` puts it in front of the on-call engineer.
        let (code, table, err) =
            vigil_e2e::operator::vigil_cli(clusters[0].kubeconfig(), "status", &["-A"])?;
        assert_eq!(code, 0, "{err}");
        let row = table
            .lines()
            .find(|l| l.contains("ccdns/clusterset"))
            .unwrap_or_default();
        assert!(row.starts_with("WARN") && row.contains("aliyun"), "{table}");
        eventually(
            "aws's configuration without aliyun in the chain",
            Duration::from_secs(30),
            || {
                let config_maps = config_maps.clone();
                async move {
                    let cm = config_maps.get("coredns-custom").await?;
                    let server = cm
                        .data
                        .unwrap_or_default()
                        .remove("clusterset.server")
                        .unwrap_or_default();
                    Ok((!server.contains("Shared zone through aliyun")).then_some(()))
                }
            },
        )
        .await?;
        wait_answer(
            &aws_dns,
            &format!("pay.shop.svc.{ZONE}"),
            pay_vmware,
            Duration::from_secs(30),
        )
        .await?;
        // aliyun returns and rejoins.
        servers[1].restart().await?;
        wait_status("aliyun back in the chain", |s| {
            s.clusters
                .iter()
                .all(|c| c.in_failover && c.resolver_healthy)
        })
        .await?;
        eventually(
            "aws's configuration with aliyun back in the chain",
            Duration::from_secs(30),
            || {
                let config_maps = config_maps.clone();
                async move {
                    let cm = config_maps.get("coredns-custom").await?;
                    let server = cm
                        .data
                        .unwrap_or_default()
                        .remove("clusterset.server")
                        .unwrap_or_default();
                    Ok(server.contains("Shared zone through aliyun").then_some(()))
                }
            },
        )
        .await?;
        let projected = clusters[0].dir().join("coredns-custom/clusterset.server");
        eventually(
            "the projected file with aliyun",
            Duration::from_secs(10),
            || {
                let projected = projected.clone();
                async move {
                    let text = std::fs::read_to_string(&projected).unwrap_or_default();
                    Ok(text.contains("Shared zone through aliyun").then_some(()))
                }
            },
        )
        .await?;
        wait_answer(
            &aws_dns,
            &format!("pay.shop.svc.{ZONE}"),
            pay_aliyun,
            Duration::from_secs(30),
        )
        .await?;
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(home.clone());
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        assert!(reasons.iter().any(|r| r == "ClusterLeft"), "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r == "ClusterRejoined"),
            "{reasons:?}"
        );
        shrink_switch_and_delete(clusters, &dns, orders).await?;
        assert_eq!(
            operator.metric_total("vigil_reconcile_panics_total").await,
            Some(0.0)
        );
        Ok(())
    }
    .await;
    for sync in syncs {
        sync.abort();
    }
    if outcome.is_err() {
        eprintln!("----- aws's CoreDNS -----\n{}", servers[0].log_tail());
    }
    operator.on_failure(outcome)
}

#[tokio::test]
async fn the_controller_applies_the_configuration_and_fails_over() {
    let (aws, aliyun, vmware) = tokio::join!(
        TestCluster::start("aws"),
        TestCluster::start("aliyun"),
        TestCluster::start("vmware")
    );
    let mut clusters = [
        aws.expect("aws"),
        aliyun.expect("aliyun"),
        vmware.expect("vmware"),
    ];
    controller_scenario(&mut clusters)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The key `clusterset.server` of `kube-system/coredns-custom` in `cluster`, if any.
async fn custom_key(cluster: &TestCluster) -> anyhow::Result<Option<String>> {
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(cluster.client(), "kube-system");
    Ok(config_maps
        .get_opt("coredns-custom")
        .await?
        .and_then(|cm| cm.data)
        .and_then(|mut d| d.remove("clusterset.server")))
}

/// A cluster taken out of `spec.clusters` loses its key; the switch to `Dedicated` replaces
/// the keys with a Vigil-managed CoreDNS whose Corefile a real CoreDNS loads and answers
/// from; deleting the object removes everything it wrote before the object goes.
async fn shrink_switch_and_delete(
    clusters: &[TestCluster; 3],
    dns: &Api<vigil::api::CrossCloudDNS>,
    orders: Ipv4Addr,
) -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{DeleteParams, Patch, PatchParams};
    let params = PatchParams::apply("vigil-e2e");
    let spec = |clusters: serde_json::Value, target: serde_json::Value| {
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS",
            "metadata": {"name": "clusterset"},
            "spec": {"clusters": clusters, "failover": ["aliyun"], "target": target}})
    };
    let object = dns.get("clusterset").await?;
    assert!(
        object
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"vigil.io/crossclouddns-cleanup".to_owned()),
        "the object carries the cleanup finalizer"
    );

    // vmware leaves the mesh: its key goes, the others stay.
    dns.patch(
        "clusterset",
        &params,
        &Patch::Apply(&spec(
            serde_json::json!(["aws", "aliyun"]),
            serde_json::json!({"listenerPortBase": 21000}),
        )),
    )
    .await?;
    eventually("vmware's key removed", Duration::from_secs(30), || async {
        Ok(custom_key(&clusters[2]).await?.is_none().then_some(()))
    })
    .await?;
    assert!(custom_key(&clusters[0]).await?.is_some());
    eventually(
        "vmware gone from status",
        Duration::from_secs(30),
        || async {
            let status = dns.get("clusterset").await?.status.unwrap_or_default();
            Ok((status.clusters.len() == 2).then_some(()))
        },
    )
    .await?;

    // Dedicated: a Vigil-managed CoreDNS in each cluster, the import keys removed.
    dns.patch(
        "clusterset",
        &params,
        &Patch::Apply(&spec(
            serde_json::json!(["aws", "aliyun"]),
            serde_json::json!({"mode": "Dedicated", "listenerPortBase": 22000}),
        )),
    )
    .await?;
    let status = eventually(
        "Dedicated applied with service addresses",
        Duration::from_secs(60),
        || async {
            let status = dns.get("clusterset").await?.status.unwrap_or_default();
            let ready = status.conditions.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == "True"
                    && c.message
                        .contains("Vigil-managed CoreDNS kube-system/vigil-dns-clusterset")
            });
            Ok((ready
                && status
                    .clusters
                    .iter()
                    .all(|c| c.applied && c.dedicated_address.is_some()))
            .then_some(status))
        },
    )
    .await?;
    for cluster in &clusters[..2] {
        anyhow::ensure!(
            custom_key(cluster).await?.is_none(),
            "{}: the import key stays after the switch to Dedicated",
            cluster.name
        );
    }
    let aliyun = &clusters[1];
    let config_maps: Api<ConfigMap> = Api::namespaced(aliyun.client(), "kube-system");
    let deployments: Api<Deployment> = Api::namespaced(aliyun.client(), "kube-system");
    let config = config_maps.get("vigil-dns-clusterset").await?;
    let data = config.data.unwrap_or_default();
    let address = status.clusters[1]
        .dedicated_address
        .clone()
        .unwrap_or_default();
    let stub = data.get("stub-domain.server").cloned().unwrap_or_default();
    assert!(
        stub.contains(&format!("forward . {address}")),
        "stub-domain snippet names the Service: {stub}"
    );
    // Nothing changes, nothing is written: the ConfigMap keeps its version and the
    // Deployment its generation (its status moves with its pods, which is not a write of
    // ours).
    let written = || async {
        let deployment = deployments.get("vigil-dns-clusterset").await?;
        let config = config_maps.get("vigil-dns-clusterset").await?;
        Ok::<_, anyhow::Error>((
            deployment.metadata.generation,
            config.metadata.resource_version,
        ))
    };
    let before = written().await?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(
        before,
        written().await?,
        "an unchanged Dedicated target rewrites nothing"
    );

    // The Corefile of aliyun's Vigil-managed CoreDNS, loaded by a real CoreDNS (on a free
    // port instead of the pod's 1053, with aliyun's kubeconfig instead of the in-pod
    // service account): its own services under the shared zone and its own domain.
    let corefile = data.get("Corefile").cloned().unwrap_or_default();
    let port = free_port()?;
    let corefile = vigil_e2e::coredns::with_kubeconfig(
        &corefile.replace(":1053 {", &format!(":{port} {{")),
        aliyun.kubeconfig(),
    );
    let dir = aliyun.dir().join("dedicated");
    std::fs::create_dir_all(&dir)?;
    let server = CoreDns::start(&dir, "aliyun-dedicated", &corefile, port).await?;
    wait_answer(
        &server.endpoint,
        &format!("orders.shop.svc.{ZONE}"),
        orders,
        Duration::from_secs(30),
    )
    .await?;
    wait_answer(
        &server.endpoint,
        "orders.shop.svc.cluster.local",
        orders,
        Duration::from_secs(30),
    )
    .await?;
    wait_answer(
        &server.endpoint,
        &format!("orders.shop.svc.aliyun.{ZONE}"),
        orders,
        Duration::from_secs(30),
    )
    .await?;

    // Deleted: the Vigil-managed CoreDNS goes from every cluster, then the object.
    dns.delete("clusterset", &DeleteParams::default()).await?;
    eventually("the object released", Duration::from_secs(60), || async {
        Ok(dns.get_opt("clusterset").await?.is_none().then_some(()))
    })
    .await?;
    for cluster in &clusters[..2] {
        let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "kube-system");
        let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), "kube-system");
        anyhow::ensure!(
            deployments.get_opt("vigil-dns-clusterset").await?.is_none()
                && config_maps.get_opt("vigil-dns-clusterset").await?.is_none(),
            "{}: the Vigil-managed CoreDNS outlived its CrossCloudDNS",
            cluster.name
        );
    }
    Ok(())
}
