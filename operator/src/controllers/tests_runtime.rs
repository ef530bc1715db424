//! Tests of the shared runtime against a mocked API server (the tower-test pattern): the
//! requests it sends, the writes it does not send, panics caught and counted, backoff.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::{DeserializeGuard, DynamicObject, ObjectMeta};
use kube::runtime::controller::Action;
use kube::{Client, CustomResource, Resource as _, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::mock::{context, mock_api, not_found};
use super::status::{HasStatus, condition, next_status, update_status};
use super::{Context, Error, Reconcile, apply, drive, error_policy};
use crate::api::common::{conditions_schema, impl_has_conditions};
use crate::api::{MemberCluster, MemberClusterSpec, MemberClusterStatus, Provider};
use crate::metrics::{ControllerLabels, ErrorLabels};

fn member(name: &str) -> MemberCluster {
    let mut member = MemberCluster::new(
        name,
        MemberClusterSpec {
            provider: Provider::Aws,
            region: "eu-west-1".into(),
            local: true,
            api_server: None,
            dns: Default::default(),
            probe_interval: "30s".into(),
        },
    );
    member.metadata.uid = Some("4c1f0000-0000-0000-0000-000000000001".into());
    member.metadata.generation = Some(3);
    member
}

fn ready(message: &str) -> MemberClusterStatus {
    MemberClusterStatus {
        conditions: vec![condition("Ready", Some(true), "Reachable", message)],
        ..Default::default()
    }
}

fn t0() -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("timestamp"))
}

fn coredns_custom() -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "coredns-custom", "namespace": "kube-system"},
        "data": {"vigil.server": "clusterset.local:53 {}"},
    }))
    .expect("a ConfigMap")
}

#[tokio::test]
async fn apply_sends_one_server_side_apply_with_owner_and_label() {
    let (client, log) = mock_api(|r| {
        if r.method == Method::GET {
            not_found()
        } else {
            (StatusCode::OK, r.body.clone())
        }
    });
    let owner = member("aws");
    apply::apply_owned(&client, &owner, coredns_custom())
        .await
        .expect("applied");

    let log = log.lock().expect("log");
    assert_eq!(log.len(), 2, "a read, then one write: {log:?}");
    assert_eq!(log[0].method, Method::GET);
    let request = &log[1];
    assert_eq!(request.method, Method::PATCH);
    assert!(
        request
            .uri
            .starts_with("/api/v1/namespaces/kube-system/configmaps/coredns-custom?"),
        "{}",
        request.uri
    );
    assert!(
        request.uri.contains("fieldManager=vigil"),
        "{}",
        request.uri
    );
    assert!(request.uri.contains("force=true"), "{}", request.uri);
    assert_eq!(request.content_type, "application/apply-patch+yaml");
    assert_eq!(
        request.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "vigil"
    );
    let reference = &request.body["metadata"]["ownerReferences"][0];
    assert_eq!(reference["kind"], "MemberCluster");
    assert_eq!(reference["name"], "aws");
    assert_eq!(reference["uid"], "4c1f0000-0000-0000-0000-000000000001");
    assert_eq!(reference["controller"], true);
    assert_eq!(
        request.body["data"]["vigil.server"],
        "clusterset.local:53 {}"
    );
}

#[tokio::test]
async fn an_object_that_holds_every_rendered_field_is_not_written() {
    let owner = member("aws");
    let mut current = coredns_custom();
    apply::own(&owner, &mut current);
    current
        .labels_mut()
        .insert("added-by-someone".into(), "else".into());
    let existing = serde_json::to_value(&current).expect("encode");
    let (client, log) = mock_api(move |_| (StatusCode::OK, existing.clone()));
    apply::apply_owned(&client, &owner, coredns_custom())
        .await
        .expect("no error");
    let log = log.lock().expect("log");
    assert_eq!(log.len(), 1, "only the read: {log:?}");
    assert_eq!(log[0].method, Method::GET);
}

#[tokio::test]
async fn an_unchanged_status_is_not_written() {
    let (client, log) = mock_api(|_| (StatusCode::INTERNAL_SERVER_ERROR, json!({})));
    let mut object = member("aws");
    object.status = next_status(&object, ready("up"), t0());
    let written = update_status(&client, &object, ready("up"))
        .await
        .expect("no error");
    assert!(!written);
    assert!(
        log.lock().expect("log").is_empty(),
        "no request may be sent"
    );
}

