//! The `vigil` command line: `run`, `crds`, `validate`, `render`, `status`, `check`,
//! `renew`, `breaker` and `config`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::controllers::RunOptions;
use crate::manifest::{self, Loaded};
use crate::render::{self, Desired};

/// `vigil --version`: the crate's version and the git revision it was built from, when the
/// build said (`make image` sets `VIGIL_GIT_REVISION`).
pub fn version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| match option_env!("VIGIL_GIT_REVISION") {
            Some(revision) if !revision.is_empty() => {
                format!("{} (revision {revision})", env!("CARGO_PKG_VERSION"))
            }
            _ => env!("CARGO_PKG_VERSION").to_owned(),
        });
    VERSION.as_str()
}

/// Vigil: supervised workloads, SLOs, cross-cloud DNS, ACME certificates and telemetry
/// pipelines for fleets on AWS, Alibaba Cloud and VMware.
#[derive(Debug, Parser)]
#[command(name = "vigil", version = version(), about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller manager.
    Run(Box<RunArgs>),
    /// Print every CRD as a YAML stream, or write one file per CRD with -o.
    Crds(CrdsArgs),
    /// Check manifests offline, with the same rules as the cluster and the operator.
    Validate(InputArgs),
    /// Print what the operator would apply for the manifests, or write peer files with -o.
    Render(RenderArgs),
    /// The fleet at a glance, worst first: every Vigil object of the cluster, judged.
    Status(StatusArgs),
    /// Is Vigil installed and running, and may you use it? Exit 0 when every check passes.
    Check(CheckArgs),
    /// Ask for new certificates now (the controller issues them, under its backoff).
    Renew(RenewArgs),
    /// Open or close a workload's circuit breaker by hand, or clear the override.
    Breaker(BreakerArgs),
    /// A workload's config revisions: history, diff, rollback.
    Config(ConfigArgs),
}

/// Options of `vigil renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The AcmeCertificates to renew.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub certificates: Vec<String>,
    /// Every AcmeCertificate of the namespace (of every namespace with -A).
    #[arg(long)]
    pub all: bool,
    /// Which cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `vigil renew`: one line for each request made; exit 2 on the first refusal.
pub fn renew(args: &RenewArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let all = args.all;
    on_cluster(&args.cluster, out, err, async |client, namespace| {
        if namespace.is_none() && !all {
            anyhow::bail!("-A needs --all: name certificates in one namespace");
        }
        let lines =
            crate::day2::request_renewal(&client, namespace.as_deref(), &args.certificates).await?;
        Ok(lines.join("\n"))
    })
}

/// Options of `vigil breaker`.
#[derive(Debug, Args)]
pub struct BreakerArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: BreakerAction,
    /// Which cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `vigil breaker` subcommands.
#[derive(Debug, Subcommand)]
pub enum BreakerAction {
    /// Open the breaker now and hold it open (the workload is stopped) until `close` or
    /// `clear`.
    Open(OverrideArgs),
    /// Close the breaker now: the workload is restored and the crashes before it are
    /// forgotten; the breaker then counts again as usual.
    Close(OverrideArgs),
    /// Remove the override: the breaker runs by itself again from where it is.
    Clear {
        /// The SupervisedWorkload.
        workload: String,
    },
}

/// A manual override.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// The SupervisedWorkload.
    pub workload: String,
    /// Why; kept in status and the Event.
    #[arg(long)]
    pub reason: String,
}

/// `vigil breaker open|close|clear`: writes the request; the controller applies it.
pub fn breaker(args: &BreakerArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    use crate::api::supervised_workload::OverrideAction;
    let (workload, action, reason) = match &args.action {
        BreakerAction::Open(o) => (&o.workload, Some(OverrideAction::Open), o.reason.as_str()),
        BreakerAction::Close(o) => (&o.workload, Some(OverrideAction::Close), o.reason.as_str()),
        BreakerAction::Clear { workload } => (workload, None, ""),
    };
    on_cluster(&args.cluster, out, err, async |client, namespace| {
        let namespace = one_namespace(namespace)?;
        crate::day2::override_breaker(&client, &namespace, workload, action, reason).await
    })
}

