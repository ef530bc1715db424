//! The actions of `vigil` on a running fleet: `renew`, `breaker open|close|clear`,
//! `config history|diff|rollback`. Each action is a request written on the object (an
//! annotation the controller answers once, in status and an Event), never a change made
//! around the controller. Choosing and printing is pure and tested without a cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource};

use crate::api::AcmeCertificate;
use crate::api::supervised_workload::{
    BREAKER_OVERRIDE_ANNOTATION, BreakerOverride, CONFIG_ROLLBACK_ANNOTATION, ConfigRevision,
    ConfigRollback, OverrideAction, SupervisedWorkload,
};
use crate::fleet::{list, place, refused, scoped};

/// The field manager of the requests `vigil` writes.
const FIELD_MANAGER: &str = "vigil-cli";

/// Sets (or with `None`, removes) annotation `key` of an object, naming what was refused.
async fn annotate<K>(
    api: &Api<K>,
    namespace: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> anyhow::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(name, &params, &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|error| not_found_or_refused::<K>(&error, "patch", namespace, name))
}

fn not_found_or_refused<K: Resource<DynamicType = ()>>(
    error: &kube::Error,
    verb: &str,
    namespace: &str,
    name: &str,
) -> anyhow::Error {
    match error {
        kube::Error::Api(status) if status.code == 404 => {
            anyhow::anyhow!("{} {name} not found in namespace {namespace}", K::kind(&()))
        }
        _ => refused(
            error,
            verb,
            &format!("{}.{}", K::plural(&()), K::group(&())),
            &place(Some(namespace)),
        ),
    }
}

/// `vigil renew`: asks the controller to issue `names` (every certificate of the namespace
/// when empty and `all`) now, through the annotation it honours. Returns one line each.
pub async fn request_renewal(
    client: &Client,
    namespace: Option<&str>,
    names: &[String],
) -> anyhow::Result<Vec<String>> {
    let now = Timestamp::now().to_string();
    let targets: Vec<(String, String)> = if names.is_empty() {
        list::<AcmeCertificate>(scoped(client, namespace), &place(namespace))
            .await?
            .into_iter()
            .map(|c| {
                (
                    c.meta().namespace.clone().unwrap_or_default(),
                    c.meta().name.clone().unwrap_or_default(),
                )
            })
            .collect()
    } else {
        let namespace = namespace.unwrap_or("default");
        names
            .iter()
            .map(|n| (namespace.to_owned(), n.clone()))
            .collect()
    };
    let mut lines = Vec::new();
    for (namespace, name) in targets {
        let api: Api<AcmeCertificate> = Api::namespaced(client.clone(), &namespace);
        annotate(
            &api,
            &namespace,
            &name,
            crate::api::acme_certificate::RENEW_ANNOTATION,
            Some(&now),
        )
        .await?;
        lines.push(format!(
            "{namespace}/{name}: renewal requested at {now}; watch it with vigil status acmecert/{name} -n {namespace}"
        ));
    }
    Ok(lines)
}

async fn workload(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<SupervisedWorkload> {
    let api: Api<SupervisedWorkload> = Api::namespaced(client.clone(), namespace);
    api.get(name)
        .await
        .map_err(|error| not_found_or_refused::<SupervisedWorkload>(&error, "get", namespace, name))
}

/// `vigil breaker open|close WORKLOAD --reason` (`action` set) or `vigil breaker clear`
/// (`None`): writes the override the controller applies, or removes it.
pub async fn override_breaker(
    client: &Client,
    namespace: &str,
    name: &str,
    action: Option<OverrideAction>,
    reason: &str,
) -> anyhow::Result<String> {
    let object = workload(client, namespace, name).await?;
    if object.spec.circuit_breaker.is_none() {
        anyhow::bail!(
            "SupervisedWorkload {namespace}/{name} has no breaker to override: spec.circuitBreaker is not set"
        );
    }
    let api: Api<SupervisedWorkload> = Api::namespaced(client.clone(), namespace);
    let watch = format!("watch it with vigil status sw/{name} -n {namespace}");
    let Some(action) = action else {
        annotate(&api, namespace, name, BREAKER_OVERRIDE_ANNOTATION, None).await?;
        return Ok(format!(
            "{namespace}/{name}: override cleared; the breaker runs by itself again; {watch}"
        ));
    };
    let request = BreakerOverride {
        action,
        reason: non_empty(reason)?,
        requested_at: Timestamp::now().to_string(),
        applied_at: None,
    };
    let value = serde_json::to_string(&request)?;
    annotate(
        &api,
        namespace,
        name,
        BREAKER_OVERRIDE_ANNOTATION,
        Some(&value),
    )
    .await?;
    Ok(format!(
        "{namespace}/{name}: breaker {} requested at {}; {watch}",
        match action {
            OverrideAction::Open => "open",
            OverrideAction::Close => "close",
        },
        request.requested_at
    ))
}

fn non_empty(reason: &str) -> anyhow::Result<String> {
    match reason.trim() {
        "" => anyhow::bail!("--reason must say why: it is kept in status and the Event"),
        reason => Ok(reason.to_owned()),
    }
}

/// The config revisions Vigil keeps for a workload, newest first.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// The source ConfigMap the revisions are taken from.
    pub source: String,
    /// The revision the workload runs.
    pub active: Option<String>,
    /// The kept revisions, newest first.
    pub revisions: Vec<ConfigRevision>,
    /// The last rollback asked for by hand and its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<ConfigRollback>,
}

