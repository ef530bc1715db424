//! What a `CrossCloudDNS` reports: its `Ready` condition and the Events of clusters
//! leaving and rejoining the chain, pure functions of the entries.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;

use crate::api::cross_cloud_dns::vocabulary::*;
use crate::api::cross_cloud_dns::{DnsClusterStatus, DnsTargetMode};
use crate::api::{CrossCloudDNSStatus, READY};
use crate::controllers::status::condition;

/// Where a `CrossCloudDNS` writes each cluster's configuration: the key of its import
/// ConfigMap (`CoreDNSCustom`), or a Vigil-managed CoreDNS (`Dedicated`).
pub fn plan(mode: DnsTargetMode, before: Option<&DnsClusterStatus>) -> Plan {
    let was_dedicated = before.map(|b| b.dedicated_address.is_some());
    match mode {
        DnsTargetMode::Dedicated => Plan {
            remove_first: (was_dedicated == Some(false) && before.is_some_and(|b| b.applied))
                .then_some(Write::Key),
            write: Write::Dedicated,
        },
        DnsTargetMode::CoreDnsCustom => Plan {
            remove_first: (was_dedicated == Some(true)).then_some(Write::Dedicated),
            write: Write::Key,
        },
    }
}

/// What is written in a member cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// The object's key of the import ConfigMap.
    Key,
    /// The Vigil-managed CoreDNS.
    Dedicated,
}

/// What to do in one cluster: a target that changed mode leaves nothing behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// What the other mode wrote there, to remove first.
    pub remove_first: Option<Write>,
    /// What to write.
    pub write: Write,
}

/// What the object may have written in a cluster, to remove when it lets the cluster go:
/// the current mode's, and the other mode's when status says it was applied.
pub fn to_remove(mode: DnsTargetMode, entry: Option<&DnsClusterStatus>) -> Vec<Write> {
    let dedicated_now = mode == DnsTargetMode::Dedicated;
    let key = !dedicated_now || entry.is_some_and(|e| e.applied && e.dedicated_address.is_none());
    let dedicated = dedicated_now || entry.is_some_and(|e| e.dedicated_address.is_some());
    [(key, Write::Key), (dedicated, Write::Dedicated)]
        .into_iter()
        .filter_map(|(wrote, what)| wrote.then_some(what))
        .collect()
}

/// The status: `Ready` when every cluster of the spec has the configuration (saying where
/// it went and who is out of the chain), otherwise which clusters failed and why.
pub fn status(
    clusters: &[String],
    entries: Vec<DnsClusterStatus>,
    target: &str,
) -> CrossCloudDNSStatus {
    CrossCloudDNSStatus {
        observed_generation: None,
        conditions: vec![ready(clusters, &entries, target)],
        clusters: entries,
    }
}

fn ready(clusters: &[String], entries: &[DnsClusterStatus], target: &str) -> Condition {
    let wanted: Vec<&DnsClusterStatus> = entries
        .iter()
        .filter(|e| clusters.contains(&e.cluster))
        .collect();
    let applied = wanted.iter().filter(|e| e.applied).count();
    if applied == wanted.len() {
        let out: Vec<&str> = wanted
            .iter()
            .filter(|e| !e.in_failover)
            .map(|e| e.cluster.as_str())
            .collect();
        let chain = if out.is_empty() {
            "every resolver answers".to_owned()
        } else {
            format!("out of the failover chain: {}", out.join(", "))
        };
        condition(
            READY,
            Some(true),
            APPLIED,
            format!("configuration applied to {applied} clusters {target}; {chain}"),
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
            APPLY_FAILED,
            format!("not applied to {}", failed.join("; ")),
        )
    }
}

