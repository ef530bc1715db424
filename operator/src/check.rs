//! `vigil check`: is Vigil installed and running here, and may this user run `vigil`'s
//! commands? Each check is one line, passed or failed with what to do; the exit code says
//! whether all passed, for scripts (`vigil check --wait 2m` after `helm install`).

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

/// Where the operator is: its namespace and Helm release name (which names its Lease
/// `<release>-leader` and its MutatingWebhookConfiguration `<release>`).
#[derive(Clone, Debug)]
pub struct Target {
    /// The operator's namespace.
    pub namespace: String,
    /// The Helm release.
    pub release: String,
}

/// One check's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// What was checked.
    pub check: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was found, and on failure what to do.
    pub detail: String,
}

impl Outcome {
    fn new(check: &'static str, passed: bool, detail: impl Into<String>) -> Self {
        Self {
            check,
            passed,
            detail: detail.into(),
        }
    }
}

/// Runs every check once; the actions' rights in `namespace` (every one when `None`).
pub async fn run(client: &Client, target: &Target, namespace: Option<&str>) -> Vec<Outcome> {
    vec![
        crds(client).await,
        operator(client, target).await,
        webhook(client, target).await,
        rights(client).await,
        actions(client, namespace).await,
    ]
}

/// The CRDs are installed, established, and the schema the API server serves is the one
/// this binary was built with.
async fn crds(client: &Client) -> Outcome {
    const CHECK: &str = "CRDs";
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut problems = Vec::new();
    let ours = crate::api::crds();
    for crd in &ours {
        let name = crd.name_any();
        let installed = match api.get_opt(&name).await {
            Ok(Some(installed)) => installed,
            Ok(None) => {
                problems.push(format!("{name} is not installed"));
                continue;
            }
            Err(error) => {
                return Outcome::new(CHECK, false, format!("cannot read {name}: {error}"));
            }
        };
        let established = installed
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if !established {
            problems.push(format!("{name} is not Established"));
            continue;
        }
        let schema = |crd: &CustomResourceDefinition| {
            crd.spec
                .versions
                .iter()
                .map(|v| {
                    (
                        v.name.clone(),
                        v.served,
                        serde_json::to_value(&v.schema).ok().map(numbers_as_floats),
                    )
                })
                .collect::<Vec<_>>()
        };
        if schema(&installed) != schema(crd) {
            problems.push(format!(
                "{name} differs from vigil {}'s",
                crate::cli::version()
            ));
        }
    }
    if problems.is_empty() {
        Outcome::new(
            CHECK,
            true,
            format!(
                "{} installed, established, as this binary knows them",
                ours.len()
            ),
        )
    } else {
        Outcome::new(
            CHECK,
            false,
            format!(
                "{}: install or upgrade them with the chart, or `vigil crds | kubectl apply --server-side -f -`",
                problems.join("; ")
            ),
        )
    }
}

/// A replica holds the Lease and renews it.
async fn operator(client: &Client, target: &Target) -> Outcome {
    const CHECK: &str = "operator";
    let name = format!("{}-leader", target.release);
    let api: Api<Lease> = Api::namespaced(client.clone(), &target.namespace);
    let lease = match api.get_opt(&name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return Outcome::new(
                CHECK,
                false,
                format!(
                    "no Lease {}/{name}: the operator has not started there (another namespace or release? --operator-namespace, --release)",
                    target.namespace
                ),
            );
        }
        Err(error) => {
            return Outcome::new(CHECK, false, format!("cannot read Lease {name}: {error}"));
        }
    };
    let spec = lease.spec.unwrap_or_default();
    let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else {
        return Outcome::new(
            CHECK,
            false,
            format!(
                "Lease {name} has no holder: no replica leads (is the operator stopped? kubectl -n {} get pods)",
                target.namespace
            ),
        );
    };
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    let age = spec
        .renew_time
        .map(|t| (jiff::Timestamp::now() - t.0).get_seconds());
    match age {
        Some(age) if age <= duration => Outcome::new(
            CHECK,
            true,
            format!("{holder} leads (Lease {name} renewed {age}s ago)"),
        ),
        Some(age) => Outcome::new(
            CHECK,
            false,
            format!(
                "{holder} holds Lease {name} but has not renewed it for {age}s (lasts {duration}s): the operator is stopped or hung"
            ),
        ),
        None => Outcome::new(CHECK, false, format!("Lease {name} was never renewed")),
    }
}

