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

/// `promtool test rules` suites in `operator/tests/slo/burn/`: every alert tier fires at the
/// expected time with a steady error ratio just above its threshold and stays silent just
/// below it; the full-window SLI is exact under uneven traffic.
#[test]
fn the_burn_rate_suites_pass_promtool_test_rules() {
    let dir = repo().join("operator/tests/slo/burn");
    let loaded = manifest::load(&[dir.join("slo.yaml")], "default").expect("readable");
    let slo = loaded
        .inventory
        .service_level_objectives
        .first()
        .expect("one SLO")
        .clone();
    let work = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        work.path().join("rules.yaml"),
        render_rules(&slo).expect("renders").to_yaml(),
    )
    .expect("written");
    let mut suites: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("suites")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
        .collect();
    suites.sort();
    assert!(suites.len() >= 9, "{suites:?}");
    // Two at a time: the long suites take a while each.
    let failures: Vec<String> = suites
        .chunks(2)
        .flat_map(|pair| {
            let running: Vec<_> = pair
                .iter()
                .map(|suite| {
                    let copy = work.path().join(suite.file_name().expect("name"));
                    std::fs::copy(suite, &copy).expect("copied");
                    (
                        suite.clone(),
                        Command::new(promtool())
                            .args(["test", "rules"])
                            .arg(&copy)
                            .current_dir(work.path())
                            .spawn()
                            .expect("promtool runs"),
                    )
                })
                .collect();
            running
                .into_iter()
                .filter_map(|(suite, child)| {
                    let output = child.wait_with_output().expect("promtool ends");
                    (!output.status.success()).then(|| {
                        format!(
                            "{}: {}",
                            suite.display(),
                            String::from_utf8_lossy(&output.stdout)
                        )
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
