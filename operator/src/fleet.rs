//! `vigil status`: the fleet at a glance, worst first. Reading the objects is
//! [`Fleet::fetch`]; everything after it is pure ([`Fleet::rows`], [`table`]) so that the
//! judgement of each object and the table are tested without a cluster.

use std::fmt::Write as _;

use jiff::{Span, SpanRound, Timestamp, Unit};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::Serialize;

use crate::api::{
    AcmeCertificate, AcmeIssuer, CrossCloudDNS, HasConditions, MemberCluster,
    ServiceLevelObjective, SupervisedWorkload, TelemetryPipeline,
};

/// How much an object needs a person: the table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    /// Broken, or about to break: someone should act.
    Failing,
    /// Degraded, waiting or on its way somewhere: worth a look.
    Warning,
    /// As declared.
    Ok,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Failing => "FAIL",
            Severity::Warning => "WARN",
            Severity::Ok => "ok",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Severity::Failing => "\x1b[31m",
            Severity::Warning => "\x1b[33m",
            Severity::Ok => "\x1b[32m",
        }
    }
}

/// One object, judged.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// How much it needs a person.
    pub severity: Severity,
    /// Its kind.
    pub kind: &'static str,
    /// The kind's short name, as kubectl takes it (`slo`, `sw`, ...).
    #[serde(skip)]
    pub short: &'static str,
    /// Its namespace; none for cluster-scoped kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// One word: the state (`Ready`, `Open`, `Burning`, a condition reason, ...).
    pub state: String,
    /// One line for a person: what it is doing, or what is wrong.
    pub detail: String,
}

/// Every object of every kind that `vigil status` shows.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    /// MemberClusters (cluster-scoped).
    pub member_clusters: Vec<MemberCluster>,
    /// ServiceLevelObjectives.
    pub slos: Vec<ServiceLevelObjective>,
    /// AcmeIssuers (cluster-scoped).
    pub acme_issuers: Vec<AcmeIssuer>,
    /// AcmeCertificates.
    pub certificates: Vec<AcmeCertificate>,
    /// CrossCloudDNSes (cluster-scoped).
    pub cross_cloud_dns: Vec<CrossCloudDNS>,
    /// TelemetryPipelines.
    pub pipelines: Vec<TelemetryPipeline>,
    /// SupervisedWorkloads.
    pub workloads: Vec<SupervisedWorkload>,
}

/// A certificate that expires within this is a warning.
const EXPIRY_WARNING_DAYS: i64 = 7;

impl Fleet {
    /// Lists every kind, in `namespace` (all namespaces when `None`; cluster-scoped kinds are
    /// always listed whole). A refusal names the verb and the resource that were refused.
    pub async fn fetch(client: &Client, namespace: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            member_clusters: list(Api::all(client.clone()), CLUSTER_WIDE).await?,
            slos: list(scoped(client, namespace), &place(namespace)).await?,
            acme_issuers: list(Api::all(client.clone()), CLUSTER_WIDE).await?,
            certificates: list(scoped(client, namespace), &place(namespace)).await?,
            cross_cloud_dns: list(Api::all(client.clone()), CLUSTER_WIDE).await?,
            pipelines: list(scoped(client, namespace), &place(namespace)).await?,
            workloads: list(scoped(client, namespace), &place(namespace)).await?,
        })
    }

    /// Every object judged at `now`, worst first, then by kind, namespace and name.
    pub fn rows(&self, now: Timestamp) -> Vec<Row> {
        let mut rows = Vec::new();
        rows.extend(self.member_clusters.iter().map(member_cluster));
        rows.extend(self.slos.iter().map(slo));
        rows.extend(self.acme_issuers.iter().map(acme_issuer));
        rows.extend(self.certificates.iter().map(|c| certificate(c, now)));
        rows.extend(self.cross_cloud_dns.iter().map(cross_cloud_dns));
        rows.extend(self.pipelines.iter().map(pipeline));
        rows.extend(self.workloads.iter().map(workload));
        rows.sort_by(|a, b| {
            (a.severity, kind_order(a.kind), &a.namespace, &a.name).cmp(&(
                b.severity,
                kind_order(b.kind),
                &b.namespace,
                &b.name,
            ))
        });
        rows
    }
}

pub(crate) fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

const CLUSTER_WIDE: &str = "cluster-wide";

pub(crate) fn place(namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) => format!("in namespace {namespace}"),
        None => "in all namespaces".to_owned(),
    }
}

/// Every object of `api`, listed `place` (for the message when that is refused).
pub(crate) async fn list<K>(api: Api<K>, place: &str) -> anyhow::Result<Vec<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.list(&ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(|error| {
            let resource = format!("{}.{}", K::plural(&()), K::group(&()));
            refused(&error, "list", &resource, place)
        })
}

