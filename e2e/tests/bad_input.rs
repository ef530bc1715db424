//! Bad input on a real cluster. Every manifest of the invalid corpus
//! (`operator/tests/invalid`) is applied the way GitOps tools apply: server-side apply with
//! strict field validation. Each expected problem must come back from the cluster, with
//! its field and reason:
//! - refused by the API server: the kind is not served, or the CRD's schema or CEL rules
//!   refuse it at admission, with the field and reason as a cause of the error;
//! - or accepted, and then reported by the operator as `Ready=False/InvalidSpec`.
//!
//! A file's `# expect:` lines are what `vigil validate` says. Where the API server words a
//! problem its own way, `# cluster:` lines say what the cluster must answer instead. A
//! `# cluster-accepts:` line marks a problem only a set of files can have (a name defined
//! twice, a namespace on a cluster-scoped kind): the cluster must take those documents.
//! Meanwhile a valid object next to them keeps working, and no reconcile panics.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope};
use kube::{Api, Client};
use serde::Deserialize;
use vigil::api::ServiceLevelObjective;
use vigil_e2e::{Operator, TestCluster, eventually, repo};

/// How the API server starts its answer to a server-side apply with a value of the wrong
/// type: a 500, before validation.
const TYPED_PATCH: &str = "failed to create typed patch object";
/// The cause the API server adds when schema errors kept CEL rules from running.
const RULES_NOT_CHECKED: &str = "some validation rules were not checked";
/// What the cluster answers for a document whose kind or version it does not serve.
const NOT_SERVED: &str = "not served by the API server";

/// What the cluster said about one document.
#[derive(Debug)]
enum Answer {
    /// The API server refused it: `(field, message)` of each cause.
    Refused(Vec<(String, String)>),
    /// Accepted; the message of its `Ready=False/InvalidSpec` condition.
    Invalid(String),
}

#[derive(Debug)]
struct Case {
    file: PathBuf,
    /// Every document of the file, by index (`null` for an empty one).
    documents: Vec<serde_json::Value>,
    /// `(document index, field, message)` the cluster must report.
    expected: Vec<(usize, String, String)>,
    /// Why the cluster takes these documents, when it does.
    accepted: Option<String>,
}

fn field_and_message(line: &str) -> (String, String) {
    match line.split_once(": ") {
        Some((field, message)) if !field.contains(' ') => (field.to_owned(), message.to_owned()),
        _ => (String::new(), line.to_owned()),
    }
}

/// The cases. Vigil's own loader says which document each problem is in (the `# expect:`
/// lines do not); what the cluster must report is the file's.
fn corpus() -> anyhow::Result<Vec<Case>> {
    let dir = repo().join("operator/tests/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let lines = |prefix: &str| -> Vec<(String, String)> {
            text.lines()
                .filter_map(|l| l.strip_prefix(prefix))
                .map(field_and_message)
                .collect()
        };
        let (expect, cluster) = (lines("# expect: "), lines("# cluster: "));
        let accepted = text
            .lines()
            .find_map(|l| l.strip_prefix("# cluster-accepts: "))
            .map(str::to_owned);
        let loaded = vigil::manifest::load_texts(vec![(file.clone(), text.clone())], "default");
        anyhow::ensure!(
            loaded.problems.len() == expect.len(),
            "{}: vigil validate reports {:?}, the file expects {expect:?}",
            file.display(),
            loaded.problems
        );
        anyhow::ensure!(
            cluster.is_empty() || cluster.len() == expect.len(),
            "{}: one `# cluster:` line per `# expect:` line",
            file.display()
        );
        let wanted = if cluster.is_empty() {
            &expect
        } else {
            &cluster
        };
        let expected = loaded
            .problems
            .iter()
            .zip(wanted)
            .map(|(problem, (field, message))| {
                (problem.source.index, field.clone(), message.clone())
            })
            .collect();
        let documents = serde_yaml_ng::Deserializer::from_str(&text)
            .map(serde_json::Value::deserialize)
            .collect::<Result<Vec<_>, _>>()?;
        cases.push(Case {
            file,
            documents,
            expected,
            accepted,
        });
    }
    Ok(cases)
}

/// The resource of a document, and whether it is namespaced; otherwise the field the API
/// server does not serve (`apiVersion` or `kind`).
fn resolve(
    discovery: &Discovery,
    document: &serde_json::Value,
) -> Result<(ApiResource, bool), &'static str> {
    let api_version = document["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = document["kind"].as_str().unwrap_or_default();
    let served_version = discovery
        .groups()
        .any(|g| g.name() == group && g.versions().any(|v| v == version));
    if !served_version {
        return Err("apiVersion");
    }
    discovery
        .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
        .map(|(resource, capabilities)| (resource, capabilities.scope == Scope::Namespaced))
        .ok_or("kind")
}

