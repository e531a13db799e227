//! The auth hold: a scheduling decision about a whole action while its credentials are refused.
//!
//! Wrong credentials fail every target of an action alike, so per-target backoff alone would
//! still send one request per target at first (a storm with thousands of targets). After
//! `AUTH_TRIP` (3) authentication failures in a row an action's polling is held: one probe
//! request at a time, after a pause that starts at `active_interval` and doubles per failed
//! probe (capped at [`super::MAX_BACKOFF`]). Any other answer lifts the hold.
//!
//! Like the rest of the scheduler it has no clock of its own: callers pass tokio's `Instant`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Authentication failures in a row (with no other answer between) that hold an action.
const AUTH_TRIP: u32 = 3;

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
