//! Certificates consumed by real pods: Vigil issues a certificate from Pebble (HTTP-01),
//! copies it to a member cluster, and in both clusters a pod on a real node mounts the
//! `kubernetes.io/tls` Secret and serves HTTPS with it (the Go test program of
//! e2e/tools/crashers/, reading the files at each handshake). The certificates live 90 s:
//! after the renewal, both pods serve the new one once the kubelet has refreshed the
//! volume.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use vigil::api::AcmeCertificate;
use vigil_e2e::{
    DnsOptions, DnsServer, Operator, Pebble, PebbleOptions, TestCluster, eventually, free_port,
    repo,
};

const NS: &str = "vigil-system";
const APPS: &str = "apps";

async fn apply(client: &Client, value: serde_json::Value) -> anyhow::Result<()> {
    let params = PatchParams::apply("vigil-e2e").force();
    let name = value["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = value["metadata"]["namespace"].as_str();
    let kind = value["kind"].as_str().unwrap_or_default();
    let (group, version) = match value["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .split_once('/')
    {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (
            String::new(),
            value["apiVersion"].as_str().unwrap_or_default().to_owned(),
        ),
    };
    let gvk = kube::api::GroupVersionKind::gvk(&group, &version, kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await?;
    let api: Api<kube::api::DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &params, &Patch::Apply(&value)).await?;
    Ok(())
}

/// The HTTPS server, on the cluster's real node, with the Secret mounted at /tls.
fn server() -> serde_json::Value {
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": APPS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532},
                    "containers": [{"name": "app", "image": "vigil.test/crashers:1",
                        "imagePullPolicy": "Never", "command": ["/crasher", "https"],
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}]}],
                    "volumes": [{"name": "tls", "secret": {"secretName": "web-tls"}}]}}}})
}

/// The IP of the ready `web` pod.
async fn server_ip(cluster: &TestCluster) -> anyhow::Result<String> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), APPS);
    eventually("the HTTPS pod ready", Duration::from_secs(90), || {
        let pods = pods.clone();
        async move {
            Ok(pods
                .list(&ListParams::default().labels("app=web"))
                .await?
                .items
                .into_iter()
                .find(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| c.iter().all(|c| c.ready))
                })
                .and_then(|p| p.status.and_then(|s| s.pod_ip)))
        }
    })
    .await
}

