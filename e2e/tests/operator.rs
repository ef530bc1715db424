//! The operator on real control planes: installed with Helm, running with exactly the
//! chart's RBAC, probing member clusters across three "clouds", and electing a leader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use vigil::api::{MemberCluster, ServiceLevelObjective};
use vigil_e2e::{DnsServer, Operator, TestCluster, eventually};

const NS: &str = "vigil-system";

fn condition(member: &MemberCluster, type_: &str) -> Option<(String, String, String)> {
    member
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn apply_member(client: &Client, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let members: Api<MemberCluster> = Api::all(client.clone());
    let member = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster", "metadata": {"name": name}, "spec": spec});
    members
        .patch(
            name,
            &PatchParams::apply("vigil-e2e"),
            &Patch::Apply(&member),
        )
        .await?;
    Ok(())
}

/// Waits until `condition` of member `name` has `status`; returns (reason, message).
async fn wait_condition(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
    within: Duration,
) -> anyhow::Result<(String, String)> {
    let members: Api<MemberCluster> = Api::all(client.clone());
    eventually(
        &format!("MemberCluster {name} {type_}={status}"),
        within,
        || {
            let members = members.clone();
            async move {
                let member = members.get(name).await?;
                Ok(condition(&member, type_)
                    .filter(|(s, _, _)| s == status)
                    .map(|(_, r, m)| (r, m)))
            }
        },
    )
    .await
}

async fn kubeconfig_secret(client: &Client, name: &str, kubeconfig: &str) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "stringData": {"kubeconfig": kubeconfig},
    });
    secrets
        .patch(
            name,
            &PatchParams::apply("vigil-e2e"),
            &Patch::Apply(&secret),
        )
        .await?;
    Ok(())
}

async fn deployment_ready(client: &Client, replicas: i32) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    eventually(
        &format!("operator Deployment with {replicas} ready replicas"),
        Duration::from_secs(90),
        || {
            let deployments = deployments.clone();
            async move {
                let deployment = deployments.get("vigil").await?;
                let ready = deployment
                    .status
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                Ok((ready == replicas).then_some(()))
            }
        },
    )
    .await
}

#[tokio::test]
async fn helm_install_upgrade_and_uninstall_keep_the_crds() {
    let cluster = TestCluster::start("helm").await.expect("cluster");
    helm_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The restricted Pod Security Standard, enforced by the API server's PodSecurity admission.
const RESTRICTED: &str = "restricted";

async fn restricted_namespace(client: &Client) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NS, "labels": {
            "pod-security.kubernetes.io/enforce": RESTRICTED,
            "pod-security.kubernetes.io/enforce-version": "latest",
        }},
    });
    namespaces
        .patch(
            NS,
            &PatchParams::apply("vigil-e2e"),
            &Patch::Apply(&namespace),
        )
        .await?;
    Ok(())
}

/// The chart's pod passes the restricted standard, and the namespace really enforces it.
async fn check_pod_security(client: &Client) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let template = deployments
        .get("vigil")
        .await?
        .spec
        .map(|s| s.template)
        .ok_or_else(|| anyhow::anyhow!("the Deployment has no spec"))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let pod = |name: &str, spec| Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec,
        ..Pod::default()
    };
    pods.create(&dry_run, &pod("vigil-template", template.spec.clone()))
        .await
        .map_err(|e| {
            anyhow::anyhow!("the chart's pod is refused in a restricted namespace: {e}")
        })?;
    let mut privileged = template.spec.unwrap_or_default();
    for container in &mut privileged.containers {
        container.security_context = Some(serde_json::from_value(
            serde_json::json!({"privileged": true}),
        )?);
    }
    match pods
        .create(&dry_run, &pod("privileged", Some(privileged)))
        .await
    {
        Err(kube::Error::Api(status)) => anyhow::ensure!(
            status
                .message
                .contains(&format!("violates PodSecurity \"{RESTRICTED}:latest\"")),
            "{}",
            status.message
        ),
        other => anyhow::bail!("a privileged pod must be refused: {other:?}"),
    }
    Ok(())
}

