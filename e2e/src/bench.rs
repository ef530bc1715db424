//! The benchmark suite (`vigil-bench suite`): one control plane with Pebble, bind9 and the
//! test Collector, the operator with exactly the chart's RBAC, and per kind: how long from
//! create to `Ready=True`, throughput, the operator's API writes per object (from the API
//! server's audit log), and its writes on a no-op resync after a restart (must be 0). Then
//! the operator's peak memory at two scales and the render time of 1000 objects. It prints
//! one JSON document.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use crate::otelcol::ValidationKubelet;
use crate::{DnsOptions, DnsServer, Operator, Pebble, PebbleOptions, TestCluster, eventually};

/// The identity the chart gives the operator, as the audit log names it.
const OPERATOR_USER: &str = "system:serviceaccount:vigil-system:vigil";
const NS: &str = "bench";
/// The chart as installed: no Deployment (the operator runs as a process), and Secrets
/// (certificates) written in the benchmark's namespace.
const CHART_VALUES: &str = "replicas=0,rbac.secretNamespaces={bench}";

/// The sizes of one run.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// ServiceLevelObjectives in the per-kind phase (the other kinds scale from it).
    pub slos: usize,
    /// Objects in the cluster when the second memory figure is taken.
    pub scale: usize,
}

fn resource(kind: &str) -> ApiResource {
    let plural = format!("{}s", kind.to_lowercase());
    let plural = if kind == "CrossCloudDNS" {
        "crossclouddnses".to_owned()
    } else {
        plural
    };
    ApiResource {
        group: vigil::api::GROUP.to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: vigil::api::API_VERSION.to_owned(),
        kind: kind.to_owned(),
        plural,
    }
}

