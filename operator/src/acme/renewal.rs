//! When a certificate is renewed, and how long to wait after a failure: the backoff, or
//! the ACME server's `Retry-After` when it asks for longer.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// When to renew a certificate valid from `not_before` to `not_after`:
/// - `renew_before` before expiry, or
/// - when `percentage` % of the lifetime is left, or
/// - by default when two thirds of the lifetime has passed;
///
/// a `renew_before` at least as long as the lifetime would renew at once, forever, so the
/// default applies then. When the ACME server suggests a window (ARI, RFC 9773), the time is
/// a point inside it chosen from `seed` (stable across reconciles, spread across
/// certificates), unless the policy asks for an earlier one.
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    renew_before: Option<Duration>,
    percentage: Option<i32>,
    window: Option<(Timestamp, Timestamp)>,
    seed: &str,
) -> Timestamp {
    let lifetime = not_after.duration_since(not_before);
    let default = || not_before + lifetime * 2 / 3;
    let policy = match (renew_before, percentage) {
        (Some(before), _) => match SignedDuration::try_from(before) {
            Ok(before) if before < lifetime => not_after - before,
            _ => default(),
        },
        (None, Some(pct)) => not_after - lifetime * pct.clamp(1, 99) / 100,
        (None, None) => default(),
    };
    match window {
        Some((start, end)) if end > start => {
            let span = end.duration_since(start).as_secs().max(1);
            let offset = i64::try_from(fnv(seed) % u64::try_from(span).unwrap_or(1)).unwrap_or(0);
            policy.min(start + SignedDuration::from_secs(offset))
        }
        Some((start, _)) => policy.min(start),
        None => policy,
    }
}

/// How long to wait after the `attempts`-th failed issuance in a row: `initial`, doubling,
/// at most `max`.
pub fn retry_delay(attempts: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    initial.saturating_mul(1u32 << doublings).min(max)
}

/// The longest wait a server's `Retry-After` imposes (and the longest an ARI answer is
/// kept): a longer one is shortened, so that a wrong header cannot stall an object for days.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(6 * 3600);

/// The wait before the next attempt after a failure: `backoff`, or the server's
/// `retry_after` when it is longer (at most [`RETRY_AFTER_MAX`]).
pub fn honour_retry_after(backoff: Duration, retry_after: Option<Duration>) -> Duration {
    backoff.max(retry_after.unwrap_or_default().min(RETRY_AFTER_MAX))
}

/// `next attempt in 1h30m`, for condition messages and Events: whole seconds, so that the
/// same wait always reads the same.
pub fn next_attempt(wait: Duration) -> String {
    use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
    static PRINTER: SpanPrinter = SpanPrinter::new()
        .designator(Designator::Compact)
        .spacing(Spacing::None);
    let whole = Duration::from_secs(wait.as_secs());
    format!(
        "next attempt in {}",
        PRINTER.unsigned_duration_to_string(&whole)
    )
}

/// FNV-1a: a small, stable hash (the standard library's is seeded per process).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    #[test]
    fn renewal_follows_the_policy() {
        let (nb, na) = (at(0), at(90 * 86400));
        assert_eq!(renewal_time(nb, na, None, None, None, "x"), at(60 * 86400));
        let before = Some(Duration::from_secs(30 * 86400));
        assert_eq!(
            renewal_time(nb, na, before, None, None, "x"),
            at(60 * 86400)
        );
        assert_eq!(
            renewal_time(nb, na, None, Some(10), None, "x"),
            at(81 * 86400)
        );
        let too_long = Some(Duration::from_secs(100 * 86400));
        assert_eq!(
            renewal_time(nb, na, too_long, None, None, "x"),
            at(60 * 86400)
        );
    }

    #[test]
    fn a_suggested_window_is_honoured_and_spreads_certificates() {
        let (nb, na) = (at(0), at(90 * 86400));
        let window = Some((at(50 * 86400), at(52 * 86400)));
        let a = renewal_time(nb, na, None, None, window, "ns/a");
        let b = renewal_time(nb, na, None, None, window, "ns/b");
        for t in [a, b] {
            assert!(t >= at(50 * 86400) && t < at(52 * 86400), "{t}");
        }
        assert_ne!(a, b);
        assert_eq!(a, renewal_time(nb, na, None, None, window, "ns/a"));
        // A window in the past (the CA wants the certificate replaced now).
        let past = Some((at(1), at(2)));
        assert!(renewal_time(nb, na, None, None, past, "ns/a") <= at(2));
        // A policy earlier than the window wins.
        let early = Some(Duration::from_secs(80 * 86400));
        assert_eq!(
            renewal_time(nb, na, early, None, window, "ns/a"),
            at(10 * 86400)
        );
    }

    #[test]
    fn retries_double_up_to_the_maximum() {
        let (i, m) = (Duration::from_secs(3600), Duration::from_secs(32 * 3600));
        let delays: Vec<u64> = (1..=8)
            .map(|n| retry_delay(n, i, m).as_secs() / 3600)
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(retry_delay(0, i, m), i);
        assert_eq!(retry_delay(u32::MAX, i, m), m);
    }

    #[test]
    fn a_retry_after_longer_than_the_backoff_wins_up_to_six_hours() {
        let second = Duration::from_secs(1);
        let hour = Duration::from_secs(3600);
        assert_eq!(honour_retry_after(second, Some(hour)), hour);
        assert_eq!(honour_retry_after(2 * hour, Some(hour)), 2 * hour);
        assert_eq!(honour_retry_after(second, None), second);
        assert_eq!(
            honour_retry_after(second, Some(Duration::from_secs(30 * 86400))),
            RETRY_AFTER_MAX
        );
        // The clamp shortens the server's wait, never the backoff.
        assert_eq!(honour_retry_after(32 * hour, Some(7 * hour)), 32 * hour);
        assert_eq!(next_attempt(hour), "next attempt in 1h");
        assert_eq!(
            next_attempt(Duration::from_millis(5_400_900)),
            "next attempt in 1h30m"
        );
    }
}