/// Options of `vigil config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ConfigAction,
    /// Which cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `vigil config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// The config revisions Vigil keeps for a workload, newest first.
    History {
        /// The SupervisedWorkload.
        workload: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// A unified diff between two kept revisions (by name or hash; default: the one a
    /// rollback would go back to, and the active one).
    Diff {
        /// The SupervisedWorkload.
        workload: String,
        /// The older revision.
        from: Option<String>,
        /// The newer revision.
        to: Option<String>,
    },
    /// Switch back to a kept revision through the same validated, atomic switch; the
    /// revision left is not used again until the source ConfigMap changes.
    Rollback {
        /// The SupervisedWorkload.
        workload: String,
        /// The revision (name or hash); default: the newest Superseded one, as the
        /// automatic rollback picks.
        #[arg(long)]
        to: Option<String>,
        /// Why; kept in status and the Event.
        #[arg(long)]
        reason: String,
    },
}

/// `vigil config history|diff|rollback`.
pub fn config(args: &ConfigArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    on_cluster(&args.cluster, out, err, async |client, namespace| {
        let namespace = one_namespace(namespace)?;
        match &args.action {
            ConfigAction::History { workload, output } => {
                let history = crate::day2::config_history(&client, &namespace, workload).await?;
                let mut text = Vec::new();
                emit(&history, *output, &mut text, crate::day2::render_history)?;
                Ok(String::from_utf8_lossy(&text).trim_end().to_owned())
            }
            ConfigAction::Diff { workload, from, to } => {
                let diff = crate::day2::config_diff(
                    &client,
                    &namespace,
                    workload,
                    from.as_deref(),
                    to.as_deref(),
                )
                .await?;
                Ok(diff.trim_end().to_owned())
            }
            ConfigAction::Rollback {
                workload,
                to,
                reason,
            } => {
                crate::day2::request_rollback(&client, &namespace, workload, to.as_deref(), reason)
                    .await
            }
        }
    })
}

fn one_namespace(namespace: Option<String>) -> anyhow::Result<String> {
    namespace.ok_or_else(|| anyhow::anyhow!("-A is not for one object: name its namespace with -n"))
}

