//! Crash capture: which container terminations are crashes, what a snapshot of one holds,
//! and how snapshots are kept as a bounded ring in a ConfigMap. Pure: the controller
//! (`controllers::supervised_workload`) reads pods and logs and writes the ConfigMap.

pub mod breaker;
pub mod parse;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use serde::{Deserialize, Serialize};

pub use parse::PanicSummary;

/// Marker appended where a snapshot was cut to fit `maxSnapshotBytes`.
pub const TRUNCATED: &str = "…[truncated by Vigil]";
/// Total bytes of snapshots kept in one ConfigMap (a ConfigMap holds at most 1 MiB).
pub const CONFIG_MAP_BUDGET: usize = 900 * 1024;
/// Key of the snapshot sealed when the breaker opened; the ring never drops it.
pub const SEALED_KEY: &str = "sealed.json";

/// One crash, as kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// When the container terminated (RFC 3339).
    pub time: String,
    /// The pod.
    pub pod: String,
    /// The pod's UID (crashes are told apart by pod, container and restart count).
    pub pod_uid: String,
    /// The node it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The container.
    pub container: String,
    /// The runtime's ID of the crashed instance (`containerd://...`): the instance whose log
    /// is read, and what `crictl inspect` takes on the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    /// Its image.
    pub image: String,
    /// The exit code.
    pub exit_code: i32,
    /// The signal that killed it, when one did: as the runtime reported it, or read from an
    /// exit code of 128+N, which is how runc reports a death by signal N (the kubelet does
    /// not fill the container status' `signal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The kubelet's reason: `Error`, `OOMKilled`, ...
    pub reason: String,
    /// The container's restart count after this crash.
    pub restart_count: i32,
    /// The termination message (with `FallbackToLogsOnError`, the end of the log).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub termination_message: String,
    /// The last lines of the crashed container's log, or why they could not be read.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub log_tail: String,
    /// The panic or exception found in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic: Option<PanicSummary>,
    /// Restarts before this one that happened between two looks (the pod status keeps only
    /// the last termination); they count as crashes too.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unseen_restarts: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl Snapshot {
    /// The identity of the crash: the same termination seen twice is one crash.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.pod_uid, self.container, self.restart_count)
    }

    /// One line for status and Events.
    pub fn one_line(&self) -> String {
        let how = match (self.signal, &self.panic) {
            (_, Some(panic)) => format!(": {}", panic.message),
            (Some(signal), None) => match signal_name(signal) {
                Some(name) => format!(", signal {signal} ({name})"),
                None => format!(", signal {signal}"),
            },
            (None, None) => String::new(),
        };
        let unseen = match self.unseen_restarts {
            0 => String::new(),
            n => format!(" (after {n} restarts not seen, counted as crashes)"),
        };
        format!(
            "{} container {} of pod {} exited {} ({}){how}{unseen}",
            self.time, self.container, self.pod, self.exit_code, self.reason
        )
    }

    /// The snapshot as JSON, at most `max_bytes` long: the log tail is cut first (its
    /// oldest lines), then the termination message, each marked with [`TRUNCATED`].
    pub fn to_bounded_json(&self, max_bytes: usize) -> String {
        let mut snapshot = self.clone();
        for _ in 0..64 {
            let text = serde_json::to_string_pretty(&snapshot).unwrap_or_default();
            let over = text.len().saturating_sub(max_bytes);
            if over == 0 {
                return text;
            }
            let cut = over + TRUNCATED.len() + 16;
            if snapshot.log_tail.len() > TRUNCATED.len() {
                snapshot.log_tail = keep_end(&snapshot.log_tail, cut);
            } else if snapshot.termination_message.len() > TRUNCATED.len() {
                snapshot.termination_message = keep_end(&snapshot.termination_message, cut);
            } else if let Some(panic) = snapshot.panic.as_mut().filter(|p| !p.frames.is_empty()) {
                panic.frames.pop();
            } else {
                return text;
            }
        }
        serde_json::to_string(&snapshot).unwrap_or_default()
    }
}