/// A kind's place in the table, among rows of the same severity.
fn kind_order(kind: &str) -> usize {
    RESOURCES
        .iter()
        .position(|r| r.0 == kind)
        .unwrap_or(RESOURCES.len())
}

fn ready<S: HasConditions>(status: Option<&S>) -> Option<&Condition> {
    status?.conditions().iter().find(|c| c.type_ == "Ready")
}

/// A row from the `Ready` condition alone: not reconciled yet, Ready, or its reason.
fn base<K, S>(object: &K, status: Option<&S>) -> Row
where
    K: Resource<DynamicType = ()> + kube::CustomResourceExt,
    S: HasConditions,
{
    let kind: &'static str = RESOURCES
        .iter()
        .find(|r| r.0 == K::kind(&()))
        .map_or("Unknown", |r| r.0);
    let (severity, state, detail) = match ready(status) {
        None => (
            Severity::Warning,
            "Pending".to_owned(),
            "not reconciled yet: is the operator running?".to_owned(),
        ),
        Some(c) if c.status == "True" => (Severity::Ok, "Ready".to_owned(), c.message.clone()),
        Some(c) => (
            // Waiting for what GitOps has not applied yet is not broken.
            if c.reason == "ReferenceNotFound" {
                Severity::Warning
            } else {
                Severity::Failing
            },
            c.reason.clone(),
            c.message.clone(),
        ),
    };
    Row {
        severity,
        kind,
        short: K::shortnames().first().copied().unwrap_or(kind),
        namespace: object.meta().namespace.clone(),
        name: object.meta().name.clone().unwrap_or_default(),
        state,
        detail,
    }
}

fn member_cluster(member: &MemberCluster) -> Row {
    let mut row = base(member, member.status.as_ref());
    let version = member
        .status
        .as_ref()
        .and_then(|s| s.kubernetes_version.clone());
    if row.severity == Severity::Ok {
        row.state = "Reachable".to_owned();
        row.detail = format!(
            "{} {} {}",
            member.spec.provider.as_str(),
            member.spec.region,
            version.as_deref().unwrap_or("(version unknown)")
        );
    }
    row
}

fn slo(slo: &ServiceLevelObjective) -> Row {
    let mut row = base(slo, slo.status.as_ref());
    let Some(status) = slo.status.as_ref() else {
        return row;
    };
    if row.severity != Severity::Ok {
        return row;
    }
    let remaining = status
        .error_budget_remaining
        .as_deref()
        .and_then(|r| r.trim_end_matches('%').parse::<f64>().ok());
    let burn = status
        .burn_rate
        .as_deref()
        .and_then(|b| b.parse::<f64>().ok());
    let Some(remaining) = remaining else {
        row.state = "NoBudget".to_owned();
        row.severity = Severity::Warning;
        row.detail = status
            .conditions
            .iter()
            .find(|c| c.type_ == crate::api::service_level_objective::vocabulary::BUDGET_KNOWN)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "the budget is not known yet".to_owned());
        return row;
    };
    let mut detail = format!("budget {remaining:.2}% left");
    if let Some(burn) = burn {
        let _ = write!(detail, ", burn rate {burn:.2}×");
        let window = crate::render::slo::parse_window(&slo.spec.window).ok();
        if let Some(window) = window.filter(|_| burn > 0.0 && remaining > 0.0) {
            // At burn rate b the budget of a window W lasts W / b; what is left lasts
            // its share of that.
            let seconds = window.as_secs_f64() / burn * remaining / 100.0;
            let _ = write!(
                detail,
                ", exhausted in {} at this rate",
                span(seconds as i64)
            );
        }
    }
    let objective = slo.spec.objective;
    let _ = write!(detail, " (objective {objective}% over {})", slo.spec.window);
    row.detail = detail;
    (row.severity, row.state) = match burn {
        _ if remaining <= 0.0 => (Severity::Failing, "Exhausted".to_owned()),
        Some(b) if b >= 1.0 => (Severity::Warning, "Burning".to_owned()),
        _ => (Severity::Ok, "Healthy".to_owned()),
    };
    row
}

fn acme_issuer(issuer: &AcmeIssuer) -> Row {
    let mut row = base(issuer, issuer.status.as_ref());
    if row.severity == Severity::Ok {
        row.detail = issuer.spec.server.clone();
    }
    row
}

