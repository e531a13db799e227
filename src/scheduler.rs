//! The scheduling core: decides, per action, which target to poll next
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
//!   `settle_interval` until it is settled:
//!   - a finished **record** task (one that did not fail) once two answers in a row are
//!     identical *and* list at least one file, or once `settle_timeout` has passed since its
//!     EndTime (since it was first answered as terminal, if that is earlier or EndTime is
//!     absent), whichever comes first. RTC uploads the files after the task ends, large ones
//!     for minutes, so an empty or still changing file list keeps it settling; a recording
//!     that still has no file at the timeout is done with `record_files 0` (the
//!     `VolcRtcRecordingWithoutFiles` alert);
//!   - a failed task (Status 4, or StopReason `StartTaskFailed`: it produces no files) and a
//!     webcast task once two answers in a row are identical, or (should its answer keep
//!     changing) once `settle_timeout` has passed in the same way. A room-following webcast
//!     target only settles on two identical answers (it stays watched either way).
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
//!   queue and the room is re-checked every `settle_interval`; failures back off as usual, so
//!   a room with no task in the last 72 h (`NotFound`) ends up checked once every 5–10
//!   minutes;
//! - an answer whose StartTime differs from the one last seen is a **new task**: the target
//!   goes back to active (or straight to settling if the new task is already terminal), and
//!   its settle and expiry state start over;
//! - a changed answer for the same task while done (a file appearing late) puts it back into
//!   settling until two answers agree again.
//!
//! # Driving it
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use tokio::time::Instant;
//! use volc_rtc_exporter::config::ScheduleSettings;
//! use volc_rtc_exporter::model::{Action, Kind, Target, TargetKey, TaskSnapshot};
//! use volc_rtc_exporter::scheduler::{Phase, PollResult, Scheduler};
//!
//! let targets = vec![Target {
//!     key: TargetKey {
//!         kind: Kind::Record,
//!         app_id: "app".into(),
//!         room_id: "room".into(),
//!         task_id: Some("task".into()),
//!     },
//!     labels: Default::default(),
//! }];
//! let schedule = ScheduleSettings {
//!     active_interval: Duration::from_secs(15),
//!     settle_interval: Duration::from_secs(60),
//!     retention: Duration::from_secs(86_400),
//!     ..ScheduleSettings::default()
//! };
//! let t0 = Instant::now();
//! let mut scheduler = Scheduler::new(&targets, &schedule, t0);
//! let action = Action::GetRecordTask;
//! // The runner sleeps until `next_due`, waits for the budget, then pops and sends.
//! let due = scheduler.next_due(action).unwrap();
//! let id = scheduler.pop_due(action, due).unwrap();
//! let answer = TaskSnapshot { status: 2, start_time_ms: 1_700_000_000_000, ..Default::default() };
//! // `changed` comes from comparing with the stored previous answer.
//! let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_600); // the task is 10 minutes old
//! scheduler.complete(id, PollResult::success(&answer, true), due, wall);
//! assert_eq!(scheduler.phase(id), Some(Phase::Active));
//! assert_eq!(scheduler.next_due(action), Some(due + Duration::from_secs(15)));
//! ```
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
//! | not found, auth error, client error, decode error | per-target backoff: for the n-th failure in a row, between half and all of the queue's interval × 2^(n−1) capped at 10 minutes (or the interval, if longer), never below the interval |
//! | not found, for a target never answered for, in its first hour since it was added | the same backoff, capped at 1 minute (or the interval, if longer) |
//!
//! A target is often announced (registered right after `StartRecord`) a moment before the API
//! can see its task, so a target that has never had a successful answer keeps looking for it
//! at least once a minute during its first hour ([`NEVER_SEEN_GRACE`]); a `StartTaskFailed`
//! then shows within a minute, not ten. After that hour the normal doubling applies.
//!
//! Any success resets the backoff. The jitter is a fixed function of (target, n), so runs are
//! reproducible, yet targets that failed together drift apart instead of returning in one
//! wave. With 1,000 targets all failing authentication, requests fall from 3,000 in the first
//! minute to about 1,000 over minutes 5–10 together (naive polling: 4,000 a minute).
//!
//! A task target that is done never reaches expired (it is not polled any more, so its age is
//! not re-examined); both mean "never polled again".

pub mod auth_hold;

pub use auth_hold::{AuthGate, Gate};

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::config::ScheduleSettings;
use crate::model::{status, stop_reason, Action, Outcome, PerAction, Target, TaskSnapshot};
use crate::targets::lifecycle::{Answer, Lifecycle, Shape};

pub use crate::targets::TargetId;

/// How far back the API can see: tasks that started earlier are never polled.
pub use crate::model::{Phase, VISIBILITY_WINDOW};

/// The cap of the per-target failure backoff (unless the queue's own interval is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The cap of the not-found backoff of a target that has never been answered for, during the
/// first [`NEVER_SEEN_GRACE`] after it was added (unless the queue's own interval is longer).
pub const NEVER_SEEN_MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How long after it was added a never-answered target keeps the short not-found backoff.
pub const NEVER_SEEN_GRACE: Duration = Duration::from_secs(3600);

/// The first retry delay after a throttled answer.
const THROTTLE_RETRY: Duration = Duration::from_secs(1);

