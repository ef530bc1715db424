//! OpenTelemetry Collectors built by `make tools` with the Collector Builder (ocb) from
//! `e2e/tools/otelcol/`: `otelcol-vigil`, with the components Vigil generates, and
//! `otelcol-backend`, which receives OTLP and writes every span to a file. A test starts a
//! gateway with a generated configuration and a backend behind it, sends spans, and reads
//! which ones arrived.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{Process, print_tails};
use crate::{eventually, free_port, http_send, tool};

/// Component types Vigil generates that `otelcol-vigil` lacks: the Go module proxy of the
/// workplace it was built in served no release of them (or of modules they import) that
/// matches the others at the pinned release (see `e2e/tools/otelcol/vigil.yaml`).
/// [`with_stand_ins`] replaces exactly these; a test checks that none of them is built,
/// so that this list can never hide a component that could be validated.
pub const NOT_BUILT: &[&str] = &["awsxray", "awsemf", "sigv4auth", "opensearch"];

/// The type of a component id: `otlp_grpc/traces` is an `otlp_grpc`.
pub fn component_type(id: &str) -> &str {
    id.split_once('/').map_or(id, |(kind, _)| kind)
}

/// `yaml` with every component of [`NOT_BUILT`] taken out: processors and extensions are
/// removed (with their references), an exporter is replaced by a plaintext `otlp_grpc`
/// stand-in so that its pipelines keep an exporter, and an `auth` naming a removed
/// extension goes. Returns the new configuration and the ids taken out.
pub fn with_stand_ins(yaml: &str) -> anyhow::Result<(String, Vec<String>)> {
    let mut config: Value = serde_yaml_ng::from_str(yaml)?;
    let mut removed = Vec::new();
    for section in ["processors", "extensions", "exporters"] {
        let Some(map) = config.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        let ids: Vec<String> = map
            .keys()
            .filter(|id| NOT_BUILT.contains(&component_type(id)))
            .cloned()
            .collect();
        for id in ids {
            map.remove(&id);
            if section == "exporters" {
                map.insert(
                    stand_in(&id),
                    json!({"endpoint": "127.0.0.1:4317", "tls": {"insecure": true}}),
                );
            }
            removed.push(id);
        }
    }
    if let Some(exporters) = config.get_mut("exporters").and_then(Value::as_object_mut) {
        for exporter in exporters.values_mut() {
            let authenticator = exporter
                .pointer("/auth/authenticator")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if authenticator.is_some_and(|a| removed.contains(&a))
                && let Some(fields) = exporter.as_object_mut()
            {
                fields.remove("auth");
            }
        }
    }
    let keep = |list: &mut Value| {
        if let Some(items) = list.as_array_mut() {
            items.retain(|item| {
                !item
                    .as_str()
                    .is_some_and(|id| removed.iter().any(|r| r == id))
            });
        }
    };
    if let Some(service) = config.get_mut("service") {
        if let Some(extensions) = service.get_mut("extensions") {
            keep(extensions);
        }
        if let Some(pipelines) = service.get_mut("pipelines").and_then(Value::as_object_mut) {
            for pipeline in pipelines.values_mut() {
                if let Some(processors) = pipeline.get_mut("processors") {
                    keep(processors);
                }
                if let Some(exporters) = pipeline.get_mut("exporters").and_then(Value::as_array_mut)
                {
                    for exporter in exporters.iter_mut() {
                        if let Some(id) = exporter
                            .as_str()
                            .filter(|id| removed.iter().any(|r| r == id))
                        {
                            *exporter = Value::String(stand_in(id));
                        }
                    }
                }
            }
        }
    }
    Ok((serde_yaml_ng::to_string(&config)?, removed))
}

fn stand_in(id: &str) -> String {
    format!("otlp_grpc/stand-in-for-{}", id.replace('/', "-"))
}