fn certificate(certificate: &AcmeCertificate, now: Timestamp) -> Row {
    let mut row = base(certificate, certificate.status.as_ref());
    let Some(status) = certificate.status.as_ref() else {
        return row;
    };
    let not_after = status
        .not_after
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let mut detail = Vec::new();
    if let Some(not_after) = not_after {
        let left = not_after.as_second() - now.as_second();
        if left <= 0 {
            row.severity = Severity::Failing;
            row.state = "Expired".to_owned();
            detail.push(format!("expired {} ago", span(-left)));
        } else {
            detail.push(format!("expires in {}", span(left)));
            if left < EXPIRY_WARNING_DAYS * 86_400 && row.severity == Severity::Ok {
                row.severity = Severity::Warning;
                row.state = "Expiring".to_owned();
            }
        }
    }
    if let Some(renewal) = status
        .renewal_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
    {
        let due = renewal.as_second() - now.as_second();
        detail.push(if due > 0 {
            format!("renews in {}", span(due))
        } else {
            "renewal due".to_owned()
        });
    }
    if let Some(failures) = status.failed_issuance_attempts.filter(|n| *n > 0) {
        if row.severity == Severity::Ok {
            row.severity = Severity::Warning;
            row.state = "Retrying".to_owned();
        }
        let when = status.last_failure_time.as_deref().unwrap_or("?");
        let attempts = if failures == 1 { "attempt" } else { "attempts" };
        detail.push(format!("{failures} failed {attempts}, last at {when}"));
    }
    if row.severity == Severity::Ok {
        row.state = "Valid".to_owned();
    }
    if let Some(revision) = status.revision {
        detail.push(format!("revision {revision}"));
    }
    if row.severity == Severity::Ok || row.state == "Expiring" || row.state == "Expired" {
        row.detail = detail.join(", ");
    } else if !detail.is_empty() {
        row.detail = format!("{}; {}", row.detail, detail.join(", "));
    }
    row
}

fn cross_cloud_dns(dns: &CrossCloudDNS) -> Row {
    let mut row = base(dns, dns.status.as_ref());
    let Some(status) = dns.status.as_ref() else {
        return row;
    };
    let out: Vec<String> = status
        .clusters
        .iter()
        .filter(|c| !c.resolver_healthy || !c.applied || !c.in_failover)
        .map(|c| {
            let why = if !c.applied {
                "not applied"
            } else if !c.resolver_healthy {
                "resolver unhealthy"
            } else {
                "out of the failover chain"
            };
            format!("{} ({why})", c.cluster)
        })
        .collect();
    if !out.is_empty() {
        if row.severity == Severity::Ok {
            row.severity = Severity::Warning;
            row.state = "Degraded".to_owned();
        }
        row.detail = format!("out of the chain: {}", out.join(", "));
    } else if row.severity == Severity::Ok {
        row.detail = format!("{} clusters resolve each other", status.clusters.len());
    }
    row
}

fn pipeline(pipeline: &TelemetryPipeline) -> Row {
    let mut row = base(pipeline, pipeline.status.as_ref());
    let Some(status) = pipeline.status.as_ref() else {
        return row;
    };
    let refused = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated" && c.status == "False");
    let sampling = status
        .sampling
        .as_ref()
        .map(|s| format!("sampling {}% ({})", s.percentage, s.reason));
    let running: Vec<String> = status
        .clusters
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c.cluster,
                c.active_config
                    .as_deref()
                    .unwrap_or("nothing validated yet")
            )
        })
        .collect();
    if let Some(refused) = refused {
        row.severity = Severity::Warning;
        row.state = "Refused".to_owned();
        row.detail = refused.message.clone();
    } else if row.severity == Severity::Ok {
        row.detail = sampling
            .into_iter()
            .chain([running.join(", ")])
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
    }
    row
}

fn workload(workload: &SupervisedWorkload) -> Row {
    let mut row = base(workload, workload.status.as_ref());
    let Some(status) = workload.status.as_ref() else {
        return row;
    };
    let last = status.last_crash.as_deref();
    let held = status
        .breaker_override
        .as_ref()
        .filter(|o| o.action == crate::api::supervised_workload::OverrideAction::Open);
    match status.breaker.as_deref() {
        // Opened by hand: stopped on purpose, worth a look rather than a page.
        Some("Open") if let Some(held) = held => {
            row.severity = row.severity.min(Severity::Warning);
            row.state = "HeldOpen".to_owned();
            row.detail = format!(
                "opened by hand at {}: {}; vigil breaker close or clear lets it run",
                held.applied_at.as_deref().unwrap_or(&held.requested_at),
                held.reason
            );
        }
        Some("Open") => {
            row.severity = Severity::Failing;
            row.state = "BreakerOpen".to_owned();
            row.detail = format!(
                "since {}; last crash: {}",
                status.breaker_since.as_deref().unwrap_or("?"),
                last.unwrap_or("?")
            );
        }
        Some(phase @ ("HalfOpen" | "Probation")) => {
            row.severity = row.severity.min(Severity::Warning);
            row.state = phase.to_owned();
            row.detail = format!("last crash: {}", last.unwrap_or("?"));
        }
        _ if row.severity == Severity::Ok && status.crashes_in_window > 0 => {
            row.severity = Severity::Warning;
            row.state = "Crashing".to_owned();
            row.detail = format!(
                "{} crashes in the window; last: {}",
                status.crashes_in_window,
                last.unwrap_or("?")
            );
        }
        _ if row.severity == Severity::Ok => {
            row.state = "Supervising".to_owned();
            row.detail = match (&status.config_revision, status.crashes_total) {
                (Some(revision), total) => format!("config {revision}; {total} crashes in all"),
                (None, total) => format!("{total} crashes in all"),
            };
        }
        _ => {}
    }
    row
}

