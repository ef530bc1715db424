//! Faults on a real control plane: what Vigil manages converges after them, nothing is
//! duplicated or orphaned, and no status goes backwards.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use vigil::api::{
    AcmeCertificate, AcmeIssuer, MemberCluster, ServiceLevelObjective, SupervisedWorkload,
};
use vigil_e2e::{DnsOptions, DnsServer, Operator, Pebble, PebbleOptions, TestCluster, eventually};

const NS: &str = "fleet";

/// Every `observedGeneration` each object's status showed, in the order the watch saw them.
type Seen = Arc<Mutex<BTreeMap<String, Vec<i64>>>>;

/// Records the `observedGeneration` of every status change of `K`, across API server
/// restarts (the watcher relists after errors).
fn record<K>(api: Api<K>, observed: fn(&K) -> Option<i64>) -> (Seen, tokio::task::JoinHandle<()>)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(object) = item
                && let Some(generation) = observed(&object)
            {
                let mut seen = sink.lock().unwrap_or_else(|e| e.into_inner());
                let history = seen.entry(object.name_any()).or_default();
                if history.last() != Some(&generation) {
                    history.push(generation);
                }
            }
        }
    });
    (seen, task)
}

fn went_backwards(seen: &Seen) -> Vec<String> {
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.iter()
        .filter(|(_, history)| history.windows(2).any(|w| w[1] < w[0]))
        .map(|(name, history)| format!("{name}: {history:?}"))
        .collect()
}

fn slo(name: &str, objective: f64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "service": name, "objective": objective,
            "sli": {"ratio": {
                "errors": format!("http_requests_total{{job=\"{name}\",code=~\"5..\"}}"),
                "total": format!("http_requests_total{{job=\"{name}\"}}"),
            }},
            "output": {"kind": "ConfigMap"},
        },
    })
}

fn member(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": name},
        "spec": {"provider": "aws", "region": "eu-west-1", "local": true, "probeInterval": "30s"},
    })
}

/// One apply, retried until the API server takes it (it may be down).
async fn apply_until_taken(client: Client, object: serde_json::Value) -> anyhow::Result<()> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let params = PatchParams::apply("vigil-e2e").force();
    eventually(&format!("apply {name}"), Duration::from_secs(120), || {
        let (client, object, name, params) =
            (client.clone(), object.clone(), name.clone(), params.clone());
        async move {
            let result = if object["kind"] == "MemberCluster" {
                Api::<MemberCluster>::all(client)
                    .patch(&name, &params, &Patch::Apply(&object))
                    .await
                    .map(drop)
            } else {
                Api::<ServiceLevelObjective>::namespaced(client, NS)
                    .patch(&name, &params, &Patch::Apply(&object))
                    .await
                    .map(drop)
            };
            Ok(result.ok())
        }
    })
    .await
}

