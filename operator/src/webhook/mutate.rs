//! What the pod webhook changes, as a pure function of the pod and the
//! `SupervisedWorkload` that targets its workload.
//!
//! - `restricted` (the Pod Security Standard): `runAsNonRoot`, `RuntimeDefault` seccomp,
//!   no privilege escalation, every capability dropped, optionally a read-only root
//!   filesystem.
//! - `baseline`: only the crash-capture and resource settings below.
//! - `none`: nothing, the pod is left as it is.
//!
//! With `restricted` and `baseline`, every container also gets
//! `terminationMessagePolicy: FallbackToLogsOnError`, so that the panic text survives in the
//! termination message. A container without any requests or limits gets
//! [`DEFAULT_REQUESTS`]/[`DEFAULT_LIMITS`]. Pods of a CronJob get `VIGIL_IDEMPOTENCY_KEY`.
//!
//! A setting the pod sets explicitly against the profile (a container that runs as root,
//! a privileged one, an added capability) is a conflict: it is reported, never overridden.

use serde_json::{Value, json};

use crate::api::SupervisedWorkload;
use crate::api::supervised_workload::IsolationProfile;

/// Requests given to a container that has no resources at all.
pub const DEFAULT_REQUESTS: (&str, &str) = ("100m", "128Mi");
/// The memory limit given to a container that has no resources at all.
pub const DEFAULT_LIMITS: &str = "512Mi";
/// Environment variable with a CronJob run's idempotency key.
pub const IDEMPOTENCY_ENV: &str = "VIGIL_IDEMPOTENCY_KEY";

/// The pod after the webhook, what changed and what conflicts with the profile.
#[derive(Clone, Debug, PartialEq)]
pub struct Mutation {
    /// The mutated pod (or pod template).
    pub pod: Value,
    /// What changed, one entry each.
    pub changes: Vec<String>,
    /// Settings that contradict the profile, left as they are.
    pub conflicts: Vec<String>,
}

fn set_default(
    object: &mut Value,
    field: &str,
    value: Value,
    what: String,
    changes: &mut Vec<String>,
) {
    if object.get(field).is_none_or(Value::is_null) {
        object[field] = value;
        changes.push(what);
    }
}