/// `vigil config history WORKLOAD`.
pub async fn config_history(
    client: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<History> {
    let object = workload(client, namespace, name).await?;
    history(&object, namespace)
}

fn history(object: &SupervisedWorkload, namespace: &str) -> anyhow::Result<History> {
    let Some(config) = &object.spec.config else {
        anyhow::bail!(
            "SupervisedWorkload {namespace}/{} has no config reload: spec.config is not set",
            object.meta().name.as_deref().unwrap_or_default()
        );
    };
    let status = object.status.clone().unwrap_or_default();
    Ok(History {
        source: config.config_map_name.clone(),
        active: status.config_revision,
        revisions: status.config_revisions,
        rollback: status.config_rollback,
    })
}

/// The history as a table: one revision per line, newest first.
pub fn render_history(history: &History) -> String {
    let mut out = format!("source ConfigMap {}\n", history.source);
    if history.revisions.is_empty() {
        out.push_str("no revision yet\n");
        return out;
    }
    let width = history
        .revisions
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(0)
        .max("REVISION".len());
    let _ = writeln!(
        out,
        "{:<width$}  {:<10}  {:<20}  CHANGE",
        "REVISION", "STATE", "SWITCHED"
    );
    for revision in &history.revisions {
        let _ = writeln!(
            out,
            "{:<width$}  {:<10}  {:<20}  {}",
            revision.name, revision.state, revision.switched_at, revision.change
        );
    }
    if let Some(rollback) = &history.rollback {
        let _ = writeln!(
            out,
            "last rollback by hand: to {} at {} ({}): {}",
            rollback.revision,
            rollback.requested_at,
            rollback.reason,
            rollback.outcome.as_deref().unwrap_or("not answered yet")
        );
    }
    out
}

/// Finds a kept revision by its name, or by the hash after `<source>-`.
fn resolve<'a>(history: &'a History, wanted: &str) -> anyhow::Result<&'a ConfigRevision> {
    history
        .revisions
        .iter()
        .find(|r| r.name == wanted || r.name == format!("{}-{wanted}", history.source))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "revision {wanted} is not kept; kept: {}",
                history
                    .revisions
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The revision a rollback goes back to by default, as the automatic rollback does: the
/// newest `Superseded` one.
fn previous(history: &History) -> anyhow::Result<&ConfigRevision> {
    history
        .revisions
        .iter()
        .find(|r| r.state == "Superseded")
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no Superseded revision is kept to go back to; vigil config history lists them"
            )
        })
}

/// The two revisions `vigil config diff` compares: as named, else the one a rollback
/// would go back to and the active one (what a rollback would undo).
fn pair<'a>(
    history: &'a History,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<(&'a ConfigRevision, &'a ConfigRevision)> {
    let active = history
        .active
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no revision runs yet"))?;
    let to = resolve(history, to.unwrap_or(active))?;
    let from = match from {
        Some(from) => resolve(history, from)?,
        None => previous(history)?,
    };
    Ok((from, to))
}

/// A unified diff of two revisions' data, key by key.
pub fn diff(
    from: (&str, &BTreeMap<String, String>),
    to: (&str, &BTreeMap<String, String>),
) -> String {
    let mut out = String::new();
    let keys: std::collections::BTreeSet<&String> = from.1.keys().chain(to.1.keys()).collect();
    for key in keys {
        let (old, new) = (
            from.1.get(key).map_or("", String::as_str),
            to.1.get(key).map_or("", String::as_str),
        );
        if old == new {
            continue;
        }
        let text = similar::TextDiff::from_lines(old, new);
        let _ = write!(
            out,
            "{}",
            text.unified_diff()
                .context_radius(3)
                .header(&format!("{}/{key}", from.0), &format!("{}/{key}", to.0))
                .missing_newline_hint(true)
        );
    }
    if out.is_empty() {
        out = format!("{} and {} hold the same data\n", from.0, to.0);
    }
    out
}

