//! The ACME peers on their own: bind9 taking TSIG-signed dynamic updates, and Pebble.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use vigil_e2e::dns::which;
use vigil_e2e::{DnsOptions, DnsServer, Pebble, PebbleOptions, Tsig};

const ZONE: &str = "certs.test";
const CHALLENGE: &str = "_acme-challenge.app.certs.test.";

#[tokio::test]
async fn bind9_takes_only_updates_signed_with_its_tsig_key_and_keeps_them_over_a_restart() {
    bind9_scenario().await.unwrap_or_else(|e| panic!("{e:#}"));
}

async fn bind9_scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tsig = Tsig::generate("vigil-update")?;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&tsig.secret_base64)?
            .len(),
        32
    );
    let mut dns = DnsServer::start_with(
        dir.path(),
        DnsOptions {
            zone: ZONE.into(),
            port: None,
            records: vec![("app".into(), "127.0.0.1".into())],
            tsig: Some(tsig.clone()),
        },
    )
    .await?;
    let result = bind9_checks(&mut dns, &tsig).await;
    if result.is_err() {
        eprintln!("named said:\n{}", dns.log_tail());
    }
    result
}

async fn bind9_checks(dns: &mut DnsServer, tsig: &Tsig) -> anyhow::Result<()> {
    let port = dns.port();
    assert_eq!(dig(port, "A", "app.certs.test.")?, ["127.0.0.1"]);
    assert!(dig(port, "TXT", CHALLENGE)?.is_empty());

    // Signed with the zone's key: accepted, and served at once.
    let signed = nsupdate(port, Some(&tsig.key_arg()), "signed-token")?;
    assert!(signed.status.success(), "{}", stderr(&signed));
    assert_eq!(dig(port, "TXT", CHALLENGE)?, ["\"signed-token\""]);

    // Unsigned: REFUSED by allow-update, and nothing changes.
    let unsigned = nsupdate(port, None, "unsigned-token")?;
    assert!(!unsigned.status.success());
    assert!(
        stderr(&unsigned).contains("REFUSED"),
        "{}",
        stderr(&unsigned)
    );

    // Same key name, another secret: the signature does not verify.
    let forged = Tsig {
        secret_base64: vigil_e2e::dns::generate_tsig_secret()?,
        ..tsig.clone()
    };
    let wrong = nsupdate(port, Some(&forged.key_arg()), "forged-token")?;
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("BADSIG"), "{}", stderr(&wrong));
    assert_eq!(dig(port, "TXT", CHALLENGE)?, ["\"signed-token\""]);

    // Stopped: nothing answers on the port. Restarted: same port, the update is still there
    // (replayed from the zone's journal).
    dns.stop();
    assert!(dig(port, "TXT", CHALLENGE).is_err());
    dns.restart().await?;
    assert_eq!(dns.port(), port);
    assert_eq!(dig(port, "TXT", CHALLENGE)?, ["\"signed-token\""]);
    assert_eq!(dig(port, "A", "app.certs.test.")?, ["127.0.0.1"]);

    // A deletion signed with the key works after the restart too.
    let delete = run_nsupdate(
        port,
        Some(&tsig.key_arg()),
        &format!("update delete {CHALLENGE} TXT\n"),
    )?;
    assert!(delete.status.success(), "{}", stderr(&delete));
    assert!(dig(port, "TXT", CHALLENGE)?.is_empty());
    Ok(())
}

#[tokio::test]
async fn pebble_serves_its_directory_with_ari_over_https_and_its_root() {
    pebble_scenario().await.unwrap_or_else(|e| panic!("{e:#}"));
}

async fn pebble_scenario() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dns = DnsServer::start(dir.path(), ZONE, None, &[("app", "127.0.0.1")]).await?;
    let eab_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(b"a 32-byte MAC key for vigil e2e!");
    let pebble = Pebble::start(
        dir.path(),
        PebbleOptions {
            http_port: 0,
            dns_server: dns.endpoint.clone(),
            validity_seconds: Some(3600),
            eab_keys: Some(vec![("kid-1".into(), eab_key)]),
            nonce_reject_percent: Some(0),
            authz_reuse_percent: Some(0),
            va_sleep: false,
        },
    )
    .await?;
    let result = pebble_checks(&pebble, &dns).await;
    if result.is_err() {
        eprintln!("pebble said:\n{}", pebble.log_tail());
    }
    result
}

