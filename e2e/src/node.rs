//! A real node for a [`TestCluster`](crate::TestCluster): containerd, runc and a kubelet on
//! this machine, with a bridge of its own for the pods' network. Pods run here for real:
//! their logs are what the kubelet kept, their crashes are real exits.
//!
//! The network stays on this machine. Each node claims a bridge `vigilN` with the address
//! `10.(100+N).0.1/24`, the node's InternalIP; pods get addresses in that /24 and routes to
//! it, to the service range and to [`HOST_ADDRESS`] only (no default route, no
//! masquerade). One nft table per node DNATs, for traffic coming in from the bridge:
//! - `10.0.0.1:443` (the `kubernetes` Service the kubelet points pods at) to the cluster's
//!   loopback API server;
//! - any TCP or UDP port of [`HOST_ADDRESS`] to the same port on `127.0.0.1`
//!   (`route_localnet` is set on the bridge for this): a pod of any cluster reaches the
//!   peers the tests start on loopback (Pebble, Prometheus, other clusters' API servers) at
//!   `198.18.0.1:<port>`, one address that every test certificate names.
//!
//! Pods outlive a stopped kubelet, so [`RealNode::stop`] removes, in order: the kubelet,
//! every container and task (and each pod's network namespace), containerd and its shims,
//! every mount under the node's folder, the nft table, the bridge and the cgroups.
//! [`RealNode::leftovers`] lists what is still there, for the test that checks it is nothing.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::process::Process;
use crate::{eventually, free_port, tool};

/// The sandbox image every pod starts from, built by `make tools` (e2e/tools/pause).
pub const PAUSE_IMAGE: &str = "vigil.test/pause:1";

/// The host's loopback as pods see it (from RFC 2544's benchmarking range, used nowhere
/// else): `HOST_ADDRESS:<port>` reaches `127.0.0.1:<port>`. Test certificates name it.
pub const HOST_ADDRESS: &str = "198.18.0.1";

/// The label that marks the real node: pods that must run for real select it.
pub const REAL_NODE_LABEL: (&str, &str) = ("vigil.io/node", "real");

/// The taint of a real node started for tolerating pods only
/// ([`crate::Nodes::RealForTolerating`]): key, value, effect.
pub const REAL_NODE_TAINT: (&str, &str, &str) = ("vigil.io/node", "real", "NoSchedule");

/// Port of every real node's kubelet (each on its own address).
const KUBELET_PORT: u16 = 10250;

/// Where Debian's CNI plugins are.
const CNI_BIN: &str = "/usr/lib/cni";

/// `/var/lib/kubelet` is created by every kubelet whatever its `--root-dir` (device
/// plugins): removed once the last node of this process stops, if no one had it before.
static LIVE_NODES: Mutex<(usize, Option<bool>)> = Mutex::new((0, None));
const KUBELET_DEFAULT_DIR: &str = "/var/lib/kubelet";

/// A running real node.
#[derive(Debug)]
pub struct RealNode {
    /// The Node's name.
    pub name: String,
    /// The node's InternalIP: the bridge's address, where pods reach loopback services.
    pub ip: Ipv4Addr,
    /// The pods' subnet.
    pub pod_cidr: String,
    /// Whether the node carries [`REAL_NODE_TAINT`].
    pub tainted: bool,
    bridge: String,
    dir: PathBuf,
    cgroup: String,
    socket: PathBuf,
    containerd: Option<Process>,
    kubelet: Option<Process>,
    stopped: bool,
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn run_stdin(program: &str, args: &[&str], input: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// The cgroup v1 hierarchies (and the v2 mount of a hybrid machine) under /sys/fs/cgroup.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !p.is_symlink() && p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| *point == prefix || point.starts_with(&format!("{prefix}/")))
        .map(str::to_owned)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    mounts
}

/// Processes whose command line mentions `needle` (the node's folder).
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline.trim().to_owned()));
        }
    }
    found
}

