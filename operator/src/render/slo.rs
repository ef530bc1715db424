//! Prometheus rules for a `ServiceLevelObjective`: recording rules for the error ratio over
//! every window the alert tiers need, an exact full-window SLI, SRE Workbook meta rules, and
//! multiwindow multi-burn-rate alerts.
//!
//! How the rules stay exact and cheap:
//! - Group `sli` records the SLI's error and request rates over 5 minutes, once per SLO and
//!   label set: the only rules that read the raw series. Every alert window (30m to 3d) is
//!   built from those two recorded series with `sum_over_time`: a ratio of summed counts,
//!   never an average of ratios, and a long window reads one recorded series instead of
//!   every raw one.
//! - Group `budget` computes the full-window SLI (`…:window`, e.g. 30 days) from the same
//!   recorded rates sampled by a subquery at 5-minute steps (`[30d:5m]`): each step is the
//!   rate over the 5 minutes before it, so the steps tile the window and their sums are the
//!   window's counts. 8640 points per series for 30 days, whatever the evaluation interval.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::core::DynamicObject;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, VectorSelector};
use serde::Serialize;

use crate::api::ServiceLevelObjective;
use crate::api::service_level_objective::{AlertTier, RuleOutputKind, Ruler};

/// Name of every burn alert.
pub const ALERT_NAME: &str = "SLOErrorBudgetBurn";
/// Name of the alert when the SLI has no series.
pub const ABSENT_ALERT_NAME: &str = "SLOSLIAbsent";
/// Step of the full-window subquery: the width of the rate the SLI records.
pub const BUCKET: Duration = Duration::from_secs(300);

/// A Prometheus rule file (`groups:`), as `promtool check rules` reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFile {
    /// The rule groups.
    pub groups: Vec<RuleGroup>,
}

/// One rule group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleGroup {
    /// Group name, unique per file.
    pub name: String,
    /// Evaluation interval; the global one when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Thanos Ruler only: how to treat partial responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_response_strategy: Option<String>,
    /// The rules, evaluated in order.
    pub rules: Vec<Rule>,
}

/// A recording or alerting rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Name of the recorded series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of the alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// How long the alert condition must hold.
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// Labels added to the series or alert.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Alert annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Why rules cannot be generated; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SloError {
    /// A PromQL field does not parse, or is not what the SLI type needs.
    #[error("{field}: {message}")]
    PromQl {
        /// Field path.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The window is not `Nd` or `Nh`.
    #[error("spec.window: {0:?} is not a number of days or hours such as 30d or 12h")]
    Window(String),
    /// The SLI is not set.
    #[error("spec.sli: set exactly one of ratio, latency or boolGauge")]
    NoSli,
}

/// One pair of windows of an alert tier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindow {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// The long window.
    pub long: Duration,
    /// The short window, 1/12 of the long one.
    pub short: Duration,
    /// Burn rate over both windows above which the alert fires.
    pub factor: f64,
}

/// The SRE Workbook's tiers for a 30-day window, as (severity, long, short, share of the
/// budget spent in the long window).
const TIERS: [(&str, u64, u64, f64); 4] = [
    ("page", 3600, 300, 0.02),
    ("page", 6 * 3600, 1800, 0.05),
    ("ticket", 86400, 2 * 3600, 0.10),
    ("ticket", 3 * 86400, 6 * 3600, 0.10),
];

