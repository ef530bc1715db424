//! An OCI registry on loopback: CNCF Distribution's `registry` (v3.1.2, built by
//! `make tools` into `.tools/bin/registry`), storing on disk in the test's folder, plain
//! HTTP. Helm pushes the packaged chart to it (`helm push --plain-http`) and installs from
//! it, as users install Vigil's chart from `oci://ghcr.io/...`.

use std::path::Path;
use std::time::Duration;

use crate::process::{Process, print_tails};
use crate::{eventually, free_port, http_get, tool};

/// A running registry. It stops on drop; if the test is failing, its log tail is printed.
#[derive(Debug)]
pub struct Registry {
    process: Process,
    /// `127.0.0.1:<port>`, the host of `oci://` references.
    pub address: String,
}

impl Registry {
    /// Starts a registry storing under `<dir>/registry` and waits until it answers the
    /// OCI distribution API's base endpoint (`GET /v2/`).
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("registry");
        std::fs::create_dir_all(&dir)?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let config = serde_json::json!({
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": dir.join("data")},
                "delete": {"enabled": true},
            },
            "http": {"addr": address},
        });
        // YAML is a superset of JSON: the registry reads this file as its config.
        let path = dir.join("config.yml");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        let process = Process::start(
            "registry",
            &tool("registry")?,
            &["serve".to_owned(), path.to_string_lossy().into_owned()],
            &dir,
            &[("OTEL_TRACES_EXPORTER", "none")],
        )?;
        let mut registry = Self { process, address };
        let base = format!("http://{}/v2/", registry.address);
        let up = eventually("the registry serving", Duration::from_secs(30), || {
            let alive = registry.process.check_alive();
            let base = base.clone();
            async move {
                alive?;
                Ok(http_get(&base)
                    .await
                    .filter(|(status, _)| *status == 200)
                    .map(drop))
            }
        })
        .await;
        if let Err(error) = up {
            print_tails(&[&registry.process], 30);
            return Err(error);
        }
        Ok(registry)
    }

    /// `oci://127.0.0.1:<port>/<repository>`.
    pub fn oci(&self, repository: &str) -> String {
        format!("oci://{}/{repository}", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tails(&[&self.process], 30);
        }
    }
}
