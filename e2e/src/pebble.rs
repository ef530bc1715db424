//! Pebble, Let's Encrypt's ACME test server (v2.10.3, built by `make tools` into
//! `.tools/bin/pebble`), on loopback.
//!
//! Pebble's ACME and management listeners are HTTPS with a serving certificate for
//! `localhost` and `127.0.0.1` signed by a CA generated per instance ([`Pebble::ca_pem`]).
//! The certificates Pebble issues chain to a different root, its own, which it generates
//! at every start and serves on the management interface ([`Pebble::roots_pem`]).

use std::path::Path;
use std::time::Duration;

use crate::pki::Pki;
use crate::process::{Process, print_tails};
use crate::{eventually, free_port, tool};

/// How [`Pebble::start`] configures Pebble.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    /// Where Pebble's validation authority connects for HTTP-01 challenges (on the address
    /// a name resolves to); 0 picks a free port.
    pub http_port: u16,
    /// `host:port` of the DNS server (bind9) where the validation authority resolves names
    /// and reads DNS-01 TXT records (`-dnsserver`; Pebble queries it over TCP).
    pub dns_server: String,
    /// The lifetime of issued certificates in seconds (the `default` profile's
    /// `validityPeriod`); Pebble's default is 7776000 (90 days).
    pub validity_seconds: Option<u64>,
    /// External account binding: `(key id, HMAC key)` pairs, the keys base64url without
    /// padding. When set, `newAccount` requires a binding with one of them.
    pub eab_keys: Option<Vec<(String, String)>>,
    /// `PEBBLE_WFE_NONCEREJECT`: the percentage of valid nonces Pebble rejects with
    /// `badNonce`. Pebble's default (5) when `None`.
    pub nonce_reject_percent: Option<u8>,
    /// `PEBBLE_AUTHZREUSE`: how often (percent) Pebble reuses a valid authorization instead
    /// of asking for a new challenge, as real CAs do for weeks. Pebble's default (50) when
    /// `None`; 0 makes every order prove every name again.
    pub authz_reuse_percent: Option<u8>,
    /// Let the validation authority wait before each validation, as Pebble does unless
    /// `PEBBLE_VA_NOSLEEP` is set (0 to 15 s): orders stay pending long enough to
    /// interrupt an issuance.
    pub va_sleep: bool,
}

/// A running Pebble. It stops on drop; if the test is failing, its log tail is printed.
#[derive(Debug)]
pub struct Pebble {
    process: Process,
    /// The PEM CA certificate that signed Pebble's HTTPS serving certificate: what an
    /// `AcmeIssuer`'s `caBundle` must hold to reach [`Pebble::directory_url`].
    pub ca_pem: String,
    /// The ACME port (HTTPS) on 127.0.0.1.
    pub listen_port: u16,
    /// The management port (HTTPS) on 127.0.0.1.
    pub management_port: u16,
    /// Where the validation authority connects for HTTP-01.
    pub http_port: u16,
    /// Where the validation authority connects for TLS-ALPN-01.
    pub tls_port: u16,
}

