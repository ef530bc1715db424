//! `SupervisedWorkload` on a real control plane, the operator running with exactly the
//! chart's RBAC: crashes of a Deployment's pods become snapshots (ConfigMap ring, Events,
//! status, metric), and the circuit breaker scales the Deployment to zero, lets one replica
//! try again, reopens with a longer cooldown when it crashes again, and restores the
//! replicas after a clean probation, across an operator restart.
//!
//! The pods run on kwok's simulated nodes, which run no containers: a crash is reported
//! the way the kubelet reports it, by writing the container's terminated state into the
//! pod's status. The kubelet's log endpoint does not exist either, so snapshots say the log
//! is unavailable and the panic is read from the termination message, as
//! `FallbackToLogsOnError` provides it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use vigil::api::SupervisedWorkload;
use vigil_e2e::operator::vigil_cli;
use vigil_e2e::{Operator, TestCluster, eventually};

const GO_PANIC: &str = "panic: runtime error: invalid memory address or nil pointer dereference\n\
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a5b2c]\n\
\n\
goroutine 1 [running]:\n\
main.(*Store).Get(...)\n\
\t/app/orders/store.go:31\n\
main.handle(0xc0000a2000)\n\
\t/app/orders/main.go:58 +0x2c\n\
main.main()\n\
\t/app/orders/main.go:17 +0x65\n";

/// Reports a crash of container `app` of `pod` as the kubelet would: the previous
/// instance terminated with exit code 2 and the Go panic as its message, the restart
/// count one higher, a new instance running.
async fn crash(pods: &Api<Pod>, pod: &str) -> anyhow::Result<()> {
    terminate(
        pods,
        pod,
        serde_json::json!({"exitCode": 2, "reason": "Error", "message": GO_PANIC}),
    )
    .await
}

/// Reports that container `app` of `pod` terminated as `terminated` says (exit code,
/// reason, message, signal) and was restarted.
async fn terminate(
    pods: &Api<Pod>,
    pod: &str,
    terminated: serde_json::Value,
) -> anyhow::Result<()> {
    restart(pods, pod, terminated, 1).await
}

/// Like [`terminate`], with the restart count `restarts` higher: the restarts in between
/// were not seen (the status keeps only the last termination).
async fn restart(
    pods: &Api<Pod>,
    pod: &str,
    terminated: serde_json::Value,
    restarts: i32,
) -> anyhow::Result<()> {
    let current = pods.get_status(pod).await?;
    let status = current.status.unwrap_or_default();
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == "app")
        .ok_or_else(|| anyhow::anyhow!("{pod} has no status for container app"))?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut terminated = terminated;
    terminated["startedAt"] = now.clone().into();
    terminated["finishedAt"] = now.clone().into();
    let patch = serde_json::json!({"status": {"containerStatuses": [{
        "name": "app",
        "image": container.image,
        "imageID": container.image_id,
        "ready": true,
        "started": true,
        "restartCount": container.restart_count + restarts,
        "lastState": {"terminated": terminated},
        "state": {"running": {"startedAt": now}},
    }]}});
    pods.patch_status(pod, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

/// The names of the running pods of the Deployment.
async fn running_pods(pods: &Api<Pod>) -> anyhow::Result<Vec<String>> {
    Ok(pods
        .list(&ListParams::default().labels("app=orders"))
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|phase| phase == "Running")
        })
        .filter_map(|p| p.metadata.name)
        .collect())
}

async fn wait_pods(pods: &Api<Pod>, count: usize) -> anyhow::Result<Vec<String>> {
    eventually(
        &format!("{count} running orders pods"),
        Duration::from_secs(60),
        || async {
            let names = running_pods(pods).await?;
            Ok((names.len() == count).then_some(names))
        },
    )
    .await
}

async fn wait_status(
    workloads: &Api<SupervisedWorkload>,
    what: &str,
    check: impl Fn(&vigil::api::SupervisedWorkloadStatus) -> bool,
) -> anyhow::Result<vigil::api::SupervisedWorkloadStatus> {
    wait_status_of(workloads, "orders", what, check).await
}

