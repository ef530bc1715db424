//! CoreDNS server blocks for a `CrossCloudDNS`, per member cluster.
//!
//! For cluster `C` (listening on port `P`, the port of its first DNS endpoint, 53 when it has
//! none) in zone `Z` the file holds:
//! - the shared zone `Z:P`: `<svc>.<ns>.svc.Z` is answered by C's own `kubernetes` plugin
//!   when C has the service; otherwise (`fallthrough`) it goes to the remote clusters one
//!   after the other, in failover order (`forward ... { next NXDOMAIN SERVFAIL }`);
//! - one loopback listener per remote cluster `R` (`Z:<port>` bound to 127.0.0.1): it
//!   rewrites `.svc.Z` to `.svc.<R's clusterDomain>`, optionally tags the query with C's
//!   name in an EDNS0 option, and forwards it to R's DNS endpoints with health checks, so a
//!   remote that is down answers SERVFAIL at once and the next one is asked;
//! - per-cluster names `<svc>.<ns>.svc.<cluster>.Z`: `C.Z` from C's own `kubernetes`
//!   plugin, `R.Z` rewritten to R's cluster domain and forwarded to R only.
//!
//! Loopback listener ports are `base + 32 × (C's index in spec.clusters) + (R's rank)`
//! (`target.listenerPortBase`, default 10000), so
//! that the listeners of every cluster can share one host (the end-to-end tests) and two
//! zones can share one CoreDNS.

use std::fmt::Write as _;

use kube::ResourceExt;

use crate::api::CrossCloudDNS;
use crate::api::cross_cloud_dns::DnsTargetMode;
use crate::api::member_cluster::MemberCluster;
use crate::inventory::Inventory;
use crate::validate::parse_host_port;

/// First port of the loopback listeners unless `target.listenerPortBase` says otherwise.
pub const LISTENER_PORT_BASE: u16 = 10_000;
/// Positive answers are cached this long (seconds): remote lookups cross clouds.
pub const CACHE_SUCCESS_SECONDS: u32 = 30;
/// Negative answers are cached this long (seconds): a new service or a failover shows soon.
pub const CACHE_DENIAL_SECONDS: u32 = 5;
/// Port the Vigil-managed CoreDNS (`Dedicated`) listens on inside its pod: unprivileged, so
/// that it runs without `NET_BIND_SERVICE`; its Service maps 53 to it.
pub const DEDICATED_PORT: u16 = 1053;
/// How often a remote resolver marked down is checked again (seconds).
pub const HEALTH_CHECK_SECONDS: u32 = 5;

/// One cluster's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Name of the `MemberCluster`.
    pub cluster: String,
    /// The `.server` file: CoreDNS server blocks.
    pub server: String,
}

/// Why a configuration could not be rendered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DnsRenderError(pub String);

/// The remote clusters of `cluster` in the order they are asked: `failover` first, then
/// the rest by name; `healthy` filters out clusters that dropped out.
pub fn failover_order<'a>(
    dns: &'a CrossCloudDNS,
    cluster: &str,
    healthy: &dyn Fn(&str) -> bool,
) -> Vec<&'a str> {
    let mut rest: Vec<&str> = dns
        .spec
        .clusters
        .iter()
        .map(String::as_str)
        .filter(|c| !dns.spec.failover.iter().any(|f| f == c))
        .collect();
    rest.sort_unstable();
    dns.spec
        .failover
        .iter()
        .map(String::as_str)
        .chain(rest)
        .filter(|c| *c != cluster && healthy(c))
        .collect()
}

fn member<'a>(inventory: &'a Inventory, name: &str) -> Result<&'a MemberCluster, DnsRenderError> {
    inventory
        .member_cluster(name)
        .ok_or_else(|| DnsRenderError(format!("MemberCluster {name:?} does not exist")))
}

/// The port a cluster's DNS listens on: that of its first endpoint, 53 without endpoints.
fn listen_port(member: &MemberCluster) -> Result<u16, DnsRenderError> {
    match member.spec.dns.endpoints.first() {
        None => Ok(53),
        Some(endpoint) => parse_host_port(endpoint)
            .map(|(_, port)| port)
            .map_err(|e| DnsRenderError(format!("MemberCluster {}: {e}", member.name_any()))),
    }
}

/// The server blocks of every cluster of `dns`, with only the remotes `healthy` accepts in
/// the failover chain (the per-cluster names of every cluster stay).
pub fn render_cross_cloud_dns(
    dns: &CrossCloudDNS,
    inventory: &Inventory,
    healthy: &dyn Fn(&str) -> bool,
) -> Result<Vec<ClusterConfig>, DnsRenderError> {
    dns.spec
        .clusters
        .iter()
        .enumerate()
        .map(|(index, cluster)| {
            Ok(ClusterConfig {
                cluster: cluster.clone(),
                server: server_file(dns, inventory, index, cluster, healthy)?,
            })
        })
        .collect()
}

