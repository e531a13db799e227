//! The durable store on real files: what survives a reopen and a `kill -9`, counting a stop
//! once, retention, and the faults (another process holding the lock, a corrupt file, a
//! read-only folder; a disk that fails for a while, and memory mode, are unit tests of
//! `src/state/writer.rs`, which can inject a failing backend).
//!
//! Tests that need a second process re-run this test binary on the ignored `child_*` helpers,
//! with the folder in an environment variable.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use volc_rtc_exporter::model::{status, Kind, Phase, RecordFile, Target, TargetKey, TaskSnapshot};
use volc_rtc_exporter::state::{
    self, Change, EventRetention, Op, Opened, Source, StopCount, StoredSnapshot, Submitted,
    TargetRecord, TaskRef, WriterConfig, FILE_NAME,
};

const T0: i64 = 1_700_000_000_000;
const HOUR_MS: i64 = 3_600_000;
const DIR_VAR: &str = "VOLC_PERSIST_TEST_DIR";

fn key(i: usize) -> TargetKey {
    TargetKey {
        kind: Kind::Record,
        app_id: "app1".into(),
        room_id: format!("room{i}"),
        task_id: Some(format!("task{i}")),
    }
}

fn ended(i: usize, end_ms: i64, reason: &str) -> TaskSnapshot {
    TaskSnapshot {
        status: status::ENDED,
        start_time_ms: end_ms - HOUR_MS,
        end_time_ms: end_ms,
        stop_reason: reason.into(),
        files: vec![RecordFile {
            vid: Some(format!("v{i}")),
            size_bytes: Some(1_000 + i as i64),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A Put of target `i` with a terminal answer, counting its stop.
fn finished(i: usize, end_ms: i64, reason: &str) -> Change {
    let snap = ended(i, end_ms, reason);
    let target = Target {
        key: key(i),
        labels: vec![("team".into(), "a".into())].into(),
    };
    let mut record = TargetRecord::new(&target, Source::Config, T0);
    record.snapshot = Some(StoredSnapshot::from(&snap));
    record.up = Some(true);
    record.last_success_ms = Some(end_ms + 1_000);
    record.settle.phase = Phase::Settling;
    record.settle.terminal_since_ms = Some(end_ms + 1_000);
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
    let mut record = TargetRecord::new(&target, source, T0);
    record.snapshot = Some(StoredSnapshot {
        status: status::RUNNING,
        start_time_ms: T0,
        ..Default::default()
    });
    record.settle.phase = Phase::Active;
    Change::Put {
        key: key(i),
        record,
        stop: None,
    }
}

fn open(dir: &Path) -> Opened {
    match state::open(dir, WriterConfig::default()) {
        Ok(o) => o,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// Submits `change` to `o`, waits until it is durable, closes the writer and opens `dir` again.
async fn commit_and_reopen(o: &Opened, change: Change, dir: &Path) -> Opened {
    o.writer.submit(change).durable().await.unwrap();
    o.writer.close(Duration::from_secs(5));
    open(dir)
}

/// Whether `s` is committed already: its `durable` resolves without waiting.
async fn is_durable(s: Submitted) -> bool {
    tokio::time::timeout(Duration::ZERO, s.durable())
        .await
        .is_ok_and(|r| r.is_ok())
}

fn stops(o: &Opened, reason: &str) -> u64 {
    o.state
        .stops
        .get(&(Kind::Record, "app1".to_string(), reason.to_string()))
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn everything_survives_a_reopen_and_a_stop_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let o = open(dir.path());
        assert!(o.state.targets.is_empty());
        assert!(o.recovered.is_none());
        let w = &o.writer;
        let first = w.submit(finished(1, T0, "StopByAPI"));
        // The same terminal answer again (a retry, a second poll): no second count.
        let again = w.submit(finished(1, T0, "StopByAPI"));
        w.submit(finished(2, T0, "IdleTimeOut"))
            .durable()
            .await
            .unwrap();
        w.submit(running(3, Source::Api)).durable().await.unwrap();
        w.submit(Change::Event {
            id: "ev-1".into(),
            received_ms: T0,
        })
        .durable()
        .await
        .unwrap();
        assert!(is_durable(first).await);
        assert!(again.durable().await.is_ok());
        let stats = w.stats();
        assert!(stats.commit_duration().get_sample_count() >= 1);
        assert!(stats.last_commit_ms().is_some());
        assert!(stats.size_bytes() > 0);
        assert!(w.close(Duration::from_secs(5)));
    }
    let o = open(dir.path());
    let keys: Vec<TargetKey> = o.state.targets.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![key(1), key(2), key(3)]);
    let (_, r1) = &o.state.targets[0];
    assert_eq!(r1.sources.iter().collect::<Vec<_>>(), vec![&Source::Config]);
    assert_eq!(r1.labels, vec![("team".to_string(), "a".to_string())]);
    assert_eq!(r1.task_snapshot(), Some(ended(1, T0, "StopByAPI")));
    assert_eq!(r1.settle.phase, Phase::Settling);
    assert_eq!(r1.last_success_ms, Some(T0 + 1_000));
    assert_eq!(o.state.targets[2].1.sources.first(), Some(&Source::Api));
    assert_eq!(stops(&o, "StopByAPI"), 1);
    assert_eq!(stops(&o, "IdleTimeOut"), 1);
    assert_eq!(o.state.counted.len(), 2);
    assert_eq!(o.state.events.get("ev-1"), Some(&T0));

    // After the restart the same task is still counted once.
    o.writer
        .submit(finished(1, T0, "StopByAPI"))
        .durable()
        .await
        .unwrap();
    assert!(o.writer.close(Duration::from_secs(5)));
    let o = open(dir.path());
    assert_eq!(stops(&o, "StopByAPI"), 1);
}

#[tokio::test]
async fn a_room_target_counts_each_of_its_tasks_once() {
    let room = TargetKey {
        kind: Kind::Webcast,
        app_id: "app1".into(),
        room_id: "r".into(),
        task_id: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path());
    // Two tasks of the room, the second one answered twice.
    let mut last = None;
    for start in [T0, T0 + HOUR_MS, T0 + HOUR_MS] {
        let snap = TaskSnapshot {
            status: status::ENDED,
            start_time_ms: start,
            end_time_ms: start + 1,
            stop_reason: "StopByAPI".into(),
            ..Default::default()
        };
        last = Some(o.writer.submit(Change::Put {
            key: room.clone(),
            record: TargetRecord::default(),
            stop: Some(StopCount {
                task: TaskRef::of(&room, &snap),
                reason: "StopByAPI".into(),
                ended_ms: start + 1,
            }),
        }));
    }
    last.unwrap().durable().await.unwrap();
    o.writer.close(Duration::from_secs(5));
    let o = open(dir.path());
    assert_eq!(
        o.state
            .stops
            .get(&(Kind::Webcast, "app1".into(), "StopByAPI".into())),
        Some(&2)
    );
}

#[tokio::test]
async fn removal_deletes_the_row_but_keeps_counts() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path());
    o.writer.submit(finished(1, T0, "StopByAPI"));
    o.writer.submit(running(2, Source::file("/t/a.yml")));
    o.writer
        .submit(Change::Remove(key(1)))
        .durable()
        .await
        .unwrap();
    o.writer.close(Duration::from_secs(5));
    let o = open(dir.path());
    assert_eq!(
        o.state.targets.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        vec![&key(2)]
    );
    assert_eq!(
        o.state.targets[0].1.sources.first(),
        Some(&Source::file("/t/a.yml"))
    );
    assert_eq!(stops(&o, "StopByAPI"), 1);
    assert!(o.state.counted.contains(&TaskRef {
        key: key(1),
        start_time_ms: 0
    }));
}

#[tokio::test]
async fn prune_applies_retention_to_rows_counted_tasks_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path());
    let now = T0 + 100 * HOUR_MS;
    let retention = Duration::from_secs(24 * 3600);
    o.writer
        .submit(finished(1, now - 25 * HOUR_MS, "StopByAPI")); // past retention
    o.writer
        .submit(finished(2, now - 23 * HOUR_MS, "StopByAPI")); // within
    o.writer
        .submit(finished(3, now - 80 * HOUR_MS, "StopByAPI")); // past 72 h too
    o.writer.submit(running(4, Source::Callback)); // not ended: kept
    for i in 0..5 {
        o.writer.submit(Change::Event {
            id: format!("ev{i}"),
            received_ms: now - i * HOUR_MS,
        });
    }
    o.writer.submit(Change::Event {
        id: "old".into(),
        received_ms: now - 48 * HOUR_MS,
    });
    o.writer
        .prune(
            now,
            retention,
            EventRetention {
                max_age: Duration::from_secs(24 * 3600),
                max_count: 3,
            },
        )
        .durable()
        .await
        .unwrap();
    o.writer.close(Duration::from_secs(5));
    let o = open(dir.path());
    let keys: Vec<&TargetKey> = o.state.targets.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![&key(2), &key(4)]);
    // Target 1's task is past retention but the API still shows it: still counted.
    let counted = |i| {
        o.state.counted.contains(&TaskRef {
            key: key(i),
            start_time_ms: 0,
        })
    };
    assert!(counted(1) && counted(2) && !counted(3));
    assert_eq!(stops(&o, "StopByAPI"), 3, "counters never shrink");
    let mut events: Vec<&String> = o.state.events.keys().collect();
    events.sort();
    assert_eq!(events, vec!["ev0", "ev1", "ev2"]);
}