async fn wait_status_of(
    workloads: &Api<SupervisedWorkload>,
    name: &str,
    what: &str,
    check: impl Fn(&vigil::api::SupervisedWorkloadStatus) -> bool,
) -> anyhow::Result<vigil::api::SupervisedWorkloadStatus> {
    let waited = eventually(what, Duration::from_secs(60), || async {
        let status = workloads.get(name).await?.status.unwrap_or_default();
        Ok(check(&status).then_some(status))
    })
    .await;
    match waited {
        Ok(status) => Ok(status),
        Err(error) => {
            let last = workloads.get(name).await?.status;
            anyhow::bail!("{error:#}; {name}'s status: {last:#?}")
        }
    }
}

async fn replicas(deployments: &Api<Deployment>) -> anyhow::Result<(i32, Option<String>)> {
    let deployment = deployments.get("orders").await?;
    Ok((
        deployment.spec.and_then(|s| s.replicas).unwrap_or(1),
        deployment
            .metadata
            .annotations
            .unwrap_or_default()
            .remove("vigil.io/breaker-replicas"),
    ))
}

const RUST_PANIC: &str = "thread 'main' panicked at src/ledger.rs:91:14:\n\
attempt to subtract with overflow\n\
stack backtrace:\n\
   0: rust_begin_unwind\n\
   1: payments::ledger::debit\n\
             at ./src/ledger.rs:91:14\n";

/// `vigil breaker open|close|clear` on the closed breaker of `orders`: opened by hand, it
/// stays open past its cooldown; closed by hand, the replicas come back and the crashes
/// before are forgotten while new ones count; cleared, the breaker runs by itself.
async fn by_hand(
    cluster: &TestCluster,
    ns: &str,
    workloads: &Api<SupervisedWorkload>,
    deployments: &Api<Deployment>,
    pods: &Api<Pod>,
) -> anyhow::Result<()> {
    let kubeconfig = cluster.kubeconfig();
    let breaker = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-n", ns]);
        vigil_cli(kubeconfig, "breaker", &all)
    };
    let (code, out, err) = breaker(&["open", "orders", "--reason", "database migration"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("{ns}/orders: breaker open requested at ")),
        "{out}"
    );
    let held = wait_status(workloads, "opened by hand", |s| {
        s.breaker.as_deref() == Some("Open")
    })
    .await?;
    assert_eq!(replicas(deployments).await?, (0, Some("2".to_owned())));
    let applied = held
        .breaker_override
        .clone()
        .unwrap_or_else(|| panic!("no override in {held:?}"));
    assert_eq!(applied.reason, "database migration");
    assert!(applied.applied_at.is_some());
    let circuit = held
        .conditions
        .iter()
        .find(|c| c.type_ == "CircuitOpen")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        circuit.contains("opened by hand at")
            && circuit.contains("database migration; held open until vigil breaker close or clear"),
        "{circuit}"
    );
    // Past the cooldown (4 s, at most 6 s): still open, the override holds it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let still = workloads.get("orders").await?.status.unwrap_or_default();
    assert_eq!(still.breaker.as_deref(), Some("Open"), "{still:?}");
    let (code, table, _) = vigil_cli(kubeconfig, "status", &["-n", ns])?;
    assert_eq!(code, 0);
    let row = table
        .lines()
        .find(|l| l.contains("sw/orders"))
        .unwrap_or_default();
    assert!(
        row.contains("HeldOpen") && row.contains("database migration"),
        "{table}"
    );

    // Closed by hand: restored, the crashes before forgotten; new ones count again.
    let (code, out, err) = breaker(&["close", "orders", "--reason", "migration done"])?;
    assert_eq!(code, 0, "{out}{err}");
    let closed = wait_status(workloads, "closed by hand", |s| {
        s.breaker.as_deref() == Some("Closed")
    })
    .await?;
    assert_eq!(closed.crashes_in_window, 0, "{closed:?}");
    assert_eq!(replicas(deployments).await?, (2, None));
    let running = wait_pods(pods, 2).await?;
    crash(pods, &running[0]).await?;
    let counted = wait_status(workloads, "a crash after the override", |s| {
        s.crashes_in_window == 1
    })
    .await?;
    assert_eq!(counted.breaker.as_deref(), Some("Closed"));

    // Cleared: no override in status.
    let (code, out, err) = breaker(&["clear", "orders"])?;
    assert_eq!(code, 0, "{out}{err}");
    wait_status(workloads, "the override cleared", |s| {
        s.breaker_override.is_none()
    })
    .await?;

    // A workload without a breaker: the command says so, nothing is written.
    let (code, _, err) = breaker(&["open", "nobody", "--reason", "x"])?;
    assert_eq!(
        (code, err.trim()),
        (
            2,
            format!("error: SupervisedWorkload nobody not found in namespace {ns}").as_str()
        )
    );
    Ok(())
}

