//! Durable state: what the exporter must remember across a restart, kept in one embedded
//! database file so that a restart (deploy, node drain, OOM kill, `kill -9`) loses nothing and
//! counts nothing twice.
//!
//! # Why redb
//!
//! [`redb`] is a pure-Rust embedded key-value store with ACID transactions, copy-on-write
//! B-trees and checksummed commits: a crash at any moment leaves the last committed state, and
//! there is nothing to compile in C for the static musl image (SQLite would need its bundled C
//! library). It takes an exclusive `flock` on its file and has an in-memory backend, so the
//! file store and the memory-only mode (`--storage.path=` empty) share one code path. Values
//! are JSON (serde_json, already a dependency): small enough here (see the benchmark), readable
//! with any redb tool, and new optional fields can be added later without a migration.
//!
//! # Tables
//!
//! One file, `state.redb`, in the storage folder:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `targets` | `["record","app","room","task"]` (task `null` for a room-following webcast target) | [`TargetRecord`] as JSON: sources, labels, last answer, settle state, last success, last poll |
//! | `counted` | `["record","app","room","task",start_ms]`: one task ([`TaskRef`]) | when it was counted, ms |
//! | `stops` | `["record","app","StopByAPI"]` | `task_stops_total` for that (kind, app_id, reason) |
//! | `events` | a callback `EventId` | when it was received, ms |
//! | `meta` | `"schema"` | the schema version ([`SCHEMA_VERSION`]) |
//!
//! # The transaction rule
//!
//! A task's stop is counted in the **same** write transaction that stores its terminal answer:
//! [`Change::Put`] carries the target's record and, optionally, the [`StopCount`]. In that
//! transaction the task is added to `counted` and its `stops` counter incremented only if it
//! was not in `counted` yet, so applying the same change twice (a retry) never counts twice.
//! The caller shows the count on `/metrics` only once [`Submitted::durable`] has resolved, so a
//! `kill -9` at any moment neither counts a stop twice nor loses one already shown.
//!
//! # Group commit
//!
//! [`Writer`] hands changes to one writer thread, which gathers them for up to
//! [`WriterConfig::max_delay`] (or [`WriterConfig::max_batch`] changes) and writes them in one
//! transaction with one `fsync`. Changes to the same target are merged while they wait (the
//! latest record wins; stop counts are all kept), so the queue stays as small as the number of
//! targets even while the disk fails. A failed commit never panics and never drops a change:
//! it is counted in [`Stats::errors`] under [`Op::Commit`], the database is reopened when redb
//! asks for it, and the commit is retried with a backoff up to [`MAX_RETRY_DELAY`].
//!
//! # The lock
//!
//! redb takes a non-blocking exclusive `flock` on the file, so a second process opening the
//! same folder is refused at once with [`PersistError::Locked`] ("locked: in use by another
//! process") before it reads or writes a byte; it cannot corrupt the store. The lock goes with
//! the process, so a killed exporter never leaves a stale lock behind.
//!
//! # Faults at open
//!
//! A store file that cannot be read as a redb database (garbage, a truncated file, a failed
//! integrity check, a row that will not decode as the tables above) is renamed to
//! `state.redb.corrupt-<unix time>` and the store starts empty; [`Opened::recovered`] says
//! where the old file went and what to do, for the caller to log.
//!
//! # Retention
//!
//! [`Writer::prune`] deletes a finished task's target row `retention` after its end (EndTime,
//! else the time it was first seen terminal), its `counted` entry only once the API can no
//! longer show the task either (`max(retention, 72 h)` after its end, so a target added again
//! is not counted twice), and callback event ids older than their own age limit or beyond
//! their cap.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

use crate::clock::real_now;

use redb::{
    Database, DatabaseError, ReadableTable, ReadableTableMetadata, StorageBackend, StorageError,
    TableDefinition, TableError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::{Kind, LastPoll, Outcome, RecordFile, Target, TargetKey, TaskSnapshot};

/// The store file's name inside the storage folder.
pub const FILE_NAME: &str = "state.redb";

/// The version of the tables' layout, kept in `meta`.
pub const SCHEMA_VERSION: u64 = 1;

/// How long the API shows a task; `counted` entries are kept at least this long after a task's
/// end so that a task seen again is not counted again.
pub const VISIBILITY_WINDOW_MS: i64 = 72 * 3600 * 1000;

/// The longest wait between two attempts of a failing commit.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

const TARGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("targets");
const COUNTED: TableDefinition<&str, i64> = TableDefinition::new("counted");
const STOPS: TableDefinition<&str, u64> = TableDefinition::new("stops");
const EVENTS: TableDefinition<&str, i64> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// redb's page cache (a tenth of it the write buffer). The store is read whole once, at
/// start; after that only the B-tree pages a commit rewrites are read, which the kernel's page
/// cache serves as well. A cache as large as the file (≈ 2 KB per target) would only hold a
/// second copy of what the target table holds already.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Stored types

pub use crate::model::{Source, UnknownSource};

/// A target's scheduling phase as stored; the same names as the `phase` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredPhase {
    #[default]
    New,
    Active,
    Settling,
    Done,
    Expired,
}

