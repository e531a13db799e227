//! Per-action request budget: a limiter that never lets a sliding one-second window hold more
//! request starts than the rate in force, and cuts/restores that rate on throttling.
//!
//! One [`Limiter`] exists per action. Every request attempt, retries included, first awaits
//! [`Limiter::acquire`], which returns at the moment the caller may send.
//!
//! How a start time is chosen:
//!
//! - **Even spacing.** Starts are scheduled on ideal slots `1/rate` apart. The next slot is
//!   computed from the previous *ideal* slot, not from when the timer actually fired, so
//!   late wake-ups (tokio timers have millisecond granularity and fire late, never early) do
//!   not pile up into a lower rate. Idle time earns no credit beyond a few milliseconds, so a
//!   quiet limiter does not burst when work arrives.
//! - **Hard guard.** A ring of the most recent actual start times enforces the guarantee
//!   directly: a start at `t` is allowed only if the `cap`-th most recent start is at or before
//!   `t - 1.02s`, where `cap = max(1, floor(rate))`. So no half-open window `[t, t + 1s)` ever
//!   holds more than `cap` starts, even as the API sees them, when requests arrive up to 20 ms
//!   unevenly late (a saturated limiter runs at 98 % of the rate). Rates below one per second are held to their spacing
//!   (one start per `1/rate` seconds) by the slots.
//! - **Fairness.** Waiters queue on a FIFO lock; only the head of the queue sleeps on a timer,
//!   and it re-checks the schedule when it wakes, so a rate cut made while it slept (or
//!   while others queued behind it) applies to it too.
//!
//! Throttling: [`Limiter::on_throttled`] halves the rate in force at once (at most once per
//! second, never below a floor), and the rate is restored by a tenth of the budget for every
//! five seconds without throttling, back to exactly the budget. The rate is a pure function of
//! the last cut and the clock, so nothing needs a background task.
//!
//! All time comes from `tokio::time`, so tests run in paused time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// The sliding window the guarantee is stated over.
const WINDOW: Duration = Duration::from_secs(1);
/// The hard guard's span: the window plus a margin for arrival jitter. The API counts
/// requests when they arrive, and starts exactly one window apart would let a request that
/// travels a millisecond slower than the one sent a second later put `cap + 1` into one of
/// its windows; 20 ms of margin costs 2 % of the rate at saturation.
const GUARD: Duration = WINDOW.saturating_add(Duration::from_millis(20));
/// Throttle signals closer than this to the previous cut do not cut again (one overloaded
/// window typically answers several requests with 429).
const CUT_SPACING: Duration = Duration::from_secs(1);
/// Restoration: every `RESTORE_EVERY` without throttling adds `RESTORE_STEP × budget`.
const RESTORE_EVERY: Duration = Duration::from_secs(5);
const RESTORE_STEP: f64 = 0.1;
/// The floor of a cut rate is `max(1, budget × FLOOR_FRACTION)` (or the budget, if below 1).
const FLOOR_FRACTION: f64 = 0.05;
/// How much idle time may count as "lateness" to catch up on; keeps idle from turning into a
/// burst while letting a slightly late wake-up keep the ideal schedule.
const MAX_CATCH_UP: Duration = Duration::from_millis(10);
/// Budgets are clamped into this range so that every derived duration and ring size is sane.
const MIN_BUDGET: f64 = 0.001;
const MAX_BUDGET: f64 = 1_000_000.0;

/// One action's limiter. Share it behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Limiter {
    /// The budget and the floor, as `f64` bits: [`Limiter::set_budget`] changes them live.
    budget: AtomicU64,
    floor: AtomicU64,
    /// The schedule; held (across the sleep) by the waiter at the head of the queue. tokio's
    /// mutex is fair, so waiters start in the order they called `acquire`.
    schedule: tokio::sync::Mutex<Schedule>,
    /// The rate-cut state; a plain mutex because it is only held for a few instructions and
    /// `on_throttled`/`rate` are synchronous.
    throttle: Mutex<Throttle>,
}

#[derive(Debug, Default)]
struct Schedule {
    /// The ideal slot of the previous start.
    last_slot: Option<Instant>,
    /// Actual start times within the last window, oldest first, at most `cap(budget)` long.
    recent: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct Throttle {
    /// Rate set by the last throttle signal, and when; `None` while at full budget.
    anchor: Option<(Instant, f64)>,
    /// When the rate was last actually cut.
    last_cut: Option<Instant>,
}

impl Limiter {
    /// A limiter for `budget` requests per second. A non-finite or non-positive budget is
    /// clamped to a tiny positive one (the config layer rejects those before this point).
    pub fn new(budget: f64) -> Limiter {
        let limiter = Limiter {
            budget: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            schedule: tokio::sync::Mutex::new(Schedule::default()),
            throttle: Mutex::new(Throttle::default()),
        };
        limiter.set_budget(budget);
        limiter
    }

    /// Changes the budget while running (a config reload). It applies to the next start,
    /// also of waiters already queued: a lower budget is never exceeded from then on, since
    /// every start is checked against the starts of the last second at the rate in force.
    pub fn set_budget(&self, budget: f64) {
        let budget = if budget.is_nan() {
            MIN_BUDGET
        } else {
            budget.clamp(MIN_BUDGET, MAX_BUDGET)
        };
        let floor = if budget < 1.0 {
            budget
        } else {
            (budget * FLOOR_FRACTION).max(1.0)
        };
        self.floor.store(floor.to_bits(), Ordering::Relaxed);
        self.budget.store(budget.to_bits(), Ordering::Relaxed);
    }

