//! The auth hold: a scheduling decision about a whole action while its credentials are refused.
//!
//! Wrong credentials fail every target of an action alike, so per-target backoff alone would
//! still send one request per target at first (a storm with thousands of targets). After
//! [`AUTH_TRIP`] authentication failures in a row an action's polling is held: one probe
//! request at a time, after a pause that starts at `active_interval` and doubles per failed
//! probe (capped at [`super::MAX_BACKOFF`]). Any other answer lifts the hold.
//!
//! Like the rest of the scheduler it has no clock of its own: callers pass tokio's `Instant`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Authentication failures in a row (with no other answer between) that hold an action.
pub const AUTH_TRIP: u32 = 3;

/// What [`AuthGate::check`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Poll as usual (also: send the probe).
    Open,
    /// Held: wait until this time (or, with `None`, for the probe in flight to finish).
    Wait(Option<Instant>),
}

/// One action's hold on polling while authentication fails (see the module documentation).
#[derive(Debug, Default)]
pub struct AuthGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Authentication failures in a row, with no other answer between.
    in_a_row: u32,
    /// Held: no request but probes until `until`.
    held: bool,
    /// Failed probes since the hold began.
    probes_failed: u32,
    until: Option<Instant>,
    probe_in_flight: bool,
}

impl AuthGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn check(&self, now: Instant) -> Gate {
        let s = self.lock();
        if !s.held {
            Gate::Open
        } else if s.probe_in_flight {
            Gate::Wait(None)
        } else {
            match s.until {
                Some(t) if t > now => Gate::Wait(Some(t)),
                _ => Gate::Open,
            }
        }
    }

    /// A request is being sent; returns whether it is the probe of a hold.
    pub fn begin(&self, now: Instant) -> bool {
        let mut s = self.lock();
        let probe = s.held && !s.probe_in_flight && s.until.is_none_or(|t| t <= now);
        if probe {
            s.probe_in_flight = true;
        }
        probe
    }

    /// A request (the probe, or not) finished.
    pub fn finish(&self, probe: bool, auth_failed: bool, now: Instant, interval: Duration) {
        let mut s = self.lock();
        if probe {
            s.probe_in_flight = false;
        }
        if !auth_failed {
            *s = GateState::default();
            return;
        }
        s.in_a_row = s.in_a_row.saturating_add(1);
        let pause = |n: u32| {
            interval
                .max(Duration::from_secs(1))
                .saturating_mul(1u32 << n.min(16))
                .min(super::MAX_BACKOFF.max(interval))
        };
        if !s.held && s.in_a_row >= AUTH_TRIP {
            s.held = true;
            s.probes_failed = 0;
            s.until = Some(now + pause(0));
        } else if s.held && probe {
            s.probes_failed = s.probes_failed.saturating_add(1);
            s.until = Some(now + pause(s.probes_failed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn auth_gate_trips_probes_with_doubling_pauses_and_lifts_on_any_other_answer() {
        let gate = AuthGate::default();
        let i = Duration::from_secs(2);
        let t0 = Instant::now();
        // Two failures in a row, then a success: never held.
        for ok in [false, false, true, false, false] {
            assert_eq!(gate.check(t0), Gate::Open);
            assert!(!gate.begin(t0));
            gate.finish(false, !ok, t0, i);
        }
        // The third in a row holds the action for one interval.
        gate.finish(false, true, t0, i);
        assert_eq!(gate.check(t0), Gate::Wait(Some(t0 + i)));
        // Requests already in flight failing too do not lengthen the hold.
        gate.finish(false, true, t0, i);
        assert_eq!(gate.check(t0 + i / 2), Gate::Wait(Some(t0 + i)));
        // Then one probe at a time; a failed probe doubles the pause.
        let t1 = t0 + i;
        assert_eq!(gate.check(t1), Gate::Open);
        assert!(gate.begin(t1));
        assert_eq!(gate.check(t1), Gate::Wait(None));
        assert!(!gate.begin(t1), "only one probe in flight");
        gate.finish(true, true, t1, i);
        assert_eq!(gate.check(t1), Gate::Wait(Some(t1 + 2 * i)));
        let t2 = t1 + 2 * i;
        assert!(gate.begin(t2));
        gate.finish(true, true, t2, i);
        assert_eq!(gate.check(t2), Gate::Wait(Some(t2 + 4 * i)));
        // Capped at the maximum backoff.
        let mut t = t2 + 4 * i;
        for _ in 0..20 {
            assert!(gate.begin(t));
            gate.finish(true, true, t, i);
            match gate.check(t) {
                Gate::Wait(Some(until)) => {
                    assert!(until - t <= super::super::MAX_BACKOFF);
                    t = until;
                }
                other => panic!("{other:?}"),
            }
        }
        // A probe answered with anything but an auth error lifts the hold.
        assert!(gate.begin(t));
        gate.finish(true, false, t, i);
        assert_eq!(gate.check(t), Gate::Open);
        assert!(!gate.begin(t));
    }
}