/// Runs `otelcol-vigil validate` on `yaml` (written to `<dir>/<name>.yaml`), in the
/// environment of a collector pod: `Ok(Ok(()))` when the Collector accepts it,
/// `Ok(Err(message))` with what it said when not.
///
/// `validate` builds the pipelines, and some Kubernetes components open their in-cluster
/// client while being built (the `eks` and `k8s_api` detectors): they need the pod's
/// `KUBERNETES_SERVICE_*` variables and a ServiceAccount token at its fixed path, though
/// they call nothing. The command runs in a mount namespace of its own with a tmpfs on
/// `/run` (`/var/run`) holding a placeholder token, so this machine's `/run` is untouched
/// and the configuration is validated exactly as written.
pub fn validate(dir: &Path, name: &str, yaml: &str) -> anyhow::Result<Result<(), String>> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, yaml)?;
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o mode=0755 vigil-validate /run && \
             mkdir -p /run/secrets/kubernetes.io/serviceaccount && \
             echo placeholder >/run/secrets/kubernetes.io/serviceaccount/token && \
             exec \"$0\" \"$@\"",
        )
        .arg(tool("otelcol-vigil")?)
        .arg("validate")
        .arg(format!("--config=file:{}", path.display()))
        // What the pod has: the downward API's node name, the API server's Service.
        .env("K8S_NODE_NAME", "node-0")
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", "443")
        .output()?;
    if output.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// The component types (and their deprecated aliases) of `binary`, from `components`.
pub fn built_components(binary: &str) -> anyhow::Result<BTreeSet<String>> {
    let output = Command::new(tool(binary)?).arg("components").output()?;
    anyhow::ensure!(output.status.success(), "{binary} components failed");
    let listing: Value = serde_yaml_ng::from_slice(&output.stdout)?;
    let mut names = BTreeSet::new();
    for section in [
        "receivers",
        "processors",
        "exporters",
        "extensions",
        "connectors",
    ] {
        for component in listing[section].as_array().into_iter().flatten() {
            if let Some(name) = component["name"].as_str() {
                names.insert(name.to_owned());
            }
        }
    }
    anyhow::ensure!(!names.is_empty(), "{binary} lists no components");
    Ok(names)
}

/// A running Collector; stopped on drop, its log tail printed if the test is failing.
#[derive(Debug)]
pub struct Collector {
    process: Process,
    /// The configuration it runs, after [`Collector::start`] moved its listeners.
    pub config: String,
    /// `http://127.0.0.1:<port>` of its OTLP/HTTP receiver, if it has one.
    pub otlp_http: Option<String>,
    /// `127.0.0.1:<port>` of its OTLP/gRPC receiver, if it has one.
    pub otlp_grpc: Option<String>,
}

impl Collector {
    /// Starts `binary` (`otelcol-vigil` or `otelcol-backend`) with `yaml`. The well-known
    /// listeners of a generated configuration (OTLP 4317 and 4318, `health_check` 13133, the
    /// Collector's own metrics 8888, all on 0.0.0.0) move to free ports on 127.0.0.1, so
    /// that several Collectors run side by side. Returns once every receiver accepts
    /// connections; fails with the log if the Collector exits.
    pub async fn start(
        dir: &Path,
        name: &str,
        binary: &str,
        yaml: &str,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut config = yaml.to_owned();
        let mut otlp_http = None;
        let mut otlp_grpc = None;
        for well_known in [4317, 4318, 13133] {
            let from = format!("0.0.0.0:{well_known}");
            if config.contains(&from) {
                let to = format!("127.0.0.1:{}", free_port()?);
                config = config.replace(&from, &to);
                match well_known {
                    4317 => otlp_grpc = Some(to),
                    4318 => otlp_http = Some(format!("http://{to}")),
                    _ => {}
                }
            }
        }
        config = config
            .replace("host: 0.0.0.0", "host: 127.0.0.1")
            .replace("port: 8888", &format!("port: {}", free_port()?));
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, &config)?;
        let mut process = Process::start(
            name,
            &tool(binary)?,
            &[format!("--config=file:{}", path.display())],
            dir,
            envs,
        )?;
        for endpoint in otlp_grpc.clone().into_iter().chain(
            otlp_http
                .as_deref()
                .and_then(|u| u.strip_prefix("http://"))
                .map(str::to_owned),
        ) {
            let process = &mut process;
            eventually(
                &format!("{name} listening on {endpoint}"),
                Duration::from_secs(30),
                || {
                    let alive = process.check_alive();
                    let endpoint = endpoint.clone();
                    async move {
                        alive?;
                        Ok(tokio::net::TcpStream::connect(&endpoint)
                            .await
                            .ok()
                            .map(|_| ()))
                    }
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}", process.tail(30)))?;
        }
        Ok(Self {
            process,
            config,
            otlp_http,
            otlp_grpc,
        })
    }

