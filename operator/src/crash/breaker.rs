//! The crash-loop circuit breaker as a pure state machine.
//!
//! - **Closed**: crashes are counted over the sliding `window`; `maxCrashes` of them open it.
//! - **Open**: the action has run (scaled to zero, suspended, or only reported). After the
//!   current cooldown it goes half-open.
//! - **HalfOpen**: one replica runs again (the CronJob is resumed). A crash reopens the
//!   breaker with the cooldown doubled, up to `maxCooldown`. A probation period without a
//!   crash (as long as `window`) closes it, and the replicas come back.
//!
//! Everything the machine needs between steps is in [`State`], which the controller keeps
//! in the object's status so that an operator restart changes nothing.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The breaker's phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Crashes are counted; the workload runs.
    #[default]
    Closed,
    /// The action holds the workload stopped (or is only reported).
    Open,
    /// One replica runs on probation.
    HalfOpen,
}

impl Phase {
    /// The name shown in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "Closed",
            Phase::Open => "Open",
            Phase::HalfOpen => "HalfOpen",
        }
    }

    /// Parses the name shown in status; anything else is `Closed`.
    pub fn parse(text: Option<&str>) -> Self {
        match text {
            Some("Open") => Phase::Open,
            Some("HalfOpen") => Phase::HalfOpen,
            _ => Phase::Closed,
        }
    }
}

/// The breaker's settings, parsed from the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Crashes within `window` that open it.
    pub max_crashes: u32,
    /// The sliding window, also the probation period.
    pub window: Duration,
    /// The first cooldown.
    pub cooldown: Duration,
    /// The longest cooldown.
    pub max_cooldown: Duration,
}

/// What the breaker remembers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// The phase.
    pub phase: Phase,
    /// When the current phase began.
    pub since: Option<Timestamp>,
    /// The cooldown of the current or next opening.
    pub cooldown: Duration,
}

/// A change of phase, for the controller to act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Closed to Open: run the action.
    Open,
    /// Open to HalfOpen: let one replica run.
    HalfOpen,
    /// HalfOpen to Open after a crash on probation, with a longer cooldown.
    Reopen,
    /// HalfOpen to Closed after a clean probation: restore the workload.
    Close,
}

/// One step: the state after looking at the crashes (their times) at `now`.
pub fn step(
    settings: &Settings,
    state: &State,
    crashes: &[Timestamp],
    now: Timestamp,
) -> (State, Option<Transition>) {
    let since = state.since.unwrap_or(now);
    let elapsed =
        |from: Timestamp| Duration::try_from(now.duration_since(from)).unwrap_or(Duration::ZERO);
    let in_window = crashes
        .iter()
        .filter(|t| elapsed(**t) <= settings.window && **t <= now)
        .count();
    let cooldown = if state.cooldown.is_zero() {
        settings.cooldown
    } else {
        state.cooldown
    };
    match state.phase {
        Phase::Closed if in_window >= settings.max_crashes as usize => (
            State {
                phase: Phase::Open,
                since: Some(now),
                cooldown: settings.cooldown,
            },
            Some(Transition::Open),
        ),
        Phase::Open if elapsed(since) >= cooldown => (
            State {
                phase: Phase::HalfOpen,
                since: Some(now),
                cooldown,
            },
            Some(Transition::HalfOpen),
        ),
        // Kubernetes keeps termination times to the second: a crash in the second the
        // probation began counts as on probation.
        Phase::HalfOpen if crashes.iter().any(|t| t.as_second() >= since.as_second()) => (
            State {
                phase: Phase::Open,
                since: Some(now),
                cooldown: cooldown.saturating_mul(2).min(settings.max_cooldown),
            },
            Some(Transition::Reopen),
        ),
        Phase::HalfOpen if elapsed(since) >= settings.window => (
            State {
                phase: Phase::Closed,
                since: Some(now),
                cooldown: settings.cooldown,
            },
            Some(Transition::Close),
        ),
        _ => (
            State {
                cooldown,
                since: Some(since),
                ..state.clone()
            },
            None,
        ),
    }
}

/// A manual override (`vigil breaker open|close`): the phase `to` from `now`, and the
/// transition for the controller to act on (none when the breaker is already there).
/// Opening keeps the cooldown a probation had reached; closing starts afresh.
pub fn force(
    settings: &Settings,
    state: &State,
    to: Phase,
    now: Timestamp,
) -> (State, Option<Transition>) {
    let (phase, transition, cooldown) = match (state.phase, to) {
        (from, to) if from == to => return (state.clone(), None),
        (Phase::HalfOpen, Phase::Open) => (Phase::Open, Transition::Open, state.cooldown),
        (_, Phase::Open) => (Phase::Open, Transition::Open, settings.cooldown),
        (_, Phase::Closed) => (Phase::Closed, Transition::Close, settings.cooldown),
        (_, Phase::HalfOpen) => (Phase::HalfOpen, Transition::HalfOpen, state.cooldown),
    };
    let cooldown = if cooldown.is_zero() {
        settings.cooldown
    } else {
        cooldown
    };
    (
        State {
            phase,
            since: Some(now),
            cooldown,
        },
        Some(transition),
    )
}

