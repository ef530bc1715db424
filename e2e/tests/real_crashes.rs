//! `SupervisedWorkload` on a real node, with real programs (built by `make tools` from
//! e2e/tools/crashers/ into the image `vigil.test/crashers:1`; containerd and runc run
//! them, the kubelet keeps their logs, and the operator reads the crashed instance's log
//! through the API server as it does in any cluster):
//! - crash capture from a Go service that dereferences nil, a Rust program that panics
//!   with `RUST_BACKTRACE=1`, a Python program that raises, a Java program that throws, an
//!   OOM kill under a memory limit, a C program killed by a real SIGSEGV, and one that
//!   exits 0;
//! - the circuit breaker under the kubelet's real `CrashLoopBackOff` (an immediate first
//!   restart, then 10 s, doubling): open after three crashes, scaled to zero, half-open
//!   after the cooldown, closed once the fixed program runs;
//! - config hot-reload read by a real program, rolled back after its real crashes;
//! - the webhook's isolation on real pods, and a profile the kubelet refuses, reported.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use vigil::api::{SupervisedWorkload, SupervisedWorkloadStatus};
use vigil_e2e::{Operator, TestCluster, eventually, repo};

const IMAGE: &str = "vigil.test/crashers:1";

/// One program and what its snapshot must say.
struct Case {
    name: &'static str,
    command: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    memory_limit: Option<&'static str>,
    exit_code: i32,
    reason: &'static str,
    signal: Option<i32>,
    /// A line the program logged before it crashed: only the real log has it.
    logged: &'static str,
    /// The parsed panic: language, the start of its message, the start of its first frame.
    panic: Option<(&'static str, &'static str, &'static str)>,
}

const CASES: &[Case] = &[
    Case {
        name: "go",
        command: &["/crasher", "panic"],
        env: &[("CRASH_AFTER", "1s")],
        memory_limit: None,
        exit_code: 2,
        reason: "Error",
        signal: None,
        logged: "checkout: order 42 received",
        panic: Some((
            "go",
            "panic: runtime error: invalid memory address or nil pointer dereference",
            "main.(*Cart).Total",
        )),
    },
    Case {
        name: "rust",
        command: &["/rust-panic"],
        env: &[("RUST_BACKTRACE", "1")],
        memory_limit: None,
        exit_code: 101,
        reason: "Error",
        signal: None,
        logged: "payments: settling order 42",
        panic: Some((
            "rust",
            "panicked at /src/panic.rs:8:19: called `Result::unwrap()` on an `Err` value: ParseIntError",
            "parse_quantity at ./src/panic.rs:8:19",
        )),
    },
    Case {
        name: "python",
        command: &["/usr/bin/python3", "/app/crash.py"],
        env: &[],
        memory_limit: None,
        exit_code: 1,
        reason: "Error",
        signal: None,
        logged: "shipping: pricing order 42",
        panic: Some(("python", "KeyError: 'teapot'", "price_of")),
    },
    Case {
        name: "java",
        command: &[
            "/opt/java/bin/java",
            "-Xmx32m",
            "-XX:-UsePerfData",
            "-cp",
            "/app",
            "Crash",
        ],
        env: &[],
        memory_limit: None,
        exit_code: 1,
        reason: "Error",
        signal: None,
        logged: "billing: printing the label of order 42",
        panic: Some((
            "java",
            "Exception in thread \"main\" java.lang.NullPointerException",
            "Crash.label",
        )),
    },
    Case {
        name: "oom",
        command: &["/crasher", "oom"],
        env: &[],
        memory_limit: Some("48Mi"),
        exit_code: 137,
        reason: "OOMKilled",
        signal: Some(9),
        logged: "checkout: loading the catalogue into memory",
        panic: None,
    },
    Case {
        name: "segv",
        command: &["/segv"],
        env: &[],
        memory_limit: None,
        exit_code: 139,
        reason: "Error",
        signal: Some(11),
        logged: "inventory: reading the shelf index",
        panic: None,
    },
];

fn deployment(
    name: &str,
    command: &[&str],
    env: &[(&str, &str)],
    limit: Option<&str>,
) -> serde_json::Value {
    let env: Vec<_> = env
        .iter()
        .map(|(k, v)| serde_json::json!({"name": k, "value": v}))
        .collect();
    let memory = limit.unwrap_or("256Mi");
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "app", "image": IMAGE, "imagePullPolicy": "Never",
                        "command": command, "env": env,
                        "resources": {"requests": {"cpu": "10m", "memory": memory}, "limits": {"memory": memory}},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}})
}

