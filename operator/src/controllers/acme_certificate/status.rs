//! What an `AcmeCertificate` decides and reports once the world is observed: whether to
//! issue now or wait out the backoff, and its `Ready` condition and dates. Pure.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::acme::cert::CertInfo;
use crate::api::{AcmeCertificate, AcmeCertificateStatus, READY};
use crate::controllers::status::condition;

/// The status the reconcile starts from: the last one, whose failure backoff a spec change
/// resets.
pub fn carried_over(cert: &AcmeCertificate) -> AcmeCertificateStatus {
    let mut status = cert.status.clone().unwrap_or_default();
    if status.observed_generation != cert.metadata.generation {
        status.failed_issuance_attempts = None;
        status.last_failure_time = None;
    }
    status
}

/// What to do about a reason to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No reason to issue.
    Nothing,
    /// Issue now.
    Issue,
    /// Failed before and the backoff (`wait` after the last failure) has not passed: look
    /// again after this long.
    Wait(Duration),
}

/// Whether to issue now: when there is a reason (`triggered`) and no failure's backoff is
/// still running.
pub fn next_step(
    triggered: bool,
    status: &AcmeCertificateStatus,
    wait: Duration,
    now: Timestamp,
) -> Step {
    if !triggered {
        return Step::Nothing;
    }
    let failures = status.failed_issuance_attempts.unwrap_or(0);
    let retry_at = status
        .last_failure_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| t + jiff::SignedDuration::try_from(wait).unwrap_or_default());
    match retry_at {
        Some(at) if failures > 0 && at > now => Step::Wait(until(now, at)),
        _ => Step::Issue,
    }
}

/// Reports the certificate now in the Secret (its dates, revision and `Ready`: `Issued`
/// while valid, `Expired` after) and returns when to look again at the latest: at the
/// renewal time, unless an issuance is failing (its backoff decides then).
pub fn issued(
    status: &mut AcmeCertificateStatus,
    info: &CertInfo,
    revision: i64,
    renew_at: Timestamp,
    now: Timestamp,
) -> Option<Duration> {
    let valid = info.not_after > now;
    status.not_before = Some(rfc3339(info.not_before));
    status.not_after = Some(rfc3339(info.not_after));
    status.renewal_time = Some(rfc3339(renew_at));
    status.revision = Some(revision);
    let failing = status.failed_issuance_attempts.unwrap_or(0) > 0;
    let message = format!(
        "certificate valid until {}, renewal at {}{}",
        rfc3339(info.not_after),
        rfc3339(renew_at),
        if failing {
            "; the last issuance failed, see Issuing"
        } else {
            ""
        }
    );
    let reason = if valid { "Issued" } else { "Expired" };
    set_condition(status, condition(READY, Some(valid), reason, message));
    (!failing).then(|| until(now, renew_at))
}

/// Reports that there is no certificate yet, unless `Ready` already says why not.
pub fn not_issued(status: &mut AcmeCertificateStatus) {
    if !status
        .conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "False")
    {
        set_condition(
            status,
            condition(READY, Some(false), "NotIssued", "no certificate yet"),
        );
    }
}

/// Sets `new` in place of the condition of its type, `Ready` first.
pub fn set_condition(status: &mut AcmeCertificateStatus, new: Condition) {
    status.conditions.retain(|c| c.type_ != new.type_);
    status.conditions.push(new);
    status.conditions.sort_by_key(|c| c.type_ != READY);
}