/// Re-run this test binary on one ignored helper, with `dir` in its environment.
fn child(helper: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        helper,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DIR_VAR, dir);
    cmd
}

#[test]
#[ignore = "helper: run in a child process by a_second_process_is_refused_at_once"]
fn child_open() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    match state::open(Path::new(&dir), WriterConfig::default()) {
        Ok(_) => println!("OPENED"),
        Err(e) => println!("REFUSED locked={} {e}", e.is_locked()),
    }
}

#[tokio::test]
async fn a_second_process_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path());
    o.writer
        .submit(finished(1, T0, "StopByAPI"))
        .durable()
        .await
        .unwrap();
    let started = volc_rtc_exporter::clock::real_now();
    let out = child("child_open", dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REFUSED locked=true")
            && text.contains("is locked: it is in use by another process"),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The refused process did no harm, and the store keeps working.
    let o = commit_and_reopen(&o, finished(2, T0, "StopByAPI"), dir.path()).await;
    assert_eq!(stops(&o, "StopByAPI"), 2);
    o.writer.close(Duration::from_secs(5));
    // Once the first process is gone, a second one opens it.
    let out = child("child_open", dir.path()).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("OPENED"));
}

#[test]
#[ignore = "helper: run in a child process by kill_9_never_loses_a_durable_change_nor_counts_twice"]
fn child_write_until_killed() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let o = state::open(Path::new(&dir), WriterConfig::default()).unwrap();
        let start = o.state.targets.len();
        for i in start..start + 100_000 {
            // Each task ends, its stop counted in the same transaction; and the same answer
            // again for the previous task, which must not count twice.
            let mut last = o.writer.submit(finished(i, T0, "StopByAPI"));
            if i > 0 {
                last = o.writer.submit(finished(i - 1, T0, "StopByAPI"));
            }
            if i % 7 == 0 {
                last.durable().await.unwrap();
                println!("DURABLE {}", i + 1);
            }
        }
    });
}