async fn pebble_checks(pebble: &Pebble, dns: &DnsServer) -> anyhow::Result<()> {
    let url = pebble.directory_url();
    let prefix = format!("https://localhost:{}/", pebble.listen_port);
    assert_eq!(url, format!("{prefix}dir"));

    // Only with the generated CA: Pebble's listener is not trusted otherwise.
    let untrusting = vigil::tls::http_client(None, Duration::from_secs(5))?;
    assert!(untrusting.get(&url).send().await.is_err());

    let client = vigil::tls::http_client(Some(&pebble.ca_pem), Duration::from_secs(5))?;
    let response = client.get(&url).send().await?;
    assert!(response.status().is_success(), "{}", response.status());
    let directory: serde_json::Value = serde_json::from_str(&response.text().await?)?;
    for endpoint in [
        "newNonce",
        "newAccount",
        "newOrder",
        "revokeCert",
        "renewalInfo",
    ] {
        let value = directory[endpoint].as_str().unwrap_or_default();
        assert!(value.starts_with(&prefix), "{endpoint}: {directory}");
    }
    assert_eq!(directory["meta"]["externalAccountRequired"], true);
    assert_eq!(
        directory["meta"]["profiles"]["default"], "certificates valid for 3600 s",
        "{directory}"
    );

    // The issuing root, from the management interface: a CA, and not the serving CA.
    let root = pebble.roots_pem().await?;
    assert!(root.trim_start().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(root.trim(), pebble.ca_pem.trim());
    let text = openssl_x509(&root)?;
    assert!(text.contains("Pebble Root CA"), "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");

    // The options reached Pebble: environment and -dnsserver.
    let log = pebble.log_tail();
    assert!(log.contains("Disabling random VA sleeps"), "{log}");
    assert!(
        log.contains("Configured to reject 0% of good nonces"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Using custom DNS resolver for ACME challenges: {}",
            dns.endpoint
        )),
        "{log}"
    );
    Ok(())
}