fn api(
    client: &Client,
    resource: &ApiResource,
    namespaced: bool,
    document: &serde_json::Value,
) -> Api<DynamicObject> {
    if namespaced {
        let namespace = document["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        Api::namespaced_with(client.clone(), namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    }
}

/// The message of `Ready=False` when the operator refused the spec: `InvalidSpec`, or
/// `ReferenceNotFound` when all it lacks is an object the spec names.
fn ready_invalid(object: &DynamicObject) -> Option<String> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| {
            c["type"] == "Ready"
                && c["status"] == "False"
                && (c["reason"] == "InvalidSpec" || c["reason"] == "ReferenceNotFound")
        })
        .and_then(|c| c["message"].as_str())
        .map(str::to_owned)
}

/// The causes of a refusal, without the API server's note that some rules did not run.
fn causes(error: &kube::Error) -> Option<Vec<(String, String)>> {
    let kube::Error::Api(status) = error else {
        return None;
    };
    if status.code == 422 {
        let causes = status
            .details
            .iter()
            .flat_map(|d| d.causes.iter())
            .filter(|c| !c.message.contains(RULES_NOT_CHECKED))
            .map(|c| {
                let field = c.field.trim_start_matches('.');
                let field = if field == "<nil>" { "" } else { field };
                (field.to_owned(), c.message.clone())
            })
            .collect();
        return Some(causes);
    }
    // `... (<object>; <kind>): .<field>: <what is wrong>`
    if status.message.starts_with(TYPED_PATCH) {
        let cause = status
            .message
            .split_once("): .")
            .and_then(|(_, rest)| rest.split_once(": "))
            .map(|(field, message)| (field.to_owned(), message.to_owned()));
        return Some(cause.into_iter().collect());
    }
    None
}

/// Applies one case and returns what the cluster said about each document a problem is
/// expected in, then removes what it applied.
async fn run_case(
    cluster: &TestCluster,
    discovery: &Discovery,
    case: &Case,
) -> anyhow::Result<Vec<(usize, Answer)>> {
    let client = cluster.client();
    let apply = PatchParams::apply("vigil-e2e").validation_strict();
    let mut applied = Vec::new();
    let mut answers = Vec::new();
    for (index, document) in case.documents.iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let (resource, namespaced) = match resolve(discovery, document) {
            Ok(resolved) => resolved,
            Err(field) => {
                answers.push((
                    index,
                    Answer::Refused(vec![(field.to_owned(), NOT_SERVED.to_owned())]),
                ));
                continue;
            }
        };
        if let Some(namespace) = document["metadata"]["namespace"].as_str() {
            cluster.ensure_namespace(namespace).await?;
        }
        let api = api(&client, &resource, namespaced, document);
        let name = document["metadata"]["name"].as_str().unwrap_or_default();
        // Server-side apply needs a name; a create without one goes to the API server.
        let result = if name.is_empty() {
            let object: DynamicObject = serde_json::from_value(document.clone())?;
            api.create(&PostParams::default(), &object).await.map(drop)
        } else {
            api.patch(name, &apply, &Patch::Apply(document))
                .await
                .map(drop)
        };
        match result {
            Ok(()) => applied.push((index, api, name.to_owned())),
            Err(error) => match causes(&error) {
                Some(causes) => answers.push((index, Answer::Refused(causes))),
                None => anyhow::bail!("applying document #{index}: {error}"),
            },
        }
    }
    if let Some(why) = &case.accepted {
        anyhow::ensure!(
            answers.is_empty(),
            "the cluster takes these documents ({why}), but said {answers:?}"
        );
    } else {
        // Only documents a problem is expected in are waited for: the others support them.
        for (index, api, name) in &applied {
            if !case.expected.iter().any(|e| e.0 == *index) {
                continue;
            }
            let what = format!("document #{index} Ready=False/InvalidSpec or ReferenceNotFound");
            let message = eventually(&what, Duration::from_secs(30), || {
                let api = api.clone();
                async move { Ok(ready_invalid(&api.get(name).await?)) }
            })
            .await?;
            answers.push((*index, Answer::Invalid(message)));
        }
    }
    for (_, api, name) in applied.iter().rev() {
        if api.get_opt(name).await?.is_some() {
            api.delete(name, &DeleteParams::default()).await?;
        }
    }
    for (index, api, name) in &applied {
        eventually(
            &format!("document #{index} deleted"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                async move { Ok(api.get_opt(name).await?.is_none().then_some(())) }
            },
        )
        .await?;
    }
    Ok(answers)
}

/// Whether `answer` carries the problem `field: message`.
fn reports(answer: &Answer, field: &str, message: &str) -> bool {
    match answer {
        Answer::Refused(causes) => causes
            .iter()
            .any(|(f, m)| f == field && m.contains(message)),
        Answer::Invalid(condition) => {
            let problem = if field.is_empty() {
                message.to_owned()
            } else {
                format!("{field}: {message}")
            };
            condition.contains(&problem)
        }
    }
}

