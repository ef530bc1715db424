//! Status helpers: conditions that keep their transition time, and status writes that
//! happen only when something changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{self, HasConditions};

/// The field manager of every write Vigil makes.
pub const FIELD_MANAGER: &str = "vigil";

/// A kind whose status has conditions.
pub trait HasStatus:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned
{
    /// The status type.
    type Status: HasConditions
        + Clone
        + Default
        + PartialEq
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync;
    /// The current status.
    fn status(&self) -> Option<&Self::Status>;
    /// The API of this kind, in this object's namespace when the kind is namespaced.
    fn api(&self, client: &kube::Client) -> Api<Self>;
}

macro_rules! impl_has_status {
    ($($scope:ident $kind:ty => $status:ty),+ $(,)?) => {$(
        impl HasStatus for $kind {
            type Status = $status;
            fn status(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn api(&self, client: &kube::Client) -> Api<Self> {
                impl_has_status!(@api $scope self client)
            }
        }
    )+};
    (@api namespaced $self:ident $client:ident) => {
        Api::namespaced($client.clone(), &$self.namespace().unwrap_or_default())
    };
    (@api cluster $self:ident $client:ident) => {
        Api::all($client.clone())
    };
}

impl_has_status!(
    namespaced api::AcmeCertificate => api::AcmeCertificateStatus,
    cluster api::AcmeIssuer => api::AcmeIssuerStatus,
    cluster api::CrossCloudDNS => api::CrossCloudDNSStatus,
    cluster api::MemberCluster => api::MemberClusterStatus,
    namespaced api::ServiceLevelObjective => api::ServiceLevelObjectiveStatus,
    namespaced api::SupervisedWorkload => api::SupervisedWorkloadStatus,
    namespaced api::TelemetryPipeline => api::TelemetryPipelineStatus,
);

/// A condition as a reconcile decides it; the transition time is filled by [`merge_conditions`].
pub fn condition(
    type_: &str,
    status: Option<bool>,
    reason: &str,
    message: impl Into<String>,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: match status {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
        .to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: None,
        last_transition_time: Time(Default::default()),
    }
}

/// Merges freshly decided conditions with the previous ones: a condition whose status did
/// not flip keeps its `lastTransitionTime`; a flipped or new one gets `now`. Conditions are
/// kept in the order given, so the result is deterministic.
pub fn merge_conditions(
    previous: &[Condition],
    fresh: Vec<Condition>,
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    fresh
        .into_iter()
        .map(|mut c| {
            c.observed_generation = generation;
            c.last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            c
        })
        .collect()
}

/// Completes `status` (observed generation, merged conditions) against the object's
/// current status. Returns `None` when the result equals what the object already has.
pub fn next_status<K: HasStatus>(
    object: &K,
    mut status: K::Status,
    now: Time,
) -> Option<K::Status> {
    let generation = object.meta().generation;
    let previous = object
        .status()
        .map(|s| s.conditions().to_vec())
        .unwrap_or_default();
    let fresh = std::mem::take(status.conditions_mut());
    *status.conditions_mut() = merge_conditions(&previous, fresh, generation, now);
    status.set_observed_generation(generation);
    (object.status() != Some(&status)).then_some(status)
}

/// Writes the status with server-side apply when it differs from the object's; returns
/// whether a write happened. No write means no watch event, so the operator never wakes
/// itself up.
pub async fn update_status<K: HasStatus>(
    client: &kube::Client,
    object: &K,
    status: K::Status,
) -> Result<bool, kube::Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let Some(status) = next_status(object, status, now) else {
        return Ok(false);
    };
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    object
        .api(client)
        .patch_status(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(true)
}

/// The status of condition `type_` in the object's status, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let previous = merge_conditions(
            &[],
            vec![condition("Ready", Some(true), "Ok", "fine")],
            Some(1),
            at(100),
        );
        let merged = merge_conditions(
            &previous,
            vec![condition("Ready", Some(true), "Ok", "fine")],
            Some(2),
            at(200),
        );
        assert_eq!(merged[0].last_transition_time, at(100));
        assert_eq!(merged[0].observed_generation, Some(2));
    }

    #[test]
    fn flipped_status_gets_a_new_transition_time() {
        let previous = merge_conditions(
            &[],
            vec![condition("Ready", Some(true), "Ok", "fine")],
            Some(1),
            at(100),
        );
        let merged = merge_conditions(
            &previous,
            vec![condition("Ready", Some(false), "Down", "down")],
            Some(1),
            at(200),
        );
        assert_eq!(merged[0].last_transition_time, at(200));
        assert_eq!(merged[0].status, "False");
    }
}
