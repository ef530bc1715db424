//! The `ServiceLevelObjective` controller, of the render-then-apply shape: renders the
//! SLO's rules into a PrometheusRule (or a ConfigMap rule file where the Prometheus
//! Operator is not installed), applies them, and reports the error budget read from
//! Prometheus. The status is a pure function ([`status`]).

pub mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use kube::ResourceExt;
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use self::status::{Applied, Budget};
use super::status::update_status;
use super::{Context, Error, Reconcile, apply};
use crate::api::ServiceLevelObjective;
use crate::api::service_level_objective::RuleOutputKind;
use crate::api::service_level_objective::vocabulary::RULES_GENERATED_EVENT;
use crate::render::slo::{render_slo, slo_key};
use crate::validate::{FieldError, Validate};

impl Reconcile for ServiceLevelObjective {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let errors = self.validate(&ctx.stores.references());
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let wanted = self.spec.output.kind;
        let kind = output_kind(&ctx, wanted).await?;
        let rendered = render_slo(&self, kind)
            .map_err(|e| Error::InvalidSpec(vec![FieldError::new(e.field(), e.message())]))?;
        let applied = Applied {
            object: describe(&rendered.object),
            kind,
            rules: rendered.rules,
            fell_back: kind != wanted,
        };
        apply::apply_owned(&ctx.client, self.as_ref(), rendered.object).await?;

        let budget = read_budget(&self, &ctx).await;
        let first = !status::was_generated(self.status.as_ref());
        let new_status = status::status(&applied, &budget);
        if update_status(&ctx.client, self.as_ref(), new_status).await? && first {
            let note = applied.note();
            ctx.publish(
                self.as_ref(),
                EventType::Normal,
                RULES_GENERATED_EVENT,
                note,
            )
            .await;
        }
        Ok(Action::requeue(status::requeue(
            &budget,
            ctx.status_interval,
        )))
    }
}

/// `ConfigMap shop/checkout-availability-slo-rules`.
fn describe(object: &DynamicObject) -> String {
    let kind = object.types.as_ref().map(|t| t.kind.as_str());
    let namespace = object.namespace().unwrap_or_default();
    format!(
        "{} {namespace}/{}",
        kind.unwrap_or_default(),
        object.name_any()
    )
}

/// The kind the rules go to: a PrometheusRule when asked for and its CRD is installed,
/// otherwise a ConfigMap.
async fn output_kind(ctx: &Context, wanted: RuleOutputKind) -> Result<RuleOutputKind, Error> {
    if wanted == RuleOutputKind::PrometheusRule
        && ctx
            .discovery
            .has("monitoring.coreos.com/v1", "PrometheusRule")
            .await?
    {
        Ok(RuleOutputKind::PrometheusRule)
    } else {
        Ok(RuleOutputKind::ConfigMap)
    }
}

/// The budget from the SLO's Prometheus, or the operator's.
async fn read_budget(slo: &ServiceLevelObjective, ctx: &Context) -> Budget {
    let url = slo.spec.prometheus.as_ref().map(|p| p.url.clone());
    let Some(url) = url.or_else(|| ctx.prometheus_url.clone()) else {
        return Budget::NoPrometheus;
    };
    match crate::prometheus::query_budget(&url, &slo_key(slo)).await {
        Ok(Some(reading)) => Budget::Read { url, reading },
        Ok(None) => Budget::NoData { url },
        Err(message) => Budget::Unreachable { url, message },
    }
}