/// Stand-in for "never" when an addition to an [`Instant`] would overflow.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// What a restart found of a target in the durable store, for [`Scheduler::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub phase: Phase,
    /// StartTime of its last answer, ms since the epoch; 0 if none.
    pub start_time_ms: i64,
    /// When its task was first seen terminal, ms since the epoch.
    pub terminal_since_ms: Option<i64>,
    /// When the target was added, ms since the epoch (a target never seen keeps its short
    /// not-found backoff only during its first hour).
    pub added_ms: i64,
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
        /// The answer's EndTime in ms since the epoch; 0 if absent.
        end_time_ms: i64,
        /// The task failed (Status 4, or StopReason `StartTaskFailed`): it will never have
        /// files, so a record task settles like any other.
        failed: bool,
        /// Number of entries in the answer's `RecordFileList` (0 for webcast answers).
        files: usize,
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
            end_time_ms: snapshot.end_time_ms,
            failed: snapshot.status == status::FAILED
                || snapshot.stop_reason == stop_reason::START_TASK_FAILED,
            files: snapshot.files.len(),
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
    /// Removed from the targets ([`Scheduler::remove`]); its id may be given to a new target.
    Removed,
}

/// Per-target scheduling state; small, since there may be 10,000 targets.
#[derive(Debug, Clone)]
struct TargetState {
    action: Action,
    /// A webcast target without `task_id`: follows the room's newest task.
    room: bool,
    /// Its phase, StartTime and since when its task is terminal ([`Lifecycle`]).
    life: Lifecycle,
    slot: Slot,
    /// When its task becomes older than [`VISIBILITY_WINDOW`]; `None` while unknown.
    expires_at: Option<Instant>,
    /// When the target was added (for the never-seen not-found backoff).
    added_at: Instant,
    /// Consecutive backoff-class failures (not found, auth, client, decode).
    failures: u32,
    /// Consecutive throttled answers.
    throttles: u32,
    /// A recording whose start a callback announced: its end will be announced too, so while
    /// it runs it is polled every `announced_interval` instead of `active_interval`.
    announced: bool,
    /// A callback asked for a poll while one was in flight: poll again at once after it.
    repoll: bool,
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
    /// The active interval of announced recordings ([`Scheduler::announce`]); `None`: the
    /// same as everyone's (no callbacks).
    announced_interval: Option<Duration>,
    settle_interval: Duration,
    settle_timeout: Duration,
    targets: Vec<TargetState>,
    /// How many entries of `targets` are [`Slot::Removed`].
    removed: usize,
    queues: PerAction<Queues>,
}

impl TargetState {
    /// The lane and time of the next attempt after a failed poll (see the table in the module
    /// documentation); `None`: never polled again.
    fn failed(
        &mut self,
        id: TargetId,
        outcome: Outcome,
        now: Instant,
        active_interval: Duration,
        settle_interval: Duration,
    ) -> Option<(Lane, Instant)> {
        if outcome == Outcome::NotFound && self.expires_at.is_some_and(|e| e <= now) {
            // The API cannot see a task this old any more. A room stays watched.
            self.life.phase = Phase::Expired;
        }
        if outcome != Outcome::Throttled {
            self.throttles = 0;
        }
        let (lane, lane_interval) = match self.life.phase {
            Phase::New | Phase::Active => (Lane::Active, active_interval),
            Phase::Settling | Phase::Done | Phase::Expired => (Lane::Settle, settle_interval),
        };
        match outcome {
            _ if self.life.phase == Phase::Expired && !self.room => None,
            Outcome::Throttled => {
                self.throttles = self.throttles.saturating_add(1);
                let delay = THROTTLE_RETRY
                    .saturating_mul(pow2(self.throttles))
                    .min(active_interval);
                Some((lane, later(now, delay)))
            }
            Outcome::NotFound
            | Outcome::AuthError
            | Outcome::ClientError
            | Outcome::DecodeError => {
                self.failures = self.failures.saturating_add(1);
                // A target never answered for is often announced a moment before the
                // API knows its task: keep looking for it often in its first hour.
                let never_seen = outcome == Outcome::NotFound
                    && self.life.phase == Phase::New
                    && now < later(self.added_at, NEVER_SEEN_GRACE);
                let cap = if never_seen {
                    NEVER_SEEN_MAX_BACKOFF
                } else {
                    MAX_BACKOFF
                };
                let delay = backoff(lane_interval, self.failures, id, cap);
                Some((lane, later(now, delay)))
            }
            Outcome::ServerError | Outcome::Timeout | Outcome::NetworkError | Outcome::Success => {
                Some((lane, later(now, active_interval)))
            }
        }
    }
    /// The placeholder of a removed target.
    fn removed(at: Instant) -> TargetState {
        TargetState {
            action: Action::GetRecordTask,
            room: false,
            life: Lifecycle::default(),
            slot: Slot::Removed,
            expires_at: None,
            added_at: at,
            failures: 0,
            throttles: 0,
            announced: false,
            repoll: false,
        }
    }
}

impl Scheduler {
    /// Every target starts **new**; the first polls of each action's targets are spread evenly
    /// over `[now, now + active_interval)`.
    pub fn new(targets: &[Target], schedule: &ScheduleSettings, now: Instant) -> Scheduler {
        let mut scheduler = Scheduler {
            active_interval: schedule.active_interval,
            announced_interval: None,
            settle_interval: schedule.settle_interval,
            settle_timeout: schedule.settle_timeout,
            targets: Vec::with_capacity(targets.len()),
            removed: 0,
            queues: PerAction::default(),
        };
        let ids: Vec<(TargetId, &Target)> = targets.iter().enumerate().collect();
        scheduler.insert(&ids, now);
        scheduler
    }