fn ready(object: &DynamicObject) -> bool {
    let status = &object.data["status"];
    let current = match status["observedGeneration"].as_i64() {
        Some(observed) => Some(observed) == object.metadata.generation,
        None => true,
    };
    current
        && status["conditions"].as_array().is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The operator's writes in the audit log so far, as `resource[/subresource]` (Lease renewals
/// left out: they are leader election, not work).
fn operator_writes(cluster: &TestCluster) -> anyhow::Result<Vec<String>> {
    Ok(cluster
        .audit()?
        .into_iter()
        .filter(|e| e["user"]["username"] == OPERATOR_USER)
        .filter(|e| e["objectRef"]["resource"] != "leases")
        .map(|e| {
            let object = &e["objectRef"];
            match object["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", object["resource"].as_str().unwrap_or_default()),
                None => object["resource"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect())
}

fn count_by_resource(writes: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for write in writes {
        *counts.entry(write.clone()).or_insert(0) += 1;
    }
    counts
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Applies `objects` of `kind` (16 at a time) and waits until every one is Ready at its
/// generation. Returns the figures of the kind.
async fn measure(cluster: &TestCluster, kind: &str, objects: Vec<Value>) -> anyhow::Result<Value> {
    let client = cluster.client();
    let resource = resource(kind);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let ready_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let sink = ready_at.clone();
    let watch = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(object) = item
                && ready(&object)
            {
                let key = format!(
                    "{}/{}",
                    object.namespace().unwrap_or_default(),
                    object.name_any()
                );
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_insert_with(Instant::now);
            }
        }
    });
    let writes_before = operator_writes(cluster)?.len();
    let count = objects.len();
    let started = Instant::now();
    let applied: Vec<(String, Instant)> = futures::stream::iter(objects)
        .map(|object| {
            let client = client.clone();
            let resource = resource.clone();
            async move {
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
                let api: Api<DynamicObject> = match &namespace {
                    Some(ns) => Api::namespaced_with(client, ns, &resource),
                    None => Api::all_with(client, &resource),
                };
                api.patch(
                    &name,
                    &PatchParams::apply("vigil-bench"),
                    &Patch::Apply(&object),
                )
                .await?;
                Ok::<_, kube::Error>((
                    format!("{}/{name}", namespace.unwrap_or_default()),
                    Instant::now(),
                ))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let all_applied = started.elapsed();
    let wait = Duration::from_secs(120 + count as u64);
    // Only this phase's objects count: the watch also lists those of earlier phases.
    let keys: Arc<Vec<String>> = Arc::new(applied.iter().map(|(key, _)| key.clone()).collect());
    let waited = eventually(&format!("{count} {kind} Ready"), wait, || {
        let (ready_at, keys) = (ready_at.clone(), keys.clone());
        async move {
            let ready_at = ready_at.lock().unwrap_or_else(|e| e.into_inner());
            let done = keys.iter().filter(|k| ready_at.contains_key(*k)).count();
            Ok((done >= count).then_some(()))
        }
    })
    .await;
    if let Err(error) = waited {
        // Say why: how many made it, and the Ready condition of a few that did not.
        let ready = ready_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let list = Api::<DynamicObject>::all_with(client.clone(), &resource)
            .list(&Default::default())
            .await?;
        let stuck: Vec<String> = list
            .items
            .iter()
            .filter(|o| {
                !ready.contains_key(&format!(
                    "{}/{}",
                    o.namespace().unwrap_or_default(),
                    o.name_any()
                ))
            })
            .take(5)
            .map(|o| format!("{}: {}", o.name_any(), o.data["status"]["conditions"]))
            .collect();
        anyhow::bail!(
            "{error:#}: {} of {count} Ready; for example {stuck:#?}",
            keys.iter().filter(|k| ready.contains_key(*k)).count()
        );
    }
    let all_ready = started.elapsed();
    watch.abort();
    // Let the last status writes land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = operator_writes(cluster)?;
    let phase = count_by_resource(&writes[writes_before..]);
    let total: usize = phase.values().sum();
    let ready_at = ready_at.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut latencies: Vec<Duration> = applied
        .iter()
        .filter_map(|(key, at)| Some(ready_at.get(key)?.saturating_duration_since(*at)))
        .collect();
    latencies.sort();
    Ok(json!({
        "objects": count,
        "create_to_ready_ms": {
            "p50": millis(quantile(&latencies, 0.5)),
            "p99": millis(quantile(&latencies, 0.99)),
            "max": millis(quantile(&latencies, 1.0)),
        },
        "applied_in_s": millis(all_applied) / 1000.0,
        "all_ready_in_s": millis(all_ready) / 1000.0,
        "throughput_per_s": (count as f64 / all_ready.as_secs_f64() * 10.0).round() / 10.0,
        "api_writes": total,
        "api_writes_per_object": (total as f64 / count as f64 * 100.0).round() / 100.0,
        "api_writes_by_resource": phase,
    }))
}

fn slo(i: usize) -> Value {
    let objective = [99.0, 99.5, 99.9, 99.95][i % 4];
    let window = ["30d", "28d", "7d"][i % 3];
    json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
        "metadata": {"name": format!("slo-{i:05}"), "namespace": NS},
        "spec": {
            "service": format!("svc-{}", i % 50), "objective": objective,
            "window": window,
            "sli": {"ratio": {
                "errors": format!("http_requests_total{{job=\"bench\",code=\"500\",route=\"r{}\"}}", i % 10),
                "total": format!("http_requests_total{{job=\"bench\",route=\"r{}\"}}", i % 10),
            }},
            "output": {"kind": "ConfigMap"},
        },
    })
}

fn member(i: usize) -> Value {
    json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": format!("member-{i:03}")},
        "spec": {"provider": "aws", "region": "eu-west-1", "local": true},
    })
}

fn workload(i: usize) -> Value {
    json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": format!("app-{i:03}"), "namespace": NS},
        "spec": {"target": {"kind": "Deployment", "name": format!("app-{i:03}")}},
    })
}

fn deployment(i: usize) -> Value {
    let name = format!("app-{i:03}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}},
    })
}

fn pipeline(i: usize) -> Value {
    json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
        "metadata": {"name": format!("pipe-{i:02}"), "namespace": NS},
        "spec": {"clusters": ["onprem"], "mode": "gateway",
            "signals": {"traces": true, "metrics": false},
            "sampling": {"percentage": 10, "latencyThresholdMs": 500},
            "backends": {"vmware": {"tracesOtlpEndpoint": format!("http://tempo-{i}.observability.svc:4317")}}},
    })
}