/// The burn windows for an SLO window. The factors keep the workbook's budget shares
/// (14.4, 6, 3 and 1 for 30 days; 13.44, 5.6, 2.8 and 0.93→1 for 28 days): spending 2% of
/// the budget in one hour pages, whatever the window. A factor never goes below 1 (a burn
/// rate below 1 leaves budget at the end of the window), and a tier whose long window is
/// not shorter than the SLO window is left out.
pub fn burn_windows(window: Duration) -> Vec<BurnWindow> {
    TIERS
        .iter()
        .filter(|(_, long, _, _)| Duration::from_secs(*long) < window)
        .map(|&(severity, long, short, share)| BurnWindow {
            severity,
            long: Duration::from_secs(long),
            short: Duration::from_secs(short),
            factor: round4((share * window.as_secs_f64() / long as f64).max(1.0)),
        })
        .collect()
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// Parses an SLO window: `Nd` or `Nh`.
pub fn parse_window(text: &str) -> Result<Duration, SloError> {
    let bad = || SloError::Window(text.to_owned());
    let (number, unit) = text.split_at(text.len().checked_sub(1).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match (unit, n) {
        (_, 0) => None,
        ("d", n) => n.checked_mul(86400),
        ("h", n) => n.checked_mul(3600),
        _ => None,
    };
    seconds.map(Duration::from_secs).ok_or_else(bad)
}

/// A duration as PromQL writes it, in the largest exact unit: `5m`, `1h`, `3d`.
pub fn promql_duration(duration: Duration) -> String {
    let s = duration.as_secs();
    match s {
        0 => "0s".to_owned(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses a PromQL field, with the field path and the parser's message on failure.
pub fn parse_promql(field: &'static str, text: &str) -> Result<Expr, SloError> {
    parser::parse(text).map_err(|message| SloError::PromQl {
        field,
        message: message.trim().to_owned(),
    })
}

fn selector(field: &'static str, text: &str) -> Result<VectorSelector, SloError> {
    match parse_promql(field, text)? {
        Expr::VectorSelector(selector) => Ok(selector),
        other => Err(SloError::PromQl {
            field,
            message: format!(
                "must be a series selector such as http_requests_total{{job=\"api\"}}, not {other}"
            ),
        }),
    }
}

/// A selector with a suffix on its metric name and extra matchers.
fn derived(selector: &VectorSelector, suffix: &str, extra: &[Matcher]) -> String {
    let mut derived = selector.clone();
    if let Some(name) = derived.name.as_mut() {
        name.push_str(suffix);
    }
    derived
        .matchers
        .matchers
        .retain(|m| !(m.name == "__name__" && suffix.is_empty()));
    for matcher in extra {
        derived.matchers.matchers.push(matcher.clone());
    }
    derived.to_string()
}

/// The label matcher of a classic histogram bucket at `threshold`. Client libraries write
/// whole numbers as `1` or `1.0`, so both are matched.
fn le_matcher(threshold: f64) -> Result<Matcher, SloError> {
    let text = format!("{threshold}");
    if threshold.fract() == 0.0 {
        let pattern = format!("{text}|{text}\\.0");
        let regex =
            regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| SloError::PromQl {
                field: "spec.sli.latency.thresholdSeconds",
                message: e.to_string(),
            })?;
        Ok(Matcher::new(MatchOp::Re(regex), "le", &pattern))
    } else {
        Ok(Matcher::new(MatchOp::Equal, "le", &text))
    }
}

/// The SLI as two PromQL templates of per-second rates over a range `{range}`: bad events
/// and all events, summed by the grouping labels.
struct SliQueries {
    errors: String,
    total: String,
}

fn by(grouping: &[String]) -> String {
    if grouping.is_empty() {
        String::new()
    } else {
        format!(" by ({}) ", grouping.join(", "))
    }
}

fn sli_queries(slo: &ServiceLevelObjective) -> Result<SliQueries, SloError> {
    let spec = &slo.spec;
    let by = by(&spec.grouping);
    if let Some(ratio) = &spec.sli.ratio {
        let errors = selector("spec.sli.ratio.errors", &ratio.errors)?;
        let total = selector("spec.sli.ratio.total", &ratio.total)?;
        return Ok(SliQueries {
            errors: format!("sum{by}(rate({errors}[{{range}}]))"),
            total: format!("sum{by}(rate({total}[{{range}}]))"),
        });
    }
    if let Some(latency) = &spec.sli.latency {
        let metric = selector("spec.sli.latency.metric", &latency.metric)?;
        if metric.name.is_none() {
            return Err(SloError::PromQl {
                field: "spec.sli.latency.metric",
                message: "name the histogram metric".into(),
            });
        }
        if latency.native {
            let histogram = format!("sum{by}(rate({metric}[{{range}}]))");
            return Ok(SliQueries {
                errors: format!(
                    "histogram_count({histogram}) * (1 - histogram_fraction(0, {}, {histogram}))",
                    latency.threshold_seconds
                ),
                total: format!("histogram_count({histogram})"),
            });
        }
        let count = derived(&metric, "_count", &[]);
        let bucket = derived(
            &metric,
            "_bucket",
            &[le_matcher(latency.threshold_seconds)?],
        );
        return Ok(SliQueries {
            errors: format!(
                "sum{by}(rate({count}[{{range}}])) - sum{by}(rate({bucket}[{{range}}]))"
            ),
            total: format!("sum{by}(rate({count}[{{range}}]))"),
        });
    }
    if let Some(gauge) = &spec.sli.bool_gauge {
        parse_promql("spec.sli.boolGauge.query", &gauge.query)?;
        // Each series counts as one event per unit of time: the bad share is the time the
        // gauge was 0. Rates and counts are the same here: fractions of the range.
        let average = format!("avg_over_time(({})[{{range}}:])", gauge.query);
        return Ok(SliQueries {
            errors: format!("sum{by}(1 - {average})"),
            total: format!("count{by}({average})"),
        });
    }
    Err(SloError::NoSli)
}

/// `namespace/name`, the value of the `vigil_slo` label.
pub fn slo_key(slo: &ServiceLevelObjective) -> String {
    format!("{}/{}", slo.namespace().unwrap_or_default(), slo.name_any())
}

/// The rules of one SLO.
pub fn render_rules(slo: &ServiceLevelObjective) -> Result<RuleFile, SloError> {
    let spec = &slo.spec;
    let window = parse_window(&spec.window)?;
    let key = slo_key(slo);
    let budget = round_budget(1.0 - spec.objective / 100.0);
    let mut labels = BTreeMap::from([
        ("vigil_slo".to_owned(), key.clone()),
        ("service".to_owned(), spec.service.clone()),
    ]);
    let select = format!("{{vigil_slo=\"{key}\"}}");
    let record = |name: &str, expr: String, labels: &BTreeMap<String, String>| Rule {
        record: Some(name.to_owned()),
        alert: None,
        expr,
        for_: None,
        labels: labels.clone(),
        annotations: BTreeMap::new(),
    };

    let rates = sli_queries(slo)?;
    let mut windows: Vec<Duration> = burn_windows(window)
        .iter()
        .flat_map(|w| [w.short, w.long])
        .collect();
    windows.sort();
    windows.dedup();
    let mut sli = vec![
        record(
            "vigil:slo_errors:rate5m",
            rates.errors.replace("{range}", "5m"),
            &labels,
        ),
        record(
            "vigil:slo_requests:rate5m",
            rates.total.replace("{range}", "5m"),
            &labels,
        ),
    ];
    for w in &windows {
        let w = promql_duration(*w);
        let expr = if w == "5m" {
            format!("vigil:slo_errors:rate5m{select} / vigil:slo_requests:rate5m{select}")
        } else {
            format!(
                "sum_over_time(vigil:slo_errors:rate5m{select}[{w}]) / sum_over_time(vigil:slo_requests:rate5m{select}[{w}])"
            )
        };
        sli.push(record(
            &format!("vigil:slo_error_ratio:rate{w}"),
            expr,
            &labels,
        ));
    }
    sli.push(record(
        "vigil:slo_burn_rate:rate1h",
        format!("vigil:slo_error_ratio:rate1h{select} / {budget}"),
        &labels,
    ));

    let w = promql_duration(window);
    let step = promql_duration(BUCKET);
    let budget_rules = vec![
        record(
            "vigil:slo_error_ratio:window",
            format!(
                "sum_over_time(vigil:slo_errors:rate5m{select}[{w}:{step}]) / sum_over_time(vigil:slo_requests:rate5m{select}[{w}:{step}])"
            ),
            &labels,
        ),
        record(
            "vigil:slo_objective",
            format!("vector({})", round_budget(spec.objective / 100.0)),
            &labels,
        ),
        record(
            "vigil:slo_error_budget",
            format!("vector({budget})"),
            &labels,
        ),
        record(
            "vigil:slo_burn_rate:window",
            format!("vigil:slo_error_ratio:window{select} / {budget}"),
            &labels,
        ),
        record(
            "vigil:slo_error_budget_remaining",
            format!("1 - vigil:slo_error_ratio:window{select} / {budget}"),
            &labels,
        ),
    ];

    let mut alerts = Vec::new();
    for tier in burn_windows(window) {
        let settings = match tier.severity {
            "page" => &spec.alerting.page,
            _ => &spec.alerting.ticket,
        };
        if settings.disabled {
            continue;
        }
        alerts.push(burn_alert(
            &key,
            &spec.service,
            budget,
            window,
            &tier,
            settings,
        ));
    }
    if let Some(absent_for) = &spec.alerting.absent_for {
        let mut absent_labels = labels.clone();
        absent_labels.insert("severity".into(), "ticket".into());
        alerts.push(Rule {
            record: None,
            alert: Some(ABSENT_ALERT_NAME.to_owned()),
            expr: format!("absent(vigil:slo_requests:rate5m{select})"),
            for_: Some(absent_for.clone()),
            labels: absent_labels,
            annotations: BTreeMap::from([(
                "summary".to_owned(),
                format!(
                    "The SLI of {key} ({}) has no series: the SLO cannot be measured.",
                    spec.service
                ),
            )]),
        });
    }

    let strategy = (spec.ruler == Ruler::Thanos).then(|| "warn".to_owned());
    let mut groups = vec![
        RuleGroup {
            name: format!("vigil-slo:{key}:sli"),
            interval: None,
            partial_response_strategy: strategy.clone(),
            rules: sli,
        },
        RuleGroup {
            name: format!("vigil-slo:{key}:budget"),
            interval: None,
            partial_response_strategy: strategy.clone(),
            rules: budget_rules,
        },
    ];
    if !alerts.is_empty() {
        groups.push(RuleGroup {
            name: format!("vigil-slo:{key}:alerts"),
            interval: None,
            partial_response_strategy: strategy,
            rules: alerts,
        });
    }
    labels.clear();
    Ok(RuleFile { groups })
}

/// Budgets and objectives rounded to 12 significant decimals, so that 1 - 99.9/100 prints
/// as 0.001 and not 0.0010000000000000009.
fn round_budget(value: f64) -> f64 {
    (value * 1e12).round() / 1e12
}

fn burn_alert(
    key: &str,
    service: &str,
    budget: f64,
    window: Duration,
    tier: &BurnWindow,
    settings: &AlertTier,
) -> Rule {
    let long = promql_duration(tier.long);
    let short = promql_duration(tier.short);
    let expr = burn_expr(key, budget, tier);
    let mut labels = settings.labels.clone();
    labels.insert("vigil_slo".into(), key.to_owned());
    labels.insert("service".into(), service.to_owned());
    labels.insert("severity".into(), tier.severity.to_owned());
    labels.insert("long".into(), long.clone());
    labels.insert("short".into(), short.clone());
    let mut annotations = BTreeMap::from([
        (
            "summary".to_owned(),
            format!(
                "{service} burns its error budget {{{{ printf \"%.1f\" $value }}}}x too fast over {long} (threshold {factor}x); {{{{ with printf \"vigil:slo_error_budget_remaining{{vigil_slo=%q}}\" $labels.vigil_slo | query }}}}{{{{ . | first | value | humanizePercentage }}}}{{{{ else }}}}unknown{{{{ end }}}} of the budget is left.",
                factor = tier.factor
            ),
        ),
        (
            "description".to_owned(),
            format!(
                "SLO {key}: the error ratio over {long} and over {short} is above {factor} times the error budget ({budget}). At that rate the budget of the whole {window} window is spent in {}.",
                spent_in(window, tier.factor),
                factor = tier.factor,
                window = promql_duration(window)
            ),
        ),
    ]);
    annotations.extend(settings.annotations.clone());
    Rule {
        record: None,
        alert: Some(ALERT_NAME.to_owned()),
        expr,
        for_: settings.for_.clone(),
        labels,
        annotations,
    }
}

/// The condition of one burn alert: the error ratio over both windows of `tier` above its
/// factor times the budget.
fn burn_expr(key: &str, budget: f64, tier: &BurnWindow) -> String {
    let long = promql_duration(tier.long);
    let short = promql_duration(tier.short);
    let select = format!("{{vigil_slo=\"{key}\"}}");
    format!(
        "(vigil:slo_error_ratio:rate{long}{select} / {budget} > {factor})\nand\n(vigil:slo_error_ratio:rate{short}{select} / {budget} > {factor})",
        factor = tier.factor
    )
}

/// The conditions of the SLO's page-level burn alerts, exactly as its rules state them
/// (whether or not paging is enabled in `spec.alerting`): while one returns a sample, the
/// SLO burns its budget fast enough to page. `TelemetryPipeline` sampling boosts follow it.
pub fn page_burn_conditions(slo: &ServiceLevelObjective) -> Result<Vec<String>, SloError> {
    let window = parse_window(&slo.spec.window)?;
    let key = slo_key(slo);
    let budget = round_budget(1.0 - slo.spec.objective / 100.0);
    Ok(burn_windows(window)
        .iter()
        .filter(|tier| tier.severity == "page")
        .map(|tier| burn_expr(&key, budget, tier))
        .collect())
}

/// How long a budget lasts at `factor` times the sustainable burn rate, in whole hours.
fn spent_in(window: Duration, factor: f64) -> String {
    let hours = (window.as_secs_f64() / 3600.0 / factor).round().max(1.0) as u64;
    if hours >= 48 {
        format!("about {} days", hours / 24)
    } else {
        format!("about {hours} hours")
    }
}

/// What one SLO renders to.
#[derive(Debug, Clone)]
pub struct RenderedSlo {
    /// The PrometheusRule or ConfigMap to apply.
    pub object: DynamicObject,
    /// The plain rule file, `prometheus/<namespace>/<name>.rules.yaml`.
    pub file: super::RenderedFile,
    /// Number of rules.
    pub rules: usize,
}

/// Name of the object holding an SLO's rules.
pub fn rules_object_name(slo: &ServiceLevelObjective) -> String {
    format!("{}-slo-rules", slo.name_any())
}

/// Renders the rules of `slo` into an object of `kind` and a rule file.
pub fn render_slo(
    slo: &ServiceLevelObjective,
    kind: RuleOutputKind,
) -> Result<RenderedSlo, SloError> {
    let file = render_rules(slo)?;
    let yaml = file.to_yaml();
    let namespace = slo.namespace().unwrap_or_default();
    let name = rules_object_name(slo);
    let mut labels = slo.spec.output.labels.clone();
    labels.insert("app.kubernetes.io/managed-by".into(), "vigil".into());
    labels.insert("vigil.io/slo".into(), slo.name_any());
    let metadata = serde_json::json!({"name": name, "namespace": namespace, "labels": labels});
    let object = match kind {
        RuleOutputKind::PrometheusRule => serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": metadata,
            "spec": file,
        }),
        RuleOutputKind::ConfigMap => serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {format!("{}.rules.yaml", slo.name_any()): yaml},
        }),
    };
    let object: DynamicObject = serde_json::from_value(object).map_err(|e| SloError::PromQl {
        field: "spec",
        message: e.to_string(),
    })?;
    Ok(RenderedSlo {
        object,
        file: super::RenderedFile {
            path: std::path::PathBuf::from(format!(
                "prometheus/{namespace}/{}.rules.yaml",
                slo.name_any()
            )),
            content: yaml,
        },
        rules: file.rule_count(),
    })
}