/// Where a target is on its way to "done", so that a restart resumes instead of starting over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settle {
    pub phase: StoredPhase,
    /// Consecutive identical answers so far (the settle rule needs two, with files for a
    /// finished record task).
    #[serde(skip_serializing_if = "is_zero")]
    pub identical: u32,
    /// When the current task was first seen terminal, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_since_ms: Option<i64>,
    /// The current task was counted in `task_stops_total`.
    #[serde(skip_serializing_if = "is_false")]
    pub stop_counted: bool,
    /// The target's series were removed after retention (kept so a restart does not show
    /// them again).
    #[serde(skip_serializing_if = "is_false")]
    pub expired: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One `RecordFileList` entry as stored (see [`RecordFile`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_ms: Option<i64>,
}

/// A target's last answer as stored (see [`TaskSnapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredSnapshot {
    pub status: i64,
    pub start_time_ms: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub end_time_ms: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<StoredFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running_time_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

impl From<&RecordFile> for StoredFile {
    fn from(f: &RecordFile) -> StoredFile {
        StoredFile {
            vid: f.vid.clone(),
            object_key: f.object_key.clone(),
            duration_ms: f.duration_ms,
            size_bytes: f.size_bytes,
            start_time_ms: f.start_time_ms,
        }
    }
}

impl From<StoredFile> for RecordFile {
    fn from(f: StoredFile) -> RecordFile {
        RecordFile {
            vid: f.vid,
            object_key: f.object_key,
            duration_ms: f.duration_ms,
            size_bytes: f.size_bytes,
            start_time_ms: f.start_time_ms,
        }
    }
}

impl From<&TaskSnapshot> for StoredSnapshot {
    fn from(s: &TaskSnapshot) -> StoredSnapshot {
        StoredSnapshot {
            status: s.status,
            start_time_ms: s.start_time_ms,
            end_time_ms: s.end_time_ms,
            stop_reason: s.stop_reason.clone(),
            files: s.files.iter().map(StoredFile::from).collect(),
            max_running_time_s: s.max_running_time_s,
            user_id: s.user_id.clone(),
        }
    }
}

impl From<StoredSnapshot> for TaskSnapshot {
    fn from(s: StoredSnapshot) -> TaskSnapshot {
        TaskSnapshot {
            status: s.status,
            start_time_ms: s.start_time_ms,
            end_time_ms: s.end_time_ms,
            stop_reason: s.stop_reason,
            files: s.files.into_iter().map(RecordFile::from).collect(),
            max_running_time_s: s.max_running_time_s,
            user_id: s.user_id,
        }
    }
}

/// A target's last poll as stored (see [`LastPoll`]); the outcome by its label name. A row
/// written before this field existed has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredPoll {
    pub at_ms: i64,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&LastPoll> for StoredPoll {
    fn from(p: &LastPoll) -> StoredPoll {
        StoredPoll {
            at_ms: p.at_ms,
            outcome: p.outcome.as_str().to_string(),
            error: p.error.clone(),
        }
    }
}

impl TryFrom<StoredPoll> for LastPoll {
    type Error = crate::model::UnknownOutcome;

    /// Fails for an outcome this version does not know (a row from a newer one).
    fn try_from(p: StoredPoll) -> Result<LastPoll, Self::Error> {
        Ok(LastPoll {
            at_ms: p.at_ms,
            outcome: p.outcome.parse::<Outcome>()?,
            error: p.error,
        })
    }
}

/// Everything stored about one target (its key is the row's key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetRecord {
    /// Where the target came from; a target without sources is removed, not stored.
    pub sources: BTreeSet<Source>,
    /// The target's own labels, sorted by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// When the target became known, ms since the epoch (for "never seen yet" rules).
    pub added_ms: i64,
    /// The last successful answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<StoredSnapshot>,
    /// The last poll's outcome (`target_up`); `None` before the first poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
    /// When the last successful poll happened, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// The last poll: when, its outcome, its error; `None` before the first, and in rows
    /// written by versions that did not keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<StoredPoll>,
    pub settle: Settle,
}

impl TargetRecord {
    /// A target just learned from `source` at `now_ms`: phase new, no answer yet.
    pub fn new(target: &Target, source: Source, now_ms: i64) -> TargetRecord {
        TargetRecord {
            sources: BTreeSet::from([source]),
            labels: target.labels.to_vec(),
            added_ms: now_ms,
            ..TargetRecord::default()
        }
    }

    /// The model's target for the row stored under `key`.
    pub fn target(&self, key: &TargetKey) -> Target {
        Target {
            key: key.clone(),
            labels: self.labels.clone().into(),
        }
    }

    /// The last answer as the model's snapshot.
    pub fn task_snapshot(&self) -> Option<TaskSnapshot> {
        self.snapshot.clone().map(TaskSnapshot::from)
    }

    /// The last poll as the model has it. A row written before the last poll was kept says
    /// only whether it succeeded: a success is the last success; a failure's outcome and
    /// error are not known (`None`, never a made-up outcome). So is an outcome this version
    /// does not know.
    pub fn last_poll(&self) -> Option<LastPoll> {
        match (&self.last_poll, self.up, self.last_success_ms) {
            (Some(stored), _, _) => LastPoll::try_from(stored.clone()).ok(),
            (None, Some(true), Some(at_ms)) => Some(LastPoll {
                at_ms,
                outcome: Outcome::Success,
                error: None,
            }),
            _ => None,
        }
    }

    /// When the task ended for retention: its EndTime, else when it was first seen terminal;
    /// `None` while the task has not ended (or no answer is stored).
    pub fn ended_ms(&self) -> Option<i64> {
        let s = self.snapshot.as_ref()?;
        let terminal = TaskSnapshot::from(s.clone()).is_terminal();
        if !terminal {
            return None;
        }
        if s.end_time_ms > 0 {
            Some(s.end_time_ms)
        } else {
            self.settle.terminal_since_ms
        }
    }
}

/// One task, for the set of tasks already counted as stopped: the target's key and, for a
/// room-following webcast target (no `task_id`), the task's StartTime, which tells its tasks
/// apart. For a target with a `task_id` the StartTime is 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    pub key: TargetKey,
    pub start_time_ms: i64,
}

impl TaskRef {
    /// The task `snapshot` describes, answered for the target `key`.
    pub fn of(key: &TargetKey, snapshot: &TaskSnapshot) -> TaskRef {
        TaskRef {
            key: key.clone(),
            start_time_ms: if key.task_id.is_some() {
                0
            } else {
                snapshot.start_time_ms
            },
        }
    }
}