/// Applies `workload`'s isolation to `pod` (a Pod or a pod template: `spec` holds the pod
/// spec). `idempotency_key` is set for pods of a CronJob run.
pub fn mutate(
    pod: &Value,
    workload: &SupervisedWorkload,
    idempotency_key: Option<&str>,
) -> Mutation {
    let mut pod = pod.clone();
    let mut changes = Vec::new();
    let mut conflicts = Vec::new();
    let profile = workload.spec.isolation.profile;
    if profile == IsolationProfile::None {
        return Mutation {
            pod,
            changes,
            conflicts,
        };
    }
    let restricted = profile == IsolationProfile::Restricted;
    let read_only = workload.spec.isolation.read_only_root_filesystem;
    if !pod["spec"].is_object() {
        return Mutation {
            pod,
            changes,
            conflicts,
        };
    }
    let spec = &mut pod["spec"];
    for field in ["hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace"] {
        if spec.get(field).and_then(Value::as_bool) == Some(true) {
            conflicts.push(format!("spec.{field} is true"));
        }
    }
    if restricted {
        if !spec["securityContext"].is_object() {
            spec["securityContext"] = json!({});
        }
        let context = &mut spec["securityContext"];
        if context.get("runAsNonRoot").and_then(Value::as_bool) == Some(false) {
            conflicts.push("spec.securityContext.runAsNonRoot is false".to_owned());
        }
        if context.get("runAsUser").and_then(Value::as_i64) == Some(0) {
            conflicts.push("spec.securityContext.runAsUser is 0 (root)".to_owned());
        }
        set_default(
            context,
            "runAsNonRoot",
            json!(true),
            "runAsNonRoot".to_owned(),
            &mut changes,
        );
        set_default(
            context,
            "seccompProfile",
            json!({"type": "RuntimeDefault"}),
            "seccompProfile RuntimeDefault".to_owned(),
            &mut changes,
        );
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let name = container["name"].as_str().unwrap_or_default().to_owned();
            let at = format!("{list}[{name}]");
            if container
                .get("terminationMessagePolicy")
                .and_then(Value::as_str)
                != Some("FallbackToLogsOnError")
            {
                container["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
                changes.push(format!(
                    "{at}.terminationMessagePolicy FallbackToLogsOnError"
                ));
            }
            let resources = container.get("resources");
            let empty = resources.is_none_or(|r| {
                r.get("requests")
                    .is_none_or(|v| v.as_object().is_none_or(|m| m.is_empty()))
                    && r.get("limits")
                        .is_none_or(|v| v.as_object().is_none_or(|m| m.is_empty()))
            });
            if empty {
                container["resources"] = json!({
                    "requests": {"cpu": DEFAULT_REQUESTS.0, "memory": DEFAULT_REQUESTS.1},
                    "limits": {"memory": DEFAULT_LIMITS},
                });
                changes.push(format!("{at}.resources defaults"));
            }
            if let Some(key) = idempotency_key {
                if !container["env"].is_array() {
                    container["env"] = json!([]);
                }
                if let Some(env) = container["env"].as_array_mut()
                    && !env.iter().any(|e| e["name"] == IDEMPOTENCY_ENV)
                {
                    env.push(json!({"name": IDEMPOTENCY_ENV, "value": key}));
                    changes.push(format!("{at}.env {IDEMPOTENCY_ENV}"));
                }
            }
            if container
                .pointer("/securityContext/privileged")
                .and_then(Value::as_bool)
                == Some(true)
            {
                conflicts.push(format!("{at}.securityContext.privileged is true"));
            }
            if !restricted {
                continue;
            }
            if !container["securityContext"].is_object() {
                container["securityContext"] = json!({});
            }
            let context = &mut container["securityContext"];
            if context.get("runAsUser").and_then(Value::as_i64) == Some(0) {
                conflicts.push(format!("{at} runs as root (securityContext.runAsUser 0)"));
            }
            if context.get("runAsNonRoot").and_then(Value::as_bool) == Some(false) {
                conflicts.push(format!("{at}.securityContext.runAsNonRoot is false"));
            }
            if context
                .get("allowPrivilegeEscalation")
                .and_then(Value::as_bool)
                == Some(true)
            {
                conflicts.push(format!(
                    "{at}.securityContext.allowPrivilegeEscalation is true"
                ));
            }
            set_default(
                context,
                "allowPrivilegeEscalation",
                json!(false),
                format!("{at}.allowPrivilegeEscalation false"),
                &mut changes,
            );
            let added: Vec<String> = context
                .pointer("/capabilities/add")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str())
                .filter(|c| *c != "NET_BIND_SERVICE")
                .map(str::to_owned)
                .collect();
            if !added.is_empty() {
                conflicts.push(format!("{at} adds capabilities {}", added.join(", ")));
            }
            if !context["capabilities"].is_object() {
                context["capabilities"] = json!({});
            }
            let drop = &mut context["capabilities"]["drop"];
            if !drop.is_array() {
                *drop = json!([]);
            }
            if let Some(list) = drop.as_array_mut()
                && !list.iter().any(|c| c == "ALL")
            {
                list.push(json!("ALL"));
                changes.push(format!("{at}.capabilities drop ALL"));
            }
            if read_only {
                if context
                    .get("readOnlyRootFilesystem")
                    .and_then(Value::as_bool)
                    == Some(false)
                {
                    conflicts.push(format!(
                        "{at}.securityContext.readOnlyRootFilesystem is false"
                    ));
                }
                set_default(
                    context,
                    "readOnlyRootFilesystem",
                    json!(true),
                    format!("{at}.readOnlyRootFilesystem"),
                    &mut changes,
                );
            }
        }
    }
    Mutation {
        pod,
        changes,
        conflicts,
    }
}

/// The idempotency key of a CronJob run from its Job's name (`<cronjob>-<scheduled
/// minute>`): `<namespace>/<cronjob>/<scheduled time>`, the same for every retry and pod of
/// the run, different for every run.
pub fn idempotency_key(namespace: &str, job: &str) -> Option<String> {
    let (cronjob, minute) = job.rsplit_once('-')?;
    let minute: i64 = minute.parse().ok()?;
    let time = jiff::Timestamp::from_second(minute.checked_mul(60)?).ok()?;
    Some(format!("{namespace}/{cronjob}/{time}"))
}

/// Annotation on a pod (or its template) asking for the collector sidecar of the
/// `TelemetryPipeline` it names (same namespace).
pub const SIDECAR_REQUEST_ANNOTATION: &str = "vigil.io/telemetry-pipeline";
/// Annotation the webhook sets on pods that asked for a sidecar: what it injected, or why
/// it could not.
pub const SIDECAR_ANNOTATION: &str = "vigil.io/telemetry-sidecar";
/// What an injected sidecar's neighbours get, unless they set it: where OTLP SDKs export.
pub const OTLP_ENDPOINT_ENV: (&str, &str) =
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318");

