//! Vigil's SLO alerts through the programs users run them with: a real Prometheus
//! evaluates the rules `vigil render` wrote for two SLOs, one burning fast and one slowly,
//! and sends the alerts to a real Alertmanager running `docs/alerting/alertmanager.yml` as
//! it is (its two webhook URLs pointed at receivers on loopback). The fast burn reaches
//! the page receiver only (its ticket is inhibited), the slow burn the ticket receiver only,
//! and each payload carries the labels and annotations `docs/slo.md` promises. The same
//! fast burn rendered with `ruler: thanos` runs in a real Thanos Ruler (stateless:
//! querying that Prometheus, remote-writing what it records into it) and pages through the
//! same Alertmanager; every rule of its groups evaluates, the 30-day window's included.

use std::process::Command;
use std::time::{Duration, Instant};

use vigil_e2e::alertmanager::{Alertmanager, WebhookSink};
use vigil_e2e::operator::vigil_binary;
use vigil_e2e::prometheus::{Job, PrometheusOptions};
use vigil_e2e::thanos::ThanosRuler;
use vigil_e2e::{Exporter, Prometheus, eventually, repo};

const RUNBOOK: &str = "https://runbooks.example.com/checkout/availability";

/// An SLO of 99.9% over 30 days on the requests of `job`, both tiers after 5 s (the
/// generated rules are otherwise as users get them).
fn slo(name: &str, job: &str, ruler: &str) -> String {
    format!(
        r#"apiVersion: vigil.io/v1alpha1
kind: ServiceLevelObjective
metadata: {{name: {name}, namespace: shop}}
spec:
  ruler: {ruler}
  service: checkout
  objective: 99.9
  window: 30d
  sli:
    ratio:
      errors: http_requests_total{{job="{job}",code="500"}}
      total: http_requests_total{{job="{job}"}}
  alerting:
    page:
      for: 5s
      annotations: {{runbook_url: "{RUNBOOK}"}}
    ticket:
      for: 5s
      annotations: {{runbook_url: "{RUNBOOK}"}}
  output: {{kind: ConfigMap}}
"#
    )
}

/// The documented configuration with its receivers' URLs replaced.
fn documented_config(page: &str, ticket: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(repo().join("docs/alerting/alertmanager.yml"))?;
    let mut config: serde_json::Value = serde_yaml_ng::from_str(&text)?;
    for receiver in config["receivers"].as_array_mut().into_iter().flatten() {
        let url = match receiver["name"].as_str() {
            Some("page") => page,
            Some("ticket") => ticket,
            _ => continue,
        };
        receiver["webhook_configs"][0]["url"] = url.into();
    }
    Ok(serde_yaml_ng::to_string(&config)?)
}

