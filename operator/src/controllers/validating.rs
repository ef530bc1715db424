//! The controller of kinds whose generators have not landed yet: it validates each object
//! against the inventory and says plainly in `Ready` what is and is not done.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::status::{condition, update_status};
use super::{Context, Error, Reconcile};
use crate::api::{self, HasConditions, READY};
use crate::validate::{Validate, summarize};

/// Condition type: the spec passed the operator's semantic validation.
pub const VALID: &str = "Valid";

/// Validates `object` and writes `Valid` and `Ready` conditions.
async fn validate_only<K>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error>
where
    K: Reconcile + Validate,
{
    let errors = object.validate(&ctx.stores.inventory());
    let mut status = K::Status::default();
    let (valid, ready) = if errors.is_empty() {
        (
            condition(VALID, Some(true), "Valid", "the spec passed validation"),
            condition(
                READY,
                Some(false),
                "NotImplemented",
                format!(
                    "the spec is valid; this version of Vigil validates {} objects but does not act on them yet",
                    K::kind(&())
                ),
            ),
        )
    } else {
        let message = summarize(&errors);
        (
            condition(VALID, Some(false), "InvalidSpec", message.clone()),
            condition(READY, Some(false), "InvalidSpec", message),
        )
    };
    *status.conditions_mut() = vec![ready, valid];
    if update_status(&ctx.client, object.as_ref(), status).await? && !errors.is_empty() {
        ctx.publish(
            object.as_ref(),
            EventType::Warning,
            "InvalidSpec",
            summarize(&errors),
        )
        .await;
    }
    // References to other objects may become valid later: look again now and then.
    Ok(Action::requeue(std::time::Duration::from_secs(300)))
}

macro_rules! validating_controller {
    ($($kind:ty),+ $(,)?) => {$(
        impl Reconcile for $kind {
            async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
                validate_only(self, ctx).await
            }
        }
    )+};
}

validating_controller!(api::TelemetryPipeline,);