/// Runs `action` with a client of the chosen cluster and prints what it returns: exit 0,
/// or the error (which names what was refused) and exit 2.
fn on_cluster(
    cluster: &ClusterArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    action: impl AsyncFnOnce(kube::Client, Option<String>) -> anyhow::Result<String>,
) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let done = runtime.block_on(async {
        let (client, namespace) = cluster.connect().await?;
        action(client, namespace).await
    });
    match done {
        Ok(text) => {
            if !text.is_empty() {
                let _ = writeln!(out, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Options of `vigil check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Which cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// The operator's namespace.
    #[arg(long, default_value = "vigil-system")]
    pub operator_namespace: String,
    /// The Helm release (its Lease is `<release>-leader`, its webhook configuration
    /// `<release>`).
    #[arg(long, default_value = "vigil")]
    pub release: String,
    /// Check again every 2 s until all pass or this long has passed (`90s`, `2m`).
    #[arg(long)]
    pub wait: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// `vigil check`: exit 0 when every check passes, 1 when one fails (after `--wait`), 2
/// when the checks cannot run (no cluster, a bad flag).
pub fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let wait = match args.wait.as_deref().map(crate::validate::parse_duration) {
        None => Duration::ZERO,
        Some(Ok(wait)) => wait,
        Some(Err(message)) => {
            let _ = writeln!(err, "error: --wait: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let target = crate::check::Target {
        namespace: args.operator_namespace.clone(),
        release: args.release.clone(),
    };
    let outcomes = runtime.block_on(async {
        let (client, namespace) = args.cluster.connect().await?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let outcomes = crate::check::run(&client, &target, namespace.as_deref()).await;
            if outcomes.iter().all(|o| o.passed) || tokio::time::Instant::now() >= deadline {
                return anyhow::Ok(outcomes);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return ExitCode::from(2);
        }
    };
    let printed = emit(
        &outcomes,
        args.output,
        out,
        |outcomes: &Vec<crate::check::Outcome>| {
            outcomes
                .iter()
                .map(|o| {
                    format!(
                        "{:<4}  {}: {}\n",
                        if o.passed { "ok" } else { "FAIL" },
                        o.check,
                        o.detail
                    )
                })
                .collect()
        },
    );
    match printed {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = writeln!(err, "error: {error}");
            ExitCode::from(2)
        }
        _ if outcomes.iter().all(|o| o.passed) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// How to reach a cluster, as kubectl takes it.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace (default: the context's namespace, then `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

impl ClusterArgs {
    /// A client for the chosen cluster and context, and the namespace to look in (`None`
    /// for every namespace).
    pub async fn connect(&self) -> anyhow::Result<(kube::Client, Option<String>)> {
        use anyhow::Context as _;
        let options = kube::config::KubeConfigOptions {
            context: self.context.clone(),
            ..Default::default()
        };
        let config = match &self.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        let namespace = if self.all_namespaces {
            None
        } else {
            Some(
                self.namespace
                    .clone()
                    .unwrap_or_else(|| config.default_namespace.clone()),
            )
        };
        Ok((kube::Client::try_from(config)?, namespace))
    }
}

/// Output formats of the commands that read the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table for people: colour on a terminal, cut to its width.
    #[default]
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML.
    Yaml,
}

/// Options of `vigil status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One object, `KIND/NAME` (kind, plural or short name: `sw/checkout`): its conditions,
    /// what Vigil wrote for it, its Events and, for a workload, its last crash.
    pub object: Option<String>,
    /// Which cluster and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    pub output: Output,
}

/// `vigil status`: lists every kind and prints the rows, worst first. Exit code 2 when the
/// cluster cannot be read (the message names what was refused).
pub fn status(args: &StatusArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    use std::io::IsTerminal as _;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(err, "error: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let printed = match &args.object {
        Some(object) => {
            let described = runtime.block_on(async {
                let (client, namespace) = args.cluster.connect().await?;
                let namespace = namespace.unwrap_or_else(|| "default".to_owned());
                crate::fleet::describe(&client, object, &namespace).await
            });
            described.map(|d| emit(&d, args.output, out, crate::fleet::render_description))
        }
        None => {
            let fleet = runtime.block_on(async {
                let (client, namespace) = args.cluster.connect().await?;
                crate::fleet::Fleet::fetch(&client, namespace.as_deref()).await
            });
            fleet.map(|fleet| {
                let rows = fleet.rows(jiff::Timestamp::now());
                emit(&rows, args.output, out, |rows: &Vec<crate::fleet::Row>| {
                    let terminal = std::io::stdout().is_terminal();
                    // On a terminal: its width (COLUMNS) and colour unless NO_COLOR; in a
                    // pipe: whole lines, no colour.
                    let width = if terminal {
                        std::env::var("COLUMNS")
                            .ok()
                            .and_then(|c| c.parse().ok())
                            .unwrap_or(100)
                    } else {
                        usize::MAX
                    };
                    let colour = terminal && std::env::var_os("NO_COLOR").is_none();
                    if rows.is_empty() {
                        "no Vigil objects\n".to_owned()
                    } else {
                        crate::fleet::table(rows, width, colour)
                    }
                })
            })
        }
    };
    match printed {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            let _ = writeln!(err, "error: {error}");
            ExitCode::from(2)
        }
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes `value` as `output` asks: JSON, YAML, or the text `table` makes of it.
fn emit<T: serde::Serialize>(
    value: &T,
    output: Output,
    out: &mut dyn Write,
    table: impl FnOnce(&T) -> String,
) -> std::io::Result<()> {
    match output {
        Output::Json => serde_json::to_string_pretty(value)
            .map_err(std::io::Error::other)
            .and_then(|json| writeln!(out, "{json}")),
        Output::Yaml => serde_yaml_ng::to_string(value)
            .map_err(std::io::Error::other)
            .and_then(|yaml| write!(out, "{yaml}")),
        Output::Table => write!(out, "{}", table(value)),
    }
}

/// Options of `vigil crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write `<plural>.vigil.io.yaml` files here instead of printing.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write Helm templates (gated by `crds.install`, kept on uninstall with `crds.keep`).
    #[arg(long, requires = "output")]
    pub helm: bool,
}

/// Options of `vigil run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of the admin server (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, env = "VIGIL_ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: SocketAddr,
    /// Namespace the operator runs in.
    #[arg(long, env = "VIGIL_NAMESPACE", default_value = "vigil-system")]
    pub namespace: String,
    /// Elect a leader so that only one replica writes.
    #[arg(long, env = "VIGIL_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(long, env = "VIGIL_LEASE_NAME", default_value = "vigil-leader")]
    pub lease_name: String,
    /// Seconds a leader's Lease lasts without renewal.
    #[arg(long, env = "VIGIL_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Identity in the Lease; the pod name in a cluster.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// First retry delay after a failed reconcile, in seconds.
    #[arg(long, env = "VIGIL_BACKOFF_BASE_SECONDS", default_value_t = 5)]
    pub backoff_base_seconds: u64,
    /// Longest retry delay after repeated failures, in seconds.
    #[arg(long, env = "VIGIL_BACKOFF_MAX_SECONDS", default_value_t = 300)]
    pub backoff_max_seconds: u64,
    /// Reconciles each controller runs at once. Bounded, so that a start with thousands of
    /// objects does not open thousands of API requests together.
    #[arg(long, env = "VIGIL_MAX_CONCURRENT_RECONCILES", default_value_t = 8)]
    pub max_concurrent_reconciles: u16,
    /// Prometheus to read SLO error budgets from when an SLO sets no spec.prometheus.url.
    #[arg(long, env = "VIGIL_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Seconds between two reads of values shown in status (error budgets).
    #[arg(long, env = "VIGIL_STATUS_INTERVAL_SECONDS", default_value_t = 60)]
    pub status_interval_seconds: u64,
    /// Address of the ACME HTTP-01 challenge server (`/.well-known/acme-challenge/`).
    #[arg(long, env = "VIGIL_ACME_HTTP01_ADDR", default_value = "0.0.0.0:8089")]
    pub acme_http01_addr: SocketAddr,
    /// Seconds to wait after a failed certificate issuance; doubles with each failure.
    #[arg(long, env = "VIGIL_ACME_RETRY_INITIAL_SECONDS", default_value_t = 3600)]
    pub acme_retry_initial_seconds: u64,
    /// Longest wait between two issuance attempts, in seconds.
    #[arg(long, env = "VIGIL_ACME_RETRY_MAX_SECONDS", default_value_t = 32 * 3600)]
    pub acme_retry_max_seconds: u64,
    /// Address of the pod mutating webhook (HTTPS); without it there is no webhook.
    #[arg(long, env = "VIGIL_WEBHOOK_ADDR")]
    pub webhook_addr: Option<SocketAddr>,
    /// The Service (in the operator's namespace) the API server reaches the webhook through.
    #[arg(long, env = "VIGIL_WEBHOOK_SERVICE", default_value = "vigil-webhook")]
    pub webhook_service: String,
    /// The port of that Service.
    #[arg(long, env = "VIGIL_WEBHOOK_SERVICE_PORT", default_value_t = 443)]
    pub webhook_service_port: u16,
    /// A URL the API server posts to instead of the Service (an operator outside the cluster).
    #[arg(long, env = "VIGIL_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Name of the MutatingWebhookConfiguration the operator keeps.
    #[arg(long, env = "VIGIL_WEBHOOK_CONFIGURATION", default_value = "vigil")]
    pub webhook_configuration: String,
    /// Secret (operator namespace) holding the webhook's CA and serving certificate.
    #[arg(
        long,
        env = "VIGIL_WEBHOOK_SECRET",
        default_value = "vigil-webhook-tls"
    )]
    pub webhook_secret: String,
    /// Seconds between two looks at the webhook's TLS Secret: a serving certificate due for
    /// renewal (or a Secret deleted) is replaced, and served, without a restart.
    #[arg(long, env = "VIGIL_WEBHOOK_TLS_CHECK_SECONDS", default_value_t = 3600)]
    pub webhook_tls_check_seconds: u64,
}

