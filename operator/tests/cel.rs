//! CEL rules of the CRDs evaluated offline with kube's `cel` feature, including the
//! transition rules that only an update can exercise.

use serde_json::json;
use vigil::api::{MemberCluster, SupervisedWorkload};

fn workload(kind: &str, name: &str) -> SupervisedWorkload {
    serde_json::from_value(json!({
        "apiVersion": "vigil.io/v1alpha1",
        "kind": "SupervisedWorkload",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"target": {"kind": kind, "name": name}},
    }))
    .expect("a SupervisedWorkload")
}

#[test]
fn the_workload_target_cannot_change() {
    let old = workload("Deployment", "api");
    assert!(old.validate_cel().is_ok());
    assert!(
        workload("Deployment", "api")
            .validate_cel_update(&old)
            .is_ok()
    );
    let errors = workload("StatefulSet", "api")
        .validate_cel_update(&old)
        .expect_err("immutable");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field_path, "spec.target");
    assert!(
        errors[0].message.contains("target is immutable"),
        "{}",
        errors[0].message
    );
}

#[test]
fn a_local_member_needs_no_api_server_but_a_remote_one_does() {
    let member = |spec: serde_json::Value| -> MemberCluster {
        serde_json::from_value(json!({
            "apiVersion": "vigil.io/v1alpha1",
            "kind": "MemberCluster",
            "metadata": {"name": "aws"},
            "spec": spec,
        }))
        .expect("a MemberCluster")
    };
    assert!(
        member(json!({"provider": "aws", "region": "eu-west-1", "local": true}))
            .validate_cel()
            .is_ok()
    );
    let errors = member(json!({"provider": "aws", "region": "eu-west-1"}))
        .validate_cel()
        .expect_err("remote without apiServer");
    assert!(
        errors
            .iter()
            .any(|e| e.message == "apiServer is required unless local is true"),
        "{errors}"
    );
}

#[test]
fn every_rule_compiles() {
    for crd in vigil::api::crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("json");
        let compiled = kube::core::cel::compile_schema(&schema);
        let errors: Vec<String> = compiled
            .compilation_errors()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errors.is_empty(),
            "{}: {errors:?}",
            crd.metadata.name.unwrap_or_default()
        );
    }
}

/// Every field has a description, so `kubectl explain` has text for it.
#[test]
fn every_field_is_documented_for_kubectl_explain() {
    fn walk(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in properties {
                let child_path = format!("{path}.{name}");
                let documented = child
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !d.trim().is_empty());
                // apiVersion, kind and metadata are described by Kubernetes itself.
                if !documented
                    && !matches!(child_path.as_str(), ".apiVersion" | ".kind" | ".metadata")
                {
                    missing.push(child_path.clone());
                }
                walk(child, &child_path, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(items, &format!("{path}[]"), missing);
        }
    }
    for crd in vigil::api::crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("json");
        let mut missing = Vec::new();
        walk(&schema, "", &mut missing);
        assert!(
            missing.is_empty(),
            "{}: fields without a description: {missing:?}",
            crd.metadata.name.unwrap_or_default()
        );
    }
}
