//! `vigil status` against a real control plane: objects of every kind in known states
//! (their status written through the status subresource, as the operator would), read
//! back by the command as a user runs it, in JSON and as a table; and a user whose RBAC
//! lacks `list` gets a message naming the verb and the resource. `vigil check` before
//! the operator runs, once it runs, and once it stopped.

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use vigil_e2e::operator::vigil_cli as vigil;
use vigil_e2e::{Operator, TestCluster};

/// Applies `object` and then its `status`.
async fn put(client: &Client, object: serde_json::Value) -> anyhow::Result<()> {
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let plural = format!("{}s", kind.to_lowercase()).replace("crossclouddnss", "crossclouddnses");
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("vigil.io", "v1alpha1", &kind),
        &plural,
    );
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let mut spec_only = object.clone();
    let status = spec_only
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .unwrap_or_default();
    let params = PatchParams::apply("vigil-e2e").force();
    api.patch(&name, &params, &Patch::Apply(&spec_only)).await?;
    let patch =
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": kind, "status": status});
    api.patch_status(&name, &params, &Patch::Apply(&patch))
        .await?;
    Ok(())
}

fn ready(status: &str, reason: &str, message: &str) -> serde_json::Value {
    serde_json::json!([{"type": "Ready", "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-12-01T00:00:00Z"}])
}

fn run(kubeconfig: &std::path::Path, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    vigil(kubeconfig, "status", args)
}

#[tokio::test]
async fn status_reads_the_fleet_worst_first_and_names_a_missing_right() {
    let cluster = TestCluster::start("status").await.expect("cluster");
    scenario(&cluster).await.unwrap_or_else(|e| panic!("{e:#}"));
}

