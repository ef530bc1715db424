//! The `CrossCloudDNS` controller: probes every cluster's resolver, keeps the clusters that
//! answer in the failover chain (with hysteresis, so a flapping resolver does not churn the
//! configuration), renders each cluster's CoreDNS server blocks and writes them into that
//! cluster's import ConfigMap (`CoreDNSCustom`, the `coredns-custom` convention) through the
//! MemberCluster's kubeconfig.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::member_cluster::{describe_kube_error, member_client, probe_dns};
use super::status::{FIELD_MANAGER, condition, update_status};
use super::{Context, Error, Reconcile};
use crate::api::cross_cloud_dns::{DnsClusterStatus, DnsTargetMode};
use crate::api::{CrossCloudDNS, CrossCloudDNSStatus, READY};
use crate::render::dns::render_cross_cloud_dns;
use crate::validate::Validate;

/// How often resolvers are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Failed probes in a row before a cluster leaves the failover chain.
pub const LEAVE_AFTER: u32 = 2;
/// Good probes in a row before it comes back.
pub const REJOIN_AFTER: u32 = 2;
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
        let inventory = ctx.stores.inventory();
        let errors = self.validate(&inventory);
        if !errors.is_empty() {
            return Err(Error::InvalidSpec(errors));
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
        let (namespace, config_map) = match &self.spec.target.config_map {
            Some(r) => (r.namespace.clone(), r.name.clone()),
            None => (
                DEFAULT_CONFIG_MAP.0.to_owned(),
                DEFAULT_CONFIG_MAP.1.to_owned(),
            ),
        };
        let key = format!("{name}.server");
        let dedicated = self.spec.target.mode == DnsTargetMode::Dedicated;
        if !dedicated {
            let applies = entries.iter_mut().map(|entry| {
                let config = configs.iter().find(|c| c.cluster == entry.cluster);
                let member = inventory.member_cluster(&entry.cluster);
                let (namespace, config_map, key) = (&namespace, &config_map, &key);
                let ctx = &ctx;
                async move {
                    let (Some(config), Some(member)) = (config, member) else {
                        return;
                    };
                    match put_server(ctx, member, namespace, config_map, key, &config.server).await
                    {
                        Ok(()) => entry.applied = true,
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
        announce(&self, &ctx, &previous.clusters, &entries).await;
        let applied = entries.iter().filter(|e| e.applied).count();
        let ready = if dedicated {
            condition(
                READY,
                Some(false),
                "NotImplemented",
                "target.mode Dedicated is rendered by `vigil render` but not applied yet; use CoreDNSCustom",
            )
        } else if applied == entries.len() {
            let out: Vec<&str> = entries
                .iter()
                .filter(|e| !e.in_failover)
                .map(|e| e.cluster.as_str())
                .collect();
            condition(
                READY,
                Some(true),
                "Applied",
                format!(
                    "configuration applied to {applied} clusters in {namespace}/{config_map} key {key}; {}",
                    if out.is_empty() {
                        "every resolver answers".to_owned()
                    } else {
                        format!("out of the failover chain: {}", out.join(", "))
                    }
                ),
            )
        } else {
            let failed: Vec<String> = entries
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

/// Writes `server` as `key` of the import ConfigMap in `member`, unless it holds it already.
/// Server-side apply owns only this key: the other keys of the ConfigMap stay.
async fn put_server(
    ctx: &Context,
    member: &crate::api::MemberCluster,
    namespace: &str,
    name: &str,
    key: &str,
    server: &str,
) -> Result<(), String> {
    let (client, api_server) = member_client(member, ctx).await.map_err(|f| f.message)?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client, namespace);
    let failed = |e: kube::Error| format!("API server {api_server}: {}", describe_kube_error(&e));
    if let Some(current) = config_maps.get_opt(name).await.map_err(failed)?
        && current
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(String::as_str)
            == Some(server)
    {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {key: server},
    });
    config_maps
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map(|_| ())
        .map_err(failed)
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
