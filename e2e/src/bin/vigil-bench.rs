//! `vigil-bench`: figures for the issue notes, measured on real parts. Not a test: it
//! prints numbers. `make bench` runs every case.
//!
//! ```text
//! vigil-bench suite [N] [S]    # the suite: every kind (N SLOs, N/10 of most others), then S objects; one JSON document
//! vigil-bench render [N]       # load, validate and render N SLO manifests (default 1000)
//! vigil-bench cluster [N]      # N SLOs on a real control plane until all have their rules
//! vigil-bench prometheus [N]   # rule evaluation cost of N SLOs in a real Prometheus
//! vigil-bench certificates [N] # N certificates issued at once by a real Pebble (HTTP-01)
//! vigil-bench dns-render [N]   # the CoreDNS files of a CrossCloudDNS over N clusters
//! vigil-bench dns-latency [N]  # N lookups through the generated chain vs. the owning cluster
//! vigil-bench crashes [N]      # 10 crashes each of N supervised workloads at once, then 5000 pods
//! vigil-bench otel-render [N]  # the Collector configurations of N TelemetryPipelines over 3 clusters
//! vigil-bench otel-throughput [S] # spans/s through a gateway on the generated config vs. pass-through, S seconds each
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use vigil::api::ServiceLevelObjective;
use vigil_e2e::{Exporter, Operator, Prometheus, TestCluster, eventually};

fn slo_manifest(i: usize, namespace: &str) -> serde_json::Value {
    let objective = [99.0, 99.5, 99.9, 99.95][i % 4];
    let window = ["30d", "28d", "7d"][i % 3];
    serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
        "metadata": {"name": format!("slo-{i:04}"), "namespace": namespace},
        "spec": {
            "service": format!("svc-{}", i % 50),
            "objective": objective,
            "window": window,
            "sli": {"ratio": {
                "errors": format!("http_requests_total{{job=\"bench\",code=\"500\",route=\"r{}\"}}", i % 10),
                "total": format!("http_requests_total{{job=\"bench\",route=\"r{}\"}}", i % 10),
            }},
            "output": {"kind": "ConfigMap"},
        },
    })
}

fn write_manifests(dir: &Path, count: usize) -> anyhow::Result<()> {
    let stream: Vec<String> = (0..count)
        .map(|i| serde_yaml_ng::to_string(&slo_manifest(i, "bench")).unwrap_or_default())
        .collect();
    std::fs::write(dir.join("slos.yaml"), stream.join("---\n"))?;
    Ok(())
}

fn render(count: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_manifests(dir.path(), count)?;
    let started = Instant::now();
    let loaded = vigil::manifest::load(&[dir.path().to_owned()], "default")?;
    let loaded_in = started.elapsed();
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
    let desired = vigil::render::render(&loaded.inventory);
    let total = started.elapsed();
    let rules: usize = desired
        .files
        .iter()
        .map(|f| f.content.matches("- record:").count() + f.content.matches("- alert:").count())
        .sum();
    let bytes: usize = desired.files.iter().map(|f| f.content.len()).sum();
    println!(
        "render: {count} SLOs read, checked (schema, CEL, semantics) in {:.0} ms, rendered in {:.0} ms, total {:.0} ms; {} rule files, {rules} rules ({:.1} per SLO), {:.1} MiB",
        loaded_in.as_secs_f64() * 1000.0,
        (total - loaded_in).as_secs_f64() * 1000.0,
        total.as_secs_f64() * 1000.0,
        desired.files.len(),
        rules as f64 / count as f64,
        bytes as f64 / 1048576.0
    );
    Ok(())
}

fn dns_render(count: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut docs = Vec::new();
    for i in 0..count {
        let provider = ["aws", "aliyun", "vmware"][i % 3];
        let mut spec = serde_json::json!({"provider": provider, "region": "r1",
            "dns": {"endpoints": [format!("127.0.0.1:{}", 15353 + i)], "clusterDomain": "cluster.local"}});
        if i == 0 {
            spec["local"] = true.into();
        } else {
            spec["apiServer"] = serde_json::json!({"kubeconfigSecretRef": {"namespace": "vigil-system", "name": format!("c{i}-kubeconfig"), "key": "kubeconfig"}});
        }
        docs.push(
            serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": format!("c{i}")}, "spec": spec}),
        );
    }
    let clusters: Vec<String> = (0..count).map(|i| format!("c{i}")).collect();
    let stream: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap_or_default())
        .collect();
    std::fs::write(dir.path().join("members.yaml"), stream.join("---\n"))?;
    let loaded = vigil::manifest::load(&[dir.path().to_owned()], "default")?;
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
    let inventory = loaded.inventory;
    // Built directly: the CRD allows 32 clusters, the generator is timed beyond that too.
    let dns: vigil::api::CrossCloudDNS = serde_json::from_value(serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS", "metadata": {"name": "mesh"},
        "spec": {"clusters": clusters, "edns0": {"tagSourceCluster": true}}}))?;
    let runs = 20;
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..runs {
        let configs = vigil::render::dns::render_cross_cloud_dns(&dns, &inventory, &|_| true)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        bytes = configs.iter().map(|c| c.server.len()).sum::<usize>();
    }
    let each = started.elapsed() / runs;
    println!(
        "dns-render: CoreDNS files of {count} clusters rendered in {:.2} ms ({:.0} KiB, {:.1} KiB per cluster)",
        each.as_secs_f64() * 1000.0,
        bytes as f64 / 1024.0,
        bytes as f64 / 1024.0 / count as f64,
    );
    Ok(())
}

