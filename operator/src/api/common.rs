//! Types shared by several kinds: conditions, references, the status contract.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Vigil kind.
pub const GROUP: &str = "vigil.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every Vigil object.
pub const API_VERSION: &str = "vigil.io/v1alpha1";
/// The `kubectl get vigil` category.
pub const CATEGORY: &str = "vigil";

/// Condition type present on every kind: the object does what it declares.
pub const READY: &str = "Ready";

/// Schema for a `conditions` list: a list-map keyed by `type`, so that server-side apply
/// merges conditions one by one instead of replacing the whole list.
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let item = generator.subschema_for::<Condition>();
    schemars::json_schema!({
        "type": "array",
        "description": "Current state as a list of conditions, one per type; `Ready` is always present.",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// Status fields that every kind carries.
pub trait HasConditions {
    /// The conditions of the status, if any.
    fn conditions(&self) -> &[Condition];
    /// Mutable conditions, for the status helper to merge into.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Sets the generation this status describes.
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

/// Implements [`HasConditions`] for a status struct with `conditions` and
/// `observed_generation` fields.
macro_rules! impl_has_conditions {
    ($($status:ty),+ $(,)?) => {$(
        impl $crate::api::common::HasConditions for $status {
            fn conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
                &self.conditions
            }
            fn conditions_mut(
                &mut self,
            ) -> &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
                &mut self.conditions
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }
    )+};
}
pub(crate) use impl_has_conditions;

/// A key in a Secret in a given namespace (for cluster-scoped objects).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedSecretKeyRef {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// A Secret, and optionally one key in it. For cluster-scoped objects the namespace is
/// the operator's namespace unless given.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret; defaults to the operator's namespace for cluster-scoped
    /// objects and to the object's own namespace for namespaced ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Key inside the Secret's data, where one key is meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// An object of a Vigil kind, as another object names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Its kind: `MemberCluster`.
    pub kind: std::borrow::Cow<'static, str>,
    /// Its namespace; `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
}

impl Reference {
    /// A cluster-scoped object.
    pub fn cluster(kind: &'static str, name: &str) -> Self {
        Self {
            kind: kind.into(),
            namespace: None,
            name: name.to_owned(),
        }
    }

    /// A namespaced object.
    pub fn namespaced(kind: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            kind: kind.into(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }
}

/// The Vigil objects an object names in its spec (whether they exist or not): when one of
/// them is created, changed or deleted, the object is reconciled again, and only then.
pub trait References {
    /// Every object named; none by default.
    fn references(&self) -> Vec<Reference> {
        Vec::new()
    }
}

/// A reference to another object by name (same namespace for namespaced kinds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Name of the referenced object.
    pub name: String,
}
