//! The `MemberCluster` controller: probes each member's API server and DNS endpoints and
//! reports `ApiReachable`, `DnsReachable` and `Ready` with the Kubernetes version.
//!
//! Probe latency goes to a metric, not to the status: the status only changes when the
//! outcome does, so a healthy fleet causes no writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, Config, ResourceExt};

use super::status::{condition, condition_status, update_status};
use super::{Context, Error, Reconcile};
use crate::api::{MemberCluster, MemberClusterStatus, READY};
use crate::metrics::ProbeLabels;
use crate::validate::{Validate, parse_duration};

use crate::api::member_cluster::vocabulary::*;
pub use crate::api::member_cluster::vocabulary::{API_REACHABLE, DNS_REACHABLE};

/// How long one API probe may take.
const API_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a probe failed: a condition reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// CamelCase reason.
    pub reason: &'static str,
    /// What happened, for a person.
    pub message: String,
}

impl ProbeFailure {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl Reconcile for MemberCluster {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let errors = self.validate(&ctx.stores.references());
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let interval = parse_duration(&self.spec.probe_interval).unwrap_or(Duration::from_secs(30));
        let name = self.name_any();
        let api = observe(&ctx, &name, "api", probe_api(&self, &ctx)).await;
        let dns = observe(
            &ctx,
            &name,
            "dns",
            probe_dns(&self.spec.dns.endpoints, &self.spec.dns.cluster_domain),
        )
        .await;
        let status = member_status(&api, &dns);
        let was_ready = self
            .status
            .as_ref()
            .and_then(|s| condition_status(&s.conditions, READY))
            .map(str::to_owned);
        if update_status(&ctx.client, self.as_ref(), status.clone()).await? {
            announce(&self, &ctx, &status, was_ready.as_deref()).await;
        }
        Ok(Action::requeue(interval))
    }
}

/// Runs a probe and records its latency and result in the probe metric.
async fn observe<T>(
    ctx: &Context,
    cluster: &str,
    probe: &str,
    run: impl Future<Output = Result<T, ProbeFailure>>,
) -> Result<T, ProbeFailure> {
    let started = Instant::now();
    let result = run.await;
    let labels = ProbeLabels {
        cluster: cluster.to_owned(),
        probe: probe.to_owned(),
        result: if result.is_ok() { "success" } else { "failure" }.to_owned(),
    };
    ctx.metrics
        .probe_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Publishes an Event when `Ready` flips.
async fn announce(
    member: &MemberCluster,
    ctx: &Context,
    status: &MemberClusterStatus,
    was_ready: Option<&str>,
) {
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == READY) else {
        return;
    };
    if was_ready == Some(ready.status.as_str()) {
        return;
    }
    let type_ = if ready.status == "True" {
        EventType::Normal
    } else {
        EventType::Warning
    };
    ctx.publish(member, type_, &ready.reason, ready.message.clone())
        .await;
}

/// The status for the outcomes of both probes. Pure, so that it is tested without a cluster.
pub fn member_status(
    api: &Result<String, ProbeFailure>,
    dns: &Result<Option<usize>, ProbeFailure>,
) -> MemberClusterStatus {
    let api_condition = match api {
        Ok(version) => condition(
            API_REACHABLE,
            Some(true),
            REACHABLE,
            format!("API server answers, Kubernetes {version}"),
        ),
        Err(f) => condition(API_REACHABLE, Some(false), f.reason, f.message.clone()),
    };
    let dns_condition = match dns {
        Ok(Some(count)) => condition(
            DNS_REACHABLE,
            Some(true),
            REACHABLE,
            format!("all {count} DNS endpoints answer"),
        ),
        Ok(None) => condition(
            DNS_REACHABLE,
            None,
            NO_ENDPOINTS,
            "spec.dns.endpoints is empty: nothing to probe",
        ),
        Err(f) => condition(DNS_REACHABLE, Some(false), f.reason, f.message.clone()),
    };
    let failures: Vec<String> = [api.as_ref().err(), dns.as_ref().err()]
        .into_iter()
        .flatten()
        .map(|f| f.message.clone())
        .collect();
    let ready = match (api, dns) {
        (Ok(_), Ok(_)) => condition(
            READY,
            Some(true),
            REACHABLE,
            "the API server and DNS answer",
        ),
        (Err(f), _) | (Ok(_), Err(f)) => {
            condition(READY, Some(false), f.reason, failures.join("; "))
        }
    };
    MemberClusterStatus {
        observed_generation: None,
        conditions: vec![ready, api_condition, dns_condition],
        kubernetes_version: api.as_ref().ok().cloned(),
    }
}

