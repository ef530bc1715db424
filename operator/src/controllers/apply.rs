//! Server-side apply of owned children: one field manager, owner references, labels.

use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client, Resource, ResourceExt};

use super::status::FIELD_MANAGER;

/// Label set on every object Vigil creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "vigil";

/// Marks `child` as owned by `owner` and managed by Vigil: a controller owner reference (so
/// that deleting the owner deletes the child) and the `app.kubernetes.io/managed-by` label.
pub fn own<O: Resource<DynamicType = ()>>(owner: &O, child: &mut DynamicObject) {
    if let Some(reference) = owner.controller_owner_ref(&()) {
        let refs = child.metadata.owner_references.get_or_insert_with(Vec::new);
        refs.retain(|r| r.uid != reference.uid);
        refs.push(reference);
    }
    child
        .labels_mut()
        .insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
}

/// Applies `child` (owned by `owner`) with server-side apply under the `vigil` field
/// manager, taking over fields another manager set: Vigil is the source of truth for what
/// it renders. When the object already holds every rendered field, nothing is written: a
/// resync of an unchanged object costs one read, not a write.
pub async fn apply_owned<O: Resource<DynamicType = ()>>(
    client: &Client,
    owner: &O,
    mut child: DynamicObject,
) -> Result<DynamicObject, kube::Error> {
    own(owner, &mut child);
    let api = dynamic_api(client, &child)?;
    let name = child.name_any();
    if let Some(current) = api.get_opt(&name).await?
        && holds(&current, &child)
    {
        return Ok(current);
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&child),
    )
    .await
}

/// The API of `object`'s kind, in its namespace when it has one.
pub fn dynamic_api(
    client: &Client,
    object: &DynamicObject,
) -> Result<Api<DynamicObject>, kube::Error> {
    let types = object.types.clone().unwrap_or_default();
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| {
        kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(e.to_string()))
    })?;
    let resource = ApiResource::from_gvk(&gvk);
    Ok(match object.namespace() {
        Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

/// Annotation holding the hash of what Vigil last applied to an object it does not own
/// through an owner reference (objects in member clusters).
pub const APPLIED_HASH_ANNOTATION: &str = "vigil.io/applied-hash";

/// Applies `object` with server-side apply under `manager`, unless the object already
/// carries the hash of this exact content in [`APPLIED_HASH_ANNOTATION`]. For objects
/// whose live form the API server fills with defaults (Deployments, Services), where
/// comparing fields would see a change on every resync. Returns the live object.
pub async fn apply_hashed(
    client: &Client,
    manager: &str,
    object: serde_json::Value,
) -> Result<DynamicObject, kube::Error> {
    let hash = crate::hash::short_hash(object.to_string().as_bytes());
    let mut object: DynamicObject =
        serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
    object
        .annotations_mut()
        .insert(APPLIED_HASH_ANNOTATION.to_owned(), hash.clone());
    let api = dynamic_api(client, &object)?;
    let name = object.name_any();
    if let Some(current) = api.get_opt(&name).await?
        && current.annotations().get(APPLIED_HASH_ANNOTATION) == Some(&hash)
    {
        return Ok(current);
    }
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&object),
    )
    .await
}

/// True when `current` already has every field of `desired`: the same content, labels and
/// owner references included.
pub fn holds(current: &DynamicObject, desired: &DynamicObject) -> bool {
    let labels_held = desired
        .labels()
        .iter()
        .all(|(k, v)| current.labels().get(k) == Some(v));
    let owners_held = desired.owner_references().iter().all(|o| {
        current
            .owner_references()
            .iter()
            .any(|c| c.uid == o.uid && c.controller == o.controller)
    });
    let content_held = match desired.data.as_object() {
        Some(fields) => fields
            .iter()
            .all(|(key, value)| current.data.get(key) == Some(value)),
        None => desired.data.is_null(),
    };
    labels_held && owners_held && content_held
}

/// Deletes `name` (dependents in the background); one already gone is no error.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // A read first: a reconcile that finds nothing to delete writes nothing (a DELETE
    // answered 404 is still a write request the API server handles and audits).
    if api.get_metadata_opt(name).await?.is_none() {
        return Ok(());
    }
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
