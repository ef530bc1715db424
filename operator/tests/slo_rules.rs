//! The generated Prometheus rules: golden snapshots (review changes with `cargo insta
//! review`), and every rule file accepted by `promtool check rules`.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil::api::ServiceLevelObjective;
use vigil::manifest;
use vigil::render::slo::render_rules;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn fixtures() -> Vec<ServiceLevelObjective> {
    let loaded = manifest::load(
        &[repo().join("operator/tests/slo/fixtures.yaml")],
        "default",
    )
    .expect("readable");
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert_eq!(loaded.inventory.service_level_objectives.len(), 7);
    loaded.inventory.service_level_objectives
}

/// `promtool` from the Debian package `make tools` installs.
pub fn promtool() -> PathBuf {
    let path = PathBuf::from("/usr/bin/promtool");
    assert!(path.is_file(), "promtool is missing: run `make tools`");
    path
}

#[test]
fn generated_rules_match_their_snapshots() {
    for slo in fixtures() {
        let name = kube::ResourceExt::name_any(&slo);
        let rules = render_rules(&slo).expect("renders");
        insta::assert_snapshot!(name, rules.to_yaml());
    }
}

#[test]
fn every_generated_rule_file_passes_promtool_check_rules() {
    let dir = tempfile::tempdir().expect("temp dir");
    for slo in fixtures() {
        let name = kube::ResourceExt::name_any(&slo);
        if slo.spec.ruler == vigil::api::service_level_objective::Ruler::Thanos {
            // partial_response_strategy is a Thanos Ruler field that promtool rejects.
            continue;
        }
        let file = dir.path().join(format!("{name}.rules.yaml"));
        std::fs::write(&file, render_rules(&slo).expect("renders").to_yaml()).expect("written");
        let output = Command::new(promtool())
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .expect("promtool runs");
        assert!(
            output.status.success(),
            "{name}: promtool check rules failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