async fn helm_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let chart = vigil_e2e::repo().join("charts/vigil");
    let chart = chart.to_str().unwrap_or_default();
    restricted_namespace(&cluster.client()).await?;
    cluster.run_tool(
        "helm",
        &[
            "install",
            "vigil",
            chart,
            "--namespace",
            NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        ],
    )?;
    cluster.wait_crds_established().await?;
    deployment_ready(&cluster.client(), 1).await?;
    check_pod_security(&cluster.client()).await?;

    cluster.run_tool(
        "helm",
        &[
            "upgrade",
            "vigil",
            chart,
            "--namespace",
            NS,
            "--set",
            "replicas=2",
            "--wait",
            "--timeout",
            "120s",
        ],
    )?;
    deployment_ready(&cluster.client(), 2).await?;

    cluster.run_tool(
        "helm",
        &[
            "uninstall",
            "vigil",
            "--namespace",
            NS,
            "--wait",
            "--timeout",
            "120s",
        ],
    )?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), NS);
    assert!(
        deployments.get_opt("vigil").await?.is_none(),
        "the Deployment is removed"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    for crd in vigil::api::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        assert!(
            crds.get_opt(&name).await?.is_some(),
            "{name} is kept on uninstall"
        );
    }
    Ok(())
}

/// The operator runs as the chart's ServiceAccount: every permission it needs for what it
/// does must be in the chart, or this test fails.
#[tokio::test]
async fn the_operator_reconciles_with_exactly_the_charts_rbac() {
    let cluster = TestCluster::start("rbac").await.expect("cluster");
    rbac_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn rbac_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let operator =
        Operator::start_with_chart_rbac(cluster, "vigil-rbac", &["--lease-name=vigil-leader"])
            .await?;
    // A remote member whose kubeconfig Secret lives in the operator's namespace, and an SLO
    // whose status the operator must write.
    kubeconfig_secret(
        &cluster.client(),
        "self-kubeconfig",
        &cluster.admin_kubeconfig_yaml()?,
    )
    .await?;
    apply_member(
        &cluster.client(),
        "self",
        serde_json::json!({"provider": "vmware", "region": "lab", "probeInterval": "5s",
            "apiServer": {"kubeconfigSecretRef": {"namespace": NS, "name": "self-kubeconfig", "key": "kubeconfig"}}}),
    )
    .await?;
    let namespace = cluster.namespace("slo").await?;
    let slos: Api<ServiceLevelObjective> = Api::namespaced(cluster.client(), &namespace.name);
    let slo = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective", "metadata": {"name": "api"},
        "spec": {"service": "api", "objective": 99.9, "sli": {"ratio": {"errors": "errors_total", "total": "requests_total"}}},
    });
    slos.patch("api", &PatchParams::apply("vigil-e2e"), &Patch::Apply(&slo))
        .await?;

    let (_, message) = wait_condition(
        &cluster.client(),
        "self",
        "Ready",
        "True",
        Duration::from_secs(60),
    )
    .await?;
    assert!(message.contains("API server"), "{message}");
    let member: MemberCluster = Api::all(cluster.client()).get("self").await?;
    assert!(
        member
            .status
            .and_then(|s| s.kubernetes_version)
            .is_some_and(|v| v.starts_with("v1.36"))
    );

    let status = eventually("SLO rules generated", Duration::from_secs(30), || {
        let slos = slos.clone();
        async move {
            Ok(slos.get("api").await?.status.filter(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == vigil::api::service_level_objective::vocabulary::RULES_GENERATED
                        && c.status == "True"
                })
            }))
        }
    })
    .await?;
    let generated = status
        .conditions
        .iter()
        .find(|c| c.type_ == vigil::api::service_level_objective::vocabulary::RULES_GENERATED)
        .expect("RulesGenerated");
    assert_eq!(
        generated.reason, "ConfigMap",
        "no Prometheus Operator here: {}",
        generated.message
    );
    assert!(
        generated.message.contains("PrometheusRule CRD"),
        "{}",
        generated.message
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client(), &namespace.name);
    let rules = configmaps.get("api-slo-rules").await?;
    assert!(
        rules
            .data
            .as_ref()
            .is_some_and(|d| d["api.rules.yaml"].contains("SLOErrorBudgetBurn"))
    );
    let owner = rules.metadata.owner_references.unwrap_or_default();
    assert_eq!(
        owner.first().map(|o| o.kind.as_str()),
        Some("ServiceLevelObjective")
    );

    let events: Api<Event> = Api::all(cluster.client());
    eventually(
        "an Event from the operator",
        Duration::from_secs(30),
        || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await?;
                Ok(list
                    .items
                    .into_iter()
                    .find(|e| e.reporting_controller.as_deref() == Some("vigil")))
            }
        },
    )
    .await?;
    // A CrossCloudDNS writing into the local cluster's coredns-custom: its finalizer is
    // added, the key written, and on deletion the key removed and the finalizer released,
    // all with the chart's rights. (No resolver answers here; the configuration is applied
    // all the same.)
    apply_member(
        &cluster.client(),
        "home",
        serde_json::json!({"provider": "aws", "region": "lab", "local": true,
            "dns": {"endpoints": [format!("127.0.0.1:{}", vigil_e2e::free_port()?)]}}),
    )
    .await?;
    apply_member(
        &cluster.client(),
        "self",
        serde_json::json!({"provider": "vmware", "region": "lab", "probeInterval": "5s",
            "apiServer": {"kubeconfigSecretRef": {"namespace": NS, "name": "self-kubeconfig", "key": "kubeconfig"}},
            "dns": {"endpoints": [format!("127.0.0.1:{}", vigil_e2e::free_port()?)], "clusterDomain": "self.local"}}),
    )
    .await?;
    let meshes: Api<vigil::api::CrossCloudDNS> = Api::all(cluster.client());
    let mesh = serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS",
        "metadata": {"name": "rbac-mesh"}, "spec": {"clusters": ["home", "self"]}});
    meshes
        .patch(
            "rbac-mesh",
            &PatchParams::apply("vigil-e2e"),
            &Patch::Apply(&mesh),
        )
        .await?;
    eventually("CrossCloudDNS applied", Duration::from_secs(60), || {
        let meshes = meshes.clone();
        async move {
            let mesh = meshes.get("rbac-mesh").await?;
            let ready = mesh.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            Ok((ready && !mesh.metadata.finalizers.unwrap_or_default().is_empty()).then_some(()))
        }
    })
    .await?;
    let custom: Api<ConfigMap> = Api::namespaced(cluster.client(), "kube-system");
    let has_key = |custom: Api<ConfigMap>| async move {
        Ok::<_, anyhow::Error>(
            custom
                .get_opt("coredns-custom")
                .await?
                .and_then(|cm| cm.data)
                .is_some_and(|d| d.contains_key("rbac-mesh.server")),
        )
    };
    assert!(has_key(custom.clone()).await?, "the key is written");
    meshes
        .delete("rbac-mesh", &kube::api::DeleteParams::default())
        .await?;
    eventually("CrossCloudDNS released", Duration::from_secs(60), || {
        let meshes = meshes.clone();
        async move { Ok(meshes.get_opt("rbac-mesh").await?.is_none().then_some(())) }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\noperator log:\n{}", operator.log()))?;
    assert!(!has_key(custom).await?, "the key is removed on deletion");

    let log = operator.log();
    assert!(
        !log.contains("forbidden"),
        "the chart's RBAC misses a permission:\n{log}"
    );
    assert_eq!(
        operator.metric_total("vigil_reconcile_panics_total").await,
        Some(0.0),
        "no reconcile panicked (and /metrics answers)"
    );
    Ok(())
}

#[tokio::test]
async fn member_clusters_across_three_clouds_report_reachability() {
    let (aws, aliyun, vmware) = tokio::join!(
        TestCluster::start("aws"),
        TestCluster::start("aliyun"),
        TestCluster::start("vmware")
    );
    let (aws, aliyun, mut vmware) = (
        aws.expect("aws"),
        aliyun.expect("aliyun"),
        vmware.expect("vmware"),
    );
    fleet_scenario(&aws, &aliyun, &mut vmware)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn fleet_scenario(
    aws: &TestCluster,
    aliyun: &TestCluster,
    vmware: &mut TestCluster,
) -> anyhow::Result<()> {
    let home = aws.client();
    aws.install_crds().await?;
    aws.ensure_namespace(NS).await?;
    kubeconfig_secret(&home, "aliyun-kubeconfig", &aliyun.admin_kubeconfig_yaml()?).await?;
    kubeconfig_secret(&home, "vmware-kubeconfig", &vmware.admin_kubeconfig_yaml()?).await?;
    // Each cluster's DNS is a real bind9 on loopback.
    let aws_dns = DnsServer::start(aws.dir(), "cluster.local", None, &[]).await?;
    let aliyun_dns = DnsServer::start(aliyun.dir(), "cluster.local", None, &[]).await?;
    let mut vmware_dns = DnsServer::start(vmware.dir(), "onprem.local", None, &[]).await?;
    apply_member(
        &home,
        "aws",
        serde_json::json!({"provider": "aws", "region": "eu-west-1", "local": true, "probeInterval": "5s",
            "dns": {"endpoints": [aws_dns.endpoint]}}),
    )
    .await?;
    for (name, dns, domain) in [
        ("aliyun", &aliyun_dns, "cluster.local"),
        ("vmware", &vmware_dns, "onprem.local"),
    ] {
        apply_member(
            &home,
            name,
            serde_json::json!({"provider": name, "region": "r1", "probeInterval": "5s",
                "apiServer": {"kubeconfigSecretRef": {"namespace": NS, "name": format!("{name}-kubeconfig"), "key": "kubeconfig"}},
                "dns": {"endpoints": [dns.endpoint], "clusterDomain": domain}}),
        )
        .await?;
    }
    let operator = Operator::start(aws.kubeconfig(), aws.dir(), "vigil-fleet", &[])?;
    for name in ["aws", "aliyun", "vmware"] {
        let (_, message) =
            wait_condition(&home, name, "Ready", "True", Duration::from_secs(60)).await?;
        assert_eq!(message, "the API server and DNS answer");
        let (_, dns) =
            wait_condition(&home, name, "DnsReachable", "True", Duration::from_secs(5)).await?;
        assert_eq!(dns, "all 1 DNS endpoints answer");
    }
    let members: Api<MemberCluster> = Api::all(home.clone());
    let before = |m: &MemberCluster| m.status.as_ref().map(|s| s.conditions.clone());
    let aws_before = before(&members.get("aws").await?);
    let aliyun_before = before(&members.get("aliyun").await?);

    let stopped = Instant::now();
    vmware.stop_apiserver();
    let (reason, message) = wait_condition(
        &home,
        "vmware",
        "ApiReachable",
        "False",
        Duration::from_secs(5 + 15),
    )
    .await?;
    let noticed = stopped.elapsed();
    eprintln!(
        "vmware unreachable noticed after {:.1}s: {reason}: {message}",
        noticed.as_secs_f64()
    );
    assert!(
        matches!(reason.as_str(), "ApiUnreachable" | "ApiTimeout"),
        "{reason}"
    );
    assert!(
        message.contains("API server") && message.contains(&vmware.server()),
        "a readable reason naming the server: {message}"
    );
    assert_eq!(
        condition(&members.get("vmware").await?, "Ready")
            .map(|c| c.0)
            .as_deref(),
        Some("False")
    );

    vmware.start_apiserver().await?;
    wait_condition(&home, "vmware", "Ready", "True", Duration::from_secs(30)).await?;

    vmware_dns.stop();
    let (reason, message) = wait_condition(
        &home,
        "vmware",
        "DnsReachable",
        "False",
        Duration::from_secs(5 + 10),
    )
    .await?;
    assert_eq!(reason, "DnsUnreachable");
    assert!(message.contains(&vmware_dns.endpoint), "{message}");

    // The other members were never disturbed: same conditions, same transition times.
    assert_eq!(before(&members.get("aws").await?), aws_before);
    assert_eq!(before(&members.get("aliyun").await?), aliyun_before);
    assert_eq!(
        operator.metric_total("vigil_reconcile_panics_total").await,
        Some(0.0),
        "no reconcile panicked (and /metrics answers)"
    );
    Ok(())
}

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let cluster = TestCluster::start("leader").await.expect("cluster");
    leader_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A kubeconfig for one replica, as its own ServiceAccount (bound to cluster-admin): the
/// API server's audit log then tells the replicas' writes apart.
async fn replica_kubeconfig(cluster: &TestCluster, name: &str) -> anyhow::Result<PathBuf> {
    use k8s_openapi::api::authentication::v1::TokenRequest;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let apply = PatchParams::apply("vigil-e2e");
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client(), NS);
    let account = serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}});
    accounts
        .patch(name, &apply, &Patch::Apply(&account))
        .await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client());
    let binding = serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NS}],
    });
    bindings
        .patch(name, &apply, &Patch::Apply(&binding))
        .await?;
    let request: TokenRequest = serde_json::from_value(
        serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
    )?;
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await?
        .status
        .and_then(|s| s.token)
        .unwrap_or_default();
    let path = cluster.dir().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, cluster.token_kubeconfig(&token))?;
    Ok(path)
}