#[test]
fn kill_9_never_loses_a_durable_change_nor_counts_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut shown = 0usize;
    for round in 0..5 {
        let mut proc = child("child_write_until_killed", dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = proc.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill at a different moment each round.
        let wanted = shown + 30 + round * 17;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("DURABLE ") {
                shown = n.parse().unwrap();
                if shown >= wanted {
                    break;
                }
            }
        }
        proc.kill().unwrap(); // SIGKILL
        proc.wait().unwrap();
        let o = open(dir.path());
        let stored = o.state.targets.len();
        assert!(
            stored >= shown,
            "round {round}: {stored} stored, {shown} shown"
        );
        // Every stored terminal answer was counted exactly once, in its own transaction.
        assert_eq!(stops(&o, "StopByAPI"), stored as u64, "round {round}");
        assert_eq!(o.state.counted.len(), stored, "round {round}");
        assert!(o.writer.close(Duration::from_secs(5)));
        shown = stored;
    }
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("state.redb.corrupt-"))
        })
        .collect()
}

#[tokio::test]
async fn a_garbage_file_is_moved_aside_and_the_store_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.path().join(FILE_NAME), &garbage).unwrap();
    let o = open(dir.path());
    let rec = o.recovered.as_ref().expect("recovered");
    let moved = corrupt_files(dir.path());
    assert_eq!(moved, vec![rec.moved_to.clone()]);
    assert_eq!(std::fs::read(&moved[0]).unwrap(), garbage);
    let said = rec.to_string();
    assert!(
        said.contains(&dir.path().join(FILE_NAME).display().to_string()),
        "{said}"
    );
    assert!(
        said.contains("moved aside to") && said.contains("empty store"),
        "{said}"
    );
    assert!(o.state.targets.is_empty());
    assert!(o.writer.stats().errors(Op::Load) + o.writer.stats().errors(Op::Open) >= 1);
    // The new store works.
    let o = commit_and_reopen(&o, finished(1, T0, "StopByAPI"), dir.path()).await;
    assert_eq!(o.state.targets.len(), 1);
    assert!(o.recovered.is_none());
}