impl Pebble {
    /// Writes `<dir>/pebble-<port>/pebble.json`, starts Pebble with it and `-dnsserver`,
    /// and returns once the directory answers over HTTPS.
    pub async fn start(dir: &Path, options: PebbleOptions) -> anyhow::Result<Self> {
        let binary = tool("pebble")?;
        anyhow::ensure!(
            !options.dns_server.is_empty(),
            "PebbleOptions::dns_server is required"
        );
        let listen_port = free_port()?;
        let management_port = free_port()?;
        let tls_port = free_port()?;
        let http_port = match options.http_port {
            0 => free_port()?,
            port => port,
        };
        let dir = dir.join(format!("pebble-{listen_port}"));
        let tls_dir = dir.join("tls");
        std::fs::create_dir_all(&tls_dir)?;
        // A CA and a serving certificate for localhost and 127.0.0.1 (the cluster PKI's
        // generator; the other files it writes are not used).
        let pki = Pki::generate(&tls_dir)?;

        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": pki.serving_cert,
                "privateKey": pki.serving_key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": options.eab_keys.is_some(),
            }
        });
        if let Some(seconds) = options.validity_seconds {
            config["pebble"]["profiles"] = serde_json::json!({
                "default": {
                    "description": format!("certificates valid for {seconds} s"),
                    "validityPeriod": seconds,
                }
            });
        }
        if let Some(keys) = &options.eab_keys {
            config["pebble"]["externalAccountMACKeys"] = keys
                .iter()
                .map(|(id, key)| (id.clone(), serde_json::Value::from(key.as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let config_file = dir.join("pebble.json");
        std::fs::write(&config_file, serde_json::to_string_pretty(&config)?)?;

        let nonce_reject = options.nonce_reject_percent.map(|p| p.to_string());
        let mut envs = Vec::new();
        if !options.va_sleep {
            envs.push(("PEBBLE_VA_NOSLEEP", "1"));
        }
        if let Some(percent) = &nonce_reject {
            envs.push(("PEBBLE_WFE_NONCEREJECT", percent));
        }
        let authz_reuse = options.authz_reuse_percent.map(|p| p.to_string());
        if let Some(percent) = &authz_reuse {
            envs.push(("PEBBLE_AUTHZREUSE", percent));
        }
        let mut process = Process::start(
            &format!("pebble-{listen_port}"),
            &binary,
            &[
                "-config".into(),
                config_file.to_string_lossy().into_owned(),
                "-dnsserver".into(),
                options.dns_server.clone(),
            ],
            &dir,
            &envs,
        )?;

        let directory = format!("https://localhost:{listen_port}/dir");
        let client = vigil::tls::http_client(Some(&pki.ca_pem), Duration::from_secs(5))?;
        eventually(
            &format!("pebble directory {directory}"),
            Duration::from_secs(30),
            || {
                let alive = process.check_alive();
                let request = client.get(&directory).send();
                async move {
                    if let Err(exited) = alive {
                        return Ok(Some(Err(exited)));
                    }
                    let response = request.await?;
                    let status = response.status();
                    let body = response.text().await?;
                    anyhow::ensure!(status.is_success(), "{status}: {body}");
                    Ok(body.contains("newOrder").then_some(Ok(())))
                }
            },
        )
        .await??;
        Ok(Self {
            process,
            ca_pem: pki.ca_pem,
            listen_port,
            management_port,
            http_port,
            tls_port,
        })
    }

    /// The ACME directory: `https://localhost:<port>/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://localhost:{}/dir", self.listen_port)
    }

    /// The management interface: `https://localhost:<port>` (`/roots/0`,
    /// `/intermediates/0`, `/cert-status-by-serial/<hex>`, `POST /set-renewal-info/`).
    pub fn management_url(&self) -> String {
        format!("https://localhost:{}", self.management_port)
    }

    /// The PEM root that issued certificates chain to (`GET /roots/0` on the management
    /// interface). Pebble generates it at start, so it changes with every instance.
    pub async fn roots_pem(&self) -> anyhow::Result<String> {
        let url = format!("{}/roots/0", self.management_url());
        let client = vigil::tls::http_client(Some(&self.ca_pem), Duration::from_secs(10))?;
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.text().await?;
        anyhow::ensure!(status.is_success(), "{url}: {status}: {body}");
        anyhow::ensure!(
            body.contains("-----BEGIN CERTIFICATE-----"),
            "{url}: not a PEM certificate: {body}"
        );
        Ok(body)
    }

    /// The last lines of Pebble's log.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }

    /// Pebble's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }

    /// Stops Pebble (SIGKILL). Everything it knew (accounts, orders, its CA) is gone.
    pub fn stop(&mut self) {
        self.process.kill();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_tails(&[&self.process], 40);
        }
    }
}