async fn apply(client: &Client, ns: &str, value: serde_json::Value) -> anyhow::Result<()> {
    let params = PatchParams::apply("vigil-e2e").force();
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    match value["kind"].as_str() {
        Some("Deployment") => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(&name, &params, &Patch::Apply(&value))
                .await?;
        }
        _ => {
            Api::<SupervisedWorkload>::namespaced(client.clone(), ns)
                .patch(&name, &params, &Patch::Apply(&value))
                .await?;
        }
    }
    Ok(())
}

fn supervised(name: &str, breaker: Option<serde_json::Value>) -> serde_json::Value {
    let mut spec = serde_json::json!({"target": {"kind": "Deployment", "name": name},
        "crashCapture": {"logTailLines": 30, "retain": 5}});
    if let Some(breaker) = breaker {
        spec["circuitBreaker"] = breaker;
    }
    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": name}, "spec": spec})
}

fn snapshot_of(config_map: &ConfigMap, sequence: u32) -> Option<serde_json::Value> {
    let key = format!("crash-{sequence:08}.json");
    serde_json::from_str(config_map.data.as_ref()?.get(&key)?).ok()
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

#[tokio::test]
async fn real_programs_crash_and_their_snapshots_hold_the_real_log_and_panic() {
    let mut cluster = TestCluster::start_with_node("crashes")
        .await
        .expect("cluster");
    let result = crashes_scenario(&cluster).await;
    if result.is_err() {
        cluster.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = cluster.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

async fn crashes_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/crashers.tar"))?;
    let operator = Operator::start_with_chart_rbac(cluster, "vigil-crashes", &[]).await?;
    let namespace = cluster.namespace("crashes").await?;
    let ns = namespace.name.as_str();
    let client = cluster.client();
    for case in CASES {
        apply(&client, ns, supervised(case.name, None)).await?;
        apply(
            &client,
            ns,
            deployment(case.name, case.command, case.env, case.memory_limit),
        )
        .await?;
    }
    apply(&client, ns, supervised("done", None)).await?;
    apply(
        &client,
        ns,
        deployment(
            "done",
            &["/crasher", "exit0"],
            &[("CRASH_AFTER", "1s")],
            None,
        ),
    )
    .await?;

    // Every snapshot, and how long after the crash the operator had it stored.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let mut seen: BTreeMap<&str, (serde_json::Value, f64)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while seen.len() < CASES.len() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "snapshots after 240 s only for {:?}\n{}",
            seen.keys().collect::<Vec<_>>(),
            operator.log()
        );
        for case in CASES {
            if seen.contains_key(case.name) {
                continue;
            }
            let Some(config_map) = config_maps
                .get_opt(&format!("{}-crashes", case.name))
                .await?
            else {
                continue;
            };
            if let Some(snapshot) = snapshot_of(&config_map, 1) {
                let finished: jiff::Timestamp =
                    snapshot["time"].as_str().unwrap_or_default().parse()?;
                let latency = (jiff::Timestamp::now() - finished).total(jiff::Unit::Second)?;
                seen.insert(case.name, (snapshot, latency));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for case in CASES {
        let (snapshot, latency) = &seen[case.name];
        // What the kubelet has now, to compare with what the operator read at the crash.
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod = snapshot["pod"].as_str().unwrap_or_default();
        let now = pods
            .logs(
                pod,
                &kube::api::LogParams {
                    previous: true,
                    tail_lines: Some(30),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| format!("(no previous log: {e})"));
        let what = format!(
            "{}: {}\nthe kubelet's previous log now:\n{now}",
            case.name,
            serde_json::to_string_pretty(snapshot)?
        );
        eprintln!(
            "{}: snapshot stored {latency:.1}s after the crash (finishedAt, 1 s resolution)",
            case.name
        );
        if case.name == "go" {
            // The one docs/workloads.md shows.
            eprintln!(
                "the go snapshot: {}",
                serde_json::to_string_pretty(snapshot)?
            );
        }
        assert_eq!(snapshot["exitCode"], case.exit_code, "{what}");
        assert_eq!(snapshot["reason"], case.reason, "{what}");
        assert_eq!(
            snapshot["signal"].as_i64(),
            case.signal.map(i64::from),
            "{what}"
        );
        assert_eq!(snapshot["image"], IMAGE, "{what}");
        assert_eq!(snapshot["node"], node.name.as_str(), "{what}");
        // The real log of the crashed instance, as `kubectl logs --previous` shows it.
        let tail = snapshot["logTail"].as_str().unwrap_or_default();
        assert!(
            tail.contains(case.logged),
            "the log tail has {:?}: {what}",
            case.logged
        );
        assert!(!tail.starts_with("log unavailable"), "{what}");
        match case.panic {
            Some((language, message, frame)) => {
                assert_eq!(snapshot["panic"]["language"], language, "{what}");
                let got = snapshot["panic"]["message"].as_str().unwrap_or_default();
                assert!(
                    got.starts_with(message),
                    "message {got:?} starts with {message:?}"
                );
                let first = snapshot["panic"]["frames"][0].as_str().unwrap_or_default();
                assert!(
                    first.starts_with(frame),
                    "first frame {first:?} starts with {frame:?}"
                );
            }
            None => assert!(snapshot.get("panic").is_none(), "{what}"),
        }
    }
    let mut latencies: Vec<f64> = seen.values().map(|(_, l)| *l).collect();
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "crash to snapshot on the real node: median {:.1}s, max {:.1}s over {} programs",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );

    // The program that exits 0 was restarted by the kubelet, and that is no crash.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(
        "the exit-0 program restarted",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let list = pods.list(&ListParams::default().labels("app=done")).await?;
                Ok(list.items.iter().any(|p| restarts(p) >= 1).then_some(()))
            }
        },
    )
    .await?;
    let workloads: Api<SupervisedWorkload> = Api::namespaced(client.clone(), ns);
    let done = workloads.get("done").await?.status.unwrap_or_default();
    assert_eq!(done.crashes_total, 0, "an exit 0 is not a crash: {done:?}");
    assert!(config_maps.get_opt("done-crashes").await?.is_none());
    Ok(())
}