/// `vigil config diff WORKLOAD [FROM] [TO]`.
pub async fn config_diff(
    client: &Client,
    namespace: &str,
    name: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> anyhow::Result<String> {
    let history = config_history(client, namespace, name).await?;
    let (from, to) = pair(&history, from, to)?;
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    let mut data = Vec::new();
    for revision in [from, to] {
        let config_map = config_maps.get(&revision.name).await.map_err(|error| {
            not_found_or_refused::<k8s_openapi::api::core::v1::ConfigMap>(
                &error,
                "get",
                namespace,
                &revision.name,
            )
        })?;
        data.push(config_map.data.unwrap_or_default());
    }
    Ok(diff((&from.name, &data[0]), (&to.name, &data[1])))
}

/// `vigil config rollback WORKLOAD [--to REVISION] --reason`: asks for a switch back to a
/// kept revision (by default the newest `Superseded` one).
pub async fn request_rollback(
    client: &Client,
    namespace: &str,
    name: &str,
    to: Option<&str>,
    reason: &str,
) -> anyhow::Result<String> {
    let reason = non_empty(reason)?;
    let object = workload(client, namespace, name).await?;
    let history = history(&object, namespace)?;
    let target = match to {
        Some(to) => resolve(&history, to)?,
        None => previous(&history)?,
    };
    if history.active.as_deref() == Some(target.name.as_str()) {
        anyhow::bail!("{namespace}/{name} already runs {}", target.name);
    }
    let request = ConfigRollback {
        revision: target.name.clone(),
        reason,
        requested_at: Timestamp::now().to_string(),
        outcome: None,
    };
    let api: Api<SupervisedWorkload> = Api::namespaced(client.clone(), namespace);
    let value = serde_json::to_string(&request)?;
    annotate(
        &api,
        namespace,
        name,
        CONFIG_ROLLBACK_ANNOTATION,
        Some(&value),
    )
    .await?;
    Ok(format!(
        "{namespace}/{name}: rollback to {} requested at {}; watch it with vigil config history {name} -n {namespace}",
        target.name, request.requested_at
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let revision = |hash: &str, state: &str, change: &str| ConfigRevision {
            name: format!("orders-config-{hash}"),
            hash: hash.to_owned(),
            switched_at: "2026-12-07T10:00:00Z".to_owned(),
            state: state.to_owned(),
            change: change.to_owned(),
        };
        History {
            source: "orders-config".to_owned(),
            active: Some("orders-config-c3".to_owned()),
            revisions: vec![
                revision("d4", "RolledBack", "~port: 8080 -> 9090"),
                revision("c3", "Active", "~mode: safe -> fast"),
                revision("b2", "Superseded", "+mode"),
                revision("a1", "Superseded", "first revision"),
            ],
            rollback: None,
        }
    }

    #[test]
    fn revisions_are_found_by_name_or_hash_and_diff_defaults_to_what_a_rollback_undoes() {
        let history = history();
        assert_eq!(
            resolve(&history, "b2").map(|r| r.name.as_str()).ok(),
            Some("orders-config-b2")
        );
        assert_eq!(
            resolve(&history, "orders-config-a1")
                .map(|r| r.name.as_str())
                .ok(),
            Some("orders-config-a1")
        );
        let missing = resolve(&history, "ff").err().map(|e| e.to_string());
        assert_eq!(
            missing.as_deref(),
            Some(
                "revision ff is not kept; kept: orders-config-d4, orders-config-c3, orders-config-b2, orders-config-a1"
            )
        );
        let (from, to) = pair(&history, None, None).expect("a pair");
        assert_eq!(
            (from.name.as_str(), to.name.as_str()),
            ("orders-config-b2", "orders-config-c3")
        );
        let (from, to) = pair(&history, Some("a1"), Some("d4")).expect("a pair");
        assert_eq!(
            (from.name.as_str(), to.name.as_str()),
            ("orders-config-a1", "orders-config-d4")
        );
        // Nothing to go back to: said, not guessed.
        let mut first = history.clone();
        first.revisions.retain(|r| r.state != "Superseded");
        let none = pair(&first, None, None).err().map(|e| e.to_string());
        assert_eq!(
            none.as_deref(),
            Some("no Superseded revision is kept to go back to; vigil config history lists them")
        );
    }

    #[test]
    fn the_history_and_the_diff_read_as_people_expect() {
        let mut history = history();
        history.rollback = Some(ConfigRollback {
            revision: "orders-config-c3".to_owned(),
            reason: "9090 is firewalled".to_owned(),
            requested_at: "2026-12-07T11:00:00Z".to_owned(),
            outcome: Some("Switched".to_owned()),
        });
        insta::assert_snapshot!(render_history(&history));
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let from = data(&[
            ("app.yaml", "port: 8080\nmode: safe\nworkers: 4\n"),
            ("gone.txt", "x\n"),
        ]);
        let to = data(&[
            ("app.yaml", "port: 8080\nmode: fast\nworkers: 4\n"),
            ("new.txt", "y\n"),
        ]);
        insta::assert_snapshot!(diff(("orders-config-b2", &from), ("orders-config-c3", &to)));
        assert_eq!(
            diff(("a", &from), ("b", &from)),
            "a and b hold the same data\n"
        );
    }
}
