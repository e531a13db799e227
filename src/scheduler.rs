//! The scheduling core (SPEC §6 "Scheduling"): decides, per action, which target to poll next
//! and when. It is pure and synchronous — no I/O, no tasks, no clock of its own: every method
//! takes the current [`Instant`] (and, where a task's age matters, the wall-clock
//! [`SystemTime`]) from its caller, so tests drive it in synthetic time.
//!
//! # Phases
//!
//! Every target is in one [`Phase`]:
//!
//! - **new** — never answered yet. The first polls of all targets of an action are spread
//!   evenly over the first `active_interval`, so a restart with 5,000 targets never marks them
//!   all due at once.
//! - **active** — the task is not terminal; polled every `active_interval`.
//! - **settling** — the task is terminal, but files may still be uploading: re-polled every
//!   `settle_interval` until two answers in a row are identical.
//! - **done** — settled; a task target is never polled again.
//! - **expired** — the task started over 72 hours ago, so the API can no longer see it; a task
//!   target is never polled again. Detected from a successful answer's StartTime, when a
//!   queued task's known StartTime crosses 72 h before its next poll, and when a `NotFound`
//!   answer comes for a task already known to be that old.
//!
//! # Room-following webcast targets
//!
//! A webcast target without `task_id` follows "the room's newest task", so it can never be
//! finished for good: a new task may start in the room at any time. Policy:
//!
//! - it goes through new → active → settling → done like any task target;
//! - once **done** (or **expired**: the newest task is over 72 h old) it stays in the settling
//!   queue and the room is re-checked every `settle_interval` (failures back off as usual, so
//!   an empty room that answers `NotFound` is checked at most every 10 minutes);
//! - an answer whose StartTime differs from the one last seen is a **new task**: the target
//!   goes back to active (or straight to settling if the new task is already terminal), and
//!   its settle and expiry state start over;
//! - a changed answer for the same task while done (a file appearing late) puts it back into
//!   settling until two answers agree again.
//!
//! # Order and timing
//!
//! Per action there are two queues ordered by due time: new/active targets, and settling
//! targets (plus watched rooms). [`Scheduler::pop_due`] returns the most overdue due target,
//! taking active ones before settling ones. A popped target is *in flight* until
//! [`Scheduler::complete`]. Call `pop_due` only when a request can actually be sent (after the
//! budget limiter admitted it), so the choice is made at send time.
//!
//! After a success, the next poll keeps the target's grid (`due + interval`) when it was
//! dispatched on time (within a quarter of `active_interval`), so the even spread does not
//! drift with latency; when it was dispatched late (the budget is the bottleneck), the next
//! poll is one interval after the dispatch, so lag stays bounded and shows the shortfall
//! instead of growing for ever.
//!
//! Failures never cause a tight loop:
//!
//! | outcome | next attempt |
//! |---|---|
//! | server error, timeout, network error | after `active_interval` (the client already retried) |
//! | throttled | soon: 1 s, doubling per consecutive throttle, at most `active_interval` |
//! | not found, auth error, client error, decode error | per-target backoff: the queue's interval × 2^(n−1) for the n-th failure in a row, capped at 10 minutes (or the interval, if longer) |
//!
//! Any success resets the backoff. With 1,000 targets all failing authentication, the request
//! rate falls from one per target per interval to one per target per 10 minutes within a few
//! minutes.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::ScheduleSettings;
use crate::model::{Action, Outcome, Target, TaskSnapshot};

/// A target's position in the slice given to [`Scheduler::new`].
pub type TargetId = usize;

/// How far back the API can see: tasks that started earlier are never polled.
pub const VISIBILITY_WINDOW: Duration = Duration::from_secs(72 * 3600);

/// The cap of the per-target failure backoff (unless the queue's own interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The first retry delay after a throttled answer.
const THROTTLE_RETRY: Duration = Duration::from_secs(1);