async fn wait_status(
    workloads: &Api<SupervisedWorkload>,
    what: &str,
    within: Duration,
    check: impl Fn(&SupervisedWorkloadStatus) -> bool,
) -> anyhow::Result<SupervisedWorkloadStatus> {
    eventually(what, within, || async {
        let status = workloads.get("checkout").await?.status.unwrap_or_default();
        Ok(check(&status).then_some(status))
    })
    .await
}

async fn replicas(deployments: &Api<Deployment>) -> anyhow::Result<i32> {
    Ok(deployments
        .get("checkout")
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1))
}

#[tokio::test]
async fn the_breaker_opens_on_a_real_crash_loop_and_closes_once_the_fix_runs() {
    let mut cluster = TestCluster::start_with_node("breaker")
        .await
        .expect("cluster");
    let result = breaker_scenario(&cluster).await;
    if result.is_err() {
        cluster.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = cluster.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

async fn breaker_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/crashers.tar"))?;
    let operator = Operator::start_with_chart_rbac(cluster, "vigil-breaker", &[]).await?;
    let namespace = cluster.namespace("breaker").await?;
    let ns = namespace.name.as_str();
    let client = cluster.client();
    let workloads: Api<SupervisedWorkload> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    // Three crashes fit in the window under the kubelet's back-off (the first restart at
    // once, then 10 s, doubling: the breaker opened 20 to 23 s after the Deployment here).
    let breaker = serde_json::json!({"maxCrashes": 3, "window": "75s", "cooldown": "15s",
        "maxCooldown": "30s", "action": "ScaleToZero"});
    apply(&client, ns, supervised("checkout", Some(breaker))).await?;
    apply(
        &client,
        ns,
        deployment(
            "checkout",
            &["/crasher", "panic"],
            &[("CRASH_AFTER", "1s")],
            None,
        ),
    )
    .await?;
    let started = Instant::now();
    let open = wait_status(
        &workloads,
        "the breaker Open after 3 real crashes",
        Duration::from_secs(150),
        |s| s.breaker.as_deref() == Some("Open"),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "breaker Open {:.0}s after the Deployment was created ({} crashes in the window)",
        started.elapsed().as_secs_f64(),
        open.crashes_in_window
    );
    assert!(open.crashes_in_window >= 3, "{open:?}");
    assert!(
        open.last_crash
            .as_deref()
            .is_some_and(|l| l.contains("invalid memory address")),
        "{open:?}"
    );
    assert_eq!(replicas(&deployments).await?, 0, "scaled to zero");
    let sealed = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get("checkout-crashes")
        .await?
        .data
        .unwrap_or_default()
        .remove("sealed.json")
        .ok_or_else(|| anyhow::anyhow!("no sealed snapshot"))?;
    assert!(sealed.contains("checkout: order 42 received"), "{sealed}");
    // `vigil status sw/checkout`: the open breaker and the real crash it sealed.
    let (code, described, err) =
        vigil_e2e::operator::vigil_cli(cluster.kubeconfig(), "status", &["sw/checkout", "-n", ns])?;
    assert_eq!(code, 0, "{err}");
    eprintln!("{described}");
    assert!(
        described.contains("FAIL BreakerOpen: since ")
            && described.contains("checkout: order 42 received")
            && described.contains("go panic: panic: runtime error: invalid memory address"),
        "{described}"
    );

    // The fix is deployed while the breaker is open: the next trial runs it.
    apply(
        &client,
        ns,
        deployment("checkout", &["/crasher", "serve"], &[], None),
    )
    .await?;
    wait_status(
        &workloads,
        "HalfOpen after the cooldown",
        Duration::from_secs(60),
        |s| s.breaker.as_deref() == Some("HalfOpen"),
    )
    .await?;
    assert_eq!(replicas(&deployments).await?, 1, "one replica on probation");
    let closed = wait_status(
        &workloads,
        "Closed after a clean probation",
        Duration::from_secs(150),
        |s| s.breaker.as_deref() == Some("Closed"),
    )
    .await?;
    assert_eq!(replicas(&deployments).await?, 1, "the replicas restored");
    eprintln!(
        "breaker Closed {:.0}s after the start: {closed:?}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A Deployment that sets no security context and no resources: the webhook's to fill.
fn bare_deployment(name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never",
                        "command": ["/crasher", "serve"]}]}}}})
}