async fn scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    cluster.install_crds().await?;
    for namespace in ["shop", "crashlab"] {
        cluster.ensure_namespace(namespace).await?;
    }
    let client = cluster.client();
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(60)).to_string();
    let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 80)).to_string();
    let objects = [
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": "aliyun"}, "spec": {"provider": "aliyun", "region": "cn-hangzhou",
                "apiServer": {"kubeconfigSecretRef": {"namespace": "shop", "name": "aliyun-kubeconfig", "key": "kubeconfig"}}},
            "status": {"conditions": ready("False", "Unreachable", "API server https://10.0.0.1:6443: connection refused")}}),
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": "aws"}, "spec": {"provider": "aws", "region": "eu-west-1", "local": true},
            "status": {"conditions": ready("True", "Reachable", "API and DNS answer"), "kubernetesVersion": "v1.36.3"}}),
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
            "metadata": {"name": "checkout-availability", "namespace": "shop"},
            "spec": {"service": "checkout", "objective": 99.9, "window": "30d",
                "sli": {"ratio": {"errors": "e", "total": "t"}}},
            "status": {"conditions": ready("True", "RulesApplied", "42 rules"),
                "errorBudgetRemaining": "40.00%", "burnRate": "6.00"}}),
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
            "metadata": {"name": "shop-tls", "namespace": "shop"},
            "spec": {"issuerRef": {"name": "letsencrypt"}, "dnsNames": ["shop.example.com"], "secretName": "shop-tls"},
            "status": {"conditions": ready("True", "Issued", "issued"), "notAfter": soon, "revision": 3}}),
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
            "metadata": {"name": "api-tls", "namespace": "shop"},
            "spec": {"issuerRef": {"name": "letsencrypt"}, "dnsNames": ["api.example.com"], "secretName": "api-tls"},
            "status": {"conditions": ready("True", "Issued", "issued"), "notAfter": later, "revision": 1}}),
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
            "metadata": {"name": "checkout", "namespace": "crashlab"},
            "spec": {"target": {"kind": "Deployment", "name": "checkout"}},
            "status": {"conditions": ready("True", "Supervising", "capturing crashes"),
                "breaker": "Open", "breakerSince": "2026-12-07T16:07:35Z", "crashesInWindow": 3, "crashesTotal": 3,
                "lastCrash": "2026-12-07T16:07:34Z container app of pod checkout-5bffc69bd-dcdm5 exited 2 (Error): panic: runtime error"}}),
    ];
    for object in objects {
        put(&client, object).await?;
    }
    let kubeconfig = cluster.kubeconfig();

    // JSON, every namespace, worst first.
    let (code, out, err) = run(kubeconfig, &["-A", "-o", "json"])?;
    anyhow::ensure!(code == 0, "exit {code}: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    let seen: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["severity"].as_str().unwrap_or_default().to_owned(),
                r["name"].as_str().unwrap_or_default().to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = [
        ("Failing", "aliyun", "Unreachable"),
        ("Failing", "checkout", "BreakerOpen"),
        ("Warning", "checkout-availability", "Burning"),
        ("Warning", "shop-tls", "Expiring"),
        ("Ok", "aws", "Reachable"),
        ("Ok", "api-tls", "Valid"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(seen, want, "{out}");

    // The table in a pipe: whole lines, no colour, the header first.
    let (code, table, err) = run(kubeconfig, &["-A"])?;
    anyhow::ensure!(code == 0, "exit {code}: {err}");
    assert!(!table.contains('\x1b'), "no colour in a pipe:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("      NAMESPACE  OBJECT"), "{table}");
    assert!(
        lines[1].starts_with("FAIL  -          mc/aliyun"),
        "{table}"
    );
    assert!(
        lines[2].contains("sw/checkout") && lines[2].contains("panic: runtime error"),
        "{table}"
    );

    // One namespace: its objects and the cluster-scoped ones.
    let (code, out, err) = run(kubeconfig, &["-n", "crashlab", "-o", "json"])?;
    anyhow::ensure!(code == 0, "exit {code}: {err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out)?;
    assert!(
        rows.iter()
            .all(|r| r.get("namespace").is_none() || r["namespace"] == "crashlab"),
        "{out}"
    );
    assert!(rows.iter().any(|r| r["name"] == "checkout"), "{out}");

    // One object: the workload with its crash snapshot ConfigMap (owned by it, as the
    // operator writes it) and an Event.
    let workloads: Api<vigil::api::SupervisedWorkload> =
        Api::namespaced(client.clone(), "crashlab");
    let uid = workloads
        .get("checkout")
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    let snapshot = serde_json::json!({"time": "2026-12-07T16:07:34Z", "pod": "checkout-5bffc69bd-dcdm5",
        "podUid": "u", "node": "aws-real", "container": "app", "image": "vigil.test/crashers:1",
        "exitCode": 2, "reason": "Error", "restartCount": 3,
        "logTail": "checkout: order 42 received\npanic: runtime error: invalid memory address or nil pointer dereference\n",
        "panic": {"language": "go", "message": "panic: runtime error: invalid memory address or nil pointer dereference",
            "frames": ["main.(*Cart).Total at vigil.io/e2e-tools/crashers/main.go:38"]}});
    let crashes = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "checkout-crashes", "namespace": "crashlab",
            "ownerReferences": [{"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
                "name": "checkout", "uid": uid, "controller": true}]},
        "data": {"crash-1.json": snapshot.to_string(), "sealed.json": snapshot.to_string()}});
    Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "crashlab")
        .patch(
            "checkout-crashes",
            &PatchParams::apply("vigil-e2e"),
            &Patch::Apply(&crashes),
        )
        .await?;
    let event = serde_json::json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "checkout.opened", "namespace": "crashlab"},
        "eventTime": "2026-12-07T16:07:36.000000Z", "reportingController": "vigil", "reportingInstance": "vigil-0",
        "action": "Reconcile", "reason": "CircuitOpened", "type": "Warning",
        "note": "3 crashes within 10m; scaled Deployment checkout to 0 (from 1)",
        "regarding": {"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
            "name": "checkout", "namespace": "crashlab", "uid": uid}});
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), "crashlab")
        .create(&PostParams::default(), &serde_json::from_value(event)?)
        .await?;
    let (code, text, err) = run(kubeconfig, &["sw/checkout", "-n", "crashlab"])?;
    anyhow::ensure!(code == 0, "exit {code}: {err}");
    eprintln!("vigil status sw/checkout -n crashlab:\n{text}");
    for want in [
        "SupervisedWorkload crashlab/checkout",
        "FAIL BreakerOpen: since 2026-12-07T16:07:35Z",
        "Ready           True   Supervising",
        "ConfigMap checkout-crashes",
        "supervises Deployment checkout",
        "Warning CircuitOpened: 3 crashes within 10m",
        "exit 2 (Error), restart 3",
        "go panic: panic: runtime error: invalid memory address or nil pointer dereference",
        "at main.(*Cart).Total at vigil.io/e2e-tools/crashers/main.go:38",
        "    checkout: order 42 received",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let (code, json, err) = run(
        kubeconfig,
        &[
            "SupervisedWorkload/checkout",
            "-n",
            "crashlab",
            "-o",
            "json",
        ],
    )?;
    anyhow::ensure!(code == 0, "exit {code}: {err}");
    let described: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(described["row"]["state"], "BreakerOpen", "{json}");
    assert_eq!(described["snapshot"]["exitCode"], 2, "{json}");
    let (code, _, err) = run(kubeconfig, &["sw/nothing", "-n", "crashlab"])?;
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "error: SupervisedWorkload nothing not found in namespace crashlab"
    );
    let (code, _, err) = run(kubeconfig, &["pod/checkout"])?;
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown kind \"pod\": one of mc, slo, acmeiss, acmecert, ccdns, telp, sw"),
        "{err}"
    );

    // A user who may read nothing of Vigil's.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "shop");
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "nobody"}}))?;
    accounts.create(&PostParams::default(), &account).await?;
    let request: TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
    )?;
    let token = accounts
        .create_token_request("nobody", &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .unwrap_or_default();
    let nobody = cluster.dir().join("nobody.kubeconfig");
    std::fs::write(&nobody, cluster.token_kubeconfig(&token))?;
    let (code, out, err) = run(&nobody, &["-A"])?;
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(
        err.trim(),
        "error: not allowed to list memberclusters.vigil.io cluster-wide: your RBAC needs verb \"list\" on resource \"memberclusters.vigil.io\""
    );
    // The same user: `vigil check` names every right it lacks and what needs it; an action
    // is refused with the verb and the resource.
    let (code, out, err) = vigil(&nobody, "check", &["-n", "shop"])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL  your actions: not allowed in namespace shop: patch acmecertificates.vigil.io (vigil renew needs it), patch supervisedworkloads.vigil.io (vigil breaker and vigil config rollback needs it), get configmaps (vigil config diff needs it)"),
        "{out}"
    );
    let (code, _, err) = vigil(&nobody, "renew", &["shop-tls", "-n", "shop"])?;
    assert_eq!(code, 2);
    assert_eq!(
        err.trim(),
        "error: not allowed to patch acmecertificates.vigil.io in namespace shop: your RBAC needs verb \"patch\" on resource \"acmecertificates.vigil.io\""
    );
    Ok(())
}

