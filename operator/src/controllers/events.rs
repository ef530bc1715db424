//! Events about reconciled objects (`events.k8s.io/v1`). The same Event about the same
//! object again within [`SERIES_TTL`] does not create a new object: it counts in the first
//! one's `series`, as client-go's recorder does.
//!
//! kube-runtime's `Recorder` does the same, but keeps a whole copy of every Event it
//! published in the last six minutes (about 4 KiB each, in a table that only grows): at
//! 10,000 objects that was half of the operator's heap. Here each Event remembered is a
//! 64-bit key, its name, a count and a time, and at most [`REMEMBERED`] of them are kept.
//! The note is part of the key: a repeat with another message is a new Event, so that
//! `kubectl describe` never shows a stale message with a fresh count.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};

/// How long a published Event can be continued by a repeat.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// At most this many Events are remembered for repeats; the oldest is forgotten first.
pub const REMEMBERED: usize = 4096;
/// The action of every Event Vigil publishes.
const ACTION: &str = "Reconcile";

/// An Event published recently, for its repeats.
#[derive(Debug)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events for one controller manager.
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<HashMap<u64, Published>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder reporting as `controller` (`reportingController`) from `instance` (the
    /// pod: `reportingInstance`).
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            published: Mutex::default(),
        }
    }

    /// Publishes an Event about `regarding` in its namespace (`default` for cluster-scoped
    /// objects): a new Event, or the next of a series when the same one was published
    /// within [`SERIES_TTL`].
    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let key = key(type_, reason, note, regarding);
        let now = Timestamp::now();
        if let Some((name, count)) = self.repeat(key, now) {
            let series = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) },
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => return Ok(()),
                // The API server dropped it (its Event TTL): start a new one.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            action: Some(ACTION.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note.to_owned()),
            type_: Some(
                match type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.remember(
            key,
            Published {
                name,
                count: 1,
                last: now,
            },
        );
        Ok(())
    }

    /// The name and next count of the series `key` continues, when it is still open.
    fn repeat(&self, key: u64, now: Timestamp) -> Option<(String, i32)> {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let open = published
            .get_mut(&key)
            .filter(|p| p.last + SERIES_TTL > now)?;
        open.count = open.count.saturating_add(1);
        open.last = now;
        Some((open.name.clone(), open.count))
    }

    fn remember(&self, key: u64, event: Published) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if published.len() >= REMEMBERED && !published.contains_key(&key) {
            let expired = event.last - SERIES_TTL;
            published.retain(|_, p| p.last > expired);
            if published.len() >= REMEMBERED
                && let Some(oldest) = published
                    .iter()
                    .min_by_key(|(_, p)| p.last)
                    .map(|(k, _)| *k)
            {
                published.remove(&oldest);
            }
        }
        published.insert(key, event);
    }

    /// How many Events are remembered for repeats.
    pub fn remembered(&self) -> usize {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

/// What makes two Events the same: their type, reason and note, about the same object.
fn key(type_: EventType, reason: &str, note: &str, regarding: &ObjectReference) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    matches!(type_, EventType::Warning).hash(&mut hasher);
    reason.hash(&mut hasher);
    note.hash(&mut hasher);
    regarding.api_version.hash(&mut hasher);
    regarding.kind.hash(&mut hasher);
    regarding.namespace.hash(&mut hasher);
    regarding.name.hash(&mut hasher);
    regarding.uid.hash(&mut hasher);
    hasher.finish()
}