/// Manifest inputs.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Files or directories of YAML manifests (multi-document); directories are read recursively.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Namespace for namespaced objects that do not name one.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
}

/// Options of `vigil render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The manifests.
    #[command(flatten)]
    pub input: InputArgs,
    /// Write the files peer programs read (rule files, Corefiles, collector configs) here.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

impl RunArgs {
    /// The options of the controller manager.
    pub fn options(self) -> RunOptions {
        let identity = self.identity.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "vigil".to_owned());
            format!("{host}-{}", std::process::id())
        });
        RunOptions {
            admin_addr: self.admin_addr,
            namespace: self.namespace.clone(),
            leader_election: self.leader_election,
            lease_name: self.lease_name,
            lease_duration_seconds: self.lease_duration_seconds,
            identity,
            backoff_base: Duration::from_secs(self.backoff_base_seconds),
            backoff_max: Duration::from_secs(self.backoff_max_seconds),
            max_concurrent_reconciles: self.max_concurrent_reconciles.max(1),
            prometheus_url: self.prometheus_url,
            status_interval: Duration::from_secs(self.status_interval_seconds),
            acme_http01_addr: self.acme_http01_addr,
            acme_retry_initial: Duration::from_secs(self.acme_retry_initial_seconds),
            acme_retry_max: Duration::from_secs(self.acme_retry_max_seconds),
            webhook: self
                .webhook_addr
                .map(|addr| crate::webhook::WebhookOptions {
                    addr,
                    service: match &self.webhook_url {
                        Some(_) => None,
                        None => Some((self.webhook_service.clone(), self.webhook_service_port)),
                    },
                    url: self.webhook_url.clone(),
                    configuration_name: self.webhook_configuration.clone(),
                    secret_name: self.webhook_secret.clone(),
                    namespace: self.namespace.clone(),
                    tls_check: std::time::Duration::from_secs(
                        self.webhook_tls_check_seconds.max(1),
                    ),
                }),
        }
    }
}

