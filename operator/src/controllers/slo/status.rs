//! The status of a `ServiceLevelObjective`, a pure function of what was applied and what
//! Prometheus said.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::service_level_objective::RuleOutputKind;
use crate::api::service_level_objective::vocabulary::*;
use crate::api::{READY, ServiceLevelObjectiveStatus};
use crate::controllers::status::{condition, condition_status};
use crate::prometheus::BudgetReading;

/// The rules as applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Where they went: `ConfigMap shop/checkout-availability-rules`.
    pub object: String,
    /// The kind they went to.
    pub kind: RuleOutputKind,
    /// How many rules (recording and alerting).
    pub rules: usize,
    /// A PrometheusRule was asked for, but its CRD is not installed.
    pub fell_back: bool,
}

impl Applied {
    /// The note of the `RulesGenerated` Event.
    pub fn note(&self) -> String {
        format!("{} rules applied to {}", self.rules, self.object)
    }
}

/// What is known of the error budget.
#[derive(Debug, Clone, PartialEq)]
pub enum Budget {
    /// No Prometheus to ask.
    NoPrometheus,
    /// Read from Prometheus at `url`.
    Read {
        /// Where.
        url: String,
        /// What.
        reading: BudgetReading,
    },
    /// Prometheus at `url` has no budget series for the SLO yet.
    NoData {
        /// Where.
        url: String,
    },
    /// The query to `url` failed.
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
}

/// The new status; `observedGeneration` and transition times are the runtime's.
pub fn status(applied: &Applied, budget: &Budget) -> ServiceLevelObjectiveStatus {
    let fallback = if applied.fell_back {
        " (the PrometheusRule CRD of the Prometheus Operator is not installed, so the rule file is in a ConfigMap for Prometheus to mount)"
    } else {
        ""
    };
    let generated = condition(
        RULES_GENERATED,
        Some(true),
        match applied.kind {
            RuleOutputKind::PrometheusRule => IN_PROMETHEUS_RULE,
            RuleOutputKind::ConfigMap => IN_CONFIG_MAP,
        },
        format!("{} rules in {}{fallback}", applied.rules, applied.object),
    );
    let ready = condition(
        READY,
        Some(true),
        RULES_APPLIED,
        format!("rules applied to {}", applied.object),
    );
    let reading = match budget {
        Budget::Read { reading, .. } => Some(reading),
        _ => None,
    };
    ServiceLevelObjectiveStatus {
        observed_generation: None,
        conditions: vec![ready, generated, budget_condition(budget)],
        error_budget_remaining: reading.map(|b| format_percent(b.remaining)),
        burn_rate: reading.and_then(|b| b.burn_rate).map(|r| format!("{r:.2}")),
    }
}

fn budget_condition(budget: &Budget) -> Condition {
    match budget {
        Budget::NoPrometheus => condition(
            BUDGET_KNOWN,
            None,
            NO_PROMETHEUS,
            "set spec.prometheus.url (or --prometheus-url) to see the error budget",
        ),
        Budget::Read { url, .. } => condition(
            BUDGET_KNOWN,
            Some(true),
            QUERIED,
            format!("read from {url}"),
        ),
        Budget::NoData { url } => condition(
            BUDGET_KNOWN,
            Some(false),
            NO_DATA,
            format!(
                "{url} has no vigil:slo_error_budget_remaining for this SLO yet: are the rules loaded and the SLI scraped?"
            ),
        ),
        Budget::Unreachable { url, message } => condition(
            BUDGET_KNOWN,
            Some(false),
            PROMETHEUS_UNREACHABLE,
            format!("{url}: {message}"),
        ),
    }
}

/// Whether the status already says the rules were generated (so the Event is not sent
/// again on every reconcile).
pub fn was_generated(status: Option<&ServiceLevelObjectiveStatus>) -> bool {
    status.is_some_and(|s| condition_status(&s.conditions, RULES_GENERATED) == Some("True"))
}

/// When to look again: the budget moves with time, so after the status interval when
/// there is a Prometheus to read it from; otherwise only the periodic check of the rules.
pub fn requeue(budget: &Budget, status_interval: Duration) -> Duration {
    match budget {
        Budget::NoPrometheus => Duration::from_secs(300),
        _ => status_interval,
    }
}

