//! A real Thanos Ruler (built by `make tools` from `e2e/tools/thanos`) on loopback,
//! stateless: it queries a Prometheus, writes what its recording rules record back into
//! that Prometheus (remote write), and sends its alerts to an Alertmanager.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::Process;
use crate::{eventually, free_port, tool};

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
        let ready = eventually("thanos ruler ready", Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                Ok(crate::http_get(&format!("{url}/-/ready"))
                    .await
                    .filter(|(status, _)| *status == 200)
                    .map(|_| ()))
            }
        })
        .await;
        if let Err(error) = ready {
            process.check_alive()?;
            return Err(error);
        }
        Ok(Self {
            process,
            url,
            rules_dir,
        })
    }

    /// Reloads the rule files.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let (status, body) = crate::http_request("POST", &format!("{}/-/reload", self.url))
            .await
            .ok_or_else(|| anyhow::anyhow!("no answer"))?;
        anyhow::ensure!(status == 200, "reload failed: {status} {body}");
        Ok(())
    }

    /// `GET /api/v1/<path>` as JSON.
    pub async fn api(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let (status, body) = crate::http_get(&format!("{}/api/v1/{path}", self.url))
            .await
            .ok_or_else(|| anyhow::anyhow!("no answer"))?;
        anyhow::ensure!(status == 200, "{path}: {status} {body}");
        Ok(serde_json::from_str(&body)?)
    }

    /// The log so far.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }
}