#[tokio::test]
async fn isolation_runs_on_real_pods_and_a_refusal_is_reported() {
    let mut cluster = TestCluster::start_with_node("isolation")
        .await
        .expect("cluster");
    let result = isolation_scenario(&cluster).await;
    if result.is_err() {
        cluster.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = cluster.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

async fn isolation_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/crashers.tar"))?;
    // The same program in an image with no USER: it runs as root unless told otherwise.
    let rooted = cluster.dir().join("rooted.tar");
    let packed = std::process::Command::new(repo().join("scripts/oci-image.py"))
        .args(["--name", "vigil.test/rooted:1", "--out"])
        .arg(&rooted)
        .arg(format!(
            "--file=/crasher={}:0755",
            repo().join(".tools/crashers/crasher").display()
        ))
        .output()?;
    anyhow::ensure!(packed.status.success(), "{packed:?}");
    node.import_image(&rooted)?;
    // With the pod webhook, reached by URL: the operator runs outside the cluster.
    let port = vigil_e2e::free_port()?;
    let operator = Operator::start_with_chart_rbac(
        cluster,
        "vigil-isolation",
        &[
            &format!("--webhook-addr=127.0.0.1:{port}"),
            &format!("--webhook-url=https://127.0.0.1:{port}"),
        ],
    )
    .await?;
    let namespace = cluster.namespace("isolation").await?;
    let ns = namespace.name.as_str();
    let client = cluster.client();
    let hardened = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "hardened"},
        "spec": {"target": {"kind": "Deployment", "name": "hardened"},
            "isolation": {"profile": "restricted", "readOnlyRootFilesystem": true}}});
    apply(&client, ns, hardened).await?;
    apply(&client, ns, supervised("rooted", None)).await?;
    // The webhook isolates a pod only if it knows the object when the pod is created: wait
    // until the operator has seen both (their first status, TargetNotFound).
    let workloads: Api<SupervisedWorkload> = Api::namespaced(client.clone(), ns);
    for name in ["hardened", "rooted"] {
        eventually(&format!("{name} seen"), Duration::from_secs(30), || {
            let workloads = workloads.clone();
            async move {
                let status = workloads.get(name).await?.status.unwrap_or_default();
                Ok((!status.conditions.is_empty()).then_some(()))
            }
        })
        .await?;
    }
    // The webhook in effect: the API server has its configuration and the operator knows
    // the object. A server-side dry run of a pod of `hardened` goes through admission
    // without creating anything; it comes back isolated once both hold.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    vigil_e2e::wait_webhook_isolates(&pods, "hardened", IMAGE)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    apply(&client, ns, bare_deployment("hardened", IMAGE)).await?;
    apply(
        &client,
        ns,
        bare_deployment("rooted", "vigil.test/rooted:1"),
    )
    .await?;

    // The restricted profile, read-only root included, on a pod that runs for real.
    let pod = eventually("the hardened pod running", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            Ok(pods
                .list(&ListParams::default().labels("app=hardened"))
                .await?
                .items
                .into_iter()
                .find(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| c.iter().all(|c| c.ready))
                }))
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_security = spec.security_context.clone().unwrap_or_default();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(
        pod_security.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );
    let container = &spec.containers[0];
    let security = container.security_context.clone().unwrap_or_default();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert!(limits.contains_key("memory"), "a memory limit: {limits:?}");
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));

    // An image that runs as root under runAsNonRoot: the kubelet refuses it, and the
    // status says so instead of a pod waiting with no word.
    let refused = eventually(
        "Isolated=False for the rooted pods",
        Duration::from_secs(90),
        || {
            let workloads = workloads.clone();
            async move {
                let status = workloads.get("rooted").await?.status.unwrap_or_default();
                Ok(status
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Isolated" && c.status == "False"))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    assert_eq!(refused.reason, "KubeletRefused", "{refused:?}");
    assert!(
        refused.message.contains("CreateContainerConfigError")
            && refused.message.contains("runAsNonRoot"),
        "{refused:?}"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    eventually("an IsolationRefused Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("IsolationRefused")))
        }
    })
    .await?;
    // The hardened object was applied before its Deployment (the webhook isolates pods at
    // creation): it said TargetNotFound and looks again within 10 s.
    eventually(
        "Isolated=True for the hardened pods",
        Duration::from_secs(30),
        || {
            let workloads = workloads.clone();
            async move {
                let status = workloads.get("hardened").await?.status.unwrap_or_default();
                Ok(status
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Isolated" && c.status == "True"))
            }
        },
    )
    .await?;
    Ok(())
}

/// The ConfigMap the Deployment's `config` volume points at.
async fn mounted(deployments: &Api<Deployment>) -> anyhow::Result<String> {
    let deployment = deployments.get("checkout").await?;
    Ok(deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .find(|v| v.name == "config")
        .and_then(|v| v.config_map)
        .map(|c| c.name)
        .unwrap_or_default())
}

/// The log of a ready pod that mounts `revision`, once it has logged `line`.
async fn reader_says(pods: &Api<Pod>, revision: &str, line: &str) -> anyhow::Result<String> {
    eventually(
        &format!("a ready pod of {revision} logging {line:?}"),
        Duration::from_secs(120),
        || async {
            for pod in pods
                .list(&ListParams::default().labels("app=checkout"))
                .await?
                .items
            {
                let mounts = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.volumes.as_ref())
                    .is_some_and(|v| {
                        v.iter()
                            .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == revision))
                    });
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| c.iter().all(|c| c.ready));
                if !(mounts && ready && pod.metadata.deletion_timestamp.is_none()) {
                    continue;
                }
                let name = pod.metadata.name.clone().unwrap_or_default();
                let log = pods.logs(&name, &Default::default()).await?;
                if log.contains(line) {
                    return Ok(Some(log));
                }
            }
            Ok(None)
        },
    )
    .await
}