/// p50 and p99 of `samples` (sorted in place), in milliseconds.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.5), at(0.99))
}

/// Times one A lookup; fails unless it answers `want`.
async fn timed_lookup(
    address: std::net::SocketAddr,
    name: &str,
    want: std::net::Ipv4Addr,
) -> anyhow::Result<Duration> {
    let name = vigil::dns::Name::from_ascii(format!("{name}."))?;
    let started = Instant::now();
    let (answers, rcode) = vigil::dns::a_records(address, &name)
        .await
        .map_err(anyhow::Error::msg)?;
    let took = started.elapsed();
    anyhow::ensure!(answers == [want], "{name}: {answers:?} {rcode}");
    Ok(took)
}

async fn dns_latency(count: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Service;
    use vigil_e2e::coredns::{CoreDns, kubernetes_block, with_kubeconfig};
    let (aws, aliyun) = tokio::join!(TestCluster::start("aws"), TestCluster::start("aliyun"));
    let (aws, aliyun) = (aws?, aliyun?);
    aliyun.ensure_namespace("shop").await?;
    // Distinct services only aliyun has (the test clusters' service range holds about 250):
    // asked in rounds, each name once per round through aws and once directly, with the
    // answers' 5 s TTL run out between rounds so that nothing comes from a cache.
    let distinct = count.min(200);
    let rounds = count.div_ceil(distinct);
    let services: Api<Service> = Api::namespaced(aliyun.client(), "shop");
    let mut addresses = Vec::new();
    for i in 0..distinct {
        let service: Service = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i:05}")},
            "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}}))?;
        let created = services.create(&Default::default(), &service).await?;
        let ip = created.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        addresses.push(ip.parse::<std::net::Ipv4Addr>()?);
    }
    let ports = [vigil_e2e::free_port()?, vigil_e2e::free_port()?];
    let dir = tempfile::tempdir()?;
    let mut yaml = String::new();
    for (i, (name, cluster)) in [("aws", &aws), ("aliyun", &aliyun)].iter().enumerate() {
        let _ = cluster;
        let api = if i == 0 {
            "  local: true\n".to_owned()
        } else {
            format!(
                "  apiServer: {{kubeconfigSecretRef: {{namespace: vigil-system, name: {name}, key: kubeconfig}}}}\n"
            )
        };
        yaml.push_str(&format!(
            "---\napiVersion: vigil.io/v1alpha1\nkind: MemberCluster\nmetadata: {{name: {name}}}\nspec:\n  provider: aws\n  region: r1\n{api}  dns: {{endpoints: [\"127.0.0.1:{}\"]}}\n",
            ports[i]
        ));
    }
    yaml.push_str("---\napiVersion: vigil.io/v1alpha1\nkind: CrossCloudDNS\nmetadata: {name: mesh}\nspec: {clusters: [aws, aliyun], target: {listenerPortBase: 22000}}\n");
    std::fs::write(dir.path().join("mesh.yaml"), yaml)?;
    let loaded = vigil::manifest::load(&[dir.path().to_owned()], "default")?;
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
    let inventory = loaded.inventory;
    let configs = vigil::render::dns::render_cross_cloud_dns(
        &inventory.cross_cloud_dns[0],
        &inventory,
        &|_| true,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut servers = Vec::new();
    for (i, cluster) in [&aws, &aliyun].iter().enumerate() {
        let corefile = format!(
            "cluster.local:{port} {{\n{kubernetes}}}\n\n{vigil}",
            port = ports[i],
            kubernetes = kubernetes_block("cluster.local", cluster.kubeconfig()),
            vigil = with_kubeconfig(&configs[i].server, cluster.kubeconfig()),
        );
        servers
            .push(CoreDns::start(cluster.dir(), ["aws", "aliyun"][i], &corefile, ports[i]).await?);
    }
    let aws_dns = vigil::dns::resolve(&servers[0].endpoint)
        .await
        .map_err(anyhow::Error::msg)?;
    let aliyun_dns = vigil::dns::resolve(&servers[1].endpoint)
        .await
        .map_err(anyhow::Error::msg)?;
    // Both CoreDNS see every service before timing starts.
    let last = format!("svc-{:05}.shop.svc.cluster.local", distinct - 1);
    eventually(
        "aliyun's CoreDNS knows every service",
        Duration::from_secs(60),
        || {
            let last = last.clone();
            let want = addresses[distinct - 1];
            async move { Ok(timed_lookup(aliyun_dns, &last, want).await.ok().map(|_| ())) }
        },
    )
    .await?;
    let (mut chain, mut direct, mut cached) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        for (i, want) in addresses.iter().enumerate() {
            let shared = format!("svc-{i:05}.shop.svc.clusterset.local");
            chain.push(timed_lookup(aws_dns, &shared, *want).await?);
            let own = format!("svc-{i:05}.shop.svc.cluster.local");
            direct.push(timed_lookup(aliyun_dns, &own, *want).await?);
        }
    }
    for _ in 0..count {
        cached.push(
            timed_lookup(aws_dns, "svc-00000.shop.svc.clusterset.local", addresses[0]).await?,
        );
    }
    let (c50, c99) = percentiles(&mut chain);
    let (d50, d99) = percentiles(&mut direct);
    let (k50, k99) = percentiles(&mut cached);
    println!(
        "dns-latency: {} lookups of {distinct} names only aliyun has ({rounds} rounds, uncached): through aws's generated chain (local miss, loopback listener, rewrite, forward) p50 {c50:.2} ms p99 {c99:.2} ms; directly at aliyun p50 {d50:.2} ms p99 {d99:.2} ms; ratio p50 {:.2} p99 {:.2}; the same name again through aws (cached) p50 {k50:.2} ms p99 {k99:.2} ms",
        chain.len(),
        c50 / d50,
        c99 / d99
    );
    Ok(())
}

