//! Validated config hot-reload of a `SupervisedWorkload`, the pure parts: every key of the
//! source ConfigMap checked against the JSON Schema, the content hash that names an
//! immutable revision, a readable diff between revisions, and the rewrite of the pod
//! template's references from one ConfigMap to another (the one patch that switches).

use std::collections::BTreeMap;

use serde_json::Value;

/// Diff entries shown before the summary says how many more there are.
const DIFF_ENTRIES: usize = 8;

/// A key's value as a document: JSON, or YAML (a superset of JSON) otherwise.
pub fn parse_document(text: &str) -> Result<Value, String> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(_) => serde_yaml_ng::from_str(text).map_err(|e| format!("neither JSON nor YAML: {e}")),
    }
}

/// Compiles `schema` (JSON Schema draft 2020-12 unless it names another with `$schema`).
pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))
}

/// Every problem of the ConfigMap `data` against `validator`: `<key>: <path>: <message>`,
/// the path as a JSON pointer into the key's document (`/` for the whole document).
pub fn check(validator: &jsonschema::Validator, data: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, text) in data {
        let document = match parse_document(text) {
            Ok(document) => document,
            Err(e) => {
                problems.push(format!("{key}: {e}"));
                continue;
            }
        };
        for error in validator.iter_errors(&document) {
            let path = error.instance_path().as_str().to_owned();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            problems.push(format!("{key}: {path}: {error}"));
        }
    }
    problems
}

/// The content hash of a ConfigMap's data (keys in order), 16 hex digits.
pub fn content_hash(data: &BTreeMap<String, String>) -> String {
    crate::hash::short_hash(serde_json::to_string(data).unwrap_or_default().as_bytes())
}

/// Name of the immutable revision of `source` with content `hash`.
pub fn revision_name(source: &str, hash: &str) -> String {
    let mut base = source.to_owned();
    base.truncate(253 - hash.len() - 1);
    format!("{base}-{hash}")
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

fn flat(data: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, text) in data {
        match parse_document(text) {
            Ok(document @ Value::Object(_)) => flatten(key, &document, &mut out),
            _ => {
                out.insert(key.clone(), format!("{text:?}"));
            }
        }
    }
    out
}

/// What changed from `old` to `new`, in one line: `~app.yaml.server.port: 8080 -> 9090`,
/// `+app.yaml.feature`, `-legacy.json`; the first few entries, then how many more.
pub fn diff_summary(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> String {
    let (old, new) = (flat(old), flat(new));
    let mut entries = Vec::new();
    for (path, value) in &new {
        match old.get(path) {
            None => entries.push(format!("+{path}")),
            Some(before) if before != value => {
                entries.push(format!("~{path}: {} -> {}", short(before), short(value)));
            }
            Some(_) => {}
        }
    }
    entries.extend(
        old.keys()
            .filter(|p| !new.contains_key(*p))
            .map(|p| format!("-{p}")),
    );
    if entries.is_empty() {
        return "no change".to_owned();
    }
    let more = entries.len().saturating_sub(DIFF_ENTRIES);
    entries.truncate(DIFF_ENTRIES);
    let mut line = entries.join(", ");
    if more > 0 {
        line.push_str(&format!(" and {more} more"));
    }
    line
}

fn short(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_owned(),
    }
}

/// Points every reference of the pod template `template` (its `spec`) to a ConfigMap named
/// in `from` at `to`: volumes, projected volume sources, `envFrom` and `env` of every
/// container and init container. Returns how many references changed.
pub fn rewrite_references(template: &mut Value, from: &[String], to: &str) -> usize {
    // `get_mut`/`pointer_mut` only: indexing a missing key mutably would insert a null.
    let mut changed = 0;
    let mut point = |object: Option<&mut Value>, field: &str| {
        if let Some(name) = object.and_then(|o| o.get_mut(field))
            && name.as_str().is_some_and(|n| from.iter().any(|f| f == n))
        {
            *name = Value::String(to.to_owned());
            changed += 1;
        }
    };
    let Some(spec) = template.get_mut("spec") else {
        return 0;
    };
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        for volume in volumes {
            point(volume.get_mut("configMap"), "name");
            if let Some(sources) = volume
                .pointer_mut("/projected/sources")
                .and_then(Value::as_array_mut)
            {
                for source in sources {
                    point(source.get_mut("configMap"), "name");
                }
            }
        }
    }
    for list in ["containers", "initContainers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            if let Some(env_from) = container.get_mut("envFrom").and_then(Value::as_array_mut) {
                for source in env_from {
                    point(source.get_mut("configMapRef"), "name");
                }
            }
            if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                for variable in env {
                    point(variable.pointer_mut("/valueFrom/configMapKeyRef"), "name");
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_key_is_checked_with_the_failing_path() {
        let schema = serde_json::json!({"type": "object", "required": ["port"],
            "properties": {"port": {"type": "integer", "maximum": 65535},
                "mode": {"enum": ["fast", "safe"]}}});
        let validator = compile(&schema).expect("compiles");
        let good = data(&[
            ("app.yaml", "port: 8080\nmode: safe\n"),
            ("extra.json", "{\"port\": 1}"),
        ]);
        assert!(check(&validator, &good).is_empty());
        let bad = data(&[("app.yaml", "port: 70000\nmode: turbo\n"), ("b.json", "{]")]);
        let problems = check(&validator, &bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("app.yaml: /mode: "), "{problems:?}");
        assert!(
            problems[1].starts_with("app.yaml: /port: 70000 is greater than the maximum of 65535"),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("b.json: neither JSON nor YAML"),
            "{problems:?}"
        );
        assert!(compile(&serde_json::json!({"type": 12})).is_err());
    }

    #[test]
    fn hashes_names_and_diffs() {
        let a = data(&[
            ("app.yaml", "server: {port: 8080}\nlog: info\n"),
            ("old.txt", "x"),
        ]);
        let b = data(&[(
            "app.yaml",
            "server: {port: 9090}\nlog: info\nfeature: true\n",
        )]);
        assert_eq!(content_hash(&a), content_hash(&a.clone()));
        assert_ne!(content_hash(&a), content_hash(&b));
        assert_eq!(
            revision_name("orders-config", "0123456789abcdef"),
            "orders-config-0123456789abcdef"
        );
        assert_eq!(
            diff_summary(&a, &b),
            "+app.yaml.feature, ~app.yaml.server.port: 8080 -> 9090, -old.txt"
        );
        assert_eq!(diff_summary(&a, &a), "no change");
    }

    #[test]
    fn every_kind_of_reference_is_rewritten() {
        let mut template = serde_json::json!({"spec": {
            "volumes": [{"name": "c", "configMap": {"name": "orders-config"}},
                {"name": "p", "projected": {"sources": [{"configMap": {"name": "orders-config-aaaa"}}]}},
                {"name": "other", "configMap": {"name": "unrelated"}}],
            "containers": [{"name": "app",
                "envFrom": [{"configMapRef": {"name": "orders-config"}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "orders-config", "key": "x"}}}]}],
            "initContainers": [{"name": "init", "envFrom": [{"configMapRef": {"name": "orders-config"}}]}]}});
        let from = ["orders-config".to_owned(), "orders-config-aaaa".to_owned()];
        assert_eq!(
            rewrite_references(&mut template, &from, "orders-config-bbbb"),
            5
        );
        let text = template.to_string();
        assert_eq!(text.matches("orders-config-bbbb").count(), 5);
        assert!(text.contains("\"unrelated\""));
        assert!(!text.contains("null"), "nothing inserted: {text}");
    }
}