/// Asks the member's API server for its version, with the kubeconfig from its Secret (or
/// the operator's own client for the local cluster).
async fn probe_api(member: &MemberCluster, ctx: &Context) -> Result<String, ProbeFailure> {
    let (client, server) = member_client(member, ctx).await?;
    match tokio::time::timeout(API_PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(info)) => Ok(info.git_version),
        Ok(Err(error)) => Err(ProbeFailure::new(
            API_UNREACHABLE,
            format!("API server {server}: {}", describe_kube_error(&error)),
        )),
        Err(_) => Err(ProbeFailure::new(
            API_TIMEOUT,
            format!(
                "API server {server} did not answer within {}s",
                API_PROBE_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A client of `member`'s API server (the operator's own for the local cluster), and a
/// description of the server for messages.
pub async fn member_client(
    member: &MemberCluster,
    ctx: &Context,
) -> Result<(Client, String), ProbeFailure> {
    match &member.spec.api_server {
        Some(api_server) => remote_client(ctx, &api_server.kubeconfig_secret_ref).await,
        None if member.spec.local => Ok((ctx.client.clone(), "of the local cluster".to_owned())),
        None => Err(ProbeFailure::new(
            NO_API_SERVER,
            "spec.apiServer is not set and the cluster is not local",
        )),
    }
}

/// A short, stable description of a client error: the innermost cause, which names the
/// address and what failed, without per-attempt details.
pub fn describe_kube_error(error: &kube::Error) -> String {
    // The API server's own words, without the debug dump of its Status.
    if let kube::Error::Api(status) = error {
        return format!("{} ({} {})", status.message, status.code, status.reason);
    }
    crate::error_chain::describe(error)
}

/// The clients of member clusters, each kept with the `resourceVersion` of the Secret it
/// was built from: reused (with its open connections) until the Secret changes, instead
/// of a new client, TLS configuration and connection for every reconcile.
#[derive(Default)]
pub struct MemberClients(
    std::sync::Mutex<std::collections::HashMap<String, (String, Client, String)>>,
);

impl std::fmt::Debug for MemberClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f.debug_set().entries(clients.keys()).finish()
    }
}

impl MemberClients {
    fn get(&self, key: &str, version: &str) -> Option<(Client, String)> {
        let clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .get(key)
            .filter(|(v, _, _)| v == version)
            .map(|(_, client, server)| (client.clone(), server.clone()))
    }

    fn put(&self, key: String, version: String, client: &Client, server: &str) {
        let mut clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        clients.insert(key, (version, client.clone(), server.to_owned()));
    }
}

/// A client for a member from the kubeconfig in its Secret, and the server's URL.
async fn remote_client(
    ctx: &Context,
    reference: &crate::api::common::NamespacedSecretKeyRef,
) -> Result<(Client, String), ProbeFailure> {
    let at = format!("Secret {}/{}", reference.namespace, reference.name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &reference.namespace);
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|e| {
            ProbeFailure::new(
                SECRET_UNREADABLE,
                format!("{at}: {}", describe_kube_error(&e)),
            )
        })?
        .ok_or_else(|| ProbeFailure::new(SECRET_NOT_FOUND, format!("{at} does not exist")))?;
    let key = format!(
        "{}/{}/{}",
        reference.namespace, reference.name, reference.key
    );
    let version = secret.metadata.resource_version.clone().unwrap_or_default();
    if let Some(cached) = ctx.member_clients.get(&key, &version) {
        return Ok(cached);
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&reference.key))
        .ok_or_else(|| {
            ProbeFailure::new(
                KUBECONFIG_MISSING,
                format!("{at} has no key {:?}", reference.key),
            )
        })?;
    let text = std::str::from_utf8(&bytes.0).map_err(|_| {
        ProbeFailure::new(
            KUBECONFIG_INVALID,
            format!("{at} key {:?} is not UTF-8", reference.key),
        )
    })?;
    let invalid = |e: &dyn std::fmt::Display| {
        ProbeFailure::new(
            KUBECONFIG_INVALID,
            format!("{at} key {:?}: {e}", reference.key),
        )
    };
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| invalid(&e))?;
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| invalid(&e))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(API_PROBE_TIMEOUT);
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_owned();
    let client = Client::try_from(config).map_err(|e| invalid(&e))?;
    ctx.member_clients.put(key, version, &client, &server);
    Ok((client, server))
}