fn ready_at_generation(
    generation: Option<i64>,
    observed: Option<i64>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    generation.is_some()
        && observed == generation
        && conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

#[tokio::test]
async fn an_api_server_restart_in_the_middle_of_500_applies_loses_nothing() {
    let mut cluster = TestCluster::start("restart").await.expect("cluster");
    cluster.install_crds().await.expect("CRDs");
    cluster.ensure_namespace("vigil-system").await.expect("ns");
    cluster.ensure_namespace(NS).await.expect("ns");
    let mut operator = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-restart", &[])
        .expect("operator");
    let result = restart_scenario(&mut cluster, &mut operator).await;
    operator
        .on_failure(result)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn restart_scenario(
    cluster: &mut TestCluster,
    operator: &mut Operator,
) -> anyhow::Result<()> {
    let client = cluster.client();
    let slos: Api<ServiceLevelObjective> = Api::namespaced(client.clone(), NS);
    let members: Api<MemberCluster> = Api::all(client.clone());
    let (slo_seen, slo_watch) = record(slos.clone(), |s: &ServiceLevelObjective| {
        s.status.as_ref()?.observed_generation
    });
    let (member_seen, member_watch) = record(members.clone(), |m: &MemberCluster| {
        m.status.as_ref()?.observed_generation
    });

    // 500 applies: 250 SLOs created, 150 MemberClusters, and 100 of the SLOs changed.
    let mut applies: Vec<serde_json::Value> = Vec::new();
    for i in 0..250 {
        applies.push(slo(&format!("svc-{i:03}"), 99.0));
        if i < 150 {
            applies.push(member(&format!("member-{i:03}")));
        }
    }
    applies.extend((0..100).map(|i| slo(&format!("svc-{:03}", i * 2), 99.5)));
    anyhow::ensure!(applies.len() == 500);
    let done = Arc::new(AtomicUsize::new(0));
    // An SLO's change is sent only once its creation was taken: eight applies run at once,
    // and a creation retried through the outage could otherwise land after the change and
    // put the old objective back (a race of the test, not a lost update).
    let taken: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let applier = {
        let (client, done) = (client.clone(), done.clone());
        let mut sent = BTreeSet::new();
        let applies: Vec<(serde_json::Value, bool)> = applies
            .into_iter()
            .map(|object| {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                let change = !sent.insert(name.to_owned());
                (object, change)
            })
            .collect();
        tokio::spawn(async move {
            futures::stream::iter(applies)
                .map(|(object, change)| {
                    let (client, done, taken) = (client.clone(), done.clone(), taken.clone());
                    async move {
                        let name = object["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned();
                        if change {
                            eventually(
                                &format!("{name} created before its change"),
                                Duration::from_secs(120),
                                || {
                                    let created = taken
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .contains(&name);
                                    async move { Ok(created.then_some(())) }
                                },
                            )
                            .await?;
                        }
                        apply_until_taken(client, object).await?;
                        taken.lock().unwrap_or_else(|e| e.into_inner()).insert(name);
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, anyhow::Error>(())
                    }
                })
                .buffer_unordered(8)
                .try_collect::<Vec<()>>()
                .await
        })
    };

    // The API server dies a third of the way through, and comes back 5 s later.
    eventually("150 applies taken", Duration::from_secs(120), || {
        let done = done.load(Ordering::SeqCst);
        async move { Ok((done >= 150).then_some(())) }
    })
    .await?;
    cluster.stop_apiserver();
    let at_stop = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.start_apiserver().await?;
    applier.await??;
    eprintln!("API server killed after {at_stop} of 500 applies, back 5 s later");
    operator.check_alive()?;

    // Everything converges: each SLO Ready at its generation, with one rules ConfigMap
    // owned by it and carrying its objective; each MemberCluster Ready.
    eventually(
        "all 250 SLOs and 150 MemberClusters Ready",
        Duration::from_secs(240),
        || {
            let (slos, members) = (slos.clone(), members.clone());
            async move {
                let slos = slos.list(&ListParams::default()).await?.items;
                let members = members.list(&ListParams::default()).await?.items;
                let ready_slos = slos
                    .iter()
                    .filter(|s| {
                        let status = s.status.clone().unwrap_or_default();
                        ready_at_generation(
                            s.metadata.generation,
                            status.observed_generation,
                            &status.conditions,
                        )
                    })
                    .count();
                let ready_members = members
                    .iter()
                    .filter(|m| {
                        let status = m.status.clone().unwrap_or_default();
                        ready_at_generation(
                            m.metadata.generation,
                            status.observed_generation,
                            &status.conditions,
                        )
                    })
                    .count();
                Ok((ready_slos == 250 && ready_members == 150).then_some(()))
            }
        },
    )
    .await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let listed = slos.list(&ListParams::default()).await?.items;
    let uids: BTreeMap<String, String> = listed
        .iter()
        .map(|s| (s.uid().unwrap_or_default(), s.name_any()))
        .collect();
    // The last apply of each SLO is the one that stays: the test's own order is checked
    // first, so that a failure below is the operator's.
    let out_of_order: Vec<String> = listed
        .iter()
        .filter(|s| {
            let index: usize = s.name_any().trim_start_matches("svc-").parse().unwrap_or(0);
            let changed = index.is_multiple_of(2) && index < 200;
            s.spec.objective != if changed { 99.5 } else { 99.0 }
        })
        .map(|s| format!("{}: objective {}", s.name_any(), s.spec.objective))
        .collect();
    anyhow::ensure!(
        out_of_order.is_empty(),
        "the test's applies landed out of order: {out_of_order:?}"
    );
    let mut owned = BTreeSet::new();
    let mut problems = Vec::new();
    for map in maps.list(&ListParams::default()).await?.items {
        let owners: Vec<_> = map
            .owner_references()
            .iter()
            .filter(|o| o.kind == "ServiceLevelObjective")
            .collect();
        if owners.is_empty() {
            continue;
        }
        match owners.iter().find_map(|o| uids.get(&o.uid)) {
            Some(slo) if map.name_any() == format!("{slo}-slo-rules") => {
                let index: usize = slo.trim_start_matches("svc-").parse()?;
                let objective = if index.is_multiple_of(2) && index < 200 {
                    "0.995"
                } else {
                    "0.99)"
                };
                let rules = map
                    .data
                    .clone()
                    .unwrap_or_default()
                    .into_values()
                    .collect::<String>();
                if !rules.contains(objective) {
                    problems.push(format!("{}: not at objective {objective}", map.name_any()));
                }
                owned.insert(slo.clone());
            }
            _ => problems.push(format!("{} is orphaned or misnamed", map.name_any())),
        }
    }
    anyhow::ensure!(owned.len() == 250, "{} SLOs have their rules", owned.len());
    anyhow::ensure!(problems.is_empty(), "{}", problems.join("\n"));

    let backwards: Vec<String> = went_backwards(&slo_seen)
        .into_iter()
        .chain(went_backwards(&member_seen))
        .collect();
    anyhow::ensure!(backwards.is_empty(), "status went backwards: {backwards:?}");
    slo_watch.abort();
    member_watch.abort();
    let panics = operator
        .metric_total("vigil_reconcile_panics_total")
        .await
        .unwrap_or_default();
    anyhow::ensure!(panics == 0.0, "{panics} reconciles panicked");
    Ok(())
}

/// The benchmark suite at a small size: every kind created and Ready, then the operator
/// killed and started again. It relists and reconciles everything, and must write nothing:
/// not a status, not an Event, not a child object.
#[tokio::test]
async fn an_operator_restart_rewrites_nothing() -> anyhow::Result<()> {
    let figures = vigil_e2e::bench::suite(vigil_e2e::bench::Sizes { slos: 20, scale: 0 }).await?;
    let resync = &figures["noop_resync"];
    anyhow::ensure!(
        resync["objects"].as_u64() >= Some(20),
        "the resync covered the objects: {resync}"
    );
    anyhow::ensure!(
        resync["api_writes"] == 0,
        "writes after a restart with nothing changed: {resync}"
    );
    Ok(())
}

/// Orders Pebble has created so far. A request is not an order: Pebble refuses a share of
/// valid nonces (`badNonce`) and the client sends the same request again.
fn orders(pebble: &Pebble) -> usize {
    pebble
        .log()
        .lines()
        .filter(|l| l.contains("Added order"))
        .count()
}

/// What is wrong with one version of a certificate's Secret: both keys must be there, and
/// the key must be the one the certificate certifies.
fn half_written(secret: &Secret, roots_pem: &str) -> Option<String> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let (Some(chain), Some(key)) = (text("tls.crt"), text("tls.key")) else {
        return Some(format!("keys {:?}", data.keys().collect::<Vec<_>>()));
    };
    let key = match rcgen::KeyPair::from_pem(&key) {
        Ok(key) => key,
        Err(error) => return Some(format!("tls.key: {error}")),
    };
    vigil::acme::cert::verify_chain(
        &format!("{chain}{roots_pem}"),
        &["web.certs.test".to_owned()],
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    )
    .err()
    .map(|e| format!("tls.crt and tls.key disagree: {e}"))
}

fn cert_ready(cert: &AcmeCertificate) -> bool {
    cert.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// The operator killed while Pebble validates an order: after a restart the issuance
/// completes with at most one extra order, and no version of the Secret is half-written.
#[tokio::test]
async fn a_kill_in_the_middle_of_an_issuance_costs_at_most_one_order() -> anyhow::Result<()> {
    let cluster = TestCluster::start("kill-acme").await?;
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    cluster.ensure_namespace("certs").await?;
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
    let http_port = vigil_e2e::free_port()?;
    // Pebble's validation authority waits 0 to 15 s before each validation: the order is
    // pending while the operator is killed.
    let pebble = Pebble::start(
        cluster.dir(),
        PebbleOptions {
            http_port,
            dns_server: dns.endpoint.clone(),
            authz_reuse_percent: Some(0),
            va_sleep: true,
            ..PebbleOptions::default()
        },
    )
    .await?;
    let roots = pebble.roots_pem().await?;
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e").force();
    let issuer = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer", "metadata": {"name": "pebble"},
        "spec": {"server": pebble.directory_url(), "caBundle": pebble.ca_pem,
            "privateKeySecretRef": {"name": "pebble-account"}, "solvers": [{"http01": {}}]},
    });
    Api::<AcmeIssuer>::all(client.clone())
        .patch("pebble", &params, &Patch::Apply(&issuer))
        .await?;
    let http01 = format!("--acme-http01-addr=127.0.0.1:{http_port}");
    let args = [
        http01.as_str(),
        "--acme-retry-initial-seconds=2",
        "--acme-retry-max-seconds=8",
    ];
    let mut first = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-kill-a", &args)?;

    // Every version of the Secret, as a watch sees it.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "certs");
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let versions = Arc::new(AtomicUsize::new(0));
    let watch = {
        let (problems, versions, roots) = (problems.clone(), versions.clone(), roots.clone());
        let config = watcher::Config::default().fields("metadata.name=web-tls");
        tokio::spawn(async move {
            let stream = watcher(secrets, config).default_backoff().applied_objects();
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                if let Ok(secret) = item {
                    versions.fetch_add(1, Ordering::SeqCst);
                    if let Some(problem) = half_written(&secret, &roots) {
                        problems
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(problem);
                    }
                }
            }
        })
    };

    let certs: Api<AcmeCertificate> = Api::namespaced(client.clone(), "certs");
    let cert = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
        "metadata": {"name": "web", "namespace": "certs"},
        "spec": {"issuerRef": {"name": "pebble"}, "dnsNames": ["web.certs.test"], "secretName": "web-tls"},
    });
    certs.patch("web", &params, &Patch::Apply(&cert)).await?;
    let result = async {
        eventually("Pebble has the order", Duration::from_secs(60), || {
            let placed = orders(&pebble) >= 1;
            async move { Ok(placed.then_some(())) }
        })
        .await?;
        first.kill();
        let at_kill = orders(&pebble);
        let issued_before_kill = versions.load(Ordering::SeqCst) > 0;
        let second = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-kill-b", &args)?;
        let outcome = eventually("the certificate Ready", Duration::from_secs(120), || {
            let certs = certs.clone();
            async move { Ok(cert_ready(&certs.get("web").await?).then_some(())) }
        })
        .await;
        second.on_failure(outcome)?;
        let total = orders(&pebble);
        eprintln!(
            "killed with {at_kill} order(s) placed (Secret written before the kill: {issued_before_kill}); {total} order(s) in all"
        );
        anyhow::ensure!(total <= 2, "{total} orders for one certificate");
        let secret = Api::<Secret>::namespaced(client.clone(), "certs")
            .get("web-tls")
            .await?;
        anyhow::ensure!(half_written(&secret, &roots).is_none());
        let problems = problems.lock().unwrap_or_else(|e| e.into_inner()).clone();
        anyhow::ensure!(problems.is_empty(), "half-written Secret versions: {problems:?}");
        anyhow::ensure!(versions.load(Ordering::SeqCst) >= 1);
        Ok(())
    }
    .await;
    watch.abort();
    if result.is_err() {
        eprintln!("{}", pebble.log_tail());
    }
    result
}

