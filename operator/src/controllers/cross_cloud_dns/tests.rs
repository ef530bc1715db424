//! The CrossCloudDNS controller against a mocked API server and a real (loopback) resolver:
//! every call of a reconcile, in order, on the first reconcile, on a resync with nothing to
//! do, when the member cluster refuses the write, and when a resolver stops answering.

use std::sync::Arc;

use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::api::{CrossCloudDNS, CrossCloudDNSStatus, MemberCluster};
use crate::controllers::Reconcile;
use crate::controllers::mock::{
    Log, Recorded, context_with, mock_api, not_found, resolver, silent,
};

const OBJECT: &str = "/apis/vigil.io/v1alpha1/crossclouddnses/mesh";
const STATUS: &str = "/apis/vigil.io/v1alpha1/crossclouddnses/mesh/status";
const IMPORT: &str = "/api/v1/namespaces/kube-system/configmaps/coredns-custom";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// The local cluster `east`, whose resolver is at `endpoint`.
fn east(endpoint: &str) -> MemberCluster {
    serde_json::from_value(json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "east"},
        "spec": {"provider": "aws", "region": "us-east-1", "local": true,
                 "dns": {"endpoints": [endpoint], "clusterDomain": "cluster.local"}},
    }))
    .expect("a MemberCluster")
}

fn mesh(status: Option<&CrossCloudDNSStatus>) -> CrossCloudDNS {
    let mut dns: CrossCloudDNS = serde_json::from_value(json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS",
        "metadata": {"name": "mesh", "uid": "d0d00000-0000-0000-0000-000000000001", "generation": 1},
        "spec": {"clusters": ["east"], "zone": "clusterset.local"},
    }))
    .expect("a CrossCloudDNS");
    if status.is_some() {
        dns.metadata.finalizers = Some(vec![super::FINALIZER.into()]);
        dns.status = status.cloned();
    }
    dns
}

/// The method and path (without the query) of each call.
fn calls(log: &Log) -> Vec<(Method, &'static str)> {
    log.lock()
        .expect("log")
        .iter()
        .map(|r| {
            let path = r.uri.split('?').next().unwrap_or_default();
            let known = [OBJECT, STATUS, IMPORT, EVENTS]
                .into_iter()
                .find(|p| *p == path)
                .unwrap_or_else(|| panic!("an unexpected call: {} {}", r.method, r.uri));
            (r.method.clone(), known)
        })
        .collect()
}

/// An API server holding `mesh` and, once written, the import ConfigMap; `refuse` makes the
/// ConfigMap's write fail as a member cluster without the right would.
fn cluster(refuse: bool) -> (kube::Client, Log, Arc<std::sync::Mutex<Option<Value>>>) {
    let kept: Arc<std::sync::Mutex<Option<Value>>> = Arc::default();
    let held = kept.clone();
    let (client, log) = mock_api(move |r: &Recorded| {
        let path = r.uri.split('?').next().unwrap_or_default();
        let mut kept = held.lock().expect("kept");
        match (&r.method, path) {
            (&Method::PATCH, OBJECT) => {
                let mut dns = serde_json::to_value(mesh(None)).expect("encode");
                dns["metadata"]["finalizers"] = json!([super::FINALIZER]);
                (StatusCode::OK, dns)
            }
            (&Method::GET, IMPORT) => kept.clone().map_or_else(not_found, |v| (StatusCode::OK, v)),
            (&Method::PATCH, IMPORT) if refuse => (
                StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                       "message": "configmaps \"coredns-custom\" is forbidden: User \"vigil\" cannot patch resource \"configmaps\" in the namespace \"kube-system\""}),
            ),
            (&Method::PATCH, IMPORT) => {
                *kept = Some(r.body.clone());
                (StatusCode::OK, r.body.clone())
            }
            (&Method::PATCH, STATUS) => {
                let mut dns = serde_json::to_value(mesh(None)).expect("encode");
                dns["status"] = r.body["status"].clone();
                (StatusCode::OK, dns)
            }
            (&Method::POST, EVENTS) => (StatusCode::CREATED, r.body.clone()),
            _ => not_found(),
        }
    });
    (client, log, kept)
}

fn status_of(log: &Log) -> CrossCloudDNSStatus {
    let log = log.lock().expect("log");
    let patch = log
        .iter()
        .rfind(|r| r.uri.starts_with(STATUS))
        .expect("a status write");
    serde_json::from_value(patch.body["status"].clone()).expect("a status")
}

