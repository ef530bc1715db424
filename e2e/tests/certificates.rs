//! AcmeIssuer and AcmeCertificate against a real ACME server (Pebble) and a real DNS server
//! (bind9 with a TSIG key): HTTP-01 and DNS-01 issuance, renewal of short-lived
//! certificates, key rotation, a failing solver that backs off and recovers without
//! touching the working Secret, and distribution to two member clusters, one of them down
//! for a while.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use vigil::acme::cert::verify_chain;
use vigil::api::{AcmeCertificate, AcmeIssuer};
use vigil_e2e::dns::{DnsOptions, Tsig};
use vigil_e2e::operator::vigil_cli;
use vigil_e2e::pebble::{Pebble, PebbleOptions};
use vigil_e2e::{DnsServer, Operator, TestCluster, eventually, free_port};

const NS: &str = "vigil-system";
const ZONE: &str = "certs.test";

async fn apply(client: &Client, object: serde_json::Value) -> anyhow::Result<()> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let kind = object["kind"].as_str().unwrap_or_default().to_owned();
    let params = PatchParams::apply("vigil-e2e").force();
    match kind.as_str() {
        "AcmeIssuer" => {
            Api::<AcmeIssuer>::all(client.clone())
                .patch(&name, &params, &Patch::Apply(&object))
                .await?;
        }
        "AcmeCertificate" => {
            Api::<AcmeCertificate>::namespaced(client.clone(), &namespace.unwrap_or_default())
                .patch(&name, &params, &Patch::Apply(&object))
                .await?;
        }
        "Secret" => {
            Api::<Secret>::namespaced(client.clone(), &namespace.unwrap_or_default())
                .patch(&name, &params, &Patch::Apply(&object))
                .await?;
        }
        "MemberCluster" => {
            Api::<vigil::api::MemberCluster>::all(client.clone())
                .patch(&name, &params, &Patch::Apply(&object))
                .await?;
        }
        other => anyhow::bail!("cannot apply {other}"),
    }
    Ok(())
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until the certificate's status satisfies `check`.
async fn wait_certificate(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&AcmeCertificate) -> bool,
) -> anyhow::Result<AcmeCertificate> {
    let api: Api<AcmeCertificate> = Api::namespaced(client.clone(), namespace);
    let waited = eventually(&format!("AcmeCertificate {name}: {what}"), within, || {
        let api = api.clone();
        let check = &check;
        async move {
            let cert = api.get(name).await?;
            Ok(check(&cert).then_some(cert))
        }
    })
    .await;
    match waited {
        Ok(cert) => Ok(cert),
        // Say what the object looked like, so that a failure explains itself.
        Err(error) => {
            let last = api.get(name).await.ok().and_then(|c| c.status);
            Err(error.context(format!("last status of {name}: {last:#?}")))
        }
    }
}

fn ready(cert: &AcmeCertificate) -> bool {
    cert.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn revision(cert: &AcmeCertificate) -> i64 {
    cert.status.as_ref().and_then(|s| s.revision).unwrap_or(0)
}

fn text(secret: &Secret, key: &str) -> String {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .unwrap_or_default()
}

/// Checks that the Secret holds a chain Pebble signed for `names` with the key next to it.
fn check_secret(secret: &Secret, names: &[&str], roots_pem: &str) -> anyhow::Result<i64> {
    anyhow::ensure!(
        secret.type_.as_deref() == Some("kubernetes.io/tls"),
        "type {:?}",
        secret.type_
    );
    let key = rcgen::KeyPair::from_pem(&text(secret, "tls.key"))?;
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    // The chain, completed with Pebble's root, must verify link by link.
    let chain = format!("{}{}", text(secret, "tls.crt"), roots_pem);
    verify_chain(
        &chain,
        &names,
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    )?;
    let revision = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("vigil.io/certificate-revision"))
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no revision annotation"))?;
    anyhow::ensure!(
        secret
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("vigil.io/issued-at")),
        "no issued-at annotation"
    );
    Ok(revision)
}