/// A stop to count together with the terminal answer that reveals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCount {
    pub task: TaskRef,
    /// The answer's StopReason (the `reason` label).
    pub reason: String,
    /// The task's end for retention (EndTime, else now), ms since the epoch.
    pub ended_ms: i64,
}

/// One change for the writer.
// Nearly every change is a Put; boxing it would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Store the target's record (replacing the previous one) and, in the same transaction,
    /// count `stop` unless that task was counted before.
    Put {
        key: TargetKey,
        record: TargetRecord,
        stop: Option<StopCount>,
    },
    /// Delete the target's row (removed from its last source). Counted tasks and counters
    /// stay.
    Remove(TargetKey),
    /// Remember a callback's `EventId`, received at `received_ms`.
    Event { id: String, received_ms: i64 },
}

/// The `(kind, app_id, reason)` of a `task_stops_total` counter.
pub type StopKey = (Kind, String, String);

/// Everything in the store, read once at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every stored target, sorted by key.
    pub targets: Vec<(TargetKey, TargetRecord)>,
    /// The tasks already counted as stopped.
    pub counted: HashSet<TaskRef>,
    /// The `task_stops_total` counters.
    pub stops: BTreeMap<StopKey, u64>,
    /// Callback event ids and when they were received, ms.
    pub events: HashMap<String, i64>,
}

// ---------------------------------------------------------------------------------------------
// Keys

fn kind_from_str(s: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == s)
}

fn target_key_str(key: &TargetKey) -> String {
    // Serialising strings cannot fail.
    serde_json::to_string(&(key.kind.as_str(), &key.app_id, &key.room_id, &key.task_id))
        .unwrap_or_default()
}

fn parse_target_key(s: &str) -> Option<TargetKey> {
    let (kind, app_id, room_id, task_id): (String, String, String, Option<String>) =
        serde_json::from_str(s).ok()?;
    Some(TargetKey {
        kind: kind_from_str(&kind)?,
        app_id,
        room_id,
        task_id,
    })
}

fn task_key_str(t: &TaskRef) -> String {
    serde_json::to_string(&(
        t.key.kind.as_str(),
        &t.key.app_id,
        &t.key.room_id,
        &t.key.task_id,
        t.start_time_ms,
    ))
    .unwrap_or_default()
}

fn parse_task_key(s: &str) -> Option<TaskRef> {
    let (kind, app_id, room_id, task_id, start_time_ms): (
        String,
        String,
        String,
        Option<String>,
        i64,
    ) = serde_json::from_str(s).ok()?;
    Some(TaskRef {
        key: TargetKey {
            kind: kind_from_str(&kind)?,
            app_id,
            room_id,
            task_id,
        },
        start_time_ms,
    })
}

fn stop_key_str(kind: Kind, app_id: &str, reason: &str) -> String {
    serde_json::to_string(&(kind.as_str(), app_id, reason)).unwrap_or_default()
}

fn parse_stop_key(s: &str) -> Option<StopKey> {
    let (kind, app_id, reason): (String, String, String) = serde_json::from_str(s).ok()?;
    Some((kind_from_str(&kind)?, app_id, reason))
}

// ---------------------------------------------------------------------------------------------
// Errors and statistics

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error(
        "the store {path} is locked: it is in use by another process; stop that process or give \
         this one its own --storage.path"
    )]
    Locked { path: PathBuf },
    #[error("cannot create the store folder {path}: {source}")]
    Folder { path: PathBuf, source: io::Error },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<DatabaseError>,
    },
    #[error(
        "the store {path} is unreadable ({cause}) and cannot be moved aside to {to}: {source}"
    )]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        cause: String,
        source: io::Error,
    },
    #[error("storage error: {0}")]
    Storage(Box<redb::Error>),
    #[error("the store writer has stopped")]
    Closed,
}

impl PersistError {
    /// The store is held by another process.
    pub fn is_locked(&self) -> bool {
        matches!(self, PersistError::Locked { .. })
    }
}