/// The answers of `dig +short`; an error when the server does not answer.
fn dig(port: u16, kind: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let output = Command::new(which("dig")?)
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+tries=1",
            "+time=1",
            kind,
            name,
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "dig {kind} {name}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Adds the challenge TXT record `value` with nsupdate, signed with `key` when given.
fn nsupdate(port: u16, key: Option<&str>, value: &str) -> anyhow::Result<Output> {
    run_nsupdate(
        port,
        key,
        &format!("update add {CHALLENGE} 60 IN TXT \"{value}\"\n"),
    )
}

/// Runs `nsupdate [-y key]` with `updates` against the zone on `port`.
fn run_nsupdate(port: u16, key: Option<&str>, updates: &str) -> anyhow::Result<Output> {
    let mut command = Command::new(which("nsupdate")?);
    if let Some(key) = key {
        command.args(["-y", key]);
    }
    let mut child = command
        .args(["-t", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let script = format!("server 127.0.0.1 {port}\nzone {ZONE}.\n{updates}send\n");
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(script.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// `openssl x509 -noout -text` of a PEM certificate.
fn openssl_x509(pem: &str) -> anyhow::Result<String> {
    let mut child = Command::new(which("openssl")?)
        .args(["x509", "-noout", "-text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(pem.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(output.status.success(), "openssl: {}", stderr(&output));
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn coredns_serves_a_clusters_services_and_forwards() {
    coredns_scenario().await.unwrap_or_else(|e| panic!("{e:#}"));
}

/// What the CrossCloudDNS generator relies on: CoreDNS's `kubernetes` plugin reading a
/// cluster through a kubeconfig from outside any pod, and `forward` plugins chained with
/// `next NXDOMAIN` (a name the first upstream does not know is asked of the next one).
async fn coredns_scenario() -> anyhow::Result<()> {
    use vigil_e2e::coredns::kubernetes_block;
    use vigil_e2e::{CoreDns, TestCluster, eventually, free_port};

    let cluster = TestCluster::start("coredns").await?;
    cluster.ensure_namespace("shop").await?;
    let services: kube::Api<k8s_openapi::api::core::v1::Service> =
        kube::Api::namespaced(cluster.client(), "shop");
    let orders: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": "orders"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }))?;
    let orders = services
        .create(&kube::api::PostParams::default(), &orders)
        .await?;
    let cluster_ip = orders
        .spec
        .and_then(|spec| spec.cluster_ip)
        .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .ok_or_else(|| anyhow::anyhow!("the API server assigned no IPv4 clusterIP"))?;

    // The cluster's own DNS: cluster.local from the kubernetes plugin, nothing else.
    let dir = cluster.dir().join("dns");
    let cluster_port = free_port()?;
    let mut in_cluster = CoreDns::start(
        &dir,
        "cluster",
        &format!(
            "cluster.local:{cluster_port} {{\n    bind 127.0.0.1\n    log\n    errors\n{}}}\n",
            kubernetes_block("cluster.local", cluster.kubeconfig())
        ),
        cluster_port,
    )
    .await?;
    assert_eq!(in_cluster.endpoint, format!("127.0.0.1:{cluster_port}"));
    let orders_name = "orders.shop.svc.cluster.local.";
    let payments_name = "payments.shop.svc.cluster.local.";
    let expected_orders = vec![cluster_ip.clone()];
    eventually(
        "orders resolves from the cluster",
        Duration::from_secs(20),
        || {
            let answers = dig(cluster_port, "A", orders_name);
            let expected = &expected_orders;
            async move { Ok((&answers? == expected).then_some(())) }
        },
    )
    .await?;
    assert_eq!(dig_status(cluster_port, "A", payments_name)?, "NXDOMAIN");
    assert_eq!(
        soa_in_authority(cluster_port, payments_name)?.as_deref(),
        Some("ns.dns.cluster.local.")
    );
    // Outside its zone the server block does not answer.
    assert_eq!(dig_status(cluster_port, "A", "example.com.")?, "REFUSED");

    // Another cloud's records, in the same zone, on bind9.
    let peer = DnsServer::start(
        &dir,
        "cluster.local",
        None,
        &[("payments.shop.svc", "10.96.7.7")],
    )
    .await?;

    // The chain: the cluster first; on NXDOMAIN, the peer.
    let chain_port = free_port()?;
    let chain = CoreDns::start(
        &dir,
        "chain",
        &format!(
            ".:{chain_port} {{\n    bind 127.0.0.1\n    log\n    errors\n    forward . {} {{\n        next NXDOMAIN\n    }}\n    forward . {}\n}}\n",
            in_cluster.endpoint, peer.endpoint
        ),
        chain_port,
    )
    .await?;
    assert_eq!(dig(chain_port, "A", orders_name)?, [cluster_ip.as_str()]);
    // The cluster is asked first (its `log` shows one more NXDOMAIN for payments), then
    // the peer, which answers.
    let nxdomains = |log: &str| {
        log.lines()
            .filter(|line| line.contains(payments_name) && line.contains("NXDOMAIN"))
            .count()
    };
    let before = nxdomains(&in_cluster.log());
    assert_eq!(dig(chain_port, "A", payments_name)?, ["10.96.7.7"]);
    eventually(
        "the cluster's CoreDNS logs the forwarded payments query",
        Duration::from_secs(5),
        || {
            let seen = nxdomains(&in_cluster.log()) > before;
            async move { Ok(seen.then_some(())) }
        },
    )
    .await?;
    // Unknown to both: the answer is the last upstream's NXDOMAIN, with bind9's SOA
    // (the kubernetes plugin's is `ns.dns.cluster.local.`).
    let missing = "missing.shop.svc.cluster.local.";
    assert_eq!(dig_status(chain_port, "A", missing)?, "NXDOMAIN");
    assert_eq!(
        soa_in_authority(chain_port, missing)?.as_deref(),
        Some("ns.cluster.local.")
    );

    // Stopped, nothing answers on its port; restarted, it serves the same Corefile there.
    in_cluster.stop();
    assert!(dig(cluster_port, "A", orders_name).is_err());
    in_cluster.restart().await?;
    assert_eq!(in_cluster.port(), cluster_port);
    eventually(
        "orders resolves after the restart",
        Duration::from_secs(20),
        || {
            let answers = dig(cluster_port, "A", orders_name);
            let expected = &expected_orders;
            async move { Ok((&answers? == expected).then_some(())) }
        },
    )
    .await?;
    let log = chain.log();
    assert!(log.contains("CoreDNS-1.15.0"), "{log}");
    Ok(())
}

/// The response code (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...) of a query; an error when the
/// server does not answer.
fn dig_status(port: u16, kind: &str, name: &str) -> anyhow::Result<String> {
    let output = Command::new(which("dig")?)
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tries=1",
            "+time=1",
            kind,
            name,
        ])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "dig {kind} {name}: {stdout}{}",
        stderr(&output)
    );
    stdout
        .split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("dig {kind} {name}: no status in {stdout}"))
}

/// The primary name server (MNAME) of the SOA record in the authority section of the
/// answer to `name` A, which tells which server produced a negative answer.
fn soa_in_authority(port: u16, name: &str) -> anyhow::Result<Option<String>> {
    let output = Command::new(which("dig")?)
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+tries=1",
            "+time=1",
            "+noall",
            "+authority",
            "A",
            name,
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "dig A {name}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let mut fields = line.split_whitespace().skip_while(|field| *field != "SOA");
            fields.next()?;
            fields.next().map(str::to_owned)
        }))
}