/// `text` without its first `cut` bytes (at a character boundary), marked as truncated.
fn keep_end(text: &str, cut: usize) -> String {
    let body = text.strip_prefix(TRUNCATED).unwrap_or(text);
    let mut at = cut.min(body.len());
    while !body.is_char_boundary(at) {
        at += 1;
    }
    format!("{TRUNCATED}{}", &body[at..])
}

/// The signal behind an exit code of 128+N (N from 1 to 31), as runc and shells report a
/// process killed by signal N.
pub fn signal_of_exit(exit_code: i32) -> Option<i32> {
    (129..=159).contains(&exit_code).then(|| exit_code - 128)
}

/// The name of the signals a crash usually ends with.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        31 => "SIGSYS",
        _ => return None,
    })
}

/// Whether a termination is a crash: a non-zero exit, a signal, or an OOM kill. A container
/// that exits 0 finished; one killed during a pod deletion (exit 143 after SIGTERM, with the
/// pod being deleted) is not counted by the caller.
pub fn is_crash(terminated: &ContainerStateTerminated) -> bool {
    terminated.exit_code != 0
        || terminated.signal.is_some_and(|s| s != 0)
        || terminated.reason.as_deref() == Some("OOMKilled")
}

/// The crashes a pod shows: for every container, the last termination (`lastState`, after
/// a restart) or the current one (`state`, for a pod that will not restart), when it is a
/// crash. Init containers count too. Log tails and panic summaries are filled in later.
pub fn crashes_of(pod: &Pod) -> Vec<Snapshot> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    let mut out = Vec::new();
    for container in statuses {
        let current = container.state.as_ref().and_then(|s| s.terminated.as_ref());
        let last = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref());
        // A terminated current state is the newest; otherwise the last one, which the
        // restart count already counts.
        let (terminated, restart_count) = match (current, last) {
            (Some(t), _) => (t, container.restart_count + 1),
            (None, Some(t)) => (t, container.restart_count),
            (None, None) => continue,
        };
        if !is_crash(terminated) {
            continue;
        }
        out.push(Snapshot {
            time: terminated
                .finished_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            container: container.name.clone(),
            container_id: terminated.container_id.clone().unwrap_or_default(),
            image: container.image.clone(),
            exit_code: terminated.exit_code,
            signal: terminated
                .signal
                .filter(|s| *s != 0)
                .or_else(|| signal_of_exit(terminated.exit_code)),
            reason: terminated
                .reason
                .clone()
                .unwrap_or_else(|| "Error".to_owned()),
            restart_count,
            termination_message: terminated.message.clone().unwrap_or_default(),
            log_tail: String::new(),
            panic: None,
            unseen_restarts: 0,
        });
    }
    out
}

