//! A real DNS server (bind9's `named`) on loopback, answering for a cluster's domain, and
//! optionally accepting RFC 2136 dynamic updates signed with a TSIG key (RFC 8945).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::process::Process;
use crate::{eventually, free_port};

/// A TSIG key: `named.conf` gets `key "<name>" { algorithm <algorithm>; secret "<secret>"; };`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tsig {
    /// The key name, e.g. `vigil-update`.
    pub name: String,
    /// The algorithm as bind9 and nsupdate spell it, e.g. `hmac-sha256`.
    pub algorithm: String,
    /// The shared secret, base64.
    pub secret_base64: String,
}

impl Tsig {
    /// An `hmac-sha256` key called `name` with a fresh random secret.
    pub fn generate(name: &str) -> anyhow::Result<Self> {
        Ok(Self {
            name: name.to_owned(),
            algorithm: "hmac-sha256".to_owned(),
            secret_base64: generate_tsig_secret()?,
        })
    }

    /// The key as `nsupdate -y` and `dig -y` take it: `<algorithm>:<name>:<secret>`.
    pub fn key_arg(&self) -> String {
        format!("{}:{}:{}", self.algorithm, self.name, self.secret_base64)
    }
}

/// 32 random bytes (from `/dev/urandom`), base64: a secret for an `hmac-sha256` TSIG key.
pub fn generate_tsig_secret() -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut secret)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(secret))
}

/// What [`DnsServer::start_with`] serves.
#[derive(Debug, Clone, Default)]
pub struct DnsOptions {
    /// The zone, e.g. `cluster.local` or `certs.test`.
    pub zone: String,
    /// The port on 127.0.0.1 (UDP and TCP); a free one when `None`.
    pub port: Option<u16>,
    /// Extra `(name, address)` A records; names are relative to the zone.
    pub records: Vec<(String, String)>,
    /// When set, the zone accepts dynamic updates signed with this key (and only those).
    pub tsig: Option<Tsig>,
}

/// A `named` serving one zone on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct DnsServer {
    process: Process,
    named: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `127.0.0.1:<port>`.
    pub endpoint: String,
    /// The zone it is authoritative for.
    pub zone: String,
    /// The key that signs updates, when the zone accepts them.
    pub tsig: Option<Tsig>,
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
        Self::start_with(
            dir,
            DnsOptions {
                zone: zone.to_owned(),
                port,
                records: records
                    .iter()
                    .map(|(name, address)| ((*name).to_owned(), (*address).to_owned()))
                    .collect(),
                tsig: None,
            },
        )
        .await
    }

    /// Like [`DnsServer::start`], and with `options.tsig` the zone also takes RFC 2136
    /// updates signed with that key (`allow-update { key "<name>"; }`); unsigned or
    /// wrongly signed updates are refused. The zone file and its journal live in
    /// `<dir>/named-<port>/`, which `named` writes to.
    pub async fn start_with(dir: &Path, options: DnsOptions) -> anyhow::Result<Self> {
        let named = which("named")?;
        let DnsOptions {
            zone,
            port,
            records,
            tsig,
        } = options;
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let dir = dir.join(format!("named-{port}"));
        std::fs::create_dir_all(&dir)?;
        let mut zone_file = format!(
            "$TTL 30\n@ IN SOA ns.{zone}. hostmaster.{zone}. 1 60 60 3600 30\n@ IN NS ns.{zone}.\nns IN A 127.0.0.1\nkubernetes.default.svc IN A 10.0.0.1\n"
        );
        for (name, address) in &records {
            zone_file.push_str(&format!("{name} IN A {address}\n"));
        }
        std::fs::write(dir.join("zone.db"), zone_file)?;
        let d = dir.display();
        let (key, allow_update) = match &tsig {
            Some(Tsig {
                name,
                algorithm,
                secret_base64,
            }) => (
                format!(
                    "key \"{name}\" {{ algorithm {algorithm}; secret \"{secret_base64}\"; }};\n"
                ),
                format!(" allow-update {{ key \"{name}\"; }};"),
            ),
            None => (String::new(), String::new()),
        };
        let conf = dir.join("named.conf");
        std::fs::write(
            &conf,
            format!(
                "{key}options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  session-keyfile \"{d}/session.key\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  listen-on-v6 {{ none; }};\n  recursion no;\n  dnssec-validation no;\n}};\nzone \"{zone}\" {{ type primary; file \"{d}/zone.db\";{allow_update} }};\n"
            ),
        )?;
        let mut server = Self {
            process: launch(&named, &conf, &dir, &zone, port)?,
            named,
            conf,
            dir,
            port,
            endpoint: format!("127.0.0.1:{port}"),
            zone,
            tsig,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Stops the server (SIGKILL). Its zone file, journal and port stay for [`DnsServer::restart`].
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Starts the server again (stopping it first if it runs) on the same port, with the
    /// same configuration and zone data, including the updates it accepted before.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        self.process = launch(&self.named, &self.conf, &self.dir, &self.zone, self.port)?;
        self.wait_ready().await
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of `named`'s log.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }

    /// Waits until `named` accepts TCP connections; fails at once if it exits.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let process = &mut self.process;
        let probe = self.endpoint.clone();
        eventually(
            &format!("named on {probe}"),
            Duration::from_secs(20),
            || {
                let alive = process.check_alive();
                let probe = probe.clone();
                async move {
                    if let Err(exited) = alive {
                        return Ok(Some(Err(exited)));
                    }
                    Ok(tokio::net::TcpStream::connect(&probe)
                        .await
                        .ok()
                        .map(|_| Ok(())))
                }
            },
        )
        .await?
    }
}

/// Starts `named -g -c <conf>`, logging to `<dir>/named-<zone>-<port>.log`.
fn launch(named: &Path, conf: &Path, dir: &Path, zone: &str, port: u16) -> anyhow::Result<Process> {
    Process::start(
        &format!("named-{zone}-{port}"),
        named,
        &[
            "-g".into(),
            "-c".into(),
            conf.to_string_lossy().into_owned(),
        ],
        dir,
        &[],
    )
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