    /// The configured budget (requests per second).
    pub fn budget(&self) -> f64 {
        f64::from_bits(self.budget.load(Ordering::Relaxed))
    }

    /// The lowest rate throttling can cut to.
    pub fn floor(&self) -> f64 {
        f64::from_bits(self.floor.load(Ordering::Relaxed))
    }

    /// The rate in force now (requests per second): the budget, or less after throttling.
    pub fn rate(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    /// Waits until a request started now keeps every sliding one-second window within the
    /// rate in force, records the start, and returns; the caller sends at once. Waiters are
    /// served in arrival order. Dropping the future before it completes records nothing.
    pub async fn acquire(&self) {
        let mut schedule = self.schedule.lock().await;
        loop {
            let now = Instant::now();
            let rate = self.rate_at(now);
            let earliest = schedule.earliest(rate);
            match earliest {
                Some(at) if at > now => sleep_until(at).await,
                _ => {
                    // The ideal slot of this start: the scheduled one if it is recent (we
                    // woke late, or the previous start did), else now (we were idle).
                    let slot = match earliest {
                        Some(at) => {
                            let catch_up = MAX_CATCH_UP.min(spacing(rate));
                            at.max(now.checked_sub(catch_up).unwrap_or(now))
                        }
                        None => now,
                    };
                    schedule.record(now, slot, cap(self.budget()));
                    return;
                }
            }
        }
    }

    /// Reports that the API throttled a request (HTTP 429 or `FlowLimitExceeded`): halves the
    /// rate in force at once (applies to waiters already queued), unless it was already cut in
    /// the last second, and restarts the restoration clock.
    pub fn on_throttled(&self) {
        let now = Instant::now();
        let mut throttle = self.throttle.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rate = rate_at(&throttle, self.budget(), now);
        let may_cut = match throttle.last_cut {
            None => true,
            Some(at) => now.saturating_duration_since(at) >= CUT_SPACING,
        };
        if may_cut {
            rate = (rate / 2.0).max(self.floor());
            throttle.last_cut = Some(now);
        }
        throttle.anchor = Some((now, rate));
    }

    fn rate_at(&self, now: Instant) -> f64 {
        let throttle = self.throttle.lock().unwrap_or_else(PoisonError::into_inner);
        rate_at(&throttle, self.budget(), now)
    }
}

/// The rate in force at `now` given the last throttle anchor: the cut rate plus one restore
/// step per full `RESTORE_EVERY` since, capped at the budget.
fn rate_at(throttle: &Throttle, budget: f64, now: Instant) -> f64 {
    match throttle.anchor {
        None => budget,
        Some((at, cut)) => {
            let steps = (now.saturating_duration_since(at).as_secs_f64()
                / RESTORE_EVERY.as_secs_f64())
            .floor();
            // Rounded to a millionth so that sums of steps land exactly on round rates.
            let rate = ((cut + steps * RESTORE_STEP * budget) * 1e6).round() / 1e6;
            rate.min(budget)
        }
    }
}

/// Starts allowed per window at `rate`: `floor(rate)`, at least one. The small epsilon keeps a
/// rate like 29.999999999 (from repeated halving and restoring) at 30.
fn cap(rate: f64) -> usize {
    // `rate` is clamped to [MIN_BUDGET, MAX_BUDGET], so the cast cannot overflow.
    ((rate + 1e-9).floor() as usize).max(1)
}

/// Ideal distance between two starts at `rate`.
fn spacing(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate)
}

impl Schedule {
    /// The earliest start allowed at `rate`, or `None` if any time is fine.
    fn earliest(&self, rate: f64) -> Option<Instant> {
        let by_spacing = self.last_slot.map(|slot| slot + spacing(rate));
        let cap = cap(rate);
        let by_window = self
            .recent
            .len()
            .checked_sub(cap)
            .and_then(|i| self.recent.get(i))
            .map(|&start| start + GUARD);
        by_spacing.max(by_window)
    }

    fn record(&mut self, now: Instant, slot: Instant, max_cap: usize) {
        self.last_slot = Some(slot);
        while self
            .recent
            .front()
            .is_some_and(|&start| start + GUARD <= now)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= max_cap {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }
}

/// The most starts any half-open window `[t, t + window)` holds, for `starts` sorted in
/// ascending order. Used by tests and benchmarks to check the guarantee.
pub fn max_starts_in_window(starts: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut first = 0;
    for (last, &end) in starts.iter().enumerate() {
        while starts
            .get(first)
            .is_some_and(|&start| end.saturating_duration_since(start) >= window)
        {
            first += 1;
        }
        best = best.max(last + 1 - first);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn cancelled_acquire_records_nothing() {
        let limiter = Limiter::new(1.0);
        let t0 = Instant::now();
        limiter.acquire().await;
        let timed_out = tokio::time::timeout(Duration::from_millis(100), limiter.acquire()).await;
        assert!(timed_out.is_err());
        limiter.acquire().await;
        assert_eq!(Instant::now(), t0 + GUARD);
    }

    #[test]
    fn odd_budgets_are_clamped() {
        assert_eq!(Limiter::new(f64::NAN).budget(), MIN_BUDGET);
        assert_eq!(Limiter::new(-3.0).budget(), MIN_BUDGET);
        assert_eq!(Limiter::new(f64::INFINITY).budget(), MAX_BUDGET);
    }
}
