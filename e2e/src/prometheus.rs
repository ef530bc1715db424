//! A real Prometheus (the Debian package) on loopback, and a synthetic exporter for it to
//! scrape.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::which;
use crate::free_port;
use crate::process::Process;

/// A Prometheus scraping its jobs every second and evaluating rules every second.
#[derive(Debug)]
pub struct Prometheus {
    process: Process,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Rule files placed here are loaded on [`Prometheus::reload`].
    pub rules_dir: PathBuf,
}

/// One scrape job of a [`Prometheus`].
#[derive(Clone, Debug)]
pub struct Job {
    /// The job label.
    pub name: String,
    /// `host:port` serving `/metrics`.
    pub target: String,
}

impl Job {
    /// Job `name` scraping `target`.
    pub fn new(name: &str, target: &str) -> Self {
        Self {
            name: name.to_owned(),
            target: target.to_owned(),
        }
    }
}

/// How to run a [`Prometheus`].
#[derive(Clone, Debug, Default)]
pub struct PrometheusOptions {
    /// What it scrapes, every second.
    pub jobs: Vec<Job>,
    /// `host:port` of an Alertmanager to send alerts to.
    pub alertmanager: Option<String>,
    /// Accept remote writes on `/api/v1/write`.
    pub remote_write_receiver: bool,
    /// The port; a free one when `None`.
    pub port: Option<u16>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) as job `job`.
    pub async fn start(dir: &Path, job: &str, target: &str) -> anyhow::Result<Self> {
        Self::start_with(
            dir,
            &PrometheusOptions {
                jobs: vec![Job::new(job, target)],
                ..PrometheusOptions::default()
            },
        )
        .await
    }

    /// Like [`Prometheus::start`], on a given port.
    pub async fn start_on(dir: &Path, job: &str, target: &str, port: u16) -> anyhow::Result<Self> {
        Self::start_with(
            dir,
            &PrometheusOptions {
                jobs: vec![Job::new(job, target)],
                port: Some(port),
                ..PrometheusOptions::default()
            },
        )
        .await
    }

    /// Starts Prometheus as `options` say, evaluating rules every second.
    pub async fn start_with(dir: &Path, options: &PrometheusOptions) -> anyhow::Result<Self> {
        let binary = which("prometheus")?;
        let port = match options.port {
            Some(port) => port,
            None => free_port()?,
        };
        let dir = dir.join("prometheus");
        let rules_dir = dir.join("rules");
        std::fs::create_dir_all(&rules_dir)?;
        let config = dir.join("prometheus.yml");
        let mut text = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}/*.yaml']\nscrape_configs:{}\n",
            rules_dir.display(),
            if options.jobs.is_empty() { " []" } else { "" }
        );
        for job in &options.jobs {
            text.push_str(&format!(
                "  - job_name: {}\n    static_configs: [{{targets: ['{}']}}]\n",
                job.name, job.target
            ));
        }
        if let Some(alertmanager) = &options.alertmanager {
            text.push_str(&format!(
                "alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['{alertmanager}']}}]\n"
            ));
        }
        std::fs::write(&config, text)?;
        let url = format!("http://127.0.0.1:{port}");
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--web.enable-lifecycle".into(),
        ];
        if options.remote_write_receiver {
            args.push("--web.enable-remote-write-receiver".into());
        }
        let mut process = Process::start("prometheus", &binary, &args, &dir, &[])?;
        crate::wait_ready(&mut process, "prometheus", &format!("{url}/-/ready")).await?;
        Ok(Self {
            process,
            url,
            rules_dir,
        })
    }

    /// Reloads the configuration and rule files.
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

/// A synthetic exporter: `http_requests_total{code="200"|"500"}` counters that grow at fixed
/// rates from the moment it starts, so that any window's error ratio is known by hand. The
/// rates can change ([`Exporter::set_rates`]); the counters stay monotonic.
#[derive(Debug)]
pub struct Exporter {
    /// `127.0.0.1:<port>`.
    pub address: String,
    counters: Arc<Mutex<Counters>>,
    task: tokio::task::JoinHandle<()>,
}

/// Totals at `since`, and the rates from then on.
#[derive(Debug)]
struct Counters {
    since: Instant,
    ok: f64,
    errors: f64,
    ok_per_second: f64,
    errors_per_second: f64,
}

impl Counters {
    fn now(&self) -> (f64, f64) {
        let elapsed = self.since.elapsed().as_secs_f64();
        (
            self.ok + self.ok_per_second * elapsed,
            self.errors + self.errors_per_second * elapsed,
        )
    }
}

impl Exporter {
    /// Serves counters growing by `ok_per_second` and `errors_per_second`.
    pub async fn start(ok_per_second: f64, errors_per_second: f64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let counters = Arc::new(Mutex::new(Counters {
            since: Instant::now(),
            ok: 0.0,
            errors: 0.0,
            ok_per_second,
            errors_per_second,
        }));
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counters = shared.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 2048];
                    let _ = stream.read(&mut buffer).await;
                    let (ok, errors) = counters.lock().unwrap_or_else(|e| e.into_inner()).now();
                    let body = format!(
                        "# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {ok}\nhttp_requests_total{{code=\"500\"}} {errors}\n",
                    );
                    let response = format!(
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(Self {
            address,
            counters,
            task,
        })
    }

    /// From now on, the counters grow by `ok_per_second` and `errors_per_second`.
    pub fn set_rates(&self, ok_per_second: f64, errors_per_second: f64) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let (ok, errors) = counters.now();
        *counters = Counters {
            since: Instant::now(),
            ok,
            errors,
            ok_per_second,
            errors_per_second,
        };
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
