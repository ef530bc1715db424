//! `vigil-local`: the local fleet of `make demo`. Starts three control planes named `aws`,
//! `aliyun` and `vmware`, each with kwok nodes (and `aws` with a real node, tainted so that
//! only pods tolerating it run there: the operator's; the image archives given are imported
//! into it) and a CoreDNS on a fixed loopback port (its
//! cluster's domain through the `kubernetes` plugin, plus every `*.server` key of the
//! cluster's `kube-system/coredns-custom`, projected as the kubelet would, so that a
//! `CrossCloudDNS` works as in a real fleet), a Prometheus on 127.0.0.1:19090 scraping a `checkout` service that fails 0.05% of
//! its requests (rule files go in `<DIR>/prometheus/rules`), an ACME server (Pebble, its
//! HTTP-01 validations sent to port 15002 of the address bind9 gives the name: the demo
//! adds the operator pod's) with a bind9 for `demo.test` on port 15356 that takes
//! TSIG-signed updates, writes the kubeconfigs and the ACME
//! settings (`pebble-directory`, `pebble-ca.pem`, `tsig-secret`) into the folder, plays the
//! kubelet of `TelemetryPipeline` validation pods in every cluster (the real Collector built
//! by `make tools` runs `validate` on each, see `vigil_e2e::otelcol::ValidationKubelet`), and
//! runs until SIGTERM or Ctrl-C.
//!
//! Everything is reached at [`HOST_ADDRESS`] (`198.18.0.1:<port>`), from pods and from this
//! machine alike ([`HostAddressOnHost`]): the kubeconfigs, the DNS endpoints of
//! examples/fleet and the ACME directory name it, so the operator in its pod and `kubectl`
//! on the host use the same files.
//!
//! ```text
//! vigil-local <DIR> [IMAGE.tar...]
//! ```

use std::path::PathBuf;

use vigil_e2e::coredns::{self, CoreDns};
use vigil_e2e::dns::{DnsOptions, Tsig};
use vigil_e2e::node::HOST_ADDRESS;
use vigil_e2e::otelcol::ValidationKubelet;
use vigil_e2e::pebble::{Pebble, PebbleOptions};
use vigil_e2e::{DnsServer, Exporter, HostAddressOnHost, Nodes, Prometheus, TestCluster};

/// Where Pebble sends HTTP-01 validations: the chart's `acme.http01Port` in the demo.
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
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| ".demo".to_owned()));
    let images: Vec<PathBuf> = args.map(PathBuf::from).collect();
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(dir.join("ready"));
    let mut host_address = HostAddressOnHost::claim()?;
    let (aws, aliyun, vmware) = tokio::join!(
        TestCluster::start_with_nodes("aws", Nodes::RealForTolerating),
        TestCluster::start("aliyun"),
        TestCluster::start("vmware")
    );
    let clusters = [aws?, aliyun?, vmware?];
    if let Some(node) = clusters[0].node() {
        for image in &images {
            node.import_image(image)?;
            println!(
                "aws: image {} imported into node {}",
                image.display(),
                node.name
            );
        }
    }
    let mut servers = Vec::new();
    let mut projections = Vec::new();
    for (cluster, (name, domain, port)) in clusters.iter().zip(FLEET) {
        let kubeconfig = std::fs::read_to_string(cluster.kubeconfig())?
            .replace("https://127.0.0.1:", &format!("https://{HOST_ADDRESS}:"));
        std::fs::write(dir.join(format!("{name}.kubeconfig")), kubeconfig)?;
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
            "{name}: API server {} (logs in {}), DNS {HOST_ADDRESS}:{port}",
            cluster.server().replace("127.0.0.1", HOST_ADDRESS),
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
    std::fs::write(
        dir.join("pebble-directory"),
        pebble.directory_url().replace("localhost", HOST_ADDRESS),
    )?;
    std::fs::write(dir.join("pebble-ca.pem"), &pebble.ca_pem)?;
    std::fs::write(dir.join("tsig-secret"), &tsig.secret_base64)?;
    println!(
        "acme: Pebble at {} (HTTP-01 to port {ACME_HTTP01_PORT}), bind9 for demo.test at {} (TSIG key {})",
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
    host_address.release();
    let _ = std::fs::remove_file(dir.join("ready"));
    Ok(())
}