#[tokio::test]
async fn the_first_reconcile_holds_the_object_writes_the_key_and_reports() {
    let (client, log, kept) = cluster(false);
    let ctx = context_with(client, vec![east(&resolver().await)]);
    let action = Arc::new(mesh(None))
        .reconcile(ctx)
        .await
        .expect("reconciled");

    assert_eq!(
        calls(&log),
        [
            (Method::PATCH, OBJECT),
            (Method::GET, IMPORT),
            (Method::PATCH, IMPORT),
            (Method::PATCH, STATUS),
        ]
    );
    {
        let log = log.lock().expect("log");
        // The finalizer, added only if the list is still empty.
        assert_eq!(log[0].body[0]["op"], "test");
        assert_eq!(log[0].body[1]["value"][0], super::FINALIZER);
        // The key, under the object's own field manager: the ConfigMap's other keys stay.
        assert!(
            log[2].uri.contains("fieldManager=vigil-dns-mesh"),
            "{}",
            log[2].uri
        );
    }
    let written = kept
        .lock()
        .expect("kept")
        .clone()
        .expect("the import ConfigMap");
    let server = written["data"]["mesh.server"].as_str().expect("the key");
    assert!(server.contains("clusterset.local"), "{server}");
    let status = status_of(&log);
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Applied")
    );
    assert!(
        ready.message.ends_with("; every resolver answers"),
        "{}",
        ready.message
    );
    let east = &status.clusters[0];
    assert!(
        east.resolver_healthy && east.in_failover && east.applied,
        "{east:?}"
    );
    assert_eq!(action, Action::requeue(super::PROBE_INTERVAL));
}

#[tokio::test]
async fn a_resync_with_nothing_changed_reads_the_key_and_writes_nothing() {
    let (client, log, _) = cluster(false);
    let ctx = context_with(client, vec![east(&resolver().await)]);
    Arc::new(mesh(None))
        .reconcile(ctx.clone())
        .await
        .expect("first");
    let status = status_of(&log);
    log.lock().expect("log").clear();

    Arc::new(mesh(Some(&status)))
        .reconcile(ctx)
        .await
        .expect("resync");
    assert_eq!(calls(&log), [(Method::GET, IMPORT)]);
}

#[tokio::test]
async fn a_refused_write_is_ready_false_naming_the_cluster_and_the_api_servers_words() {
    let (client, log, kept) = cluster(true);
    let ctx = context_with(client, vec![east(&resolver().await)]);
    let action = Arc::new(mesh(None))
        .reconcile(ctx)
        .await
        .expect("reported, not an error");

    assert_eq!(
        calls(&log),
        [
            (Method::PATCH, OBJECT),
            (Method::GET, IMPORT),
            (Method::PATCH, IMPORT),
            (Method::PATCH, STATUS),
        ]
    );
    assert!(kept.lock().expect("kept").is_none());
    let status = status_of(&log);
    let ready = &status.conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ApplyFailed")
    );
    assert!(
        ready.message.starts_with("not applied to east: API server of the local cluster: configmaps \"coredns-custom\" is forbidden"),
        "{}",
        ready.message
    );
    assert!(!status.clusters[0].applied);
    // Probed again soon: the next probe retries the write.
    assert_eq!(action, Action::requeue(super::PROBE_INTERVAL));
}

#[tokio::test]
async fn a_resolver_that_stops_answering_leaves_the_chain_after_two_probes_with_a_warning() {
    let (client, log, _) = cluster(false);
    let ctx = context_with(client, vec![east(&silent())]);
    let first = Arc::new(mesh(None));
    first.clone().reconcile(ctx.clone()).await.expect("first");
    let after_one = status_of(&log);
    // One failed probe: still in the chain, and no Event.
    assert!(!after_one.clusters[0].resolver_healthy);
    assert!(after_one.clusters[0].in_failover);
    assert!(!calls(&log).contains(&(Method::POST, EVENTS)));
    log.lock().expect("log").clear();

    Arc::new(mesh(Some(&after_one)))
        .reconcile(ctx)
        .await
        .expect("second");
    let after_two = status_of(&log);
    assert!(!after_two.clusters[0].in_failover, "{after_two:?}");
    let ready = &after_two.conditions[0];
    assert!(
        ready.message.ends_with("out of the failover chain: east"),
        "{}",
        ready.message
    );
    let log = log.lock().expect("log");
    let event = log
        .iter()
        .find(|r| r.method == Method::POST)
        .expect("an Event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "ClusterLeft");
    let note = event.body["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("east left the failover chain: DNS 127.0.0.1:"),
        "{note}"
    );
}