fn certificate(i: usize) -> Value {
    let name = format!("cert-{i:03}");
    json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"issuerRef": {"name": "pebble"}, "dnsNames": [format!("{name}.certs.test")],
            "secretName": format!("{name}-tls")},
    })
}

async fn apply_plain(cluster: &TestCluster, objects: &[Value]) -> anyhow::Result<()> {
    let client = cluster.client();
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    for object in objects {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::api::GroupVersionKind::gvk(
            group,
            version,
            object["kind"].as_str().unwrap_or_default(),
        );
        let (resource, _) = discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| anyhow::anyhow!("{gvk:?} is not served"))?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply("vigil-bench"),
            &Patch::Apply(object),
        )
        .await?;
    }
    Ok(())
}

/// Reconciles so far per controller, from the operator's metrics.
async fn reconciles(operator: &Operator, kind: &str) -> f64 {
    operator
        .metric(&format!(
            "vigil_reconcile_duration_seconds_count{{controller=\"{kind}\"}}"
        ))
        .await
        .unwrap_or(0.0)
}

/// Runs the whole suite and returns its JSON document.
pub async fn suite(sizes: Sizes) -> anyhow::Result<Value> {
    let members = (sizes.slos / 10).max(1);
    let workloads = (sizes.slos / 10).max(1);
    let certificates = (sizes.slos / 10).max(1);
    let pipelines = (sizes.slos / 50).max(1);

    let cluster = TestCluster::start("bench-suite").await?;
    cluster.ensure_namespace(NS).await?;
    let dns = DnsServer::start_with(
        cluster.dir(),
        DnsOptions {
            zone: "certs.test".to_owned(),
            port: None,
            records: vec![("*".to_owned(), "127.0.0.1".to_owned())],
            tsig: None,
        },
    )
    .await?;
    let http_port = crate::free_port()?;
    let pebble = Pebble::start(
        cluster.dir(),
        PebbleOptions {
            http_port,
            dns_server: dns.endpoint.clone(),
            ..PebbleOptions::default()
        },
    )
    .await?;
    let kubelet_dir = tempfile::tempdir()?;
    let _kubelet = ValidationKubelet::start(cluster.client(), kubelet_dir.path());
    // The workloads' targets exist first: their pods are not part of the figures.
    apply_plain(
        &cluster,
        &(0..workloads).map(deployment).collect::<Vec<_>>(),
    )
    .await?;
    let http01 = format!("--acme-http01-addr=127.0.0.1:{http_port}");
    // Pebble rejects 5% of nonces; instant-acme tries a request three times, so about one
    // run in ten has an issuance fail, which the default schedule retries after an hour.
    let retry = "--acme-retry-initial-seconds=5";
    let mut operator =
        Operator::start_with_chart_values(&cluster, "vigil-bench", &[&http01, retry], CHART_VALUES)
            .await?;

    let mut kinds = serde_json::Map::new();
    kinds.insert(
        "ServiceLevelObjective".into(),
        measure(
            &cluster,
            "ServiceLevelObjective",
            (0..sizes.slos).map(slo).collect(),
        )
        .await?,
    );
    kinds.insert(
        "MemberCluster".into(),
        measure(
            &cluster,
            "MemberCluster",
            (0..members).map(member).collect(),
        )
        .await?,
    );
    kinds.insert(
        "SupervisedWorkload".into(),
        measure(
            &cluster,
            "SupervisedWorkload",
            (0..workloads).map(workload).collect(),
        )
        .await?,
    );
    let onprem = json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": "onprem"},
        "spec": {"provider": "vmware", "region": "dc1", "local": true}});
    apply_plain(&cluster, &[onprem]).await?;
    kinds.insert(
        "TelemetryPipeline".into(),
        measure(
            &cluster,
            "TelemetryPipeline",
            (0..pipelines).map(pipeline).collect(),
        )
        .await?,
    );
    let issuer = json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer", "metadata": {"name": "pebble"},
        "spec": {"server": pebble.directory_url(), "caBundle": pebble.ca_pem,
            "privateKeySecretRef": {"name": "pebble-account"}, "solvers": [{"http01": {}}]},
    });
    kinds.insert(
        "AcmeIssuer".into(),
        measure(&cluster, "AcmeIssuer", vec![issuer]).await?,
    );
    kinds.insert(
        "AcmeCertificate".into(),
        measure(
            &cluster,
            "AcmeCertificate",
            (0..certificates).map(certificate).collect(),
        )
        .await?,
    );
    let objects_now = sizes.slos + members + 1 + workloads + pipelines + 1 + certificates;
    let peak_small = operator.peak_rss_kib().unwrap_or(0);

    // A restart relists and reconciles everything; nothing changed, so nothing is written.
    operator.kill();
    let before = operator_writes(&cluster)?.len();
    let operator = Operator::start_with_chart_values(
        &cluster,
        "vigil-bench-2",
        &[&http01, retry],
        CHART_VALUES,
    )
    .await?;
    let resync_started = Instant::now();
    let expected = [
        ("ServiceLevelObjective", sizes.slos),
        ("MemberCluster", members + 1),
        ("SupervisedWorkload", workloads),
        ("TelemetryPipeline", pipelines),
        ("AcmeIssuer", 1),
        ("AcmeCertificate", certificates),
    ];
    eventually(
        "every object reconciled after the restart",
        Duration::from_secs(600),
        || {
            let operator = &operator;
            async move {
                for (kind, count) in expected {
                    if reconciles(operator, kind).await < count as f64 {
                        return Ok(None);
                    }
                }
                Ok(Some(()))
            }
        },
    )
    .await?;
    let resync = resync_started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resync_writes = count_by_resource(&operator_writes(&cluster)?[before..]);
    for (kind, _) in expected {
        let plural = resource(kind).plural;
        let writes: usize = resync_writes
            .iter()
            .filter(|(resource, _)| resource.split('/').next() == Some(plural.as_str()))
            .map(|(_, n)| n)
            .sum();
        if let Some(figures) = kinds.get_mut(kind) {
            figures["noop_resync_status_writes"] = json!(writes);
        }
    }

    // The second scale: more SLOs until the cluster holds `scale` objects.
    let more = sizes.scale.saturating_sub(objects_now);
    let scaled = if more > 0 {
        let figures = measure(
            &cluster,
            "ServiceLevelObjective",
            (sizes.slos..sizes.slos + more).map(slo).collect(),
        )
        .await?;
        Some(figures)
    } else {
        None
    };
    let objects_scaled = objects_now + more;
    let peak_scaled = operator.peak_rss_kib().unwrap_or(0);

    let render = render_time(1000)?;
    Ok(json!({
        "machine": machine(),
        "kinds": kinds,
        "noop_resync": {
            "objects": objects_now,
            "seconds": millis(resync) / 1000.0,
            "api_writes": resync_writes.values().sum::<usize>(),
            "api_writes_by_resource": resync_writes,
        },
        "operator_peak_rss_mib": [
            {"objects": objects_now, "mib": peak_small / 1024},
            {"objects": objects_scaled, "mib": peak_scaled / 1024,
                "slos_added": scaled},
        ],
        "render_1000_objects_ms": render,
    }))
}

/// Loading, validating and rendering 1000 SLO manifests, in milliseconds.
fn render_time(count: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let text: Vec<String> = (0..count)
        .map(|i| serde_yaml_ng::to_string(&slo(i)).unwrap_or_default())
        .collect();
    std::fs::write(dir.path().join("slos.yaml"), text.join("---\n"))?;
    let started = Instant::now();
    let loaded = vigil::manifest::load(&[dir.path().to_owned()], "default")?;
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems.first());
    let desired = vigil::render::render(&loaded.inventory);
    anyhow::ensure!(!desired.files.is_empty());
    Ok(millis(started.elapsed()))
}

fn machine() -> Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| (kib / 1048576.0).round())
        .unwrap_or(0.0);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu": cpu_model, "memory_gib": memory_gib, "os": std::env::consts::OS})
}
