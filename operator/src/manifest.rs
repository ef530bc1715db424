//! Reading manifests from files: multi-document YAML, files or whole directories.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::inventory::{Inventory, Object};
use crate::validate::{FieldError, SchemaValidator, Validate};

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file.
    pub file: PathBuf,
    /// Index of the document in the file, from 0.
    pub index: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file.display(), self.index)
    }
}

/// One problem in one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the document is.
    pub source: Source,
    /// `Kind/name` (`Kind/namespace/name`) when known.
    pub object: Option<String>,
    /// What is wrong.
    pub error: FieldError,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{}: {}: {}", self.source, object, self.error),
            None => write!(f, "{}: {}", self.source, self.error),
        }
    }
}

/// What reading a set of manifests gave.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every valid Vigil object.
    pub inventory: Inventory,
    /// Where each valid object came from, in reading order.
    pub sources: Vec<(Source, String)>,
    /// Every problem found, in reading order.
    pub problems: Vec<Problem>,
    /// Documents of other API groups, left alone (Secrets, Namespaces, ...).
    pub skipped: usize,
}

/// Expands files and directories into the YAML files to read, sorted for a stable order.
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?.path();
                    if entry.is_dir() {
                        stack.push(entry);
                    } else if is_yaml(&entry) {
                        files.push(entry);
                    }
                }
            }
        } else {
            // A named file is read whatever its extension: the user chose it.
            std::fs::metadata(path)?;
            files.push(path.clone());
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Reads every document of the given files and directories, checks it against the schema,
/// its CEL rules and the semantic rules, and returns the valid objects and the problems.
pub fn load(paths: &[PathBuf], default_namespace: &str) -> std::io::Result<Loaded> {
    let mut texts = Vec::new();
    for file in collect_files(paths)? {
        let text = std::fs::read_to_string(&file)?;
        texts.push((file, text));
    }
    Ok(load_texts(texts, default_namespace))
}

/// [`load`] of texts already read, each with the file name it is reported under. The
/// validator (every CRD's schema and CEL rules compiled) is built while the texts are read.
pub fn load_texts(texts: Vec<(PathBuf, String)>, default_namespace: &str) -> Loaded {
    std::thread::scope(|scope| {
        let validator = scope.spawn(SchemaValidator::new);
        let documents = read_documents(texts);
        let validator = validator
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        check_documents(&validator, documents, default_namespace)
    })
}

/// [`load_texts`] with a validator built once (building one compiles every CRD's schema
/// and CEL rules).
pub fn load_texts_with(
    validator: &SchemaValidator,
    texts: Vec<(PathBuf, String)>,
    default_namespace: &str,
) -> Loaded {
    check_documents(validator, read_documents(texts), default_namespace)
}

/// The Vigil documents of YAML texts, in reading order, each parsed or with its syntax
/// error, and how many documents of other API groups were skipped.
struct Documents {
    documents: Vec<(Source, Result<Value, FieldError>)>,
    skipped: usize,
}

/// Reading a YAML stream is sequential; checking its documents is not.
fn read_documents(texts: Vec<(PathBuf, String)>) -> Documents {
    let mut skipped = 0;
    let mut documents = Vec::new();
    for (file, text) in texts {
        for (index, document) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
            let source = Source {
                file: file.clone(),
                index,
            };
            match Value::deserialize(document) {
                Ok(Value::Null) => {}
                Ok(value) if !is_vigil(&value) => skipped += 1,
                Ok(value) => documents.push((source, Ok(value))),
                Err(e) => {
                    let error = FieldError::new("", format!("not valid YAML: {e}"));
                    documents.push((source, Err(error)));
                    // After a syntax error the stream cannot be read further: the
                    // document iterator would yield the same error forever (found by the
                    // `manifest` fuzz target: an unclosed flow mapping hung `vigil
                    // validate` and grew its memory without bound).
                    break;
                }
            }
        }
    }
    Documents { documents, skipped }
}

fn check_documents(
    validator: &SchemaValidator,
    Documents { documents, skipped }: Documents,
    default_namespace: &str,
) -> Loaded {
    let mut loaded = Loaded {
        skipped,
        ..Loaded::default()
    };
    // The schema and CEL checks on every core; the problems in reading order.
    let checked = crate::parallel::map(&documents, |(_, value)| {
        value
            .as_ref()
            .ok()
            .map(|value| validator.check(value, default_namespace))
    });
    let mut decoded: Vec<(Source, Object)> = Vec::new();
    for ((source, value), checked) in documents.into_iter().zip(checked) {
        let problems = match (value, checked) {
            (_, Some(Ok(object))) => {
                decoded.push((source, object));
                continue;
            }
            (Ok(value), Some(Err(errors))) => (Some(describe(&value)), errors),
            (Err(error), _) => (None, vec![error]),
            (Ok(_), None) => continue,
        };
        let (object, errors) = problems;
        loaded
            .problems
            .extend(errors.into_iter().map(|error| Problem {
                source: source.clone(),
                object: object.clone(),
                error,
            }));
    }
    // The same object twice (in two files, or twice in one) would be applied twice, the
    // second silently winning: refuse the later ones.
    let mut first_seen: std::collections::BTreeMap<String, Source> =
        std::collections::BTreeMap::new();
    decoded.retain(|(source, object)| {
        let label = format!("{}/{}", object.kind(), object.key());
        match first_seen.get(&label) {
            Some(first) => {
                loaded.problems.push(Problem {
                    source: source.clone(),
                    object: Some(label),
                    error: FieldError::new(
                        "metadata.name",
                        if first.file == source.file {
                            format!(
                                "is already defined in document #{} of this file",
                                first.index
                            )
                        } else {
                            format!("is already defined at {first}")
                        },
                    ),
                });
                false
            }
            None => {
                first_seen.insert(label, source.clone());
                true
            }
        }
    });
    // Semantic rules see every object that passed the schema, whatever the file order.
    let mut all = Inventory::default();
    for (_, object) in &decoded {
        all.insert(object.clone());
    }
    let verdicts = crate::parallel::map(&decoded, |(_, object)| object.validate(&all));
    for ((source, object), errors) in decoded.into_iter().zip(verdicts) {
        let label = format!("{}/{}", object.kind(), object.key());
        if errors.is_empty() {
            loaded.sources.push((source, label));
            loaded.inventory.insert(object);
        } else {
            loaded
                .problems
                .extend(errors.into_iter().map(|error| Problem {
                    source: source.clone(),
                    object: Some(label.clone()),
                    error,
                }));
        }
    }
    loaded
}

fn is_vigil(value: &Value) -> bool {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    api_version.split('/').next() == Some(crate::api::GROUP)
}

fn describe(value: &Value) -> String {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("<no kind>");
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("<no name>");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `manifest` fuzz target: an unclosed flow mapping made the document
    /// iterator yield its error forever.
    #[test]
    fn a_syntax_error_ends_the_file_with_one_problem() {
        let text = "apiVersion: vigil.io/v1alpha1\nkind: MemberCluster\nmetadata: {name: onprem}\nspec: {provider: vmware, regiosampling:\n    percentage: 10\n";
        let loaded = load_texts(vec![("broken.yaml".into(), text.to_owned())], "default");
        assert_eq!(loaded.problems.len(), 1, "{:?}", loaded.problems);
        assert!(
            loaded.problems[0]
                .error
                .message
                .starts_with("not valid YAML"),
            "{}",
            loaded.problems[0].error
        );
    }
}
