//! Finalizers: added before an object writes anything it must take back, removed once it
//! has. Both changes are JSON patches that `test` the list they change, so a concurrent
//! change of the finalizers makes them fail and retry, while status writes in between do
//! not.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use super::Error;

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