/// What a storage error happened during: the `op` label of
/// `volcengine_rtc_storage_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Open,
    Load,
    Commit,
    Prune,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Open, Op::Load, Op::Commit, Op::Prune];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Load => "load",
            Op::Commit => "commit",
            Op::Prune => "prune",
        }
    }

    fn index(self) -> usize {
        match self {
            Op::Open => 0,
            Op::Load => 1,
            Op::Commit => 2,
            Op::Prune => 3,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The store's self-metrics, updated by the writer; read them at scrape time.
#[derive(Debug)]
pub struct Stats {
    errors: [AtomicU64; 4],
    last_commit_ms: AtomicI64,
    size_bytes: AtomicU64,
    commits: AtomicU64,
    changes: AtomicU64,
    commit_seconds: prometheus::Histogram,
}

impl Stats {
    fn new() -> Stats {
        let opts = prometheus::HistogramOpts::new(
            "volcengine_rtc_storage_commit_duration_seconds",
            "Time one store write transaction took, fsync included.",
        )
        .buckets(vec![
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ]);
        #[allow(clippy::expect_used)]
        let commit_seconds =
            prometheus::Histogram::with_opts(opts).expect("the fixed name and buckets are valid");
        Stats {
            errors: Default::default(),
            last_commit_ms: AtomicI64::new(0),
            size_bytes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            commit_seconds,
        }
    }

    fn error(&self, op: Op) {
        if let Some(n) = self.errors.get(op.index()) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Storage errors so far during `op` (`volcengine_rtc_storage_errors_total{op}`).
    pub fn errors(&self, op: Op) -> u64 {
        self.errors
            .get(op.index())
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// When the last commit succeeded, ms since the epoch; `None` before the first.
    pub fn last_commit_ms(&self) -> Option<i64> {
        match self.last_commit_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// The store's size in bytes (the file's length; the memory used in memory mode), as of
    /// open or the last commit.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    /// Successful commits so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Changes written by those commits (after merging changes to the same target).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The commit durations, named `volcengine_rtc_storage_commit_duration_seconds`; register
    /// a clone of it in the exporter's registry.
    pub fn commit_duration(&self) -> &prometheus::Histogram {
        &self.commit_seconds
    }
}

// ---------------------------------------------------------------------------------------------
// Backends

/// A factory of storage backends, called at open and again after an I/O error (redb refuses
/// further writes on a database that saw one; a fresh open recovers the last commit).
pub type BackendFactory =
    Box<dyn Fn() -> Result<Box<dyn StorageBackend>, DatabaseError> + Send + Sync>;

/// Hands redb a backend while keeping a handle on it, to read the store's size.
#[derive(Debug, Clone)]
struct Shared(Arc<dyn StorageBackend>);

impl StorageBackend for Shared {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        self.0.read(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> Result<(), io::Error> {
        self.0.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
}

/// The backend over the store file at `path` (created if missing), locked.
fn file_backend(path: &Path) -> Result<Box<dyn StorageBackend>, DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    Ok(Box::new(redb::backends::FileBackend::new(file)?))
}

/// An open database and a handle on its backend.
struct Db {
    db: Database,
    backend: Shared,
}

impl Db {
    fn open(factory: &BackendFactory, check: bool) -> Result<Db, DatabaseError> {
        let backend = Shared(Arc::from(factory()?));
        let mut db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_file_format_v3(true)
            .create_with_backend(backend.clone())?;
        if check {
            db.check_integrity()?;
        }
        Ok(Db { db, backend })
    }

    fn size(&self) -> u64 {
        self.backend.len().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Open and load

/// What [`open`] found and did.
pub struct Opened {
    /// Everything the store held.
    pub state: Loaded,
    /// The handle for writes and statistics.
    pub writer: Writer,
    /// Set when an unreadable store file was moved aside and the store started empty.
    pub recovered: Option<Recovered>,
    /// Where the store lives; `None` in memory.
    pub path: Option<PathBuf>,
}

/// An unreadable store file moved aside: log [`Recovered`]'s `Display`, which says what
/// happened, where the old file went, and the fix.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The store file.
    pub path: PathBuf,
    /// Where the unreadable file is now.
    pub moved_to: PathBuf,
    /// Why it could not be read.
    pub cause: String,
}

impl fmt::Display for Recovered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the store {} could not be read ({}); it was moved aside to {} and the exporter \
             starts with an empty store and polls every target again. Keep the moved file for \
             a bug report or delete it; nothing else needs doing",
            self.path.display(),
            self.moved_to.display(),
            self.cause
        )
    }
}

/// Open (or create) the store in folder `dir`, read everything in it, and start its writer.
///
/// A second process on the same folder gets [`PersistError::Locked`] at once. An unreadable
/// file is moved aside (see [`Opened::recovered`]). A folder that cannot be created, or a file
/// that can neither be opened nor moved aside (a read-only folder), is an error: the caller
/// may log it, count it under [`Op::Open`] and run with [`open_in_memory`] instead.
pub fn open(dir: &Path, config: WriterConfig) -> Result<Opened, PersistError> {
    std::fs::create_dir_all(dir).map_err(|source| PersistError::Folder {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(FILE_NAME);
    let factory_path = path.clone();
    let factory: BackendFactory = Box::new(move || file_backend(&factory_path));
    open_with(factory, Some(path), config)
}

/// A store that lives in memory only (`--storage.path=` empty): the same API, nothing kept
/// across a restart.
pub fn open_in_memory(config: WriterConfig) -> Result<Opened, PersistError> {
    let backend: Arc<dyn StorageBackend> = Arc::new(redb::backends::InMemoryBackend::new());
    // Reopening after an error must find the same memory, hence one shared backend.
    let factory: BackendFactory = Box::new(move || Ok(Box::new(Shared(backend.clone()))));
    open_with(factory, None, config)
}

/// Open a store over backends made by `factory` (tests use it to inject failures). `path` is
/// the file the backend writes, if any: it is what gets moved aside when unreadable.
pub fn open_with_backend(
    factory: BackendFactory,
    path: Option<PathBuf>,
    config: WriterConfig,
) -> Result<Opened, PersistError> {
    open_with(factory, path, config)
}

fn open_with(
    factory: BackendFactory,
    path: Option<PathBuf>,
    config: WriterConfig,
) -> Result<Opened, PersistError> {
    let stats = Arc::new(Stats::new());
    let mut recovered = None;
    let (db, state) = match open_and_load(&factory, &stats) {
        Ok(pair) => pair,
        Err(Failure::Locked) => {
            stats.error(Op::Open);
            return Err(PersistError::Locked {
                path: path.unwrap_or_default(),
            });
        }
        Err(Failure::Unreadable(cause)) => {
            let Some(path) = path.clone() else {
                return Err(PersistError::Storage(Box::new(redb::Error::Corrupted(
                    cause,
                ))));
            };
            let moved_to = move_aside(&path, &cause)?;
            recovered = Some(Recovered {
                path,
                moved_to,
                cause,
            });
            open_and_load(&factory, &stats).map_err(|f| match f {
                Failure::Locked => PersistError::Locked {
                    path: path_or_default(&recovered),
                },
                Failure::Unreadable(cause) => {
                    PersistError::Storage(Box::new(redb::Error::Corrupted(cause)))
                }
                Failure::Other(source) => PersistError::Open {
                    path: path_or_default(&recovered),
                    source: Box::new(source),
                },
            })?
        }
        Err(Failure::Other(source)) => {
            return Err(PersistError::Open {
                path: path.unwrap_or_default(),
                source: Box::new(source),
            })
        }
    };
    stats.size_bytes.store(db.size(), Ordering::Relaxed);
    let writer = Writer::start(db, factory, stats, config);
    Ok(Opened {
        state,
        writer,
        recovered,
        path,
    })
}

fn path_or_default(r: &Option<Recovered>) -> PathBuf {
    r.as_ref().map(|r| r.path.clone()).unwrap_or_default()
}

enum Failure {
    Locked,
    /// The file is not a readable store: move it aside.
    Unreadable(String),
    /// Anything else (permissions, a read-only file system, ...).
    Other(DatabaseError),
}

fn classify(e: DatabaseError) -> Failure {
    match e {
        DatabaseError::DatabaseAlreadyOpen => Failure::Locked,
        DatabaseError::Storage(StorageError::Io(io))
            if matches!(
                io.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            Failure::Unreadable(format!("not a store file: {io}"))
        }
        DatabaseError::Storage(StorageError::Io(io)) => {
            Failure::Other(DatabaseError::Storage(StorageError::Io(io)))
        }
        other @ DatabaseError::Storage(_)
        | other @ DatabaseError::UpgradeRequired(_)
        | other @ DatabaseError::RepairAborted => Failure::Unreadable(other.to_string()),
        other => Failure::Other(other),
    }
}

/// Open, check and read the whole store. redb may panic on a file damaged in ways its checks
/// miss; such a panic is caught here and treated as an unreadable file.
fn open_and_load(factory: &BackendFactory, stats: &Stats) -> Result<(Db, Loaded), Failure> {
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let db = Db::open(factory, true).map_err(classify)?;
        let state = load(&db.db).map_err(|e| Failure::Unreadable(e.to_string()))?;
        Ok((db, state))
    }));
    match attempt {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(f)) => {
            stats.error(match f {
                Failure::Unreadable(_) => Op::Load,
                _ => Op::Open,
            });
            Err(f)
        }
        Err(_) => {
            stats.error(Op::Load);
            Err(Failure::Unreadable(
                "the store library failed reading it".into(),
            ))
        }
    }
}

fn move_aside(path: &Path, cause: &str) -> Result<PathBuf, PersistError> {
    let secs = crate::clock::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{secs}"));
    let to = PathBuf::from(name);
    std::fs::rename(path, &to).map_err(|source| PersistError::MoveAside {
        path: path.to_path_buf(),
        to: to.clone(),
        cause: cause.to_string(),
        source,
    })?;
    Ok(to)
}

/// A row that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("table {table}: a row does not decode: {what}")]
struct BadRow {
    table: &'static str,
    what: String,
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
fn bad(table: &'static str, what: impl fmt::Display) -> redb::Error {
    redb::Error::Corrupted(
        BadRow {
            table,
            what: what.to_string(),
        }
        .to_string(),
    )
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
fn load(db: &Database) -> Result<Loaded, redb::Error> {
    let txn = db.begin_read()?;
    let mut state = Loaded::default();
    match txn.open_table(META) {
        Ok(t) => {
            if let Some(v) = t.get("schema")? {
                if v.value() > SCHEMA_VERSION {
                    return Err(bad(
                        "meta",
                        format!(
                            "schema {} is newer than this exporter's {SCHEMA_VERSION}",
                            v.value()
                        ),
                    ));
                }
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(TARGETS) {
        Ok(t) => {
            state
                .targets
                .reserve(usize::try_from(t.len()?).unwrap_or(0));
            for row in t.iter()? {
                let (k, v) = row?;
                let key = parse_target_key(k.value()).ok_or_else(|| bad("targets", k.value()))?;
                let record: TargetRecord =
                    serde_json::from_slice(v.value()).map_err(|e| bad("targets", e))?;
                state.targets.push((key, record));
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state.targets.sort_by(|a, b| a.0.cmp(&b.0));
    match txn.open_table(COUNTED) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, _) = row?;
                let task = parse_task_key(k.value()).ok_or_else(|| bad("counted", k.value()))?;
                state.counted.insert(task);
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(STOPS) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                let key = parse_stop_key(k.value()).ok_or_else(|| bad("stops", k.value()))?;
                state.stops.insert(key, v.value());
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(EVENTS) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                state.events.insert(k.value().to_string(), v.value());
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(state)
}

// ---------------------------------------------------------------------------------------------
// The writer

/// How the writer batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// How long the first change of a batch waits for more before the commit.
    pub max_delay: Duration,
    /// A batch is committed at once when it reaches this many changes.
    pub max_batch: usize,
    /// The first wait after a failed commit; it doubles up to [`MAX_RETRY_DELAY`].
    pub retry_delay: Duration,
}

impl Default for WriterConfig {
    fn default() -> WriterConfig {
        WriterConfig {
            max_delay: Duration::from_millis(5),
            max_batch: 1024,
            retry_delay: Duration::from_millis(100),
        }
    }
}

/// How old and how many callback event ids [`Writer::prune`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRetention {
    pub max_age: Duration,
    pub max_count: usize,
}

impl Default for EventRetention {
    fn default() -> EventRetention {
        EventRetention {
            max_age: Duration::from_secs(24 * 3600),
            max_count: 100_000,
        }
    }
}

#[allow(clippy::large_enum_variant)] // see Change
enum Msg {
    Change(Change, u64),
    Prune {
        now_ms: i64,
        retention: Duration,
        events: EventRetention,
        seq: u64,
    },
    Close(u64),
}

/// Submits changes to the writer thread. Cheap to clone; every method is non-blocking.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<WriterInner>,
}

struct WriterInner {
    /// The sequence number of the last submission and the channel, together, so that
    /// sequence numbers reach the writer in order.
    tx: Mutex<(u64, mpsc::Sender<Msg>)>,
    committed: watch::Receiver<u64>,
    stats: Arc<Stats>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

/// One submitted change; [`Submitted::durable`] resolves once it is committed.
#[derive(Debug)]
pub struct Submitted {
    pub seq: u64,
    committed: watch::Receiver<u64>,
}

impl Submitted {
    /// Wait until the change is on disk. Resolves only after a successful commit (a failing
    /// disk makes it wait, it never fails on its own); errors if the writer stopped first.
    pub async fn durable(mut self) -> Result<u64, PersistError> {
        let seq = self.seq;
        self.committed
            .wait_for(|&c| c >= seq)
            .await
            .map(|_| seq)
            .map_err(|_| PersistError::Closed)
    }

    /// Whether the change is committed already.
    pub fn is_durable(&self) -> bool {
        *self.committed.borrow() >= self.seq
    }
}

impl Writer {
    fn start(db: Db, factory: BackendFactory, stats: Arc<Stats>, config: WriterConfig) -> Writer {
        let (tx, rx) = mpsc::channel();
        let (committed_tx, committed) = watch::channel(0);
        let thread_stats = stats.clone();
        let handle = thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                WriterThread {
                    db: Some(db),
                    factory,
                    stats: thread_stats,
                    config,
                    rx,
                    committed: committed_tx,
                    pending: Pending::default(),
                }
                .run()
            })
            .ok();
        Writer {
            inner: Arc::new(WriterInner {
                tx: Mutex::new((0, tx)),
                committed,
                stats,
                thread: Mutex::new(handle),
            }),
        }
    }

    fn send(&self, make: impl FnOnce(u64) -> Msg) -> Submitted {
        let mut guard = self.inner.tx.lock().unwrap_or_else(PoisonError::into_inner);
        guard.0 += 1;
        let seq = guard.0;
        // A send fails only when the writer thread is gone; `durable` then reports Closed.
        let _ = guard.1.send(make(seq));
        Submitted {
            seq,
            committed: self.inner.committed.clone(),
        }
    }

    /// Queue a change for the next commit.
    pub fn submit(&self, change: Change) -> Submitted {
        self.send(|seq| Msg::Change(change, seq))
    }

    /// Queue a prune at `now_ms` (ms since the epoch): see the module documentation.
    pub fn prune(&self, now_ms: i64, retention: Duration, events: EventRetention) -> Submitted {
        self.send(|seq| Msg::Prune {
            now_ms,
            retention,
            events,
            seq,
        })
    }

    /// Wait until everything submitted so far is committed.
    pub async fn flush(&self) -> Result<u64, PersistError> {
        let seq = self
            .inner
            .tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        Submitted {
            seq,
            committed: self.inner.committed.clone(),
        }
        .durable()
        .await
    }

    /// The highest committed sequence number, as a watch (for a `/metrics` that shows counts
    /// only once committed).
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.inner.committed.clone()
    }

    /// The store's self-metrics.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// Commit what is pending and stop the writer thread, waiting at most `wait` (a failing
    /// disk may not let the last changes through). Returns whether everything submitted was
    /// committed. Later submissions are not written. It blocks: from async code call it in
    /// `spawn_blocking`, or await [`Writer::flush`] first.
    pub fn close(&self, wait: Duration) -> bool {
        let seq = {
            let guard = self.inner.tx.lock().unwrap_or_else(PoisonError::into_inner);
            let last = guard.0;
            let _ = guard.1.send(Msg::Close(last));
            last
        };
        let deadline = real_now() + wait;
        let mut committed = self.inner.committed.clone();
        while *committed.borrow_and_update() < seq {
            if real_now() >= deadline || committed.has_changed().is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        let done = *committed.borrow() >= seq;
        if done {
            let handle = self
                .inner
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
        done
    }
}

/// Changes waiting for the next commit, merged per target.
#[derive(Default)]
struct Pending {
    /// The latest record per target; `None` removes it.
    targets: HashMap<TargetKey, Option<TargetRecord>>,
    stops: Vec<StopCount>,
    events: HashMap<String, i64>,
    prune: Option<(i64, Duration, EventRetention)>,
    /// The highest sequence number merged in.
    seq: u64,
    /// Submissions merged in.
    count: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add(&mut self, msg: Msg) -> Option<u64> {
        match msg {
            Msg::Change(change, seq) => {
                match change {
                    Change::Put { key, record, stop } => {
                        if let Some(stop) = stop {
                            self.stops.push(stop);
                        }
                        self.targets.insert(key, Some(record));
                    }
                    Change::Remove(key) => {
                        self.targets.insert(key, None);
                    }
                    Change::Event { id, received_ms } => {
                        self.events.insert(id, received_ms);
                    }
                }
                self.seq = self.seq.max(seq);
                self.count += 1;
                None
            }
            Msg::Prune {
                now_ms,
                retention,
                events,
                seq,
            } => {
                self.prune = Some((now_ms, retention, events));
                self.seq = self.seq.max(seq);
                self.count += 1;
                None
            }
            Msg::Close(seq) => Some(seq),
        }
    }
}

struct WriterThread {
    db: Option<Db>,
    factory: BackendFactory,
    stats: Arc<Stats>,
    config: WriterConfig,
    rx: mpsc::Receiver<Msg>,
    committed: watch::Sender<u64>,
    pending: Pending,
}

impl WriterThread {
    fn run(mut self) {
        let mut closing: Option<u64> = None;
        let mut retry = self.config.retry_delay;
        loop {
            if self.pending.is_empty() {
                if closing.is_some() {
                    return;
                }
                match self.rx.recv() {
                    Ok(msg) => {
                        if let Some(c) = self.pending.add(msg) {
                            closing = Some(c);
                        }
                    }
                    Err(_) => return,
                }
            }
            // Gather more for up to max_delay.
            let deadline = real_now() + self.config.max_delay;
            while closing.is_none() && self.pending.count < self.config.max_batch {
                let left = deadline.saturating_duration_since(real_now());
                match self.rx.recv_timeout(left) {
                    Ok(msg) => {
                        if let Some(c) = self.pending.add(msg) {
                            closing = Some(c);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        closing = Some(self.pending.seq);
                        break;
                    }
                }
            }
            if self.pending.is_empty() {
                continue;
            }
            match self.commit() {
                Ok(()) => {
                    retry = self.config.retry_delay;
                    let seq = std::mem::take(&mut self.pending).seq;
                    self.committed.send_modify(|c| *c = (*c).max(seq));
                }
                Err(op) => {
                    self.stats.error(op);
                    // Wait before the next attempt, taking new changes in meanwhile.
                    let until = real_now() + retry;
                    retry = (retry * 2).min(MAX_RETRY_DELAY);
                    loop {
                        let left = until.saturating_duration_since(real_now());
                        if left.is_zero() {
                            break;
                        }
                        match self.rx.recv_timeout(left) {
                            Ok(msg) => {
                                if let Some(c) = self.pending.add(msg) {
                                    closing = Some(c);
                                }
                            }
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                thread::sleep(left);
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Write the pending changes in one transaction (and a pending prune in a second one).
    /// On failure nothing is lost: the pending changes stay for the next attempt.
    fn commit(&mut self) -> Result<(), Op> {
        if self.db.is_none() {
            match Db::open(&self.factory, false) {
                Ok(db) => self.db = Some(db),
                Err(_) => return Err(Op::Open),
            }
        }
        let Some(db) = self.db.as_ref() else {
            return Err(Op::Open);
        };
        let started = real_now();
        let has_changes = !self.pending.targets.is_empty() || !self.pending.events.is_empty();
        if has_changes || !self.pending.stops.is_empty() {
            if let Err(_e) = write_changes(&db.db, &self.pending) {
                // redb refuses writes after an I/O error until reopened; reopen on the next
                // attempt in any case, it is cheap.
                self.db = None;
                return Err(Op::Commit);
            }
            self.pending.targets.clear();
            self.pending.stops.clear();
            self.pending.events.clear();
        }
        if let Some((now_ms, retention, events)) = self.pending.prune {
            if prune(&db.db, now_ms, retention, events).is_err() {
                self.db = None;
                return Err(Op::Prune);
            }
            self.pending.prune = None;
        }
        self.stats
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .changes
            .fetch_add(self.pending.count as u64, Ordering::Relaxed);
        let now_ms = crate::clock::now_ms();
        self.stats.last_commit_ms.store(now_ms, Ordering::Relaxed);
        self.stats.size_bytes.store(db.size(), Ordering::Relaxed);
        Ok(())
    }
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
fn write_changes(db: &Database, p: &Pending) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert("schema", SCHEMA_VERSION)?;
        let mut targets = txn.open_table(TARGETS)?;
        for (key, record) in &p.targets {
            let k = target_key_str(key);
            match record {
                Some(r) => {
                    let v = serde_json::to_vec(r).map_err(|e| bad("targets", e))?;
                    targets.insert(k.as_str(), v.as_slice())?;
                }
                None => {
                    targets.remove(k.as_str())?;
                }
            }
        }
        let mut counted = txn.open_table(COUNTED)?;
        let mut stops = txn.open_table(STOPS)?;
        for s in &p.stops {
            let k = task_key_str(&s.task);
            if counted.get(k.as_str())?.is_some() {
                continue;
            }
            counted.insert(k.as_str(), s.ended_ms)?;
            let sk = stop_key_str(s.task.key.kind, &s.task.key.app_id, &s.reason);
            let n = stops.get(sk.as_str())?.map_or(0, |v| v.value());
            stops.insert(sk.as_str(), n.saturating_add(1))?;
        }
        let mut events = txn.open_table(EVENTS)?;
        for (id, at) in &p.events {
            events.insert(id.as_str(), *at)?;
        }
    }
    txn.commit()?;
    Ok(())
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
fn prune(
    db: &Database,
    now_ms: i64,
    retention: Duration,
    ev: EventRetention,
) -> Result<(), redb::Error> {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let counted_ms = retention_ms.max(VISIBILITY_WINDOW_MS);
    let events_ms = i64::try_from(ev.max_age.as_millis()).unwrap_or(i64::MAX);
    let txn = db.begin_write()?;
    {
        // Collect, then remove: cheaper in file space than `retain` in redb 2.6.
        let mut targets = txn.open_table(TARGETS)?;
        let mut gone = Vec::new();
        for row in targets.iter()? {
            let (k, v) = row?;
            // A row that does not decode is kept: load reports it.
            if let Ok(r) = serde_json::from_slice::<TargetRecord>(v.value()) {
                if r.ended_ms()
                    .is_some_and(|end| end.saturating_add(retention_ms) <= now_ms)
                {
                    gone.push(k.value().to_string());
                }
            }
        }
        for k in &gone {
            targets.remove(k.as_str())?;
        }
        let mut counted = txn.open_table(COUNTED)?;
        remove_older(&mut counted, now_ms, counted_ms)?;
        let mut events = txn.open_table(EVENTS)?;
        remove_older(&mut events, now_ms, events_ms)?;
        let excess = usize::try_from(events.len()?)
            .unwrap_or(usize::MAX)
            .saturating_sub(ev.max_count);
        if excess > 0 {
            let mut by_age = Vec::new();
            for row in events.iter()? {
                let (k, v) = row?;
                by_age.push((v.value(), k.value().to_string()));
            }
            by_age.sort_unstable();
            for (_, id) in by_age.into_iter().take(excess) {
                events.remove(id.as_str())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// Remove the rows of `table` whose time value plus `keep_ms` is not after `now_ms`.
#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
fn remove_older(
    table: &mut redb::Table<'_, &str, i64>,
    now_ms: i64,
    keep_ms: i64,
) -> Result<(), redb::Error> {
    let mut gone = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        if v.value().saturating_add(keep_ms) <= now_ms {
            gone.push(k.value().to_string());
        }
    }
    for k in &gone {
        table.remove(k.as_str())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status;

    #[test]
    fn last_poll_round_trips_and_rows_without_it_still_decode() {
        let polled = TargetRecord {
            last_poll: Some(StoredPoll::from(&LastPoll {
                at_ms: 5,
                outcome: Outcome::NetworkError,
                error: Some("network_error: reset".into()),
            })),
            ..TargetRecord::default()
        };
        let json = serde_json::to_string(&polled).unwrap();
        assert!(
            json.contains(r#""last_poll":{"at_ms":5,"outcome":"network_error","error":"network_error: reset"}"#),
            "{json}"
        );
        let back: TargetRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, polled);
        assert_eq!(
            back.last_poll().map(|p| p.outcome),
            Some(Outcome::NetworkError)
        );

        // Rows of an older version: no `last_poll`.
        let old = |up: bool| {
            format!(
                r#"{{"sources":["config"],"added_ms":1,"up":{up},"last_success_ms":7,"settle":{{"phase":"active"}}}}"#
            )
        };
        let was_up: TargetRecord = serde_json::from_str(&old(true)).unwrap();
        assert_eq!(was_up.last_poll, None);
        assert_eq!(
            was_up.last_poll(),
            Some(LastPoll {
                at_ms: 7,
                outcome: Outcome::Success,
                error: None
            })
        );
        let was_down: TargetRecord = serde_json::from_str(&old(false)).unwrap();
        assert_eq!(was_down.last_poll(), None, "no made-up outcome");
        // An outcome a newer version wrote: the row still decodes, the poll is unknown.
        let newer: TargetRecord =
            serde_json::from_str(r#"{"last_poll":{"at_ms":1,"outcome":"quantum_error"}}"#).unwrap();
        assert_eq!(newer.last_poll(), None);
    }

    fn key(task: Option<&str>) -> TargetKey {
        TargetKey {
            kind: if task.is_some() {
                Kind::Record
            } else {
                Kind::Webcast
            },
            app_id: "app\"1".into(),
            room_id: "room,1".into(),
            task_id: task.map(String::from),
        }
    }

    #[test]
    fn keys_round_trip_with_awkward_ids() {
        for k in [key(Some("t[1]")), key(None)] {
            assert_eq!(parse_target_key(&target_key_str(&k)), Some(k.clone()));
            let t = TaskRef {
                key: k,
                start_time_ms: 42,
            };
            assert_eq!(parse_task_key(&task_key_str(&t)), Some(t));
        }
        assert_eq!(
            parse_stop_key(&stop_key_str(Kind::Webcast, "a", "StopByAPI")),
            Some((Kind::Webcast, "a".into(), "StopByAPI".into()))
        );
        assert_eq!(parse_target_key("[\"video\",\"a\",\"r\",null]"), None);
    }

    #[test]
    fn sources_as_strings() {
        for (s, text) in [
            (Source::Config, "config"),
            (Source::file("/etc/t.yml"), "file:/etc/t.yml"),
            (Source::Api, "api"),
            (Source::Callback, "callback"),
        ] {
            assert_eq!(s.to_string(), text);
            assert_eq!(text.parse::<Source>(), Ok(s));
        }
        assert!("file:".parse::<Source>().is_err());
        assert!("sd".parse::<Source>().is_err());
    }

    #[test]
    fn snapshot_converts_both_ways_and_stays_small() {
        let snap = TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_000,
            end_time_ms: 1_700_000_360_000,
            stop_reason: "StopByAPI".into(),
            files: vec![RecordFile {
                vid: Some("v1".into()),
                size_bytes: Some(1024),
                ..Default::default()
            }],
            max_running_time_s: None,
            user_id: None,
        };
        let stored = StoredSnapshot::from(&snap);
        assert_eq!(TaskSnapshot::from(stored.clone()), snap);
        let json = serde_json::to_string(&stored).unwrap_or_default();
        assert_eq!(
            json,
            "{\"status\":3,\"start_time_ms\":1700000000000,\"end_time_ms\":1700000360000,\
             \"stop_reason\":\"StopByAPI\",\"files\":[{\"vid\":\"v1\",\"size_bytes\":1024}]}"
        );
    }

    #[test]
    fn ended_uses_end_time_else_first_terminal_sight() {
        let mut r = TargetRecord::default();
        assert_eq!(r.ended_ms(), None);
        r.snapshot = Some(StoredSnapshot {
            status: status::RUNNING,
            ..Default::default()
        });
        assert_eq!(r.ended_ms(), None);
        r.snapshot = Some(StoredSnapshot {
            status: status::FAILED,
            ..Default::default()
        });
        r.settle.terminal_since_ms = Some(77);
        assert_eq!(r.ended_ms(), Some(77));
        r.snapshot = Some(StoredSnapshot {
            status: status::ENDED,
            end_time_ms: 55,
            ..Default::default()
        });
        assert_eq!(r.ended_ms(), Some(55));
    }

    #[test]
    fn a_room_target_tells_its_tasks_apart_by_start_time() {
        let snap = TaskSnapshot {
            start_time_ms: 9,
            ..Default::default()
        };
        assert_eq!(TaskRef::of(&key(None), &snap).start_time_ms, 9);
        assert_eq!(TaskRef::of(&key(Some("t")), &snap).start_time_ms, 0);
    }
}