/// Every alert of every notification a receiver got, with the receiver's name.
fn alerts(sink: &WebhookSink) -> Vec<(String, serde_json::Value)> {
    sink.received()
        .into_iter()
        .flat_map(|body| {
            let receiver = body["receiver"].as_str().unwrap_or_default().to_owned();
            body["alerts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |alert| (receiver.clone(), alert))
        })
        .collect()
}

#[test]
fn the_docs_show_the_alertmanager_config_the_test_runs() {
    let config =
        std::fs::read_to_string(repo().join("docs/alerting/alertmanager.yml")).expect("the config");
    let docs = std::fs::read_to_string(repo().join("docs/slo.md")).expect("docs/slo.md");
    assert!(
        docs.contains(&format!("```yaml\n{config}```")),
        "docs/slo.md must show docs/alerting/alertmanager.yml as it is"
    );
}

#[tokio::test]
async fn a_fast_burn_pages_a_slow_burn_opens_a_ticket_and_the_page_mutes_its_ticket() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    scenario(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn scenario(dir: &std::path::Path) -> anyhow::Result<()> {
    // The rules, as `vigil render` writes them for Prometheus.
    let manifests = dir.join("slos");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(
        manifests.join("fast.yaml"),
        slo("fast", "fast", "prometheus"),
    )?;
    std::fs::write(
        manifests.join("slow.yaml"),
        slo("slow", "slow", "prometheus"),
    )?;
    // The fast burn once more, for Thanos Ruler.
    std::fs::write(
        manifests.join("fast-thanos.yaml"),
        slo("fast-thanos", "fast", "thanos"),
    )?;
    let out = dir.join("out");
    let rendered = Command::new(vigil_binary()?)
        .args(["render", "-f"])
        .arg(&manifests)
        .arg("-o")
        .arg(&out)
        .output()?;
    anyhow::ensure!(rendered.status.success(), "{rendered:?}");

    let page = WebhookSink::start().await?;
    let ticket = WebhookSink::start().await?;
    let alertmanager =
        Alertmanager::start(dir, &documented_config(&page.url, &ticket.url)?).await?;
    // 2% of requests fail: 20 times the budget of 0.1%, above every tier. 0.4% fail: 4
    // times, above the ticket tiers (3 and 1) only.
    let fast = Exporter::start(98.0, 2.0).await?;
    let slow = Exporter::start(99.6, 0.4).await?;
    let prometheus = Prometheus::start_with(
        dir,
        &PrometheusOptions {
            jobs: vec![
                Job::new("fast", &fast.address),
                Job::new("slow", &slow.address),
            ],
            alertmanager: Some(alertmanager.address.clone()),
            // Thanos Ruler writes what it records back into it.
            remote_write_receiver: true,
            ..PrometheusOptions::default()
        },
    )
    .await?;
    let thanos = ThanosRuler::start(dir, &prometheus.url, &alertmanager.address).await?;
    let thanos_rules = out.join("prometheus/shop/fast-thanos.rules.yaml");
    let text = std::fs::read_to_string(&thanos_rules)?;
    assert!(text.contains("partial_response_strategy: warn"), "{text}");
    std::fs::copy(&thanos_rules, thanos.rules_dir.join("fast-thanos.yaml"))?;
    thanos.reload().await?;
    for name in ["fast", "slow"] {
        std::fs::copy(
            out.join(format!("prometheus/shop/{name}.rules.yaml")),
            prometheus.rules_dir.join(format!("{name}.yaml")),
        )?;
    }
    prometheus.reload().await?;
    let started = Instant::now();

    // Both notifications arrive: the page of the fast burn, the ticket of the slow one.
    let logs = || {
        format!(
            "alertmanager:\n{}\nprometheus:\n{}\nthanos:\n{}",
            alertmanager.log_tail(),
            prometheus.log_tail(),
            thanos.log_tail()
        )
    };
    eventually("a page and a ticket", Duration::from_secs(150), || async {
        let paged = alerts(&page)
            .iter()
            .any(|(_, a)| a["labels"]["vigil_slo"] == "shop/fast");
        let ticketed = alerts(&ticket)
            .iter()
            .any(|(_, a)| a["labels"]["vigil_slo"] == "shop/slow");
        Ok((paged && ticketed).then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", logs()))?;
    eprintln!(
        "page and ticket notified {:.0}s after the rules loaded (group_wait 30s)",
        started.elapsed().as_secs_f64()
    );
    // Thanos Ruler's page of the same burn reaches the same receiver: each level of its
    // recording rules goes through Prometheus (remote write, then query).
    eventually("Thanos Ruler's page", Duration::from_secs(240), || async {
        Ok(alerts(&page)
            .iter()
            .any(|(_, a)| a["labels"]["vigil_slo"] == "shop/fast-thanos")
            .then_some(()))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", logs()))?;
    eprintln!(
        "Thanos Ruler's page notified {:.0}s after the rules loaded",
        started.elapsed().as_secs_f64()
    );
    // Every rule of every group evaluates in Thanos, the 30-day window's included, and
    // what it records is there to query.
    let groups = thanos.api("rules").await?;
    let groups = groups["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(groups.len(), 3, "{groups:?}");
    for group in &groups {
        for rule in group["rules"].as_array().into_iter().flatten() {
            assert_eq!(rule["health"], "ok", "{} in {}", rule, group["name"]);
        }
    }
    let ratio = prometheus
        .api("query?query=vigil:slo_error_ratio:rate1h%7Bvigil_slo%3D%22shop%2Ffast-thanos%22%7D")
        .await?;
    let value: f64 = ratio["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}: {ratio}"))?;
    assert!(
        (value - 0.02).abs() < 0.002,
        "the 1h error ratio Thanos recorded: {value}"
    );
    // Evaluation time of each group, Prometheus against Thanos, for the same SLO.
    let ours = prometheus.api("rules").await?;
    for (ruler, list, slo) in [
        ("prometheus", ours["data"]["groups"].clone(), "shop/fast:"),
        (
            "thanos",
            serde_json::Value::Array(groups.clone()),
            "shop/fast-thanos:",
        ),
    ] {
        for group in list.as_array().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or_default();
            if name.contains(slo) {
                eprintln!(
                    "{ruler}: group {name} evaluates in {:.2} ms",
                    group["evaluationTime"].as_f64().unwrap_or_default() * 1000.0
                );
            }
        }
    }

    // The fast burn's tickets fire in Prometheus but Alertmanager holds them: inhibited by
    // its page, with the same vigil_slo.
    let held = alertmanager.alerts().await?;
    let fast_tickets: Vec<&serde_json::Value> = held
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["vigil_slo"] != "shop/slow" && a["labels"]["severity"] == "ticket")
        .collect();
    assert!(
        !fast_tickets.is_empty(),
        "the fast burn's tickets fire too: {held}"
    );
    for alert in &fast_tickets {
        assert_eq!(alert["status"]["state"], "suppressed", "{alert}");
        assert!(
            alert["status"]["inhibitedBy"]
                .as_array()
                .is_some_and(|by| !by.is_empty()),
            "{alert}"
        );
    }
    // A later notification would come within group_wait of the first: wait that long, then
    // each receiver has only its own.
    tokio::time::sleep(Duration::from_secs(35)).await;
    let paged = alerts(&page);
    let ticketed = alerts(&ticket);
    eprintln!(
        "page received {} alerts, ticket {}",
        paged.len(),
        ticketed.len()
    );
    for (receiver, alert) in &paged {
        assert_eq!(receiver, "page");
        assert!(
            alert["labels"]["vigil_slo"] == "shop/fast"
                || alert["labels"]["vigil_slo"] == "shop/fast-thanos",
            "the slow burn pages: {alert}"
        );
        assert_eq!(alert["labels"]["severity"], "page", "{alert}");
    }
    for (receiver, alert) in &ticketed {
        assert_eq!(receiver, "ticket");
        assert_eq!(
            alert["labels"]["vigil_slo"], "shop/slow",
            "an inhibited ticket arrived: {alert}"
        );
        assert_eq!(alert["labels"]["severity"], "ticket", "{alert}");
    }

    // What the docs promise in each alert: the labels, a summary with the burn rate and the
    // budget left, a description, the runbook.
    for (_, alert) in paged.iter().chain(&ticketed) {
        assert_eq!(alert["status"], "firing", "{alert}");
        assert_eq!(alert["labels"]["alertname"], "SLOErrorBudgetBurn");
        assert_eq!(alert["labels"]["service"], "checkout");
        assert!(
            alert["labels"]["long"].is_string() && alert["labels"]["short"].is_string(),
            "{alert}"
        );
        let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.starts_with("checkout burns its error budget ")
                && summary.contains("x too fast over ")
                && summary.ends_with(" of the budget is left."),
            "{summary}"
        );
        let description = alert["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            description.contains("the budget of the whole 30d window is spent in about"),
            "{description}"
        );
        assert_eq!(alert["annotations"]["runbook_url"], RUNBOOK);
    }
    let fast_rate = paged
        .iter()
        .find(|(_, a)| a["labels"]["long"] == "1h")
        .and_then(|(_, a)| a["annotations"]["summary"].as_str())
        .unwrap_or_default();
    assert!(fast_rate.contains("(threshold 14.4x)"), "{fast_rate}");
    Ok(())
}
