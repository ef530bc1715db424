//! A real Thanos Ruler (built by `make tools` from `e2e/tools/thanos`) on loopback,
//! stateless: it queries a Prometheus, writes what its recording rules record back into
//! that Prometheus (remote write), and sends its alerts to an Alertmanager.

use std::path::{Path, PathBuf};

use crate::process::Process;
use crate::{free_port, tool};

/// A Thanos Ruler.
#[derive(Debug)]
pub struct ThanosRuler {
    process: Process,
    /// `http://127.0.0.1:<port>`: its HTTP API (`/api/v1/rules`, `/-/reload`).
    pub url: String,
    /// Rule files placed here are loaded on [`ThanosRuler::reload`].
    pub rules_dir: PathBuf,
}

impl ThanosRuler {
    /// Starts a ruler evaluating every second against `prometheus` (`http://host:port`),
    /// remote-writing into it, alerting `alertmanager` (`host:port`).
    pub async fn start(dir: &Path, prometheus: &str, alertmanager: &str) -> anyhow::Result<Self> {
        let dir = dir.join("thanos-ruler");
        let rules_dir = dir.join("rules");
        std::fs::create_dir_all(&rules_dir)?;
        let remote_write = dir.join("remote-write.yaml");
        std::fs::write(
            &remote_write,
            format!("remote_write:\n  - url: {prometheus}/api/v1/write\n    name: prometheus\n"),
        )?;
        let (http, grpc) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{http}");
        let mut process = Process::start(
            "thanos-ruler",
            &tool("thanos")?,
            &[
                "rule".into(),
                format!("--data-dir={}", dir.join("data").display()),
                format!("--rule-file={}/*.yaml", rules_dir.display()),
                format!("--query={prometheus}"),
                format!("--remote-write.config-file={}", remote_write.display()),
                format!("--alertmanagers.url=http://{alertmanager}"),
                "--eval-interval=1s".into(),
                format!("--http-address=127.0.0.1:{http}"),
                format!("--grpc-address=127.0.0.1:{grpc}"),
                "--label=ruler=\"thanos\"".into(),
            ],
            &dir,
            &[],
        )?;
        crate::wait_ready(&mut process, "thanos ruler", &format!("{url}/-/ready")).await?;
        Ok(Self {
            process,
            url,
            rules_dir,
        })
    }

    /// Reloads the rule files.
    pub async fn reload(&self) -> anyhow::Result<()> {
        crate::post_ok(&format!("{}/-/reload", self.url)).await
    }

    /// `GET /api/v1/<path>` as JSON.
    pub async fn api(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        crate::get_json(&format!("{}/api/v1/{path}", self.url)).await
    }

    /// The log so far.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }
}