/// Every CRD as `(file name, YAML)`, as kept in `crds/`: `<plural>.vigil.io.yaml`.
pub fn crd_files() -> Vec<(String, String)> {
    crate::api::crds()
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let yaml = serde_yaml_ng::to_string(crd).unwrap_or_default();
            (format!("{name}.yaml"), format!("{CRD_HEADER}{yaml}"))
        })
        .collect()
}

const CRD_HEADER: &str =
    "# Generated by `vigil crds` from the Rust types in operator/src/api; do not edit.\n";

/// A CRD as a template of the Helm chart: installed when `crds.install`, annotated to be
/// kept on uninstall when `crds.keep`.
pub fn helm_crd_template(yaml: &str) -> String {
    let body = yaml.strip_prefix(CRD_HEADER).unwrap_or(yaml);
    let body = body.replacen(
        "metadata:\n",
        "metadata:\n  {{- if .Values.crds.keep }}\n  annotations:\n    helm.sh/resource-policy: keep\n  {{- end }}\n  labels:\n    {{- include \"vigil.labels\" . | nindent 4 }}\n",
        1,
    );
    format!("{CRD_HEADER}{{{{- if .Values.crds.install }}}}\n{body}{{{{- end }}}}\n")
}

/// `vigil crds`: prints every CRD as one YAML stream, or writes one file per CRD.
pub fn crds(args: &CrdsArgs, out: &mut dyn Write) -> std::io::Result<()> {
    let mut files = crd_files();
    if args.helm {
        files = files
            .into_iter()
            .map(|(name, yaml)| (name, helm_crd_template(&yaml)))
            .collect();
    }
    match &args.output {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (name, yaml) in files {
                std::fs::write(dir.join(name), yaml)?;
            }
            Ok(())
        }
        None => {
            let stream: Vec<String> = files.into_iter().map(|(_, yaml)| yaml).collect();
            out.write_all(stream.join("---\n").as_bytes())
        }
    }
}

fn load(input: &InputArgs, err: &mut dyn Write) -> Result<Loaded, ExitCode> {
    manifest::load(&input.paths, &input.namespace).map_err(|e| {
        let _ = writeln!(err, "error: {e}");
        ExitCode::from(2)
    })
}

fn report(loaded: &Loaded, err: &mut dyn Write) -> bool {
    for problem in &loaded.problems {
        let _ = writeln!(err, "{problem}");
    }
    loaded.problems.is_empty()
}

/// `vigil validate`: one line per valid object on `out`, one line per problem on `err`.
pub fn validate(input: &InputArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let loaded = match load(input, err) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    for (source, object) in &loaded.sources {
        let _ = writeln!(out, "{source}: {object}: valid");
    }
    let ok = report(&loaded, err);
    let _ = writeln!(
        out,
        "{} valid, {} problems, {} documents of other API groups skipped",
        loaded.sources.len(),
        loaded.problems.len(),
        loaded.skipped
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `vigil render`: the objects the controllers would apply, as a YAML stream on `out`, or
/// with `-o DIR` the peer files. Nothing is printed or written when a manifest is invalid.
pub fn render(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let loaded = match load(&args.input, err) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if !report(&loaded, err) {
        return ExitCode::from(1);
    }
    let desired = render::render(&loaded.inventory);
    let written = match &args.output {
        Some(dir) => write_files(dir, &desired),
        None => print_objects(&desired, out),
    };
    match written {
        Ok(()) => {
            let _ = writeln!(
                err,
                "rendered {} objects and {} files from {} Vigil objects",
                desired.objects.len(),
                desired.files.len(),
                loaded.inventory.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::from(2)
        }
    }
}

fn print_objects(desired: &Desired, out: &mut dyn Write) -> std::io::Result<()> {
    for object in &desired.objects {
        writeln!(out, "---")?;
        out.write_all(
            serde_yaml_ng::to_string(object)
                .map_err(std::io::Error::other)?
                .as_bytes(),
        )?;
    }
    Ok(())
}

fn write_files(dir: &Path, desired: &Desired) -> std::io::Result<()> {
    crate::parallel::map(&desired.files, |file| {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, &file.content)
    })
    .into_iter()
    .collect()
}
