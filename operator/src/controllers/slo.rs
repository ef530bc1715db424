//! The `ServiceLevelObjective` controller: renders the SLO's rules into a PrometheusRule (or
//! a ConfigMap rule file where the Prometheus Operator is not installed), and reports the
//! error budget read from Prometheus.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::status::{condition, update_status};
use super::{Context, Error, Reconcile, apply};
use crate::api::service_level_objective::RuleOutputKind;
use crate::api::{READY, ServiceLevelObjective, ServiceLevelObjectiveStatus};
use crate::render::slo::{render_slo, slo_key};
use crate::validate::{FieldError, Validate};

/// Condition type: the rules are applied.
pub const RULES_GENERATED: &str = "RulesGenerated";
/// Condition type: the budget could be read from Prometheus.
pub const BUDGET_KNOWN: &str = "BudgetKnown";

impl Reconcile for ServiceLevelObjective {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let errors = self.validate(&ctx.stores.references());
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let (kind, why) = output_kind(&ctx, self.spec.output.kind).await?;
        let rendered = render_slo(&self, kind)
            .map_err(|e| Error::InvalidSpec(vec![FieldError::new(e.field(), e.message())]))?;
        let object = format!(
            "{} {}/{}",
            rendered
                .object
                .types
                .as_ref()
                .map(|t| t.kind.as_str())
                .unwrap_or_default(),
            self.namespace().unwrap_or_default(),
            rendered.object.name_any()
        );
        apply::apply_owned(&ctx.client, self.as_ref(), rendered.object).await?;

        let generated = condition(
            RULES_GENERATED,
            Some(true),
            kind_reason(kind),
            format!("{} rules in {object}{why}", rendered.rules),
        );
        let prometheus = self
            .spec
            .prometheus
            .as_ref()
            .map(|p| p.url.clone())
            .or_else(|| ctx.prometheus_url.clone());
        let (budget, budget_condition) = match &prometheus {
            None => (
                None,
                condition(
                    BUDGET_KNOWN,
                    None,
                    "NoPrometheus",
                    "set spec.prometheus.url (or --prometheus-url) to see the error budget",
                ),
            ),
            Some(url) => match query_budget(url, &slo_key(&self)).await {
                Ok(Some(read)) => (
                    Some(read),
                    condition(
                        BUDGET_KNOWN,
                        Some(true),
                        "Queried",
                        format!("read from {url}"),
                    ),
                ),
                Ok(None) => (
                    None,
                    condition(
                        BUDGET_KNOWN,
                        Some(false),
                        "NoData",
                        format!(
                            "{url} has no vigil:slo_error_budget_remaining for this SLO yet: are the rules loaded and the SLI scraped?"
                        ),
                    ),
                ),
                Err(message) => (
                    None,
                    condition(
                        BUDGET_KNOWN,
                        Some(false),
                        "PrometheusUnreachable",
                        format!("{url}: {message}"),
                    ),
                ),
            },
        };
        let ready = condition(
            READY,
            Some(true),
            "RulesApplied",
            format!("rules applied to {object}"),
        );
        let status = ServiceLevelObjectiveStatus {
            observed_generation: None,
            conditions: vec![ready, generated, budget_condition],
            error_budget_remaining: budget.map(|b| format_percent(b.remaining)),
            burn_rate: budget.and_then(|b| b.burn_rate).map(|r| format!("{r:.2}")),
        };
        let was_generated = self.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == RULES_GENERATED && c.status == "True")
        });
        if update_status(&ctx.client, self.as_ref(), status).await? && !was_generated {
            ctx.publish(
                self.as_ref(),
                EventType::Normal,
                "RulesGenerated",
                format!("{} rules applied to {object}", rendered.rules),
            )
            .await;
        }
        // The budget moves with time: read it again after the status interval.
        Ok(Action::requeue(if prometheus.is_some() {
            ctx.status_interval
        } else {
            Duration::from_secs(300)
        }))
    }
}

fn kind_reason(kind: RuleOutputKind) -> &'static str {
    match kind {
        RuleOutputKind::PrometheusRule => "PrometheusRule",
        RuleOutputKind::ConfigMap => "ConfigMap",
    }
}

/// The kind the rules go to: a PrometheusRule when asked for and its CRD is installed,
/// otherwise a ConfigMap; with the reason when the choice differs from the request.
async fn output_kind(
    ctx: &Context,
    wanted: RuleOutputKind,
) -> Result<(RuleOutputKind, String), Error> {
    if wanted == RuleOutputKind::ConfigMap {
        return Ok((RuleOutputKind::ConfigMap, String::new()));
    }
    if ctx
        .discovery
        .has("monitoring.coreos.com/v1", "PrometheusRule")
        .await?
    {
        Ok((RuleOutputKind::PrometheusRule, String::new()))
    } else {
        Ok((
            RuleOutputKind::ConfigMap,
            " (the PrometheusRule CRD of the Prometheus Operator is not installed, so the rule file is in a ConfigMap for Prometheus to mount)".to_owned(),
        ))
    }
}

/// A budget share as a percentage with two decimals: `99.12%`. Rounded, so that tiny
/// changes do not rewrite the status.
pub fn format_percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// What Prometheus says of one SLO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetReading {
    /// Share of the window's error budget left (1 = untouched; negative = overspent).
    pub remaining: f64,
    /// Burn rate over the last hour, when known.
    pub burn_rate: Option<f64>,
}

/// Reads the budget left and the current burn rate of one SLO from Prometheus' HTTP API.
/// With grouping, the SLO's figures are those of its worst label set.
pub async fn query_budget(url: &str, key: &str) -> Result<Option<BudgetReading>, String> {
    let client =
        crate::tls::http_client(None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let remaining = query_value(
        &client,
        url,
        &format!("min(vigil:slo_error_budget_remaining{{vigil_slo=\"{key}\"}})"),
    )
    .await?;
    let Some(remaining) = remaining else {
        return Ok(None);
    };
    let burn_rate = query_value(
        &client,
        url,
        &format!("max(vigil:slo_burn_rate:rate1h{{vigil_slo=\"{key}\"}})"),
    )
    .await?;
    Ok(Some(BudgetReading {
        remaining,
        burn_rate,
    }))
}

/// Whether any of `conditions` (PromQL filters such as the page-level burn conditions of
/// [`crate::render::slo::page_burn_conditions`]) returns a sample in Prometheus at `url`.
pub async fn any_holds(url: &str, conditions: &[String]) -> Result<bool, String> {
    let client =
        crate::tls::http_client(None, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    for expr in conditions {
        if query_value(&client, url, &format!("count({expr})"))
            .await?
            .is_some_and(|n| n > 0.0)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The value of an instant query that returns one sample, if any.
async fn query_value(
    client: &reqwest::Client,
    url: &str,
    query: &str,
) -> Result<Option<f64>, String> {
    let response = client
        .get(format!("{}/api/v1/query", url.trim_end_matches('/')))
        .query(&[("query", query)])
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("HTTP {status}: {}", describe(&e)))?;
    if body["status"] != "success" {
        return Err(format!(
            "HTTP {status}: {}",
            body["error"].as_str().unwrap_or("query failed")
        ));
    }
    Ok(body["data"]["result"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|sample| sample["value"][1].as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite()))
}

fn describe(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let inner = cause.to_string();
    let outer = error.to_string();
    if outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}