/// Adds `collector` as a native sidecar (the first init container, `restartPolicy:
/// Always`, so that it starts before the app and stops after it) with its configuration
/// `volume`, and points the app containers' OTLP SDKs at it. Nothing when the pod already
/// has it. Returns what changed.
pub fn inject_collector(pod: &mut Value, mut collector: Value, volume: Value) -> Vec<String> {
    let mut changes = Vec::new();
    let name = collector["name"].as_str().unwrap_or_default().to_owned();
    let spec = &mut pod["spec"];
    if !spec.is_object() {
        return changes;
    }
    let present = ["initContainers", "containers"].iter().any(|list| {
        spec[*list]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == name.as_str()))
    });
    if present {
        return changes;
    }
    collector["restartPolicy"] = json!("Always");
    if !spec["initContainers"].is_array() {
        spec["initContainers"] = json!([]);
    }
    if let Some(init) = spec["initContainers"].as_array_mut() {
        init.insert(0, collector);
    }
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    if let Some(volumes) = spec["volumes"].as_array_mut() {
        volumes.push(volume);
    }
    changes.push(format!("sidecar {name} added"));
    for container in spec["containers"].as_array_mut().into_iter().flatten() {
        let has = container["env"]
            .as_array()
            .is_some_and(|env| env.iter().any(|e| e["name"] == OTLP_ENDPOINT_ENV.0));
        if has {
            continue;
        }
        if !container["env"].is_array() {
            container["env"] = json!([]);
        }
        if let Some(env) = container["env"].as_array_mut() {
            env.push(json!({"name": OTLP_ENDPOINT_ENV.0, "value": OTLP_ENDPOINT_ENV.1}));
        }
        changes.push(format!(
            "{}: {}={}",
            container["name"].as_str().unwrap_or_default(),
            OTLP_ENDPOINT_ENV.0,
            OTLP_ENDPOINT_ENV.1
        ));
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(isolation: Value) -> SupervisedWorkload {
        serde_json::from_value(
            json!({"apiVersion": "vigil.io/v1alpha1", "kind": "SupervisedWorkload",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"target": {"kind": "Deployment", "name": "orders"}, "isolation": isolation}}),
        )
        .expect("valid")
    }

    #[test]
    fn restricted_hardens_what_is_unset_and_reports_conflicts() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "image": "orders"},
            {"name": "legacy", "image": "old", "securityContext": {"runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}},
             "resources": {"limits": {"memory": "1Gi"}}}]}});
        let m = mutate(
            &pod,
            &workload(json!({"profile": "restricted", "readOnlyRootFilesystem": true})),
            None,
        );
        let app = &m.pod["spec"]["containers"][0];
        assert_eq!(m.pod["spec"]["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            m.pod["spec"]["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        assert_eq!(app["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(
            app["securityContext"]["capabilities"]["drop"],
            json!(["ALL"])
        );
        assert_eq!(app["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(app["terminationMessagePolicy"], "FallbackToLogsOnError");
        assert_eq!(app["resources"]["requests"]["cpu"], "100m");
        // The legacy container keeps its root user and its capability, reported.
        let legacy = &m.pod["spec"]["containers"][1];
        assert_eq!(legacy["securityContext"]["runAsUser"], 0);
        assert_eq!(legacy["resources"], json!({"limits": {"memory": "1Gi"}}));
        assert_eq!(
            m.conflicts,
            [
                "containers[legacy] runs as root (securityContext.runAsUser 0)",
                "containers[legacy] adds capabilities NET_ADMIN"
            ]
        );
        // Applying it again changes nothing: the webhook is idempotent.
        let again = mutate(
            &m.pod,
            &workload(json!({"profile": "restricted", "readOnlyRootFilesystem": true})),
            None,
        );
        assert!(again.changes.is_empty(), "{:?}", again.changes);
    }

    #[test]
    fn baseline_and_none() {
        let pod = json!({"spec": {"hostNetwork": true, "containers": [{"name": "app"}]}});
        let m = mutate(
            &pod,
            &workload(json!({"profile": "baseline"})),
            Some("shop/report/2026-11-27T08:00:00Z"),
        );
        assert!(m.pod["spec"].get("securityContext").is_none());
        assert_eq!(
            m.pod["spec"]["containers"][0]["env"][0]["name"],
            IDEMPOTENCY_ENV
        );
        assert_eq!(m.conflicts, ["spec.hostNetwork is true"]);
        let none = mutate(&pod, &workload(json!({"profile": "none"})), None);
        assert_eq!(none.pod, pod);
    }

    #[test]
    fn idempotency_keys_come_from_the_scheduled_minute() {
        assert_eq!(
            idempotency_key("shop", "nightly-report-29561040").as_deref(),
            Some("shop/nightly-report/2026-03-16T12:00:00Z")
        );
        assert_eq!(idempotency_key("shop", "manual"), None);
    }

    #[test]
    fn the_sidecar_goes_first_once_and_apps_keep_their_own_endpoint() {
        let mut pod = json!({"spec": {
        "initContainers": [{"name": "migrate"}],
        "containers": [
            {"name": "app"},
            {"name": "proxy", "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://gw:4318"}]},
        ]}});
        let changes = inject_collector(
            &mut pod,
            json!({"name": "otelcol"}),
            json!({"name": "vigil-otelcol-config", "configMap": {"name": "c-1"}}),
        );
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert_eq!(pod["spec"]["initContainers"][0]["name"], "otelcol");
        assert_eq!(pod["spec"]["initContainers"][0]["restartPolicy"], "Always");
        assert_eq!(pod["spec"]["initContainers"][1]["name"], "migrate");
        assert_eq!(
            pod["spec"]["containers"][1]["env"][0]["value"],
            "http://gw:4318"
        );
        let again = inject_collector(&mut pod.clone(), json!({"name": "otelcol"}), json!({}));
        assert!(again.is_empty(), "a reinvocation adds nothing");
    }
}
