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
//!   target's poll result is recorded and kept in one small string per target, with the end
//!   offset of each family's tails.
//!
//! [`Store::render`] then formats nothing: under a read lock it writes each family's
//! `# HELP`/`# TYPE` once and, for every target, copies `NAME{`, `PREFIX` and each tail into a
//! buffer reserved to the exact size beforehand. Polls take the write lock only for the few
//! microseconds it takes to re-format one target.
//!
//! # Lifecycle of a target's series
//!
//! - Before the first poll outcome a target has no series.
//! - A success stores the snapshot and sets `target_up` 1; a failure keeps the last values and
//!   sets `target_up` 0.
//! - [`Store::expire`] removes all of a finished task's series — `task_*`, `record_*`,
//!   `webcast_*` and also its `target_up` / `target_last_success_timestamp_seconds` — once
//!   `retention` has passed since its EndTime (or, for a terminal task without EndTime, since
//!   it was first seen terminal). The last snapshot stays readable with [`Store::snapshot`].
//!   An expired target comes back only when a later success brings a different answer or a
//!   new task (a room-following webcast target whose StartTime changed); failures never bring
//!   it back.
//! - `volcengine_rtc_task_stops_total` counts each task once, when first seen terminal
//!   (including a task already terminal on its first poll), with the StopReason of that
//!   answer. For every configured (kind, app_id) the reasons the API documents start at 0 so
//!   that `increase()` sees the first stop.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Kind, RecordFile, Target, TaskSnapshot};
use crate::render::{push_label, push_label_value, push_millis_as_seconds};

/// A target's index in the configured target list.
pub type TargetId = usize;

/// What one recorded success changed, for the scheduler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Update {
    /// The snapshot differs from the previous one (always true for the first).
    pub changed: bool,
    /// The task is terminal and this is the first answer that says so (for this task).
    pub newly_terminal: bool,
    /// A room-following webcast target (no `task_id`) whose StartTime changed: a new task.
    pub new_task: bool,
}

/// One per-target metric family.
struct Family {
    name: &'static str,
    /// `name{`: what every series line of the family starts with.
    open: &'static str,
    help: &'static str,
}

macro_rules! family {
    ($name:literal, $help:literal) => {
        Family {
            name: concat!("volcengine_rtc_", $name),
            open: concat!("volcengine_rtc_", $name, "{"),
            help: $help,
        }
    };
}

const STATUS: usize = 0;
const START: usize = 1;
const END: usize = 2;
const DURATION: usize = 3;
const STOP_REASON: usize = 4;
const FILES: usize = 5;
const SIZE: usize = 6;
const FILE_SIZE: usize = 7;
const FILE_DURATION: usize = 8;
const MAX_RUNNING: usize = 9;
const UP: usize = 10;
const LAST_SUCCESS: usize = 11;
const N_FAMILIES: usize = 12;

/// The per-target families, in render order (indexed by the constants above).
const FAMILIES: [Family; N_FAMILIES] = [
    family!(
        "task_status",
        "Task Status from the API: 0 unknown, 1 not started, 2 running, 3 ended, 4 failed."
    ),
    family!("task_start_timestamp_seconds", "Task StartTime."),
    family!(
        "task_end_timestamp_seconds",
        "Task EndTime; absent until the task ended."
    ),
    family!(
        "task_duration_seconds",
        "EndTime minus StartTime once ended; time since StartTime as of the last poll while not ended."
    ),
    family!(
        "task_stop_reason",
        "1 for a terminal task; reason is its StopReason."
    ),
    family!("record_files", "Number of files in RecordFileList."),
    family!("record_size_bytes", "Sum of the recorded files' Size."),
    family!(
        "record_file_size_bytes",
        "One recorded file's Size; file is its Vid, else ObjectKey, else position."
    ),
    family!(
        "record_file_duration_seconds",
        "One recorded file's Duration; file is its Vid, else ObjectKey, else position."
    ),
    family!(
        "webcast_max_running_time_seconds",
        "Web-capture task MaxRunningTime."
    ),
    family!(
        "target_up",
        "1 if the target's last poll succeeded, else 0."
    ),
    family!(
        "target_last_success_timestamp_seconds",
        "When the target's last successful poll happened."
    ),
];