fn server_file(
    dns: &CrossCloudDNS,
    inventory: &Inventory,
    index: usize,
    cluster: &str,
    healthy: &dyn Fn(&str) -> bool,
) -> Result<String, DnsRenderError> {
    let zone = dns.spec.zone.trim_end_matches('.');
    let own = member(inventory, cluster)?;
    let dedicated = dns.spec.target.mode == DnsTargetMode::Dedicated;
    let port = if dedicated {
        DEDICATED_PORT
    } else {
        listen_port(own)?
    };
    let tag = dns
        .spec
        .edns0
        .as_ref()
        .filter(|e| e.tag_source_cluster)
        .map(|e| format!("rewrite edns0 local set {:#06x} {cluster}", e.option_code));
    let chain = failover_order(dns, cluster, healthy);
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "# Generated by Vigil from CrossCloudDNS {} for cluster {cluster}; do not edit.",
        dns.name_any()
    );
    let _ = writeln!(
        w,
        "# Shared zone: the local cluster first, then {}.",
        if chain.is_empty() {
            "no remote cluster (none is healthy)".to_owned()
        } else {
            chain.join(", ")
        }
    );
    let _ = writeln!(w, "{zone}:{port} {{");
    let _ = writeln!(w, "    errors");
    if dedicated {
        // Picks up ConfigMap changes (kubelet refreshes the mounted file) without a restart.
        let _ = writeln!(w, "    reload");
    }
    cache(w);
    let _ = writeln!(w, "    kubernetes {zone} {{");
    let _ = writeln!(w, "        fallthrough");
    let _ = writeln!(w, "    }}");
    for rank in 0..chain.len() {
        let _ = write!(
            w,
            "    forward . 127.0.0.1:{}",
            listener_port(dns, index, rank)?
        );
        if rank + 1 == chain.len() {
            let _ = writeln!(w);
        } else {
            let _ = writeln!(w, " {{\n        next NXDOMAIN SERVFAIL\n    }}");
        }
    }
    let _ = writeln!(w, "}}");
    for (rank, remote) in chain.iter().enumerate() {
        let member = member(inventory, remote)?;
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "# Shared zone through {remote}: asked when the clusters before it do not have the name."
        );
        let _ = writeln!(w, "{zone}:{} {{", listener_port(dns, index, rank)?);
        let _ = writeln!(w, "    bind 127.0.0.1");
        rewrite(w, &format!(".svc.{zone}."), member, tag.as_deref());
        forward(w, member)?;
        let _ = writeln!(w, "}}");
    }
    // Per-cluster names.
    for name in &dns.spec.clusters {
        let member = member(inventory, name)?;
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "# {name}: <svc>.<ns>.svc.{name}.{zone} reaches {name} only."
        );
        let _ = writeln!(w, "{name}.{zone}:{port} {{");
        let _ = writeln!(w, "    errors");
        cache(w);
        if name == cluster {
            let _ = writeln!(w, "    kubernetes {name}.{zone}");
        } else {
            rewrite(w, &format!(".svc.{name}.{zone}."), member, tag.as_deref());
            forward(w, member)?;
        }
        let _ = writeln!(w, "}}");
    }
    if dedicated {
        // The cluster's own domain too, so that the dedicated Service can be the endpoint
        // the other clusters ask.
        let domain = own.spec.dns.cluster_domain.trim_end_matches('.');
        let _ = writeln!(w);
        let _ = writeln!(
            w,
            "# {cluster}'s own services, for the clusters that ask this CoreDNS directly."
        );
        let _ = writeln!(w, "{domain}:{port} {{");
        let _ = writeln!(w, "    errors");
        cache(w);
        let _ = writeln!(w, "    kubernetes {domain}");
        let _ = writeln!(w, "}}");
    }
    Ok(out)
}

/// Rewrites the `from` suffix to `.svc.<member's cluster domain>.` (answers are rewritten
/// back), then adds the EDNS0 tag when there is one.
fn rewrite(w: &mut String, from: &str, member: &MemberCluster, tag: Option<&str>) {
    let domain = member.spec.dns.cluster_domain.trim_end_matches('.');
    let mode = if tag.is_some() { "continue " } else { "" };
    let _ = writeln!(
        w,
        "    rewrite {mode}name suffix {from} .svc.{domain}. answer auto"
    );
    if let Some(tag) = tag {
        let _ = writeln!(w, "    {tag}");
    }
}

fn cache(w: &mut String) {
    let _ = writeln!(w, "    cache {CACHE_SUCCESS_SECONDS} {{");
    let _ = writeln!(w, "        success 9984 {CACHE_SUCCESS_SECONDS}");
    let _ = writeln!(w, "        denial 9984 {CACHE_DENIAL_SECONDS}");
    let _ = writeln!(w, "    }}");
}

fn forward(w: &mut String, member: &MemberCluster) -> Result<(), DnsRenderError> {
    let endpoints = &member.spec.dns.endpoints;
    if endpoints.is_empty() {
        return Err(DnsRenderError(format!(
            "MemberCluster {} has no DNS endpoint to forward to",
            member.name_any()
        )));
    }
    let _ = writeln!(w, "    forward . {} {{", endpoints.join(" "));
    let _ = writeln!(w, "        policy sequential");
    let _ = writeln!(w, "        max_fails 2");
    let _ = writeln!(w, "        health_check {HEALTH_CHECK_SECONDS}s");
    let _ = writeln!(w, "        failfast_all_unhealthy_upstreams");
    let _ = writeln!(w, "    }}");
    Ok(())
}

