//! The SLO controller against a mocked API server: every call of a reconcile, in order,
//! on the first reconcile, on a resync with nothing to do, and when a write fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::api::ServiceLevelObjective;
use crate::controllers::mock::{Log, Recorded, call, calls, context, mock_api, not_found};
use crate::controllers::{Error, Reconcile};

/// The first SLO of the example: 30 days, page and ticket, a PrometheusRule asked for.
fn checkout() -> ServiceLevelObjective {
    let text = include_str!("../../../../examples/slo/checkout-availability.yaml");
    let first = text.split("\n---\n").next().expect("a document");
    let mut slo: ServiceLevelObjective = serde_yaml_ng::from_str(first).expect("the example");
    slo.metadata.uid = Some("5e0a0000-0000-0000-0000-000000000001".into());
    slo.metadata.generation = Some(2);
    slo
}

const DISCOVERY: &str = "/apis/monitoring.coreos.com/v1";
const RULES: &str = "/api/v1/namespaces/shop/configmaps/checkout-availability-slo-rules";
const STATUS: &str =
    "/apis/vigil.io/v1alpha1/namespaces/shop/servicelevelobjectives/checkout-availability/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/shop/events";

/// An API server without the Prometheus Operator that keeps the ConfigMap it is given.
fn cluster(fail_apply: bool) -> (kube::Client, Log, Arc<Mutex<Option<Value>>>) {
    let kept: Arc<Mutex<Option<Value>>> = Arc::default();
    let held = kept.clone();
    let (client, log) = mock_api(move |r: &Recorded| {
        let path = r.uri.split('?').next().unwrap_or_default();
        let mut kept = held.lock().expect("kept");
        match (&r.method, path) {
            (&Method::GET, DISCOVERY) => not_found(),
            (&Method::GET, RULES) => kept.clone().map_or_else(not_found, |v| (StatusCode::OK, v)),
            (&Method::PATCH, RULES) if fail_apply => (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500, "message": "etcdserver: request timed out"}),
            ),
            (&Method::PATCH, RULES) => {
                let mut applied = r.body.clone();
                applied["metadata"]["resourceVersion"] = json!("7");
                *kept = Some(applied.clone());
                (StatusCode::OK, applied)
            }
            (&Method::PATCH, STATUS) => {
                let mut slo = serde_json::to_value(checkout()).expect("encode");
                slo["status"] = r.body["status"].clone();
                (StatusCode::OK, slo)
            }
            (&Method::POST, EVENTS) => (StatusCode::CREATED, r.body.clone()),
            _ => not_found(),
        }
    });
    (client, log, kept)
}

#[tokio::test]
async fn the_first_reconcile_applies_the_rules_reports_and_tells_once() {
    let (client, log, _) = cluster(false);
    let ctx = context(client);
    let action = Arc::new(checkout())
        .reconcile(ctx)
        .await
        .expect("reconciled");

    assert_eq!(
        calls(&log),
        vec![
            call(Method::GET, DISCOVERY),
            call(Method::GET, RULES),
            call(Method::PATCH, RULES),
            call(Method::PATCH, STATUS),
            call(Method::POST, EVENTS),
        ]
    );
    let log = log.lock().expect("log");
    // The rule file, server-side applied under Vigil's field manager, owned by the SLO.
    assert!(log[2].uri.contains("fieldManager=vigil"), "{}", log[2].uri);
    let rules = &log[2].body;
    assert_eq!(
        rules["metadata"]["ownerReferences"][0]["kind"],
        "ServiceLevelObjective"
    );
    let file = rules["data"]["checkout-availability.rules.yaml"]
        .as_str()
        .expect("the rule file");
    assert!(
        file.contains("record: vigil:slo_error_budget_remaining"),
        "{file}"
    );
    // The status: Ready, the fallback said, no Prometheus to ask.
    let conditions = &log[3].body["status"]["conditions"];
    assert_eq!(conditions[0]["type"], "Ready");
    assert_eq!(conditions[0]["reason"], "RulesApplied");
    assert_eq!(conditions[1]["reason"], "ConfigMap");
    assert!(
        conditions[1]["message"].as_str().is_some_and(
            |m| m.contains("PrometheusRule CRD of the Prometheus Operator is not installed")
        ),
        "{conditions}"
    );
    assert_eq!(conditions[2]["status"], "Unknown");
    assert_eq!(conditions[2]["reason"], "NoPrometheus");
    assert_eq!(log[3].body["status"]["observedGeneration"], 2);
    // One Event.
    assert_eq!(log[4].body["reason"], "RulesGenerated");
    assert_eq!(log[4].body["type"], "Normal");
    let note = log[4].body["note"].as_str().unwrap_or_default();
    assert!(
        note.ends_with("rules applied to ConfigMap shop/checkout-availability-slo-rules"),
        "{note}"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
}

#[tokio::test]
async fn a_resync_with_nothing_changed_reads_and_writes_nothing() {
    let (client, log, _) = cluster(false);
    let ctx = context(client);
    Arc::new(checkout())
        .reconcile(ctx.clone())
        .await
        .expect("first");
    let status = log.lock().expect("log")[3].body["status"].clone();
    let mut applied = checkout();
    applied.status = Some(serde_json::from_value(status).expect("a status"));
    log.lock().expect("log").clear();

    Arc::new(applied).reconcile(ctx).await.expect("resync");
    // Discovery is cached; the rule file is read and found whole; no status, no Event.
    assert_eq!(calls(&log), vec![call(Method::GET, RULES)]);
}

#[tokio::test]
async fn a_failed_apply_is_an_error_and_leaves_the_status_alone() {
    let (client, log, kept) = cluster(true);
    let error = Arc::new(checkout())
        .reconcile(context(client))
        .await
        .expect_err("the apply fails");
    assert!(matches!(error, Error::Kube(_)), "{error:?}");
    assert_eq!(error.reason(), "KubernetesApiError");
    assert_eq!(
        calls(&log),
        vec![
            call(Method::GET, DISCOVERY),
            call(Method::GET, RULES),
            call(Method::PATCH, RULES),
        ]
    );
    assert!(kept.lock().expect("kept").is_none());
}

#[tokio::test]
async fn an_invalid_spec_calls_nothing_and_names_the_field() {
    let (client, log, _) = cluster(false);
    let mut slo = checkout();
    if let Some(ratio) = slo.spec.sli.ratio.as_mut() {
        ratio.errors = "http_requests_total{code=~\"5..\"".into();
    }
    let error = Arc::new(slo)
        .reconcile(context(client))
        .await
        .expect_err("invalid");
    assert_eq!(error.reason(), "InvalidSpec");
    assert!(
        error.to_string().contains("spec.sli.ratio.errors"),
        "{error}"
    );
    assert!(calls(&log).is_empty(), "{:?}", calls(&log));
}