/// When the breaker should be looked at again without a new crash: the end of the
/// cooldown (Open) or of the probation (HalfOpen).
pub fn next_check(settings: &Settings, state: &State, now: Timestamp) -> Option<Duration> {
    let since = state.since?;
    let until = match state.phase {
        Phase::Closed => return None,
        Phase::Open => state.cooldown,
        Phase::HalfOpen => settings.window,
    };
    let elapsed = Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO);
    Some(until.saturating_sub(elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid")
    }

    const SETTINGS: Settings = Settings {
        max_crashes: 3,
        window: Duration::from_secs(600),
        cooldown: Duration::from_secs(60),
        max_cooldown: Duration::from_secs(200),
    };

    #[test]
    fn opens_after_max_crashes_within_the_window_only() {
        let closed = State::default();
        // Three crashes spread over more than the window: still closed.
        let spread = [at(0), at(400), at(800)];
        let (state, t) = step(&SETTINGS, &closed, &spread, at(800));
        assert_eq!((state.phase, t), (Phase::Closed, None));
        let close = [at(700), at(750), at(800)];
        let (state, t) = step(&SETTINGS, &closed, &close, at(800));
        assert_eq!((state.phase, t), (Phase::Open, Some(Transition::Open)));
        assert_eq!(state.cooldown, Duration::from_secs(60));
    }

    #[test]
    fn half_open_then_reopen_with_doubled_cooldown_up_to_the_maximum_then_close() {
        let crashes = vec![at(0), at(1), at(2)];
        let (open, _) = step(&SETTINGS, &State::default(), &crashes, at(2));
        // Not before the cooldown.
        assert_eq!(step(&SETTINGS, &open, &crashes, at(61)).1, None);
        let (half, t) = step(&SETTINGS, &open, &crashes, at(62));
        assert_eq!(t, Some(Transition::HalfOpen));
        assert_eq!(next_check(&SETTINGS, &half, at(62)), Some(SETTINGS.window));
        // A crash on probation reopens with 120 s, then 200 s (the maximum), not 240 s.
        let mut crashes = crashes;
        crashes.push(at(70));
        let (reopened, t) = step(&SETTINGS, &half, &crashes, at(70));
        assert_eq!(t, Some(Transition::Reopen));
        assert_eq!(reopened.cooldown, Duration::from_secs(120));
        let (half, _) = step(&SETTINGS, &reopened, &crashes, at(190));
        assert_eq!(half.phase, Phase::HalfOpen);
        crashes.push(at(200));
        let (reopened, _) = step(&SETTINGS, &half, &crashes, at(200));
        assert_eq!(reopened.cooldown, Duration::from_secs(200));
        let (half, _) = step(&SETTINGS, &reopened, &crashes, at(400));
        // A clean probation closes it and resets the cooldown.
        let (closed, t) = step(&SETTINGS, &half, &crashes, at(1000));
        assert_eq!(t, Some(Transition::Close));
        assert_eq!(closed.phase, Phase::Closed);
        assert_eq!(closed.cooldown, SETTINGS.cooldown);
        // Old crashes do not reopen a closed breaker: they are out of the window.
        assert_eq!(step(&SETTINGS, &closed, &crashes, at(1000)).1, None);
    }

    #[test]
    fn a_manual_override_moves_at_once_and_only_when_it_changes_something() {
        let (open, _) = step(&SETTINGS, &State::default(), &[at(0), at(1), at(2)], at(2));
        // Closing by hand restores the workload and starts with the first cooldown.
        let (closed, t) = force(&SETTINGS, &open, Phase::Closed, at(10));
        assert_eq!(t, Some(Transition::Close));
        assert_eq!(
            closed,
            State {
                phase: Phase::Closed,
                since: Some(at(10)),
                cooldown: SETTINGS.cooldown
            }
        );
        // Already there: nothing to do.
        assert_eq!(
            force(&SETTINGS, &closed, Phase::Closed, at(11)),
            (closed.clone(), None)
        );
        // Opening a closed breaker by hand runs the action.
        let (opened, t) = force(&SETTINGS, &closed, Phase::Open, at(20));
        assert_eq!(
            (opened.phase, opened.since, t),
            (Phase::Open, Some(at(20)), Some(Transition::Open))
        );
        // Opening one on probation keeps the cooldown it reached.
        let on_probation = State {
            phase: Phase::HalfOpen,
            since: Some(at(30)),
            cooldown: Duration::from_secs(120),
        };
        let (opened, t) = force(&SETTINGS, &on_probation, Phase::Open, at(40));
        assert_eq!(
            (opened.cooldown, t),
            (Duration::from_secs(120), Some(Transition::Open))
        );
    }
}