impl RealNode {
    /// Starts containerd and a kubelet registering as `<cluster>-real` with the API server
    /// of `kubeconfig`, whose port (for the DNAT of `10.0.0.1:443`) is `apiserver_port`,
    /// with [`REAL_NODE_TAINT`] when `tainted`. Waits until the Node is Ready.
    pub async fn start(
        cluster: &str,
        tainted: bool,
        dir: &Path,
        kubeconfig: &Path,
        client_ca: &Path,
        apiserver_port: u16,
        client: &kube::Client,
    ) -> anyhow::Result<Self> {
        let dir = dir.join("node");
        std::fs::create_dir_all(&dir)?;
        let (bridge, index) = claim_bridge()?;
        let ip = Ipv4Addr::new(10, 100 + index, 0, 1);
        {
            let mut live = LIVE_NODES.lock().unwrap_or_else(|e| e.into_inner());
            if live.1.is_none() {
                live.1 = Some(Path::new(KUBELET_DEFAULT_DIR).exists());
            }
            live.0 += 1;
        }
        let mut node = Self {
            name: format!("{cluster}-real"),
            ip,
            pod_cidr: format!("10.{}.0.0/24", 100 + index),
            tainted,
            cgroup: format!("vigil-e2e-{bridge}"),
            socket: dir.join("containerd.sock"),
            bridge,
            dir,
            containerd: None,
            kubelet: None,
            stopped: false,
        };
        if let Err(error) = node
            .start_inner(kubeconfig, client_ca, apiserver_port, client)
            .await
        {
            node.print_logs();
            node.stop();
            return Err(error);
        }
        Ok(node)
    }

    async fn start_inner(
        &mut self,
        kubeconfig: &Path,
        client_ca: &Path,
        apiserver_port: u16,
        client: &kube::Client,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        self.network(apiserver_port)?;
        self.cgroups()?;
        self.start_containerd().await?;
        self.import_image(&crate::repo().join(".tools/images/pause.tar"))?;
        self.start_kubelet(kubeconfig, client_ca)?;
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
        let name = self.name.clone();
        let mut kubelet = self.kubelet.as_mut();
        eventually(
            &format!("node {name} Ready"),
            Duration::from_secs(120),
            || {
                let alive = kubelet.as_mut().map_or(Ok(()), |k| k.check_alive());
                let (nodes, name) = (nodes.clone(), name.clone());
                async move {
                    alive?;
                    let ready = nodes.get_opt(&name).await?.is_some_and(|n| {
                        n.status.and_then(|s| s.conditions).is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
                    });
                    Ok(ready.then_some(()))
                }
            },
        )
        .await?;
        eprintln!(
            "node {}: Ready in {:.1}s at {} (pods in {})",
            self.name,
            started.elapsed().as_secs_f64(),
            self.ip,
            self.pod_cidr
        );
        Ok(())
    }