/// The kinds `vigil status` shows, in its order: kind, plural, short name, namespaced.
const RESOURCES: [(&str, &str, &str, bool); 7] = [
    ("MemberCluster", "memberclusters", "mc", false),
    (
        "ServiceLevelObjective",
        "servicelevelobjectives",
        "slo",
        true,
    ),
    ("AcmeIssuer", "acmeissuers", "acmeiss", false),
    ("AcmeCertificate", "acmecertificates", "acmecert", true),
    ("CrossCloudDNS", "crossclouddnses", "ccdns", false),
    ("TelemetryPipeline", "telemetrypipelines", "telp", true),
    ("SupervisedWorkload", "supervisedworkloads", "sw", true),
];

/// One object the way `vigil status KIND/NAME` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Description {
    /// Its line in `vigil status`.
    pub row: Row,
    /// Its conditions, as the controller wrote them.
    pub conditions: Vec<Condition>,
    /// What Vigil wrote for it (owned objects, the workload it supervises, the Secret),
    /// one line each; or why they could not be read.
    pub children: Vec<String>,
    /// Its Events, newest first (at most 10): `time type reason: note`.
    pub events: Vec<String>,
    /// A SupervisedWorkload's last crash snapshot (the sealed one while the breaker is
    /// open), as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<serde_json::Value>,
}

/// Reads `object` (`KIND/NAME`: a kind, its plural or short name, any case) in
/// `namespace` with what Vigil wrote for it and its Events.
pub async fn describe(
    client: &Client,
    object: &str,
    namespace: &str,
) -> anyhow::Result<Description> {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ApiResource, DynamicObject};
    let (kind, name) = object
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("{object:?}: expected KIND/NAME, e.g. sw/checkout"))?;
    let lower = kind.to_ascii_lowercase();
    let (kind, plural, _, namespaced) = RESOURCES
        .iter()
        .find(|(k, p, s, _)| k.to_ascii_lowercase() == lower || *p == lower || *s == lower)
        .copied()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "unknown kind {kind:?}: one of {}",
                RESOURCES.map(|r| r.2).join(", ")
            )
        })?;
    let resource = ApiResource {
        group: "vigil.io".into(),
        version: "v1alpha1".into(),
        api_version: "vigil.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = if namespaced {
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let place = if namespaced {
        place(Some(namespace))
    } else {
        CLUSTER_WIDE.to_owned()
    };
    let found = api
        .get_opt(name)
        .await
        .map_err(|error| refused(&error, "get", &resource_name(plural), &place))?;
    let found = found.ok_or_else(|| anyhow::anyhow!("{kind} {name} not found {place}"))?;
    let value = serde_json::to_value(&found)?;
    let row = judge(kind, value.clone())?;
    let conditions: Vec<Condition> =
        serde_json::from_value(value["status"]["conditions"].clone()).unwrap_or_default();
    let uid = found.metadata.uid.clone().unwrap_or_default();
    let namespace = namespaced.then_some(namespace);

    let mut children = Vec::new();
    if let Some(namespace) = namespace {
        owned(client, namespace, &uid, &mut children).await;
    }
    let mut snapshot = None;
    match kind {
        "SupervisedWorkload" => {
            let target = &value["spec"]["target"];
            children.push(format!(
                "supervises {} {}",
                target["kind"].as_str().unwrap_or_default(),
                target["name"].as_str().unwrap_or_default()
            ));
            if let Some(namespace) = namespace {
                let crashes: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
                if let Ok(Some(map)) = crashes.get_opt(&format!("{name}-crashes")).await {
                    snapshot = last_snapshot(&map.data.unwrap_or_default());
                }
            }
        }
        "AcmeCertificate" => {
            let secret = value["spec"]["secretName"].as_str().unwrap_or_default();
            children.push(format!("Secret {secret} (kubernetes.io/tls)"));
            for copy in value["status"]["distribution"]
                .as_array()
                .into_iter()
                .flatten()
            {
                children.push(format!(
                    "copy in cluster {} namespace {}: revision {}{}",
                    copy["cluster"].as_str().unwrap_or_default(),
                    copy["namespace"].as_str().unwrap_or_default(),
                    copy["revision"]
                        .as_i64()
                        .map_or("none".to_owned(), |r| r.to_string()),
                    copy["lastError"]
                        .as_str()
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                ));
            }
        }
        "CrossCloudDNS" | "TelemetryPipeline" => {
            for cluster in value["status"]["clusters"].as_array().into_iter().flatten() {
                children.push(format!("cluster {}", compact(cluster)));
            }
        }
        _ => {}
    }
    let events = events(client, namespace, kind, name).await;
    Ok(Description {
        row,
        conditions,
        children,
        events,
        snapshot,
    })
}