/// One write in the audit log: time, replica, what, response code.
type Write = (String, String, String, i64);

/// What the audit log says each replica wrote: `(time, replica, what, code)` for writes to
/// Vigil's kinds and Events, and the time of each replica's first successful Lease write.
fn audit_writes(cluster: &TestCluster) -> anyhow::Result<(Vec<Write>, BTreeMap<String, String>)> {
    let mut writes = Vec::new();
    let mut leader_since = BTreeMap::new();
    for event in cluster.audit()? {
        let user = event["user"]["username"].as_str().unwrap_or_default();
        let Some(replica) = user.strip_prefix(&format!("system:serviceaccount:{NS}:")) else {
            continue;
        };
        let time = event["stageTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let code = event["responseStatus"]["code"].as_i64().unwrap_or_default();
        let object = &event["objectRef"];
        let group = object["apiGroup"].as_str().unwrap_or_default();
        let what = format!(
            "{} {}/{}{}",
            event["verb"].as_str().unwrap_or_default(),
            object["resource"].as_str().unwrap_or_default(),
            object["name"].as_str().unwrap_or_default(),
            object["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
        );
        match group {
            "coordination.k8s.io" if object["name"] == "vigil-leader" && code < 300 => {
                leader_since.entry(replica.to_owned()).or_insert(time);
            }
            "vigil.io" | "events.k8s.io" => writes.push((time, replica.to_owned(), what, code)),
            _ => {}
        }
    }
    writes.sort();
    Ok((writes, leader_since))
}

async fn leader_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    cluster.install_crds().await?;
    cluster.ensure_namespace(NS).await?;
    let lease_seconds = 6;
    let lease_flag = format!("--lease-duration-seconds={lease_seconds}");
    let mut first = Operator::start(
        &replica_kubeconfig(cluster, "replica-a").await?,
        cluster.dir(),
        "replica-a",
        &[&lease_flag],
    )?;
    let leases: Api<Lease> = Api::namespaced(cluster.client(), NS);
    let holder = |leases: Api<Lease>| async move {
        Ok::<_, anyhow::Error>(
            leases
                .get_opt("vigil-leader")
                .await?
                .and_then(|l| l.spec)
                .and_then(|s| s.holder_identity),
        )
    };
    eventually("replica-a holds the Lease", Duration::from_secs(30), || {
        let leases = leases.clone();
        async move { Ok(holder(leases).await?.filter(|h| h == "replica-a")) }
    })
    .await?;
    let second = Operator::start(
        &replica_kubeconfig(cluster, "replica-b").await?,
        cluster.dir(),
        "replica-b",
        &[&lease_flag],
    )?;

    apply_member(&cluster.client(), "home", serde_json::json!({"provider": "aws", "region": "eu-west-1", "local": true, "probeInterval": "5s"})).await?;
    wait_condition(
        &cluster.client(),
        "home",
        "Ready",
        "True",
        Duration::from_secs(30),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        second.log().contains("waiting to become the leader"),
        "{}",
        second.log()
    );
    assert!(
        !second.log().contains("controllers starting"),
        "the standby must not run controllers:\n{}",
        second.log()
    );
    // Vigil's Events (Kubernetes' own controllers publish some too, e.g. the API server's
    // ipallocator repair).
    let events: Api<Event> = Api::all(cluster.client());
    let writers: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("vigil"))
        .filter_map(|e| e.reporting_instance)
        .collect();
    assert!(
        writers.iter().all(|w| w == "replica-a"),
        "only the leader publishes: {writers:?}"
    );

    let killed = Instant::now();
    first.kill();
    eventually(
        "replica-b takes the Lease",
        Duration::from_secs(lease_seconds * 3),
        || {
            let leases = leases.clone();
            async move { Ok(holder(leases).await?.filter(|h| h == "replica-b")) }
        },
    )
    .await?;
    let handover = killed.elapsed();
    eprintln!(
        "leader handover after SIGKILL: {:.1}s (lease {lease_seconds}s)",
        handover.as_secs_f64()
    );
    assert!(
        handover <= Duration::from_secs(lease_seconds * 2),
        "handover took {handover:?}"
    );

    // The new leader reconciles: a spec change is observed.
    apply_member(&cluster.client(), "home", serde_json::json!({"provider": "aws", "region": "eu-central-1", "local": true, "probeInterval": "5s"})).await?;
    let members: Api<MemberCluster> = Api::all(cluster.client());
    eventually(
        "the new leader observes generation 2",
        Duration::from_secs(30),
        || {
            let members = members.clone();
            async move {
                Ok(members
                    .get("home")
                    .await?
                    .status
                    .and_then(|s| s.observed_generation)
                    .filter(|g| *g == 2))
            }
        },
    )
    .await?;

    // The audit: every write of replica-a comes before every write of replica-b, each
    // replica writes only once it holds the Lease, and no write conflicted.
    let (writes, leader_since) = audit_writes(cluster)?;
    let last_of_a = writes.iter().rev().find(|w| w.1 == "replica-a");
    let first_of_b = writes.iter().find(|w| w.1 == "replica-b");
    let (Some(last_of_a), Some(first_of_b)) = (last_of_a, first_of_b) else {
        anyhow::bail!("both replicas must have written: {writes:?}");
    };
    anyhow::ensure!(
        last_of_a.0 < first_of_b.0,
        "replica-b wrote ({first_of_b:?}) before replica-a's last write ({last_of_a:?})"
    );
    for replica in ["replica-a", "replica-b"] {
        let since = leader_since
            .get(replica)
            .ok_or_else(|| anyhow::anyhow!("{replica} never wrote the Lease"))?;
        let early: Vec<_> = writes
            .iter()
            .filter(|w| w.1 == replica && w.0 < *since)
            .collect();
        anyhow::ensure!(early.is_empty(), "{replica} wrote before it led: {early:?}");
    }
    let conflicts: Vec<_> = writes.iter().filter(|w| w.3 == 409).collect();
    anyhow::ensure!(conflicts.is_empty(), "conflicting writes: {conflicts:?}");
    eprintln!(
        "audit: {} writes by replica-a, then {} by replica-b, no conflict",
        writes.iter().filter(|w| w.1 == "replica-a").count(),
        writes.iter().filter(|w| w.1 == "replica-b").count()
    );
    Ok(())
}