    /// The bridge (with the node's address), `route_localnet` on it, and the DNAT table.
    fn network(&self, apiserver_port: u16) -> anyhow::Result<()> {
        let address = format!("{}/24", self.ip);
        run("ip", &["addr", "add", &address, "dev", &self.bridge])?;
        run("ip", &["link", "set", &self.bridge, "up"])?;
        std::fs::write(
            format!("/proc/sys/net/ipv4/conf/{}/route_localnet", self.bridge),
            "1",
        )?;
        let table = format!(
            "table ip {table} {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"{bridge}\" ip daddr 10.0.0.1 tcp dport 443 dnat to 127.0.0.1:{apiserver_port}
    iifname \"{bridge}\" ip daddr {HOST_ADDRESS} meta l4proto {{ tcp, udp }} dnat to 127.0.0.1
  }}
}}
",
            table = self.nft_table(),
            bridge = self.bridge,
        );
        run_stdin("nft", &["-f", "-"], &table)?;
        let cni = self.dir.join("cni");
        std::fs::create_dir_all(&cni)?;
        let config = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.bridge,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "isDefaultGateway": false,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.dir.join("ipam"),
                        "ranges": [[{"subnet": self.pod_cidr, "gateway": self.ip.to_string()}]],
                        // The service range (10.0.0.1 is the API server) and the host.
                        "routes": [{"dst": "10.0.0.0/24"}, {"dst": format!("{HOST_ADDRESS}/32")}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        });
        std::fs::write(
            cni.join("10-vigil.conflist"),
            serde_json::to_vec_pretty(&config)?,
        )?;
        Ok(())
    }

    fn nft_table(&self) -> String {
        format!("vigil-e2e-{}", self.bridge)
    }

    /// The kubelet's cgroup root, created in every hierarchy (it does not create it).
    fn cgroups(&self) -> anyhow::Result<()> {
        for hierarchy in cgroup_hierarchies() {
            let path = hierarchy.join(&self.cgroup);
            std::fs::create_dir_all(&path)?;
            if hierarchy.ends_with("cpuset") {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(hierarchy.join(file))?;
                    std::fs::write(path.join(file), value.trim())?;
                }
            }
        }
        Ok(())
    }

    async fn start_containerd(&mut self) -> anyhow::Result<()> {
        let config = format!(
            r#"version = 3
root = "{root}"
state = "{state}"
imports = []

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins.'io.containerd.internal.v1.opt']
  path = "{opt}"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE: a sandbox may not lower its oom_score_adj.
  restrict_oom_score_adj = true

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  SystemdCgroup = false

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{CNI_BIN}"]
  conf_dir = "{cni}"
"#,
            root = self.dir.join("containerd/root").display(),
            state = self.dir.join("containerd/state").display(),
            socket = self.socket.display(),
            opt = self.dir.join("containerd/opt").display(),
            cni = self.dir.join("cni").display(),
        );
        let path = self.dir.join("containerd.toml");
        std::fs::write(&path, config)?;
        let bin = crate::repo().join(".tools/bin");
        // The shim is found on PATH.
        let path_env = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.containerd = Some(Process::start(
            "containerd",
            &tool("containerd")?,
            &[format!("--config={}", path.display())],
            &self.dir,
            &[("PATH", &path_env)],
        )?);
        let socket = self.socket.clone();
        eventually("containerd serving", Duration::from_secs(30), || {
            let up = socket.exists() && self.ctr(&["version"]).is_ok();
            async move { Ok(up.then_some(())) }
        })
        .await
    }

    /// Runs `ctr` against this node's containerd, in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        let ctr = tool("ctr")?;
        let socket = self.socket.to_string_lossy().into_owned();
        let mut all = vec!["--address", &socket, "--namespace", "k8s.io"];
        all.extend_from_slice(args);
        run(&ctr.to_string_lossy(), &all)
    }

    /// Imports an OCI image archive (from `make image` or scripts/oci-image.py), so that
    /// pods with `imagePullPolicy: IfNotPresent` start from it without a registry.
    pub fn import_image(&self, archive: &Path) -> anyhow::Result<()> {
        anyhow::ensure!(
            archive.is_file(),
            "{} is missing: run `make tools` (pause) or `make image` (the operator)",
            archive.display()
        );
        self.ctr(&[
            "images",
            "import",
            "--platform",
            "linux/amd64",
            &archive.to_string_lossy(),
        ])
        .map(drop)
    }

    fn start_kubelet(&mut self, kubeconfig: &Path, client_ca: &Path) -> anyhow::Result<()> {
        let mut config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            // This machine has cgroup v1 (hybrid): the kubelet runs on it when told to.
            "failCgroupV1": false,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": format!("/{}", self.cgroup),
            "failSwapOn": false,
            "address": self.ip.to_string(),
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port()?,
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": client_ca},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": format!("unix://{}", self.socket.display()),
            "podLogsDir": self.dir.join("pod-logs"),
            "resolvConf": "",
            "clusterDomain": "cluster.local",
            // Shared disk and memory with everything else here: evict only when nearly full.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "makeIPTablesUtilChains": false,
            "serializeImagePulls": false,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
            "maxPods": 30,
        });
        if self.tainted {
            let (key, value, effect) = REAL_NODE_TAINT;
            config["registerWithTaints"] =
                serde_json::json!([{"key": key, "value": value, "effect": effect}]);
        }
        let path = self.dir.join("kubelet.yaml");
        std::fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
        let (label, value) = REAL_NODE_LABEL;
        self.kubelet = Some(Process::start(
            "kubelet",
            &tool("kubelet")?,
            &[
                format!("--config={}", path.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--root-dir={}", self.dir.join("kubelet").display()),
                format!("--cert-dir={}", self.dir.join("kubelet-pki").display()),
                format!("--hostname-override={}", self.name),
                format!("--node-ip={}", self.ip),
                format!("--node-labels={label}={value}"),
                "--v=1".into(),
            ],
            &self.dir,
            &[],
        )?);
        Ok(())
    }

    /// Prints the last lines of containerd's and the kubelet's logs.
    pub fn print_logs(&self) {
        let all: Vec<&Process> = self.containerd.iter().chain(self.kubelet.iter()).collect();
        crate::process::print_tails(&all, 40);
    }

    /// Stops everything the node started and removes everything it made (see the module
    /// documentation for the order). Idempotent; also done on drop.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.kill();
        }
        if self.containerd.is_some() {
            let namespaces = self.remove_containers();
            if let Some(mut containerd) = self.containerd.take() {
                containerd.terminate();
            }
            for (pid, _) in processes_mentioning(&self.dir.to_string_lossy()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            for namespace in namespaces {
                let _ = run("umount", &[&namespace]);
                let _ = std::fs::remove_file(&namespace);
            }
        }
        for mount in mounts_under(&self.dir) {
            let _ = run("umount", &["-l", &mount]);
        }
        let _ = run("nft", &["delete", "table", "ip", &self.nft_table()]);
        let _ = run("ip", &["link", "delete", &self.bridge]);
        for hierarchy in cgroup_hierarchies() {
            remove_cgroup(&hierarchy.join(&self.cgroup));
        }
        let mut live = LIVE_NODES.lock().unwrap_or_else(|e| e.into_inner());
        live.0 = live.0.saturating_sub(1);
        if live.0 == 0 && live.1 == Some(false) {
            let _ = std::fs::remove_dir_all(KUBELET_DEFAULT_DIR);
        }
    }

    /// Kills and removes every task and container of the node; returns the network
    /// namespaces of its pods (bind mounts under /run/netns) to remove once they are gone.
    fn remove_containers(&self) -> Vec<String> {
        let ids: Vec<String> = self
            .ctr(&["containers", "list", "--quiet"])
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let mut namespaces = Vec::new();
        for id in &ids {
            if let Ok(info) = self.ctr(&["containers", "info", id])
                && let Ok(info) = serde_json::from_str::<serde_json::Value>(&info)
            {
                for ns in info["Spec"]["linux"]["namespaces"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if ns["type"] == "network"
                        && let Some(path) = ns["path"].as_str()
                        && (path.starts_with("/var/run/netns/") || path.starts_with("/run/netns/"))
                    {
                        namespaces.push(path.to_owned());
                    }
                }
            }
        }
        for id in &ids {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
        }
        for id in &ids {
            let _ = self.ctr(&["tasks", "delete", "--force", id]);
            let _ = self.ctr(&["containers", "delete", id]);
        }
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }

    /// What the node left on this machine after [`RealNode::stop`]: processes, mounts,
    /// network namespaces, the bridge, the nft table, cgroups. Empty when clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (pid, cmdline) in processes_mentioning(&self.dir.to_string_lossy()) {
            left.push(format!("process {pid}: {cmdline}"));
        }
        for mount in mounts_under(&self.dir) {
            left.push(format!("mount {mount}"));
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            left.push(format!("bridge {}", self.bridge));
        }
        if run("nft", &["list", "table", "ip", &self.nft_table()]).is_ok() {
            left.push(format!("nft table ip {}", self.nft_table()));
        }
        for hierarchy in cgroup_hierarchies() {
            let path = hierarchy.join(&self.cgroup);
            if path.exists() {
                left.push(format!("cgroup {}", path.display()));
            }
        }
        left
    }
}