/// The certificate the server at `ip:8443` presents, PEM, as a TLS client reads it.
fn served(ip: &str) -> anyhow::Result<String> {
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import ssl, sys; print(ssl.get_server_certificate((sys.argv[1], 8443), timeout=5), end='')",
            ip,
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "TLS to {ip}:8443: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The leaf certificate of a Secret's `tls.crt`, PEM.
async fn leaf(cluster: &TestCluster) -> anyhow::Result<String> {
    let secret = Api::<Secret>::namespaced(cluster.client(), APPS)
        .get("web-tls")
        .await?;
    let chain = secret
        .data
        .and_then(|d| d.get("tls.crt").cloned())
        .ok_or_else(|| anyhow::anyhow!("no tls.crt"))?;
    let chain = String::from_utf8(chain.0)?;
    let end = chain
        .find("-----END CERTIFICATE-----")
        .ok_or_else(|| anyhow::anyhow!("no certificate in tls.crt"))?;
    Ok(chain[..end + "-----END CERTIFICATE-----".len()].to_owned() + "\n")
}

/// Waits until the pod of `cluster` serves the leaf its Secret holds, different from `not`.
async fn serves_secret(
    cluster: &TestCluster,
    ip: &str,
    not: Option<&str>,
) -> anyhow::Result<String> {
    eventually(
        &format!("{} serving the certificate of its Secret", cluster.name),
        Duration::from_secs(120),
        || async {
            let want = leaf(cluster).await?;
            if not.is_some_and(|n| n == want) {
                return Ok(None);
            }
            Ok(served(ip).ok().filter(|got| *got == want))
        },
    )
    .await
}

#[tokio::test]
async fn issued_certificates_are_served_by_real_pods_in_both_clusters_and_renewed() {
    let (hub, member) = tokio::join!(
        TestCluster::start_with_node("tlshub"),
        TestCluster::start_with_node("tlsmember")
    );
    let (mut hub, mut member) = (hub.expect("hub"), member.expect("member"));
    let result = scenario(&hub, &member).await;
    if result.is_err() {
        hub.print_logs();
        member.print_logs();
    }
    result.unwrap_or_else(|e| panic!("{e:#}"));
    for cluster in [&mut hub, &mut member] {
        let left = cluster.stop_node();
        assert!(left.is_empty(), "the node left {left:?}");
    }
}

async fn scenario(hub: &TestCluster, member: &TestCluster) -> anyhow::Result<()> {
    let client = hub.client();
    hub.install_crds().await?;
    hub.ensure_namespace(NS).await?;
    for cluster in [hub, member] {
        cluster.ensure_namespace(APPS).await?;
        let node = cluster.node().expect("a real node");
        node.import_image(&repo().join(".tools/images/crashers.tar"))?;
    }
    let dns = DnsServer::start_with(
        hub.dir(),
        DnsOptions {
            zone: "certs.test".to_owned(),
            port: None,
            records: vec![("web".to_owned(), "127.0.0.1".to_owned())],
            tsig: None,
        },
    )
    .await?;
    let http_port = free_port()?;
    let pebble = Pebble::start(
        hub.dir(),
        PebbleOptions {
            http_port,
            dns_server: dns.endpoint.clone(),
            validity_seconds: Some(90),
            ..PebbleOptions::default()
        },
    )
    .await?;
    let operator = Operator::start(
        hub.kubeconfig(),
        hub.dir(),
        "vigil-tls",
        &[&format!("--acme-http01-addr=127.0.0.1:{http_port}")],
    )?;
    apply(
        &client,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "member-kubeconfig", "namespace": NS},
            "stringData": {"kubeconfig": member.admin_kubeconfig_yaml()?}}),
    )
    .await?;
    apply(&client, serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
        "metadata": {"name": "member"},
        "spec": {"provider": "aws", "region": "r1", "probeInterval": "5s",
            "apiServer": {"kubeconfigSecretRef": {"namespace": NS, "name": "member-kubeconfig", "key": "kubeconfig"}},
            "dns": {"endpoints": []}}})).await?;
    apply(
        &client,
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer",
        "metadata": {"name": "pebble"},
        "spec": {"server": pebble.directory_url(), "caBundle": pebble.ca_pem,
            "privateKeySecretRef": {"name": "pebble-account"}, "solvers": [{"http01": {}}]}}),
    )
    .await?;
    apply(
        &client,
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
        "metadata": {"name": "web", "namespace": APPS},
        "spec": {"issuerRef": {"name": "pebble"}, "dnsNames": ["web.certs.test"],
            "secretName": "web-tls", "distribute": {"clusters": ["member"]}}}),
    )
    .await?;
    let certificates: Api<AcmeCertificate> = Api::namespaced(client.clone(), APPS);
    let revision = |at_least: i64| {
        let certificates = certificates.clone();
        async move {
            eventually(
                &format!("certificate revision {at_least} copied"),
                Duration::from_secs(150),
                || async {
                    let status = certificates.get("web").await?.status.unwrap_or_default();
                    let copied = status
                        .distribution
                        .iter()
                        .any(|c| c.cluster == "member" && c.revision >= Some(at_least));
                    Ok((status.revision >= Some(at_least) && copied).then_some(()))
                },
            )
            .await
        }
    };
    revision(1)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", operator.log()))?;
    // The one docs/certificates.md shows.
    if let Some(status) = certificates.get("web").await?.status {
        eprintln!(
            "the issued certificate's status: {}",
            serde_json::to_string_pretty(&status)?
        );
    }

    // The Secret, mounted: each pod serves the certificate Vigil issued or copied.
    for cluster in [hub, member] {
        apply(&cluster.client(), server()).await?;
    }
    let hub_ip = server_ip(hub).await?;
    let member_ip = server_ip(member).await?;
    let first = serves_secret(hub, &hub_ip, None).await?;
    let first_member = serves_secret(member, &member_ip, None).await?;
    assert_eq!(first, first_member, "the member cluster serves the copy");

    // Renewed (at two thirds of 90 s): the Secrets change, and the pods serve the new
    // certificate after the kubelet's refresh of the volume.
    let waiting = Instant::now();
    revision(2).await?;
    let renewed_at = waiting.elapsed();
    let second = serves_secret(hub, &hub_ip, Some(&first)).await?;
    let hub_served = waiting.elapsed();
    let second_member = serves_secret(member, &member_ip, Some(&first)).await?;
    assert_ne!(second, first);
    assert_eq!(
        second, second_member,
        "the member cluster serves the renewed copy"
    );
    eprintln!(
        "renewed {:.0}s into the wait; served by the hub's pod {:.0}s after, by the member's {:.0}s after",
        renewed_at.as_secs_f64(),
        (hub_served - renewed_at).as_secs_f64(),
        (waiting.elapsed() - renewed_at).as_secs_f64()
    );
    Ok(())
}
