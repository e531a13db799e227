//! The target table: each target's last snapshot, whether its last poll succeeded, and its
//! exposition text kept ready (redone only when the target is polled); stop counting; expiry.
//!
//! # How rendering stays cheap
//!
//! Every per-target series line has the shape `NAME{PREFIX TAIL`, where
//!
//! - `NAME{` is static per family (`volcengine_rtc_task_status{`),
//! - `PREFIX` is the target's escaped label set (`kind="record",app_id="…",room_id="…",
//!   task_id="…"` then the target's own labels), built once in [`Store::new`] and shared by
//!   all of the target's series,
//! - `TAIL` is the rest of the line (`} 2\n`, or `,file="v1"} 1048576\n`), formatted when the
//!   target's poll result is recorded and kept in one small string per target (in the hot
//!   part, below), with the end offset of each family's tails.
//!
//! # How a scrape stays cheap
//!
//! Every family's lines are kept in two parts, each in blocks of [`BLOCK`] slots:
//!
//! - the **hot** part: the targets that may still change (new, active, settling, and a room
//!   still watched), each with its tails kept as text;
//! - the **cold** part: the targets the poller has parked ([`Store::set_parked`]: done or
//!   expired, never polled again). Their tails are not kept; they are made again from the
//!   target's state when its block's chunks are.
//!
//! A part has no holes: a target leaving a part (parked, polled again, removed) is replaced
//! by the part's last one. A family's lines are its cold blocks, then its hot blocks; the
//! order of series within a family is not otherwise meaningful.
//!
//! For every (part, family, block) the store keeps a ready [`Chunk`], shared by reference with
//! every scrape served from it: a hot chunk as text, compressed (raw deflate, fastest level)
//! the first time a gzip scrape needs it; a cold chunk compressed as it is made and kept
//! compressed only, about a tenth of the memory (an identity scrape inflates it again, a chunk
//! at a time, as the body is sent). Recording a poll bumps the generation of only the
//! (family, block) pairs whose lines changed; [`Store::page`] rebuilds just those chunks
//! (under the read lock, so a page is one consistent state) and so a gzip scrape compresses
//! only what changed since the last one. Since the running targets are kept apart from the
//! finished ones, a round of polls makes only the few hot blocks' chunks fresh, however many
//! finished targets the exporter has accumulated: a scrape costs in proportion to what
//! changed. Polls take the write lock only for the few microseconds it takes to re-format one
//! target. The per-target families are gauges, so their chunks serve both formats.
//!
//! # Lifecycle of a target's series
//!
//! - Before the first poll outcome a target has no series.
//! - A success stores the snapshot and sets `target_up` 1; a failure keeps the last values and
//!   sets `target_up` 0.
//! - [`Store::expire_ids`] removes all of a finished task's series — `task_*`, `record_*`,
//!   `webcast_*` and also its `target_up` / `target_last_success_timestamp_seconds` — once
//!   `retention` has passed since its EndTime (or, for a terminal task without EndTime, since
//!   it was first seen terminal). The last snapshot stays readable with [`Store::state`].
//!   An expired target comes back only when a later success brings a different answer or a
//!   new task (a room-following webcast target whose StartTime changed); failures never bring
//!   it back.
//! - `volcengine_rtc_task_stops_total` counts each task once, when first seen terminal
//!   (including a task already terminal on its first poll), with the StopReason of that
//!   answer. For every configured (kind, app_id) the reasons the API documents start at 0 so
//!   that `increase()` sees the first stop.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime};

use crate::clock::{rfc3339_ms, system_time_to_ms as millis_since_epoch};

use crate::exposition::{
    push_float, push_header, push_label, push_label_value, push_millis_as_seconds, Chunk, Format,
    Page,
};
use crate::model::{
    Kind, LastPoll, Outcome, Phase, RecordFile, Source, Target, TargetKey, TaskRef, TaskSnapshot,
};

/// Slots per block: the unit a changed target makes the store copy and compress again.
/// 128 targets make chunks of ≈ 20–80 KB on a typical page, big enough to compress well.
pub const BLOCK: usize = 128;

use super::merge::{self, Changed, Given};
pub use super::TargetId;

mod series;
use series::*;

/// A target's state as the durable store keeps it: what [`Store::state`] returns and
/// [`Store::restore`] takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryState {
    pub snapshot: Option<TaskSnapshot>,
    /// The last poll's outcome; `None` before the first.
    pub up: Option<bool>,
    /// When the last success happened, ms since the epoch.
    pub last_success_ms: Option<i64>,
    /// The last poll: when, its outcome and its error; `None` before the first.
    pub last_poll: Option<LastPoll>,
    /// The current task was counted in `task_stops_total`.
    pub stop_counted: bool,
    /// When the current task was first seen terminal, ms since the epoch.
    pub terminal_since_ms: Option<i64>,
    /// Its series were removed after retention.
    pub expired: bool,
    /// Where it came from, sorted, each once; it leaves when the last one drops it.
    pub sources: Vec<Source>,
    /// When it was added, ms since the epoch.
    pub added_ms: i64,
    /// Its phase, as the scheduler last judged it.
    pub phase: Phase,
}