/// The ring after adding `snapshots` (oldest first): keys `crash-<sequence>.json`, the
/// newest `retain` kept, older ones dropped first, and fewer when the ConfigMap would grow
/// past [`CONFIG_MAP_BUDGET`]. The sealed snapshot stays whatever happens. Returns the new
/// data and the key of each added snapshot.
pub fn ring_add(
    data: &BTreeMap<String, String>,
    snapshots: &[String],
    retain: usize,
) -> (BTreeMap<String, String>, Vec<String>) {
    let sequence = |key: &str| -> Option<u64> {
        key.strip_prefix("crash-")?
            .strip_suffix(".json")?
            .parse()
            .ok()
    };
    let first = data
        .keys()
        .filter_map(|k| sequence(k))
        .max()
        .map_or(1, |s| s + 1);
    let mut out = data.clone();
    let mut added = Vec::new();
    for (next, snapshot) in (first..).zip(snapshots) {
        let key = format!("crash-{next:08}.json");
        out.insert(key.clone(), snapshot.clone());
        added.push(key);
    }
    let size =
        |m: &BTreeMap<String, String>| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    loop {
        let ring: Vec<String> = out
            .keys()
            .filter(|k| sequence(k).is_some())
            .cloned()
            .collect();
        if ring.len() <= retain.max(1) && (size(&out) <= CONFIG_MAP_BUDGET || ring.len() <= 1) {
            break;
        }
        // Keys sort by sequence (zero-padded): the first is the oldest.
        if let Some(oldest) = ring.first() {
            out.remove(oldest);
        }
    }
    (out, added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a pod")
    }

    #[test]
    fn crashes_are_non_zero_exits_signals_and_oom_kills() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "orders-1", "uid": "u1"},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"containerStatuses": [
                {"name": "app", "image": "orders:1", "ready": false, "restartCount": 3,
                 "lastState": {"terminated": {"exitCode": 2, "reason": "Error", "message": "panic: boom", "finishedAt": "2026-11-27T08:00:00Z"}},
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"name": "ok", "image": "sidecar:1", "ready": true, "restartCount": 1,
                 "lastState": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "oom", "image": "cache:1", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "OOMKilled"}}}
            ]}
        }));
        let crashes = crashes_of(&p);
        assert_eq!(crashes.len(), 2);
        assert_eq!(crashes[0].id(), "u1/app/3");
        assert_eq!(crashes[0].node.as_deref(), Some("n1"));
        assert_eq!(crashes[1].id(), "u1/oom/1");
        assert_eq!(
            crashes[0].one_line(),
            "2026-11-27T08:00:00Z container app of pod orders-1 exited 2 (Error)"
        );
    }

    #[test]
    fn an_exit_of_128_plus_n_is_a_death_by_signal_n() {
        // What the kubelet reports for a program killed by SIGSEGV: no `signal`, exit 139.
        let p = pod(serde_json::json!({
            "metadata": {"name": "inventory-1", "uid": "u2"},
            "spec": {"containers": []},
            "status": {"containerStatuses": [
                {"name": "app", "image": "inventory:1", "ready": false, "restartCount": 1,
                 "lastState": {"terminated": {"exitCode": 139, "reason": "Error", "finishedAt": "2026-11-27T08:00:00Z"}}},
                {"name": "exit", "image": "job:1", "ready": false, "restartCount": 1,
                 "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}
            ]}
        }));
        let crashes = crashes_of(&p);
        assert_eq!(crashes[0].signal, Some(11));
        assert_eq!(
            crashes[0].one_line(),
            "2026-11-27T08:00:00Z container app of pod inventory-1 exited 139 (Error), signal 11 (SIGSEGV)"
        );
        assert_eq!(
            crashes[1].signal, None,
            "an exit code below 129 is the program's own"
        );
        assert_eq!(signal_of_exit(128), None);
        assert_eq!(signal_of_exit(160), None);
    }

    #[test]
    fn snapshots_are_bounded_with_a_marker() {
        let snapshot = Snapshot {
            time: "t".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            node: None,
            container: "c".into(),
            container_id: String::new(),
            image: "i".into(),
            exit_code: 1,
            signal: None,
            reason: "Error".into(),
            restart_count: 1,
            termination_message: "m".repeat(3000),
            log_tail: (0..500).map(|i| format!("line {i}\n")).collect(),
            panic: None,
            unseen_restarts: 0,
        };
        let json = snapshot.to_bounded_json(2048);
        assert!(json.len() <= 2048, "{}", json.len());
        let back: Snapshot = serde_json::from_str(&json).expect("still JSON");
        assert!(back.log_tail.starts_with(TRUNCATED) || back.log_tail.is_empty());
        assert!(back.termination_message.starts_with(TRUNCATED));
        let small = snapshot.to_bounded_json(1 << 20);
        assert!(!small.contains(TRUNCATED), "nothing cut when it fits");
    }

    #[test]
    fn the_ring_keeps_the_newest_and_the_sealed_one() {
        let mut data = BTreeMap::from([(SEALED_KEY.to_owned(), "sealed".to_owned())]);
        for i in 0..5 {
            let (next, added) = ring_add(&data, &[format!("s{i}")], 3);
            assert_eq!(added, [format!("crash-{:08}.json", i + 1)]);
            data = next;
        }
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "crash-00000003.json",
                "crash-00000004.json",
                "crash-00000005.json",
                SEALED_KEY
            ]
        );
        // Large snapshots: fewer than `retain` fit in the budget.
        let big = "x".repeat(400 * 1024);
        let (data, _) = ring_add(&BTreeMap::new(), &[big.clone(), big.clone(), big], 10);
        assert_eq!(data.len(), 2);
    }
}
