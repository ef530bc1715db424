//! The ConfigMaps Vigil writes, watched: a child deleted, or changed by anyone but Vigil,
//! wakes the object that owns it at once, so that it is repaired now rather than at the
//! next periodic requeue (an SLO's rule file, a TelemetryPipeline's configuration).
//!
//! One metadata-only watch of every ConfigMap serves every kind that reacts to
//! ConfigMaps: [`ConfigMaps::subscribe`] hands each its own stream of the same events
//! (a `SupervisedWorkload`'s config source is one).

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::status::FIELD_MANAGER;

/// A ConfigMap that was listed, created, changed or deleted (its metadata).
#[derive(Clone, Debug)]
pub struct ConfigMapEvent {
    /// Its metadata, as last seen.
    pub meta: Arc<PartialObjectMeta<ConfigMap>>,
    /// Whether it is gone.
    pub deleted: bool,
}

/// The shared watch. Events beyond the buffer of a slow subscriber are dropped for it, with
/// a warning: the periodic requeue repairs what they would have triggered.
#[derive(Debug)]
pub struct ConfigMaps {
    sender: broadcast::Sender<ConfigMapEvent>,
}

const BUFFER: usize = 4096;

impl Default for ConfigMaps {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BUFFER).0,
        }
    }
}

impl ConfigMaps {
    /// The events from now on, for one subscriber. Subscribe before [`ConfigMaps::run`].
    pub fn subscribe(&self) -> BoxStream<'static, ConfigMapEvent> {
        futures::stream::unfold(self.sender.subscribe(), |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((event, receiver)),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "ConfigMap events dropped for a slow controller; the periodic requeue covers them"
                        );
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }

    /// Watches every ConfigMap's metadata until `shutdown` resolves.
    pub async fn run(self, client: Client, shutdown: impl Future<Output = ()>) {
        // `Api<PartialObjectMeta<_>>` lists and watches metadata only.
        let api: Api<PartialObjectMeta<ConfigMap>> = Api::all(client);
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let forward = async {
            while let Some(event) = events.next().await {
                let (meta, deleted) = match event {
                    Ok(watcher::Event::Apply(meta) | watcher::Event::InitApply(meta)) => {
                        (meta, false)
                    }
                    Ok(watcher::Event::Delete(meta)) => (meta, true),
                    Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "ConfigMap watch failed; retrying");
                        continue;
                    }
                };
                // No subscriber is not an error: the controllers may be stopping.
                let _ = self.sender.send(ConfigMapEvent {
                    meta: Arc::new(meta),
                    deleted,
                });
            }
        };
        tokio::select! {
            () = forward => {}
            () = shutdown => {}
        }
    }
}

/// The owners of kind `K` to wake for `events`: the controller owner of each ConfigMap
/// that was deleted, or last written by someone other than Vigil. Vigil's own writes wake
/// nobody, so that applying a child does not reconcile its owner a second time.
pub fn owner_triggers<K>(
    events: BoxStream<'static, ConfigMapEvent>,
) -> BoxStream<'static, ObjectRef<DeserializeGuard<K>>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    DeserializeGuard<K>: Resource<DynamicType = ()>,
{
    events
        .filter_map(|event| async move {
            if !event.deleted && last_written_by_vigil(event.meta.as_ref()) {
                return None;
            }
            let namespace = event.meta.namespace()?;
            let owner = event.meta.owner_references().iter().find(|o| {
                o.controller == Some(true)
                    && o.kind == K::kind(&())
                    && o.api_version == K::api_version(&())
            })?;
            tracing::debug!(
                kind = %K::kind(&()),
                owner = owner.name,
                child = event.meta.name_any(),
                deleted = event.deleted,
                "a child changed: reconciling its owner"
            );
            Some(ObjectRef::new(&owner.name).within(&namespace))
        })
        .boxed()
}

/// Whether the newest entries of `meta`'s managed fields are all Vigil's: the object is as
/// Vigil last applied it. Their times have a resolution of one second, so another writer
/// in the same second as Vigil counts (the owner is reconciled once more, a no-op when
/// nothing changed). An object with no managed fields is nobody's (false).
fn last_written_by_vigil<K: Resource>(meta: &K) -> bool {
    let fields = meta.meta().managed_fields.as_deref().unwrap_or_default();
    let newest = fields.iter().filter_map(|f| f.time.as_ref()).max();
    let mut latest = fields
        .iter()
        .filter(|f| f.time.as_ref() == newest)
        .peekable();
    latest.peek().is_some() && latest.all(|f| f.manager.as_deref() == Some(FIELD_MANAGER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ServiceLevelObjective;

    fn config_map(owner_kind: &str, fields: serde_json::Value) -> PartialObjectMeta<ConfigMap> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "checkout-slo-rules", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "vigil.io/v1alpha1", "kind": owner_kind,
                    "name": "checkout", "uid": "u", "controller": true}],
                "managedFields": fields},
        }))
        .expect("metadata")
    }

    fn entry(manager: &str, time: &str) -> serde_json::Value {
        serde_json::json!({"manager": manager, "operation": "Apply", "time": time,
            "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {}})
    }

    async fn woken(meta: PartialObjectMeta<ConfigMap>, deleted: bool) -> Vec<String> {
        let events = futures::stream::iter([ConfigMapEvent {
            meta: Arc::new(meta),
            deleted,
        }])
        .boxed();
        owner_triggers::<ServiceLevelObjective>(events)
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_child_deleted_or_edited_by_others_wakes_its_owner_and_vigils_own_write_does_not() {
        let ours = serde_json::json!([entry(FIELD_MANAGER, "2026-12-07T10:00:00Z")]);
        let edited = serde_json::json!([
            entry(FIELD_MANAGER, "2026-12-07T10:00:00Z"),
            entry("kubectl-edit", "2026-12-07T10:05:00Z"),
        ]);
        let repaired = serde_json::json!([
            entry("kubectl-edit", "2026-12-07T10:05:00Z"),
            entry(FIELD_MANAGER, "2026-12-07T10:05:01Z"),
        ]);
        let slo = "ServiceLevelObjective";
        assert!(woken(config_map(slo, ours.clone()), false).await.is_empty());
        assert_eq!(woken(config_map(slo, ours), true).await, ["shop/checkout"]);
        assert_eq!(
            woken(config_map(slo, edited), false).await,
            ["shop/checkout"]
        );
        assert!(woken(config_map(slo, repaired), false).await.is_empty());
        // An edit in the same second as Vigil's write: the owner looks again.
        let same_second = serde_json::json!([
            entry(FIELD_MANAGER, "2026-12-07T10:05:00Z"),
            entry("kubectl-edit", "2026-12-07T10:05:00Z"),
        ]);
        assert_eq!(
            woken(config_map(slo, same_second), false).await,
            ["shop/checkout"]
        );
        // Another kind's child, or one with no controller owner, wakes no SLO.
        let other = serde_json::json!([entry("kubectl-edit", "2026-12-07T10:05:00Z")]);
        assert!(
            woken(config_map("TelemetryPipeline", other), true)
                .await
                .is_empty()
        );
    }
}
