//! One real Kubernetes control plane on loopback, with kwok's simulated nodes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::pki::Pki;
use crate::process::{Process, print_tails};
use crate::{eventually, free_port, tool};

/// How many simulated nodes each cluster gets.
pub const FAKE_NODES: usize = 3;

/// A running cluster. Everything stops and its data is removed on drop; if the test is
/// failing, the log tail of every process is printed first.
pub struct TestCluster {
    /// The cluster's name (`aws`, `aliyun`, `vmware`, ...).
    pub name: String,
    dir: tempfile::TempDir,
    pki: Pki,
    etcd_port: u16,
    apiserver_port: u16,
    etcd: Process,
    apiserver: Option<Process>,
    others: Vec<Process>,
    admin_kubeconfig: PathBuf,
    client: Client,
    node: Option<crate::node::RealNode>,
    /// How long `start` took.
    pub startup: Duration,
}

fn kubeconfig_yaml(name: &str, server: &str, ca_pem: &str, user: serde_json::Value) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    });
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}

/// A kubeconfig with the cluster's admin client certificate, for the API server at `server`.
fn admin_kubeconfig_for(name: &str, server: &str, pki: &Pki) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    kubeconfig_yaml(
        name,
        server,
        &pki.ca_pem,
        serde_json::json!({"client-certificate-data": b64(&pki.admin_cert_pem), "client-key-data": b64(&pki.admin_key_pem)}),
    )
}

/// Waits until the API server `client` talks to answers `/readyz` with `ok`.
async fn apiserver_ready(what: &str, client: &Client) -> anyhow::Result<()> {
    eventually(what, Duration::from_secs(90), || {
        let client = client.clone();
        async move {
            let request = http::Request::get("/readyz").body(Vec::new())?;
            Ok(client
                .request_text(request)
                .await
                .ok()
                .filter(|body| body.trim() == "ok")
                .map(drop))
        }
    })
    .await
}

/// A client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// The nodes of a [`TestCluster`]: kwok's fake nodes always (scale tests need them), and
/// one real node ([`crate::node::RealNode`]) when asked. A taint decides where pods go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    /// Fake nodes only.
    Fake,
    /// A real node for every pod: the fake nodes are tainted
    /// `kwok.x-k8s.io/node=fake:NoSchedule`, which scale tests tolerate.
    Real,
    /// A real node only for pods that tolerate its taint `vigil.io/node=real:NoSchedule`
    /// ([`crate::node::REAL_NODE_TAINT`]); every other pod goes to a fake node. The demo
    /// runs the operator for real and the examples' workloads, whose images do not exist
    /// here, on fake nodes.
    RealForTolerating,
}