/// A stop revealed by [`Store::record_success_deferred`], to be counted with
/// [`Store::count_stop`] once it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStop {
    pub kind: Kind,
    pub app_id: String,
    pub reason: String,
    /// When it was seen, ms since the epoch.
    pub at_ms: i64,
}

/// What one recorded success changed, for the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Update {
    /// The snapshot differs from the previous one (always true for the first).
    pub changed: bool,
    /// The task is terminal and this is the first answer that says so (for this task).
    pub newly_terminal: bool,
    /// A room-following webcast target (no `task_id`) whose StartTime changed: a new task.
    pub new_task: bool,
    /// A room-following webcast target now follows a task it did not follow before (its first
    /// StartTime, or a new task).
    pub followed_task: bool,
}

/// (kind, app_id, reason) of `volcengine_rtc_task_stops_total`.
type StopKey = (Kind, String, String);

/// A stop counter's value and, for a reason first seen after start, when it was created
/// (ms since the epoch); the reasons counted from the start have `None`.
#[derive(Clone, Copy, Default)]
struct Stops {
    count: u64,
    created_ms: Option<i64>,
}

/// The target table. `Send + Sync`: pollers record while `/metrics` renders.
pub struct Store {
    /// Each family's `# HELP`/`# TYPE`, the same in both formats (all gauges).
    headers: [Arc<Chunk>; N_FAMILIES],
    inner: RwLock<Inner>,
    /// The ready chunks of each part, `[part][block * N_FAMILIES + family]`. Locked before
    /// `inner`.
    chunks: Mutex<[Vec<Cached>; 2]>,
}

struct Inner {
    /// Indexed by [`TargetId`]; a free id has an entry without a target.
    entries: Vec<Entry>,
    /// Ids freed by [`Store::remove`], reused by [`Store::insert`].
    free: Vec<TargetId>,
    /// The id of every target by key.
    index: HashMap<KeyOf, TargetId>,
    stops: BTreeMap<StopKey, Stops>,
    /// The tasks whose stop is counted (durably, or on its way), also before a restart and for
    /// targets removed since: a task is counted once.
    counted: HashSet<TaskRef>,
    /// Where the targets' lines are, `[Part::Hot]` and `[Part::Cold]`.
    parts: [Layout; 2],
}

/// A target as a key of the index: its key, without a second copy of the key's strings.
struct KeyOf(Arc<Target>);

impl PartialEq for KeyOf {
    fn eq(&self, other: &KeyOf) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for KeyOf {}

impl Hash for KeyOf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl Borrow<TargetKey> for KeyOf {
    fn borrow(&self) -> &TargetKey {
        &self.0.key
    }
}

/// One target's state and its ready text.
#[derive(Default)]
struct Entry {
    /// The target; `None` for a free id.
    target: Option<Arc<Target>>,
    /// Where its lines are (meaningless for a free id).
    place: Place,
    /// The target's escaped label set, built once; empty in the cold part, where it is made
    /// again with its block's chunks.
    prefix: Box<str>,
    snapshot: Option<TaskSnapshot>,
    /// When the last success was recorded, ms since the epoch.
    polled_at_ms: i64,
    /// The last poll's outcome; `None` before the first.
    up: Option<bool>,
    last_success_ms: Option<i64>,
    /// The last poll: when, its outcome and its error.
    last_poll: Option<LastPoll>,
    /// The current task was counted in `task_stops_total`.
    stop_counted: bool,
    /// When the current task was first seen terminal, ms since the epoch.
    terminal_since_ms: Option<i64>,
    /// Its series were removed by [`Store::expire`].
    expired: bool,
    /// Where it came from, each source with the labels it gave, sorted by rank (see
    /// [`merge`]); a few bytes, where a set of one takes ≈ 300.
    sources: Given,
    /// When it was added, ms since the epoch.
    added_ms: i64,
    /// Its phase, as the scheduler last judged it ([`Store::set_phase`]).
    phase: Phase,
    /// The tails of every series line, family after family. Empty for a target in the cold
    /// part: its tails are made again from its state when its block's chunks are.
    text: String,
    /// `ends[f]`: where family `f`'s tails end in `text` (they start where `f - 1`'s end).
    ends: Ends,
    /// Bytes this target adds to the body (names and prefix included).
    body_len: usize,
}

/// Starts the counters of the reasons the API documents for the target's (kind, app) at 0.
fn seed_stops(stops: &mut BTreeMap<StopKey, Stops>, key: &TargetKey) {
    for reason in known_reasons(key.kind) {
        stops
            .entry((key.kind, key.app_id.clone(), (*reason).to_string()))
            .or_default();
    }
}

impl Entry {
    /// A target not polled yet.
    fn of(target: Arc<Target>) -> Entry {
        Entry {
            prefix: label_prefix(&target),
            target: Some(target),
            ..Entry::default()
        }
    }
}

impl Store {
    /// A table for these targets (indexed by [`TargetId`]), none polled yet.
    pub fn new(targets: Vec<Target>) -> Store {
        let mut stops = BTreeMap::new();
        for t in &targets {
            seed_stops(&mut stops, &t.key);
        }
        let mut index = HashMap::with_capacity(targets.len());
        let entries: Vec<Entry> = targets
            .into_iter()
            .enumerate()
            .map(|(id, t)| {
                let t = Arc::new(t);
                index.entry(KeyOf(t.clone())).or_insert(id);
                let mut entry = Entry::of(t);
                entry.place = Place {
                    part: Part::Hot,
                    slot: id,
                };
                entry
            })
            .collect();
        let hot = Layout {
            slots: (0..entries.len()).collect(),
            generations: vec![[1; N_FAMILIES]; entries.len().div_ceil(BLOCK)],
        };
        let headers = std::array::from_fn(|f| {
            let fam = &FAMILIES[f];
            let mut text = Vec::new();
            push_header(&mut text, Format::Text, fam.name, fam.help, "gauge");
            Arc::new(Chunk::new(text))
        });
        Store {
            headers,
            inner: RwLock::new(Inner {
                entries,
                free: Vec::new(),
                index,
                counted: HashSet::new(),
                stops,
                parts: [hot, Layout::default()],
            }),
            chunks: Mutex::new([Vec::new(), Vec::new()]),
        }
    }

