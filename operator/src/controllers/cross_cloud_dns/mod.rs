//! The `CrossCloudDNS` controller, of the render-then-apply shape: probes every cluster's
//! resolver, keeps the clusters that answer in the failover chain ([`chain`], with
//! hysteresis), renders each cluster's CoreDNS server blocks and writes them into that
//! cluster ([`remote`]); the status and Events are pure functions of the result
//! ([`status`]).

pub mod chain;
mod remote;
pub mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

pub use self::chain::DnsRuntime;
use self::remote::Target;
use super::member_cluster::probe_dns;
use super::status::update_status;
use super::{Context, Error, Reconcile, finalizer};
use crate::api::CrossCloudDNS;
use crate::api::cross_cloud_dns::DnsClusterStatus;
use crate::inventory::Inventory;
use crate::render::dns::render_cross_cloud_dns;
use crate::validate::{FieldError, Validate};

/// How often resolvers are probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Keeps a deleted object until its configuration is gone from every member cluster.
pub const FINALIZER: &str = "vigil.io/crossclouddns-cleanup";
/// The import ConfigMap when `target.configMap` is unset.
pub const DEFAULT_CONFIG_MAP: (&str, &str) = ("kube-system", "coredns-custom");

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
        let previous = self.status.clone().unwrap_or_default().clusters;
        let mut entries = probe(&self, &ctx, &inventory, &previous).await;
        let in_chain = chain::in_chain(&entries);
        let configs =
            render_cross_cloud_dns(&self, &inventory, &|c| in_chain.iter().any(|i| i == c))
                .map_err(|e| Error::InvalidSpec(vec![FieldError::new("spec", e.0)]))?;
        remote::apply_all(&ctx, &self, &inventory, &configs, &previous, &mut entries).await;
        remote::clean_up_removed(&ctx, &self, &inventory, &previous, &mut entries).await;
        for (type_, reason, note) in status::announcements(&previous, &entries) {
            ctx.publish(self.as_ref(), type_, reason, note).await;
        }
        let target = Target::of(&self).describe(&self);
        let status = status::status(&self.spec.clusters, entries, &target);
        update_status(&ctx.client, self.as_ref(), status).await?;
        Ok(Action::requeue(PROBE_INTERVAL))
    }
}

/// Probes the resolvers of every cluster of the spec that exists, and decides its place in
/// the chain.
async fn probe(
    dns: &CrossCloudDNS,
    ctx: &Context,
    inventory: &Inventory,
    previous: &[DnsClusterStatus],
) -> Vec<DnsClusterStatus> {
    let name = dns.name_any();
    let mut entries = Vec::new();
    for cluster in &dns.spec.clusters {
        let Some(member) = inventory.member_cluster(cluster) else {
            continue;
        };
        let probe = probe_dns(&member.spec.dns.endpoints, &member.spec.dns.cluster_domain)
            .await
            .map(|_| ())
            .map_err(|f| f.message);
        let streak = ctx.dns.record(&format!("{name}/{cluster}"), probe.is_ok());
        entries.push(chain::entry(cluster, probe, streak, previous));
    }
    entries
}

/// The object is being deleted: remove its configuration from every cluster it was applied
/// to, then let it go.
async fn finalize(
    dns: &CrossCloudDNS,
    ctx: &Context,
    api: &Api<CrossCloudDNS>,
) -> Result<Action, Error> {
    let inventory = ctx.stores.references();
    let target = Target::of(dns);
    let applied = dns
        .status
        .iter()
        .flat_map(|s| &s.clusters)
        .map(|c| &c.cluster);
    let clusters = finalizer::spec_and_status_clusters(&dns.spec.clusters, applied);
    finalizer::release_after_clean_up(dns, api, FINALIZER, &inventory, &clusters, |member| {
        remote::clean_up(ctx, dns, &target, member)
    })
    .await
}
