//! ServiceLevelObjectives end to end: the operator writes the rules into the cluster, a real
//! Prometheus loads them and evaluates them on scraped samples, and the SLO's status shows
//! the error budget that can be computed by hand.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams};
use vigil::api::ServiceLevelObjective;
use vigil::api::service_level_objective::vocabulary::{
    BUDGET_KNOWN, PROMETHEUS_UNREACHABLE, RULES_GENERATED,
};
use vigil_e2e::{Exporter, Operator, Prometheus, TestCluster, eventually};

#[tokio::test]
async fn a_real_prometheus_evaluates_the_rules_and_the_status_shows_the_budget() {
    let cluster = TestCluster::start("slo").await.expect("cluster");
    budget_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

fn condition(slo: &ServiceLevelObjective, type_: &str) -> Option<(String, String, String)> {
    slo.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn budget_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    let namespace = cluster.namespace("shop").await?;
    let _operator = Operator::start(
        cluster.kubeconfig(),
        cluster.dir(),
        "vigil-slo",
        &["--status-interval-seconds=5"],
    )?;

    // 99% over 30 days, so the budget is 1% of requests. The exporter fails 0.25% of
    // requests: by hand, 1 - 0.0025 / 0.01 = 75% of the budget is left, whatever the window
    // holds so far.
    let exporter = Exporter::start(99.75, 0.25).await?;
    let prometheus_port = vigil_e2e::free_port()?;
    let url = format!("http://127.0.0.1:{prometheus_port}");
    let slos: Api<ServiceLevelObjective> = Api::namespaced(cluster.client(), &namespace.name);
    let slo = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective", "metadata": {"name": "checkout"},
        "spec": {
            "service": "checkout", "objective": 99, "window": "30d",
            "sli": {"ratio": {"errors": "http_requests_total{job=\"shop\",code=\"500\"}", "total": "http_requests_total{job=\"shop\"}"}},
            "output": {"kind": "ConfigMap"},
            "prometheus": {"url": url},
        },
    });
    slos.patch(
        "checkout",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&slo),
    )
    .await?;

    // Prometheus is not up yet: a condition says so, the rules are still written.
    let (reason, message) = eventually(
        "BudgetKnown=False while Prometheus is down",
        Duration::from_secs(30),
        || {
            let slos = slos.clone();
            async move {
                Ok(condition(&slos.get("checkout").await?, BUDGET_KNOWN)
                    .filter(|c| c.0 == "False")
                    .map(|c| (c.1, c.2)))
            }
        },
    )
    .await?;
    assert_eq!(reason, PROMETHEUS_UNREACHABLE, "{message}");
    let ready = condition(&slos.get("checkout").await?, "Ready").expect("Ready");
    assert_eq!(ready.0, "True", "{ready:?}");

    // Prometheus loads the rule file the operator wrote into the ConfigMap.
    let prometheus =
        Prometheus::start_on(cluster.dir(), "shop", &exporter.address, prometheus_port).await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client(), &namespace.name);
    let rules = configmaps.get("checkout-slo-rules").await?;
    let file = rules
        .data
        .and_then(|d| d.get("checkout.rules.yaml").cloned())
        .expect("the rule file");
    std::fs::write(prometheus.rules_dir.join("checkout.rules.yaml"), file)?;
    prometheus.reload().await?;
    let groups = prometheus.api("rules").await?;
    let loaded: Vec<&str> = groups["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(loaded.len(), 3, "{loaded:?}");
    assert!(
        loaded
            .iter()
            .all(|g| g.starts_with(&format!("vigil-slo:{}/checkout:", namespace.name))),
        "{loaded:?}"
    );

    // The budget needs the first 5-minute step of the window after the rates exist: up to
    // five minutes and a half.
    let budget = eventually(
        "the error budget in status",
        Duration::from_secs(400),
        || {
            let slos = slos.clone();
            async move {
                Ok(slos
                    .get("checkout")
                    .await?
                    .status
                    .and_then(|s| s.error_budget_remaining))
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\nprometheus:\n{}", prometheus.log_tail()))?;
    let shown: f64 = budget.trim_end_matches('%').parse()?;
    assert!((shown - 75.0).abs() <= 0.1, "budget {budget}, by hand 75%");
    // The burn rate over the last hour, by hand: 0.0025 / 0.01 = 0.25.
    let burn = slos
        .get("checkout")
        .await?
        .status
        .and_then(|s| s.burn_rate)
        .unwrap_or_default();
    assert_eq!(burn, "0.25");
    let known = condition(&slos.get("checkout").await?, BUDGET_KNOWN).expect(BUDGET_KNOWN);
    assert_eq!(known.0, "True", "{known:?}");
    // `vigil status` reads the same figures, judged: healthy at a 0.25x burn.
    let (code, json, err) = vigil_e2e::operator::vigil_cli(
        cluster.kubeconfig(),
        "status",
        &["-n", &namespace.name, "-o", "json"],
    )?;
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&json)?;
    let row = rows
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "checkout")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (row["severity"].as_str(), row["state"].as_str()),
        (Some("Ok"), Some("Healthy")),
        "{row}"
    );
    let detail = row["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("budget 7") && detail.contains("% left, burn rate 0.25×"),
        "{detail}"
    );

    // A steady 0.25x burn fires no alert.
    let alerts = prometheus.api("alerts").await?;
    assert_eq!(
        alerts["data"]["alerts"].as_array().map(Vec::len),
        Some(0),
        "{alerts}"
    );
    Ok(())
}