#[tokio::test]
async fn a_store_damaged_inside_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let o = open(dir.path());
    let mut last = None;
    for i in 0..300 {
        last = Some(o.writer.submit(finished(i, T0, "StopByAPI")));
    }
    last.unwrap().durable().await.unwrap();
    o.writer.close(Duration::from_secs(5));
    drop(o);
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    // Keep the header, scramble every page after it.
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 31 % 256) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, len);
    let o = open(dir.path());
    assert!(o.recovered.is_some(), "damage went unnoticed");
    assert!(o.state.targets.is_empty());
    assert_eq!(corrupt_files(dir.path()).len(), 1);
}

/// A folder this process cannot write: `chmod 555` for an ordinary user; root ignores modes,
/// so for root a read-only bind mount of it.
struct ReadOnly {
    path: PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn new(src: &Path, at: &Path) -> ReadOnly {
        std::fs::create_dir_all(at).unwrap();
        let probe = src.join(".probe");
        let mut perms = std::fs::metadata(src).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        perms.set_mode(0o555);
        std::fs::set_permissions(src, perms).unwrap();
        if std::fs::write(&probe, b"x").is_err() {
            return ReadOnly {
                path: src.to_path_buf(),
                mounted: false,
            };
        }
        let _ = std::fs::remove_file(&probe);
        let status = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(src)
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount --bind -o ro failed");
        ReadOnly {
            path: at.to_path_buf(),
            mounted: true,
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.path).status();
        }
    }
}

#[tokio::test]
async fn a_read_only_folder_is_a_clear_error_not_a_panic() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // An existing store in it, written while it was writable.
    let o = open(&src);
    o.writer
        .submit(finished(1, T0, "StopByAPI"))
        .durable()
        .await
        .unwrap();
    o.writer.close(Duration::from_secs(5));
    drop(o);
    let ro = ReadOnly::new(&src, &base.path().join("ro"));

    let sub = ro.path.join("sub");
    let e = state::open(&sub, WriterConfig::default())
        .err()
        .expect("a folder that cannot be created");
    assert!(
        e.to_string().contains("cannot create the store folder"),
        "{e}"
    );

    if ro.mounted {
        // Root, read-only file system: the file cannot be opened for writing.
        let e = state::open(&ro.path, WriterConfig::default())
            .err()
            .expect("a read-only store");
        assert!(
            e.to_string().contains("cannot open the store") && !e.is_locked(),
            "{e}"
        );
        assert!(corrupt_files(&ro.path).is_empty(), "nothing moved aside");
    }
    // The caller's fallback: memory.
    let m = state::open_in_memory(WriterConfig::default()).unwrap();
    m.writer
        .submit(finished(1, T0, "StopByAPI"))
        .durable()
        .await
        .unwrap();
    assert!(m.writer.stats().size_bytes() > 0);
    drop(ro);
}