const STOPS_NAME: &str = "volcengine_rtc_task_stops_total";
const STOPS_HELP: &str = "Terminal tasks seen, each task counted once when first seen terminal.";

/// StopReasons the API documents per kind; their counters start at 0.
fn known_reasons(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Record => &[
            "IdleTimeOut",
            "StartTaskFailed",
            "StopByAPI",
            "UnknownStopReason",
        ],
        Kind::Webcast => &[
            "ExceedMaxRunningTime",
            "StartTaskFailed",
            "StopByAPI",
            "UnknownStopReason",
        ],
    }
}

/// (kind, app_id, reason) of `volcengine_rtc_task_stops_total`.
type StopKey = (Kind, String, String);

/// The target table. `Send + Sync`: pollers record while `/metrics` renders.
pub struct Store {
    targets: Vec<Target>,
    /// Each target's escaped label set, built once.
    prefixes: Vec<Box<str>>,
    inner: RwLock<Inner>,
}

struct Inner {
    entries: Vec<Entry>,
    stops: BTreeMap<StopKey, u64>,
}

/// One target's state and its ready text.
#[derive(Default)]
struct Entry {
    snapshot: Option<TaskSnapshot>,
    /// When the last success was recorded, ms since the epoch.
    polled_at_ms: i64,
    /// The last poll's outcome; `None` before the first.
    up: Option<bool>,
    last_success_ms: Option<i64>,
    /// The current task was counted in `task_stops_total`.
    stop_counted: bool,
    /// When the current task was first seen terminal, ms since the epoch.
    terminal_since_ms: Option<i64>,
    /// Its series were removed by [`Store::expire`].
    expired: bool,
    /// The tails of every series line, family after family.
    text: String,
    /// `ends[f]`: where family `f`'s tails end in `text` (they start where `f - 1`'s end).
    ends: [usize; N_FAMILIES],
    /// Bytes this target adds to the body (names and prefix included).
    body_len: usize,
}