#[tokio::test]
async fn a_changed_status_is_applied_to_the_status_subresource() {
    let (client, log) = mock_api(|r| {
        let mut object = serde_json::to_value(member("aws")).expect("encode");
        object["status"] = r.body["status"].clone();
        (StatusCode::OK, object)
    });
    let mut object = member("aws");
    object.status = next_status(&object, ready("up"), t0());
    let down = MemberClusterStatus {
        conditions: vec![condition(
            "Ready",
            Some(false),
            "ApiUnreachable",
            "connection refused",
        )],
        ..Default::default()
    };
    assert!(
        update_status(&client, &object, down)
            .await
            .expect("written")
    );

    let log = log.lock().expect("log");
    assert_eq!(log.len(), 1);
    let request = &log[0];
    assert_eq!(request.method, Method::PATCH);
    assert!(
        request
            .uri
            .starts_with("/apis/vigil.io/v1alpha1/memberclusters/aws/status?"),
        "{}",
        request.uri
    );
    assert!(request.uri.contains("fieldManager=vigil"));
    let status = &request.body["status"];
    assert_eq!(status["observedGeneration"], 3);
    assert_eq!(status["conditions"][0]["reason"], "ApiUnreachable");
    assert_eq!(status["conditions"][0]["observedGeneration"], 3);
    assert_ne!(
        status["conditions"][0]["lastTransitionTime"],
        serde_json::to_value(t0()).expect("time"),
        "a flipped condition gets a new transition time"
    );
}

/// A kind whose reconcile panics, to test the task boundary.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "test.vigil.io",
    version = "v1",
    kind = "Boom",
    status = "BoomStatus"
)]
struct BoomSpec {
    fuse: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct BoomStatus {
    observed_generation: Option<i64>,
    #[schemars(schema_with = "conditions_schema")]
    conditions: Vec<Condition>,
}

impl_has_conditions!(BoomStatus);

impl HasStatus for Boom {
    type Status = BoomStatus;
    fn status(&self) -> Option<&BoomStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: &Client) -> kube::Api<Self> {
        kube::Api::all(client.clone())
    }
}

impl crate::api::References for Boom {}

impl Reconcile for Boom {
    async fn reconcile(self: Arc<Self>, _: Arc<Context>) -> Result<Action, Error> {
        tokio::task::yield_now().await;
        let fuses: Vec<u32> = Vec::new();
        Ok(Action::requeue(Duration::from_secs(u64::from(
            fuses[self.spec.fuse as usize],
        ))))
    }
}

