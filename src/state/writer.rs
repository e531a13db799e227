//! The group-committing writer: one thread that gathers changes, merges those to the same
//! target, and writes them in one transaction with one `fsync`, retrying a failed commit.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use redb::{Database, ReadableTable};
use tokio::sync::watch;

use super::prune::{prune, EventRetention};
use super::schema::{
    bad, stop_key_str, target_key_str, task_key_str, TargetRecord, TaskRef, COUNTED, EVENTS, META,
    SCHEMA_VERSION, STOPS, TARGETS,
};
use super::{BackendFactory, Db, Op, StateError, Stats};
use crate::clock::real_now;
use crate::model::TargetKey;

/// The longest wait between two attempts of a failing commit.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

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
    pub async fn durable(mut self) -> Result<u64, StateError> {
        let seq = self.seq;
        self.committed
            .wait_for(|&c| c >= seq)
            .await
            .map(|_| seq)
            .map_err(|_| StateError::Closed)
    }

    /// Whether the change is committed already.
    #[cfg(test)]
    fn is_durable(&self) -> bool {
        *self.committed.borrow() >= self.seq
    }
}

impl Writer {
    pub(super) fn start(
        db: Db,
        factory: BackendFactory,
        stats: Arc<Stats>,
        config: WriterConfig,
    ) -> Writer {
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

    /// The store's self-metrics.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.inner.stats
    }

    /// Commit what is pending and stop the writer thread, waiting at most `wait` (a failing
    /// disk may not let the last changes through). Returns whether everything submitted was
    /// committed. Later submissions are not written. It blocks: from async code call it in
    /// `spawn_blocking`, or await the last [`Submitted::durable`] first.
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

#[cfg(test)]
mod tests {
    //! The writer against a disk that fails for a while (a backend only these tests can
    //! inject), and in memory; the rest of the store's behaviour is tested on real files in
    //! `tests/persist.rs`.

    use std::sync::atomic::AtomicBool;

    use redb::StorageBackend;

    use super::*;
    use crate::model::{status, Kind, RecordFile, Target, TaskSnapshot};
    use crate::state::{open_with, Opened, Source, StoredSnapshot, FILE_NAME};

    const T0: i64 = 1_700_000_000_000;
    const HOUR_MS: i64 = 3_600_000;

    fn key(i: usize) -> TargetKey {
        TargetKey {
            kind: Kind::Record,
            app_id: "app1".into(),
            room_id: format!("room{i}"),
            task_id: Some(format!("task{i}")),
        }
    }

    /// A Put of target `i` with a terminal answer, counting its stop.
    fn finished(i: usize, end_ms: i64, reason: &str) -> Change {
        let snap = TaskSnapshot {
            status: status::ENDED,
            start_time_ms: end_ms - HOUR_MS,
            end_time_ms: end_ms,
            stop_reason: reason.into(),
            files: vec![RecordFile {
                vid: Some(format!("v{i}")),
                ..Default::default()
            }],
            ..Default::default()
        };
        let target = Target {
            key: key(i),
            labels: Default::default(),
        };
        let mut record = TargetRecord::new(&target, Source::Config, T0);
        record.snapshot = Some(StoredSnapshot::from(&snap));
        record.settle.stop_counted = true;
        Change::Put {
            key: key(i),
            stop: Some(StopCount {
                task: TaskRef::of(&key(i), &snap),
                reason: reason.into(),
                ended_ms: end_ms,
            }),
            record,
        }
    }

    fn running(i: usize, source: Source) -> Change {
        let target = Target {
            key: key(i),
            labels: Default::default(),
        };
        Change::Put {
            key: key(i),
            record: TargetRecord::new(&target, source, T0),
            stop: None,
        }
    }

    fn stops(o: &Opened, reason: &str) -> u64 {
        o.state
            .stops
            .get(&(Kind::Record, "app1".to_string(), reason.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// A file backend that fails every write and sync while `failing` is set, like a full disk.
    #[derive(Debug)]
    struct Flaky {
        inner: redb::backends::FileBackend,
        failing: Arc<AtomicBool>,
    }

    impl Flaky {
        fn check(&self) -> Result<(), std::io::Error> {
            if self.failing.load(Ordering::SeqCst) {
                Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "no space left on device",
                ))
            } else {
                Ok(())
            }
        }
    }

    impl StorageBackend for Flaky {
        fn len(&self) -> Result<u64, std::io::Error> {
            self.inner.len()
        }
        fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
            self.inner.read(offset, len)
        }
        fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self, eventual: bool) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.sync_data(eventual)
        }
        fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
            self.check()?;
            self.inner.write(offset, data)
        }
    }

    #[tokio::test]
    async fn a_failing_disk_delays_commits_and_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let failing = Arc::new(AtomicBool::new(false));
        let (p, f) = (path.clone(), failing.clone());
        let factory: BackendFactory = Box::new(move || {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)?;
            Ok(Box::new(Flaky {
                inner: redb::backends::FileBackend::new(file)?,
                failing: f.clone(),
            }))
        });
        let config = WriterConfig {
            retry_delay: Duration::from_millis(20),
            ..WriterConfig::default()
        };
        let o = open_with(factory, Some(path), config).unwrap();
        o.writer
            .submit(finished(1, T0, "StopByAPI"))
            .durable()
            .await
            .unwrap();

        failing.store(true, Ordering::SeqCst);
        let pending = o.writer.submit(finished(2, T0, "IdleTimeOut"));
        let also = o.writer.submit(running(3, Source::Api));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!pending.is_durable() && !also.is_durable());
        // The first attempt fails in the commit; the retries fail already reopening the file.
        let stats = o.writer.stats();
        let (commit, reopen) = (stats.errors(Op::Commit), stats.errors(Op::Open));
        assert!(
            commit >= 1 && commit + reopen >= 3,
            "{commit} commit, {reopen} open errors"
        );
        let commits = o.writer.stats().commit_duration().get_sample_count();

        failing.store(false, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(10), pending.durable())
            .await
            .expect("committed once the disk recovers")
            .unwrap();
        assert!(also.is_durable());
        assert!(o.writer.stats().commit_duration().get_sample_count() > commits);
        assert!(o.writer.close(Duration::from_secs(5)));
        drop(o);

        let o = crate::state::open(dir.path(), WriterConfig::default()).unwrap();
        assert_eq!(o.state.targets.len(), 3);
        assert_eq!(stops(&o, "StopByAPI"), 1);
        assert_eq!(stops(&o, "IdleTimeOut"), 1);
    }

    #[tokio::test]
    async fn memory_mode_has_the_same_api() {
        let o = crate::state::open_in_memory(WriterConfig::default()).unwrap();
        let mut last = None;
        for i in 0..10 {
            last = Some(o.writer.submit(finished(i, T0, "StopByAPI")));
        }
        let seq = last.unwrap().durable().await.unwrap();
        assert_eq!(seq, 10);
        assert_eq!(*o.writer.inner.committed.borrow(), 10);
        assert!(o.writer.stats().changes() >= 10);
        assert!(o.writer.close(Duration::from_secs(5)));
    }
}
