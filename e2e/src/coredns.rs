//! CoreDNS (v1.15.0, built by `make tools` into `.tools/bin/coredns`) on loopback, serving
//! a Corefile that the caller writes whole.
//!
//! The CrossCloudDNS tests rely on two of its plugins: `kubernetes`, reading a test
//! cluster's Services through its kubeconfig from outside any pod ([`kubernetes_block`]),
//! and several `forward` plugins in one server block, chained with `next NXDOMAIN`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Process, print_tails};
use crate::{eventually, tool};

/// A running CoreDNS. It stops on drop; if the test is failing, its log tail is printed.
#[derive(Debug)]
pub struct CoreDns {
    process: Process,
    binary: PathBuf,
    corefile: PathBuf,
    dir: PathBuf,
    name: String,
    port: u16,
    /// `127.0.0.1:<port>`, where it answers over UDP and TCP.
    pub endpoint: String,
}

impl CoreDns {
    /// Writes `corefile` to `<dir>/coredns-<name>/Corefile`, starts `coredns -conf` with it,
    /// and returns once it answers a DNS query on `127.0.0.1:<port>`.
    ///
    /// The Corefile must make CoreDNS listen on `port` on 127.0.0.1 (for example a server
    /// block `.:<port> { bind 127.0.0.1 ... }`); [`crate::free_port`] picks one. A Corefile
    /// that CoreDNS rejects makes it exit at once, and this fails with its log.
    pub async fn start(dir: &Path, name: &str, corefile: &str, port: u16) -> anyhow::Result<Self> {
        let binary = tool("coredns")?;
        let dir = dir.join(format!("coredns-{name}"));
        std::fs::create_dir_all(&dir)?;
        let corefile_path = dir.join("Corefile");
        std::fs::write(&corefile_path, corefile)?;
        let name = format!("coredns-{name}");
        let mut server = Self {
            process: launch(&binary, &name, &corefile_path, &dir)?,
            binary,
            corefile: corefile_path,
            dir,
            name,
            port,
            endpoint: format!("127.0.0.1:{port}"),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Stops CoreDNS (SIGKILL). Its Corefile and port stay for [`CoreDns::restart`].
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts CoreDNS again (stopping it first if it runs) with the same Corefile, and waits
    /// until it answers on the same port. The log continues in the same file.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.process = launch(&self.binary, &self.name, &self.corefile, &self.dir)?;
        self.wait_ready().await
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path of the Corefile it serves.
    pub fn corefile(&self) -> &Path {
        &self.corefile
    }

    /// Everything CoreDNS logged (stdout and stderr), over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }

    /// Waits until CoreDNS answers a query for `. TXT` over UDP with any response code;
    /// fails at once if it exits. With the `kubernetes` plugin CoreDNS only starts
    /// listening once the plugin has synced with the API server (or after its
    /// `startup_timeout`, 5 s by default).
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let address: SocketAddr = self.endpoint.parse()?;
        let process = &mut self.process;
        eventually(
            &format!("{} answering on {address}", process.name),
            Duration::from_secs(30),
            || {
                let alive = process.check_alive();
                async move {
                    if let Err(exited) = alive {
                        return Ok(Some(Err(exited)));
                    }
                    // Any reply, even REFUSED or SERVFAIL, means the server is serving;
                    // only a timeout or a refused socket is an error.
                    vigil::dns::txt_values(address, &vigil::dns::Name::root())
                        .await
                        .map_err(anyhow::Error::msg)?;
                    Ok(Some(Ok(())))
                }
            },
        )
        .await?
    }
}

impl Drop for CoreDns {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tails(&[&self.process], 40);
        }
    }
}

/// Starts `coredns -conf <corefile>` in `dir`, logging to `<dir>/<name>.log`.
fn launch(binary: &Path, name: &str, corefile: &Path, dir: &Path) -> anyhow::Result<Process> {
    Process::start(
        name,
        binary,
        &["-conf".into(), corefile.to_string_lossy().into_owned()],
        dir,
        &[],
    )
}

/// The Corefile lines of a `kubernetes` plugin that serves `zone` (e.g. `cluster.local`)
/// from the cluster of `kubeconfig` (its current context), for a CoreDNS outside any pod:
///
/// ```text
///     kubernetes cluster.local {
///         kubeconfig "/tmp/.../admin.kubeconfig"
///     }
/// ```
///
/// `kubeconfig KUBECONFIG [CONTEXT]` makes the plugin ignore `endpoint` and `tls`; without
/// either it would look for the in-cluster service account. The lines are indented for a
/// server block and end with a newline.
pub fn kubernetes_block(zone: &str, kubeconfig: &Path) -> String {
    format!(
        "    kubernetes {zone} {{\n        kubeconfig {}\n    }}\n",
        quote(&kubeconfig.to_string_lossy())
    )
}

/// `value` as one Corefile token: in double quotes, `"` escaped (the Corefile lexer
/// unescapes only quotes and keeps every other backslash).
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\\\""))
}

/// Gives every `kubernetes` plugin of a rendered file the test cluster's kubeconfig (in a
/// pod the plugin uses the in-cluster service account instead).
pub fn with_kubeconfig(server: &str, kubeconfig: &Path) -> String {
    let mut out = String::new();
    let kubeconfig = format!("        kubeconfig \"{}\"", kubeconfig.display());
    for line in server.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("kubernetes ") {
            let zone = trimmed
                .trim_start_matches("kubernetes ")
                .trim_end_matches(" {");
            let _ = writeln!(out, "    kubernetes {zone} {{\n{kubeconfig}");
            if !trimmed.ends_with('{') {
                let _ = writeln!(out, "    }}");
            }
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Projects the ConfigMap `namespace/name` of `cluster` into `dir` every second, as the
/// kubelet projects a ConfigMap volume into the CoreDNS pod: one file per key, and a key
/// taken out of the ConfigMap disappears (files named in `keep` stay). CoreDNS's `reload`
/// picks changes up. The `kubernetes` plugins get the cluster's kubeconfig, as in a pod
/// they would use the service account. Runs until the task is aborted.
pub fn project_config_map(
    cluster: &crate::TestCluster,
    namespace: &str,
    name: &str,
    dir: PathBuf,
    keep: &'static [&'static str],
) -> tokio::task::JoinHandle<()> {
    let kubeconfig = cluster.kubeconfig().to_owned();
    let config_maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(cluster.client(), namespace);
    let name = name.to_owned();
    tokio::spawn(async move {
        loop {
            if let Ok(config_map) = config_maps.get_opt(&name).await {
                let data = config_map.and_then(|cm| cm.data).unwrap_or_default();
                for (key, value) in &data {
                    let value = with_kubeconfig(value, &kubeconfig);
                    let path = dir.join(key);
                    if std::fs::read_to_string(&path).ok().as_deref() != Some(value.as_str()) {
                        let _ = std::fs::write(&path, value);
                    }
                }
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    if !keep.contains(&file.as_str()) && !data.contains_key(&file) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
