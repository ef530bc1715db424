//! The end-to-end harness: real Kubernetes control planes on loopback, and the Vigil
//! operator as a process against them.
//!
//! [`TestCluster::start`] runs etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kwok (simulated nodes and pods) from `.tools/bin` (built by
//! `make tools`), on free loopback ports with data in a temporary folder, and tears it all
//! down on drop. When a test fails, the last lines of every process's log are printed.

mod pki;
mod process;

pub mod alertmanager;
pub mod bench;
pub mod cluster;
pub mod coredns;
pub mod dns;
pub mod jaeger;
pub mod node;
pub mod operator;
pub mod otelcol;
pub mod pebble;
pub mod prometheus;
pub mod registry;
pub mod thanos;

pub use cluster::{Nodes, TempNamespace, TestCluster};
pub use coredns::CoreDns;
pub use dns::{DnsOptions, DnsServer, Tsig};
pub use node::{HostAddressOnHost, RealNode};
pub use operator::Operator;
pub use pebble::{Pebble, PebbleOptions};
pub use prometheus::{Exporter, Prometheus};
pub use registry::Registry;

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A binary built by `make tools`, or a clear error telling how to get it.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = repo().join(".tools/bin").join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: run `make tools` first",
        path.display()
    );
    Ok(path)
}

/// Polls `check` every 200 ms until it returns `Ok(Some(_))` or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(match last_error {
                Some(error) => error.context(format!("{what}: not within {timeout:?}")),
                None => anyhow::anyhow!("{what}: not within {timeout:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Ports handed out by [`free_port`]: below the kernel's ephemeral range (32768-60999 by
/// default), so that no outgoing connection of any process can take one between the moment
/// it is handed out and the moment a peer binds it (a port from `bind(0)` could be, and CI
/// saw CoreDNS fail with "address already in use"); above the fixed listener ranges the
/// CrossCloudDNS tests use (20000-22999).
const PORTS: std::ops::Range<u16> = 23_000..32_700;

/// A free port on 127.0.0.1 (TCP and UDP), never handed out twice by this process.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORTS.end - PORTS.start);
    // Each process starts at its own place in the range.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst) % span;
        let port = PORTS.start + u16::try_from(offset)?;
        let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port in {PORTS:?}")
}

/// Waits until `url` answers 200 to a GET (a peer's readiness endpoint), for up to 30 s;
/// if it never does, the error says whether `process` exited, with its log.
pub async fn wait_ready(
    process: &mut crate::process::Process,
    what: &str,
    url: &str,
) -> anyhow::Result<()> {
    let ready = eventually(
        &format!("{what} ready"),
        Duration::from_secs(30),
        || async {
            Ok(http_get(url)
                .await
                .filter(|(status, _)| *status == 200)
                .map(|_| ()))
        },
    )
    .await;
    if let Err(error) = ready {
        process.check_alive()?;
        return Err(error);
    }
    Ok(())
}

/// `GET url`, which must answer 200 with JSON.
pub async fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = http_get(url)
        .await
        .ok_or_else(|| anyhow::anyhow!("no answer from {url}"))?;
    anyhow::ensure!(status == 200, "{url}: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

/// `POST url` without a body (a peer's `/-/reload`), which must answer 200.
pub async fn post_ok(url: &str) -> anyhow::Result<()> {
    let (status, body) = http_request("POST", url)
        .await
        .ok_or_else(|| anyhow::anyhow!("no answer from {url}"))?;
    anyhow::ensure!(status == 200, "{url}: {status} {body}");
    Ok(())
}

/// GET over plain HTTP/1.0 (admin ports, Prometheus); `None` when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    http_request("GET", url).await
}

/// A request without a body over plain HTTP/1.0; `None` when nothing answers.
pub async fn http_request(method: &str, url: &str) -> Option<(u16, String)> {
    http_send(method, url, "text/plain", "").await
}

/// A request with a `content_type` body over plain HTTP/1.0; `None` when nothing answers.
pub async fn http_send(
    method: &str,
    url: &str,
    content_type: &str,
    body: &str,
) -> Option<(u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".to_owned()));
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(host))
            .await
            .ok()?
            .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .ok()?
    .ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// Waits until the pod webhook isolates the pods of Deployment `deployment` in the
/// namespace of `pods`: the API server has the webhook's configuration (it may lag behind
/// its creation by seconds on a loaded machine, and the webhook fails open) and the
/// operator knows the `SupervisedWorkload`. A server-side dry run of a pod of one of the
/// Deployment's ReplicaSets goes through admission without creating anything.
pub async fn wait_webhook_isolates(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    deployment: &str,
    image: &str,
) -> anyhow::Result<()> {
    use kube::ResourceExt as _;
    let probe: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": format!("{deployment}-probe-"),
            "labels": {"pod-template-hash": "probe"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{deployment}-probe"),
                "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": image}]}}))?;
    eventually(
        &format!("the webhook isolating pods of {deployment}"),
        Duration::from_secs(60),
        || {
            let (pods, probe) = (pods.clone(), probe.clone());
            async move {
                let params = kube::api::PostParams {
                    dry_run: true,
                    ..Default::default()
                };
                let admitted = pods.create(&params, &probe).await?;
                Ok(admitted
                    .annotations()
                    .contains_key("vigil.io/isolation")
                    .then_some(()))
            }
        },
    )
    .await
}
