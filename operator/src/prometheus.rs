//! A client of Prometheus' HTTP query API, for what the controllers read back: an SLO's
//! error budget and burn rate, and whether a page-level burn holds (a TelemetryPipeline's
//! rollout gate).

use std::time::Duration;

use serde_json::Value;

use crate::error_chain::describe;

/// What Prometheus says of one SLO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetReading {
    /// Share of the window's error budget left (1 = untouched; negative = overspent).
    pub remaining: f64,
    /// Burn rate over the last hour, when known.
    pub burn_rate: Option<f64>,
}

/// Reads the budget left and the current burn rate of the SLO with key `key` (the
/// `vigil_slo` label of its recorded series). With grouping, the SLO's figures are those
/// of its worst label set. `None` when Prometheus has no budget series for it yet.
pub async fn query_budget(url: &str, key: &str) -> Result<Option<BudgetReading>, String> {
    let client = client()?;
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
    let client = client()?;
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

fn client() -> Result<reqwest::Client, String> {
    crate::tls::http_client(None, Duration::from_secs(5)).map_err(|e| e.to_string())
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
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("HTTP {status}: {}", describe(&e)))?;
    first_sample(&body).map_err(|message| format!("HTTP {status}: {message}"))
}

/// The value of the first sample of an instant query's answer: `None` for an empty
/// result or a value that is not a finite number (`NaN` when a ratio has no traffic).
fn first_sample(body: &Value) -> Result<Option<f64>, String> {
    if body["status"] != "success" {
        return Err(body["error"].as_str().unwrap_or("query failed").to_owned());
    }
    Ok(body["data"]["result"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|sample| sample["value"][1].as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::first_sample;

    fn vector(values: &[&str]) -> serde_json::Value {
        json!({"status": "success", "data": {"resultType": "vector", "result":
            values.iter().map(|v| json!({"metric": {}, "value": [1_700_000_000.0, v]})).collect::<Vec<_>>()}})
    }

    #[test]
    fn an_answer_is_read_as_its_first_finite_sample() {
        type Case = (&'static str, serde_json::Value, Result<Option<f64>, String>);
        let cases: &[Case] = &[
            ("one sample", vector(&["0.25"]), Ok(Some(0.25))),
            (
                "the first of several",
                vector(&["-1.5", "0.9"]),
                Ok(Some(-1.5)),
            ),
            ("no sample: no data yet", vector(&[]), Ok(None)),
            ("NaN: no traffic", vector(&["NaN"]), Ok(None)),
            ("+Inf", vector(&["+Inf"]), Ok(None)),
            (
                "an error names itself",
                json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}),
                Err("parse error at char 4".to_owned()),
            ),
            (
                "an error without words",
                json!({"status": "error"}),
                Err("query failed".to_owned()),
            ),
            (
                "not Prometheus",
                json!({"hello": "world"}),
                Err("query failed".to_owned()),
            ),
        ];
        for (case, body, expected) in cases {
            assert_eq!(&first_sample(body), expected, "{case}");
        }
    }
}