/// Stand-in for "never" when an addition to an [`Instant`] would overflow.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Where a target is in its life; the `phase` label of `volcengine_rtc_targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    New,
    Active,
    Settling,
    Done,
    Expired,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::New,
        Phase::Active,
        Phase::Settling,
        Phase::Done,
        Phase::Expired,
    ];

    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::New => "new",
            Phase::Active => "active",
            Phase::Settling => "settling",
            Phase::Done => "done",
            Phase::Expired => "expired",
        }
    }

    /// Dense index into [`Phase::ALL`], for per-phase arrays.
    pub fn index(self) -> usize {
        match self {
            Phase::New => 0,
            Phase::Active => 1,
            Phase::Settling => 2,
            Phase::Done => 3,
            Phase::Expired => 4,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one poll of a target ended, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollResult {
    /// The API answered about the task.
    Success {
        /// [`TaskSnapshot::is_terminal`] of the answer.
        terminal: bool,
        /// The answer's StartTime in ms since the epoch; 0 if absent.
        start_time_ms: i64,
        /// Whether the answer differs from the previous successful answer for this target
        /// (always true for the first answer).
        changed: bool,
    },
    /// The request failed; see the table in the module documentation.
    Failed(Outcome),
}

impl PollResult {
    /// The scheduling-relevant parts of a successful answer.
    pub fn success(snapshot: &TaskSnapshot, changed: bool) -> PollResult {
        PollResult::Success {
            terminal: snapshot.is_terminal(),
            start_time_ms: snapshot.start_time_ms,
            changed,
        }
    }
}

/// Which of an action's two queues a target waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    /// New and active targets.
    Active,
    /// Settling targets and watched rooms.
    Settle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Waiting in a queue until `due`.
    Queued { lane: Lane, due: Instant },
    /// Popped at `popped_at`; it had been due at `due`.
    InFlight { due: Instant, popped_at: Instant },
    /// Never polled again (done or expired task targets).
    Parked,
}

/// Per-target scheduling state; small, since there may be 10,000 targets.
#[derive(Debug, Clone)]
struct TargetState {
    action: Action,
    /// A webcast target without `task_id`: follows the room's newest task.
    room: bool,
    phase: Phase,
    slot: Slot,
    /// StartTime of the task last answered about, ms since the epoch; 0 while unknown.
    start_time_ms: i64,
    /// When that task becomes older than [`VISIBILITY_WINDOW`]; `None` while unknown.
    expires_at: Option<Instant>,
    /// Consecutive backoff-class failures (not found, auth, client, decode).
    failures: u32,
    /// Consecutive throttled answers.
    throttles: u32,
}

#[derive(Debug, Default)]
struct Queues {
    active: BTreeSet<(Instant, TargetId)>,
    settle: BTreeSet<(Instant, TargetId)>,
    in_flight: usize,
}

impl Queues {
    fn lane_mut(&mut self, lane: Lane) -> &mut BTreeSet<(Instant, TargetId)> {
        match lane {
            Lane::Active => &mut self.active,
            Lane::Settle => &mut self.settle,
        }
    }

    fn earliest(&self) -> Option<Instant> {
        let a = self.active.first().map(|&(due, _)| due);
        let s = self.settle.first().map(|&(due, _)| due);
        match (a, s) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        }
    }
}

/// Decides which target each action polls next. See the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    active_interval: Duration,
    settle_interval: Duration,
    targets: Vec<TargetState>,
    /// Indexed by [`Action::index`].
    queues: [Queues; 2],
}