impl SloError {
    /// The field path the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            SloError::PromQl { field, .. } => field,
            SloError::Window(_) => "spec.window",
            SloError::NoSli => "spec.sli",
        }
    }

    /// The message without the field path.
    pub fn message(&self) -> String {
        match self {
            SloError::PromQl { message, .. } => message.clone(),
            other => other
                .to_string()
                .split_once(": ")
                .map(|(_, m)| m.to_owned())
                .unwrap_or_default(),
        }
    }
}

impl RuleFile {
    /// The file as YAML: what serde_yaml_ng writes, by a faster writer of Vigil's own
    /// when it can (`rule_yaml`, which declines what it does not handle).
    pub fn to_yaml(&self) -> String {
        super::rule_yaml::write(self)
            .unwrap_or_else(|| serde_yaml_ng::to_string(self).unwrap_or_default())
    }

    /// Number of rules in all groups.
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_give_the_workbook_factors() {
        let factors: Vec<(&str, String, String, f64)> =
            burn_windows(Duration::from_secs(30 * 86400))
                .into_iter()
                .map(|w| {
                    (
                        w.severity,
                        promql_duration(w.long),
                        promql_duration(w.short),
                        w.factor,
                    )
                })
                .collect();
        assert_eq!(
            factors,
            [
                ("page", "1h".to_owned(), "5m".to_owned(), 14.4),
                ("page", "6h".to_owned(), "30m".to_owned(), 6.0),
                ("ticket", "1d".to_owned(), "2h".to_owned(), 3.0),
                ("ticket", "3d".to_owned(), "6h".to_owned(), 1.0),
            ]
        );
    }

    #[test]
    fn other_windows_keep_the_budget_shares() {
        let f = |days: u64| -> Vec<f64> {
            burn_windows(Duration::from_secs(days * 86400))
                .iter()
                .map(|w| w.factor)
                .collect()
        };
        assert_eq!(f(28), [13.44, 5.6, 2.8, 1.0]);
        assert_eq!(f(7), [3.36, 1.4, 1.0, 1.0]);
        // A 12-hour SLO has no room for the ticket windows of 1 and 3 days.
        assert_eq!(burn_windows(Duration::from_secs(12 * 3600)).len(), 2);
    }

    #[test]
    fn windows_parse_and_print() {
        assert_eq!(parse_window("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_window("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert!(parse_window("4w").is_err());
        assert!(parse_window("0d").is_err());
        // Found by the `manifest` fuzz target: the multiplication overflowed.
        assert!(parse_window("213503982334602d").is_err());
        assert_eq!(promql_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(promql_duration(Duration::from_secs(1800)), "30m");
    }
}