/// The Events of clusters that left or rejoined the chain between `before` and `after`.
pub fn announcements(
    before: &[DnsClusterStatus],
    after: &[DnsClusterStatus],
) -> Vec<(EventType, &'static str, String)> {
    after
        .iter()
        .filter_map(|entry| {
            let was_in = before
                .iter()
                .find(|b| b.cluster == entry.cluster)
                .is_none_or(|b| b.in_failover);
            match (was_in, entry.in_failover) {
                (true, false) => Some((
                    EventType::Warning,
                    CLUSTER_LEFT,
                    format!(
                        "{} left the failover chain: {}",
                        entry.cluster,
                        entry.message.clone().unwrap_or_default()
                    ),
                )),
                (false, true) => Some((
                    EventType::Normal,
                    CLUSTER_REJOINED,
                    format!(
                        "{} answers again and rejoined the failover chain",
                        entry.cluster
                    ),
                )),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cluster: &str, in_failover: bool, applied: bool, dedicated: bool) -> DnsClusterStatus {
        DnsClusterStatus {
            cluster: cluster.into(),
            resolver_healthy: in_failover,
            in_failover,
            applied,
            dedicated_address: dedicated.then(|| "10.96.0.53".into()),
            message: (!in_failover || !applied).then(|| format!("{cluster} failed")),
        }
    }

    #[test]
    fn a_changed_mode_removes_what_the_other_wrote() {
        use DnsTargetMode::{CoreDnsCustom, Dedicated};
        let key_applied = entry("a", true, true, false);
        let key_failed = entry("a", true, false, false);
        let dedicated = entry("a", true, true, true);
        let p = |remove_first, write| Plan {
            remove_first,
            write,
        };
        let cases = [
            ("new, key", CoreDnsCustom, None, p(None, Write::Key)),
            ("new, dedicated", Dedicated, None, p(None, Write::Dedicated)),
            (
                "key stays key",
                CoreDnsCustom,
                Some(&key_applied),
                p(None, Write::Key),
            ),
            (
                "key to dedicated",
                Dedicated,
                Some(&key_applied),
                p(Some(Write::Key), Write::Dedicated),
            ),
            (
                "a key never applied has nothing to remove",
                Dedicated,
                Some(&key_failed),
                p(None, Write::Dedicated),
            ),
            (
                "dedicated to key",
                CoreDnsCustom,
                Some(&dedicated),
                p(Some(Write::Dedicated), Write::Key),
            ),
            (
                "dedicated stays",
                Dedicated,
                Some(&dedicated),
                p(None, Write::Dedicated),
            ),
        ];
        for (case, mode, before, expected) in cases {
            assert_eq!(plan(mode, before), expected, "{case}");
        }
    }

    #[test]
    fn letting_a_cluster_go_removes_what_may_be_there() {
        use DnsTargetMode::{CoreDnsCustom, Dedicated};
        let key = entry("a", true, true, false);
        let dedicated = entry("a", true, true, true);
        assert_eq!(to_remove(CoreDnsCustom, None), [Write::Key]);
        assert_eq!(to_remove(CoreDnsCustom, Some(&key)), [Write::Key]);
        assert_eq!(
            to_remove(CoreDnsCustom, Some(&dedicated)),
            [Write::Key, Write::Dedicated]
        );
        assert_eq!(to_remove(Dedicated, None), [Write::Dedicated]);
        assert_eq!(
            to_remove(Dedicated, Some(&key)),
            [Write::Key, Write::Dedicated]
        );
        assert_eq!(to_remove(Dedicated, Some(&dedicated)), [Write::Dedicated]);
    }

    #[test]
    fn ready_says_where_and_who_is_out_or_what_failed() {
        let clusters: Vec<String> = ["aws", "aliyun", "vmware"].map(String::from).to_vec();
        let target = "in kube-system/coredns-custom key mesh.server";
        let all = vec![
            entry("aws", true, true, false),
            entry("aliyun", false, true, false),
            entry("vmware", true, true, false),
            // Removed from the spec, cleanup pending: not counted.
            entry("old", true, false, false),
        ];
        let ready = &status(&clusters, all, target).conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Applied")
        );
        assert_eq!(
            ready.message,
            "configuration applied to 3 clusters in kube-system/coredns-custom key mesh.server; out of the failover chain: aliyun"
        );
        let healthy = vec![entry("aws", true, true, false)];
        let ready = &status(&clusters[..1], healthy, target).conditions[0];
        assert!(
            ready.message.ends_with("; every resolver answers"),
            "{}",
            ready.message
        );
        let failed = vec![
            entry("aws", true, true, false),
            entry("vmware", true, false, false),
        ];
        let ready = &status(&clusters, failed, target).conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ApplyFailed")
        );
        assert_eq!(ready.message, "not applied to vmware: vmware failed");
    }

    #[test]
    fn leaving_and_rejoining_are_announced_once() {
        let before = [
            entry("aws", true, true, false),
            entry("aliyun", false, true, false),
        ];
        let after = [
            entry("aws", false, true, false),
            entry("aliyun", true, true, false),
            entry("new", true, true, false),
        ];
        let said: Vec<(String, &str, String)> = announcements(&before, &after)
            .into_iter()
            .map(|(t, r, n)| (format!("{t:?}"), r, n))
            .collect();
        assert_eq!(
            said,
            [
                (
                    "Warning".into(),
                    "ClusterLeft",
                    "aws left the failover chain: aws failed".into()
                ),
                (
                    "Normal".into(),
                    "ClusterRejoined",
                    "aliyun answers again and rejoined the failover chain".into()
                ),
            ]
        );
        assert!(announcements(&after, &after).is_empty());
    }
}