async fn kubeconfig_secret(client: &Client, name: &str, kubeconfig: &str) -> anyhow::Result<()> {
    apply(
        client,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "stringData": {"kubeconfig": kubeconfig},
        }),
    )
    .await
}

async fn copy_revision(cluster: &TestCluster, namespace: &str, name: &str) -> Option<i64> {
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), namespace);
    let secret = secrets.get_opt(name).await.ok()??;
    secret
        .metadata
        .annotations?
        .get("vigil.io/certificate-revision")?
        .parse()
        .ok()
}

async fn issuance_scenario(
    hub: &TestCluster,
    aws: &mut TestCluster,
    vmware: &TestCluster,
) -> anyhow::Result<()> {
    let client = hub.client();
    hub.install_crds().await?;
    hub.ensure_namespace(NS).await?;
    for member in [&*aws, vmware] {
        member.ensure_namespace("apps").await?;
    }
    let tsig = Tsig::generate("vigil-acme")?;
    let mut dns = DnsServer::start_with(
        hub.dir(),
        DnsOptions {
            zone: ZONE.to_owned(),
            port: None,
            records: vec![
                ("web".to_owned(), "127.0.0.1".to_owned()),
                ("api".to_owned(), "127.0.0.1".to_owned()),
            ],
            tsig: Some(tsig.clone()),
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
            eab_keys: None,
            nonce_reject_percent: None,
            // Every renewal proves its names again, so that a stopped bind9 fails it.
            authz_reuse_percent: Some(0),
            va_sleep: false,
        },
    )
    .await?;
    let roots = pebble.roots_pem().await?;
    let ns = hub.namespace("certs").await?;
    let ns = ns.name.clone();

    apply(
        &client,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "tsig", "namespace": NS},
            "stringData": {"secret": tsig.secret_base64},
        }),
    )
    .await?;
    kubeconfig_secret(&client, "aws-kubeconfig", &aws.admin_kubeconfig_yaml()?).await?;
    kubeconfig_secret(
        &client,
        "vmware-kubeconfig",
        &vmware.admin_kubeconfig_yaml()?,
    )
    .await?;
    for name in ["aws", "vmware"] {
        apply(&client, serde_json::json!({
            "apiVersion": "vigil.io/v1alpha1", "kind": "MemberCluster",
            "metadata": {"name": name},
            "spec": {"provider": name, "region": "r1", "probeInterval": "5s",
                "apiServer": {"kubeconfigSecretRef": {"namespace": NS, "name": format!("{name}-kubeconfig"), "key": "kubeconfig"}},
                "dns": {"endpoints": []}},
        })).await?;
    }
    apply(
        &client,
        serde_json::json!({
            "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer",
            "metadata": {"name": "pebble"},
            "spec": {
                "server": pebble.directory_url(),
                "email": "platform@certs.test",
                "caBundle": pebble.ca_pem,
                "privateKeySecretRef": {"name": "pebble-account"},
                "solvers": [
                    {"selector": {"dnsNames": ["web.certs.test"]}, "http01": {}},
                    {"selector": {"dnsZones": [ZONE]}, "dns01": {"rfc2136": {
                        "nameserver": dns.endpoint, "tsigKeyName": tsig.name,
                        "tsigSecretRef": {"name": "tsig", "key": "secret"}}}},
                ],
            },
        }),
    )
    .await?;

    let mut operator = Operator::start(
        hub.kubeconfig(),
        hub.dir(),
        "vigil-acme",
        &[
            &format!("--acme-http01-addr=127.0.0.1:{http_port}"),
            "--acme-retry-initial-seconds=2",
            "--acme-retry-max-seconds=8",
        ],
    )?;
    let outcome: anyhow::Result<()> = async {
        // The account: registered, its key kept in the Secret the spec names.
        let issuers: Api<AcmeIssuer> = Api::all(client.clone());
        let issuer = eventually("AcmeIssuer pebble Ready", Duration::from_secs(60), || {
            let issuers = issuers.clone();
            async move {
                let issuer = issuers.get("pebble").await?;
                let ok = issuer
                    .status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "Ready"))
                    .is_some_and(|c| c.status == "True");
                Ok(ok.then_some(issuer))
            }
        })
        .await?;
        let account = issuer
            .status
            .and_then(|s| s.account_uri)
            .unwrap_or_default();
        assert!(account.starts_with("https://"), "account URI {account:?}");
        let key_secret = Api::<Secret>::namespaced(client.clone(), NS)
            .get("pebble-account")
            .await?;
        assert!(text(&key_secret, "tls.key").contains("BEGIN PRIVATE KEY"));

        // aws is down when the certificate is first distributed.
        aws.stop_apiserver();
        apply(
            &client,
            serde_json::json!({
                "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                "metadata": {"name": "web", "namespace": ns},
                "spec": {"issuerRef": {"name": "pebble"}, "dnsNames": ["web.certs.test"],
                    "secretName": "web-tls", "privateKey": {"rotationPolicy": "Never"}},
            }),
        )
        .await?;
        apply(
            &client,
            serde_json::json!({
                "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                "metadata": {"name": "api", "namespace": ns},
                "spec": {"issuerRef": {"name": "pebble"},
                    "dnsNames": ["api.certs.test", "*.api.certs.test"],
                    "secretName": "api-tls",
                    "privateKey": {"algorithm": "ECDSA", "size": 384},
                    "distribute": {"clusters": ["aws", "vmware"], "namespace": "apps"}},
            }),
        )
        .await?;

        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        // HTTP-01.
        wait_certificate(&client, &ns, "web", "Ready", Duration::from_secs(90), ready).await?;
        let web1 = secrets.get("web-tls").await?;
        assert_eq!(check_secret(&web1, &["web.certs.test"], &roots)?, 1);
        // DNS-01 through RFC 2136, wildcard included.
        let api1 =
            wait_certificate(&client, &ns, "api", "Ready", Duration::from_secs(90), ready).await?;
        let api_secret = secrets.get("api-tls").await?;
        assert_eq!(
            check_secret(&api_secret, &["api.certs.test", "*.api.certs.test"], &roots)?,
            1
        );
        assert!(text(&api_secret, "tls.key").len() > 100);
        let status = api1.status.clone().unwrap_or_default();
        assert!(
            status.not_after.is_some() && status.renewal_time.is_some(),
            "{status:?}"
        );
        // Every challenge record was removed again.
        let leftovers = dns_txt(&dns.endpoint, "_acme-challenge.api.certs.test").await?;
        assert!(
            leftovers.is_empty(),
            "challenge records left: {leftovers:?}"
        );

        // vmware has its copy; aws, down, has an error and does not block vmware.
        let api = wait_certificate(
            &client,
            &ns,
            "api",
            "vmware copied, aws failing",
            Duration::from_secs(60),
            |c| {
                // The certificates live 90 s: a renewal may already have happened, so the
                // copies are compared with the current revision.
                c.status.as_ref().is_some_and(|s| {
                    s.distribution.iter().any(|e| {
                        e.cluster == "vmware" && e.revision == s.revision && e.last_error.is_none()
                    }) && s
                        .distribution
                        .iter()
                        .any(|e| e.cluster == "aws" && e.last_error.is_some())
                })
            },
        )
        .await?;
        eprintln!(
            "distribution while aws is down: {:?}",
            api.status.map(|s| s.distribution)
        );
        assert!(copy_revision(vmware, "apps", "api-tls").await >= Some(1));
        aws.start_apiserver().await?;
        wait_certificate(
            &client,
            &ns,
            "api",
            "aws caught up",
            Duration::from_secs(60),
            |c| {
                c.status.as_ref().is_some_and(|s| {
                    s.distribution.iter().any(|e| {
                        e.cluster == "aws" && e.revision == s.revision && e.last_error.is_none()
                    })
                })
            },
        )
        .await?;
        assert!(copy_revision(aws, "apps", "api-tls").await >= Some(1));

        // Renewal of the 90 s certificates (two thirds of the lifetime, or Pebble's ARI window);
        // `Always` rotates the key, `Never` keeps it; the copies follow.
        wait_certificate(
            &client,
            &ns,
            "api",
            "renewed",
            Duration::from_secs(120),
            |c| revision(c) >= 2,
        )
        .await?;
        let api2 = secrets.get("api-tls").await?;
        assert!(check_secret(&api2, &["api.certs.test", "*.api.certs.test"], &roots)? >= 2);
        assert_ne!(
            text(&api2, "tls.key"),
            text(&api_secret, "tls.key"),
            "Always rotates the key"
        );
        assert_ne!(text(&api2, "tls.crt"), text(&api_secret, "tls.crt"));
        wait_certificate(
            &client,
            &ns,
            "web",
            "renewed",
            Duration::from_secs(120),
            |c| revision(c) >= 2,
        )
        .await?;
        let web2 = secrets.get("web-tls").await?;
        assert!(check_secret(&web2, &["web.certs.test"], &roots)? >= 2);
        assert_eq!(
            text(&web2, "tls.key"),
            text(&web1, "tls.key"),
            "Never keeps the key"
        );
        let api_revision = revision(
            &wait_certificate(
                &client,
                &ns,
                "api",
                "copies renewed",
                Duration::from_secs(60),
                |c| {
                    c.status.as_ref().is_some_and(|s| {
                        s.distribution
                            .iter()
                            .all(|e| e.revision == s.revision && e.last_error.is_none())
                    })
                },
            )
            .await?,
        );
        assert_eq!(
            copy_revision(vmware, "apps", "api-tls").await,
            Some(api_revision)
        );

        // A failing solver: bind9 stops; the next renewal fails, backs off, and the working
        // Secret stays exactly as it was.
        dns.stop();
        let failing = wait_certificate(
            &client,
            &ns,
            "api",
            "a failed renewal",
            Duration::from_secs(120),
            |c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.failed_issuance_attempts)
                    .unwrap_or(0)
                    >= 1
            },
        )
        .await?;
        let status = failing.status.clone().unwrap_or_default();
        let issuing = condition(&status.conditions, "Issuing").cloned();
        eprintln!("failed renewal: {issuing:?}");
        let issuing = issuing.ok_or_else(|| anyhow::anyhow!("no Issuing condition"))?;
        assert_eq!(issuing.status, "False");
        assert!(
            issuing.message.contains("issuance failed"),
            "{}",
            issuing.message
        );
        assert!(
            ready(&failing),
            "the working certificate keeps the object Ready"
        );
        assert!(status.last_failure_time.is_some());
        // `vigil status` tells the on-call engineer: the renewal fails and is retried (the
        // test's certificates live minutes, so the row is also `Expiring`).
        let (code, table, err) = vigil_cli(hub.kubeconfig(), "status", &["-n", &ns])?;
        assert_eq!(code, 0, "{err}");
        eprintln!("{table}");
        let row = table
            .lines()
            .find(|l| l.contains("acmecert/api "))
            .unwrap_or_default();
        assert!(
            row.starts_with("WARN")
                && row.contains(" failed attempt")
                && row.contains(", last at "),
            "{table}"
        );
        // An issuance that was past its DNS step when bind9 stopped may still have landed:
        // compare the Secret across the next failed attempt.
        let before = secrets.get("api-tls").await?;
        wait_certificate(
            &client,
            &ns,
            "api",
            "a second failed renewal",
            Duration::from_secs(60),
            |c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.failed_issuance_attempts)
                    .unwrap_or(0)
                    >= 2
            },
        )
        .await?;
        let after = secrets.get("api-tls").await?;
        assert_eq!(
            before.data, after.data,
            "a failed renewal leaves the Secret alone"
        );
        assert_eq!(before.metadata.annotations, after.metadata.annotations);
        dns.restart().await?;
        let recovered = wait_certificate(
            &client,
            &ns,
            "api",
            "recovered",
            Duration::from_secs(60),
            |c| {
                revision(c) > api_revision
                    && c.status
                        .as_ref()
                        .is_some_and(|s| s.failed_issuance_attempts.is_none())
            },
        )
        .await?;
        assert!(ready(&recovered));

        // A cluster removed from the list loses its copy.
        apply(
            &client,
            serde_json::json!({
                "apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
                "metadata": {"name": "api", "namespace": ns},
                "spec": {"issuerRef": {"name": "pebble"},
                    "dnsNames": ["api.certs.test", "*.api.certs.test"],
                    "secretName": "api-tls",
                    "privateKey": {"algorithm": "ECDSA", "size": 384},
                    "distribute": {"clusters": ["vmware"], "namespace": "apps"}},
            }),
        )
        .await?;
        let aws_client = aws.client();
        eventually("the aws copy removed", Duration::from_secs(60), || {
            let secrets: Api<Secret> = Api::namespaced(aws_client.clone(), "apps");
            async move { Ok(secrets.get_opt("api-tls").await?.is_none().then_some(())) }
        })
        .await?;
        assert!(copy_revision(vmware, "apps", "api-tls").await.is_some());

        operator.check_alive()?;
        assert_eq!(
            operator.metric_total("vigil_reconcile_panics_total").await,
            Some(0.0)
        );
        let issued = operator
            .metric("vigil_certificate_issuances_total{result=\"success\"}")
            .await;
        assert!(issued.is_some_and(|n| n >= 5.0), "issuances {issued:?}");
        let expiry = operator
            .metric(&format!(
                "vigil_certificate_expiration_timestamp_seconds{{namespace=\"{ns}\",name=\"api\"}}"
            ))
            .await;
        assert!(
            expiry.is_some_and(|t| t > 1.7e9),
            "expiry metric {expiry:?}"
        );
        // No secret material in the operator's log or in any Event: the TSIG secret, the
        // ACME account key, and the private keys of the issued certificates.
        let log = operator.log();
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(hub.client());
        let notes: String = events
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter_map(|e| e.note.clone())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(!notes.is_empty(), "the operator published Events");
        let issued_keys = [text(&api_secret, "tls.key"), text(&web1, "tls.key")];
        for secret in [&tsig.secret_base64, &text(&key_secret, "tls.key")]
            .into_iter()
            .chain(issued_keys.iter())
        {
            let probe: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
            let probe = &probe[..probe.len().min(40)];
            assert!(probe.len() >= 20, "a probe long enough to mean something");
            assert!(!log.contains(probe), "secret material in the log");
            assert!(!notes.contains(probe), "secret material in an Event");
        }
        Ok(())
    }
    .await;
    operator.on_failure(outcome)
}