#[tokio::test]
async fn an_invalid_reference_is_reported_and_revalidated_when_the_target_appears() {
    let cluster = TestCluster::start("refs").await.expect("cluster");
    references_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn references_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    cluster.install_crds().await?;
    cluster.ensure_namespace(NS).await?;
    let _operator = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-refs", &[])?;
    let dns: Api<vigil::api::CrossCloudDNS> = Api::all(cluster.client());
    let mesh = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS", "metadata": {"name": "mesh"},
        "spec": {"clusters": ["east", "west"]},
    });
    dns.patch(
        "mesh",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&mesh),
    )
    .await?;
    // Ready's reason says whether the spec waits for the members it names: GitOps may
    // apply them later.
    let ready = |dns: Api<vigil::api::CrossCloudDNS>, invalid: bool| async move {
        let mesh = dns.get("mesh").await?;
        Ok::<_, anyhow::Error>(
            mesh.status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .filter(|c| (c.reason == "ReferenceNotFound") == invalid),
        )
    };
    let invalid = eventually(
        "mesh Ready=False/ReferenceNotFound",
        Duration::from_secs(30),
        || ready(dns.clone(), true),
    )
    .await?;
    assert_eq!(invalid.reason, "ReferenceNotFound");
    assert!(
        invalid
            .message
            .contains(r#"spec.clusters[0]: MemberCluster "east" does not exist"#),
        "{}",
        invalid.message
    );
    let events: Api<Event> = Api::all(cluster.client());
    let warning = eventually("a ReferenceNotFound Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await?;
            Ok(list
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("ReferenceNotFound")))
        }
    })
    .await?;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert_eq!(
        warning.regarding.and_then(|r| r.name).as_deref(),
        Some("mesh")
    );

    apply_member(
        &cluster.client(),
        "east",
        serde_json::json!({"provider": "aws", "region": "r1", "local": true, "dns": {"endpoints": ["127.0.0.1:1"]}}),
    )
    .await?;
    apply_member(
        &cluster.client(),
        "west",
        serde_json::json!({"provider": "aws", "region": "r2", "dns": {"endpoints": ["127.0.0.1:2"]},
            "apiServer": {"kubeconfigSecretRef": {"namespace": NS, "name": "west-kubeconfig", "key": "kubeconfig"}}}),
    )
    .await?;
    let valid = eventually(
        "mesh valid once its members exist",
        Duration::from_secs(30),
        || ready(dns.clone(), false),
    )
    .await?;
    // Valid now; west's kubeconfig Secret does not exist, so its configuration cannot be
    // applied, and Ready says so.
    assert_eq!(valid.reason, "ApplyFailed", "{}", valid.message);
    assert!(valid.message.contains("west"), "{}", valid.message);
    Ok(())
}

#[tokio::test]
async fn without_its_crds_the_operator_exits_with_a_clear_error() {
    let cluster = TestCluster::start("nocrds").await.expect("cluster");
    let mut operator =
        Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-nocrds", &[]).expect("started");
    let exited = eventually("the operator exits", Duration::from_secs(30), || {
        let status = operator.check_alive();
        async move { Ok(status.err()) }
    })
    .await
    .expect("it exits");
    let message = format!("{exited:#}");
    assert!(message.contains("exited with exit status: 1"), "{message}");
    assert!(
        message.contains("CRDs") && message.contains("vigil crds | kubectl apply"),
        "{message}"
    );
}