fn resource_name(plural: &str) -> String {
    format!("{plural}.vigil.io")
}

/// A refusal as a person reads it: which verb on which resource.
pub(crate) fn refused(
    error: &kube::Error,
    verb: &str,
    resource: &str,
    place: &str,
) -> anyhow::Error {
    match error {
        kube::Error::Api(status) if status.code == 403 => anyhow::anyhow!(
            "not allowed to {verb} {resource} {place}: your RBAC needs verb \"{verb}\" on resource \"{resource}\""
        ),
        kube::Error::Api(status) if status.code == 404 => anyhow::anyhow!(
            "the API server does not serve {resource}: are Vigil's CRDs installed? (helm install vigil charts/vigil)"
        ),
        _ => anyhow::anyhow!("{verb} {resource} {place}: {error}"),
    }
}

/// The row of an object of `kind` given as JSON.
fn judge(kind: &str, value: serde_json::Value) -> anyhow::Result<Row> {
    Ok(match kind {
        "MemberCluster" => member_cluster(&serde_json::from_value(value)?),
        "ServiceLevelObjective" => slo(&serde_json::from_value(value)?),
        "AcmeIssuer" => acme_issuer(&serde_json::from_value(value)?),
        "AcmeCertificate" => certificate(&serde_json::from_value(value)?, Timestamp::now()),
        "CrossCloudDNS" => cross_cloud_dns(&serde_json::from_value(value)?),
        "TelemetryPipeline" => pipeline(&serde_json::from_value(value)?),
        _ => workload(&serde_json::from_value(value)?),
    })
}

/// A status entry as `key=value` pairs on one line.
fn compact(value: &serde_json::Value) -> String {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The objects of `namespace` whose owner is `uid`: ConfigMaps, Jobs, Deployments,
/// DaemonSets and Services (metadata only). A kind the user may not list says so.
async fn owned(client: &Client, namespace: &str, uid: &str, children: &mut Vec<String>) {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    async fn of<K>(client: &Client, namespace: &str, uid: &str, children: &mut Vec<String>)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                for item in list.items {
                    let owned = item
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid);
                    if owned {
                        children.push(format!(
                            "{} {}",
                            K::kind(&()),
                            item.metadata.name.unwrap_or_default()
                        ));
                    }
                }
            }
            Err(error) => children.push(format!(
                "({})",
                refused(
                    &error,
                    "list",
                    format!("{}.{}", K::plural(&()), K::group(&())).trim_end_matches('.'),
                    &place(Some(namespace))
                )
            )),
        }
    }
    of::<ConfigMap>(client, namespace, uid, children).await;
    of::<Job>(client, namespace, uid, children).await;
    of::<Deployment>(client, namespace, uid, children).await;
    of::<DaemonSet>(client, namespace, uid, children).await;
    of::<Service>(client, namespace, uid, children).await;
}

/// The newest crash snapshot of a `<name>-crashes` ConfigMap: the sealed one if any
/// (it opened the breaker), else the ring entry with the latest time.
fn last_snapshot(data: &std::collections::BTreeMap<String, String>) -> Option<serde_json::Value> {
    if let Some(sealed) = data.get(crate::crash::SEALED_KEY) {
        return serde_json::from_str(sealed).ok();
    }
    data.values()
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .max_by(|a, b| a["time"].as_str().cmp(&b["time"].as_str()))
}

