//! What a `CrossCloudDNS` writes in member clusters, through each MemberCluster's
//! kubeconfig: the key of the import ConfigMap (`CoreDNSCustom`, the `coredns-custom`
//! convention) or a Vigil-managed CoreDNS (`Dedicated`), and their removal.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::DEFAULT_CONFIG_MAP;
use super::status::{self, Write};
use crate::api::cross_cloud_dns::{DnsClusterStatus, DnsTargetMode};
use crate::api::{CrossCloudDNS, MemberCluster};
use crate::controllers::Context;
use crate::controllers::apply::{apply_hashed, delete_if_present, dynamic_api};
use crate::controllers::member_cluster::{describe_kube_error, member_client};
use crate::inventory::Inventory;
use crate::render::dns::{ClusterConfig, dedicated_name, dedicated_namespace, dedicated_objects};

/// Where a `CrossCloudDNS` writes its `CoreDNSCustom` key.
pub struct Target {
    namespace: String,
    config_map: String,
    key: String,
}

impl Target {
    /// The target of `dns`.
    pub fn of(dns: &CrossCloudDNS) -> Self {
        let (namespace, config_map) = match &dns.spec.target.config_map {
            Some(r) => (r.namespace.clone(), r.name.clone()),
            None => (
                DEFAULT_CONFIG_MAP.0.to_owned(),
                DEFAULT_CONFIG_MAP.1.to_owned(),
            ),
        };
        Self {
            namespace,
            config_map,
            key: format!("{}.server", dns.name_any()),
        }
    }

    /// Where the configuration goes, for `Ready`.
    pub fn describe(&self, dns: &CrossCloudDNS) -> String {
        match dns.spec.target.mode {
            DnsTargetMode::CoreDnsCustom => {
                format!("in {}/{} key {}", self.namespace, self.config_map, self.key)
            }
            DnsTargetMode::Dedicated => format!(
                "as the Vigil-managed CoreDNS {}/{} (point each cluster's DNS at it with the stub-domain.server key of its ConfigMap)",
                dedicated_namespace(dns),
                dedicated_name(dns)
            ),
        }
    }
}

/// The field manager of one `CrossCloudDNS`'s writes in member clusters: its own, so that
/// two objects sharing an import ConfigMap never take each other's keys away.
fn field_manager(dns: &CrossCloudDNS) -> String {
    let name = dns.name_any();
    if name.len() <= 100 {
        format!("vigil-dns-{name}")
    } else {
        format!("vigil-dns-{}", crate::hash::short_hash(name.as_bytes()))
    }
}

/// Removes what `dns` may have written in `member` ([`status::to_remove`]). Nothing
/// else is touched, so a `CoreDNSCustom` object needs no right to delete Deployments.
pub async fn clean_up(
    ctx: &Context,
    dns: &CrossCloudDNS,
    target: &Target,
    member: &MemberCluster,
) -> Result<(), String> {
    let entry = dns
        .status
        .as_ref()
        .and_then(|s| s.clusters.iter().find(|c| c.cluster == member.name_any()));
    let remote = Remote::of(member, ctx).await?;
    for what in status::to_remove(dns.spec.target.mode, entry) {
        remote.remove(what, dns, target).await?;
    }
    Ok(())
}

/// Applies each cluster's configuration where the entry's cluster has one, recording in
/// the entry whether it was applied (and the dedicated address) or why not.
pub async fn apply_all(
    ctx: &Context,
    dns: &CrossCloudDNS,
    inventory: &Inventory,
    configs: &[ClusterConfig],
    previous: &[DnsClusterStatus],
    entries: &mut [DnsClusterStatus],
) {
    let target = Target::of(dns);
    let applies = entries.iter_mut().map(|entry| {
        let config = configs.iter().find(|c| c.cluster == entry.cluster);
        let member = inventory.member_cluster(&entry.cluster);
        let before = previous.iter().find(|c| c.cluster == entry.cluster);
        let target = &target;
        async move {
            let (Some(config), Some(member)) = (config, member) else {
                return;
            };
            let plan = status::plan(dns.spec.target.mode, before);
            let result = async {
                let remote = Remote::of(member, ctx).await?;
                if let Some(what) = plan.remove_first {
                    remote.remove(what, dns, target).await?;
                }
                match plan.write {
                    Write::Dedicated => put_dedicated(&remote, dns, config).await.map(Some),
                    Write::Key => put_server(&remote, dns, target, &config.server)
                        .await
                        .map(|()| None),
                }
            }
            .await;
            match result {
                Ok(address) => {
                    entry.applied = true;
                    entry.dedicated_address = address;
                }
                Err(error) => {
                    entry.message = Some(match entry.message.take() {
                        Some(probe) => format!("{probe}; {error}"),
                        None => error,
                    });
                }
            }
        }
    });
    futures::future::join_all(applies).await;
}