/// A budget share as a percentage with two decimals: `99.12%`. Rounded, so that tiny
/// changes do not rewrite the status.
pub fn format_percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(kind: RuleOutputKind, fell_back: bool) -> Applied {
        Applied {
            object: "ConfigMap shop/checkout-rules".into(),
            kind,
            rules: 23,
            fell_back,
        }
    }

    fn read(remaining: f64, burn_rate: Option<f64>) -> Budget {
        Budget::Read {
            url: "http://prometheus:9090".into(),
            reading: BudgetReading {
                remaining,
                burn_rate,
            },
        }
    }

    /// (type, status, reason) of each condition, and the two figures.
    type Shown = (
        Vec<(String, String, String)>,
        Option<String>,
        Option<String>,
    );

    fn shown(status: &ServiceLevelObjectiveStatus) -> Shown {
        (
            status
                .conditions
                .iter()
                .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
                .collect(),
            status.error_budget_remaining.clone(),
            status.burn_rate.clone(),
        )
    }

    fn conditions(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        rows.iter()
            .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
            .collect()
    }

    #[test]
    fn the_status_says_where_the_rules_went_and_what_prometheus_said() {
        use RuleOutputKind::{ConfigMap, PrometheusRule};
        let unreachable = Budget::Unreachable {
            url: "http://prometheus:9090".into(),
            message: "connection refused".into(),
        };
        let no_data = Budget::NoData {
            url: "http://prometheus:9090".into(),
        };
        let cases: Vec<(&str, Applied, Budget, Shown)> = vec![
            (
                "no Prometheus: the budget is Unknown, not False",
                applied(ConfigMap, false),
                Budget::NoPrometheus,
                (
                    conditions(&[
                        ("Ready", "True", "RulesApplied"),
                        ("RulesGenerated", "True", "ConfigMap"),
                        ("BudgetKnown", "Unknown", "NoPrometheus"),
                    ]),
                    None,
                    None,
                ),
            ),
            (
                "read: two decimals of percent and of burn rate",
                applied(PrometheusRule, false),
                read(0.987_654, Some(1.234_5)),
                (
                    conditions(&[
                        ("Ready", "True", "RulesApplied"),
                        ("RulesGenerated", "True", "PrometheusRule"),
                        ("BudgetKnown", "True", "Queried"),
                    ]),
                    Some("98.77%".into()),
                    Some("1.23".into()),
                ),
            ),
            (
                "overspent, no burn rate yet",
                applied(ConfigMap, false),
                read(-0.5, None),
                (
                    conditions(&[
                        ("Ready", "True", "RulesApplied"),
                        ("RulesGenerated", "True", "ConfigMap"),
                        ("BudgetKnown", "True", "Queried"),
                    ]),
                    Some("-50.00%".into()),
                    None,
                ),
            ),
            (
                "no data: the rules are still Ready",
                applied(ConfigMap, false),
                no_data,
                (
                    conditions(&[
                        ("Ready", "True", "RulesApplied"),
                        ("RulesGenerated", "True", "ConfigMap"),
                        ("BudgetKnown", "False", "NoData"),
                    ]),
                    None,
                    None,
                ),
            ),
            (
                "unreachable: the figures are dropped, not kept stale",
                applied(ConfigMap, true),
                unreachable,
                (
                    conditions(&[
                        ("Ready", "True", "RulesApplied"),
                        ("RulesGenerated", "True", "ConfigMap"),
                        ("BudgetKnown", "False", "PrometheusUnreachable"),
                    ]),
                    None,
                    None,
                ),
            ),
        ];
        for (case, applied, budget, expected) in cases {
            assert_eq!(shown(&status(&applied, &budget)), expected, "{case}");
        }
    }

    #[test]
    fn the_messages_name_the_object_the_fallback_and_the_server() {
        let fell_back = status(
            &applied(RuleOutputKind::ConfigMap, true),
            &Budget::NoPrometheus,
        );
        assert_eq!(
            fell_back.conditions[1].message,
            "23 rules in ConfigMap shop/checkout-rules (the PrometheusRule CRD of the Prometheus Operator is not installed, so the rule file is in a ConfigMap for Prometheus to mount)"
        );
        assert_eq!(
            fell_back.conditions[0].message,
            "rules applied to ConfigMap shop/checkout-rules"
        );
        let unreachable = status(
            &applied(RuleOutputKind::ConfigMap, false),
            &Budget::Unreachable {
                url: "http://p:9090".into(),
                message: "connection refused".into(),
            },
        );
        assert_eq!(
            unreachable.conditions[1].message,
            "23 rules in ConfigMap shop/checkout-rules"
        );
        assert_eq!(
            unreachable.conditions[2].message,
            "http://p:9090: connection refused"
        );
        assert_eq!(
            applied(RuleOutputKind::ConfigMap, false).note(),
            "23 rules applied to ConfigMap shop/checkout-rules"
        );
    }

    #[test]
    fn the_event_is_sent_once_and_the_requeue_follows_the_budget() {
        let before = status(
            &applied(RuleOutputKind::ConfigMap, false),
            &Budget::NoPrometheus,
        );
        assert!(!was_generated(None));
        assert!(was_generated(Some(&before)));
        let mut failed = before.clone();
        failed.conditions[1].status = "False".into();
        assert!(!was_generated(Some(&failed)));

        let interval = Duration::from_secs(60);
        assert_eq!(
            requeue(&Budget::NoPrometheus, interval),
            Duration::from_secs(300)
        );
        assert_eq!(requeue(&read(1.0, None), interval), interval);
        let no_data = Budget::NoData { url: "u".into() };
        assert_eq!(requeue(&no_data, interval), interval);
    }
}