#[tokio::test]
async fn check_says_whether_vigil_runs_and_fails_clearly_once_it_stopped() {
    let cluster = TestCluster::start("check").await.expect("cluster");
    check_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn check_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let kubeconfig = cluster.kubeconfig();
    // Nothing installed.
    let (code, out, err) = vigil(kubeconfig, "check", &[])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL  CRDs: memberclusters.vigil.io is not installed")
            || out.contains("FAIL  CRDs: acmecertificates.vigil.io is not installed"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  operator: no Lease vigil-system/vigil-leader"),
        "{out}"
    );

    // The chart and a running operator (outside the cluster, its webhook by URL).
    let port = vigil_e2e::free_port()?;
    let mut operator = Operator::start_with_chart_rbac(
        cluster,
        "vigil-check",
        &[
            &format!("--webhook-addr=127.0.0.1:{port}"),
            &format!("--webhook-url=https://127.0.0.1:{port}"),
        ],
    )
    .await?;
    let (code, out, err) = vigil(kubeconfig, "check", &["--wait", "60s"])?;
    assert_eq!(code, 0, "{out}{err}\n{}", operator.log());
    for want in [
        "ok    CRDs: 7 installed, established, as this binary knows them",
        "ok    operator: vigil-check leads",
        "ok    webhook: ",
        "ok    your rights: vigil status may read every kind and its Events",
        "ok    your actions: vigil renew, breaker and config may act in namespace default",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    let (code, json, _) = vigil(kubeconfig, "check", &["-o", "json"])?;
    assert_eq!(code, 0);
    let outcomes: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    assert!(outcomes.iter().all(|o| o["passed"] == true), "{json}");

    // Stopped (SIGTERM: it gives the Lease up).
    operator.terminate();
    let (code, out, err) = vigil(kubeconfig, "check", &[])?;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL  operator: Lease vigil-leader has no holder")
            || out.contains("but has not renewed it"),
        "{out}"
    );
    Ok(())
}