/// Clusters taken out of `spec.clusters` keep nothing of the object; one that cannot be
/// cleaned up stays in status (`entries`) until it can.
pub async fn clean_up_removed(
    ctx: &Context,
    dns: &CrossCloudDNS,
    inventory: &Inventory,
    previous: &[DnsClusterStatus],
    entries: &mut Vec<DnsClusterStatus>,
) {
    let target = Target::of(dns);
    for gone in previous
        .iter()
        .filter(|c| c.applied && !dns.spec.clusters.contains(&c.cluster))
    {
        let Some(member) = inventory.member_cluster(&gone.cluster) else {
            continue;
        };
        if let Err(error) = clean_up(ctx, dns, &target, member).await {
            entries.push(DnsClusterStatus {
                message: Some(format!(
                    "removed from spec.clusters; cleanup failed: {error}"
                )),
                ..gone.clone()
            });
        }
    }
}

/// A member cluster's API server, with its address for messages.
struct Remote {
    client: Client,
    server: String,
}

impl Remote {
    async fn of(member: &MemberCluster, ctx: &Context) -> Result<Self, String> {
        let (client, server) = member_client(member, ctx).await.map_err(|f| f.message)?;
        Ok(Self { client, server })
    }

    async fn remove(
        &self,
        what: Write,
        dns: &CrossCloudDNS,
        target: &Target,
    ) -> Result<(), String> {
        match what {
            Write::Key => remove_server(self, target).await,
            Write::Dedicated => remove_dedicated(self, dns).await,
        }
    }

    /// Describes a failed call to this API server.
    fn failed(&self) -> impl Fn(kube::Error) -> String + '_ {
        move |e| format!("API server {}: {}", self.server, describe_kube_error(&e))
    }
}

/// Writes `server` as the object's key of the import ConfigMap, unless it holds it already.
/// Server-side apply under the object's own field manager owns only this key: the other
/// keys of the ConfigMap stay.
async fn put_server(
    remote: &Remote,
    dns: &CrossCloudDNS,
    target: &Target,
    server: &str,
) -> Result<(), String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(remote.client.clone(), &target.namespace);
    let failed = remote.failed();
    if let Some(current) = config_maps
        .get_opt(&target.config_map)
        .await
        .map_err(&failed)?
        && current
            .data
            .as_ref()
            .and_then(|d| d.get(&target.key))
            .map(String::as_str)
            == Some(server)
    {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": target.config_map, "namespace": target.namespace},
        "data": {&target.key: server},
    });
    config_maps
        .patch(
            &target.config_map,
            &PatchParams::apply(&field_manager(dns)).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
        .map_err(failed)
}

/// Removes the object's key from the import ConfigMap, when it is there.
async fn remove_server(remote: &Remote, target: &Target) -> Result<(), String> {
    let config_maps: Api<ConfigMap> = Api::namespaced(remote.client.clone(), &target.namespace);
    let failed = remote.failed();
    let Some(current) = config_maps
        .get_opt(&target.config_map)
        .await
        .map_err(&failed)?
    else {
        return Ok(());
    };
    if !current
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(&target.key))
    {
        return Ok(());
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": current.resource_version()},
        "data": {&target.key: null},
    });
    config_maps
        .patch(
            &target.config_map,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
        .map_err(failed)
}

/// Applies the Vigil-managed CoreDNS of `dns` that serves `config`, and returns its
/// Service's ClusterIP. The Service goes first: the stub-domain snippet in the ConfigMap
/// names its address.
async fn put_dedicated(
    remote: &Remote,
    dns: &CrossCloudDNS,
    config: &ClusterConfig,
) -> Result<String, String> {
    let failed = remote.failed();
    let manager = field_manager(dns);
    let is_service = |o: &serde_json::Value| o["kind"] == "Service";
    let service = dedicated_objects(dns, config, None)
        .into_iter()
        .find(is_service)
        .ok_or_else(|| "no Service rendered".to_owned())?;
    let live = apply_hashed(&remote.client, &manager, service)
        .await
        .map_err(&failed)?;
    let address = live.data["spec"]["clusterIP"]
        .as_str()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .ok_or_else(|| format!("Service {} has no ClusterIP", dedicated_name(dns)))?
        .to_owned();
    for object in dedicated_objects(dns, config, Some(&address))
        .into_iter()
        .filter(|o| !is_service(o))
    {
        apply_hashed(&remote.client, &manager, object)
            .await
            .map_err(&failed)?;
    }
    Ok(address)
}

/// Deletes the Vigil-managed CoreDNS of `dns`; objects already gone are fine.
async fn remove_dedicated(remote: &Remote, dns: &CrossCloudDNS) -> Result<(), String> {
    let failed = remote.failed();
    let placeholder = ClusterConfig {
        cluster: String::new(),
        server: String::new(),
    };
    for object in dedicated_objects(dns, &placeholder, None).into_iter().rev() {
        let object: DynamicObject =
            serde_json::from_value(object).map_err(|e| format!("internal: {e}"))?;
        let api = dynamic_api(&remote.client, &object).map_err(&failed)?;
        delete_if_present(&api, &object.name_any())
            .await
            .map_err(&failed)?;
    }
    Ok(())
}
