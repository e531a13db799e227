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
//! same folder is refused at once with [`StateError::Locked`] ("locked: in use by another
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
//! longer show the task either (`max(retention, 72 h)` after its end, the 72 h being
//! [`crate::model::VISIBILITY_WINDOW`], so a target added again is not counted twice), and
//! callback event ids older than their own age limit or beyond their cap.
//!
//! # Where is what
//!
//! This file opens the store (file or memory, the lock, moving an unreadable file aside) and
//! keeps its self-metrics; `schema.rs` has the stored rows, their JSON, the tables' keys and
//! the load at open; `writer.rs` the group-committing writer; `prune.rs` retention.

mod prune;
mod schema;
mod writer;

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use redb::{Database, DatabaseError, StorageBackend, StorageError};

pub use prune::EventRetention;
pub use schema::{
    Loaded, Settle, Source, StoredFile, StoredPoll, StoredSnapshot, TargetRecord, TaskRef,
    SCHEMA_VERSION,
};
pub use writer::{Change, StopCount, Submitted, Writer, WriterConfig, MAX_RETRY_DELAY};

/// The store file's name inside the storage folder.
pub const FILE_NAME: &str = "state.redb";

/// redb's page cache (a tenth of it the write buffer). The store is read whole once, at
/// start; after that only the B-tree pages a commit rewrites are read, which the kernel's page
/// cache serves as well. A cache as large as the file (≈ 2 KB per target) would only hold a
/// second copy of what the target table holds already.
const CACHE_BYTES: usize = 2 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Errors and statistics

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
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

impl StateError {
    /// The store is held by another process.
    pub fn is_locked(&self) -> bool {
        matches!(self, StateError::Locked { .. })
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
type BackendFactory = Box<dyn Fn() -> Result<Box<dyn StorageBackend>, DatabaseError> + Send + Sync>;

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
/// A second process on the same folder gets [`StateError::Locked`] at once. An unreadable
/// file is moved aside (see [`Opened::recovered`]). A folder that cannot be created, or a file
/// that can neither be opened nor moved aside (a read-only folder), is an error: the caller
/// may log it, count it under [`Op::Open`] and run with [`open_in_memory`] instead.
pub fn open(dir: &Path, config: WriterConfig) -> Result<Opened, StateError> {
    std::fs::create_dir_all(dir).map_err(|source| StateError::Folder {
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
pub fn open_in_memory(config: WriterConfig) -> Result<Opened, StateError> {
    let backend: Arc<dyn StorageBackend> = Arc::new(redb::backends::InMemoryBackend::new());
    // Reopening after an error must find the same memory, hence one shared backend.
    let factory: BackendFactory = Box::new(move || Ok(Box::new(Shared(backend.clone()))));
    open_with(factory, None, config)
}

/// Open a store over backends made by `factory` (the unit tests inject failures with it).
/// `path` is the file the backend writes, if any: it is what gets moved aside when unreadable.
fn open_with(
    factory: BackendFactory,
    path: Option<PathBuf>,
    config: WriterConfig,
) -> Result<Opened, StateError> {
    let stats = Arc::new(Stats::new());
    let mut recovered = None;
    let (db, state) = match open_and_load(&factory, &stats) {
        Ok(pair) => pair,
        Err(Failure::Locked) => {
            stats.error(Op::Open);
            return Err(StateError::Locked {
                path: path.unwrap_or_default(),
            });
        }
        Err(Failure::Unreadable(cause)) => {
            let Some(path) = path.clone() else {
                return Err(StateError::Storage(Box::new(redb::Error::Corrupted(cause))));
            };
            let moved_to = move_aside(&path, &cause)?;
            recovered = Some(Recovered {
                path,
                moved_to,
                cause,
            });
            open_and_load(&factory, &stats).map_err(|f| match f {
                Failure::Locked => StateError::Locked {
                    path: path_or_default(&recovered),
                },
                Failure::Unreadable(cause) => {
                    StateError::Storage(Box::new(redb::Error::Corrupted(cause)))
                }
                Failure::Other(source) => StateError::Open {
                    path: path_or_default(&recovered),
                    source: Box::new(source),
                },
            })?
        }
        Err(Failure::Other(source)) => {
            return Err(StateError::Open {
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
        let state = schema::load(&db.db).map_err(|e| Failure::Unreadable(e.to_string()))?;
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

fn move_aside(path: &Path, cause: &str) -> Result<PathBuf, StateError> {
    let secs = crate::clock::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{secs}"));
    let to = PathBuf::from(name);
    std::fs::rename(path, &to).map_err(|source| StateError::MoveAside {
        path: path.to_path_buf(),
        to: to.clone(),
        cause: cause.to_string(),
        source,
    })?;
    Ok(to)
}