/// A Rust panic, an OOM kill and a signal each make the right snapshot.
async fn crash_kinds(cluster: &TestCluster, ns: &str) -> anyhow::Result<()> {
    let params = PatchParams::apply("vigil-e2e");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let workloads: Api<SupervisedWorkload> = Api::namespaced(cluster.client(), ns);
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "payments"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "payments"}},
            "template": {"metadata": {"labels": {"app": "payments"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/payments:2.3.1"}]}}}});
    deployments
        .patch("payments", &params, &Patch::Apply(&deployment))
        .await?;
    let supervised = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "payments"},
        "spec": {"target": {"kind": "Deployment", "name": "payments"}}});
    workloads
        .patch("payments", &params, &Patch::Apply(&supervised))
        .await?;
    let pod = eventually(
        "a running payments pod",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=payments"))
                .await?;
            Ok(list.items.into_iter().find_map(|p| {
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                running.then(|| p.metadata.name.clone()).flatten()
            }))
        },
    )
    .await?;
    let kinds = [
        serde_json::json!({"exitCode": 101, "reason": "Error", "message": RUST_PANIC}),
        serde_json::json!({"exitCode": 137, "reason": "OOMKilled"}),
        serde_json::json!({"exitCode": 139, "reason": "Error", "signal": 11}),
    ];
    for (i, terminated) in kinds.into_iter().enumerate() {
        terminate(&pods, &pod, terminated).await?;
        eventually("the crash recorded", Duration::from_secs(30), || async {
            let total = workloads
                .get("payments")
                .await?
                .status
                .unwrap_or_default()
                .crashes_total;
            Ok((total == i64::try_from(i).unwrap_or(0) + 1).then_some(()))
        })
        .await?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), ns);
    let data = config_maps
        .get("payments-crashes")
        .await?
        .data
        .unwrap_or_default();
    let snapshot = |n: u32| -> anyhow::Result<serde_json::Value> {
        let key = format!("crash-{n:08}.json");
        let text = data.get(&key).ok_or_else(|| anyhow::anyhow!("no {key}"))?;
        Ok(serde_json::from_str(text)?)
    };
    let rust = snapshot(1)?;
    assert_eq!(rust["panic"]["language"], "rust");
    assert_eq!(
        rust["panic"]["message"],
        "panicked at src/ledger.rs:91:14: attempt to subtract with overflow"
    );
    assert_eq!(
        rust["panic"]["frames"][0],
        "payments::ledger::debit at ./src/ledger.rs:91:14"
    );
    let oom = snapshot(2)?;
    assert_eq!(
        (oom["reason"].as_str(), oom["exitCode"].as_i64()),
        (Some("OOMKilled"), Some(137))
    );
    assert!(oom.get("panic").is_none());
    let signal = snapshot(3)?;
    assert_eq!(signal["signal"], 11);
    let last = workloads
        .get("payments")
        .await?
        .status
        .unwrap_or_default()
        .last_crash
        .unwrap_or_default();
    assert!(
        last.ends_with("exited 139 (Error), signal 11 (SIGSEGV)"),
        "{last}"
    );
    // Three restarts at once: the two not seen count as crashes too, and the snapshot says so.
    restart(
        &pods,
        &pod,
        serde_json::json!({"exitCode": 1, "reason": "Error"}),
        3,
    )
    .await?;
    let status = wait_status_of(&workloads, "payments", "the unseen restarts counted", |s| {
        s.crashes_total == 6
    })
    .await?;
    let last = status.last_crash.unwrap_or_default();
    assert!(
        last.ends_with("(after 2 restarts not seen, counted as crashes)"),
        "{last}"
    );
    Ok(())
}