/// `apiserver_request_total` by (verb, resource, subresource), for writes.
async fn api_writes(cluster: &TestCluster) -> anyhow::Result<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = cluster.client().request_text(request).await?;
    let mut writes = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let label = |name: &str| {
            line.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or_default()
                .to_owned()
        };
        let verb = label("verb");
        if !matches!(verb.as_str(), "POST" | "PATCH" | "APPLY" | "PUT" | "DELETE") {
            continue;
        }
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let key = format!(
            "{verb} {}{}",
            label("resource"),
            match label("subresource").as_str() {
                "" => String::new(),
                sub => format!("/{sub}"),
            }
        );
        *writes.entry(key).or_insert(0.0) += value;
    }
    Ok(writes)
}

fn difference(
    after: &BTreeMap<String, f64>,
    before: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(k, v)| {
            *v > 0.0
                && (k.contains("configmaps")
                    || k.contains("servicelevelobjectives/status")
                    || k.contains("events"))
        })
        .collect()
}

async fn cluster(count: usize) -> anyhow::Result<()> {
    let cluster = TestCluster::start("bench").await?;
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    cluster.ensure_namespace("bench").await?;
    let mut operator = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-bench", &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = api_writes(&cluster).await?;
    let slos: Api<ServiceLevelObjective> = Api::namespaced(cluster.client(), "bench");
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let slos = slos.clone();
            async move {
                let manifest = slo_manifest(i, "bench");
                slos.patch(
                    &format!("slo-{i:04}"),
                    &PatchParams::apply("vigil-bench"),
                    &Patch::Apply(&manifest),
                )
                .await
            }
        })
        .buffer_unordered(16)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("apply failed: {e}");
            }
        })
        .await;
    let applied = started.elapsed();
    let ready = |slos: Api<ServiceLevelObjective>| async move {
        let list = slos.list(&ListParams::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|s| {
                s.status.as_ref().is_some_and(|st| {
                    st.conditions.iter().any(|c| {
                        c.type_ == vigil::api::service_level_objective::vocabulary::RULES_GENERATED
                            && c.status == "True"
                    })
                })
            })
            .count();
        Ok::<_, anyhow::Error>(done)
    };
    eventually(
        "all SLOs have their rules",
        Duration::from_secs(900),
        || {
            let slos = slos.clone();
            async move { Ok((ready(slos).await? == count).then_some(())) }
        },
    )
    .await?;
    let all_ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = api_writes(&cluster).await?;
    let writes = difference(&after, &before);
    let total: f64 = writes.values().sum();
    println!(
        "cluster: {count} SLOs applied in {:.1} s, all with RulesGenerated=True after {:.1} s ({:.0} SLOs/s); operator RSS {} MiB",
        applied.as_secs_f64(),
        all_ready.as_secs_f64(),
        count as f64 / all_ready.as_secs_f64(),
        operator.rss_kib().unwrap_or(0) / 1024
    );
    println!(
        "cluster: operator API writes {total:.0} ({:.2} per SLO): {writes:?}",
        total / count as f64
    );

    // A restart relists and reconciles every SLO: nothing changed, so nothing is written.
    operator.kill();
    let before_resync = api_writes(&cluster).await?;
    let operator = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-bench-2", &[])?;
    let resync_started = Instant::now();
    eventually("every SLO reconciled after the restart", Duration::from_secs(600), || {
        let operator = &operator;
        async move {
            let done = operator.metric("vigil_reconcile_duration_seconds_count{controller=\"ServiceLevelObjective\"}").await.unwrap_or(0.0);
            Ok((done >= count as f64).then_some(()))
        }
    })
    .await?;
    let resync = resync_started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resync_writes = difference(&api_writes(&cluster).await?, &before_resync);
    println!(
        "cluster: resync of {count} unchanged SLOs after a restart took {:.1} s with {:.0} writes {resync_writes:?}; operator RSS {} MiB",
        resync.as_secs_f64(),
        resync_writes.values().sum::<f64>().abs(),
        operator.rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

async fn prometheus(count: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let exporter = Exporter::start(99.0, 1.0).await?;
    let prometheus = Prometheus::start(dir.path(), "bench", &exporter.address).await?;
    let mut rules = 0;
    for i in 0..count {
        let slo: ServiceLevelObjective = serde_json::from_value(slo_manifest(i, "bench"))?;
        let file = vigil::render::slo::render_rules(&slo)?;
        rules += file.rule_count();
        std::fs::write(
            prometheus.rules_dir.join(format!("slo-{i:04}.yaml")),
            file.to_yaml(),
        )?;
    }
    prometheus.reload().await?;
    println!(
        "prometheus: {count} SLOs, {rules} rules loaded; evaluating for 60 s at a 1 s interval"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Prometheus' own metrics, from its /metrics endpoint.
    let (_, metrics) = vigil_e2e::http_get(&format!("{}/metrics", prometheus.url))
        .await
        .ok_or_else(|| anyhow::anyhow!("no /metrics"))?;
    let mut by_kind: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("prometheus_rule_group_last_duration_seconds{"))
    {
        let group = line
            .split("rule_group=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        let kind = group.rsplit(':').next().unwrap_or_default().to_owned();
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let entry = by_kind.entry(kind).or_insert((0.0, 0.0, 0));
        entry.0 += value;
        entry.1 = entry.1.max(value);
        entry.2 += 1;
    }
    for (kind, (sum, max, groups)) in by_kind {
        println!(
            "prometheus: {groups} `{kind}` groups: last evaluation {:.2} ms in all, {:.3} ms per group on average, {:.3} ms at most",
            sum * 1000.0,
            sum * 1000.0 / groups as f64,
            max * 1000.0
        );
    }
    Ok(())
}

async fn certificates(count: usize) -> anyhow::Result<()> {
    use vigil::api::AcmeCertificate;
    use vigil_e2e::dns::DnsOptions;
    use vigil_e2e::pebble::{Pebble, PebbleOptions};
    let cluster = TestCluster::start("bench-acme").await?;
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    cluster.ensure_namespace("bench").await?;
    let dns = vigil_e2e::DnsServer::start_with(
        cluster.dir(),
        DnsOptions {
            zone: "certs.test".to_owned(),
            port: None,
            records: vec![("*".to_owned(), "127.0.0.1".to_owned())],
            tsig: None,
        },
    )
    .await?;
    let http_port = vigil_e2e::free_port()?;
    let pebble = Pebble::start(
        cluster.dir(),
        PebbleOptions {
            http_port,
            dns_server: dns.endpoint.clone(),
            ..PebbleOptions::default()
        },
    )
    .await?;
    let client = cluster.client();
    let issuer = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer", "metadata": {"name": "pebble"},
        "spec": {"server": pebble.directory_url(), "caBundle": pebble.ca_pem,
            "privateKeySecretRef": {"name": "pebble-account"}, "solvers": [{"http01": {}}]},
    });
    Api::<vigil::api::AcmeIssuer>::all(client.clone())
        .patch(
            "pebble",
            &PatchParams::apply("vigil-bench"),
            &Patch::Apply(&issuer),
        )
        .await?;
    let operator = Operator::start(
        cluster.kubeconfig(),
        cluster.dir(),
        "vigil-bench-acme",
        &[&format!("--acme-http01-addr=127.0.0.1:{http_port}")],
    )?;
    let issuers: Api<vigil::api::AcmeIssuer> = Api::all(client.clone());
    eventually("the issuer is Ready", Duration::from_secs(60), || {
        let issuers = issuers.clone();
        async move {
            let issuer = issuers.get("pebble").await?;
            Ok(issuer
                .status
                .is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .then_some(()))
        }
    })
    .await?;
    let requests_before = operator
        .metric_total("vigil_acme_http_requests_total")
        .await
        .unwrap_or(0.0);
    let rss_before = operator.rss_kib().unwrap_or(0);
    let certs: Api<AcmeCertificate> = Api::namespaced(client.clone(), "bench");
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let certs = certs.clone();
            async move {
                let name = format!("cert-{i:04}");
                let manifest = serde_json::json!({
                    "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                    "metadata": {"name": name, "namespace": "bench"},
                    "spec": {"issuerRef": {"name": "pebble"},
                        "dnsNames": [format!("{name}.certs.test")], "secretName": format!("{name}-tls")},
                });
                certs
                    .patch(&name, &PatchParams::apply("vigil-bench"), &Patch::Apply(&manifest))
                    .await
            }
        })
        .buffer_unordered(16)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("apply failed: {e}");
            }
        })
        .await;
    let mut peak = rss_before;
    let ready = loop {
        let list = certs.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|c| {
                c.status.as_ref().is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        peak = peak.max(operator.rss_kib().unwrap_or(0));
        if ready == count {
            break started.elapsed();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "only {ready} of {count} certificates Ready after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let requests = operator
        .metric_total("vigil_acme_http_requests_total")
        .await
        .unwrap_or(0.0)
        - requests_before;
    let failures = operator
        .metric_total("vigil_certificate_issuances_total")
        .await
        .unwrap_or(0.0)
        - operator
            .metric("vigil_certificate_issuances_total{result=\"success\"}")
            .await
            .unwrap_or(0.0);
    println!(
        "certificates: {count} issued concurrently by Pebble (HTTP-01, PEBBLE_VA_NOSLEEP=1) in {:.1} s ({:.1} certificates/s); {:.1} ACME requests per certificate; {failures:.0} failed attempts; operator RSS {} MiB before, peak {} MiB",
        ready.as_secs_f64(),
        count as f64 / ready.as_secs_f64(),
        requests / count as f64,
        rss_before / 1024,
        peak / 1024
    );
    Ok(())
}

/// The `q` quantile (0..1) of sorted `values`.
fn quantile(values: &[Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    values[index.min(values.len() - 1)]
}

/// Crash capture and the breaker under a burst: `count` Deployments (one kwok pod each),
/// each supervised with a breaker of 10 crashes; 10 crashes per pod are written into the
/// pods' container status at once (as kubelets would report them). Measures, from each
/// status write to the moment the SupervisedWorkload's status counts it (its snapshot is
/// stored before), the latency; from each workload's 10th crash to `breaker: Open`, the
/// reaction. Then 5000 more pods are created and the operator's memory is read again.
async fn crashes(count: usize) -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::{WatchStreamExt, watcher};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use vigil::api::SupervisedWorkload;
    const CRASHES: usize = 10;
    const IMAGE: &str = "registry.example/bench:1";
    let cluster = TestCluster::start("bench-crash").await?;
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    cluster.ensure_namespace("bench").await?;
    let client = cluster.client();
    let operator = Operator::start(
        cluster.kubeconfig(),
        cluster.dir(),
        "vigil-bench-crash",
        &[],
    )?;
    let params = PatchParams::apply("vigil-bench");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let workloads: Api<SupervisedWorkload> = Api::namespaced(client.clone(), "bench");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    futures::stream::iter(0..count)
        .map(|i| {
            let (deployments, workloads, params) = (deployments.clone(), workloads.clone(), params.clone());
            async move {
                let name = format!("w{i:03}");
                let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name, "bench": "crash"}},
                            "spec": {"containers": [{"name": "app", "image": IMAGE}]}}}});
                deployments.patch(&name, &params, &Patch::Apply(&deployment)).await?;
                let supervised = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
                    "metadata": {"name": name},
                    "spec": {"target": {"kind": "Deployment", "name": name}, "isolation": {"profile": "none"},
                        "circuitBreaker": {"maxCrashes": CRASHES, "window": "10m", "cooldown": "1h"}}});
                workloads.patch(&name, &params, &Patch::Apply(&supervised)).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(16)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("apply failed: {e}");
            }
        })
        .await;
    let running = eventually(
        "every workload's pod running",
        Duration::from_secs(600),
        || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("bench=crash"))
                    .await?;
                let running: HashMap<String, String> = list
                    .items
                    .into_iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .filter_map(|p| {
                        Some((p.labels().get("app")?.clone(), p.metadata.name.clone()?))
                    })
                    .collect();
                Ok((running.len() == count).then_some(running))
            }
        },
    )
    .await?;
    eventually(
        "every SupervisedWorkload reconciled",
        Duration::from_secs(600),
        || {
            let workloads = workloads.clone();
            async move {
                let list = workloads.list(&ListParams::default()).await?;
                let done = list
                    .items
                    .iter()
                    .filter(|w| w.status.as_ref().is_some_and(|s| s.breaker.is_some()))
                    .count();
                Ok((done == count).then_some(()))
            }
        },
    )
    .await?;
    let rss_before = operator.rss_kib().unwrap_or(0);

    // What the operator reports, as the watch sees it: when each count and Open appeared.
    let seen: Arc<Mutex<HashMap<(String, i64), Instant>>> = Arc::default();
    let opened: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let observer = {
        let (seen, opened) = (seen.clone(), opened.clone());
        let stream = watcher(workloads.clone(), watcher::Config::default()).applied_objects();
        tokio::spawn(stream.for_each(move |w| {
            let (seen, opened) = (seen.clone(), opened.clone());
            async move {
                let Ok(w) = w else { return };
                let status = w.status.clone().unwrap_or_default();
                let now = Instant::now();
                let name = w.name_any();
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                for k in 1..=status.crashes_total {
                    seen.entry((name.clone(), k)).or_insert(now);
                }
                if status.breaker.as_deref() == Some("Open") {
                    opened
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name)
                        .or_insert(now);
                }
            }
        }))
    };
    let injected: Arc<Mutex<HashMap<(String, i64), Instant>>> = Arc::default();
    let started = Instant::now();
    let mut peak = rss_before;
    for k in 1..=CRASHES {
        futures::stream::iter(running.clone())
            .map(|(name, pod)| {
                let (pods, injected) = (pods.clone(), injected.clone());
                async move {
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let patch = serde_json::json!({"status": {"containerStatuses": [{
                        "name": "app", "image": IMAGE, "ready": true, "started": true,
                        "restartCount": k,
                        "lastState": {"terminated": {"exitCode": 2, "reason": "Error",
                            "message": "panic: bench\n\ngoroutine 1 [running]:\nmain.main()\n\t/src/main.go:9 +0x1d\n",
                            "startedAt": now, "finishedAt": now}},
                        "state": {"running": {"startedAt": now}}}]}});
                    let at = Instant::now();
                    pods.patch_status(&pod, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
                    injected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((name, i64::try_from(k).unwrap_or(0)), at);
                    Ok::<_, anyhow::Error>(())
                }
            })
            .buffer_unordered(32)
            .for_each(|r| async move {
                if let Err(e) = r {
                    eprintln!("crash injection failed: {e}");
                }
            })
            .await;
        peak = peak.max(operator.rss_kib().unwrap_or(0));
    }
    let injection = started.elapsed();
    let total = count * CRASHES;
    eventually(
        "every crash counted and every breaker open",
        Duration::from_secs(900),
        || {
            let (seen, opened) = (seen.clone(), opened.clone());
            peak = peak.max(operator.rss_kib().unwrap_or(0));
            async move {
                let counted = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
                let open = opened.lock().unwrap_or_else(|e| e.into_inner()).len();
                Ok((counted >= total && open == count).then_some(()))
            }
        },
    )
    .await?;
    let all = started.elapsed();
    observer.abort();
    let (seen, injected, opened) = (
        seen.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        injected.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        opened.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    );
    let mut latencies: Vec<Duration> = injected
        .iter()
        .filter_map(|(key, at)| Some(seen.get(key)?.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    let mut reactions: Vec<Duration> = opened
        .iter()
        .filter_map(|(name, at)| {
            let tenth = injected.get(&(name.clone(), i64::try_from(CRASHES).unwrap_or(0)))?;
            Some(at.saturating_duration_since(*tenth))
        })
        .collect();
    reactions.sort();
    println!(
        "crashes: {total} crash events across {count} workloads injected in {:.1} s ({:.0}/s), all counted and every breaker open after {:.1} s",
        injection.as_secs_f64(),
        total as f64 / injection.as_secs_f64(),
        all.as_secs_f64()
    );
    println!(
        "crashes: crash-to-snapshot p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; breaker reaction (10th crash to Open) p50 {:.0} ms, p99 {:.0} ms; operator RSS {} MiB before, peak {} MiB",
        quantile(&latencies, 0.5).as_secs_f64() * 1000.0,
        quantile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        quantile(&reactions, 0.5).as_secs_f64() * 1000.0,
        quantile(&reactions, 0.99).as_secs_f64() * 1000.0,
        rss_before / 1024,
        peak / 1024
    );

    // Memory while watching 5000 pods (bare pods bound to the kwok nodes).
    cluster.ensure_namespace("bench-pods").await?;
    let many: Api<Pod> = Api::namespaced(client.clone(), "bench-pods");
    let nodes: Vec<String> = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let before_pods = operator.rss_kib().unwrap_or(0);
    let pods_started = Instant::now();
    futures::stream::iter(0..5000usize)
        .map(|i| {
            let many = many.clone();
            let node = nodes[i % nodes.len().max(1)].clone();
            async move {
                let pod: Pod = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("p{i:04}"), "labels": {"bench": "many"}},
                    "spec": {"nodeName": node, "containers": [{"name": "app", "image": IMAGE}]}}))?;
                many.create(&Default::default(), &pod).await?;
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(32)
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("pod create failed: {e}");
            }
        })
        .await;
    let mut peak_pods = before_pods;
    eventually("5000 pods running", Duration::from_secs(900), || {
        let many = many.clone();
        peak_pods = peak_pods.max(operator.rss_kib().unwrap_or(0));
        async move {
            let list = many
                .list(&ListParams::default().labels("bench=many"))
                .await?;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            Ok((running == 5000).then_some(()))
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    println!(
        "crashes: 5000 more pods created and running in {:.1} s; operator RSS {} MiB before, peak {} MiB, {} MiB after",
        pods_started.elapsed().as_secs_f64(),
        before_pods / 1024,
        peak_pods.max(operator.rss_kib().unwrap_or(0)) / 1024,
        operator.rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

/// Loads `count` TelemetryPipelines (modes and signals varied) over an AWS, an Alibaba
/// Cloud and a VMware cluster, and times rendering every Collector configuration.
fn otel_render(count: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut docs = Vec::new();
    for (i, provider) in ["aws", "aliyun", "vmware"].iter().enumerate() {
        let mut spec = serde_json::json!({"provider": provider, "region": "r1"});
        if i == 0 {
            spec["local"] = true.into();
        } else {
            spec["apiServer"] = serde_json::json!({"kubeconfigSecretRef": {"namespace": "vigil-system", "name": format!("{provider}-kubeconfig"), "key": "kubeconfig"}});
        }
        docs.push(
            serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": provider}, "spec": spec}),
        );
    }
    for i in 0..count {
        let mode = ["gateway", "agent", "sidecar"][i % 3];
        docs.push(serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
            "metadata": {"name": format!("p{i:04}"), "namespace": "shop"},
            "spec": {"clusters": ["aws", "aliyun", "vmware"],
                "mode": mode,
                "signals": {"traces": true, "metrics": i % 2 == 0, "logs": i % 4 == 0},
                "sampling": {"percentage": 5 + i % 20, "latencyThresholdMs": 250},
                "backends": {
                    "aws": {"region": "eu-west-1", "xray": true, "emfLogGroup": "/shop/metrics",
                        "ampRemoteWriteUrl": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"},
                    "aliyun": {"endpoint": "cn-hangzhou.log.aliyuncs.com", "project": "shop",
                        "credentialsSecretRef": {"name": "sls"}},
                    "vmware": {"tracesOtlpEndpoint": "http://tempo.observability.svc:4317",
                        "prometheusRemoteWriteUrl": "http://mimir.observability.svc/api/v1/push",
                        "lokiUrl": "http://loki.observability.svc:3100",
                        "opensearchUrl": "https://opensearch.observability.svc:9200"}}}}));
    }
    let stream: Vec<String> = docs
        .iter()
        .map(|d| serde_yaml_ng::to_string(d).unwrap_or_default())
        .collect();
    std::fs::write(dir.path().join("pipelines.yaml"), stream.join("---\n"))?;
    let started = Instant::now();
    let loaded = vigil::manifest::load(&[dir.path().to_owned()], "default")?;
    let load = started.elapsed();
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
    let runs = 20;
    let started = Instant::now();
    let mut files = 0;
    let mut bytes = 0;
    for _ in 0..runs {
        files = 0;
        bytes = 0;
        for pipeline in &loaded.inventory.telemetry_pipelines {
            for config in
                vigil::render::otel::render_collector_configs(pipeline, &loaded.inventory, None)
                    .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                files += 1;
                bytes += config.yaml.len();
            }
        }
    }
    let each = started.elapsed() / runs;
    println!(
        "otel-render: {count} pipelines x 3 clusters = {files} Collector configurations rendered in {:.2} ms ({:.1} us each, {:.0} KiB); loading and validating the manifests took {:.1} ms",
        each.as_secs_f64() * 1000.0,
        each.as_secs_f64() * 1e6 / files.max(1) as f64,
        bytes as f64 / 1024.0,
        load.as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// Spans per second a gateway accepts over OTLP/HTTP, with the generated VMware
/// configuration (memory_limiter, k8s_attributes against a real API server, tail_sampling,
/// batch; resource_detection stood in for, as in the tests) and with a pass-through
/// configuration (the OTLP receiver straight to the OTLP exporter) on the same build, both
/// exporting to a backend Collector; `seconds` of load each, from 4 concurrent senders of
/// 500-span requests with fresh trace ids.
async fn otel_throughput(seconds: usize) -> anyhow::Result<()> {
    use vigil_e2e::otelcol::{
        Backend, Collector, outside_a_pod, span, vmware_gateway_config, with_stand_ins,
    };
    let cluster = TestCluster::start("otel-bench").await?;
    let dir = tempfile::tempdir()?;
    let backend = Backend::start(dir.path(), "backend").await?;
    let generated = vmware_gateway_config(&format!("http://{}", backend.endpoint), 10.0)?;
    let (generated, _) = with_stand_ins(&generated)?;
    let generated = outside_a_pod(&generated)?;
    let passthrough = serde_yaml_ng::to_string(&serde_json::json!({
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": "0.0.0.0:4318"}}}},
        "exporters": {"otlp_grpc": {"endpoint": backend.endpoint, "tls": {"insecure": true}}},
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["otlp_grpc"]}},
            "telemetry": {"metrics": {"level": "none"}}},
    }))?;
    let kubeconfig = cluster.kubeconfig().display().to_string();
    let mut results = Vec::new();
    for (name, config) in [("pass-through", passthrough), ("generated", generated)] {
        let mut gateway = Collector::start(
            dir.path(),
            name,
            "otelcol-vigil",
            &config,
            &[
                ("KUBECONFIG", &kubeconfig),
                ("K8S_NODE_NAME", "otel-bench-node-0"),
            ],
        )
        .await?;
        let url = gateway
            .otlp_http
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no OTLP/HTTP receiver"))?;
        let deadline = Instant::now() + Duration::from_secs(seconds as u64);
        let senders = (0..4).map(|sender| {
            let url = url.clone();
            async move {
                let mut sent = 0usize;
                let mut request = 0usize;
                while Instant::now() < deadline {
                    let spans: Vec<serde_json::Value> = (0..500)
                        .map(|i| {
                            let id = format!("{sender:02x}{request:014x}{i:016x}");
                            span(
                                &id,
                                "GET /cart",
                                if i % 50 == 0 { 900 } else { 12 },
                                i % 100 == 0,
                            )
                        })
                        .collect();
                    if vigil_e2e::otelcol::send(&url, "checkout", &spans)
                        .await
                        .is_ok()
                    {
                        sent += spans.len();
                    }
                    request += 1;
                }
                sent
            }
        });
        let started = Instant::now();
        let sent: usize = futures::future::join_all(senders).await.into_iter().sum();
        let rate = sent as f64 / started.elapsed().as_secs_f64();
        let rss = gateway.process().rss_kib().unwrap_or(0) / 1024;
        println!(
            "otel-throughput: {name}: {rate:.0} spans/s accepted over {seconds} s, gateway RSS {rss} MiB"
        );
        results.push(rate);
    }
    if let [plain, generated] = results[..] {
        println!(
            "otel-throughput: generated / pass-through = {:.2}",
            generated / plain.max(1.0)
        );
    }
    drop(cluster);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let what = args.first().map(String::as_str).unwrap_or("render");
    let count = |default: usize| args.get(1).and_then(|n| n.parse().ok()).unwrap_or(default);
    match what {
        "render" => render(count(1000)),
        "cluster" => cluster(count(1000)).await,
        "prometheus" => prometheus(count(100)).await,
        "certificates" => certificates(count(100)).await,
        "dns-render" => dns_render(count(32)),
        "dns-latency" => dns_latency(count(3000)).await,
        "crashes" => crashes(count(100)).await,
        "otel-render" => otel_render(count(100)),
        "otel-throughput" => otel_throughput(count(20)).await,
        "suite" => {
            let scale = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
            let sizes = vigil_e2e::bench::Sizes {
                slos: count(1000),
                scale,
            };
            let figures = vigil_e2e::bench::suite(sizes).await?;
            println!("{}", serde_json::to_string_pretty(&figures)?);
            Ok(())
        }
        other => anyhow::bail!(
            "unknown benchmark {other:?}: suite, render, cluster, prometheus, certificates, dns-render, dns-latency, crashes, otel-render or otel-throughput"
        ),
    }
}
