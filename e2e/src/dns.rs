//! A real DNS server (bind9's `named`) on loopback, answering for a cluster's domain.

use std::path::Path;
use std::time::Duration;

use crate::process::Process;
use crate::{eventually, free_port};

/// A `named` serving one zone on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct DnsServer {
    process: Process,
    /// `127.0.0.1:<port>`.
    pub endpoint: String,
}

impl DnsServer {
    /// Starts `named` on `port` (a free one when `None`) answering authoritatively for
    /// `zone` with `kubernetes.default.svc.<zone>` and the extra `(name, address)` A records.
    pub async fn start(
        dir: &Path,
        zone: &str,
        port: Option<u16>,
        records: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let named = which("named")?;
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let dir = dir.join(format!("named-{port}"));
        std::fs::create_dir_all(&dir)?;
        let mut zone_file = format!(
            "$TTL 30\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 3600 30\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\nkubernetes.default.svc IN A 10.0.0.1\n"
        );
        for (name, address) in records {
            zone_file.push_str(&format!("{name} IN A {address}\n"));
        }
        std::fs::write(dir.join("zone.db"), zone_file)?;
        let d = dir.display();
        std::fs::write(
            dir.join("named.conf"),
            format!(
                "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n}};\nzone \"{zone}\" {{ type primary; file \"{d}/zone.db\"; }};\n"
            ),
        )?;
        let conf = dir.join("named.conf").to_string_lossy().into_owned();
        let mut process = Process::start(
            &format!("named-{zone}-{port}"),
            &named,
            &["-g".into(), "-c".into(), conf],
            &dir,
            &[],
        )?;
        let endpoint = format!("127.0.0.1:{port}");
        let probe = endpoint.clone();
        let ready = eventually(
            &format!("named on {endpoint}"),
            Duration::from_secs(20),
            || {
                let probe = probe.clone();
                async move {
                    Ok(tokio::net::TcpStream::connect(&probe)
                        .await
                        .ok()
                        .map(|_| ()))
                }
            },
        )
        .await;
        if let Err(error) = ready {
            process.check_alive()?;
            return Err(error);
        }
        Ok(Self { process, endpoint })
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        self.process.kill();
    }
}

/// The full path of a program on `PATH` (or in `/usr/sbin`), or how to get it.
pub fn which(program: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            std::path::PathBuf::from("/usr/sbin"),
            std::path::PathBuf::from("/sbin"),
        ])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow::anyhow!("{program} is not installed: run `make tools`"))
}