    /// Its process (for memory and liveness figures).
    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Everything it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tails(&[&self.process], 40);
        }
    }
}

/// `otelcol-backend`: an OTLP/gRPC receiver on 127.0.0.1 whose spans land in a file.
#[derive(Debug)]
pub struct Backend {
    /// The Collector.
    pub collector: Collector,
    /// `127.0.0.1:<port>`, for an exporter's `endpoint` (plaintext).
    pub endpoint: String,
    spans: PathBuf,
}

impl Backend {
    /// Starts a backend named `name` in `dir`.
    pub async fn start(dir: &Path, name: &str) -> anyhow::Result<Self> {
        let spans = dir.join(format!("{name}-spans.jsonl"));
        let config = serde_yaml_ng::to_string(&json!({
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}},
            "exporters": {"file": {"path": spans, "flush_interval": "200ms"}},
            "service": {
                "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["file"]}},
                "telemetry": {"metrics": {"level": "none"}},
            },
        }))?;
        let collector = Collector::start(dir, name, "otelcol-backend", &config, &[]).await?;
        let endpoint = collector
            .otlp_grpc
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the backend has no OTLP/gRPC receiver"))?;
        Ok(Self {
            collector,
            endpoint,
            spans,
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> anyhow::Result<Vec<Span>> {
        let Ok(text) = std::fs::read_to_string(&self.spans) else {
            return Ok(Vec::new());
        };
        let mut spans = Vec::new();
        // The file exporter writes one JSON document per export; a line may be cut short
        // while it writes, and is read whole next time.
        for line in text.lines() {
            let Ok(batch) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            for resource in batch["resourceSpans"].as_array().into_iter().flatten() {
                let attributes: std::collections::BTreeMap<String, String> =
                    resource["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| {
                            let value = a["value"]["stringValue"].as_str()?;
                            Some((a["key"].as_str()?.to_owned(), value.to_owned()))
                        })
                        .collect();
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    for span in scope["spans"].as_array().into_iter().flatten() {
                        spans.push(Span {
                            trace_id: span["traceId"].as_str().unwrap_or_default().to_owned(),
                            name: span["name"].as_str().unwrap_or_default().to_owned(),
                            resource: attributes.clone(),
                        });
                    }
                }
            }
        }
        Ok(spans)
    }
}

/// A span as the backend received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// Hex trace id.
    pub trace_id: String,
    /// Span name.
    pub name: String,
    /// The string attributes of its resource.
    pub resource: std::collections::BTreeMap<String, String>,
}

/// A one-span trace in OTLP/JSON: `trace_id` (32 hex digits), lasting `duration_ms`, with
/// status ERROR when `error`.
pub fn span(trace_id: &str, name: &str, duration_ms: u64, error: bool) -> Value {
    let start: u64 = 1_700_000_000_000_000_000;
    json!({
        "traceId": trace_id,
        "spanId": &trace_id[..16],
        "name": name,
        "kind": 2,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + duration_ms * 1_000_000).to_string(),
        "status": {"code": if error { 2 } else { 0 }},
    })
}

/// Sends `spans` as one OTLP/HTTP JSON export of service `service` to `otlp_http`
/// (`http://host:port`); fails unless the receiver answers 200.
pub async fn send(otlp_http: &str, service: &str, spans: &[Value]) -> anyhow::Result<()> {
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "vigil-e2e"}, "spans": spans}],
    }]});
    export(&format!("{otlp_http}/v1/traces"), &body).await
}

/// POSTs one OTLP/HTTP JSON export to `url`; fails unless the receiver answers 200.
async fn export(url: &str, body: &Value) -> anyhow::Result<()> {
    match http_send("POST", url, "application/json", &body.to_string()).await {
        Some((200, _)) => Ok(()),
        Some((status, reply)) => anyhow::bail!("{url}: {status} {reply}"),
        None => anyhow::bail!("{url}: no answer"),
    }
}