/// Removes a cgroup and every cgroup under it, deepest first.
fn remove_cgroup(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_cgroup(&entry.path());
            }
        }
    }
    // Emptied cgroups go at once; give a killed process a moment to leave.
    for _ in 0..50 {
        if std::fs::remove_dir(path).is_ok() || !path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates the first free bridge `vigil<N>`: creating it is the claim, so two clusters
/// (two tests, two processes) never share one.
fn claim_bridge() -> anyhow::Result<(String, u8)> {
    for index in 0..100u8 {
        let name = format!("vigil{index}");
        if run("ip", &["link", "add", &name, "type", "bridge"]).is_ok() {
            return Ok((name, index));
        }
    }
    anyhow::bail!("no free bridge name vigil0..vigil99")
}

impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// [`HOST_ADDRESS`] for this machine's own programs too: the address on `lo` and an nft
/// table that sends what they send to it to the same port on `127.0.0.1`, as the nodes'
/// tables do for pods. With it one address works from pods and from the host, so a
/// kubeconfig, a DNS endpoint or an ACME directory can be written once for both (the
/// demo's fleet). Released on drop.
#[derive(Debug)]
pub struct HostAddressOnHost {
    released: bool,
}

impl HostAddressOnHost {
    const TABLE: &str = "vigil-host-address";

    /// Claims the address; fails when another process holds it (another demo).
    pub fn claim() -> anyhow::Result<Self> {
        run(
            "ip",
            &["addr", "add", &format!("{HOST_ADDRESS}/32"), "dev", "lo"],
        )
        .map_err(|error| anyhow::anyhow!("{HOST_ADDRESS} on lo (is a demo running?): {error}"))?;
        let claim = Self { released: false };
        let table = format!(
            "table ip {table} {{
  chain output {{
    type nat hook output priority -100; policy accept;
    ip daddr {HOST_ADDRESS} meta l4proto {{ tcp, udp }} dnat to 127.0.0.1
  }}
}}
",
            table = Self::TABLE,
        );
        run_stdin("nft", &["-f", "-"], &table)?;
        Ok(claim)
    }

    /// Removes the nft table and the address. Idempotent; also done on drop.
    pub fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let _ = run("nft", &["delete", "table", "ip", Self::TABLE]);
        let _ = run(
            "ip",
            &["addr", "del", &format!("{HOST_ADDRESS}/32"), "dev", "lo"],
        );
    }
}

impl Drop for HostAddressOnHost {
    fn drop(&mut self) {
        self.release();
    }
}