fn millis_since_epoch(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn label_prefix(target: &Target) -> Box<str> {
    let key = &target.key;
    let mut s = String::new();
    push_label(&mut s, "kind", key.kind.as_str());
    s.push(',');
    push_label(&mut s, "app_id", &key.app_id);
    s.push(',');
    push_label(&mut s, "room_id", &key.room_id);
    s.push(',');
    push_label(&mut s, "task_id", key.task_id.as_deref().unwrap_or(""));
    for (name, value) in &target.labels {
        s.push(',');
        push_label(&mut s, name, value);
    }
    s.into_boxed_str()
}

/// The `file` label of each file, made unique: a repeated label gets `#2`, `#3`, … appended.
fn file_labels(files: &[RecordFile]) -> Vec<String> {
    let mut seen: HashSet<String> = HashSet::with_capacity(files.len());
    let mut labels = Vec::with_capacity(files.len());
    for (position, file) in files.iter().enumerate() {
        let base = file.label(position);
        let mut label = base.clone();
        let mut n = 2u64;
        while seen.contains(&label) {
            label = format!("{base}#{n}");
            n += 1;
        }
        seen.insert(label.clone());
        labels.push(label);
    }
    labels
}

fn tail_int(t: &mut String, v: i64) {
    let _ = writeln!(t, "}} {v}");
}

fn tail_secs(t: &mut String, ms: i64) {
    t.push_str("} ");
    push_millis_as_seconds(t, ms);
    t.push('\n');
}

fn tail_labelled(t: &mut String, name: &str, value: &str) {
    t.push(',');
    push_label(t, name, value);
}

impl Entry {
    /// Re-format this target's tails from its state.
    fn rebuild(&mut self, kind: Kind, prefix_len: usize) {
        let mut t = std::mem::take(&mut self.text);
        t.clear();
        let mut ends = [0usize; N_FAMILIES];
        if !self.expired {
            self.write_tails(kind, &mut t, &mut ends);
        }
        let mut body_len = t.len();
        let mut start = 0;
        for (f, &end) in ends.iter().enumerate() {
            let lines = t
                .as_bytes()
                .get(start..end)
                .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
            body_len += lines * (FAMILIES[f].open.len() + prefix_len);
            start = end;
        }
        t.shrink_to_fit();
        self.text = t;
        self.ends = ends;
        self.body_len = body_len;
    }

    fn write_tails(&self, kind: Kind, t: &mut String, ends: &mut [usize; N_FAMILIES]) {
        let mut close = |f: usize, t: &String| ends[f] = t.len();
        if let Some(s) = &self.snapshot {
            let terminal = s.is_terminal();
            tail_int(t, s.status);
            close(STATUS, t);
            if s.start_time_ms > 0 {
                tail_secs(t, s.start_time_ms);
            }
            close(START, t);
            if s.end_time_ms > 0 {
                tail_secs(t, s.end_time_ms);
            }
            close(END, t);
            if s.start_time_ms > 0 {
                let until = if s.end_time_ms > 0 {
                    s.end_time_ms
                } else if terminal {
                    self.terminal_since_ms.unwrap_or(self.polled_at_ms)
                } else {
                    self.polled_at_ms
                };
                tail_secs(t, until.saturating_sub(s.start_time_ms).max(0));
            }
            close(DURATION, t);
            if terminal {
                tail_labelled(t, "reason", &s.stop_reason);
                t.push_str("} 1\n");
            }
            close(STOP_REASON, t);
            if kind == Kind::Record {
                tail_int(t, i64::try_from(s.files.len()).unwrap_or(i64::MAX));
                close(FILES, t);
                let total = s
                    .files
                    .iter()
                    .filter_map(|f| f.size_bytes)
                    .fold(0i64, i64::saturating_add);
                tail_int(t, total);
                close(SIZE, t);
                let labels = file_labels(&s.files);
                for (file, label) in s.files.iter().zip(&labels) {
                    if let Some(size) = file.size_bytes {
                        tail_labelled(t, "file", label);
                        tail_int(t, size);
                    }
                }
                close(FILE_SIZE, t);
                for (file, label) in s.files.iter().zip(&labels) {
                    if let Some(ms) = file.duration_ms {
                        tail_labelled(t, "file", label);
                        tail_secs(t, ms);
                    }
                }
                close(FILE_DURATION, t);
            } else {
                for f in [FILES, SIZE, FILE_SIZE, FILE_DURATION] {
                    close(f, t);
                }
            }
            if let (Kind::Webcast, Some(max)) = (kind, s.max_running_time_s) {
                tail_int(t, max);
            }
            close(MAX_RUNNING, t);
        } else {
            for f in STATUS..=MAX_RUNNING {
                close(f, t);
            }
        }
        if let Some(up) = self.up {
            tail_int(t, i64::from(up));
        }
        close(UP, t);
        if let Some(ms) = self.last_success_ms {
            tail_secs(t, ms);
        }
        close(LAST_SUCCESS, t);
    }

    fn clear_series(&mut self) {
        self.text = String::new();
        self.ends = [0; N_FAMILIES];
        self.body_len = 0;
    }
}

fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: &str) {
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
}

impl Store {
    /// A table for these targets (indexed by [`TargetId`]), none polled yet.
    pub fn new(targets: Vec<Target>) -> Store {
        let prefixes = targets.iter().map(label_prefix).collect();
        let mut stops = BTreeMap::new();
        for t in &targets {
            for reason in known_reasons(t.key.kind) {
                stops
                    .entry((t.key.kind, t.key.app_id.clone(), (*reason).to_string()))
                    .or_insert(0);
            }
        }
        let entries = targets.iter().map(|_| Entry::default()).collect();
        Store {
            targets,
            prefixes,
            inner: RwLock::new(Inner { entries, stops }),
        }
    }

    /// The configured targets; a [`TargetId`] indexes this slice.
    pub fn targets(&self) -> &[Target] {
        &self.targets
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
        let (Some(target), Some(prefix)) = (self.targets.get(id), self.prefixes.get(id)) else {
            return Update::default();
        };
        let key = &target.key;
        let follows_room = key.kind == Kind::Webcast && key.task_id.is_none();
        let at_ms = millis_since_epoch(at);
        let mut guard = self.write();
        let inner = &mut *guard;
        let Some(e) = inner.entries.get_mut(id) else {
            return Update::default();
        };
        let changed = e.snapshot.as_ref() != Some(&snap);
        let new_task = follows_room
            && e.snapshot
                .as_ref()
                .is_some_and(|prev| prev.start_time_ms != snap.start_time_ms);
        if new_task {
            e.stop_counted = false;
            e.terminal_since_ms = None;
        }
        if changed {
            e.expired = false;
        }
        let newly_terminal = snap.is_terminal() && !e.stop_counted;
        if newly_terminal {
            e.stop_counted = true;
            e.terminal_since_ms = Some(at_ms);
            *inner
                .stops
                .entry((key.kind, key.app_id.clone(), snap.stop_reason.clone()))
                .or_insert(0) += 1;
        }
        e.snapshot = Some(snap);
        e.polled_at_ms = at_ms;
        e.up = Some(true);
        e.last_success_ms = Some(at_ms);
        e.rebuild(key.kind, prefix.len());
        Update {
            changed,
            newly_terminal,
            new_task,
        }
    }