async fn scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let mut operator = Operator::start_with_chart_rbac(cluster, "vigil-workloads", &[]).await?;
    let namespace = cluster.namespace("shop").await?;
    let ns = namespace.name.as_str();
    let params = PatchParams::apply("vigil-e2e");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let workloads: Api<SupervisedWorkload> = Api::namespaced(cluster.client(), ns);
    let deployment = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orders"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "orders"}},
            "template": {"metadata": {"labels": {"app": "orders"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/orders:1.4.2",
                    "terminationMessagePolicy": "FallbackToLogsOnError"}]}}}});
    deployments
        .patch("orders", &params, &Patch::Apply(&deployment))
        .await?;
    let first = wait_pods(&pods, 2).await?;
    let supervised = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "orders"},
        "spec": {"target": {"kind": "Deployment", "name": "orders"},
            "crashCapture": {"logTailLines": 50, "retain": 3},
            "circuitBreaker": {"maxCrashes": 3, "window": "30s", "cooldown": "4s",
                "maxCooldown": "6s", "action": "ScaleToZero"}}});
    workloads
        .patch("orders", &params, &Patch::Apply(&supervised))
        .await?;
    wait_status(&workloads, "Ready and Closed", |s| {
        s.breaker.as_deref() == Some("Closed")
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason == "Supervising")
    })
    .await?;

    // One crash: a snapshot with the parsed panic, status, an Event, the metric.
    crash(&pods, &first[0]).await?;
    let status = wait_status(&workloads, "the first crash recorded", |s| {
        s.crashes_total == 1
    })
    .await?;
    let last = status.last_crash.clone().unwrap_or_default();
    assert!(
        last.contains(&format!("container app of pod {} exited 2 (Error): panic: runtime error: invalid memory address", first[0])),
        "{last}"
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), ns);
    let snapshots = config_maps.get("orders-crashes").await?;
    let owner = snapshots
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(
        owner.first().map(|o| o.kind.as_str()),
        Some("SupervisedWorkload")
    );
    let data = snapshots.data.unwrap_or_default();
    let snapshot: serde_json::Value = serde_json::from_str(
        data.get("crash-00000001.json")
            .ok_or_else(|| anyhow::anyhow!("no snapshot: {:?}", data.keys()))?,
    )?;
    assert_eq!(snapshot["exitCode"], 2);
    assert_eq!(snapshot["restartCount"], 1);
    assert_eq!(snapshot["image"], "registry.example/orders:1.4.2");
    assert!(snapshot["node"].as_str().is_some_and(|n| !n.is_empty()));
    assert_eq!(snapshot["panic"]["language"], "go");
    assert_eq!(
        snapshot["panic"]["frames"][0],
        "main.(*Store).Get at /app/orders/store.go:31"
    );
    assert!(
        snapshot["logTail"]
            .as_str()
            .is_some_and(|l| l.starts_with("log unavailable: ")),
        "kwok serves no logs: {}",
        snapshot["logTail"]
    );
    assert_eq!(
        operator.metric_total("vigil_workload_crashes_total").await,
        Some(1.0),
        "the crash counter"
    );

    // The operator restarts: the crash is not counted again.
    operator.terminate();
    let mut operator = Operator::start_with_chart_rbac(cluster, "vigil-workloads-2", &[]).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = workloads.get("orders").await?.status.unwrap_or_default();
    assert_eq!(
        status.crashes_total, 1,
        "a restart does not recount crashes"
    );

    // A second crash: still closed (maxCrashes is 3). The third within the window opens
    // it, the Deployment goes to zero, the replica count is remembered, a snapshot sealed.
    crash(&pods, &first[1]).await?;
    let two = wait_status(&workloads, "the second crash recorded", |s| {
        s.crashes_total == 2
    })
    .await?;
    assert_eq!(
        two.breaker.as_deref(),
        Some("Closed"),
        "not before maxCrashes"
    );
    crash(&pods, &first[0]).await?;
    let open = wait_status(&workloads, "the breaker open", |s| {
        s.breaker.as_deref() == Some("Open")
    })
    .await?;
    assert_eq!(open.crashes_total, 3);
    let circuit = open
        .conditions
        .iter()
        .find(|c| c.type_ == "CircuitOpen")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no CircuitOpen condition"))?;
    assert_eq!(
        (circuit.status.as_str(), circuit.reason.as_str()),
        ("True", "CrashLoop")
    );
    assert!(
        circuit
            .message
            .contains("sealed snapshot in ConfigMap orders-crashes key sealed.json")
    );
    assert_eq!(replicas(&deployments).await?, (0, Some("2".to_owned())));
    let data = config_maps
        .get("orders-crashes")
        .await?
        .data
        .unwrap_or_default();
    assert!(data.contains_key("sealed.json"));

    // Cooldown over: one replica on probation. It crashes: reopened, cooldown doubled up
    // to maxCooldown (6 s, not 8 s).
    wait_status(&workloads, "half-open", |s| {
        s.breaker.as_deref() == Some("HalfOpen")
    })
    .await?;
    assert_eq!(replicas(&deployments).await?, (1, Some("2".to_owned())));
    let probation = wait_pods(&pods, 1).await?;
    crash(&pods, &probation[0]).await?;
    let reopened = wait_status(&workloads, "reopened", |s| {
        s.breaker.as_deref() == Some("Open")
    })
    .await?;
    assert_eq!(reopened.breaker_cooldown_seconds, Some(6));
    assert_eq!(replicas(&deployments).await?.0, 0);

    // Half-open again, and a clean probation (the window, 30 s) closes it: 2 replicas back.
    wait_status(&workloads, "half-open again", |s| {
        s.breaker.as_deref() == Some("HalfOpen")
    })
    .await?;
    eventually("the breaker closed", Duration::from_secs(60), || async {
        let status = workloads.get("orders").await?.status.unwrap_or_default();
        Ok((status.breaker.as_deref() == Some("Closed")).then_some(()))
    })
    .await?;
    assert_eq!(replicas(&deployments).await?, (2, None));
    wait_pods(&pods, 2).await?;

    by_hand(cluster, ns, &workloads, &deployments, &pods).await?;
    crash_kinds(cluster, ns).await?;

    let events: Api<Event> = Api::namespaced(cluster.client(), ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "Crashed",
        "CircuitOpened",
        "CircuitHalfOpen",
        "CircuitReopened",
        "CircuitClosed",
        "CircuitOverridden",
        "CircuitOverrideCleared",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} Event: {reasons:?}"
        );
    }
    let log = operator.log();
    assert!(
        !log.contains("forbidden"),
        "the chart's RBAC misses a permission:\n{log}"
    );
    assert!(
        log.contains("\"message\":\"container crashed\""),
        "one structured record per crash"
    );
    operator.check_alive()?;
    assert_eq!(
        operator.metric_total("vigil_reconcile_panics_total").await,
        Some(0.0)
    );
    Ok(())
}