impl TestCluster {
    /// Starts a whole control plane named `name` and waits until it serves and its fake
    /// nodes are Ready.
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        Self::start_with_nodes(name, Nodes::Fake).await
    }

    /// As [`TestCluster::start`], with a real node next to the fake ones
    /// ([`Nodes::Real`]).
    pub async fn start_with_node(name: &str) -> anyhow::Result<Self> {
        Self::start_with_nodes(name, Nodes::Real).await
    }

    /// Starts a control plane with the given nodes.
    pub async fn start_with_nodes(name: &str, nodes: Nodes) -> anyhow::Result<Self> {
        // A port `free_port` handed out can be taken by another process before the control
        // plane binds it (tests run side by side): start again on new ports then.
        let mut attempt = 1;
        loop {
            match Self::start_once(name, nodes).await {
                Err(error)
                    if attempt < 3 && format!("{error:#}").contains("address already in use") =>
                {
                    eprintln!(
                        "cluster {name}: a port was taken meanwhile, starting again: {error:#}"
                    );
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(name: &str, nodes: Nodes) -> anyhow::Result<Self> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix(&format!("vigil-e2e-{name}-"))
            .tempdir()?;
        let pki = Pki::generate(dir.path())?;
        let etcd_port = free_port()?;
        let etcd = start_etcd(dir.path(), etcd_port)?;
        let apiserver_port = free_port()?;
        let apiserver = start_apiserver(dir.path(), &pki, etcd_port, apiserver_port)?;
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let admin_kubeconfig = dir.path().join("admin.kubeconfig");
        std::fs::write(&admin_kubeconfig, admin_kubeconfig_for(name, &server, &pki))?;
        let client = client_for(&admin_kubeconfig).await?;
        let mut cluster = Self {
            name: name.to_owned(),
            dir,
            pki,
            etcd_port,
            apiserver_port,
            etcd,
            apiserver: Some(apiserver),
            others: Vec::new(),
            admin_kubeconfig,
            client,
            node: None,
            startup: Duration::ZERO,
        };
        cluster.wait_ready().await?;
        cluster.start_controllers()?;
        cluster.add_fake_nodes(nodes == Nodes::Real).await?;
        if nodes != Nodes::Fake {
            cluster.node = Some(
                crate::node::RealNode::start(
                    name,
                    nodes == Nodes::RealForTolerating,
                    cluster.dir.path(),
                    &cluster.admin_kubeconfig,
                    &cluster.pki.ca_cert,
                    apiserver_port,
                    &cluster.client,
                )
                .await?,
            );
        }
        cluster.startup = started.elapsed();
        eprintln!(
            "cluster {name}: control plane ready in {:.1}s at {server}",
            cluster.startup.as_secs_f64()
        );
        Ok(cluster)
    }

    /// Waits until the API server answers `/readyz`.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let result = apiserver_ready(
            &format!("{}: kube-apiserver ready", self.name),
            &self.client,
        )
        .await;
        if let Err(error) = &result {
            self.print_logs();
            if let Some(apiserver) = self.apiserver.as_mut() {
                apiserver.check_alive()?;
            }
            self.etcd.check_alive()?;
            anyhow::bail!("{error:#}");
        }
        Ok(())
    }

    fn start_controllers(&mut self) -> anyhow::Result<()> {
        let dir = self.dir.path().to_owned();
        let kubeconfig = self.admin_kubeconfig.to_string_lossy().into_owned();
        let controller_manager = Process::start(
            "kube-controller-manager",
            &tool("kube-controller-manager")?,
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", self.pki.sa_key.display()),
                format!("--root-ca-file={}", self.pki.ca_cert.display()),
                format!("--cluster-signing-cert-file={}", self.pki.ca_cert.display()),
                format!("--cluster-signing-key-file={}", self.pki.ca_key.display()),
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller".into(),
                // Default API rate limits delay the first controllers (the default
                // ServiceAccount, without which pods are refused) by seconds.
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                format!("--flex-volume-plugin-dir={}", dir.join("flexvolume").display()),
            ],
            &dir,
            &[],
        )?;
        let scheduler = Process::start(
            "kube-scheduler",
            &tool("kube-scheduler")?,
            &[
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                "--leader-elect=false".into(),
            ],
            &dir,
            &[],
        )?;
        let kwok = Process::start(
            "kwok",
            &tool("kwok")?,
            &[
                format!("--kubeconfig={kubeconfig}"),
                // kwok has no built-in stages; `make tools` assembles its default ones.
                format!(
                    "--config={}",
                    crate::repo().join(".tools/kwok/stages.yaml").display()
                ),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
                // The heartbeat stage renews node Leases; without a duration nodes turn
                // NotReady after 50 s and their pods are evicted.
                "--node-lease-duration-seconds=40".into(),
                "--cidr=10.244.0.1/16".into(),
                "--node-ip=10.96.0.2".into(),
                format!("--server-address=127.0.0.1:{}", free_port()?),
            ],
            &dir,
            &[],
        )?;
        self.others = vec![controller_manager, scheduler, kwok];
        Ok(())
    }

    async fn add_fake_nodes(&mut self, tainted: bool) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let taints = if tainted {
            serde_json::json!([{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}])
        } else {
            serde_json::json!([])
        };
        for i in 0..FAKE_NODES {
            let name = format!("{}-node-{i}", self.name);
            let node: Node = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                    },
                },
                "spec": {"taints": taints},
            }))?;
            nodes.create(&PostParams::default(), &node).await?;
        }
        let result = eventually(
            &format!("{}: {FAKE_NODES} fake nodes Ready", self.name),
            Duration::from_secs(60),
            || {
                let nodes = nodes.clone();
                async move {
                    let list = nodes.list(&Default::default()).await?;
                    let ready = list
                        .items
                        .iter()
                        .filter(|n| {
                            n.status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                })
                        })
                        .count();
                    Ok((ready == FAKE_NODES).then_some(()))
                }
            },
        )
        .await;
        if result.is_err() {
            self.print_logs();
        }
        result
    }

    /// The real node, when the cluster was started with one.
    pub fn node(&self) -> Option<&crate::node::RealNode> {
        self.node.as_ref()
    }

    /// Stops the real node and returns what it left on this machine (nothing, when the
    /// teardown is complete).
    pub fn stop_node(&mut self) -> Vec<String> {
        match self.node.take() {
            Some(mut node) => {
                node.stop();
                node.leftovers()
            }
            None => Vec::new(),
        }
    }

    /// A client with cluster-admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The API server's URL.
    pub fn server(&self) -> String {
        format!("https://127.0.0.1:{}", self.apiserver_port)
    }

    /// The cluster's temporary folder (logs, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kubeconfig (YAML text) that authenticates with a bearer token, e.g. a
    /// ServiceAccount's token from the TokenRequest API.
    pub fn token_kubeconfig(&self, token: &str) -> String {
        kubeconfig_yaml(
            &self.name,
            &self.server(),
            &self.pki.ca_pem,
            serde_json::json!({"token": token}),
        )
    }

    /// The admin kubeconfig as YAML text, e.g. for a Secret another cluster reads.
    pub fn admin_kubeconfig_yaml(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(&self.admin_kubeconfig)?)
    }

    /// The API server's audit events so far: writes to Vigil's kinds, Events and Leases,
    /// with who made them, when, and the response code.
    pub fn audit(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let text = std::fs::read_to_string(self.dir.path().join(AUDIT_LOG))?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }

    /// Starts a second API server on the same etcd and returns a client of it: writes made
    /// through it while the first is stopped are changes the first one's watchers missed.
    pub async fn second_apiserver(&mut self) -> anyhow::Result<Client> {
        let dir = self.dir.path().join("second-apiserver");
        std::fs::create_dir_all(&dir)?;
        let port = free_port()?;
        self.others
            .push(start_apiserver(&dir, &self.pki, self.etcd_port, port)?);
        let kubeconfig = dir.join("admin.kubeconfig");
        std::fs::write(
            &kubeconfig,
            admin_kubeconfig_for(&self.name, &format!("https://127.0.0.1:{port}"), &self.pki),
        )?;
        let client = client_for(&kubeconfig).await?;
        apiserver_ready("the second API server ready", &client).await?;
        Ok(client)
    }

    /// Stops the API server (SIGKILL), as a network partition or an outage would.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut apiserver) = self.apiserver.take() {
            apiserver.kill();
        }
    }

    /// Starts the API server again on the same port and waits until it is ready.
    pub async fn start_apiserver(&mut self) -> anyhow::Result<()> {
        if self.apiserver.is_none() {
            self.apiserver = Some(start_apiserver(
                self.dir.path(),
                &self.pki,
                self.etcd_port,
                self.apiserver_port,
            )?);
        }
        self.wait_ready().await
    }

    /// A fresh namespace for one test, deleted when the guard drops.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<TempNamespace> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"generateName": format!("{prefix}-")},
        }))?;
        let created = namespaces
            .create(&PostParams::default(), &namespace)
            .await?;
        let name = created.metadata.name.unwrap_or_default();
        // Pods need the namespace's default ServiceAccount, which a controller creates.
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &name);
        eventually(
            &format!("{name}: default ServiceAccount"),
            Duration::from_secs(30),
            || {
                let accounts = accounts.clone();
                async move { Ok(accounts.get_opt("default").await?.map(|_| ())) }
            },
        )
        .await?;
        Ok(TempNamespace {
            name,
            client: self.client.clone(),
        })
    }

    /// Applies every Vigil CRD (server-side) and waits until each is Established.
    pub async fn install_crds(&self) -> anyhow::Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in vigil::api::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(
                &name,
                &PatchParams::apply("vigil-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await?;
        }
        self.wait_crds_established().await
    }

    /// Waits until every Vigil CRD is Established.
    pub async fn wait_crds_established(&self) -> anyhow::Result<()> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in vigil::api::crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            eventually(
                &format!("{name} Established"),
                Duration::from_secs(30),
                || {
                    let crds = crds.clone();
                    let name = name.clone();
                    async move {
                        let Some(crd) = crds.get_opt(&name).await? else {
                            return Ok(None);
                        };
                        let established = crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                            c.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        });
                        Ok(established.then_some(()))
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Runs a program of `.tools/bin` (`kubectl`, `helm`) with this cluster's admin
    /// kubeconfig; fails with its output when it fails.
    pub fn run_tool(&self, name: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = std::process::Command::new(tool(name)?)
            .args(args)
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.path().join("helm/data"))
            .output()?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.status.success(),
            "{name} {}: {}
{stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }

    /// Creates a namespace with a fixed name (no-op when it exists).
    pub async fn ensure_namespace(&self, name: &str) -> anyhow::Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        }))?;
        namespaces
            .patch(
                name,
                &PatchParams::apply("vigil-e2e"),
                &Patch::Apply(&namespace),
            )
            .await?;
        Ok(())
    }

    /// Prints the log tail of every process.
    pub fn print_logs(&self) {
        let mut all: Vec<&Process> = vec![&self.etcd];
        all.extend(self.apiserver.as_ref());
        all.extend(self.others.iter());
        print_tails(&all, 40);
    }
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("name", &self.name)
            .field("server", &self.server())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TempNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "cluster {} is torn down after a failure; its processes said:",
                self.name
            );
            self.print_logs();
            if let Some(node) = &self.node {
                node.print_logs();
            }
        }
        // Pods outlive a stopped kubelet: the node removes them and everything it made.
        if let Some(mut node) = self.node.take() {
            node.stop();
        }
        for process in self.others.iter_mut() {
            process.kill();
        }
        if let Some(apiserver) = self.apiserver.as_mut() {
            apiserver.kill();
        }
        self.etcd.kill();
    }
}

