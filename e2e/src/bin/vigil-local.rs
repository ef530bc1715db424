//! `vigil-local`: the local fleet of `make demo`. Starts three control planes named `aws`,
//! `aliyun` and `vmware`, each with kwok nodes and a bind9 DNS server on a fixed loopback
//! port, a Prometheus on 127.0.0.1:19090 scraping a `checkout` service that fails 0.05% of
//! its requests (rule files go in `<DIR>/prometheus/rules`), writes the kubeconfigs into
//! the folder, and runs until SIGTERM or Ctrl-C.
//!
//! ```text
//! vigil-local <DIR>
//! ```

use std::path::PathBuf;

use vigil_e2e::{DnsServer, Exporter, Prometheus, TestCluster};

/// The clusters of the demo fleet: name, cluster domain, DNS port (as in examples/fleet).
const FLEET: [(&str, &str, u16); 3] = [
    ("aws", "cluster.local", 15353),
    ("aliyun", "cluster.local", 15354),
    ("vmware", "onprem.local", 15355),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| ".demo".to_owned()),
    );
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let (aws, aliyun, vmware) = tokio::join!(
        TestCluster::start("aws"),
        TestCluster::start("aliyun"),
        TestCluster::start("vmware")
    );
    let clusters = [aws?, aliyun?, vmware?];
    let mut servers = Vec::new();
    for (cluster, (name, domain, port)) in clusters.iter().zip(FLEET) {
        std::fs::copy(cluster.kubeconfig(), dir.join(format!("{name}.kubeconfig")))?;
        servers.push(DnsServer::start(cluster.dir(), domain, Some(port), &[]).await?);
        println!(
            "{name}: API server {} (logs in {}), DNS 127.0.0.1:{port}",
            cluster.server(),
            cluster.dir().display()
        );
    }
    let exporter = Exporter::start(999.5, 0.5).await?;
    let prometheus = Prometheus::start_on(&dir, "checkout", &exporter.address, 19090).await?;
    println!(
        "prometheus: {} scraping checkout at {} (rules in {})",
        prometheus.url,
        exporter.address,
        prometheus.rules_dir.display()
    );
    std::fs::write(dir.join("ready"), "")?;
    println!("fleet ready; stop with SIGTERM or Ctrl-C");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("stopping the fleet");
    drop(prometheus);
    drop(exporter);
    drop(servers);
    drop(clusters);
    let _ = std::fs::remove_file(dir.join("ready"));
    Ok(())
}