/// Queries every DNS endpoint for the API server's service name. Any answer, even
/// NXDOMAIN, proves the resolver is reachable. `Ok(None)` when there is nothing to probe.
pub async fn probe_dns(
    endpoints: &[String],
    cluster_domain: &str,
) -> Result<Option<usize>, ProbeFailure> {
    if endpoints.is_empty() {
        return Ok(None);
    }
    let name = format!("kubernetes.default.svc.{cluster_domain}.");
    let mut failures = Vec::new();
    for endpoint in endpoints {
        if let Err(message) = query_once(endpoint, &name).await {
            failures.push(format!("{endpoint}: {message}"));
        }
    }
    if failures.is_empty() {
        Ok(Some(endpoints.len()))
    } else {
        Err(ProbeFailure::new(
            DNS_UNREACHABLE,
            format!("DNS {}", failures.join("; ")),
        ))
    }
}

async fn query_once(endpoint: &str, name: &str) -> Result<(), String> {
    let address = crate::dns::resolve(endpoint).await?;
    let name = Name::from_ascii(name).map_err(|e| format!("bad query name: {e}"))?;
    crate::dns::exchange(address, &crate::dns::query(&name, RecordType::A, true))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, OpCode};

    #[test]
    fn both_probes_up_make_the_cluster_ready() {
        let status = member_status(&Ok("v1.36.3".into()), &Ok(Some(2)));
        let types: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("Ready", "True"),
                ("ApiReachable", "True"),
                ("DnsReachable", "True")
            ]
        );
        assert_eq!(status.kubernetes_version.as_deref(), Some("v1.36.3"));
    }

    #[test]
    fn an_unreachable_api_server_names_the_reason() {
        let failure = ProbeFailure::new("ApiUnreachable", "API server: connection refused");
        let status = member_status(&Err(failure), &Ok(None));
        assert_eq!(status.conditions[0].status, "False");
        assert_eq!(status.conditions[0].reason, "ApiUnreachable");
        assert_eq!(status.conditions[2].status, "Unknown");
        assert_eq!(status.kubernetes_version, None);
    }

    #[tokio::test]
    async fn a_silent_dns_endpoint_is_reported() {
        // A bound UDP socket that never answers.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = silent.local_addr().expect("address").to_string();
        let failure = probe_dns(std::slice::from_ref(&endpoint), "cluster.local")
            .await
            .expect_err("no answer");
        assert_eq!(failure.reason, "DnsUnreachable");
        assert!(failure.message.contains(&endpoint), "{}", failure.message);
    }

    #[tokio::test]
    async fn an_answering_dns_endpoint_is_reachable() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = server.local_addr().expect("address").to_string();
        let responder = tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            let (n, peer) = server.recv_from(&mut buffer).await.expect("query");
            let query = Message::from_vec(&buffer[..n]).expect("a DNS query");
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.response_code = hickory_proto::op::ResponseCode::NXDomain;
            server
                .send_to(&reply.to_vec().expect("encode"), peer)
                .await
                .expect("send");
            query.queries[0].name().to_string()
        });
        assert_eq!(
            probe_dns(&[endpoint], "example.internal").await,
            Ok(Some(1))
        );
        assert_eq!(
            responder.await.expect("responder"),
            "kubernetes.default.svc.example.internal."
        );
    }

    #[tokio::test]
    async fn a_member_client_is_reused_until_its_secret_changes() {
        let clients = MemberClients::default();
        let config = kube::Config::new("https://10.0.0.1:6443".parse().expect("a URL"));
        let client = Client::try_from(config).expect("a client");
        clients.put(
            "vigil-system/aws/kubeconfig".into(),
            "41".into(),
            &client,
            "https://10.0.0.1:6443",
        );
        let (_, server) = clients
            .get("vigil-system/aws/kubeconfig", "41")
            .expect("the same Secret: the same client");
        assert_eq!(server, "https://10.0.0.1:6443");
        assert!(
            clients.get("vigil-system/aws/kubeconfig", "42").is_none(),
            "a new Secret"
        );
        assert!(
            clients
                .get("vigil-system/vmware/kubeconfig", "41")
                .is_none()
        );
    }
}

/// The controller against a mocked API server and a real resolver on loopback: every call
/// of a probe, when the cluster is up, again with nothing changed, and when its API server
/// fails.
#[cfg(test)]
mod scenario {
    use std::sync::Arc;

    use http::{Method, StatusCode};
    use kube::runtime::controller::Action;
    use serde_json::json;

    use super::*;
    use crate::controllers::mock::{
        Log, call, calls, context, mock_api, not_found, resolver, silent,
    };