/// Where the Prometheus Operator's CRD is served, the rules are a PrometheusRule.
#[tokio::test]
async fn with_the_prometheus_operator_the_rules_are_a_prometheus_rule() {
    let cluster = TestCluster::start("promop").await.expect("cluster");
    prometheus_rule_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn prometheus_rule_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    // The PrometheusRule CRD as the Prometheus Operator serves it (schema left open here).
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client());
    let crd: CustomResourceDefinition = serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "prometheusrules.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com", "scope": "Namespaced",
            "names": {"kind": "PrometheusRule", "plural": "prometheusrules", "singular": "prometheusrule", "listKind": "PrometheusRuleList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
    }))?;
    crds.patch(
        "prometheusrules.monitoring.coreos.com",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&crd),
    )
    .await?;
    eventually(
        "the PrometheusRule API is served",
        Duration::from_secs(30),
        || {
            let client = cluster.client();
            async move {
                Ok(client
                    .list_api_group_resources("monitoring.coreos.com/v1")
                    .await
                    .ok()
                    .filter(|l| l.resources.iter().any(|r| r.kind == "PrometheusRule"))
                    .map(|_| ()))
            }
        },
    )
    .await?;
    let namespace = cluster.namespace("shop").await?;
    let _operator = Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-promop", &[])?;
    let slos: Api<ServiceLevelObjective> = Api::namespaced(cluster.client(), &namespace.name);
    let slo = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective", "metadata": {"name": "checkout"},
        "spec": {
            "service": "checkout", "objective": 99.9,
            "sli": {"ratio": {"errors": "http_requests_total{code=\"500\"}", "total": "http_requests_total"}},
            "output": {"kind": "PrometheusRule", "labels": {"prometheus": "main"}},
        },
    });
    slos.patch(
        "checkout",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&slo),
    )
    .await?;
    let (reason, message) = eventually(RULES_GENERATED, Duration::from_secs(30), || {
        let slos = slos.clone();
        async move {
            Ok(condition(&slos.get("checkout").await?, RULES_GENERATED)
                .filter(|c| c.0 == "True")
                .map(|c| (c.1, c.2)))
        }
    })
    .await?;
    assert_eq!(reason, "PrometheusRule", "{message}");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "PrometheusRule",
    ));
    let rules: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), &namespace.name, &resource);
    let rule = rules.get("checkout-slo-rules").await?;
    assert_eq!(
        rule.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("prometheus"))
            .map(String::as_str),
        Some("main")
    );
    let groups = rule.data["spec"]["groups"].as_array().map(Vec::len);
    assert_eq!(groups, Some(3), "{}", rule.data);
    Ok(())
}