    /// Number of targets.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.targets.len() - self.removed
    }

    /// Adds targets while running, each under the id its caller chose (the store's): an id
    /// beyond the last, or one freed by [`Scheduler::remove`]. They start **new**, their first
    /// polls spread evenly over `[now, now + active_interval)` per action, so a reload adding
    /// thousands of targets sends no burst. A single target is due at once. An id already in
    /// use is left alone.
    pub fn insert(&mut self, targets: &[(TargetId, &Target)], now: Instant) {
        let mut per_action = PerAction::<u128>::default();
        for (_, t) in targets {
            per_action[t.key.kind.action()] += 1;
        }
        let mut seen = PerAction::<u128>::default();
        let interval_ns = self.active_interval.as_nanos();
        for &(id, t) in targets {
            let action = t.key.kind.action();
            let k = seen[action];
            seen[action] += 1;
            let offset_ns =
                u64::try_from(interval_ns * k / per_action[action].max(1)).unwrap_or(u64::MAX);
            let due = later(now, Duration::from_nanos(offset_ns));
            let state = TargetState {
                action,
                room: t.key.task_id.is_none(),
                life: Lifecycle::default(),
                slot: Slot::Queued {
                    lane: Lane::Active,
                    due,
                },
                expires_at: None,
                added_at: now,
                failures: 0,
                throttles: 0,
                announced: false,
                repoll: false,
            };
            if self.place(id, state) {
                self.queues[action].active.insert((due, id));
            }
        }
    }

    /// Puts a target back as a restart found it in the durable store (see [`Restored`]).
    /// Done and expired task targets are parked (never polled again); the others are queued
    /// at `due`, in the lane of their phase; a room-following webcast target keeps being
    /// watched. `wall` is the wall-clock time at `due` (to judge the task's age). Returns
    /// false when `id` is already in use.
    pub fn restore(
        &mut self,
        id: TargetId,
        target: &Target,
        restored: Restored,
        due: Instant,
        wall: SystemTime,
    ) -> bool {
        let Restored {
            phase,
            start_time_ms,
            terminal_since_ms,
            added_ms,
        } = restored;
        let age = u64::try_from(crate::clock::system_time_to_ms(wall).saturating_sub(added_ms))
            .unwrap_or(0);
        let added_at = due.checked_sub(Duration::from_millis(age)).unwrap_or(due);
        let action = target.key.kind.action();
        let room = target.key.task_id.is_none();
        let expires_at = (start_time_ms > 0)
            .then(|| expiry(start_time_ms, due, wall))
            .flatten();
        let slot = match (phase, room) {
            (Phase::Done | Phase::Expired, false) => Slot::Parked,
            (Phase::New | Phase::Active, _) => Slot::Queued {
                lane: Lane::Active,
                due,
            },
            _ => Slot::Queued {
                lane: Lane::Settle,
                due,
            },
        };
        let state = TargetState {
            action,
            room,
            life: Lifecycle {
                phase,
                start_time_ms,
                terminal_since_ms,
            },
            slot,
            expires_at,
            added_at,
            failures: 0,
            throttles: 0,
            announced: false,
            repoll: false,
        };
        if !self.place(id, state) {
            return false;
        }
        if let Slot::Queued { lane, due } = slot {
            self.queues[action].lane_mut(lane).insert((due, id));
        }
        true
    }

    /// Stores `state` under `id` if the id is free; false if it is in use.
    fn place(&mut self, id: TargetId, state: TargetState) -> bool {
        match self.targets.get_mut(id) {
            Some(t) if t.slot == Slot::Removed => {
                *t = state;
                self.removed -= 1;
                true
            }
            Some(_) => false,
            None => {
                // Ids are dense (the store hands them out), but a gap must not panic.
                let at = state.added_at;
                while self.targets.len() < id {
                    self.targets.push(TargetState::removed(at));
                    self.removed += 1;
                }
                self.targets.push(state);
                true
            }
        }
    }

    /// Removes a target: it leaves its queue at once, and an answer still in flight for it is
    /// ignored. Its id may then be reused by [`Scheduler::insert`]. Unknown ids are ignored.
    pub fn remove(&mut self, id: TargetId) {
        let Some(t) = self.targets.get_mut(id) else {
            return;
        };
        let q = &mut self.queues[t.action];
        match t.slot {
            Slot::Queued { lane, due } => {
                q.lane_mut(lane).remove(&(due, id));
            }
            Slot::InFlight { .. } => q.in_flight = q.in_flight.saturating_sub(1),
            Slot::Parked => {}
            Slot::Removed => return,
        }
        *t = TargetState::removed(t.added_at);
        self.removed += 1;
    }

    /// When the next queued target of `action` becomes due (possibly already past); `None`
    /// when nothing is queued (all done, expired or in flight).
    pub fn next_due(&self, action: Action) -> Option<Instant> {
        self.queues[action].earliest()
    }

    /// Takes the most overdue target of `action` that is due at `now` — new and active targets
    /// before settling ones — and marks it in flight until [`Scheduler::complete`]. Task
    /// targets whose task has meanwhile grown older than 72 h are expired here instead of
    /// being returned.
    pub fn pop_due(&mut self, action: Action, now: Instant) -> Option<TargetId> {
        let q = &mut self.queues[action];
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
                t.life.phase = Phase::Expired;
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
        let mut active_interval = self.active_interval;
        let settle_interval = self.settle_interval;
        let settle_timeout = self.settle_timeout;
        let Some(t) = self.targets.get_mut(id) else {
            return;
        };
        let Slot::InFlight { due, popped_at } = t.slot else {
            return;
        };
        if t.announced {
            active_interval = self.announced_interval.unwrap_or(active_interval);
        }
        let q = &mut self.queues[t.action];
        q.in_flight = q.in_flight.saturating_sub(1);

        let next = match result {
            PollResult::Success {
                terminal,
                start_time_ms,
                end_time_ms,
                failed,
                files,
                changed,
            } => {
                t.failures = 0;
                t.throttles = 0;
                if start_time_ms > 0 {
                    t.expires_at = expiry(start_time_ms, now, wall);
                }
                let answer = Answer {
                    terminal,
                    start_time_ms,
                    end_time_ms,
                    failed,
                    files,
                    changed,
                };
                let shape = Shape {
                    room: t.room,
                    record: t.action == Action::GetRecordTask,
                };
                let expired = t.expires_at.is_some_and(|e| e <= now);
                let wall_ms = millis_since_epoch(wall);
                t.life
                    .answered(&answer, shape, expired, settle_timeout, wall_ms);
                // Keep the grid when dispatched on time; restart it from the dispatch when late.
                let anchor = if popped_at <= later(due, active_interval / 4) {
                    due
                } else {
                    popped_at
                };
                match (t.life.phase, t.room) {
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
                t.failed(id, outcome, now, active_interval, settle_interval)
            }
        };
        let next = match (std::mem::take(&mut t.repoll), next) {
            (false, next) => next,
            (true, Some((lane, _))) => Some((lane, now)),
            (true, None) => {
                // Done for the poller, but a callback came with news meanwhile.
                t.life.phase = Phase::Settling;
                Some((Lane::Settle, now))
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

    /// Number of targets per action (one kind each) and phase ([`Phase::index`]), for
    /// `volcengine_rtc_targets{kind,phase}`.
    pub fn phase_counts(&self) -> PerAction<[usize; 5]> {
        let mut counts = PerAction::<[usize; 5]>::default();
        for t in self.targets.iter().filter(|t| t.slot != Slot::Removed) {
            if let Some(c) = counts[t.action].get_mut(t.life.phase.index()) {
                *c += 1;
            }
        }
        counts
    }

    /// The phase of one target; `None` for an id outside the targets given to `new`.
    pub fn phase(&self, id: TargetId) -> Option<Phase> {
        self.targets
            .get(id)
            .filter(|t| t.slot != Slot::Removed)
            .map(|t| t.life.phase)
    }

    /// Whether target `id` is parked: a done or expired task target, never polled again unless
    /// a callback brings news. False for an unknown or removed id.
    pub fn is_parked(&self, id: TargetId) -> bool {
        self.targets.get(id).is_some_and(|t| t.slot == Slot::Parked)
    }

    /// Sets when target `id` was added, which the never-seen not-found backoff counts its
    /// first hour from ([`NEVER_SEEN_GRACE`]). [`Scheduler::new`] sets it to its `now`; a
    /// target restored or inserted later can be given its real time. Ignored for an unknown id.
    #[cfg(test)]
    fn set_added_at(&mut self, id: TargetId, at: Instant) {
        if let Some(t) = self.targets.get_mut(id) {
            t.added_at = at;
        }
    }

    /// Number of popped targets of `action` not yet completed.
    #[cfg(test)]
    fn in_flight(&self, action: Action) -> usize {
        self.queues[action].in_flight
    }

    /// Number of targets of `action` waiting in its queues.
    #[cfg(test)]
    fn queued(&self, action: Action) -> usize {
        let q = &self.queues[action];
        q.active.len() + q.settle.len()
    }
}

/// `t + d`, or a far-future instant when that would overflow.
fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(FAR_FUTURE))
        .unwrap_or(t)
}

/// The wait after the `n`-th backoff-class failure in a row of target `id`: between half and
/// all of `min(interval × 2^(n−1), cap)`, never below `interval`, where the cap is `cap`
/// ([`MAX_BACKOFF`], or [`NEVER_SEEN_MAX_BACKOFF`]; `interval` if longer). The jitter is a
/// fixed function of `(id, n)`, so behaviour is reproducible, yet targets that failed together
/// (wrong credentials) drift apart instead of coming back in one wave every 10 minutes.
fn backoff(interval: Duration, n: u32, id: TargetId, cap: Duration) -> Duration {
    let full = interval.saturating_mul(pow2(n)).min(cap.max(interval));
    let fraction = (mix(id as u64, u64::from(n)) >> 11) as f64 / (1u64 << 53) as f64;
    full.mul_f64(1.0 - fraction / 2.0).max(interval)
}

/// A well-mixed 64-bit value from two inputs (the SplitMix64 finalizer).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(b)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 2^(n−1) for n ≥ 1 (1 for n = 0), saturating.
fn pow2(n: u32) -> u32 {
    1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX)
}