/// The names of the ConfigMaps the Deployment's pod template mounts.
async fn mounted_config_maps(deployments: &Api<Deployment>) -> anyhow::Result<Vec<String>> {
    let deployment = deployments.get("orders").await?;
    Ok(deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.config_map.map(|c| c.name))
        .collect())
}

/// The operator SIGKILLed again and again right after a config change, at different
/// moments of the switch: after the last restart the workload runs exactly one revision,
/// the one with the last config, and status names it.
#[tokio::test]
async fn kills_in_the_middle_of_config_switches_leave_exactly_one_revision() -> anyhow::Result<()> {
    let cluster = TestCluster::start("kill-config").await?;
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    cluster.ensure_namespace("shop").await?;
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let workloads: Api<SupervisedWorkload> = Api::namespaced(client.clone(), "shop");
    let source = |port: u16| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "orders-config"}, "data": {"app.yaml": format!("port: {port}\n")}})
    };
    config_maps
        .patch("orders-config", &params, &Patch::Apply(&source(8000)))
        .await?;
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orders"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "orders"}},
            "template": {"metadata": {"labels": {"app": "orders"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/orders:1.4.2",
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/orders"}]}],
                    "volumes": [{"name": "config", "configMap": {"name": "orders-config"}}]}}}});
    deployments
        .patch("orders", &params, &Patch::Apply(&deployment))
        .await?;
    let supervised = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "orders"},
        "spec": {"target": {"kind": "Deployment", "name": "orders"},
            "config": {"configMapName": "orders-config",
                "schema": {"type": "object", "required": ["port"],
                    "properties": {"port": {"type": "integer"}}}}}});
    workloads
        .patch("orders", &params, &Patch::Apply(&supervised))
        .await?;

    let mut operator = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-switch-0", &[])?;
    let mut last = 8000;
    for round in 1..=6u16 {
        last = 8000 + round;
        config_maps
            .patch("orders-config", &params, &Patch::Apply(&source(last)))
            .await?;
        // From right away to well after the switch would have happened.
        tokio::time::sleep(Duration::from_millis(u64::from(round - 1) * 150)).await;
        operator.kill();
        operator = Operator::start(
            cluster.kubeconfig(),
            cluster.dir(),
            &format!("vigil-switch-{round}"),
            &[],
        )?;
    }
    let wanted = format!("port: {last}\n");
    let result = eventually(
        "the last config switched in, alone",
        Duration::from_secs(60),
        || {
            let (workloads, deployments, config_maps, wanted) = (
                workloads.clone(),
                deployments.clone(),
                config_maps.clone(),
                wanted.clone(),
            );
            async move {
                let status = workloads.get("orders").await?.status.unwrap_or_default();
                let Some(revision) = status.config_revision else {
                    return Ok(None);
                };
                let mounted = mounted_config_maps(&deployments).await?;
                let data = config_maps
                    .get_opt(&revision)
                    .await?
                    .and_then(|c| c.data)
                    .unwrap_or_default();
                let done = mounted == [revision.clone()] && data.get("app.yaml") == Some(&wanted);
                Ok(done.then_some((revision, mounted)))
            }
        },
    )
    .await;
    let (revision, mounted) = operator.on_failure(result)?;
    let stored = config_maps.get(&revision).await?;
    anyhow::ensure!(stored.immutable == Some(true), "{revision} is immutable");
    eprintln!("after 6 kills: the template mounts {mounted:?}, status names {revision}");
    Ok(())
}