    /// Record a failed poll of target `id`: its last known values stay, `target_up` becomes 0.
    pub fn record_failure(&self, id: TargetId) {
        let (Some(target), Some(prefix)) = (self.targets.get(id), self.prefixes.get(id)) else {
            return;
        };
        let mut inner = self.write();
        if let Some(e) = inner.entries.get_mut(id) {
            e.up = Some(false);
            e.rebuild(target.key.kind, prefix.len());
        }
    }

    /// The last successful answer for target `id` (kept after expiry).
    pub fn snapshot(&self, id: TargetId) -> Option<TaskSnapshot> {
        self.read().entries.get(id)?.snapshot.clone()
    }

    /// Remove the series of every finished task whose EndTime (or, without one, the time it was
    /// first seen terminal) is at least `retention` before `now`. Returns how many targets
    /// were expired by this call.
    pub fn expire(&self, now: SystemTime, retention: Duration) -> usize {
        let now_ms = millis_since_epoch(now);
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut inner = self.write();
        let mut n = 0;
        for e in inner.entries.iter_mut().filter(|e| !e.expired) {
            let Some(s) = e.snapshot.as_ref().filter(|s| s.is_terminal()) else {
                continue;
            };
            let ended = if s.end_time_ms > 0 {
                Some(s.end_time_ms)
            } else {
                e.terminal_since_ms
            };
            if ended.is_some_and(|end| now_ms >= end.saturating_add(retention_ms)) {
                e.expired = true;
                e.clear_series();
                n += 1;
            }
        }
        n
    }

    /// Append the per-target families and `volcengine_rtc_task_stops_total` in text format
    /// 0.0.4: `# HELP`/`# TYPE` once per family, then all of the family's series. Families with
    /// no series are left out, except the stop counter, which is always there.
    pub fn render(&self, out: &mut Vec<u8>) {
        let inner = self.read();
        let headers: usize = FAMILIES
            .iter()
            .map(|f| 2 * f.name.len() + f.help.len() + 32)
            .sum();
        let body: usize = inner.entries.iter().map(|e| e.body_len).sum();
        let stops = 2 * STOPS_NAME.len() + STOPS_HELP.len() + 32 + inner.stops.len() * 128;
        out.reserve(headers + body + stops);

        for (f, fam) in FAMILIES.iter().enumerate() {
            let mark = out.len();
            write_header(out, fam.name, fam.help, "gauge");
            let after_header = out.len();
            for (e, prefix) in inner.entries.iter().zip(&self.prefixes) {
                let start = if f == 0 { 0 } else { e.ends[f - 1] };
                let Some(tails) = e.text.as_bytes().get(start..e.ends[f]) else {
                    continue;
                };
                for line in tails.split_inclusive(|&b| b == b'\n') {
                    out.extend_from_slice(fam.open.as_bytes());
                    out.extend_from_slice(prefix.as_bytes());
                    out.extend_from_slice(line);
                }
            }
            if out.len() == after_header {
                out.truncate(mark);
            }
        }

        write_header(out, STOPS_NAME, STOPS_HELP, "counter");
        let mut line = String::with_capacity(128);
        for ((kind, app_id, reason), n) in &inner.stops {
            line.clear();
            line.push_str(STOPS_NAME);
            line.push('{');
            push_label(&mut line, "kind", kind.as_str());
            line.push(',');
            push_label(&mut line, "app_id", app_id);
            line.push_str(",reason=\"");
            push_label_value(&mut line, reason);
            let _ = writeln!(line, "\"}} {n}");
            out.extend_from_slice(line.as_bytes());
        }
    }
}