/// The TXT values at `name` on the DNS server.
async fn dns_txt(endpoint: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let address = vigil::dns::resolve(endpoint)
        .await
        .map_err(anyhow::Error::msg)?;
    let name = hickory_name(name)?;
    vigil::dns::txt_values(address, &name)
        .await
        .map_err(anyhow::Error::msg)
}

fn hickory_name(name: &str) -> anyhow::Result<vigil::dns::Name> {
    Ok(vigil::dns::Name::from_ascii(format!("{name}."))?)
}

#[tokio::test]
async fn certificates_are_issued_renewed_and_distributed() {
    let (hub, aws, vmware) = tokio::join!(
        TestCluster::start("hub"),
        TestCluster::start("aws"),
        TestCluster::start("vmware")
    );
    let (hub, mut aws, vmware) = (
        hub.expect("hub"),
        aws.expect("aws"),
        vmware.expect("vmware"),
    );
    issuance_scenario(&hub, &mut aws, &vmware)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}

/// Waits until condition `type_` of issuer `name` has `status`; returns it.
async fn wait_issuer(
    client: &Client,
    name: &str,
    status: &str,
) -> anyhow::Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let issuers: Api<AcmeIssuer> = Api::all(client.clone());
    eventually(
        &format!("AcmeIssuer {name} Ready={status}"),
        Duration::from_secs(60),
        || {
            let issuers = issuers.clone();
            async move {
                let issuer = issuers.get(name).await?;
                Ok(issuer
                    .status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "Ready"))
                    .filter(|c| c.status == status)
                    .cloned())
            }
        },
    )
    .await
}