#[tokio::test]
async fn a_panicking_reconcile_is_caught_counted_reported_and_backed_off() {
    let (client, log) = mock_api(|r| {
        if r.uri.contains("/booms/bomb/status") {
            let mut bomb =
                serde_json::to_value(Boom::new("bomb", BoomSpec { fuse: 2 })).expect("encode");
            bomb["status"] = r.body["status"].clone();
            (StatusCode::OK, bomb)
        } else {
            (StatusCode::CREATED, r.body.clone())
        }
    });
    let ctx = context(client);
    let mut bomb = Boom::new("bomb", BoomSpec { fuse: 2 });
    bomb.metadata = ObjectMeta {
        name: Some("bomb".into()),
        uid: Some("b0-0b".into()),
        generation: Some(1),
        ..Default::default()
    };
    let object = Arc::new(DeserializeGuard(Ok(bomb)));

    let error = drive(object.clone(), ctx.clone())
        .await
        .expect_err("the panic becomes an error");
    assert!(
        matches!(&error, Error::Panicked { message, .. } if message.contains("index out of bounds")),
        "{error}"
    );
    assert_eq!(error.reason(), "ReconcilePanicked");

    let controller = ControllerLabels {
        controller: "Boom".into(),
    };
    assert_eq!(
        ctx.metrics
            .reconcile_panics
            .get_or_create(&controller)
            .get(),
        1
    );
    let errors = ErrorLabels {
        controller: "Boom".into(),
        reason: "ReconcilePanicked".into(),
    };
    assert_eq!(ctx.metrics.reconcile_errors.get_or_create(&errors).get(), 1);
    assert!(
        ctx.metrics
            .encode()
            .contains("vigil_reconcile_panics_total{controller=\"Boom\"} 1")
    );

    let log = log.lock().expect("log").clone();
    let status = log
        .iter()
        .find(|r| r.uri.contains("/booms/bomb/status"))
        .expect("a status write");
    assert_eq!(status.body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(
        status.body["status"]["conditions"][0]["reason"],
        "ReconcilePanicked"
    );
    let event = log
        .iter()
        .find(|r| r.uri.contains("/events"))
        .unwrap_or_else(|| panic!("an Event: {log:?}"));
    assert_eq!(event.body["reason"], "ReconcilePanicked");
    assert_eq!(event.body["type"], "Warning");

    // The operator is still here, and the object is retried with a growing delay.
    assert_eq!(
        error_policy(object.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(object.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    assert_eq!(
        error_policy(object, &error, ctx),
        Action::requeue(Duration::from_secs(20))
    );
}

#[tokio::test]
async fn a_repeated_event_counts_in_its_series_and_a_new_note_is_a_new_event() {
    let (client, log) = mock_api(|r| {
        if r.method == Method::PATCH && r.uri.contains("/events/gone.") {
            return not_found();
        }
        (StatusCode::OK, r.body.clone())
    });
    let recorder = super::events::Recorder::new(client, "vigil", "vigil-0");
    let mut shop = member("shop").object_ref(&());
    shop.namespace = Some("fleet".into());
    let warn = kube::runtime::events::EventType::Warning;
    for note in [
        "cannot reach it",
        "cannot reach it",
        "cannot reach it",
        "it is back",
    ] {
        recorder
            .publish(warn, "Unreachable", note, &shop)
            .await
            .expect("published");
    }
    let log = log.lock().expect("log").clone();
    let calls: Vec<(Method, &str)> = log
        .iter()
        .map(|r| (r.method.clone(), r.uri.as_str()))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|(_, uri)| uri.starts_with("/apis/events.k8s.io/v1/namespaces/fleet/events"))
    );
    assert_eq!(
        calls.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(),
        [Method::POST, Method::PATCH, Method::PATCH, Method::POST]
    );
    let first = &log[0].body;
    assert_eq!(first["reason"], "Unreachable");
    assert_eq!(first["note"], "cannot reach it");
    assert_eq!(first["type"], "Warning");
    assert_eq!(first["action"], "Reconcile");
    assert_eq!(first["reportingController"], "vigil");
    assert_eq!(first["reportingInstance"], "vigil-0");
    assert_eq!(first["regarding"]["name"], "shop");
    let name = first["metadata"]["name"].as_str().expect("a name");
    assert!(
        log[1].uri.contains(&format!("/events/{name}?")),
        "{}",
        log[1].uri
    );
    assert_eq!(log[1].content_type, "application/merge-patch+json");
    // Only the series is sent: the note and the rest stay as created.
    assert_eq!(
        log[1].body.as_object().map(|o| o.len()),
        Some(1),
        "{}",
        log[1].body
    );
    assert_eq!(log[1].body["series"]["count"], 2);
    assert_eq!(log[2].body["series"]["count"], 3);
    assert!(log[2].body["series"]["lastObservedTime"].is_string());
    assert_eq!(log[3].body["note"], "it is back");
    assert_eq!(recorder.remembered(), 2);

    // An Event the API server no longer has starts a new one.
    let (client, log) = mock_api(|r| {
        if r.method == Method::PATCH {
            return not_found();
        }
        (StatusCode::OK, r.body.clone())
    });
    let recorder = super::events::Recorder::new(client, "vigil", "vigil-0");
    for _ in 0..2 {
        recorder
            .publish(warn, "Unreachable", "cannot reach it", &shop)
            .await
            .expect("published");
    }
    let methods: Vec<Method> = log
        .lock()
        .expect("log")
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, [Method::POST, Method::PATCH, Method::POST]);
}

#[tokio::test]
async fn the_recorder_remembers_a_bounded_number_of_events() {
    let (client, _log) = mock_api(|r| (StatusCode::OK, r.body.clone()));
    let recorder = super::events::Recorder::new(client, "vigil", "vigil-0");
    let shop = member("shop").object_ref(&());
    let normal = kube::runtime::events::EventType::Normal;
    for n in 0..super::events::REMEMBERED + 10 {
        recorder
            .publish(normal, "RulesGenerated", &format!("{n} rules"), &shop)
            .await
            .expect("published");
    }
    assert_eq!(recorder.remembered(), super::events::REMEMBERED);
}