/// Sends `metrics` as one OTLP/HTTP JSON export of service `service` to `otlp_http`
/// (`http://host:port`); fails unless the receiver answers 200.
pub async fn send_metrics(otlp_http: &str, service: &str, metrics: &[Value]) -> anyhow::Result<()> {
    let body = json!({"resourceMetrics": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeMetrics": [{"scope": {"name": "vigil-e2e"}, "metrics": metrics}],
    }]});
    export(&format!("{otlp_http}/v1/metrics"), &body).await
}

/// An OTLP gauge `name` with one point, `value`, now.
pub fn gauge(name: &str, value: f64) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    json!({"name": name, "gauge": {"dataPoints": [{"asDouble": value, "timeUnixNano": now.to_string()}]}})
}

/// The generated gateway configuration of a VMware cluster exporting traces to `endpoint`,
/// keeping errors, traces over 500 ms, and `percentage` of the rest.
pub fn vmware_gateway_config(endpoint: &str, percentage: f64) -> anyhow::Result<String> {
    vmware_gateway(
        "{traces: true, metrics: false}",
        &format!("{{tracesOtlpEndpoint: \"{endpoint}\"}}"),
        percentage,
    )
    .map(|(yaml, _)| yaml)
}

/// The generated gateway configuration of VMware cluster `onprem` (region `dc1`) for
/// `signals` and VMware `backends` (both as YAML flow maps), and the
/// `OTEL_RESOURCE_ATTRIBUTES` its Deployment sets (where it runs).
fn vmware_gateway(
    signals: &str,
    backends: &str,
    percentage: f64,
) -> anyhow::Result<(String, String)> {
    render_gateway(&format!(
        "apiVersion: vigil.io/v1alpha1
kind: MemberCluster
metadata: {{name: onprem}}
spec: {{provider: vmware, region: dc1, local: true}}
---
apiVersion: vigil.io/v1alpha1
kind: TelemetryPipeline
metadata: {{name: shop, namespace: shop}}
spec:
  clusters: [onprem]
  mode: gateway
  signals: {signals}
  sampling: {{percentage: {percentage}, keepErrors: true, latencyThresholdMs: 500}}
  backends:
    vmware: {backends}
"
    ))
}

/// The documented on-prem gateway (`docs/telemetry/vmware-gateway.yaml`) with its Jaeger
/// at `traces` and its Prometheus remote write at `remote_write`: the generated
/// configuration and the `OTEL_RESOURCE_ATTRIBUTES` of its Deployment.
pub fn documented_vmware_gateway(
    traces: &str,
    remote_write: &str,
) -> anyhow::Result<(String, String)> {
    let text = std::fs::read_to_string(crate::repo().join("docs/telemetry/vmware-gateway.yaml"))?;
    let manifest = text
        .replace("http://jaeger-collector.observability:4317", traces)
        .replace(
            "http://prometheus.observability:9090/api/v1/write",
            remote_write,
        );
    anyhow::ensure!(manifest != text, "the documented endpoints moved");
    render_gateway(&manifest)
}

/// The first cluster's configuration of the pipeline in `manifest` (with its
/// MemberCluster), and the resource attributes of its Deployment.
fn render_gateway(manifest: &str) -> anyhow::Result<(String, String)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, manifest)?;
    let loaded = vigil::manifest::load(&[path], "default")?;
    anyhow::ensure!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let pipeline = &loaded.inventory.telemetry_pipelines[0];
    let mut configs =
        vigil::render::otel::render_collector_configs(pipeline, &loaded.inventory, None)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = configs.remove(0);
    Ok((config.yaml, config.resource))
}