impl Scheduler {
    /// Every target starts **new**; the first polls of each action's targets are spread evenly
    /// over `[now, now + active_interval)`.
    pub fn new(targets: &[Target], schedule: &ScheduleSettings, now: Instant) -> Scheduler {
        let mut per_action = [0u128; 2];
        for t in targets {
            if let Some(n) = per_action.get_mut(t.key.kind.action().index()) {
                *n += 1;
            }
        }
        let mut seen = [0u128; 2];
        let mut queues = [Queues::default(), Queues::default()];
        let interval_ns = schedule.active_interval.as_nanos();
        let mut states = Vec::with_capacity(targets.len());
        for (id, t) in targets.iter().enumerate() {
            let action = t.key.kind.action();
            let i = action.index();
            let (k, n) = match (seen.get_mut(i), per_action.get(i)) {
                (Some(k), Some(&n)) => {
                    let this = *k;
                    *k += 1;
                    (this, n.max(1))
                }
                _ => (0, 1),
            };
            // k < n, so the offset is below the interval and fits in u64 nanoseconds whenever
            // the interval does.
            let offset_ns = u64::try_from(interval_ns * k / n).unwrap_or(u64::MAX);
            let due = later(now, Duration::from_nanos(offset_ns));
            if let Some(q) = queues.get_mut(i) {
                q.active.insert((due, id));
            }
            states.push(TargetState {
                action,
                room: t.key.task_id.is_none(),
                phase: Phase::New,
                slot: Slot::Queued {
                    lane: Lane::Active,
                    due,
                },
                start_time_ms: 0,
                expires_at: None,
                failures: 0,
                throttles: 0,
            });
        }
        Scheduler {
            active_interval: schedule.active_interval,
            settle_interval: schedule.settle_interval,
            targets: states,
            queues,
        }
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// When the next queued target of `action` becomes due (possibly already past); `None`
    /// when nothing is queued (all done, expired or in flight).
    pub fn next_due(&self, action: Action) -> Option<Instant> {
        self.queues.get(action.index()).and_then(Queues::earliest)
    }

    /// Takes the most overdue target of `action` that is due at `now` — new and active targets
    /// before settling ones — and marks it in flight until [`Scheduler::complete`]. Task
    /// targets whose task has meanwhile grown older than 72 h are expired here instead of
    /// being returned.
    pub fn pop_due(&mut self, action: Action, now: Instant) -> Option<TargetId> {
        let q = self.queues.get_mut(action.index())?;
        loop {
            let (due, id) = match q.active.first() {
                Some(&(due, _)) if due <= now => q.active.pop_first()?,
                _ => match q.settle.first() {
                    Some(&(due, _)) if due <= now => q.settle.pop_first()?,
                    _ => return None,
                },
            };
            let Some(t) = self.targets.get_mut(id) else {
                continue;
            };
            if !t.room && t.expires_at.is_some_and(|e| e <= now) {
                t.phase = Phase::Expired;
                t.slot = Slot::Parked;
                continue;
            }
            t.slot = Slot::InFlight {
                due,
                popped_at: now,
            };
            q.in_flight += 1;
            return Some(id);
        }
    }

    /// Records how the poll of an in-flight target ended and queues its next poll (or parks
    /// it). `now` is when the answer arrived, `wall` the wall-clock time (to judge a task's
    /// age from its StartTime). Ignored for a target that is not in flight.
    pub fn complete(&mut self, id: TargetId, result: PollResult, now: Instant, wall: SystemTime) {
        let active_interval = self.active_interval;
        let settle_interval = self.settle_interval;
        let Some(t) = self.targets.get_mut(id) else {
            return;
        };
        let Slot::InFlight { due, popped_at } = t.slot else {
            return;
        };
        let Some(q) = self.queues.get_mut(t.action.index()) else {
            return;
        };
        q.in_flight = q.in_flight.saturating_sub(1);

        let next = match result {
            PollResult::Success {
                terminal,
                start_time_ms,
                changed,
            } => {
                t.failures = 0;
                t.throttles = 0;
                let new_task =
                    t.start_time_ms != 0 && start_time_ms != 0 && start_time_ms != t.start_time_ms;
                if start_time_ms > 0 {
                    t.start_time_ms = start_time_ms;
                    t.expires_at = expiry(start_time_ms, now, wall);
                }
                let expired = t.expires_at.is_some_and(|e| e <= now);
                t.phase = if expired {
                    Phase::Expired
                } else if !terminal {
                    Phase::Active
                } else if !changed && !new_task && matches!(t.phase, Phase::Settling | Phase::Done)
                {
                    Phase::Done
                } else {
                    Phase::Settling
                };
                // Keep the grid when dispatched on time; restart it from the dispatch when late.
                let anchor = if popped_at <= later(due, active_interval / 4) {
                    due
                } else {
                    popped_at
                };
                match (t.phase, t.room) {
                    (Phase::New | Phase::Active, _) => {
                        Some((Lane::Active, later(anchor, active_interval)))
                    }
                    (Phase::Settling, _) | (Phase::Done | Phase::Expired, true) => {
                        Some((Lane::Settle, later(anchor, settle_interval)))
                    }
                    (Phase::Done | Phase::Expired, false) => None,
                }
            }
            PollResult::Failed(outcome) => {
                let lane = match t.phase {
                    Phase::New | Phase::Active => Lane::Active,
                    Phase::Settling | Phase::Done | Phase::Expired => Lane::Settle,
                };
                let lane_interval = match lane {
                    Lane::Active => active_interval,
                    Lane::Settle => settle_interval,
                };
                if outcome != Outcome::Throttled {
                    t.throttles = 0;
                }
                match outcome {
                    Outcome::Throttled => {
                        t.throttles = t.throttles.saturating_add(1);
                        let delay = THROTTLE_RETRY
                            .saturating_mul(pow2(t.throttles))
                            .min(active_interval);
                        Some((lane, later(now, delay)))
                    }
                    Outcome::NotFound if !t.room && t.expires_at.is_some_and(|e| e <= now) => {
                        t.phase = Phase::Expired;
                        None
                    }
                    Outcome::NotFound
                    | Outcome::AuthError
                    | Outcome::ClientError
                    | Outcome::DecodeError => {
                        t.failures = t.failures.saturating_add(1);
                        if outcome == Outcome::NotFound && t.expires_at.is_some_and(|e| e <= now) {
                            // A room whose newest known task is too old to be seen.
                            t.phase = Phase::Expired;
                        }
                        let delay = lane_interval
                            .saturating_mul(pow2(t.failures))
                            .min(MAX_BACKOFF.max(lane_interval));
                        Some((lane, later(now, delay)))
                    }
                    Outcome::ServerError
                    | Outcome::Timeout
                    | Outcome::NetworkError
                    | Outcome::Success => Some((lane, later(now, active_interval))),
                }
            }
        };
        match next {
            Some((lane, due)) => {
                q.lane_mut(lane).insert((due, id));
                t.slot = Slot::Queued { lane, due };
            }
            None => t.slot = Slot::Parked,
        }
    }

    /// How overdue the most overdue queued target of `action` is; zero when none is overdue.
    pub fn lag(&self, action: Action, now: Instant) -> Duration {
        self.next_due(action)
            .map_or(Duration::ZERO, |due| now.saturating_duration_since(due))
    }

    /// Number of targets per action ([`Action::index`], which is also the kind's index) and
    /// phase ([`Phase::index`]), for `volcengine_rtc_targets{kind,phase}`.
    pub fn phase_counts(&self) -> [[usize; 5]; 2] {
        let mut counts = [[0usize; 5]; 2];
        for t in &self.targets {
            if let Some(c) = counts
                .get_mut(t.action.index())
                .and_then(|row| row.get_mut(t.phase.index()))
            {
                *c += 1;
            }
        }
        counts
    }

    /// The phase of one target; `None` for an id outside the targets given to `new`.
    pub fn phase(&self, id: TargetId) -> Option<Phase> {
        self.targets.get(id).map(|t| t.phase)
    }

    /// Number of popped targets of `action` not yet completed.
    pub fn in_flight(&self, action: Action) -> usize {
        self.queues.get(action.index()).map_or(0, |q| q.in_flight)
    }

    /// Number of targets of `action` waiting in its queues.
    pub fn queued(&self, action: Action) -> usize {
        self.queues
            .get(action.index())
            .map_or(0, |q| q.active.len() + q.settle.len())
    }
}

/// `t + d`, or a far-future instant when that would overflow.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(FAR_FUTURE))
        .unwrap_or(t)
}

/// 2^(n−1) for n ≥ 1 (1 for n = 0), saturating.
fn pow2(n: u32) -> u32 {
    1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// The instant at which a task that started at `start_time_ms` leaves the API's 72-hour
/// window, given that `now` corresponds to `wall`; `None` if that is beyond representation.
fn expiry(start_time_ms: i64, now: Instant, wall: SystemTime) -> Option<Instant> {
    let start =
        UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(start_time_ms).ok()?))?;
    let end = start.checked_add(VISIBILITY_WINDOW)?;
    match end.duration_since(wall) {
        Ok(left) => now.checked_add(left),
        Err(_) => Some(now),
    }
}