    /// The target with id `id`, if there is one.
    pub fn target(&self, id: TargetId) -> Option<Arc<Target>> {
        self.read().entries.get(id)?.target.clone()
    }

    /// The id of the target with this key, if it is known.
    pub fn id_of(&self, key: &TargetKey) -> Option<TargetId> {
        self.read().index.get(key).copied()
    }

    /// Every target with its id, in id order.
    pub fn targets(&self) -> Vec<(TargetId, Arc<Target>)> {
        self.read()
            .entries
            .iter()
            .enumerate()
            .filter_map(|(id, e)| Some((id, e.target.clone()?)))
            .collect()
    }

    /// Number of targets.
    pub fn len(&self) -> usize {
        self.read().index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a target while running: no series until its first poll. Returns its id, and
    /// whether it is new (`false`: a target with this key exists and keeps its id and state;
    /// its labels are not changed).
    #[cfg(test)]
    fn insert(&self, target: Target) -> (TargetId, bool) {
        self.insert_with(target, EntryState::default())
    }

    /// Puts back a target as the durable store kept it: its series (`target_up`, last
    /// success, the task's values) are served at once, exactly as before the restart. Returns
    /// its id and whether it is new (an existing target is left as it is).
    pub fn restore(&self, target: Target, state: EntryState) -> (TargetId, bool) {
        self.insert_with(target, state)
    }

    fn insert_with(&self, target: Target, state: EntryState) -> (TargetId, bool) {
        let mut guard = self.write();
        let inner = &mut *guard;
        if let Some(&id) = inner.index.get(&target.key) {
            return (id, false);
        }
        seed_stops(&mut inner.stops, &target.key);
        let target = Arc::new(target);
        let mut entry = Entry::of(target.clone());
        entry.snapshot = state.snapshot;
        entry.up = state.up;
        entry.last_success_ms = state.last_success_ms;
        entry.last_poll = state.last_poll;
        entry.polled_at_ms = state.last_success_ms.unwrap_or(0);
        entry.stop_counted = state.stop_counted;
        entry.terminal_since_ms = state.terminal_since_ms;
        entry.expired = state.expired;
        for source in &state.sources {
            merge::give(&mut entry.sources, source, &target.labels);
        }
        entry.added_ms = state.added_ms;
        entry.phase = state.phase;
        let id = match inner.free.pop() {
            Some(id) => id,
            None => {
                inner.entries.push(Entry::default());
                inner.entries.len() - 1
            }
        };
        entry.rebuild();
        if let Some(slot) = inner.entries.get_mut(id) {
            *slot = entry;
        }
        inner.index.insert(KeyOf(target), id);
        inner.place(id, Part::Hot);
        (id, true)
    }

    /// Gives target `id` new labels (a reload changed them): its series carry them from now
    /// on; its state stays. False for an unknown id or another key.
    pub fn relabel(&self, id: TargetId, target: Target) -> bool {
        let mut guard = self.write();
        let inner = &mut *guard;
        let Some(e) = inner.entries.get_mut(id) else {
            return false;
        };
        if e.target.as_ref().is_none_or(|t| t.key != target.key) {
            return false;
        }
        let target = Arc::new(target);
        if e.place.part == Part::Hot {
            e.prefix = label_prefix(&target);
        }
        e.target = Some(target.clone());
        e.rebuild();
        // The index keeps the target it was given: the new one replaces it.
        inner.index.remove(&target.key);
        inner.index.insert(KeyOf(target), id);
        inner.bump(id, u32::MAX);
        true
    }

    /// Puts a `RecordStopped` callback's file list into target `id`'s last answer (its
    /// Status and StopReason come with the next poll). False when there is no answer yet or
    /// the list is the same.
    pub fn apply_files(&self, id: TargetId, files: Vec<RecordFile>) -> bool {
        let mut guard = self.write();
        let inner = &mut *guard;
        let Some(e) = inner.entries.get_mut(id) else {
            return false;
        };
        if e.target.is_none() {
            return false;
        }
        match e.snapshot.as_mut() {
            Some(snap) if snap.files != files => snap.files = files,
            _ => return false,
        }
        e.expired = false;
        let changed = e.rebuild();
        inner.bump(id, changed);
        true
    }

    /// Removes a target: its series leave `/metrics` at once. Its stop counters stay.
    /// Returns the removed target; `None` for an unknown id.
    pub fn remove(&self, id: TargetId) -> Option<Arc<Target>> {
        let mut guard = self.write();
        let inner = &mut *guard;
        let target = inner.entries.get(id)?.target.clone()?;
        inner.unplace(id);
        if let Some(e) = inner.entries.get_mut(id) {
            *e = Entry::default();
        }
        inner.index.remove(&target.key);
        inner.free.push(id);
        Some(target)
    }

    /// Tells the store whether the poller has parked target `id` (a done or expired task:
    /// never polled again unless news comes). A parked target's lines move to the cold part of
    /// each family, whose chunks stay compressed while the other targets change; one that is
    /// polled again moves back. Its lines themselves do not change, and a parked target that
    /// changes anyway (a callback, a reload) is still shown as it is. Ignored for an unknown id.
    pub fn set_parked(&self, id: TargetId, parked: bool) {
        let mut inner = self.write();
        let part = if parked { Part::Cold } else { Part::Hot };
        let Some(e) = inner.entries.get(id).filter(|e| e.target.is_some()) else {
            return;
        };
        if e.place.part != part {
            inner.unplace(id);
            inner.place(id, part);
        }
    }

    /// Target `id`'s state, for the durable store.
    pub fn state(&self, id: TargetId) -> Option<EntryState> {
        let inner = self.read();
        let e = inner.entries.get(id)?;
        e.target.as_ref()?;
        Some(EntryState {
            snapshot: e.snapshot.clone(),
            up: e.up,
            last_success_ms: e.last_success_ms,
            last_poll: e.last_poll.clone(),
            stop_counted: e.stop_counted,
            terminal_since_ms: e.terminal_since_ms,
            expired: e.expired,
            sources: e.sources.iter().map(|(s, _)| s.clone()).collect(),
            added_ms: e.added_ms,
            phase: e.phase,
        })
    }

    /// Sets target `id`'s phase (after the scheduler judged an answer or a callback).
    pub fn set_phase(&self, id: TargetId, phase: Phase) {
        if let Some(e) = self.write().entries.get_mut(id) {
            e.phase = phase;
        }
    }

    /// `source` lists `target` (the one way a source adds or updates a target): a new key is
    /// added, added at `added_ms`; a known one gains the source, or that source's labels, and
    /// takes the labels of its first-ranked source ([`merge::give`]). Returns its id, whether it
    /// is new, and what changed.
    pub fn give(
        &self,
        target: &Target,
        source: &Source,
        added_ms: i64,
    ) -> (TargetId, bool, Changed) {
        let state = EntryState {
            sources: vec![source.clone()],
            added_ms,
            ..EntryState::default()
        };
        let (id, new) = self.insert_with(target.clone(), state);
        if new {
            return (id, true, Changed::default());
        }
        let changed = self.change_sources(id, |given| merge::give(given, source, &target.labels));
        (id, false, changed)
    }

    /// `source` no longer lists target `id` ([`merge::take`]): the next-ranked source's labels
    /// take over. Returns what changed and how many sources are left; `None` for an unknown id.
    pub fn take(&self, id: TargetId, source: &Source) -> Option<(Changed, usize)> {
        let changed = self.change_sources(id, |given| merge::take(given, source));
        let left = self.read().entries.get(id)?.sources.len();
        Some((changed, left))
    }

    /// Changes target `id`'s sources with `f`, and its labels if the first-ranked source's
    /// changed.
    fn change_sources(&self, id: TargetId, f: impl FnOnce(&mut Given) -> Changed) -> Changed {
        let relabel = {
            let mut inner = self.write();
            let Some(e) = inner.entries.get_mut(id) else {
                return Changed::default();
            };
            let Some(target) = e.target.clone() else {
                return Changed::default();
            };
            let changed = f(&mut e.sources);
            let first = e.sources.first().map(|(_, l)| l.clone());
            match first {
                Some(labels) if changed.labels => Some(Target {
                    key: target.key.clone(),
                    labels,
                }),
                _ => None,
            }
            .map(|t| (t, changed))
            .ok_or(changed)
        };
        match relabel {
            Ok((target, changed)) => {
                self.relabel(id, target);
                changed
            }
            Err(changed) => changed,
        }
    }

    /// Target `id`'s sources, sorted (the first ranks first).
    pub fn sources(&self, id: TargetId) -> Vec<Source> {
        let inner = self.read();
        let e = inner.entries.get(id);
        e.map(|e| e.sources.iter().map(|(s, _)| s.clone()).collect())
            .unwrap_or_default()
    }

    /// The targets `source` lists, each with the labels that source gave.
    pub fn listed_by(&self, source: &Source) -> Vec<(TargetId, Target)> {
        let inner = self.read();
        let listed = inner.entries.iter().enumerate().filter_map(|(id, e)| {
            let target = e.target.as_ref()?;
            let (_, labels) = e.sources.iter().find(|(s, _)| s == source)?;
            let key = target.key.clone();
            Some((
                id,
                Target {
                    key,
                    labels: labels.clone(),
                },
            ))
        });
        listed.collect()
    }

    /// Every source some target has.
    pub fn sources_in_use(&self) -> std::collections::BTreeSet<Source> {
        let inner = self.read();
        inner
            .entries
            .iter()
            .flat_map(|e| e.sources.iter().map(|(s, _)| s.clone()))
            .collect()
    }

    /// Counts a stop revealed by [`Store::record_success_deferred`] (once it is durable).
    pub fn count_stop(&self, stop: &PendingStop) {
        let mut inner = self.write();
        inner
            .stops
            .entry((stop.kind, stop.app_id.clone(), stop.reason.clone()))
            .or_insert(Stops {
                count: 0,
                created_ms: Some(stop.at_ms),
            })
            .count += 1;
    }

    /// Sets the stop counters and the counted tasks kept by the durable store (a restart
    /// continues them).
    pub fn restore_stops(
        &self,
        counts: impl IntoIterator<Item = (Kind, String, String, u64)>,
        counted: HashSet<TaskRef>,
    ) {
        let mut inner = self.write();
        inner.counted.extend(counted);
        for (kind, app_id, reason, count) in counts {
            let stops = inner.stops.entry((kind, app_id, reason)).or_default();
            stops.count = stops.count.max(count);
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record a successful poll of target `id` answered with `snap` at `at`.
    ///
    /// An unknown `id` is ignored (and reports no change).
    pub fn record_success(&self, id: TargetId, snap: TaskSnapshot, at: SystemTime) -> Update {
        let (update, stop) = self.record(id, snap, at);
        if let Some(stop) = stop {
            self.count_stop(&stop);
        }
        update
    }

    /// Like [`Store::record_success`], but a stop it reveals is not counted: it is returned,
    /// for [`Store::count_stop`] once the answer that reveals it is durable. The task is
    /// marked counted at once, so it is never returned twice.
    pub fn record_success_deferred(
        &self,
        id: TargetId,
        snap: TaskSnapshot,
        at: SystemTime,
    ) -> (Update, Option<PendingStop>) {
        self.record(id, snap, at)
    }

    fn record(
        &self,
        id: TargetId,
        snap: TaskSnapshot,
        at: SystemTime,
    ) -> (Update, Option<PendingStop>) {
        let at_ms = millis_since_epoch(at);
        let mut guard = self.write();
        let inner = &mut *guard;
        let Some(e) = inner.entries.get_mut(id) else {
            return (Update::default(), None);
        };
        let Some(target) = e.target.clone() else {
            return (Update::default(), None);
        };
        let key = &target.key;
        let follows_room = key.kind == Kind::Webcast && key.task_id.is_none();
        let changed = e.snapshot.as_ref() != Some(&snap);
        let new_task = e.snapshot.as_ref().is_some_and(|prev| {
            super::lifecycle::is_new_task(
                follows_room,
                prev.start_time_ms,
                prev.is_terminal(),
                snap.start_time_ms,
            )
        });
        let followed_task = follows_room
            && snap.start_time_ms > 0
            && e.snapshot
                .as_ref()
                .is_none_or(|prev| prev.start_time_ms != snap.start_time_ms);
        if new_task {
            e.stop_counted = false;
            e.terminal_since_ms = None;
        }
        if changed {
            e.expired = false;
        }
        let newly_terminal = snap.is_terminal() && !e.stop_counted;
        // Counted once per task, whatever its targets or restarts.
        let first = newly_terminal && inner.counted.insert(TaskRef::of(key, &snap));
        let Some(e) = inner.entries.get_mut(id) else {
            return (Update::default(), None);
        };
        let stop = first.then(|| PendingStop {
            kind: key.kind,
            app_id: key.app_id.clone(),
            reason: snap.stop_reason.clone(),
            at_ms,
        });
        if newly_terminal {
            e.stop_counted = true;
            e.terminal_since_ms = Some(at_ms);
        }
        e.snapshot = Some(snap);
        e.polled_at_ms = at_ms;
        e.up = Some(true);
        e.last_success_ms = Some(at_ms);
        e.last_poll = Some(LastPoll {
            at_ms,
            outcome: Outcome::Success,
            error: None,
        });
        let changed_families = e.rebuild();
        inner.bump(id, changed_families);
        let update = Update {
            changed,
            newly_terminal,
            new_task,
            followed_task,
        };
        (update, stop)
    }

    /// Record a failed poll of target `id` at `at`, with its outcome and error text: its last
    /// known values stay, `target_up` becomes 0.
    pub fn record_failure(&self, id: TargetId, outcome: Outcome, error: &str, at: SystemTime) {
        let mut inner = self.write();
        if let Some(e) = inner.entries.get_mut(id) {
            if e.target.is_none() {
                return;
            }
            e.up = Some(false);
            e.last_poll = Some(LastPoll {
                at_ms: millis_since_epoch(at),
                outcome,
                error: Some(error.to_string()),
            });
            let changed_families = e.rebuild();
            inner.bump(id, changed_families);
        }
    }

    /// The last successful answer for target `id` (kept after expiry).
    #[cfg(test)]
    fn snapshot(&self, id: TargetId) -> Option<TaskSnapshot> {
        self.read().entries.get(id)?.snapshot.clone()
    }

    /// Whether target `id`'s series were removed by [`Store::expire`] (and not brought back).
    #[cfg(test)]
    fn is_expired(&self, id: TargetId) -> bool {
        self.read().entries.get(id).is_some_and(|e| e.expired)
    }

    /// Remove the series of every finished task whose EndTime (or, without one, the time it was
    /// first seen terminal) is at least `retention` before `now`. Returns how many targets
    /// were expired by this call.
    #[cfg(test)]
    fn expire(&self, now: SystemTime, retention: Duration) -> usize {
        self.expire_ids(now, retention).len()
    }

    /// Removes the series of every finished task whose EndTime (or, without one, the time it
    /// was first seen terminal) is at least `retention` before `now`. Returns the ids of the
    /// targets expired by this call.
    pub fn expire_ids(&self, now: SystemTime, retention: Duration) -> Vec<TargetId> {
        let now_ms = millis_since_epoch(now);
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut guard = self.write();
        let inner = &mut *guard;
        let mut expired = Vec::new();
        for (id, e) in inner
            .entries
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| !e.expired && e.target.is_some())
        {
            let Some(s) = e.snapshot.as_ref().filter(|s| s.is_terminal()) else {
                continue;
            };
            let ended = if s.end_time_ms > 0 {
                Some(s.end_time_ms)
            } else {
                e.terminal_since_ms
            };
            if ended.is_some_and(|end| now_ms >= end.saturating_add(retention_ms)) {
                let families = e.families();
                e.expired = true;
                e.clear_series();
                inner.parts[e.place.part as usize].bump(e.place.block(), families);
                expired.push(id);
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{status, TargetKey};

    const T0: i64 = 1_700_000_000_123;

    fn at(ms: i64) -> SystemTime {
        std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap())
    }

    fn target(kind: Kind, task: Option<&str>, labels: &[(&str, &str)]) -> Target {
        Target {
            key: TargetKey {
                kind,
                app_id: "app1".into(),
                room_id: "r1".into(),
                task_id: task.map(Into::into),
            },
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    fn rendered(store: &Store) -> String {
        let mut out = Vec::new();
        store.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    /// The per-target series lines (no comments, no stop counter).
    fn series(store: &Store) -> String {
        rendered(store)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with(STOPS_NAME))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The stop counter's lines with a non-zero value.
    fn stops(store: &Store) -> String {
        rendered(store)
            .lines()
            .filter(|l| l.starts_with(STOPS_NAME) && !l.ends_with(" 0"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn running(start: i64) -> TaskSnapshot {
        TaskSnapshot {
            status: status::RUNNING,
            start_time_ms: start,
            ..Default::default()
        }
    }

    fn ended(start: i64, end: i64, reason: &str) -> TaskSnapshot {
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: start,
            end_time_ms: end,
            stop_reason: reason.into(),
            ..Default::default()
        }
    }

    #[test]
    fn expiry_after_retention() {
        let store = Store::new(vec![
            target(Kind::Record, Some("t1"), &[]),
            target(Kind::Record, Some("t2"), &[]),
            target(Kind::Webcast, None, &[]),
        ]);
        let end = T0 + 3_600_000;
        store.record_success(0, ended(T0, end, "StopByAPI"), at(end + 1_000));
        store.record_success(1, running(T0), at(end + 1_000));
        // Terminal without EndTime: retention counts from when it was first seen terminal.
        let failed = TaskSnapshot {
            status: status::FAILED,
            start_time_ms: T0,
            stop_reason: "StartTaskFailed".into(),
            ..Default::default()
        };
        store.record_success(2, failed.clone(), at(end + 5_000));
        let retention = Duration::from_secs(3600);
        assert_eq!(store.expire(at(end + 3_599_999), retention), 0);
        assert!(!store.is_expired(0));
        assert_eq!(store.expire(at(end + 3_600_000), retention), 1);
        assert!(store.is_expired(0) && !store.is_expired(1) && !store.is_expired(2));
        let s = series(&store);
        assert!(!s.contains(r#"task_id="t1""#), "{s}");
        assert!(s.contains(r#"task_id="t2""#));
        assert!(s.contains(r#"kind="webcast""#));
        assert_eq!(store.expire(at(end + 3_605_000), retention), 1);
        assert!(!series(&store).contains(r#"kind="webcast""#));
        // Running tasks never expire; expiry is not repeated; counters stay.
        assert_eq!(store.expire(at(end + 100 * 3_600_000), retention), 0);
        assert_eq!(store.snapshot(0), Some(ended(T0, end, "StopByAPI")));
        assert!(stops(&store).contains("reason=\"StopByAPI\"} 1"));
        // The same answer again or a failure does not bring it back ...
        store.record_success(0, ended(T0, end, "StopByAPI"), at(end + 4_000_000));
        store.record_failure(0, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
        assert!(!series(&store).contains(r#"task_id="t1""#));
        // ... a new task in a followed room does, and is counted.
        let u = store.record_success(2, running(end + 10_000), at(end + 4_000_000));
        assert!(u.new_task && !store.is_expired(2));
        assert!(series(&store).contains(r#"kind="webcast""#));
        assert_eq!(store.expire(at(end + 4_000_000), retention), 0);
    }

    #[test]
    fn body_size_is_predicted_exactly() {
        let store = Store::new(vec![
            target(Kind::Record, Some("t1"), &[("team", "a\"b")]),
            target(Kind::Webcast, None, &[]),
        ]);
        let mut snap = ended(T0, T0 + 10, "StopByAPI");
        snap.files = vec![RecordFile {
            vid: Some("v".into()),
            size_bytes: Some(1),
            duration_ms: Some(2),
            ..Default::default()
        }];
        store.record_success(0, snap, at(T0 + 20));
        store.record_failure(1, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
        let predicted: usize = store.read().entries.iter().map(|e| e.body_len).sum();
        assert_eq!(predicted, series(&store).len());
        assert!(store.render_size_hint() >= rendered(&store).len());
    }

    #[test]
    fn only_the_changed_family_blocks_are_rebuilt_and_compressed_again() {
        let targets: Vec<Target> = (0..3 * BLOCK)
            .map(|i| {
                let mut t = target(Kind::Record, Some("t"), &[]);
                t.key.task_id = Some(format!("t{i}"));
                t
            })
            .collect();
        let store = Store::new(targets);
        for id in 0..3 * BLOCK {
            store.record_success(id, running(T0), at(T0 + 1_000));
        }
        let page_of = |store: &Store| {
            let mut page = Page::new();
            store.page(Format::Text, None, &mut page);
            page
        };
        let first = page_of(&store);
        first.gzip(1).unwrap();
        let second = page_of(&store);
        // Every chunk but the stop counter (made per page) is shared, and already compressed.
        let (shared, own) = second.chunks().split_at(second.chunks().len() - 1);
        assert_eq!(shared.len(), first.chunks().len() - 1);
        for (a, b) in shared.iter().zip(first.chunks()) {
            assert!(Arc::ptr_eq(a, b));
            assert!(a.is_deflated());
        }
        assert!(!Arc::ptr_eq(&own[0], first.chunks().last().unwrap()));

        // Target BLOCK + 1 is polled again: its duration and last-success lines change, the
        // other families' lines do not.
        store.record_success(BLOCK + 1, running(T0), at(T0 + 2_000));
        let third = page_of(&store);
        let rebuilt: Vec<String> = third
            .chunks()
            .iter()
            .zip(second.chunks())
            .take(second.chunks().len() - 1)
            .filter(|(a, b)| !Arc::ptr_eq(a, b))
            .map(|(a, _)| String::from_utf8(a.text().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(rebuilt.len(), 2, "{rebuilt:?}");
        assert!(rebuilt[0].starts_with("volcengine_rtc_task_duration_seconds{"));
        assert!(rebuilt[1].starts_with("volcengine_rtc_target_last_success_timestamp_seconds{"));
        for text in &rebuilt {
            assert_eq!(text.lines().count(), BLOCK);
            assert!(text.contains(&format!("task_id=\"t{}\"", BLOCK + 1)));
            assert!(!text.contains("task_id=\"t0\""));
        }
        let fresh: usize = third.chunks().iter().filter(|c| !c.is_deflated()).count();
        assert_eq!(fresh, 3, "two rebuilt chunks and the stop counter");
        // And the page still reads the same as a full render.
        assert_eq!(third.to_vec().unwrap(), rendered(&store).into_bytes());
    }

    /// A store of `n` record targets `t0`, `t1`, … each polled once (running, two files).
    fn polled_store(n: usize) -> Store {
        let targets: Vec<Target> = (0..n)
            .map(|i| target(Kind::Record, Some(&format!("t{i}")), &[("team", "a")]))
            .collect();
        let store = Store::new(targets);
        for id in 0..n {
            let mut snap = running(T0);
            snap.files = (0..2)
                .map(|f| RecordFile {
                    vid: Some(format!("v{id}-{f}")),
                    size_bytes: Some(1_000 + f),
                    duration_ms: Some(2_000 + f),
                    ..Default::default()
                })
                .collect();
            store.record_success(id, snap, at(T0 + 1_000));
        }
        store
    }

    fn page_of(store: &Store) -> Page {
        let mut page = Page::new();
        store.page(Format::Text, None, &mut page);
        page
    }

    /// Each family's lines, sorted: the page's content regardless of the order of its series.
    fn families(text: &str) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("# HELP ") {
                let name = name.split(' ').next().unwrap().to_string();
                out.push((name, Vec::new()));
            } else if !line.starts_with('#') {
                out.last_mut().unwrap().1.push(line.to_string());
            }
        }
        for (_, lines) in &mut out {
            lines.sort();
        }
        out
    }

    #[test]
    fn a_parked_target_keeps_its_exact_lines_in_the_cold_part() {
        let store = polled_store(3 * BLOCK);
        let before = rendered(&store);
        for id in (0..3 * BLOCK).filter(|id| id % 10 != 9) {
            store.set_parked(id, true);
        }
        let page = page_of(&store);
        let after = String::from_utf8(page.to_vec().unwrap()).unwrap();
        assert_eq!(after.len(), before.len());
        assert_eq!(families(&after), families(&before));
        // The cold chunks are kept compressed only, the hot ones as text; in each family the
        // parked targets come first.
        let cold = page.chunks().iter().filter(|c| c.is_compressed_only());
        assert_eq!(
            cold.count(),
            3 * 9,
            "3 blocks of 346 parked targets x 9 families"
        );
        let status: Vec<usize> = after
            .lines()
            .filter_map(|l| l.strip_prefix("volcengine_rtc_task_status{"))
            .map(|l| {
                let id = l.split("task_id=\"t").nth(1).unwrap();
                id.split('"').next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(status.len(), 3 * BLOCK);
        assert!(status[..346].iter().all(|id| id % 10 != 9), "{status:?}");
        assert!(status[346..].iter().all(|id| id % 10 == 9), "{status:?}");
        // A parked target relabelled shows its new labels, and only those.
        let relabelled = target(Kind::Record, Some("t1"), &[("team", "b")]);
        assert!(store.relabel(1, relabelled));
        let text = rendered(&store);
        // 7 families of one line, 2 of one line per file.
        assert_eq!(text.matches(r#"task_id="t1",team="b""#).count(), 7 + 2 * 2);
        assert!(!text.contains(r#"task_id="t1",team="a""#));
        assert!(store.relabel(1, target(Kind::Record, Some("t1"), &[("team", "a")])));
        // Parked or not, a change shows; back in the hot part, the same lines again.
        store.record_failure(0, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
        let l = r#"{kind="record",app_id="app1",room_id="r1",task_id="t0",team="a"}"#;
        assert!(rendered(&store).contains(&format!("volcengine_rtc_target_up{l} 0\n")));
        store.record_success(0, store.snapshot(0).unwrap(), at(T0 + 1_000));
        for id in 0..3 * BLOCK {
            store.set_parked(id, false);
        }
        assert_eq!(families(&rendered(&store)), families(&before));
        // Every target still appears once per family, in the hot part alone.
        let page = page_of(&store);
        assert!(page.chunks().iter().all(|c| !c.is_compressed_only()));
        assert_eq!(page.to_vec().unwrap(), rendered(&store).into_bytes());
    }

    #[test]
    fn polls_of_running_targets_compress_only_the_hot_chunks_again() {
        // One running target in ten, spread over every block of ids, as ids are reused.
        let n = 10 * BLOCK;
        let store = polled_store(n);
        let running = |id: &usize| id % 10 == 9;
        for id in (0..n).filter(|id| !running(id)) {
            store.set_parked(id, true);
        }
        let first = page_of(&store);
        first.gzip(1).unwrap();
        let chunks = first.chunks().len();
        // A round of polls: every running target's duration and last success change.
        for id in (0..n).filter(running) {
            store.record_success(id, store.snapshot(id).unwrap(), at(T0 + 16_000));
        }
        let second = page_of(&store);
        assert_eq!(second.chunks().len(), chunks);
        let fresh = second.chunks().iter().filter(|c| !c.is_deflated()).count();
        // The 128 running targets fill one hot block: its duration and last-success chunks,
        // and the stop counter (made per page). Not the 10 blocks of ids they are spread over.
        assert_eq!(fresh, 3);
        let gz = second.gzip(1).unwrap().concat();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut body)
            .unwrap();
        assert_eq!(body, rendered(&store).into_bytes());
        // A target parked since the last page makes only the cold part's last block fresh.
        store.set_parked(9, true);
        let third = page_of(&store);
        let old: HashSet<*const Chunk> = second.chunks().iter().map(Arc::as_ptr).collect();
        let remade: Vec<&Arc<Chunk>> = third
            .chunks()
            .iter()
            .filter(|c| !old.contains(&Arc::as_ptr(c)))
            .collect();
        // The hot block and the last cold block (9 families each), and the stop counter; the
        // cold chunks were compressed as they were made.
        assert_eq!(remade.len(), 2 * 9 + 1);
        assert_eq!(remade.iter().filter(|c| c.is_compressed_only()).count(), 9);
        assert_eq!(
            third.chunks().iter().filter(|c| !c.is_deflated()).count(),
            9 + 1
        );
    }

    #[test]
    fn parking_removing_and_inserting_keep_every_series_once() {
        let store = polled_store(2 * BLOCK + 5);
        for id in (0..2 * BLOCK + 5).step_by(3) {
            store.set_parked(id, true);
        }
        let _ = page_of(&store);
        for id in (0..2 * BLOCK + 5).step_by(7) {
            assert!(store.remove(id).is_some());
        }
        store.set_parked(1, true);
        store.set_parked(3, false);
        for i in 0..20 {
            let (id, fresh) = store.insert(target(Kind::Record, Some(&format!("new{i}")), &[]));
            assert!(fresh);
            store.record_success(id, running(T0), at(T0 + 5_000));
            store.set_parked(id, i % 2 == 0);
        }
        store.set_parked(10_000, true);
        let text = rendered(&store);
        let mut seen = HashSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                seen.insert(line.rsplit_once(' ').unwrap().0),
                "twice: {line}"
            );
        }
        let statuses = text
            .lines()
            .filter(|l| l.starts_with("volcengine_rtc_task_status{"))
            .count();
        assert_eq!(statuses, store.len());
        assert_eq!(page_of(&store).to_vec().unwrap(), text.into_bytes());
        let predicted: usize = store.read().entries.iter().map(|e| e.body_len).sum();
        assert_eq!(predicted, series(&store).len());
    }

    #[test]
    fn many_identical_file_labels_stay_unique_and_cheap() {
        let files = vec![
            RecordFile {
                vid: Some("same".into()),
                ..Default::default()
            };
            20_000
        ];
        let labels = file_labels(&files);
        let unique: HashSet<&String> = labels.iter().collect();
        assert_eq!(unique.len(), files.len());
        assert_eq!(labels[0], "same");
        assert_eq!(labels[19_999], "same#20000");
    }
}
