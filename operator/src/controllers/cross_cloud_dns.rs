//! The `CrossCloudDNS` controller: probes every cluster's resolver, keeps the clusters that
//! answer in the failover chain (with hysteresis, so a flapping resolver does not churn the
//! configuration), renders each cluster's CoreDNS server blocks and writes them into that
//! cluster's import ConfigMap (`CoreDNSCustom`, the `coredns-custom` convention) through the
//! MemberCluster's kubeconfig.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Client, ResourceExt};

use super::apply::{apply_hashed, delete_if_present, dynamic_api};
use super::member_cluster::{describe_kube_error, member_client, probe_dns};
use super::status::{condition, update_status};
use super::{Context, Error, Reconcile, finalizer};
use crate::api::cross_cloud_dns::{DnsClusterStatus, DnsTargetMode};
use crate::api::{CrossCloudDNS, CrossCloudDNSStatus, READY};
use crate::render::dns::{
    ClusterConfig, dedicated_name, dedicated_namespace, dedicated_objects, render_cross_cloud_dns,
};
use crate::validate::Validate;

/// How often resolvers are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Failed probes in a row before a cluster leaves the failover chain.
pub const LEAVE_AFTER: u32 = 2;
/// Good probes in a row before it comes back.
pub const REJOIN_AFTER: u32 = 2;
/// Keeps a deleted object until its configuration is gone from every member cluster.
pub const FINALIZER: &str = "vigil.io/crossclouddns-cleanup";
/// The import ConfigMap when `target.configMap` is unset.
pub const DEFAULT_CONFIG_MAP: (&str, &str) = ("kube-system", "coredns-custom");

/// Probe streaks per `<object>/<cluster>`: positive for good probes in a row, negative for
/// failed ones. Kept in memory; the membership they decide is kept in status.
#[derive(Debug, Default)]
pub struct DnsRuntime {
    streaks: Mutex<HashMap<String, i64>>,
}

impl DnsRuntime {
    /// Records a probe and returns the streak it makes.
    fn record(&self, key: &str, ok: bool) -> i64 {
        let mut streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        let streak = streaks.entry(key.to_owned()).or_insert(0);
        *streak = match (ok, *streak) {
            (true, s) if s > 0 => s + 1,
            (true, _) => 1,
            (false, s) if s < 0 => s - 1,
            (false, _) => -1,
        };
        *streak
    }
}

/// Whether a cluster is in the chain after a probe: it leaves after [`LEAVE_AFTER`] failed
/// probes in a row and rejoins after [`REJOIN_AFTER`] good ones; otherwise it stays as it was.
pub fn next_membership(was_in: bool, streak: i64) -> bool {
    if was_in {
        streak > -i64::from(LEAVE_AFTER)
    } else {
        streak >= i64::from(REJOIN_AFTER)
    }
}