/// The operator's watches expire: its API server is stopped, changes are made through a
/// second API server on the same etcd, and the first comes back with a fresh watch cache.
/// The watches resume from resource versions it no longer has (410 Gone), relist, and
/// every change made meanwhile is reconciled.
#[tokio::test]
async fn a_watch_that_expires_relists_and_loses_no_change() -> anyhow::Result<()> {
    let mut cluster = TestCluster::start("relist").await?;
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    cluster.ensure_namespace(NS).await?;
    let second = cluster.second_apiserver().await?;
    let operator = Operator::start_logging(
        cluster.kubeconfig(),
        cluster.dir(),
        "vigil-relist",
        &[],
        "info,vigil=debug,kube_runtime::watcher=debug",
    )?;
    let result = relist_scenario(&mut cluster, second, &operator).await;
    operator.on_failure(result)
}

async fn rules_of(maps: &Api<ConfigMap>, slo: &str) -> anyhow::Result<Option<String>> {
    Ok(maps
        .get_opt(&format!("{slo}-slo-rules"))
        .await?
        .and_then(|m| m.data)
        .map(|d| d.into_values().collect()))
}

async fn relist_scenario(
    cluster: &mut TestCluster,
    second: Client,
    operator: &Operator,
) -> anyhow::Result<()> {
    let params = PatchParams::apply("vigil-e2e").force();
    let slos: Api<ServiceLevelObjective> = Api::namespaced(cluster.client(), NS);
    for i in 0..5 {
        let name = format!("svc-{i:03}");
        slos.patch(&name, &params, &Patch::Apply(&slo(&name, 99.0)))
            .await?;
    }
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client(), NS);
    eventually("5 SLOs with rules", Duration::from_secs(60), || {
        let maps = maps.clone();
        async move {
            for i in 0..5 {
                if rules_of(&maps, &format!("svc-{i:03}")).await?.is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        }
    })
    .await?;

    // Partitioned from its API server, the operator misses a change, a creation and a
    // deletion.
    cluster.stop_apiserver();
    let elsewhere: Api<ServiceLevelObjective> = Api::namespaced(second.clone(), NS);
    elsewhere
        .patch("svc-000", &params, &Patch::Apply(&slo("svc-000", 99.9)))
        .await?;
    elsewhere
        .patch("svc-new", &params, &Patch::Apply(&slo("svc-new", 99.5)))
        .await?;
    elsewhere
        .delete("svc-001", &kube::api::DeleteParams::default())
        .await?;
    // More writes, so that the resource versions the watches hold are far behind.
    let churn: Api<ConfigMap> = Api::namespaced(second, NS);
    for i in 0..20 {
        let map = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("churn-{i}")}, "data": {"i": i.to_string()}});
        churn
            .patch(&format!("churn-{i}"), &params, &Patch::Apply(&map))
            .await?;
    }
    cluster.start_apiserver().await?;

    eventually(
        "every missed change reconciled",
        Duration::from_secs(90),
        || {
            let (maps, slos) = (maps.clone(), slos.clone());
            async move {
                let changed = rules_of(&maps, "svc-000")
                    .await?
                    .is_some_and(|r| r.contains("0.999"));
                let created = rules_of(&maps, "svc-new").await?.is_some();
                let deleted = slos.get_opt("svc-001").await?.is_none();
                Ok((changed && created && deleted).then_some(()))
            }
        },
    )
    .await?;
    let log = operator.log();
    let expired = log
        .lines()
        .find(|l| l.contains("kube_runtime::watcher") && l.contains("code: 410"))
        .ok_or_else(|| {
            anyhow::anyhow!("the watches were expected to expire (410 Gone); the log shows none")
        })?;
    eprintln!("a watch expired: {expired}");
    let panics = operator
        .metric_total("vigil_reconcile_panics_total")
        .await
        .unwrap_or_default();
    anyhow::ensure!(panics == 0.0, "{panics} reconciles panicked");
    Ok(())
}
