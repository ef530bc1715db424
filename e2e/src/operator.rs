//! The `vigil` operator as a process, with its admin port.

use std::path::{Path, PathBuf};

use crate::process::{Process, print_tails};
use crate::{free_port, repo};

/// The `vigil` binary of this workspace (built by `cargo build`), or `$VIGIL_BIN`.
pub fn vigil_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("VIGIL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let path = target.join("debug/vigil");
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run `cargo build --bin vigil`",
        path.display()
    );
    Ok(path)
}

/// Runs `vigil COMMAND ARGS --kubeconfig KUBECONFIG` as a user does: exit code, stdout,
/// stderr.
pub fn vigil_cli(
    kubeconfig: &Path,
    command: &str,
    args: &[&str],
) -> anyhow::Result<(i32, String, String)> {
    let output = std::process::Command::new(vigil_binary()?)
        .arg(command)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .output()?;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A running `vigil run`.
#[derive(Debug)]
pub struct Operator {
    process: Process,
    /// The admin address (`/metrics`, `/healthz`, `/readyz`).
    pub admin: String,
    /// The identity it uses in the leader Lease.
    pub identity: String,
}

impl Operator {
    /// Installs the chart (CRDs, RBAC, ServiceAccount; no Deployment) in `vigil-system` of
    /// `cluster` and starts `vigil run` as the chart's ServiceAccount: with exactly the
    /// chart's rights, so a missing permission shows as a `forbidden` in the log.
    pub async fn start_with_chart_rbac(
        cluster: &crate::TestCluster,
        identity: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with_chart_values(cluster, identity, extra, "replicas=0").await
    }

    /// As [`Operator::start_with_chart_rbac`], with the chart values `set` (Helm's `--set`,
    /// which must keep `replicas=0`).
    pub async fn start_with_chart_values(
        cluster: &crate::TestCluster,
        identity: &str,
        extra: &[&str],
        set: &str,
    ) -> anyhow::Result<Self> {
        use k8s_openapi::api::authentication::v1::TokenRequest;
        use k8s_openapi::api::core::v1::ServiceAccount;
        let chart = repo().join("charts/vigil");
        cluster.run_tool(
            "helm",
            &[
                "upgrade",
                "--install",
                "vigil",
                chart.to_str().unwrap_or_default(),
                "--namespace",
                "vigil-system",
                "--create-namespace",
                "--set",
                set,
                "--wait",
            ],
        )?;
        cluster.wait_crds_established().await?;
        let accounts: kube::Api<ServiceAccount> =
            kube::Api::namespaced(cluster.client(), "vigil-system");
        let request: TokenRequest = serde_json::from_value(
            serde_json::json!({"spec": {"audiences": [], "expirationSeconds": 3600}}),
        )?;
        let token = accounts
            .create_token_request("vigil", &kube::api::PostParams::default(), &request)
            .await?
            .status
            .and_then(|s| s.token)
            .unwrap_or_default();
        let kubeconfig = cluster.dir().join(format!("{identity}.kubeconfig"));
        std::fs::write(&kubeconfig, cluster.token_kubeconfig(&token))?;
        Self::start(&kubeconfig, cluster.dir(), identity, extra)
    }

    /// Starts `vigil run` with `kubeconfig`, logging to `<dir>/<identity>.log`.
    pub fn start(
        kubeconfig: &Path,
        dir: &Path,
        identity: &str,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_logging(kubeconfig, dir, identity, extra, "info,vigil=debug")
    }

    /// As [`Operator::start`], with `RUST_LOG` set to `filter`.
    pub fn start_logging(
        kubeconfig: &Path,
        dir: &Path,
        identity: &str,
        extra: &[&str],
        filter: &str,
    ) -> anyhow::Result<Self> {
        let admin = format!("127.0.0.1:{}", free_port()?);
        let mut args = vec![
            "run".to_owned(),
            format!("--admin-addr={admin}"),
            "--namespace=vigil-system".to_owned(),
            format!("--identity={identity}"),
            "--backoff-base-seconds=1".to_owned(),
            "--backoff-max-seconds=5".to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        let process = Process::start(
            identity,
            &vigil_binary()?,
            &args,
            dir,
            &[("KUBECONFIG", kubeconfig.as_str()), ("RUST_LOG", filter)],
        )?;
        Ok(Self {
            process,
            admin,
            identity: identity.to_owned(),
        })
    }

    /// GETs a path of the admin port; `None` while it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        crate::http_get(&format!("http://{}{path}", self.admin)).await
    }

    /// The value of one metric sample line, e.g. `vigil_reconcile_panics_total{controller="MemberCluster"}`.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines().find_map(|line| {
            line.strip_prefix(sample)
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// The sum of every sample of metric `name` (all label sets); `None` when `/metrics`
    /// does not answer, `Some(0.0)` when the metric has no sample yet.
    pub async fn metric_total(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        Some(
            body.lines()
                .filter(|line| {
                    line.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// Passes `result` through; when it is an error, prints the operator's log tail first
    /// (a scenario that returns an error drops the operator before the test panics).
    pub fn on_failure<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_err() {
            print_tails(&[&self.process], 120);
        }
        result
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.process.check_alive()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        self.process.rss_kib()
    }

    /// The highest resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.process.peak_rss_kib()
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.process.terminate()
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tails(&[&self.process], 60);
        }
    }
}