/// `wall` in ms since the epoch (0 before it; saturating far in the future).
fn millis_since_epoch(wall: SystemTime) -> i64 {
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

// ----- read by the pages and the registration API (HTTP side) -----

impl Scheduler {
    /// When target `id` is next due (already past while it is in flight); `None` when it is
    /// not polled again, or for an unknown id.
    pub fn due(&self, id: TargetId) -> Option<Instant> {
        match self.targets.get(id)?.slot {
            Slot::Queued { due, .. } | Slot::InFlight { due, .. } => Some(due),
            Slot::Parked | Slot::Removed => None,
        }
    }

    /// Makes target `id` due now (a callback announced a change): a queued one is due at once
    /// in its lane, a parked (done) one is settling again; one in flight is left alone.
    pub fn poll_now(&mut self, id: TargetId, now: Instant) {
        let Some(t) = self.targets.get_mut(id) else {
            return;
        };
        let q = &mut self.queues[t.action];
        match t.slot {
            Slot::Queued { lane, due } => {
                q.lane_mut(lane).remove(&(due, id));
            }
            Slot::Parked => {
                // Done for the poller, but the callback says there is news: settle again.
                t.life.phase = Phase::Settling;
            }
            Slot::InFlight { .. } => {
                // Its answer may predate the news: poll again once it is back.
                t.repoll = true;
                return;
            }
            Slot::Removed => return,
        }
        let lane = match t.life.phase {
            Phase::New | Phase::Active => Lane::Active,
            _ => Lane::Settle,
        };
        q.lane_mut(lane).insert((now, id));
        t.slot = Slot::Queued { lane, due: now };
    }

    /// Marks `id` a recording whose start a callback announced (see
    /// [`Scheduler::set_announced_interval`]); webcast targets are left as they are, since the
    /// vendor's web-capture events are not confirmed.
    pub fn announce(&mut self, id: TargetId) {
        if let Some(t) = self.targets.get_mut(id) {
            if t.action == Action::GetRecordTask && t.slot != Slot::Removed {
                t.announced = true;
            }
        }
    }

    /// Whether `id` is an announced recording.
    #[cfg(test)]
    fn is_announced(&self, id: TargetId) -> bool {
        self.targets.get(id).is_some_and(|t| t.announced)
    }

    /// The active interval of announced recordings (`callbacks.active_interval`); `None` when
    /// callbacks are off, and announced recordings are polled like any other. Applies from
    /// each target's next answer.
    pub fn set_announced_interval(&mut self, interval: Option<Duration>) {
        self.announced_interval = interval;
    }

    /// Puts new intervals and the settle timeout in force (a reload); each target's next
    /// poll is planned with them from its next answer on.
    pub fn set_schedule(&mut self, schedule: &ScheduleSettings) {
        self.active_interval = schedule.active_interval;
        self.settle_interval = schedule.settle_interval;
        self.settle_timeout = schedule.settle_timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, TargetKey};

    const ACTIVE: Duration = Duration::from_secs(15);
    const SETTLE: Duration = Duration::from_secs(60);
    const R: Action = Action::GetRecordTask;
    const W: Action = Action::GetWebCastTask;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn schedule() -> ScheduleSettings {
        ScheduleSettings {
            active_interval: ACTIVE,
            settle_interval: SETTLE,
            retention: secs(86_400),
            ..ScheduleSettings::default()
        }
    }

    fn target(kind: Kind, i: usize, task: bool) -> Target {
        Target {
            key: TargetKey {
                kind,
                app_id: "app".into(),
                room_id: format!("room{i}"),
                task_id: task.then(|| format!("task{i}")),
            },
            labels: Default::default(),
        }
    }

    fn records(n: usize) -> Vec<Target> {
        (0..n).map(|i| target(Kind::Record, i, true)).collect()
    }

    /// A fixed wall clock: `t0` corresponds to this.
    fn wall0() -> SystemTime {
        UNIX_EPOCH + secs(1_800_000_000)
    }

    /// Wall-clock time at `now`, given that `t0` is [`wall0`].
    fn wall(t0: Instant, now: Instant) -> SystemTime {
        wall0() + (now - t0)
    }

    /// StartTime (ms) of a task that started `ago` before `t0`.
    fn started_ago(ago: Duration) -> i64 {
        let ms = (wall0() - ago)
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        i64::try_from(ms).unwrap()
    }

    fn running(start_ms: i64) -> PollResult {
        PollResult::Success {
            terminal: false,
            start_time_ms: start_ms,
            end_time_ms: 0,
            failed: false,
            files: 0,
            changed: true,
        }
    }

    /// A terminal answer with one file and no EndTime.
    fn ended(start_ms: i64, changed: bool) -> PollResult {
        finished(start_ms, 0, 1, changed)
    }

    /// A terminal answer (not failed) with EndTime `end_ms` and `files` files.
    fn finished(start_ms: i64, end_ms: i64, files: usize, changed: bool) -> PollResult {
        PollResult::Success {
            terminal: true,
            start_time_ms: start_ms,
            end_time_ms: end_ms,
            failed: false,
            files,
            changed,
        }
    }

    /// Pops the next target of `action` at its due time; returns (id, when).
    fn pop_next(s: &mut Scheduler, action: Action) -> Option<(TargetId, Instant)> {
        let due = s.next_due(action)?;
        s.pop_due(action, due).map(|id| (id, due))
    }

    impl Scheduler {
        /// Every target is in exactly one place, and the queues hold nothing else.
        fn check_invariants(&self) {
            let mut queued = PerAction::<usize>::default();
            let mut in_flight = PerAction::<usize>::default();
            for (id, t) in self.targets.iter().enumerate() {
                let q = &self.queues[t.action];
                match t.slot {
                    Slot::Queued { lane, due } => {
                        queued[t.action] += 1;
                        let expected = match t.life.phase {
                            Phase::New | Phase::Active => Lane::Active,
                            _ => Lane::Settle,
                        };
                        assert_eq!(
                            lane, expected,
                            "{id} in the wrong queue for {}",
                            t.life.phase
                        );
                        let (this, other) = match lane {
                            Lane::Active => (&q.active, &q.settle),
                            Lane::Settle => (&q.settle, &q.active),
                        };
                        assert!(this.contains(&(due, id)), "{id} missing from its queue");
                        assert!(!other.iter().any(|&(_, i)| i == id), "{id} queued twice");
                    }
                    Slot::InFlight { .. } => in_flight[t.action] += 1,
                    Slot::Removed => {}
                    Slot::Parked => {
                        assert!(!t.room, "{id}: rooms are never parked");
                        assert!(matches!(t.life.phase, Phase::Done | Phase::Expired), "{id}");
                    }
                }
            }
            for a in Action::ALL {
                assert_eq!(self.queued(a), queued[a], "{a}: stray queue entries");
                assert_eq!(self.in_flight(a), in_flight[a], "{a}");
            }
        }
    }

    fn total(counts: PerAction<[usize; 5]>) -> usize {
        Action::ALL.iter().flat_map(|&a| counts[a]).sum()
    }

    #[test]
    fn inserted_targets_start_new_and_spread_removed_ones_leave_their_queue() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&records(2), &schedule(), t0);
        let more = records(6);
        let added: Vec<_> = (2..6).map(|id| (id, &more[id])).collect();
        let at = t0 + secs(100);
        s.insert(&added, at);
        assert_eq!(s.len(), 6);
        assert_eq!(s.phase(4), Some(Phase::New));
        // An id in use is left alone.
        s.insert(&[(0, &more[5])], at);
        assert_eq!(s.len(), 6);
        s.check_invariants();
        // Removing one queued and one in flight.
        let popped = s.pop_due(R, t0).unwrap();
        s.remove(popped);
        s.remove(3);
        s.remove(3);
        assert_eq!(s.len(), 4);
        assert_eq!(s.phase(3), None);
        s.check_invariants();
        // An answer for a removed target is ignored.
        s.complete(popped, running(started_ago(secs(60))), at, wall(t0, at));
        s.check_invariants();
        // The rest are due on a spread over one interval from `at`.
        let mut times = Vec::new();
        while let Some((id, due)) = pop_next(&mut s, R) {
            assert!(id != 3 && id != popped);
            times.push(due);
        }
        assert_eq!(times.len(), 4);
        assert_eq!(
            times.iter().filter(|&&t| t == at).count(),
            1,
            "one due at once"
        );
        assert!(times.iter().all(|&t| t < at + ACTIVE));
        // A freed id is reused.
        s.insert(&[(3, &more[3])], at);
        assert_eq!(s.phase(3), Some(Phase::New));
        s.check_invariants();
    }

    fn rs(phase: Phase, start_time_ms: i64) -> Restored {
        Restored {
            phase,
            start_time_ms,
            terminal_since_ms: None,
            added_ms: started_ago(secs(7200)),
        }
    }

    #[test]
    fn restored_targets_resume_done_ones_are_never_polled() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&[], &schedule(), t0);
        let ts = records(3);
        let room = target(Kind::Webcast, 9, false);
        let start = started_ago(secs(3600));
        assert!(s.restore(0, &ts[0], rs(Phase::Done, start), t0, wall0()));
        assert!(s.restore(1, &ts[1], rs(Phase::Active, start), t0 + secs(5), wall0()));
        assert!(s.restore(2, &ts[2], rs(Phase::Settling, start), t0 + secs(7), wall0()));
        assert!(s.restore(3, &room, rs(Phase::Done, start), t0 + secs(9), wall0()));
        assert!(
            !s.restore(3, &room, rs(Phase::Done, start), t0, wall0()),
            "id in use"
        );
        s.check_invariants();
        assert_eq!(s.phase(0), Some(Phase::Done));
        assert_eq!(pop_next(&mut s, R), Some((1, t0 + secs(5))));
        assert_eq!(pop_next(&mut s, R), Some((2, t0 + secs(7))));
        assert_eq!(pop_next(&mut s, R), None, "a done task target is parked");
        assert_eq!(
            pop_next(&mut s, W),
            Some((3, t0 + secs(9))),
            "a room stays watched"
        );
        // A task older than 72 h restored active expires instead of being polled.
        let old = started_ago(VISIBILITY_WINDOW + secs(60));
        assert!(s.restore(4, &records(5)[4], rs(Phase::Active, old), t0, wall0()));
        assert_eq!(s.pop_due(R, t0 + secs(1)), None);
        assert_eq!(s.phase(4), Some(Phase::Expired));
    }

    #[test]
    fn settling_until_two_identical_answers_then_done_for_good() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&records(1), &schedule(), t0);
        let start = started_ago(secs(7200));
        let (id, at) = pop_next(&mut s, R).unwrap();
        s.complete(id, running(start), at, wall(t0, at));
        assert_eq!(s.phase(id), Some(Phase::Active));
        assert_eq!(s.next_due(R), Some(t0 + ACTIVE));
        let (id, at) = pop_next(&mut s, R).unwrap();
        s.complete(id, ended(start, true), at, wall(t0, at));
        assert_eq!(s.phase(id), Some(Phase::Settling));
        assert_eq!(s.next_due(R), Some(at + SETTLE));
        // Files still uploading: the answer changed again.
        let (id, at) = pop_next(&mut s, R).unwrap();
        s.complete(id, ended(start, true), at, wall(t0, at));
        assert_eq!(s.phase(id), Some(Phase::Settling));
        let (id, at) = pop_next(&mut s, R).unwrap();
        s.complete(id, ended(start, false), at, wall(t0, at));
        assert_eq!(s.phase(id), Some(Phase::Done));
        assert_eq!(s.next_due(R), None);
        assert_eq!(s.pop_due(R, t0 + secs(86_400)), None);
        assert_eq!(s.queued(R), 0);
        assert_eq!(s.in_flight(R), 0);
    }

    #[test]
    fn not_found_for_a_task_known_to_be_too_old_expires_it() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&records(2), &schedule(), t0);
        let ids: Vec<_> = std::iter::from_fn(|| s.pop_due(R, t0 + ACTIVE)).collect();
        assert_eq!(ids, [0, 1]);
        let at = t0 + ACTIVE;
        // 0 is known to leave the 72-hour window 20 s after its next poll is dispatched;
        // 1 is a day younger.
        let old = started_ago(VISIBILITY_WINDOW - ACTIVE - ACTIVE - secs(20));
        let young = started_ago(VISIBILITY_WINDOW - secs(86_400));
        s.complete(0, running(old), at, wall(t0, at));
        s.complete(1, running(young), at, wall(t0, at));
        let at = t0 + ACTIVE + ACTIVE;
        let mut ids: Vec<_> = std::iter::from_fn(|| s.pop_due(R, at)).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1]);
        // Both answers arrive after 0 has grown too old.
        let late = at + secs(25);
        s.complete(
            0,
            PollResult::Failed(Outcome::NotFound),
            late,
            wall(t0, late),
        );
        s.complete(
            1,
            PollResult::Failed(Outcome::NotFound),
            late,
            wall(t0, late),
        );
        assert_eq!(s.phase(0), Some(Phase::Expired));
        assert_eq!(
            s.phase(1),
            Some(Phase::Active),
            "young task: backoff, not expiry"
        );
        assert_eq!(s.queued(R), 1);
        // A completion for a target that is not in flight any more is ignored.
        s.complete(0, running(young), late, wall(t0, late));
        assert_eq!(s.phase(0), Some(Phase::Expired));
        assert_eq!(s.queued(R), 1);
    }

    /// Answers every poll of `s`'s record targets with NotFound until `until`; returns the
    /// gaps between polls (of its one target), with the time each gap started.
    fn not_found_gaps(s: &mut Scheduler, t0: Instant, until: Instant) -> Vec<(Instant, Duration)> {
        let mut last = None;
        let mut gaps = Vec::new();
        while let Some((id, at)) = pop_next(s, R) {
            if at > until {
                break;
            }
            if let Some(prev) = last {
                gaps.push((prev, at - prev));
            }
            last = Some(at);
            s.complete(id, PollResult::Failed(Outcome::NotFound), at, wall(t0, at));
        }
        gaps
    }

    #[test]
    fn the_short_not_found_backoff_is_only_for_targets_never_answered_in_their_first_hour() {
        // (Shifted ahead: the monotonic clock may have started less than two hours ago.)
        let t0 = Instant::now() + secs(7200);
        // Added two hours ago (restored from a store, say): the normal backoff at once.
        let mut s = Scheduler::new(&records(1), &schedule(), t0);
        s.set_added_at(0, t0 - secs(7200));
        s.set_added_at(5, t0); // unknown id: ignored
        let gaps = not_found_gaps(&mut s, t0, t0 + secs(3600));
        assert!(
            gaps.iter().any(|&(_, g)| g > secs(300)),
            "doubled to 5–10 minutes: {gaps:?}"
        );
        // Answered once: a later NotFound is not "never seen".
        let mut s = Scheduler::new(&records(1), &schedule(), t0);
        let (id, at) = pop_next(&mut s, R).unwrap();
        s.complete(id, running(started_ago(secs(10))), at, wall(t0, at));
        let gaps = not_found_gaps(&mut s, t0, t0 + secs(1800));
        assert!(
            gaps.iter().any(|&(_, g)| g > secs(300)),
            "doubled to 5–10 minutes: {gaps:?}"
        );
        // Other failures of a never-seen target double as before.
        let mut s = Scheduler::new(&records(1), &schedule(), t0);
        let mut last = None;
        let mut longest = Duration::ZERO;
        while let Some((id, at)) = pop_next(&mut s, R) {
            if at > t0 + secs(1800) {
                break;
            }
            if let Some(prev) = last {
                longest = longest.max(at - prev);
            }
            last = Some(at);
            s.complete(id, PollResult::Failed(Outcome::AuthError), at, wall(t0, at));
        }
        assert!(longest > secs(300), "{longest:?}");
        // An active interval above a minute is kept (never polled faster than configured).
        let slow = ScheduleSettings {
            active_interval: secs(120),
            ..schedule()
        };
        let mut s = Scheduler::new(&records(1), &slow, t0);
        let gaps = not_found_gaps(&mut s, t0, t0 + secs(1800));
        assert!(gaps.iter().all(|&(_, g)| g == secs(120)), "{gaps:?}");
    }

    #[test]
    fn announced_recordings_run_at_their_own_interval_and_a_poll_asked_in_flight_follows() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&records(2), &schedule(), t0);
        s.set_announced_interval(Some(secs(60)));
        s.announce(0);
        assert!(s.is_announced(0) && !s.is_announced(1));
        let start = started_ago(secs(600));
        // Both answered as running at t0 + 20 s.
        let now = t0 + secs(20);
        let mut popped = Vec::new();
        while let Some(id) = s.pop_due(R, now) {
            popped.push(id);
        }
        assert_eq!(popped.len(), 2);
        for &id in &popped {
            s.complete(id, running(start), now, wall(t0, now));
        }
        let due_of = |s: &Scheduler, id: TargetId| match s.targets[id].slot {
            Slot::Queued { due, .. } => Some(due),
            _ => None,
        };
        // The announced one a minute on, the other at active_interval.
        assert_eq!(due_of(&s, 0).map(|d| d - now), Some(secs(60)));
        assert_eq!(due_of(&s, 1).map(|d| d - now), Some(ACTIVE));
        // A callback while its poll is in flight: once that answer is in, it is polled again
        // at once, not a minute later.
        let later_at = t0 + secs(80);
        // (The other one, overdue by then, is answered first.)
        while let Some(id) = s.pop_due(R, later_at) {
            if id == 0 {
                break;
            }
            s.complete(id, running(start), later_at, wall(t0, later_at));
        }
        assert!(matches!(s.targets[0].slot, Slot::InFlight { .. }));
        s.poll_now(0, later_at);
        s.complete(0, running(start), later_at, wall(t0, later_at));
        assert_eq!(due_of(&s, 0), Some(later_at));
        assert_eq!(s.pop_due(R, later_at), Some(0));
        s.complete(0, ended(start, true), later_at, wall(t0, later_at));
        // Terminal: settling as usual, at settle_interval.
        assert_eq!(s.phase(0), Some(Phase::Settling));
        assert_eq!(due_of(&s, 0).map(|d| d - later_at), Some(SETTLE));
        // Without callbacks (a reload turned them off) it is polled like any other.
        s.set_announced_interval(None);
        let mut s2 = Scheduler::new(&records(1), &schedule(), t0);
        s2.announce(0);
        assert_eq!(s2.pop_due(R, t0), Some(0));
        s2.complete(0, running(start), t0, wall(t0, t0));
        assert_eq!(due_of(&s2, 0).map(|d| d - t0), Some(ACTIVE));
        // Webcast targets are never announced (their events are not confirmed).
        let mut s3 = Scheduler::new(&[target(Kind::Webcast, 0, true)], &schedule(), t0);
        s3.announce(0);
        assert!(!s3.is_announced(0));
    }

    #[test]
    fn completions_for_unknown_or_idle_targets_are_ignored() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(&records(2), &schedule(), t0);
        s.complete(7, running(1), t0, wall0());
        s.complete(1, running(1), t0, wall0());
        assert_eq!(s.phase(1), Some(Phase::New));
        assert_eq!(s.phase(7), None);
        assert_eq!(s.queued(R), 2);
    }

    #[test]
    fn phase_counts_always_add_up() {
        let t0 = Instant::now();
        let mut targets = records(60);
        targets.extend((0..40).map(|i| target(Kind::Webcast, i, i % 3 != 0)));
        let mut s = Scheduler::new(&targets, &schedule(), t0);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut in_flight: Vec<TargetId> = Vec::new();
        let mut seen = [false; 5];
        for step in 0..20_000u64 {
            let now = t0 + Duration::from_millis(250 * step);
            for action in Action::ALL {
                if let Some(id) = s.pop_due(action, now) {
                    in_flight.push(id);
                }
            }
            if !in_flight.is_empty() && next() % 2 == 0 {
                let id = in_flight.swap_remove((next() % in_flight.len() as u64) as usize);
                // Fixed per target (some over 72 h); a few rooms see new tasks.
                let age =
                    secs((id as u64 * 7919 + 13 * (next() % 2 * (id as u64 % 2))) % (80 * 3600));
                let result = match next() % 8 {
                    0 => running(started_ago(age)),
                    1..=3 => ended(started_ago(age), next() % 3 == 0),
                    4 => PollResult::Failed(Outcome::NotFound),
                    5 => PollResult::Failed(Outcome::Throttled),
                    6 => PollResult::Failed(Outcome::AuthError),
                    _ => PollResult::Failed(Outcome::Timeout),
                };
                s.complete(id, result, now, wall(t0, now));
                // A stray completion (not in flight, or no such target) changes nothing.
                let stray = (next() % 110) as usize;
                if !in_flight.contains(&stray) {
                    let before = s.phase(stray);
                    s.complete(stray, running(1), now, wall(t0, now));
                    assert_eq!(s.phase(stray), before);
                }
            }
            s.check_invariants();
            let counts = s.phase_counts();
            assert_eq!(total(counts), targets.len());
            assert_eq!(counts[R].iter().sum::<usize>(), 60);
            assert_eq!(counts[W].iter().sum::<usize>(), 40);
            for p in Phase::ALL {
                seen[p.index()] |= Action::ALL.iter().any(|&a| counts[a][p.index()] > 0);
            }
        }
        assert_eq!(seen, [true; 5], "the walk visited every phase");
    }
}
