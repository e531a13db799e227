//! Keeps the durable store ([`crate::state`]) in step with the target table ([`Store`]) and the
//! [`Scheduler`]: what a restart finds, and what each answer writes. It keeps nothing of its
//! own about a target: each row is written from what the table holds (key, labels, sources,
//! when it was added, last answer and poll, stop counted) and the phase the scheduler gives.
//!
//! - **At start** ([`Durable::start`]) every stored target is put back as it was: its series
//!   are served at once, done and expired tasks stay parked, active ones resume on an even
//!   spread. Targets the config no longer lists (and no other source holds) leave the store;
//!   targets new in the config start as `new`. The stop counters continue.
//! - **After each poll** ([`Durable::put`]) the target's record is written, with how that
//!   poll went (time, outcome, error), which a restart shows as it was. A stop the answer
//!   reveals rides in the same transaction; the caller counts it in `/metrics` only once that
//!   commit is durable ([`Submitted::durable`]), so `kill -9` at any moment never counts a
//!   stop twice nor loses one already shown.
//! - **Housekeeping** prunes rows `retention` after their task's end.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::ScheduleSettings;
use crate::model::{Action, PerAction, Target, TargetKey};
use crate::scheduler::{Phase, Restored, Scheduler};
use crate::state::{
    Change, EventRetention, Loaded, Opened, Settle, Source, Stats, StopCount, StoredPoll,
    StoredSnapshot, Submitted, TargetRecord, TaskRef, Writer,
};
use crate::targets::table::{EntryState, PendingStop, Store, TargetId};

/// A restored target to queue.
type Queued = (TargetId, Target, Restored);

/// The link between the running exporter and its durable store.
pub struct Durable {
    writer: Writer,
    /// Callback event ids the store kept, until the callback receiver takes them.
    events: Mutex<HashMap<String, i64>>,
}

/// What [`Durable::start`] did, for the start-up log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StartSummary {
    /// Stored targets served again.
    pub restored: usize,
    /// Of those, done or expired task targets that will not be polled again.
    pub parked: usize,
    /// Targets new in the config.
    pub added: usize,
    /// Stored targets no source lists any more, removed.
    pub removed: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Durable {
    /// Loads the opened store into `store` and `scheduler` (both empty) and reconciles it with
    /// the config's `targets`. `now` and `wall` are the current instant and wall time.
    pub fn start(
        opened: Opened,
        targets: &[Target],
        store: &Store,
        scheduler: &mut Scheduler,
        schedule: &ScheduleSettings,
        now: Instant,
        wall: SystemTime,
    ) -> (Durable, StartSummary) {
        let Opened { state, writer, .. } = opened;
        let Loaded {
            targets: stored,
            counted,
            stops,
            events,
        } = state;
        let durable = Durable {
            writer,
            events: Mutex::new(events),
        };
        let now_ms = crate::clock::system_time_to_ms(wall);
        let mut start = Start {
            store,
            scheduler,
            summary: StartSummary::default(),
            queued: PerAction::default(),
            seen: HashSet::with_capacity(stored.len()),
            now,
            wall,
        };
        let configured: HashMap<&TargetKey, &Target> =
            targets.iter().map(|t| (&t.key, t)).collect();
        for (key, record) in stored {
            let in_config = configured.get(&key).copied();
            if let Some(change) = start.restore(key, record, in_config) {
                durable.writer.submit(change);
            }
        }
        start.spread(schedule);
        start.add_new(targets, now_ms, &durable.writer);
        store.restore_stops(
            stops
                .into_iter()
                .map(|((kind, app, reason), n)| (kind, app, reason, n)),
            counted,
        );
        (durable, start.summary)
    }

    /// Writes target `id`'s record as it is now in `store`, with `stop` counted in the same
    /// transaction. `None` for a target no longer in the store.
    pub fn put(
        &self,
        store: &Store,
        id: TargetId,
        stop: Option<&PendingStop>,
    ) -> Option<Submitted> {
        let target = store.target(id)?;
        let state = store.state(id)?;
        let snapshot = state.snapshot.as_ref();
        let stop = match (stop, snapshot) {
            (Some(stop), Some(snap)) => Some(StopCount {
                task: TaskRef::of(&target.key, snap),
                reason: stop.reason.clone(),
                ended_ms: if snap.end_time_ms > 0 {
                    snap.end_time_ms
                } else {
                    stop.at_ms
                },
            }),
            _ => None,
        };
        let record = TargetRecord {
            sources: state.sources.iter().cloned().collect(),
            labels: target.labels.to_vec(),
            added_ms: state.added_ms,
            snapshot: snapshot.map(StoredSnapshot::from),
            up: state.up,
            last_success_ms: state.last_success_ms,
            last_poll: state.last_poll.as_ref().map(StoredPoll::from),
            settle: Settle {
                phase: state.phase,
                terminal_since_ms: state.terminal_since_ms,
                stop_counted: state.stop_counted,
                expired: state.expired,
            },
        };
        Some(self.writer.submit(Change::Put {
            key: target.key.clone(),
            record,
            stop,
        }))
    }

    /// Deletes a removed target's row (its counted stops and counters stay).
    pub fn remove(&self, key: &TargetKey) -> Submitted {
        self.writer.submit(Change::Remove(key.clone()))
    }

    /// The callback event ids the store kept (once; later calls get none).
    pub fn take_events(&self) -> HashMap<String, i64> {
        std::mem::take(&mut *lock(&self.events))
    }

    /// Persists an accepted callback's event id, received at `received_ms`.
    pub fn remember_event(&self, id: &str, received_ms: i64) {
        self.writer.submit(Change::Event {
            id: id.to_string(),
            received_ms,
        });
    }

    /// Prunes rows (and counted tasks) whose time is up.
    pub fn prune(&self, now: SystemTime, retention: Duration) {
        let now_ms = crate::clock::system_time_to_ms(now);
        self.writer
            .prune(now_ms, retention, EventRetention::default());
    }

    /// The writer's statistics (errors, size, commits).
    pub fn stats(&self) -> &std::sync::Arc<Stats> {
        self.writer.stats()
    }

    /// Waits (blocking, at most `wait`) until everything submitted is written, then stops the
    /// writer. Returns false if the wait ran out.
    pub fn close(&self, wait: Duration) -> bool {
        self.writer.close(wait)
    }
}