#[tokio::test]
async fn crashes_are_captured_and_the_breaker_stops_a_crash_loop() {
    let cluster = TestCluster::start("workloads").await.expect("cluster");
    scenario(&cluster).await.unwrap_or_else(|e| {
        cluster.print_logs();
        for identity in ["vigil-workloads", "vigil-workloads-2"] {
            let log = std::fs::read_to_string(cluster.dir().join(format!("{identity}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("----- {identity} -----");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        panic!("{e:#}")
    });
}

async fn wait_config(
    workloads: &Api<SupervisedWorkload>,
    what: &str,
    reason: &str,
) -> anyhow::Result<vigil::api::SupervisedWorkloadStatus> {
    wait_status(workloads, what, |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "ConfigReloaded" && c.reason == reason)
    })
    .await
}

/// The ConfigMap the Deployment's `config` volume points at.
async fn mounted(deployments: &Api<Deployment>) -> anyhow::Result<String> {
    let deployment = deployments.get("orders").await?;
    let volumes = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.volumes)
        .unwrap_or_default();
    Ok(volumes
        .into_iter()
        .find(|v| v.name == "config")
        .and_then(|v| v.config_map)
        .map(|c| c.name)
        .unwrap_or_default())
}

async fn config_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    // With the pod webhook, reached by URL: the operator runs outside the cluster.
    let port = vigil_e2e::free_port()?;
    let operator = Operator::start_with_chart_rbac(
        cluster,
        "vigil-config",
        &[
            &format!("--webhook-addr=127.0.0.1:{port}"),
            &format!("--webhook-url=https://127.0.0.1:{port}"),
        ],
    )
    .await?;
    let namespace = cluster.namespace("config").await?;
    let ns = namespace.name.as_str();
    let params = PatchParams::apply("vigil-e2e");
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client(), ns);
    let pods: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let workloads: Api<SupervisedWorkload> = Api::namespaced(cluster.client(), ns);
    let source = |app: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "orders-config"}, "data": {"app.yaml": app}})
    };
    config_maps
        .patch(
            "orders-config",
            &params,
            &Patch::Apply(&source("port: 8080\nmode: safe\n")),
        )
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
            "config": {"configMapName": "orders-config", "rollbackWithin": "2m",
                "schema": {"type": "object", "required": ["port"],
                    "properties": {"port": {"type": "integer", "maximum": 65535},
                        "mode": {"enum": ["safe", "fast"]}}}}}});
    workloads
        .patch("orders", &params, &Patch::Apply(&supervised))
        .await?;
    // The pods of the revisions below must go through the webhook: wait until it is in
    // effect (the API server learns of its configuration some time after the operator
    // wrote it, and admits pods unchanged until then).
    vigil_e2e::wait_webhook_isolates(&pods, "orders", "registry.example/orders:1.4.2")
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;

    // Adopted: the first revision, immutable, and the template points at it.
    // Adopted once a revision runs: `Switched` says so until the next reconcile, which says
    // `Active` (a poll may see either).
    let first = wait_status(&workloads, "the first revision", |s| {
        s.config_revision.is_some()
    })
    .await?;
    let reloaded = first
        .conditions
        .iter()
        .find(|c| c.type_ == "ConfigReloaded")
        .map(|c| c.reason.as_str());
    assert!(matches!(reloaded, Some("Switched" | "Active")), "{first:?}");
    let rev1 = first.config_revision.clone().unwrap_or_default();
    assert!(rev1.starts_with("orders-config-"), "{rev1}");
    assert_eq!(mounted(&deployments).await?, rev1);
    assert_eq!(config_maps.get(&rev1).await?.immutable, Some(true));

    // Invalid: rejected with the failing path, the workload keeps revision 1.
    config_maps
        .patch(
            "orders-config",
            &params,
            &Patch::Apply(&source("port: 70000\nmode: safe\n")),
        )
        .await?;
    let rejected = wait_config(&workloads, "the invalid config rejected", "InvalidConfig").await?;
    let message = rejected
        .conditions
        .iter()
        .find(|c| c.type_ == "ConfigReloaded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&format!("still running {rev1}"))
            && message.contains("app.yaml: /port: 70000 is greater than the maximum of 65535"),
        "{message}"
    );
    assert_eq!(mounted(&deployments).await?, rev1);

    // Valid: revision 2, switched in one patch, with a readable diff.
    config_maps
        .patch(
            "orders-config",
            &params,
            &Patch::Apply(&source("port: 9090\nmode: safe\n")),
        )
        .await?;
    let second = wait_status(&workloads, "the second revision", |s| {
        s.config_revisions.len() == 2
    })
    .await?;
    let rev2 = second.config_revision.clone().unwrap_or_default();
    assert_ne!(rev2, rev1);
    assert_eq!(
        second.config_revisions[0].change,
        "~app.yaml.port: 8080 -> 9090"
    );
    assert_eq!(second.config_revisions[1].state, "Superseded");
    assert_eq!(mounted(&deployments).await?, rev2);

    // The pods the switch created went through the webhook: restricted isolation, the
    // panic kept in the termination message, default resources.
    let isolated = eventually(
        "an isolated pod of revision 2",
        Duration::from_secs(60),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=orders"))
                .await?;
            Ok(list.items.into_iter().find(|p| {
                let mounts_rev2 = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .is_some_and(|v| {
                        v.iter()
                            .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == rev2))
                    });
                mounts_rev2 && p.annotations().contains_key("vigil.io/isolation")
            }))
        },
    )
    .await?;
    let spec = isolated.spec.clone().unwrap_or_default();
    let app = &spec.containers[0];
    assert_eq!(
        spec.security_context
            .as_ref()
            .and_then(|c| c.run_as_non_root),
        Some(true)
    );
    assert_eq!(
        app.security_context
            .as_ref()
            .and_then(|c| c.allow_privilege_escalation),
        Some(false)
    );
    assert_eq!(
        app.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    assert!(
        app.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some()
    );
    let status = workloads.get("orders").await?.status.unwrap_or_default();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Isolated" && c.status == "True"),
        "{:?}",
        status.conditions
    );

    // A workload no SupervisedWorkload targets is left alone; one whose template runs as
    // root keeps it, and the conflict is reported.
    let plain = |name: &str, security: serde_json::Value| {
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/x:1", "securityContext": security}]}}}})
    };
    let legacy = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "legacy"}, "spec": {"target": {"kind": "Deployment", "name": "legacy"}}});
    workloads
        .patch("legacy", &params, &Patch::Apply(&legacy))
        .await?;
    let conflict = eventually("the conflict reported", Duration::from_secs(60), || async {
        Ok(workloads
            .get_opt("legacy")
            .await?
            .and_then(|w| w.status)
            .and_then(|s| {
                s.conditions
                    .into_iter()
                    .find(|c| c.type_ == "Isolated" && c.reason == "Conflict")
            }))
    });
    deployments
        .patch(
            "other",
            &params,
            &Patch::Apply(&plain("other", serde_json::json!({}))),
        )
        .await?;
    deployments
        .patch(
            "legacy",
            &params,
            &Patch::Apply(&plain("legacy", serde_json::json!({"runAsUser": 0}))),
        )
        .await?;
    let conflict = conflict.await?;
    assert!(
        conflict
            .message
            .contains("containers[app] runs as root (securityContext.runAsUser 0)"),
        "{}",
        conflict.message
    );
    for (app, isolated) in [("other", false), ("legacy", true)] {
        let pod = eventually(
            &format!("a pod of {app}"),
            Duration::from_secs(60),
            || async {
                let list = pods
                    .list(&ListParams::default().labels(&format!("app={app}")))
                    .await?;
                Ok(list.items.into_iter().next())
            },
        )
        .await?;
        assert_eq!(
            pod.annotations().contains_key("vigil.io/isolation"),
            isolated,
            "{app}"
        );
        let container = &pod.spec.unwrap_or_default().containers[0];
        if isolated {
            let context = container.security_context.clone().unwrap_or_default();
            assert_eq!(context.run_as_user, Some(0), "a conflict is not overridden");
            assert_eq!(context.allow_privilege_escalation, Some(false));
        } else {
            assert!(
                container
                    .resources
                    .as_ref()
                    .and_then(|r| r.requests.as_ref())
                    .is_none()
            );
        }
    }

    // Its pods crash within rollbackWithin: back to revision 1, revision 2 marked.
    let running = wait_pods(&pods, 1).await?;
    crash(&pods, &running[0]).await?;
    let rolled = wait_config(&workloads, "rolled back", "RolledBack").await?;
    assert_eq!(rolled.config_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(rolled.config_revisions[0].state, "RolledBack");
    assert_eq!(mounted(&deployments).await?, rev1);
    // The source still holds revision 2's content: it is not switched to again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mounted(&deployments).await?, rev1);

    // By hand: a third revision, its history and diff, and a rollback to revision 1.
    config_maps
        .patch(
            "orders-config",
            &params,
            &Patch::Apply(&source("port: 8081\nmode: fast\n")),
        )
        .await?;
    let third = wait_status(&workloads, "the third revision", |s| {
        s.config_revisions.len() == 3 && s.config_revision != Some(rev1.clone())
    })
    .await?;
    let rev3 = third.config_revision.clone().unwrap_or_default();
    let kubeconfig = cluster.kubeconfig();
    let config = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["-n", ns]);
        vigil_cli(kubeconfig, "config", &all)
    };
    let (code, json, err) = config(&["history", "orders", "-o", "json"])?;
    assert_eq!(code, 0, "{err}");
    let history: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(history["active"], rev3.as_str());
    let states: Vec<(&str, &str)> = history["revisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default(),
                r["state"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (rev3.as_str(), "Active"),
            (rev2.as_str(), "RolledBack"),
            (rev1.as_str(), "Superseded")
        ]
    );
    // The diff shows what a rollback would undo: revision 1 against the active one.
    let (code, diff, err) = config(&["diff", "orders"])?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        diff,
        format!(
            "--- {rev1}/app.yaml\n+++ {rev3}/app.yaml\n@@ -1,2 +1,2 @@\n-port: 8080\n-mode: safe\n+port: 8081\n+mode: fast\n"
        )
    );
    let (code, _, err) = config(&["rollback", "orders", "--to", "ffff", "--reason", "x"])?;
    assert_eq!(code, 2);
    assert!(err.contains("revision ffff is not kept; kept: "), "{err}");
    let (code, out, err) = config(&["rollback", "orders", "--reason", "8081 is firewalled"])?;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("rollback to {rev1} requested at")),
        "{out}"
    );
    let back = wait_config(&workloads, "rolled back by hand", "RolledBackByHand").await?;
    assert_eq!(back.config_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(
        back.config_rollback
            .as_ref()
            .and_then(|r| r.outcome.as_deref()),
        Some("Switched")
    );
    assert_eq!(back.config_revisions[0].state, "RolledBack", "{back:?}");
    assert_eq!(mounted(&deployments).await?, rev1);
    // The source holds revision 3: not switched to again until it changes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(mounted(&deployments).await?, rev1);
    // A request for a revision that is not kept, written by hand: refused in status, an
    // Event says why, nothing switched.
    let request = serde_json::json!({"revision": "orders-config-gone", "reason": "by hand",
        "requestedAt": k8s_openapi::jiff::Timestamp::now().to_string()});
    let patch = serde_json::json!({"metadata": {"annotations": {"vigil.io/config-rollback": request.to_string()}}});
    workloads
        .patch("orders", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let refused = wait_status(&workloads, "the request refused", |s| {
        s.config_rollback
            .as_ref()
            .is_some_and(|r| r.revision == "orders-config-gone")
    })
    .await?;
    let outcome = refused
        .config_rollback
        .and_then(|r| r.outcome)
        .unwrap_or_default();
    assert!(
        outcome.starts_with("Refused: revision orders-config-gone is not kept (kept: "),
        "{outcome}"
    );
    assert_eq!(mounted(&deployments).await?, rev1);

    let events: Api<Event> = Api::namespaced(cluster.client(), ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for reason in [
        "ConfigSwitched",
        "ConfigRejected",
        "ConfigRolledBack",
        "ConfigRollbackRefused",
    ] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "no {reason} Event: {reasons:?}"
        );
    }
    let log = operator.log();
    assert!(
        !log.contains("forbidden"),
        "the chart's RBAC misses a permission:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn a_config_change_is_validated_switched_atomically_and_rolled_back_on_crashes() {
    let cluster = TestCluster::start("config").await.expect("cluster");
    config_scenario(&cluster).await.unwrap_or_else(|e| {
        cluster.print_logs();
        let log =
            std::fs::read_to_string(cluster.dir().join("vigil-config.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
        panic!("{e:#}")
    });
}