/// A change the API server accepts but the operator refuses (PromQL that does not parse)
/// is reported in `Ready` and as an Event, and the last good rules stay in place.
#[tokio::test]
async fn a_bad_update_is_reported_and_the_last_good_rules_stay() {
    let cluster = TestCluster::start("badslo").await.expect("cluster");
    bad_update_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn bad_update_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    use k8s_openapi::api::events::v1::Event;
    let (_operator, namespace, slos, configmaps, good) =
        with_rule_file(cluster, "vigil-badslo").await?;
    slos.patch(
        "checkout",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&checkout_slo("http_requests_total{code=\"500\"")),
    )
    .await?;
    let (reason, message) = eventually("Ready=False", Duration::from_secs(30), || {
        let slos = slos.clone();
        async move {
            Ok(condition(&slos.get("checkout").await?, "Ready")
                .filter(|c| c.0 == "False")
                .map(|c| (c.1, c.2)))
        }
    })
    .await?;
    assert_eq!(reason, "InvalidSpec");
    assert!(
        message.contains("spec.sli.ratio.errors: unexpected end of input inside braces"),
        "{message}"
    );
    let events: Api<Event> = Api::namespaced(cluster.client(), &namespace.name);
    eventually("an InvalidSpec Event", Duration::from_secs(30), || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await?;
            Ok(list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("InvalidSpec") && e.type_.as_deref() == Some("Warning")
            }))
        }
    })
    .await?;
    let kept = configmaps.get("checkout-slo-rules").await?.data;
    assert_eq!(kept, Some(good), "the last good rules are kept");
    Ok(())
}

/// The rule file is a child Vigil watches: deleted, or edited by someone else, it is
/// written again at once. Without Prometheus the SLO is requeued only every 5 minutes, so
/// a repair within 30 s is the watch's doing.
#[tokio::test]
async fn a_deleted_or_edited_rule_file_is_repaired_at_once() {
    let cluster = TestCluster::start("sloheal").await.expect("cluster");
    heal_scenario(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn heal_scenario(cluster: &TestCluster) -> anyhow::Result<()> {
    let (operator, _namespace, _, configmaps, good) =
        with_rule_file(cluster, "vigil-sloheal").await?;
    let rules = || rule_file(configmaps.clone());

    configmaps
        .delete("checkout-slo-rules", &Default::default())
        .await?;
    let deleted = std::time::Instant::now();
    let again = eventually(
        "the rule file written again",
        Duration::from_secs(30),
        rules,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "deleted rule file back in {:.2}s",
        deleted.elapsed().as_secs_f64()
    );
    assert_eq!(again, good);

    let edit = serde_json::json!({"data": {"checkout.rules.yaml": "groups: []\n"}});
    configmaps
        .patch(
            "checkout-slo-rules",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&edit),
        )
        .await?;
    let edited = std::time::Instant::now();
    eventually("the edit undone", Duration::from_secs(30), || async {
        Ok(rules().await?.filter(|data| *data == good).map(|_| ()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    eprintln!(
        "edited rule file restored in {:.2}s",
        edited.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The SLO `checkout` (rule file output) with `errors` as its error series.
fn checkout_slo(errors: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective", "metadata": {"name": "checkout"},
        "spec": {"service": "checkout", "objective": 99.9, "output": {"kind": "ConfigMap"},
            "sli": {"ratio": {"errors": errors, "total": "http_requests_total"}}},
    })
}

/// The CRDs, an operator named `identity`, a namespace, and in it the SLO `checkout`
/// with its rule file written: the operator, the namespace, the APIs and the rule file.
async fn with_rule_file(
    cluster: &TestCluster,
    identity: &str,
) -> anyhow::Result<(
    Operator,
    vigil_e2e::TempNamespace,
    Api<ServiceLevelObjective>,
    Api<ConfigMap>,
    std::collections::BTreeMap<String, String>,
)> {
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    let namespace = cluster.namespace("shop").await?;
    let operator = Operator::start(cluster.kubeconfig(), cluster.dir(), identity, &[])?;
    let slos: Api<ServiceLevelObjective> = Api::namespaced(cluster.client(), &namespace.name);
    slos.patch(
        "checkout",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&checkout_slo("http_requests_total{code=\"500\"}")),
    )
    .await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client(), &namespace.name);
    let good = eventually("the rules ConfigMap", Duration::from_secs(30), || {
        rule_file(configmaps.clone())
    })
    .await?;
    Ok((operator, namespace, slos, configmaps, good))
}

/// The data of the rule file `checkout-slo-rules`, if it exists.
async fn rule_file(
    configmaps: Api<ConfigMap>,
) -> anyhow::Result<Option<std::collections::BTreeMap<String, String>>> {
    Ok(configmaps
        .get_opt("checkout-slo-rules")
        .await?
        .and_then(|c| c.data))
}