#[tokio::test]
async fn every_invalid_manifest_is_refused_or_reported_with_its_field_and_reason() {
    let cluster = TestCluster::start("badinput").await.expect("cluster");
    let operator = cluster_operator(&cluster).await.expect("operator");
    let result = scenario(&cluster, &operator).await;
    operator
        .on_failure(result)
        .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn cluster_operator(cluster: &TestCluster) -> anyhow::Result<Operator> {
    cluster.install_crds().await?;
    cluster.ensure_namespace("vigil-system").await?;
    Operator::start(cluster.kubeconfig(), cluster.dir(), "vigil-badinput", &[])
}

async fn neighbour_rules(client: &Client) -> anyhow::Result<Option<String>> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "neighbours");
    let Some(map) = maps.get_opt("payments-slo-rules").await? else {
        return Ok(None);
    };
    Ok(map.data.and_then(|d| d.into_values().next()))
}

async fn apply_neighbour(client: &Client, objective: f64) -> anyhow::Result<()> {
    let slos: Api<ServiceLevelObjective> = Api::namespaced(client.clone(), "neighbours");
    let slo = serde_json::json!({
        "apiVersion": "vigil.io/v1alpha1", "kind": "ServiceLevelObjective", "metadata": {"name": "payments"},
        "spec": {
            "service": "payments", "objective": objective,
            "sli": {"ratio": {"errors": "http_requests_total{job=\"payments\",code=~\"5..\"}", "total": "http_requests_total{job=\"payments\"}"}},
            "output": {"kind": "ConfigMap"},
        },
    });
    slos.patch(
        "payments",
        &PatchParams::apply("vigil-e2e"),
        &Patch::Apply(&slo),
    )
    .await?;
    Ok(())
}

async fn scenario(cluster: &TestCluster, operator: &Operator) -> anyhow::Result<()> {
    let client = cluster.client();
    // A valid object next to the bad ones.
    cluster.ensure_namespace("neighbours").await?;
    apply_neighbour(&client, 99.5).await?;
    let before = eventually("the neighbour's rules", Duration::from_secs(30), || {
        neighbour_rules(&client)
    })
    .await?;

    let cases = corpus()?;
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut failures = Vec::new();
    let (mut not_served, mut refused, mut reported, mut accepted) = (0, 0, 0, 0);
    for case in &cases {
        let file = case.file.display();
        let answers = match run_case(cluster, &discovery, case).await {
            Ok(answers) => answers,
            Err(e) => {
                failures.push(format!("{file}: {e:#}"));
                continue;
            }
        };
        if case.accepted.is_some() {
            accepted += 1;
            continue;
        }
        for (index, field, message) in &case.expected {
            let answer = answers.iter().find(|(i, _)| i == index).map(|(_, a)| a);
            match answer {
                Some(answer) if reports(answer, field, message) => match answer {
                    Answer::Refused(_) if message == NOT_SERVED => not_served += 1,
                    Answer::Refused(_) => refused += 1,
                    Answer::Invalid(_) => reported += 1,
                },
                _ => failures.push(format!(
                    "{file}#{index}: expected `{field}: {message}`, the cluster said {answer:?}"
                )),
            }
        }
        // A refusal carries the expected causes and no other.
        for (index, answer) in &answers {
            let Answer::Refused(causes) = answer else {
                continue;
            };
            for (field, message) in causes {
                let expected = case
                    .expected
                    .iter()
                    .any(|(i, f, m)| i == index && f == field && message.contains(m.as_str()));
                if !expected {
                    failures.push(format!(
                        "{file}#{index}: unexpected cause `{field}: {message}`"
                    ));
                }
            }
        }
    }
    anyhow::ensure!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "{} manifests, {} problems: {not_served} not served, {refused} refused at admission, \
         {reported} reported as Ready=False/InvalidSpec; {accepted} files taken by the cluster \
         as they should be",
        cases.len(),
        not_served + refused + reported
    );
    anyhow::ensure!(
        cases.len() >= 100,
        "the corpus holds {} manifests",
        cases.len()
    );
    anyhow::ensure!(refused > 0 && reported > 0, "both paths are exercised");

    // The neighbour kept working through all of it: a change still reaches its rules.
    apply_neighbour(&client, 99.9).await?;
    let after = eventually("the neighbour's new rules", Duration::from_secs(30), || {
        let client = client.clone();
        let before = before.clone();
        async move { Ok(neighbour_rules(&client).await?.filter(|r| *r != before)) }
    })
    .await?;
    anyhow::ensure!(
        after.contains("0.999"),
        "the new objective is in the rules: {after}"
    );
    let panics = operator
        .metric_total("vigil_reconcile_panics_total")
        .await
        .ok_or_else(|| anyhow::anyhow!("/metrics does not answer"))?;
    anyhow::ensure!(panics == 0.0, "{panics} reconciles panicked");
    Ok(())
}
