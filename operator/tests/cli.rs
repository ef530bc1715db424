//! The `vigil` binary as a GitOps pipeline runs it: examples pass, every manifest of the
//! invalid corpus is refused with exit code 1 and exactly its expected problems.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vigil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("vigil runs")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_examples_are_valid() {
    let examples = repo().join("examples");
    let output = vigil(&["validate", "-f", examples.to_str().expect("utf-8 path")]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("15 valid, 0 problems"), "{stdout}");
    for kind in [
        "MemberCluster",
        "ServiceLevelObjective",
        "AcmeIssuer",
        "AcmeCertificate",
        "CrossCloudDNS",
        "TelemetryPipeline",
        "SupervisedWorkload",
    ] {
        assert!(
            stdout.contains(&format!(": {kind}/")),
            "no {kind} among the examples:\n{stdout}"
        );
    }
}

#[test]
fn the_examples_render() {
    let examples = repo().join("examples");
    let output = vigil(&["render", "-f", examples.to_str().expect("utf-8 path")]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("from 15 Vigil objects"),
        "{}",
        text(&output.stderr)
    );
    // With -o, the files for peer programs: one Collector configuration per cluster of the
    // example pipeline, for its provider.
    let out = tempfile::tempdir().expect("tempdir");
    let output = vigil(&[
        "render",
        "-f",
        examples.to_str().expect("utf-8 path"),
        "-o",
        out.path().to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for (cluster, exporter) in [
        ("aws", "awsxray"),
        ("aliyun", "otlp_grpc/sls"),
        ("vmware", "otlp_http/loki"),
    ] {
        let path = out.path().join(format!("otelcol/{cluster}/shop-shop.yaml"));
        let config =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(config.contains(exporter), "{cluster}: {config}");
    }
    let sidecar = std::fs::read_to_string(out.path().join("otelcol/aws/shop-checkout.yaml"))
        .expect("the sidecar pipeline's configuration");
    assert!(!sidecar.contains("k8s_attributes"), "{sidecar}");
}

/// Each corpus file starts with `# expect: <field path>: <message>` lines: the problems
/// `vigil validate` must report, no more and no fewer.
#[test]
fn every_invalid_manifest_is_refused_with_its_field_and_reason() {
    let dir = repo().join("operator/tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 25,
        "the corpus holds {} manifests",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("readable");
        let expected: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let output = vigil(&["validate", "-f", file.to_str().expect("utf-8 path")]);
        let stderr = text(&output.stderr);
        let reported: Vec<String> = stderr
            .lines()
            .map(|line| {
                assert!(
                    line.starts_with(&file.display().to_string()),
                    "a problem names its file: {line}"
                );
                // <file>#<index>: <Kind>/<name>: <path>: <message>
                let (_, rest) = line.split_once(": ").expect("file prefix");
                let (_, problem) = rest.split_once(": ").expect("object prefix");
                problem.to_owned()
            })
            .collect();
        if output.status.code() != Some(1) || reported != expected {
            failures.push(format!(
                "{}: exit {:?}\n  expected: {expected:?}\n  reported: {reported:?}",
                file.display(),
                output.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn render_writes_nothing_for_an_invalid_manifest() {
    let out = tempfile::tempdir().expect("temp dir");
    let bad = repo().join("operator/tests/invalid/slo-two-slis.yaml");
    let output = vigil(&[
        "render",
        "-f",
        bad.to_str().expect("utf-8"),
        "-o",
        out.path().to_str().expect("utf-8"),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stdout).is_empty());
    assert_eq!(std::fs::read_dir(out.path()).expect("dir").count(), 0);
}

#[test]
fn a_missing_file_is_an_error_not_a_pass() {
    let output = vigil(&["validate", "-f", "/nonexistent/manifests"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("No such file"),
        "{}",
        text(&output.stderr)
    );
}

/// `crds/` is generated; this fails when the Rust types changed and `make crds` was not run.
#[test]
fn the_committed_crds_match_the_api_types() {
    assert_generated("crds", vigil::cli::crd_files());
}

/// The chart's CRD templates are generated from the same types.
#[test]
fn the_chart_crds_match_the_api_types() {
    let templates = vigil::cli::crd_files()
        .into_iter()
        .map(|(name, yaml)| (name, vigil::cli::helm_crd_template(&yaml)))
        .collect();
    assert_generated("charts/vigil/templates/crds", templates);
}

fn assert_generated(dir: &str, generated: Vec<(String, String)>) {
    let dir = repo().join(dir);
    let mut committed: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    committed.sort();
    let mut names: Vec<String> = generated.iter().map(|(name, _)| name.clone()).collect();
    names.sort();
    assert_eq!(
        committed, names,
        "crds/ must hold exactly one file per kind; run `make crds`"
    );
    for (name, yaml) in generated {
        let on_disk = std::fs::read_to_string(dir.join(&name)).expect("readable");
        assert!(
            on_disk == yaml,
            "{}/{name} is stale; run `make crds`",
            dir.display()
        );
    }
}