/// The MutatingWebhookConfiguration exists with a CA, and its Service has a ready
/// endpoint (a URL webhook, for an operator outside the cluster, is taken as it is).
async fn webhook(client: &Client, target: &Target) -> Outcome {
    const CHECK: &str = "webhook";
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let configuration = match api.get_opt(&target.release).await {
        Ok(Some(configuration)) => configuration,
        Ok(None) => {
            return Outcome::new(
                CHECK,
                false,
                format!(
                    "no MutatingWebhookConfiguration {}: the webhook is disabled (webhook.enabled) or the operator has not started",
                    target.release
                ),
            );
        }
        Err(error) => return Outcome::new(CHECK, false, format!("cannot read it: {error}")),
    };
    let Some(hook) = configuration
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .next()
    else {
        return Outcome::new(CHECK, false, "the configuration has no webhook");
    };
    if hook
        .client_config
        .ca_bundle
        .as_ref()
        .is_none_or(|b| b.0.is_empty())
    {
        return Outcome::new(
            CHECK,
            false,
            "no caBundle yet: the operator has not written its CA",
        );
    }
    let Some(service) = hook.client_config.service else {
        let url = hook.client_config.url.unwrap_or_default();
        return Outcome::new(CHECK, true, format!("{} calls {url}", hook.name));
    };
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &service.namespace);
    let params =
        ListParams::default().labels(&format!("kubernetes.io/service-name={}", service.name));
    let ready = match slices.list(&params).await {
        Ok(list) => list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .count(),
        Err(error) => {
            return Outcome::new(
                CHECK,
                false,
                format!(
                    "cannot list the endpoints of Service {}: {error}",
                    service.name
                ),
            );
        }
    };
    if ready == 0 {
        Outcome::new(
            CHECK,
            false,
            format!(
                "no ready endpoint behind Service {}/{}: pods are admitted without isolation or sidecars (failurePolicy Ignore)",
                service.namespace, service.name
            ),
        )
    } else {
        Outcome::new(
            CHECK,
            true,
            format!(
                "{} served by {ready} ready endpoint(s) of Service {}/{}",
                hook.name, service.namespace, service.name
            ),
        )
    }
}

/// What `vigil status` needs, asked of the API server for the current user.
async fn rights(client: &Client) -> Outcome {
    const CHECK: &str = "your rights";
    let mut wanted: Vec<Right> = crate::api::crds()
        .iter()
        .map(|crd| Right::new("list", "vigil.io", &crd.spec.names.plural, "vigil status"))
        .collect();
    wanted.push(Right::new(
        "list",
        "events.k8s.io",
        "events",
        "vigil status",
    ));
    match denied(client, &wanted, None).await {
        Err(error) => Outcome::new(CHECK, false, error),
        Ok(denied) if denied.is_empty() => Outcome::new(
            CHECK,
            true,
            "vigil status may read every kind and its Events",
        ),
        Ok(denied) => Outcome::new(CHECK, false, format!("not allowed: {}", denied.join(", "))),
    }
}

/// What the actions need in `namespace` (every namespace when `None`): `vigil renew`,
/// `vigil breaker`, `vigil config`.
async fn actions(client: &Client, namespace: Option<&str>) -> Outcome {
    const CHECK: &str = "your actions";
    let wanted = [
        Right::new("patch", "vigil.io", "acmecertificates", "vigil renew"),
        Right::new(
            "patch",
            "vigil.io",
            "supervisedworkloads",
            "vigil breaker and vigil config rollback",
        ),
        Right::new("get", "", "configmaps", "vigil config diff"),
    ];
    let place = namespace.map_or_else(
        || "in every namespace".to_owned(),
        |n| format!("in namespace {n}"),
    );
    match denied(client, &wanted, namespace).await {
        Err(error) => Outcome::new(CHECK, false, error),
        Ok(denied) if denied.is_empty() => Outcome::new(
            CHECK,
            true,
            format!("vigil renew, breaker and config may act {place}"),
        ),
        Ok(denied) => Outcome::new(
            CHECK,
            false,
            format!("not allowed {place}: {}", denied.join(", ")),
        ),
    }
}

/// A right a command needs.
struct Right {
    verb: &'static str,
    group: &'static str,
    resource: String,
    needed_by: &'static str,
}

impl Right {
    fn new(
        verb: &'static str,
        group: &'static str,
        resource: &str,
        needed_by: &'static str,
    ) -> Self {
        Self {
            verb,
            group,
            resource: resource.to_owned(),
            needed_by,
        }
    }
}

/// The rights of `wanted` the API server denies the current user, each as `verb
/// resource.group (what needs it)`.
async fn denied(
    client: &Client,
    wanted: &[Right],
    namespace: Option<&str>,
) -> Result<Vec<String>, String> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for right in wanted {
        let review: SelfSubjectAccessReview = serde_json::from_value(serde_json::json!({
            "spec": {"resourceAttributes": {"verb": right.verb, "group": right.group,
                "resource": right.resource, "namespace": namespace}}
        }))
        .map_err(|e| e.to_string())?;
        match api.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => {
                let resource = match right.group {
                    "" => right.resource.clone(),
                    group => format!("{}.{group}", right.resource),
                };
                denied.push(format!(
                    "{} {resource} ({} needs it)",
                    right.verb, right.needed_by
                ));
            }
            Err(error) => return Err(format!("cannot ask: {error}")),
        }
    }
    Ok(denied)
}

/// `value` with every number as a float: the API server stores a schema's `default: 10.0`
/// as `10`, the same value.
fn numbers_as_floats(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, numbers_as_floats(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_stored_as_an_integer_is_the_same_schema() {
        let ours = serde_json::json!({"default": 10.0, "items": [1, 2.5]});
        let stored = serde_json::json!({"default": 10, "items": [1.0, 2.5]});
        assert_eq!(numbers_as_floats(ours), numbers_as_floats(stored));
        assert_ne!(
            numbers_as_floats(serde_json::json!({"default": 10})),
            numbers_as_floats(serde_json::json!({"default": 11}))
        );
    }
}