async fn bad_input_scenario(hub: &TestCluster) -> anyhow::Result<()> {
    let client = hub.client();
    hub.install_crds().await?;
    hub.ensure_namespace(NS).await?;
    let dns = DnsServer::start_with(
        hub.dir(),
        DnsOptions {
            zone: ZONE.to_owned(),
            port: None,
            records: vec![("web".to_owned(), "127.0.0.1".to_owned())],
            tsig: None,
        },
    )
    .await?;
    let http_port = free_port()?;
    // A CA that requires External Account Binding, as ZeroSSL and Google do.
    let hmac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(
        hub.dir(),
        PebbleOptions {
            http_port,
            dns_server: dns.endpoint.clone(),
            validity_seconds: None,
            eab_keys: Some(vec![("kid-1".to_owned(), hmac.to_owned())]),
            ..PebbleOptions::default()
        },
    )
    .await?;
    let ns = hub.namespace("badcerts").await?;
    let ns = ns.name.clone();
    apply(
        &client,
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "eab", "namespace": NS},
            "stringData": {"secret": hmac},
        }),
    )
    .await?;
    let issuer = |name: &str, server: &str, eab: bool| {
        let mut spec = serde_json::json!({
            "server": server,
            "caBundle": pebble.ca_pem,
            "privateKeySecretRef": {"name": format!("{name}-account")},
            "solvers": [{"selector": {"dnsZones": [ZONE]}, "http01": {}}],
        });
        if eab {
            spec["externalAccountBinding"] = serde_json::json!({"keyID": "kid-1", "keySecretRef": {"name": "eab", "key": "secret"}});
        }
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeIssuer",
            "metadata": {"name": name}, "spec": spec})
    };
    let closed = free_port()?;
    apply(&client, issuer("no-eab", &pebble.directory_url(), false)).await?;
    apply(&client, issuer("with-eab", &pebble.directory_url(), true)).await?;
    apply(
        &client,
        issuer("nowhere", &format!("https://127.0.0.1:{closed}/dir"), false),
    )
    .await?;
    let certificate = |name: &str, issuer: &str, names: &[&str]| {
        serde_json::json!({"apiVersion": "vigil.io/v1alpha1", "kind": "AcmeCertificate",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"issuerRef": {"name": issuer}, "dnsNames": names, "secretName": format!("{name}-tls")}})
    };
    apply(
        &client,
        certificate("good", "with-eab", &["web.certs.test"]),
    )
    .await?;
    apply(
        &client,
        certificate("orphan", "missing", &["web.certs.test"]),
    )
    .await?;
    apply(
        &client,
        certificate("unserved", "with-eab", &["web.certs.test", "www.other.org"]),
    )
    .await?;
    // The API server itself refuses what the CRD's rules forbid.
    let refused = apply(
        &client,
        certificate("shouting", "with-eab", &["WEB.certs.test"]),
    )
    .await;
    let refused = format!(
        "{:#}",
        refused
            .err()
            .ok_or_else(|| anyhow::anyhow!("an uppercase name was admitted"))?
    );
    assert!(
        refused.contains("every dnsNames entry must be a lowercase DNS name"),
        "{refused}"
    );

    let mut operator = Operator::start(
        hub.kubeconfig(),
        hub.dir(),
        "vigil-acme-bad",
        &[&format!("--acme-http01-addr=127.0.0.1:{http_port}")],
    )?;
    let outcome: anyhow::Result<()> = async {
        let no_eab = wait_issuer(&client, "no-eab", "False").await?;
        assert_eq!(
            no_eab.reason, "ExternalAccountRequired",
            "{}",
            no_eab.message
        );
        let nowhere = wait_issuer(&client, "nowhere", "False").await?;
        assert_eq!(
            nowhere.reason, "AcmeServerUnreachable",
            "{}",
            nowhere.message
        );
        assert!(
            nowhere.message.contains(&closed.to_string()) || nowhere.message.contains("refused"),
            "{}",
            nowhere.message
        );
        wait_issuer(&client, "with-eab", "True").await?;

        let failed_with = |reason: &'static str| {
            move |c: &AcmeCertificate| {
                c.status
                    .as_ref()
                    .and_then(|s| condition(&s.conditions, "Ready"))
                    .is_some_and(|c| c.status == "False" && c.reason == reason)
            }
        };
        // An issuer that does not exist (yet): GitOps may apply it later.
        let orphan = wait_certificate(
            &client,
            &ns,
            "orphan",
            "ReferenceNotFound",
            Duration::from_secs(60),
            failed_with("ReferenceNotFound"),
        )
        .await?;
        let message = orphan
            .status
            .and_then(|s| condition(&s.conditions, "Ready").map(|c| c.message.clone()))
            .unwrap_or_default();
        assert_eq!(
            message,
            "waiting for what the spec names: spec.issuerRef.name: AcmeIssuer \"missing\" does not exist"
        );
        let unserved = wait_certificate(
            &client,
            &ns,
            "unserved",
            "InvalidSpec",
            Duration::from_secs(60),
            failed_with("InvalidSpec"),
        )
        .await?;
        let message = unserved
            .status
            .and_then(|s| condition(&s.conditions, "Ready").map(|c| c.message.clone()))
            .unwrap_or_default();
        assert_eq!(
            message,
            "invalid spec: spec.dnsNames[1]: no solver of AcmeIssuer \"with-eab\" serves \"www.other.org\": no selector matches it"
        );
        // The valid certificate next to them is issued through the EAB-bound account.
        wait_certificate(
            &client,
            &ns,
            "good",
            "Ready",
            Duration::from_secs(90),
            ready,
        )
        .await?;
        // `vigil renew`: a new certificate now (this one is valid for years), the request
        // answered in status and named in the Event.
        let (code, said, err) = vigil_cli(hub.kubeconfig(), "renew", &["good", "-n", &ns])?;
        anyhow::ensure!(code == 0, "{said}{err}");
        assert!(said.contains(&format!("{ns}/good: renewal requested at ")), "{said}");
        let renewed = wait_certificate(
            &client,
            &ns,
            "good",
            "renewed on request",
            Duration::from_secs(90),
            |c| revision(c) >= 2,
        )
        .await?;
        let requested = renewed
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("vigil.io/renew-requested-at"))
            .cloned();
        assert!(requested.is_some());
        assert_eq!(renewed.status.as_ref().and_then(|s| s.renew_request.clone()), requested);
        let issuing = renewed
            .status
            .as_ref()
            .and_then(|s| condition(&s.conditions, "Issuing"))
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(issuing.contains("(vigil renew)"), "{issuing}");
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
        assert!(secrets.get_opt("orphan-tls").await?.is_none());
        assert!(secrets.get_opt("unserved-tls").await?.is_none());
        let roots = pebble.roots_pem().await?;
        check_secret(&secrets.get("good-tls").await?, &["web.certs.test"], &roots)?;
        // Events name the reasons.
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        assert!(reasons.iter().any(|r| r == "InvalidSpec"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r == "ReferenceNotFound"), "{reasons:?}");
        assert!(reasons.iter().any(|r| r == "Issued"), "{reasons:?}");
        operator.check_alive()?;
        assert_eq!(
            operator.metric_total("vigil_reconcile_panics_total").await,
            Some(0.0)
        );
        Ok(())
    }
    .await;
    operator.on_failure(outcome)
}

#[tokio::test]
async fn bad_certificate_input_is_reported_and_good_input_still_works() {
    let hub = TestCluster::start("acme-bad").await.expect("cluster");
    bad_input_scenario(&hub)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
}
