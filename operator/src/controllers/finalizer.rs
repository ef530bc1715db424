//! Finalizers: added before an object writes anything it must take back, removed once it
//! has. Both changes are JSON patches that `test` the list they change, so a concurrent
//! change of the finalizers makes them fail and retry, while status writes in between do
//! not.

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use super::Error;
use crate::api::MemberCluster;
use crate::inventory::Inventory;

/// Whether `object` carries `finalizer`.
pub fn has<K: Resource>(object: &K, finalizer: &str) -> bool {
    object.finalizers().iter().any(|f| f == finalizer)
}

/// Adds `finalizer` to `object` unless it is there.
pub async fn ensure<K>(object: &K, api: &Api<K>, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if has(object, finalizer) {
        return Ok(());
    }
    let patch = if object.meta().finalizers.is_none() {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ])
    } else {
        serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": object.finalizers()},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ])
    };
    match patch_finalizers(object, api, patch).await {
        // The `test` failed: the list changed since this copy was read (often our own add,
        // not yet in the watch cache). Done if the finalizer is there now.
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 422 => {
            let fresh = api.get(&object.name_any()).await?;
            if has(&fresh, finalizer) {
                Ok(())
            } else {
                Err(Error::Kube(kube::Error::Api(status)))
            }
        }
        other => other,
    }
}

/// Removes `finalizer` from `object`, which lets a deleted object go.
pub async fn remove<K>(object: &K, api: &Api<K>, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(index) = object.finalizers().iter().position(|f| f == finalizer) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch = serde_json::json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]);
    match patch_finalizers(object, api, patch).await {
        // The list changed since this copy was read: done if ours is gone already.
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 422 => {
            match api.get_opt(&object.name_any()).await? {
                Some(fresh) if has(&fresh, finalizer) => Err(Error::Kube(kube::Error::Api(status))),
                _ => Ok(()),
            }
        }
        other => other,
    }
}

/// Lets an object that wrote into member clusters go: runs `clean_up` in each of
/// `clusters` whose MemberCluster still exists (one that no longer does cannot be reached
/// and is skipped), then removes `finalizer`. While a cluster fails, the object stays and
/// the error names each failed cluster and why.
pub async fn release_after_clean_up<'a, K, F, Fut>(
    object: &K,
    api: &Api<K>,
    finalizer: &str,
    inventory: &'a Inventory,
    clusters: &[String],
    clean_up: F,
) -> Result<Action, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&'a MemberCluster) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    if !has(object, finalizer) {
        return Ok(Action::await_change());
    }
    let mut failures = Vec::new();
    for cluster in clusters {
        let Some(member) = inventory.member_cluster(cluster) else {
            continue;
        };
        if let Err(error) = clean_up(member).await {
            failures.push(format!("{cluster}: {error}"));
        }
    }
    if !failures.is_empty() {
        return Err(Error::Cleanup(failures.join("; ")));
    }
    remove(object, api, finalizer).await?;
    Ok(Action::await_change())
}

/// The clusters of `spec` followed by those only `status` still names (taken out of the
/// spec, not cleaned up yet).
pub fn spec_and_status_clusters<'a>(
    spec: &[String],
    status: impl IntoIterator<Item = &'a String>,
) -> Vec<String> {
    let mut clusters = spec.to_vec();
    for cluster in status {
        if !clusters.contains(cluster) {
            clusters.push(cluster.clone());
        }
    }
    clusters
}

async fn patch_finalizers<K>(
    object: &K,
    api: &Api<K>,
    patch: serde_json::Value,
) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await?;
    Ok(())
}
