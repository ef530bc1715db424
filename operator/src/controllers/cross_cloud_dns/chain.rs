//! The failover chain: which clusters' resolvers the others ask, decided from probe
//! streaks with hysteresis so that a flapping resolver does not churn the configuration.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::api::cross_cloud_dns::DnsClusterStatus;

/// Failed probes in a row before a cluster leaves the failover chain.
pub const LEAVE_AFTER: u32 = 2;
/// Good probes in a row before it comes back.
pub const REJOIN_AFTER: u32 = 2;

/// Probe streaks per `<object>/<cluster>`: positive for good probes in a row, negative for
/// failed ones. Kept in memory; the membership they decide is kept in status.
#[derive(Debug, Default)]
pub struct DnsRuntime {
    streaks: Mutex<HashMap<String, i64>>,
}

impl DnsRuntime {
    /// Records a probe and returns the streak it makes.
    pub fn record(&self, key: &str, ok: bool) -> i64 {
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

/// A cluster's entry after a probe (`Err` with what failed), before anything is applied.
/// A cluster new to the object starts in the chain.
pub fn entry(
    cluster: &str,
    probe: Result<(), String>,
    streak: i64,
    previous: &[DnsClusterStatus],
) -> DnsClusterStatus {
    let was_in = previous
        .iter()
        .find(|c| c.cluster == cluster)
        .is_none_or(|c| c.in_failover);
    DnsClusterStatus {
        cluster: cluster.to_owned(),
        resolver_healthy: probe.is_ok(),
        in_failover: next_membership(was_in, streak),
        applied: false,
        dedicated_address: None,
        message: probe.err(),
    }
}

/// The clusters in the chain.
pub fn in_chain(entries: &[DnsClusterStatus]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e.in_failover)
        .map(|e| e.cluster.clone())
        .collect()
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

    #[test]
    fn an_entry_starts_from_the_previous_membership() {
        let out = DnsClusterStatus {
            cluster: "aliyun".into(),
            resolver_healthy: false,
            in_failover: false,
            applied: true,
            dedicated_address: None,
            message: Some("timed out".into()),
        };
        let previous = [out];
        // (cluster, probe, streak) → (healthy, in the chain, message)
        type Case = (
            &'static str,
            Result<(), String>,
            i64,
            (bool, bool, Option<&'static str>),
        );
        let cases: &[Case] = &[
            ("aws", Ok(()), 1, (true, true, None)),
            (
                "aws",
                Err("refused".into()),
                -1,
                (false, true, Some("refused")),
            ),
            (
                "aws",
                Err("refused".into()),
                -2,
                (false, false, Some("refused")),
            ),
            ("aliyun", Ok(()), 1, (true, false, None)),
            ("aliyun", Ok(()), 2, (true, true, None)),
        ];
        for (cluster, probe, streak, (healthy, in_failover, message)) in cases {
            let entry = entry(cluster, probe.clone(), *streak, &previous);
            assert_eq!(
                (
                    entry.resolver_healthy,
                    entry.in_failover,
                    entry.message.as_deref()
                ),
                (*healthy, *in_failover, *message),
                "{cluster} {probe:?} {streak}"
            );
            assert!(!entry.applied && entry.dedicated_address.is_none());
        }
        let entries = [
            entry("aws", Ok(()), 1, &previous),
            entry("aliyun", Ok(()), 1, &previous),
        ];
        assert_eq!(in_chain(&entries), ["aws"]);
    }
}