/// A time as status shows it: `2026-12-08T01:02:03Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// How long until `at` (zero when it has passed).
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).expect("a time")
    }

    fn failed(times: i32, last: i64) -> AcmeCertificateStatus {
        AcmeCertificateStatus {
            failed_issuance_attempts: Some(times),
            last_failure_time: Some(rfc3339(at(last))),
            ..Default::default()
        }
    }

    #[test]
    fn a_reason_to_issue_waits_out_the_backoff_of_the_last_failure() {
        let wait = Duration::from_secs(300);
        let never = AcmeCertificateStatus::default();
        let cases = [
            ("no reason", false, failed(1, 0), 10, Step::Nothing),
            ("never failed", true, never, 0, Step::Issue),
            (
                "failed 100 s ago",
                true,
                failed(2, 0),
                100,
                Step::Wait(Duration::from_secs(200)),
            ),
            (
                "the backoff has passed",
                true,
                failed(2, 0),
                300,
                Step::Issue,
            ),
            ("long ago", true, failed(5, 0), 4000, Step::Issue),
            // A spec change resets the count (carried_over) but may leave the time.
            (
                "no failures counted",
                true,
                AcmeCertificateStatus {
                    failed_issuance_attempts: None,
                    ..failed(1, 0)
                },
                1,
                Step::Issue,
            ),
            (
                "an unreadable time does not block",
                true,
                AcmeCertificateStatus {
                    last_failure_time: Some("yesterday".into()),
                    ..failed(1, 0)
                },
                1,
                Step::Issue,
            ),
        ];
        for (case, triggered, status, now, expected) in cases {
            assert_eq!(
                next_step(triggered, &status, wait, at(now)),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn a_new_generation_forgets_the_failures() {
        let mut cert: AcmeCertificate = serde_yaml_ng::from_str(
            "apiVersion: vigil.io/v1alpha1\nkind: AcmeCertificate\nmetadata: {name: web, namespace: shop, generation: 3}\nspec:\n  secretName: web-tls\n  dnsNames: [web.example.com]\n  issuerRef: {name: pebble}\n",
        )
        .expect("a certificate");
        cert.status = Some(AcmeCertificateStatus {
            observed_generation: Some(3),
            revision: Some(4),
            ..failed(2, 0)
        });
        assert_eq!(carried_over(&cert).failed_issuance_attempts, Some(2));
        cert.metadata.generation = Some(4);
        let status = carried_over(&cert);
        assert_eq!(
            (status.failed_issuance_attempts, status.last_failure_time),
            (None, None)
        );
        assert_eq!(status.revision, Some(4), "the rest is kept");
    }

    fn info(not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            not_before: at(not_before),
            not_after: at(not_after),
            dns_names: vec!["web.example.com".into()],
            leaf_der: Vec::new(),
            root_pem: None,
        }
    }

    #[test]
    fn the_certificate_in_the_secret_is_reported_with_its_dates() {
        let day = 86_400;
        let mut status = AcmeCertificateStatus::default();
        not_issued(&mut status);
        assert_eq!(status.conditions[0].reason, "NotIssued");

        let wake = issued(&mut status, &info(0, 90 * day), 2, at(60 * day), at(day));
        assert_eq!(wake, Some(Duration::from_secs(59 * day as u64)));
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Issued")
        );
        assert_eq!(
            ready.message,
            "certificate valid until 2027-04-15T08:00:00Z, renewal at 2027-03-16T08:00:00Z"
        );
        assert_eq!(status.not_before.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert_eq!(status.revision, Some(2));
        // Once issued, a later look without a certificate keeps the reason that says why.
        status.conditions[0].status = "False".into();
        status.conditions[0].reason = "SecretUnreadable".into();
        not_issued(&mut status);
        assert_eq!(status.conditions[0].reason, "SecretUnreadable");

        // Failing: the backoff decides the next look, and Ready says so.
        let mut failing = failed(1, 0);
        let wake = issued(&mut failing, &info(0, 90 * day), 2, at(60 * day), at(day));
        assert_eq!(wake, None);
        assert!(
            failing.conditions[0]
                .message
                .ends_with("; the last issuance failed, see Issuing")
        );
        // Past its end: Expired, and the renewal (long due) is now.
        let mut expired = AcmeCertificateStatus::default();
        let wake = issued(
            &mut expired,
            &info(0, 90 * day),
            2,
            at(60 * day),
            at(91 * day),
        );
        assert_eq!(wake, Some(Duration::ZERO));
        assert_eq!(
            (
                expired.conditions[0].status.as_str(),
                expired.conditions[0].reason.as_str()
            ),
            ("False", "Expired")
        );
    }
}