    const VERSION: &str = "/version";
    const STATUS: &str = "/apis/vigil.io/v1alpha1/memberclusters/east/status";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

    fn east(endpoint: &str, status: Option<MemberClusterStatus>) -> MemberCluster {
        let mut member: MemberCluster = serde_json::from_value(json!({
            "apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": "east", "uid": "e0000000-0000-0000-0000-000000000001", "generation": 1},
            "spec": {"provider": "aws", "region": "us-east-1", "local": true, "probeInterval": "15s",
                     "dns": {"endpoints": [endpoint], "clusterDomain": "cluster.local"}},
        }))
        .expect("a MemberCluster");
        member.status = status;
        member
    }

    /// The local API server: its version, or a 503 when `down`.
    fn cluster(down: bool) -> (Client, Log) {
        mock_api(move |r| {
            let path = r.uri.split('?').next().unwrap_or_default();
            match (&r.method, path) {
                (&Method::GET, VERSION) if down => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "etcd is unavailable"}),
                ),
                (&Method::GET, VERSION) => (
                    StatusCode::OK,
                    json!({"major": "1", "minor": "36", "gitVersion": "v1.36.3", "gitCommit": "", "gitTreeState": "clean",
                           "buildDate": "2026-11-01T00:00:00Z", "goVersion": "go1.26", "compiler": "gc", "platform": "linux/amd64"}),
                ),
                (&Method::PATCH, STATUS) => {
                    let mut member =
                        serde_json::to_value(east("127.0.0.1:53", None)).expect("encode");
                    member["status"] = r.body["status"].clone();
                    (StatusCode::OK, member)
                }
                (&Method::POST, EVENTS) => (StatusCode::CREATED, r.body.clone()),
                _ => not_found(),
            }
        })
    }

    fn written_status(log: &Log) -> MemberClusterStatus {
        let log = log.lock().expect("log");
        let patch = log
            .iter()
            .find(|r| r.uri.starts_with(STATUS))
            .expect("a status write");
        serde_json::from_value(patch.body["status"].clone()).expect("a status")
    }

    #[tokio::test]
    async fn a_cluster_that_answers_is_ready_once_and_then_left_alone() {
        let (client, log) = cluster(false);
        let ctx = context(client);
        let endpoint = resolver().await;
        let action = Arc::new(east(&endpoint, None))
            .reconcile(ctx.clone())
            .await
            .expect("probed");
        assert_eq!(
            calls(&log),
            [
                call(Method::GET, VERSION),
                call(Method::PATCH, STATUS),
                call(Method::POST, EVENTS)
            ]
        );
        let status = written_status(&log);
        assert_eq!(status.kubernetes_version.as_deref(), Some("v1.36.3"));
        assert_eq!(status.conditions[0].reason, "Reachable");
        assert_eq!(status.conditions[2].message, "all 1 DNS endpoints answer");
        {
            let log = log.lock().expect("log");
            assert_eq!(log[2].body["type"], "Normal");
            assert_eq!(log[2].body["reason"], "Reachable");
        }
        assert_eq!(action, Action::requeue(Duration::from_secs(15)));

        // The next probe finds the same: one read, no write, no Event.
        log.lock().expect("log").clear();
        Arc::new(east(&endpoint, Some(status)))
            .reconcile(ctx)
            .await
            .expect("probed again");
        assert_eq!(calls(&log), [call(Method::GET, VERSION)]);
    }

    #[tokio::test]
    async fn a_failing_api_server_and_a_silent_resolver_are_reported_not_errors() {
        let (client, log) = cluster(true);
        let ctx = context(client);
        let was_ready = member_status(&Ok("v1.36.3".into()), &Ok(Some(1)));
        Arc::new(east(&silent(), Some(was_ready)))
            .reconcile(ctx)
            .await
            .expect("a failed probe is the cluster's state, not an error");
        assert_eq!(
            calls(&log),
            [
                call(Method::GET, VERSION),
                call(Method::PATCH, STATUS),
                call(Method::POST, EVENTS)
            ]
        );
        let status = written_status(&log);
        let reasons: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                ("False", "ApiUnreachable"),
                ("False", "ApiUnreachable"),
                ("False", "DnsUnreachable")
            ]
        );
        assert!(
            status.conditions[1]
                .message
                .contains("etcd is unavailable (503 ServiceUnavailable)"),
            "{}",
            status.conditions[1].message
        );
        assert!(status.kubernetes_version.is_none());
        let log = log.lock().expect("log");
        assert_eq!(log[2].body["type"], "Warning");
        assert_eq!(log[2].body["reason"], "ApiUnreachable");
    }
}