impl Reconcile for CrossCloudDNS {
    async fn reconcile(self: Arc<Self>, ctx: Arc<Context>) -> Result<Action, Error> {
        let api: Api<CrossCloudDNS> = Api::all(ctx.client.clone());
        if self.metadata.deletion_timestamp.is_some() {
            return finalize(&self, &ctx, &api).await;
        }
        finalizer::ensure(self.as_ref(), &api, FINALIZER).await?;
        let inventory = ctx.stores.references();
        let errors = self.validate(&inventory);
        if !errors.is_empty() {
            return Err(Error::from_spec(errors));
        }
        let previous = self.status.clone().unwrap_or_default();
        let name = self.name_any();
        // Probe every resolver and decide the chain.
        let mut entries = Vec::new();
        for cluster in &self.spec.clusters {
            let Some(member) = inventory.member_cluster(cluster) else {
                continue;
            };
            let probe =
                probe_dns(&member.spec.dns.endpoints, &member.spec.dns.cluster_domain).await;
            let streak = ctx.dns.record(&format!("{name}/{cluster}"), probe.is_ok());
            let was_in = previous
                .clusters
                .iter()
                .find(|c| c.cluster == *cluster)
                .is_none_or(|c| c.in_failover);
            entries.push(DnsClusterStatus {
                cluster: cluster.clone(),
                resolver_healthy: probe.is_ok(),
                in_failover: next_membership(was_in, streak),
                applied: false,
                dedicated_address: None,
                message: probe.err().map(|f| f.message),
            });
        }
        let in_chain: Vec<String> = entries
            .iter()
            .filter(|e| e.in_failover)
            .map(|e| e.cluster.clone())
            .collect();
        let configs =
            render_cross_cloud_dns(&self, &inventory, &|c| in_chain.iter().any(|i| i == c))
                .map_err(|e| {
                    Error::InvalidSpec(vec![crate::validate::FieldError::new("spec", e.0)])
                })?;
        let target = Target::of(&self);
        let dedicated = self.spec.target.mode == DnsTargetMode::Dedicated;
        let applies = entries.iter_mut().map(|entry| {
            let config = configs.iter().find(|c| c.cluster == entry.cluster);
            let member = inventory.member_cluster(&entry.cluster);
            let before = previous
                .clusters
                .iter()
                .find(|c| c.cluster == entry.cluster);
            let (ctx, dns, target) = (&ctx, &self, &target);
            async move {
                let (Some(config), Some(member)) = (config, member) else {
                    return;
                };
                let result = async {
                    let remote = Remote::of(member, ctx).await?;
                    // A target that changed mode leaves nothing behind.
                    let was_dedicated = before.map(|b| b.dedicated_address.is_some());
                    if dedicated {
                        if was_dedicated == Some(false) && before.is_some_and(|b| b.applied) {
                            remove_server(&remote, target).await?;
                        }
                        put_dedicated(&remote, dns, config).await.map(Some)
                    } else {
                        if was_dedicated == Some(true) {
                            remove_dedicated(&remote, dns).await?;
                        }
                        put_server(&remote, dns, target, &config.server)
                            .await
                            .map(|()| None)
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
        // Clusters taken out of spec.clusters keep nothing of this object; one that cannot be
        // cleaned up stays in status until it can.
        for gone in previous
            .clusters
            .iter()
            .filter(|c| c.applied && !self.spec.clusters.contains(&c.cluster))
        {
            let Some(member) = inventory.member_cluster(&gone.cluster) else {
                continue;
            };
            if let Err(error) = clean_up(&ctx, &self, &target, member).await {
                entries.push(DnsClusterStatus {
                    message: Some(format!(
                        "removed from spec.clusters; cleanup failed: {error}"
                    )),
                    ..gone.clone()
                });
            }
        }
        announce(&self, &ctx, &previous.clusters, &entries).await;
        let wanted: Vec<&DnsClusterStatus> = entries
            .iter()
            .filter(|e| self.spec.clusters.contains(&e.cluster))
            .collect();
        let applied = wanted.iter().filter(|e| e.applied).count();
        let ready = if applied == wanted.len() {
            let out: Vec<&str> = wanted
                .iter()
                .filter(|e| !e.in_failover)
                .map(|e| e.cluster.as_str())
                .collect();
            condition(
                READY,
                Some(true),
                "Applied",
                format!(
                    "configuration applied to {applied} clusters {}; {}",
                    target.describe(&self),
                    if out.is_empty() {
                        "every resolver answers".to_owned()
                    } else {
                        format!("out of the failover chain: {}", out.join(", "))
                    }
                ),
            )
        } else {
            let failed: Vec<String> = wanted
                .iter()
                .filter(|e| !e.applied)
                .map(|e| format!("{}: {}", e.cluster, e.message.clone().unwrap_or_default()))
                .collect();
            condition(
                READY,
                Some(false),
                "ApplyFailed",
                format!("not applied to {}", failed.join("; ")),
            )
        };
        let status = CrossCloudDNSStatus {
            observed_generation: None,
            conditions: vec![ready],
            clusters: entries,
        };
        update_status(&ctx.client, self.as_ref(), status).await?;
        Ok(Action::requeue(PROBE_INTERVAL))
    }
}

/// Where a `CrossCloudDNS` writes its `CoreDNSCustom` key.
struct Target {
    namespace: String,
    config_map: String,
    key: String,
}

impl Target {
    fn of(dns: &CrossCloudDNS) -> Self {
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

    fn describe(&self, dns: &CrossCloudDNS) -> String {
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

/// The object is being deleted: remove its configuration from every cluster it was applied
/// to, then let it go. A cluster whose MemberCluster no longer exists cannot be reached and
/// is skipped; one that fails keeps the object (and says why) until it succeeds.
async fn finalize(
    dns: &CrossCloudDNS,
    ctx: &Context,
    api: &Api<CrossCloudDNS>,
) -> Result<Action, Error> {
    if !finalizer::has(dns, FINALIZER) {
        return Ok(Action::await_change());
    }
    let inventory = ctx.stores.references();
    let target = Target::of(dns);
    let mut clusters: Vec<String> = dns.spec.clusters.clone();
    if let Some(status) = &dns.status {
        for entry in &status.clusters {
            if !clusters.contains(&entry.cluster) {
                clusters.push(entry.cluster.clone());
            }
        }
    }
    let mut failures = Vec::new();
    for cluster in &clusters {
        let Some(member) = inventory.member_cluster(cluster) else {
            continue;
        };
        if let Err(error) = clean_up(ctx, dns, &target, member).await {
            failures.push(format!("{cluster}: {error}"));
        }
    }
    if !failures.is_empty() {
        return Err(Error::Cleanup(failures.join("; ")));
    }
    finalizer::remove(dns, api, FINALIZER).await?;
    Ok(Action::await_change())
}

/// Removes what `dns` wrote in `member`: the import key when the target is `CoreDNSCustom`
/// or status says a key was applied, the Vigil-managed CoreDNS when the target is
/// `Dedicated` or status has its address. Nothing else is touched, so a `CoreDNSCustom`
/// object needs no right to delete Deployments.
async fn clean_up(
    ctx: &Context,
    dns: &CrossCloudDNS,
    target: &Target,
    member: &crate::api::MemberCluster,
) -> Result<(), String> {
    let entry = dns
        .status
        .as_ref()
        .and_then(|s| s.clusters.iter().find(|c| c.cluster == member.name_any()));
    let dedicated_now = dns.spec.target.mode == DnsTargetMode::Dedicated;
    let wrote_dedicated = dedicated_now || entry.is_some_and(|e| e.dedicated_address.is_some());
    let wrote_key =
        !dedicated_now || entry.is_some_and(|e| e.applied && e.dedicated_address.is_none());
    let remote = Remote::of(member, ctx).await?;
    if wrote_key {
        remove_server(&remote, target).await?;
    }
    if wrote_dedicated {
        remove_dedicated(&remote, dns).await?;
    }
    Ok(())
}

/// A member cluster's API server, with its address for messages.
struct Remote {
    client: Client,
    server: String,
}

impl Remote {
    async fn of(member: &crate::api::MemberCluster, ctx: &Context) -> Result<Self, String> {
        let (client, server) = member_client(member, ctx).await.map_err(|f| f.message)?;
        Ok(Self { client, server })
    }

    /// Describes a failed call to this API server.
    fn failed(&self) -> impl Fn(kube::Error) -> String + '_ {
        move |e| format!("API server {}: {}", self.server, describe_kube_error(&e))
    }
}

/// Events when a cluster leaves or rejoins the failover chain.
async fn announce(
    dns: &CrossCloudDNS,
    ctx: &Context,
    before: &[DnsClusterStatus],
    after: &[DnsClusterStatus],
) {
    for entry in after {
        let was_in = before
            .iter()
            .find(|b| b.cluster == entry.cluster)
            .is_none_or(|b| b.in_failover);
        match (was_in, entry.in_failover) {
            (true, false) => {
                ctx.publish(
                    dns,
                    EventType::Warning,
                    "ClusterLeft",
                    format!(
                        "{} left the failover chain: {}",
                        entry.cluster,
                        entry.message.clone().unwrap_or_default()
                    ),
                )
                .await
            }
            (false, true) => {
                ctx.publish(
                    dns,
                    EventType::Normal,
                    "ClusterRejoined",
                    format!(
                        "{} answers again and rejoined the failover chain",
                        entry.cluster
                    ),
                )
                .await
            }
            _ => {}
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_has_hysteresis() {
        let runtime = DnsRuntime::default();
        let mut member = true;
        let mut trace = Vec::new();
        for ok in [
            true, false, true, false, false, false, true, false, true, true, true,
        ] {
            let streak = runtime.record("x/a", ok);
            member = next_membership(member, streak);
            trace.push(member);
        }
        // One failure between good probes never drops it; two in a row do; one good probe
        // between failures does not bring it back; two in a row do.
        assert_eq!(
            trace,
            [
                true, true, true, true, false, false, false, false, false, true, true
            ]
        );
    }
}
