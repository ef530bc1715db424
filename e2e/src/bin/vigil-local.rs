//! `vigil-local`: the local fleet of `make demo`. Starts three control planes named `aws`,
//! `aliyun` and `vmware`, each with kwok nodes and a CoreDNS on a fixed loopback port (its
//! cluster's domain through the `kubernetes` plugin, plus every `*.server` key of the
//! cluster's `kube-system/coredns-custom`, projected as the kubelet would, so that a
//! `CrossCloudDNS` works as in a real fleet), a Prometheus on 127.0.0.1:19090 scraping a `checkout` service that fails 0.05% of
//! its requests (rule files go in `<DIR>/prometheus/rules`), an ACME server (Pebble, its
//! HTTP-01 validations sent to 127.0.0.1:15002) with a bind9 for `demo.test` on
//! 127.0.0.1:15356 that takes TSIG-signed updates, writes the kubeconfigs and the ACME
//! settings (`pebble-directory`, `pebble-ca.pem`, `tsig-secret`) into the folder, plays the
//! kubelet of `TelemetryPipeline` validation pods in every cluster (the real Collector built
//! by `make tools` runs `validate` on each, see `vigil_e2e::otelcol::ValidationKubelet`), and
//! runs until SIGTERM or Ctrl-C.
//!
//! ```text
//! vigil-local <DIR>
//! ```

use std::path::PathBuf;

use vigil_e2e::coredns::{self, CoreDns};
use vigil_e2e::dns::{DnsOptions, Tsig};
use vigil_e2e::otelcol::ValidationKubelet;
use vigil_e2e::pebble::{Pebble, PebbleOptions};
use vigil_e2e::{DnsServer, Exporter, Prometheus, TestCluster};

/// Where Pebble sends HTTP-01 validations: the operator's `--acme-http01-addr` in the demo.
const ACME_HTTP01_PORT: u16 = 15002;
/// The demo's authoritative DNS for `demo.test`, updated over RFC 2136.
const ACME_DNS_PORT: u16 = 15356;

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
    let mut projections = Vec::new();
    for (cluster, (name, domain, port)) in clusters.iter().zip(FLEET) {
        std::fs::copy(cluster.kubeconfig(), dir.join(format!("{name}.kubeconfig")))?;
        let custom = cluster.dir().join("coredns-custom");
        std::fs::create_dir_all(&custom)?;
        // `import` needs a file to match before the first key arrives.
        std::fs::write(custom.join("placeholder.server"), "# nothing yet\n")?;
        let corefile = format!(
            "{domain}:{port} {{\n    errors\n    reload 2s 1s\n{kubernetes}}}\n\nimport {custom}/*.server\n",
            kubernetes = coredns::kubernetes_block(domain, cluster.kubeconfig()),
            custom = custom.display(),
        );
        servers.push(CoreDns::start(cluster.dir(), name, &corefile, port).await?);
        projections.push(coredns::project_config_map(
            cluster,
            "kube-system",
            "coredns-custom",
            custom,
            &["placeholder.server"],
        ));
        println!(
            "{name}: API server {} (logs in {}), DNS 127.0.0.1:{port}",
            cluster.server(),
            cluster.dir().display()
        );
    }
    let validations = dir.join("otelcol");
    std::fs::create_dir_all(&validations)?;
    let kubelets: Vec<ValidationKubelet> = clusters
        .iter()
        .map(|cluster| ValidationKubelet::start(cluster.client(), &validations))
        .collect();
    println!(
        "otelcol: Collector validation pods of every cluster run by otelcol-vigil (files in {})",
        validations.display()
    );
    let exporter = Exporter::start(999.5, 0.5).await?;
    let prometheus = Prometheus::start_on(&dir, "checkout", &exporter.address, 19090).await?;
    println!(
        "prometheus: {} scraping checkout at {} (rules in {})",
        prometheus.url,
        exporter.address,
        prometheus.rules_dir.display()
    );
    let tsig = Tsig::generate("vigil-demo")?;
    let acme_dns = DnsServer::start_with(
        &dir,
        DnsOptions {
            zone: "demo.test".to_owned(),
            port: Some(ACME_DNS_PORT),
            records: vec![("*".to_owned(), "127.0.0.1".to_owned())],
            tsig: Some(tsig.clone()),
        },
    )
    .await?;
    let pebble = Pebble::start(
        &dir,
        PebbleOptions {
            http_port: ACME_HTTP01_PORT,
            dns_server: acme_dns.endpoint.clone(),
            validity_seconds: Some(3600),
            ..PebbleOptions::default()
        },
    )
    .await?;
    std::fs::write(dir.join("pebble-directory"), pebble.directory_url())?;
    std::fs::write(dir.join("pebble-ca.pem"), &pebble.ca_pem)?;
    std::fs::write(dir.join("tsig-secret"), &tsig.secret_base64)?;
    println!(
        "acme: Pebble at {} (HTTP-01 to 127.0.0.1:{ACME_HTTP01_PORT}), bind9 for demo.test at {} (TSIG key {})",
        pebble.directory_url(),
        acme_dns.endpoint,
        tsig.name
    );
    std::fs::write(dir.join("ready"), "")?;
    println!("fleet ready; stop with SIGTERM or Ctrl-C");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    println!("stopping the fleet");
    drop(pebble);
    drop(acme_dns);
    drop(prometheus);
    drop(exporter);
    drop(kubelets);
    for projection in projections {
        projection.abort();
    }
    drop(servers);
    drop(clusters);
    let _ = std::fs::remove_file(dir.join("ready"));
    Ok(())
}
