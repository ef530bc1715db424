//! A mocked API server for tests of controllers (the tower-test pattern): it records every
//! request (method, path and query, content type, body) and answers as the test says.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

use super::{Backoff, Context, Stores};
use crate::api::MemberCluster;
use crate::metrics::Metrics;

/// One request.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The HTTP method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// The Content-Type header.
    pub content_type: String,
    /// The body, decoded from JSON or YAML (`null` when empty).
    pub body: Value,
}

/// Every request, in order.
pub type Log = Arc<Mutex<Vec<Recorded>>>;

/// A mocked API server that records every request and answers with `respond`.
pub fn mock_api(
    respond: impl Fn(&Recorded) -> (StatusCode, Value) + Send + 'static,
) -> (Client, Log) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .or_else(|_| serde_yaml_ng::from_slice(&bytes))
                    .expect("JSON or YAML body")
            };
            let recorded = Recorded {
                method: parts.method,
                uri: parts.uri.to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap_or_default().to_owned())
                    .unwrap_or_default(),
                body,
            };
            let (status, answer) = respond(&recorded);
            seen.lock().expect("log").push(recorded);
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).expect("encode")))
                .expect("response");
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), log)
}

/// The method and path (without the query) of each call, in order.
pub fn calls(log: &Log) -> Vec<(Method, String)> {
    log.lock()
        .expect("log")
        .iter()
        .map(|r| {
            let path = r.uri.split('?').next().unwrap_or_default().to_owned();
            (r.method.clone(), path)
        })
        .collect()
}

/// One expected call, as [`calls`] lists it.
pub fn call(method: Method, path: &str) -> (Method, String) {
    (method, path.to_owned())
}

/// The API server's 404.
pub fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// A context on `client` with empty stores and no Prometheus.
pub fn context(client: Client) -> Arc<Context> {
    context_with(client, Vec::new())
}

/// A context on `client` whose store of MemberClusters holds `members`.
pub fn context_with(client: Client, members: Vec<MemberCluster>) -> Arc<Context> {
    let (member_clusters, mut writer) = reflector::store();
    for member in members {
        writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(member))));
    }
    Arc::new(Context {
        discovery: super::Discovery::new(client.clone()),
        recorder: super::events::Recorder::new(client.clone(), "vigil", "vigil-test"),
        client,
        metrics: Arc::new(Metrics::new()),
        stores: Stores {
            acme_certificates: reflector::store().0,
            acme_issuers: reflector::store().0,
            cross_cloud_dns: reflector::store().0,
            member_clusters,
            service_level_objectives: reflector::store().0,
            telemetry_pipelines: reflector::store().0,
            // The stores are filled before use: nothing to wait for.
            synced: Arc::from([]),
        },
        namespace: "vigil-system".into(),
        backoff: Backoff::new(Duration::from_secs(5), Duration::from_secs(300)),
        concurrency: 8,
        prometheus_url: None,
        status_interval: Duration::from_secs(60),
        acme: super::acme_issuer::AcmeRuntime::new(
            Duration::from_secs(3600),
            Duration::from_secs(32 * 3600),
        ),
        dns: super::cross_cloud_dns::DnsRuntime::default(),
        workloads: super::supervised_workload::WorkloadRuntime::default(),
        member_clients: super::member_cluster::MemberClients::default(),
    })
}

/// A resolver on loopback that answers every query (an empty NOERROR).
pub async fn resolver() -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a UDP port");
    let address = socket.local_addr().expect("its address").to_string();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buffer).await {
            if let Ok(mut reply) = hickory_proto::op::Message::from_vec(&buffer[..n]) {
                reply.metadata.message_type = hickory_proto::op::MessageType::Response;
                let _ = socket.send_to(&reply.to_vec().expect("encode"), from).await;
            }
        }
    });
    address
}

/// A port on loopback where nothing listens: a probe is refused at once.
pub fn silent() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
    socket.local_addr().expect("its address").to_string()
}