/// What [`Durable::start`] is doing: the restored targets, queued to spread their next polls.
struct Start<'a> {
    store: &'a Store,
    scheduler: &'a mut Scheduler,
    summary: StartSummary,
    /// Queued restored targets, per (action, settle lane), to spread their next polls.
    queued: PerAction<[Vec<Queued>; 2]>,
    seen: HashSet<TargetKey>,
    now: Instant,
    wall: SystemTime,
}

impl Start<'_> {
    /// Puts one stored target back, reconciled with the config (`in_config`: how the config
    /// lists it, if it does); returns the change to write, if any.
    fn restore(
        &mut self,
        key: TargetKey,
        mut record: TargetRecord,
        in_config: Option<&Target>,
    ) -> Option<Change> {
        let had_config = record.sources.contains(&Source::Config);
        if in_config.is_some() {
            record.sources.insert(Source::Config);
        } else {
            record.sources.remove(&Source::Config);
        }
        if record.sources.is_empty() {
            self.summary.removed += 1;
            return Some(Change::Remove(key));
        }
        let target = match in_config {
            Some(t) => t.clone(),
            None => record.target(&key),
        };
        let changed = in_config.is_some() != had_config || *target.labels != *record.labels;
        let (id, fresh) = self.store.restore(target.clone(), entry_state(&record));
        if !fresh {
            return None;
        }
        self.seen.insert(key);
        let phase = record.settle.phase;
        let restored = Restored {
            phase,
            start_time_ms: record.snapshot.as_ref().map_or(0, |s| s.start_time_ms),
            terminal_since_ms: record.settle.terminal_since_ms,
            added_ms: record.added_ms,
        };
        self.summary.restored += 1;
        let room = target.key.task_id.is_none();
        if matches!(phase, Phase::Done | Phase::Expired) && !room {
            self.summary.parked += 1;
            self.scheduler
                .restore(id, &target, restored, self.now, self.wall);
            self.store.set_parked(id, true);
        } else {
            let lane = usize::from(!matches!(phase, Phase::New | Phase::Active));
            self.queued[target.key.kind.action()][lane].push((id, target.clone(), restored));
        }
        changed.then(|| {
            record.labels = target.labels.to_vec();
            Change::Put {
                key: target.key.clone(),
                record,
                stop: None,
            }
        })
    }

    /// Queues the restored targets that are still polled, spread over one interval of their
    /// lane per action.
    fn spread(&mut self, schedule: &ScheduleSettings) {
        for action in Action::ALL {
            for (lane, interval) in [schedule.active_interval, schedule.settle_interval]
                .into_iter()
                .enumerate()
            {
                let list = &self.queued[action][lane];
                let n = list.len().max(1) as u32;
                for (k, (id, target, restored)) in list.iter().enumerate() {
                    let offset = interval.mul_f64(k as f64 / f64::from(n));
                    self.scheduler.restore(
                        *id,
                        target,
                        *restored,
                        self.now + offset,
                        self.wall + offset,
                    );
                }
            }
        }
    }

    /// Adds the config's targets the store did not have, and writes their rows (one at a
    /// time: a list of 10,000 rows would stay in the allocator's hands after start).
    fn add_new(&mut self, targets: &[Target], now_ms: i64, writer: &Writer) {
        let mut added = Vec::new();
        for t in targets.iter().filter(|t| !self.seen.contains(&t.key)) {
            let (id, fresh, _) = self.store.give(t, &Source::Config, now_ms);
            if !fresh {
                continue;
            }
            added.push((id, t));
            writer.submit(Change::Put {
                key: t.key.clone(),
                record: TargetRecord::new(t, Source::Config, now_ms),
                stop: None,
            });
        }
        self.summary.added = added.len();
        self.scheduler.insert(&added, self.now);
    }
}

/// The store's state of a stored record.
fn entry_state(record: &TargetRecord) -> EntryState {
    EntryState {
        snapshot: record.task_snapshot(),
        up: record.up,
        last_success_ms: record.last_success_ms,
        last_poll: record.last_poll(),
        stop_counted: record.settle.stop_counted,
        terminal_since_ms: record.settle.terminal_since_ms,
        expired: record.settle.expired,
        sources: record.sources.iter().cloned().collect(),
        added_ms: record.added_ms,
        phase: record.settle.phase,
    }
}
