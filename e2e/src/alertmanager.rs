//! A real Alertmanager (the Debian package) on loopback, and webhook receivers for it to
//! notify.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::dns::which;
use crate::free_port;
use crate::process::Process;

/// An Alertmanager with one configuration file, clustering off.
#[derive(Debug)]
pub struct Alertmanager {
    process: Process,
    /// `127.0.0.1:<port>`, for Prometheus' `alerting.alertmanagers`.
    pub address: String,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (its YAML) in `dir/alertmanager`.
    pub async fn start(dir: &Path, config: &str) -> anyhow::Result<Self> {
        let binary = which("prometheus-alertmanager")?;
        let dir = dir.join("alertmanager");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("alertmanager.yml");
        std::fs::write(&file, config)?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let mut process = Process::start(
            "alertmanager",
            &binary,
            &[
                format!("--config.file={}", file.display()),
                format!("--storage.path={}", dir.join("data").display()),
                format!("--web.listen-address={address}"),
                // No gossip: one instance, and nothing listening beyond loopback.
                "--cluster.listen-address=".into(),
            ],
            &dir,
            &[],
        )?;
        crate::wait_ready(
            &mut process,
            "alertmanager",
            &format!("http://{address}/-/ready"),
        )
        .await?;
        Ok(Self { process, address })
    }

    /// The alerts it holds (`GET /api/v2/alerts`), inhibited ones included.
    pub async fn alerts(&self) -> anyhow::Result<serde_json::Value> {
        crate::get_json(&format!("http://{}/api/v2/alerts", self.address)).await
    }

    /// The log so far.
    pub fn log_tail(&self) -> String {
        self.process.tail(40)
    }
}

/// An HTTP endpoint on loopback that answers 200 to every POST and keeps its JSON body:
/// a webhook receiver.
#[derive(Debug)]
pub struct WebhookSink {
    /// `http://127.0.0.1:<port>/`.
    pub url: String,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookSink {
    /// Listens on a free port of loopback.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let shared = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let bodies = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, bodies).await;
                });
            }
        });
        Ok(Self { url, bodies, task })
    }

    /// Every body received so far, oldest first.
    pub fn received(&self) -> Vec<serde_json::Value> {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests of one kept-alive connection, each answered `200` with an empty body.
async fn serve(
    stream: tokio::net::TcpStream,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse()?;
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()));
        bodies.lock().unwrap_or_else(|e| e.into_inner()).push(value);
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await?;
    }
}