fn listener_port(
    dns: &CrossCloudDNS,
    cluster_index: usize,
    rank: usize,
) -> Result<u16, DnsRenderError> {
    let base = dns
        .spec
        .target
        .listener_port_base
        .and_then(|b| u16::try_from(b).ok())
        .unwrap_or(LISTENER_PORT_BASE);
    u16::try_from(32 * cluster_index + rank)
        .ok()
        .and_then(|offset| base.checked_add(offset))
        .ok_or_else(|| DnsRenderError("too many clusters for the listener ports".to_owned()))
}

/// CoreDNS image of the Vigil-managed CoreDNS: the release `e2e/tools` builds and the tests
/// load every generated configuration into.
pub const COREDNS_IMAGE: &str = "coredns/coredns:1.15.0";
/// Namespace of the Vigil-managed CoreDNS unless `target.namespace` says otherwise.
pub const DEDICATED_NAMESPACE: &str = "kube-system";
/// Label naming the `CrossCloudDNS` a Vigil-managed CoreDNS serves.
pub const DEDICATED_LABEL: &str = "vigil.io/crossclouddns";

/// Name of the objects of the Vigil-managed CoreDNS of `dns` (`Dedicated`).
pub fn dedicated_name(dns: &CrossCloudDNS) -> String {
    format!("vigil-dns-{}", dns.name_any())
}

/// Namespace of the Vigil-managed CoreDNS of `dns` in every cluster.
pub fn dedicated_namespace(dns: &CrossCloudDNS) -> String {
    dns.spec
        .target
        .namespace
        .clone()
        .unwrap_or_else(|| DEDICATED_NAMESPACE.to_owned())
}

/// The server block the cluster's own DNS needs to send the zone to the Vigil-managed
/// CoreDNS at `address` (its Service's ClusterIP).
pub fn stub_domain(dns: &CrossCloudDNS, address: &str) -> String {
    let zone = dns.spec.zone.trim_end_matches('.');
    format!(
        "# Generated by Vigil from CrossCloudDNS {}: the zone goes to the Vigil-managed CoreDNS.\n\
         {zone}:53 {{\n    errors\n    cache 30\n    forward . {address}\n}}\n",
        dns.name_any()
    )
}

/// The objects of the Vigil-managed CoreDNS that serves `config` in its cluster: a
/// ServiceAccount allowed to read Services and EndpointSlices (the `kubernetes` plugin), the
/// ConfigMap with the Corefile (plus `stub-domain.server` once the Service has an address),
/// a Deployment that runs unprivileged on [`DEDICATED_PORT`], a PodDisruptionBudget and a
/// Service on port 53. Every object is named [`dedicated_name`].
pub fn dedicated_objects(
    dns: &CrossCloudDNS,
    config: &ClusterConfig,
    service_address: Option<&str>,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let name = dedicated_name(dns);
    let namespace = dedicated_namespace(dns);
    let instance = dns.name_any();
    let labels = json!({
        "app.kubernetes.io/name": "vigil-dns",
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/managed-by": "vigil",
        DEDICATED_LABEL: instance,
    });
    let selector = json!({"app.kubernetes.io/name": "vigil-dns", DEDICATED_LABEL: instance});
    let meta = json!({"name": name, "namespace": namespace, "labels": labels});
    let cluster_meta = json!({"name": name, "labels": labels});
    let mut data = json!({"Corefile": config.server});
    if let Some(address) = service_address {
        data["stub-domain.server"] = json!(stub_domain(dns, address));
    }
    let image = dns.spec.target.image.as_deref().unwrap_or(COREDNS_IMAGE);
    let replicas = dns.spec.target.replicas.unwrap_or(2);
    let probe = |initial: u32| {
        json!({
            "tcpSocket": {"port": DEDICATED_PORT},
            "initialDelaySeconds": initial,
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        })
    };
    vec![
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta,
            "automountServiceAccountToken": true,
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": cluster_meta,
            "rules": [
                {"apiGroups": [""], "resources": ["services", "endpoints", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": cluster_meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": data,
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 65532,
                            "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "topologySpreadConstraints": [{
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector},
                        }],
                        "containers": [{
                            "name": "coredns",
                            "image": image,
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": DEDICATED_PORT, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": DEDICATED_PORT, "protocol": "TCP"},
                            ],
                            "readinessProbe": probe(0),
                            "livenessProbe": probe(10),
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "70Mi"},
                                "limits": {"memory": "170Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": true}],
                        }],
                        "volumes": [{
                            "name": "config",
                            "configMap": {"name": name, "items": [{"key": "Corefile", "path": "Corefile"}]},
                        }],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": "dns-tcp", "protocol": "TCP"},
                ],
            },
        }),
    ]
}
