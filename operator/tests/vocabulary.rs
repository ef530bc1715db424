//! Every condition type and reason a controller writes is explained in its kind's page of
//! `docs/` (in backticks, as users see it in `kubectl describe`).

use vigil::api::cross_cloud_dns::vocabulary as dns;
use vigil::api::member_cluster::vocabulary as member;
use vigil::api::service_level_objective::vocabulary as slo;
use vigil::api::telemetry_pipeline::vocabulary as telemetry;

fn documented(page: &str, words: &[&str]) {
    let path = format!("{}/../docs/{page}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let missing: Vec<&str> = words
        .iter()
        .copied()
        .filter(|word| !text.contains(&format!("`{word}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/{page} does not explain {missing:?}"
    );
}

#[test]
fn every_slo_condition_and_reason_is_documented() {
    documented("slo.md", slo::ALL);
}

#[test]
fn every_cross_cloud_dns_reason_is_documented() {
    documented("dns.md", dns::ALL);
}

#[test]
fn every_member_cluster_condition_and_reason_is_documented() {
    documented("member-clusters.md", member::ALL);
}

#[test]
fn every_telemetry_pipeline_condition_and_reason_is_documented() {
    documented("telemetry.md", telemetry::ALL);
}