/// The Events about `kind` `name`, newest first, at most 10; or why they cannot be read.
async fn events(client: &Client, namespace: Option<&str>, kind: &str, name: &str) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let api: Api<Event> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let params =
        ListParams::default().fields(&format!("regarding.kind={kind},regarding.name={name}"));
    let mut events = match api.list(&params).await {
        Ok(list) => list.items,
        Err(error) => {
            let place = place(namespace);
            return vec![format!(
                "({})",
                refused(&error, "list", "events.events.k8s.io", &place)
            )];
        }
    };
    let time = |e: &Event| {
        e.series
            .as_ref()
            .map(|s| s.last_observed_time.0)
            .or(e.event_time.as_ref().map(|t| t.0))
            .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events.sort_by_key(|e| std::cmp::Reverse(time(e)));
    events
        .iter()
        .take(10)
        .map(|e| {
            let count = e
                .series
                .as_ref()
                .map_or(String::new(), |s| format!(" (x{})", s.count));
            format!(
                "{} {} {}{count}: {}",
                time(e).map(|t| t.to_string()).unwrap_or_default(),
                e.type_.as_deref().unwrap_or_default(),
                e.reason.as_deref().unwrap_or_default(),
                e.note.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// `description` for a person.
pub fn render_description(description: &Description) -> String {
    let row = &description.row;
    let mut out = String::new();
    let place = row
        .namespace
        .as_deref()
        .map_or(String::new(), |n| format!("{n}/"));
    let _ = writeln!(out, "{} {place}{}", row.kind, row.name);
    let _ = writeln!(
        out,
        "  {} {}: {}",
        row.severity.label(),
        row.state,
        row.detail
    );
    out.push_str("Conditions:\n");
    for c in &description.conditions {
        let _ = writeln!(
            out,
            "  {:<15} {:<6} {:<20} {} (since {})",
            c.type_, c.status, c.reason, c.message, c.last_transition_time.0
        );
    }
    out.push_str("Children:\n");
    if description.children.is_empty() {
        out.push_str("  none\n");
    }
    for child in &description.children {
        let _ = writeln!(out, "  {child}");
    }
    out.push_str("Events (newest first):\n");
    if description.events.is_empty() {
        out.push_str("  none\n");
    }
    for event in &description.events {
        let _ = writeln!(out, "  {event}");
    }
    if let Some(snapshot) = &description.snapshot {
        let _ = writeln!(
            out,
            "Last crash: {} pod {} container {} on {}",
            snapshot["time"].as_str().unwrap_or("?"),
            snapshot["pod"].as_str().unwrap_or("?"),
            snapshot["container"].as_str().unwrap_or("?"),
            snapshot["node"].as_str().unwrap_or("?"),
        );
        let signal = snapshot["signal"]
            .as_i64()
            .map_or(String::new(), |s| format!(", signal {s}"));
        let _ = writeln!(
            out,
            "  exit {} ({}){signal}, restart {}",
            snapshot["exitCode"],
            snapshot["reason"].as_str().unwrap_or("?"),
            snapshot["restartCount"]
        );
        if let Some(panic) = snapshot.get("panic") {
            let _ = writeln!(
                out,
                "  {} panic: {}",
                panic["language"].as_str().unwrap_or("?"),
                panic["message"].as_str().unwrap_or("?")
            );
            for frame in panic["frames"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "    at {}", frame.as_str().unwrap_or_default());
            }
        }
        let tail = snapshot["logTail"].as_str().unwrap_or_default();
        if !tail.is_empty() {
            out.push_str("  log tail:\n");
            let lines: Vec<&str> = tail.lines().collect();
            for line in &lines[lines.len().saturating_sub(20)..] {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

/// `seconds` as `3d 4h`, `5h 12m` or `40s`: at most two units, days of 24 hours.
fn span(seconds: i64) -> String {
    let rounding = SpanRound::new()
        .largest(Unit::Day)
        .smallest(if seconds >= 86_400 {
            Unit::Hour
        } else if seconds >= 3600 {
            Unit::Minute
        } else {
            Unit::Second
        })
        .days_are_24_hours();
    match Span::new().seconds(seconds).round(rounding) {
        Ok(span) => format!("{span:#}"),
        Err(_) => format!("{seconds}s"),
    }
}

/// The table of `rows`, within `width` columns (the detail is cut to fit), with the
/// severity in colour when `colour`.
pub fn table(rows: &[Row], width: usize, colour: bool) -> String {
    let headers = ["", "NAMESPACE", "OBJECT", "STATE"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.severity.label().to_owned(),
                r.namespace.clone().unwrap_or_else(|| "-".to_owned()),
                format!("{}/{}", r.short, r.name),
                r.state.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let used: usize = widths.iter().map(|w| w + 2).sum();
    let detail_width = width.saturating_sub(used).max(20);
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String; 4], detail: &str, paint: Option<&str>| {
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            match (i, paint) {
                (0, Some(code)) => {
                    let _ = write!(out, "{code}{cell:<w$}\x1b[0m  ");
                }
                _ => {
                    let _ = write!(out, "{cell:<w$}  ");
                }
            }
        }
        out.push_str(&cut(detail, detail_width));
        out.push('\n');
    };
    line(&mut out, &headers.map(str::to_owned), "DETAIL", None);
    for (row, cells) in rows.iter().zip(&cells) {
        line(
            &mut out,
            cells,
            &row.detail.replace('\n', " "),
            colour.then(|| row.severity.colour()),
        );
    }
    out
}

fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object<K: serde::de::DeserializeOwned>(value: serde_json::Value) -> K {
        serde_json::from_value(value).expect("a valid object")
    }

    fn ready(status: &str, reason: &str, message: &str) -> serde_json::Value {
        serde_json::json!([{"type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T00:00:00Z"}])
    }

    /// One object of each kind in a known state, as `vigil status -A` reads them.
    fn fleet() -> Fleet {
        Fleet {
            member_clusters: vec![
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
                    "metadata": {"name": "aws"}, "spec": {"provider": "aws", "region": "eu-west-1", "local": true},
                    "status": {"conditions": ready("True", "Reachable", "API and DNS answer"), "kubernetesVersion": "v1.36.3"}}),
                ),
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
                    "metadata": {"name": "aliyun"}, "spec": {"provider": "aliyun", "region": "cn-hangzhou",
                        "apiServer": {"kubeconfigSecretRef": {"namespace": "vigil-system", "name": "aliyun", "key": "kubeconfig"}}},
                    "status": {"conditions": ready("False", "Unreachable", "API server https://10.0.0.1:6443: connection refused")}}),
                ),
            ],
            slos: vec![
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
                    "metadata": {"name": "checkout-availability", "namespace": "shop"},
                    "spec": {"service": "checkout", "objective": 99.9, "window": "30d",
                        "sli": {"ratio": {"errors": "e", "total": "t"}}},
                    "status": {"conditions": ready("True", "RulesApplied", "42 rules"),
                        "errorBudgetRemaining": "40.00%", "burnRate": "6.00"}}),
                ),
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective",
                    "metadata": {"name": "search-latency", "namespace": "shop"},
                    "spec": {"service": "search", "objective": 99.0, "window": "28d",
                        "sli": {"ratio": {"errors": "e", "total": "t"}}},
                    "status": {"conditions": ready("True", "RulesApplied", "42 rules"),
                        "errorBudgetRemaining": "97.50%", "burnRate": "0.10"}}),
                ),
            ],
            acme_issuers: vec![object(
                serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer",
                "metadata": {"name": "letsencrypt"},
                "spec": {"server": "https://acme-v02.api.letsencrypt.org/directory", "email": "ops@example.com",
                    "privateKeySecretRef": {"name": "le"}, "solvers": [{"http01": {}}]},
                "status": {"conditions": ready("True", "Registered", "account registered")}}),
            )],
            certificates: vec![
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                    "metadata": {"name": "shop-tls", "namespace": "shop"},
                    "spec": {"issuerRef": {"name": "letsencrypt"}, "dnsNames": ["shop.example.com"], "secretName": "shop-tls"},
                    "status": {"conditions": ready("True", "Issued", "issued"),
                        "notAfter": "2026-12-10T00:00:00Z", "renewalTime": "2026-12-06T00:00:00Z", "revision": 3,
                        "failedIssuanceAttempts": 2, "lastFailureTime": "2026-12-07T09:00:00Z"}}),
                ),
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                    "metadata": {"name": "api-tls", "namespace": "shop"},
                    "spec": {"issuerRef": {"name": "letsencrypt"}, "dnsNames": ["api.example.com"], "secretName": "api-tls"},
                    "status": {"conditions": ready("True", "Issued", "issued"),
                        "notAfter": "2027-03-01T00:00:00Z", "renewalTime": "2027-01-30T00:00:00Z", "revision": 1}}),
                ),
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                    "metadata": {"name": "orphan", "namespace": "web"},
                    "spec": {"issuerRef": {"name": "missing"}, "dnsNames": ["web.example.com"], "secretName": "orphan"},
                    "status": {"conditions": ready("False", "ReferenceNotFound",
                        "waiting for what the spec names: spec.issuerRef.name: AcmeIssuer \"missing\" does not exist")}}),
                ),
            ],
            cross_cloud_dns: vec![object(
                serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "CrossCloudDNS",
                "metadata": {"name": "clusterset"}, "spec": {"clusters": ["aws", "aliyun"]},
                "status": {"conditions": ready("True", "Applied", "2 clusters"),
                    "clusters": [{"cluster": "aws", "resolverHealthy": true, "inFailover": true, "applied": true},
                        {"cluster": "aliyun", "resolverHealthy": false, "inFailover": false, "applied": true}]}}),
            )],
            pipelines: vec![object(
                serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "TelemetryPipeline",
                "metadata": {"name": "shop", "namespace": "shop"},
                "spec": {"clusters": ["aws"], "backends": {}},
                "status": {"conditions": ready("True", "RolledOut", "every cluster runs it"),
                    "clusters": [{"cluster": "aws", "activeConfig": "vigil-otel-shop-7d91a62b6d"}],
                    "sampling": {"percentage": 50.0, "reason": "SLO checkout-availability is burning", "boostedBy": "checkout-availability"}}}),
            )],
            workloads: vec![
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
                    "metadata": {"name": "checkout", "namespace": "crashlab"},
                    "spec": {"target": {"kind": "Deployment", "name": "checkout"}},
                    "status": {"conditions": ready("True", "Supervising", "capturing crashes"),
                        "breaker": "Open", "breakerSince": "2026-12-07T16:07:35Z", "crashesInWindow": 3, "crashesTotal": 3,
                        "lastCrash": "2026-12-07T16:07:34Z container app of pod checkout-5bffc69bd-dcdm5 exited 2 (Error): panic: runtime error: invalid memory address or nil pointer dereference"}}),
                ),
                object(
                    serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
                    "metadata": {"name": "orders", "namespace": "shop"},
                    "spec": {"target": {"kind": "Deployment", "name": "orders"}}}),
                ),
            ],
        }
    }

    fn now() -> Timestamp {
        "2026-12-07T12:00:00Z".parse().expect("a timestamp")
    }

    #[test]
    fn each_kind_is_judged_and_the_worst_come_first() {
        let rows = fleet().rows(now());
        let summary: Vec<(Severity, &str, &str, &str)> = rows
            .iter()
            .map(|r| (r.severity, r.kind, r.name.as_str(), r.state.as_str()))
            .collect();
        use Severity::{Failing, Ok, Warning};
        assert_eq!(
            summary,
            [
                (Failing, "MemberCluster", "aliyun", "Unreachable"),
                (Failing, "SupervisedWorkload", "checkout", "BreakerOpen"),
                (
                    Warning,
                    "ServiceLevelObjective",
                    "checkout-availability",
                    "Burning"
                ),
                (Warning, "AcmeCertificate", "shop-tls", "Expiring"),
                (Warning, "AcmeCertificate", "orphan", "ReferenceNotFound"),
                (Warning, "CrossCloudDNS", "clusterset", "Degraded"),
                (Warning, "SupervisedWorkload", "orders", "Pending"),
                (Ok, "MemberCluster", "aws", "Reachable"),
                (Ok, "ServiceLevelObjective", "search-latency", "Healthy"),
                (Ok, "AcmeIssuer", "letsencrypt", "Ready"),
                (Ok, "AcmeCertificate", "api-tls", "Valid"),
                (Ok, "TelemetryPipeline", "shop", "Ready"),
            ]
        );
        let detail = |name: &str| {
            rows.iter()
                .find(|r| r.name == name)
                .map(|r| r.detail.clone())
                .unwrap_or_default()
        };
        // 40% of a 30-day budget at 6× lasts 30d / 6 × 0.4 = 2 days.
        assert_eq!(
            detail("checkout-availability"),
            "budget 40.00% left, burn rate 6.00×, exhausted in 2d at this rate (objective 99.9% over 30d)"
        );
        assert_eq!(
            detail("shop-tls"),
            "expires in 2d 12h, renewal due, 2 failed attempts, last at 2026-12-07T09:00:00Z, revision 3"
        );
        assert_eq!(
            detail("clusterset"),
            "out of the chain: aliyun (resolver unhealthy)"
        );
        assert_eq!(
            detail("shop"),
            "sampling 50% (SLO checkout-availability is burning); aws: vigil-otel-shop-7d91a62b6d"
        );
    }

    #[test]
    fn the_table_has_stable_columns_and_fits_100_columns() {
        let table = table(&fleet().rows(now()), 100, false);
        for line in table.lines() {
            assert!(line.chars().count() <= 100, "{line}");
        }
        insta::assert_snapshot!("status-table", table);
        // In a pipe, whole lines.
        let whole = super::table(&fleet().rows(now()), usize::MAX, false);
        insta::assert_snapshot!("status-table-whole", whole);
    }

    #[test]
    fn json_output_parses_back() {
        let rows = fleet().rows(now());
        let json = serde_json::to_string(&rows).expect("JSON");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("parses");
        assert_eq!(parsed[0]["severity"], "Failing");
        assert_eq!(parsed[0]["kind"], "MemberCluster");
        assert!(parsed[0].get("namespace").is_none(), "cluster-scoped");
        assert_eq!(parsed[1]["namespace"], "crashlab");
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(40), "40s");
        assert_eq!(span(5 * 3600 + 12 * 60), "5h 12m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }
}