/// `config` for a Collector outside any pod: there is no service account, so
/// `k8s_attributes`, the `k8s_api` resource detector and the `prometheus` receiver's pod
/// discovery read the API server of `KUBECONFIG` instead (the same components). The detector reads the node named by
/// `K8S_NODE_NAME`, which the caller sets as the downward API would.
pub fn outside_a_pod(config: &str) -> anyhow::Result<String> {
    let mut config: Value = serde_yaml_ng::from_str(
        &config.replace("auth_type: serviceAccount", "auth_type: kubeConfig"),
    )?;
    // Pod discovery of the `prometheus` receiver: the API server of `KUBECONFIG` too.
    // (`pointer_mut`: indexing a missing key would add it.)
    if let Some(scrapes) = config
        .pointer_mut("/receivers/prometheus/config/scrape_configs")
        .and_then(Value::as_array_mut)
    {
        for discovery in scrapes
            .iter_mut()
            .filter_map(|s| s.get_mut("kubernetes_sd_configs"))
            .filter_map(Value::as_array_mut)
            .flatten()
        {
            discovery["kubeconfig_file"] = json!("${env:KUBECONFIG}");
        }
    }
    if let Some(detection) = config["processors"]
        .get_mut("resource_detection")
        .and_then(Value::as_object_mut)
    {
        let reads_nodes = detection["detectors"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d == "k8s_api"));
        if reads_nodes {
            detection.insert("k8s_api".into(), json!({"auth_type": "kubeConfig"}));
        }
    }
    Ok(serde_yaml_ng::to_string(&config)?)
}

/// The kubelet of Vigil's Collector validation pods in a test cluster, whose kwok nodes
/// run no containers (and whose kwok stages leave these pods alone, see
/// `e2e/tools/install.sh`): every 300 ms it finds the validation pods kwok has marked
/// Running, runs `otelcol-vigil validate` on the ConfigMap they mount (with the stand-ins
/// of [`with_stand_ins`]; the pod's image is the full contrib build), and writes the outcome
/// into the pod's status as the kubelet would: phase, exit code, and the Collector's output
/// as the termination message (`FallbackToLogsOnError`). The Job controller does the rest.
#[derive(Debug)]
pub struct ValidationKubelet {
    task: tokio::task::JoinHandle<()>,
    runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ValidationKubelet {
    /// Starts serving `client`'s cluster, with scratch files in `dir`.
    pub fn start(client: kube::Client, dir: &Path) -> Self {
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = runs.clone();
        let dir = dir.to_owned();
        let task = tokio::spawn(async move {
            loop {
                match run_pending(&client, &dir).await {
                    Ok(done) => {
                        counter.fetch_add(done, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(error) => eprintln!("validation kubelet: {error:#}"),
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Self { task, runs }
    }

    /// How many validation pods it has run.
    pub fn runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for ValidationKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs every Running validation pod once; returns how many ran.
async fn run_pending(client: &kube::Client, dir: &Path) -> anyhow::Result<usize> {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use kube::api::{ListParams, Patch, PatchParams};
    use kube::{Api, ResourceExt};
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/component=collector-validation"))
        .await?;
    let mut ran = 0;
    for pod in list.items {
        let status = pod.status.clone().unwrap_or_default();
        if status.phase.as_deref() != Some("Running") {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let config_map = spec
            .volumes
            .iter()
            .flatten()
            .find_map(|v| v.config_map.as_ref().map(|c| c.name.clone()))
            .ok_or_else(|| anyhow::anyhow!("{} mounts no ConfigMap", pod.name_any()))?;
        let container = spec
            .containers
            .first()
            .ok_or_else(|| anyhow::anyhow!("{} has no container", pod.name_any()))?;
        anyhow::ensure!(
            container
                .args
                .as_deref()
                .and_then(|a| a.first())
                .map(String::as_str)
                == Some("validate"),
            "{} does not run `validate`: {:?}",
            pod.name_any(),
            container.args
        );
        let data = Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .get(&config_map)
            .await?
            .data
            .unwrap_or_default();
        let yaml = data.get(vigil::render::otel::CONFIG_KEY).ok_or_else(|| {
            anyhow::anyhow!("{config_map} has no {}", vigil::render::otel::CONFIG_KEY)
        })?;
        let (config, _) = with_stand_ins(yaml)?;
        let outcome = validate(dir, &pod.name_any(), &config)?;
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let (phase, code, reason, message) = match &outcome {
            Ok(()) => ("Succeeded", 0, "Completed", String::new()),
            Err(output) => ("Failed", 1, "Error", output.clone()),
        };
        let patch = json!({"status": {"phase": phase, "containerStatuses": [{
            "name": container.name,
            "image": container.image,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": reason, "message": message,
                "startedAt": now, "finishedAt": now}},
        }]}});
        Api::<Pod>::namespaced(client.clone(), &namespace)
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        ran += 1;
    }
    Ok(ran)
}