/// A namespace deleted when dropped (best effort: the cluster may be gone already).
pub struct TempNamespace {
    /// The namespace's name.
    pub name: String,
    client: Client,
}

impl Drop for TempNamespace {
    fn drop(&mut self) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = namespaces.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

fn start_etcd(dir: &Path, port: u16) -> anyhow::Result<Process> {
    let peer = free_port()?;
    Process::start(
        "etcd",
        &tool("etcd")?,
        &[
            "--name=default".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
            "--log-level=warn".into(),
            // Test data is thrown away: no need to wait for the disk.
            "--unsafe-no-fsync".into(),
        ],
        dir,
        &[],
    )
}

/// The audit policy of every test cluster: who wrote what, for Vigil's kinds, Events and
/// Leases (the leader-election audit reads it), and every write of the chart's
/// ServiceAccount (the benchmark counts the operator's writes with it).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["system:serviceaccount:vigil-system:vigil"]
    verbs: ["create", "update", "patch", "delete"]
  - level: Metadata
    verbs: ["create", "update", "patch", "delete"]
    resources:
      - group: vigil.io
      - group: events.k8s.io
      - group: coordination.k8s.io
  - level: None
"#;

const AUDIT_LOG: &str = "audit.log";

fn start_apiserver(dir: &Path, pki: &Pki, etcd_port: u16, port: u16) -> anyhow::Result<Process> {
    let policy = dir.join("audit-policy.yaml");
    std::fs::write(&policy, AUDIT_POLICY)?;
    Process::start(
        "kube-apiserver",
        &tool("kube-apiserver")?,
        &[
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", pki.serving_cert.display()),
            format!("--tls-private-key-file={}", pki.serving_key.display()),
            format!("--client-ca-file={}", pki.ca_cert.display()),
            format!("--service-account-key-file={}", pki.sa_pub.display()),
            format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--allow-privileged=true".into(),
            "--endpoint-reconciler-type=none".into(),
            // A real node's kubelet (logs, exec): the admin certificate is its client
            // certificate, and nodes are reached at their InternalIP (no DNS here).
            format!("--kubelet-client-certificate={}", pki.admin_cert.display()),
            format!("--kubelet-client-key={}", pki.admin_key.display()),
            "--kubelet-preferred-address-types=InternalIP".into(),
            // Webhooks and aggregated APIs behind a Service are called at an endpoint's
            // address, as a cluster without kube-proxy on the control plane must.
            "--enable-aggregator-routing=true".into(),
            "--profiling=false".into(),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", dir.join(AUDIT_LOG).display()),
            "--audit-log-format=json".into(),
        ],
        dir,
        &[],
    )
}