async fn wait_config(
    workloads: &Api<SupervisedWorkload>,
    what: &str,
    reason: &str,
) -> anyhow::Result<SupervisedWorkloadStatus> {
    wait_status(workloads, what, Duration::from_secs(120), |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "ConfigReloaded" && c.reason == reason)
    })
    .await
}

#[tokio::test]
async fn a_real_reader_runs_each_valid_config_and_a_crashing_one_is_rolled_back() {
    let mut cluster = TestCluster::start_with_node("reader")
        .await
        .expect("cluster");
    let result = config_scenario(&cluster).await;
    if result.is_err() {
        cluster.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    let left = cluster.stop_node();
    assert!(left.is_empty(), "the node left {left:?}");
}

async fn config_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let node = cluster.node().expect("a real node");
    node.import_image(&repo().join(".tools/images/crashers.tar"))?;
    let operator = Operator::start_with_chart_rbac(cluster, "vigil-reader", &[]).await?;
    let namespace = cluster.namespace("reader").await?;
    let ns = namespace.name.as_str();
    let client = cluster.client();
    let params = PatchParams::apply("vigil-e2e");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let workloads: Api<SupervisedWorkload> = Api::namespaced(client.clone(), ns);
    let source = |app: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "checkout-config"}, "data": {"app.yaml": app}})
    };
    let set = |app: &'static str| {
        let config_maps = config_maps.clone();
        let params = params.clone();
        async move {
            config_maps
                .patch("checkout-config", &params, &Patch::Apply(&source(app)))
                .await
        }
    };
    set("port: 8080\nmode: safe\n").await?;
    let mut reader = deployment(
        "checkout",
        &["/crasher", "config"],
        &[("CRASH_AFTER", "1s")],
        None,
    );
    reader["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
        serde_json::json!([{"name": "config", "mountPath": "/etc/checkout"}]);
    reader["spec"]["template"]["spec"]["volumes"] =
        serde_json::json!([{"name": "config", "configMap": {"name": "checkout-config"}}]);
    apply(&client, ns, reader).await?;
    let supervised = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
        "metadata": {"name": "checkout"},
        "spec": {"target": {"kind": "Deployment", "name": "checkout"},
            "config": {"configMapName": "checkout-config", "rollbackWithin": "2m",
                "schema": {"type": "object", "required": ["port"],
                    "properties": {"port": {"type": "integer", "maximum": 65535},
                        "mode": {"enum": ["safe", "fast"]}}}}}});
    apply(&client, ns, supervised).await?;

    // Adopted: the program reads revision 1.
    // Adopted once a revision runs: `Switched` says so until the next reconcile, which says
    // `Active` (a poll may see either).
    let first = wait_status(
        &workloads,
        "the first revision",
        Duration::from_secs(120),
        |s| s.config_revision.is_some(),
    )
    .await?;
    let reloaded = first
        .conditions
        .iter()
        .find(|c| c.type_ == "ConfigReloaded")
        .map(|c| c.reason.as_str());
    assert!(matches!(reloaded, Some("Switched" | "Active")), "{first:?}");
    let rev1 = first.config_revision.clone().unwrap_or_default();
    reader_says(&pods, &rev1, "config mode=safe port=8080").await?;

    // A change the schema refuses never reaches the program.
    set("port: 70000\nmode: safe\n").await?;
    wait_config(&workloads, "the invalid config rejected", "InvalidConfig").await?;
    assert_eq!(mounted(&deployments).await?, rev1);
    let log = reader_says(&pods, &rev1, "serving with mode=safe port=8080").await?;
    assert!(!log.contains("70000"), "{log}");

    // A valid change: the new revision, and the program runs with it.
    set("port: 9090\nmode: safe\n").await?;
    let second = wait_status(
        &workloads,
        "the second revision",
        Duration::from_secs(60),
        |s| {
            s.config_revision.as_deref().is_some_and(|r| r != rev1)
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "ConfigReloaded" && c.reason == "Switched")
        },
    )
    .await?;
    let rev2 = second.config_revision.clone().unwrap_or_default();
    reader_says(&pods, &rev2, "config mode=safe port=9090").await?;

    // Valid for the schema, fatal for the program: its pods crash for real, and Vigil
    // switches back to revision 2.
    let switching = Instant::now();
    set("port: 9090\nmode: fast\n").await?;
    let rolled = wait_config(&workloads, "rolled back after real crashes", "RolledBack")
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "rolled back {:.0}s after the fatal config was written",
        switching.elapsed().as_secs_f64()
    );
    assert_eq!(rolled.config_revision.as_deref(), Some(rev2.as_str()));
    let rev3 = rolled.config_revisions[0].name.clone();
    assert_eq!(rolled.config_revisions[0].state, "RolledBack", "{rolled:?}");
    assert_ne!(rev3, rev2);
    let message = rolled
        .conditions
        .iter()
        .find(|c| c.type_ == "ConfigReloaded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains(&rev3) && message.contains(&rev2),
        "the condition names both revisions: {message}"
    );
    assert!(rolled.crashes_total >= 1, "{rolled:?}");
    assert_eq!(mounted(&deployments).await?, rev2);
    reader_says(&pods, &rev2, "serving with mode=safe port=9090").await?;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    let note = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("ConfigRolledBack"))
        .and_then(|e| e.note)
        .ok_or_else(|| anyhow::anyhow!("no ConfigRolledBack Event"))?;
    assert!(
        note.contains(&rev3) && note.contains(&rev2),
        "the Event names both revisions: {note}"
    );
    Ok(())
}
