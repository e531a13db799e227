//! Target sources seen from outside: the target-file watcher on real directories (files added,
//! edited, replaced by a rename, swapped the Kubernetes way, broken, deleted), its refresh
//! fallback, merging sources and diffing merged sets, and the registration API's body.
//!
//! Waits poll the published snapshot with a deadline instead of sleeping a fixed time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::model::{Kind, Target, TargetKey};
use volc_rtc_exporter::targets::api::{self, BodyError, MAX_BODY_BYTES};
use volc_rtc_exporter::targets::files::{self, FileEntry, FileTargets, TargetFilesConfig};
use volc_rtc_exporter::targets::merge::{Diff, MergedTarget, MergedTargets};
use volc_rtc_exporter::targets::Source;

const DEADLINE: Duration = Duration::from_secs(10);

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("volc-sources-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A targets file listing webcast targets of app `a` for these rooms.
fn rooms(rooms: &[&str]) -> String {
    rooms
        .iter()
        .map(|r| format!("- {{kind: webcast, app_id: a, room_id: {r}}}\n"))
        .collect()
}

fn key(room: &str) -> TargetKey {
    TargetKey {
        kind: Kind::Webcast,
        app_id: "a".into(),
        room_id: room.into(),
        task_id: None,
    }
}

/// The rooms of one file's targets, in file order; `None` when the file is not in the set.
/// Every target of `merged` with its sources, read back through `diff`: from nothing every
/// target is added; from the same targets under a source no test uses, every one's sources
/// changed.
fn merged_targets(merged: &MergedTargets) -> Vec<MergedTarget> {
    let targets = MergedTargets::default().diff(merged).added;
    let probe = MergedTargets::merge([(Source::file("/probe"), &targets)]);
    probe.diff(merged).sources_changed
}

fn merged_target(merged: &MergedTargets, key: &TargetKey) -> Option<MergedTarget> {
    merged_targets(merged)
        .into_iter()
        .find(|m| m.target.key == *key)
}

/// Nothing to apply.
fn nothing(diff: &Diff) -> bool {
    diff.added.is_empty()
        && diff.removed.is_empty()
        && diff.labels_changed.is_empty()
        && diff.sources_changed.is_empty()
}

/// How many targets of `old` are in `diff`'s new set with the same labels and sources.
fn unchanged(old: &MergedTargets, diff: &Diff) -> usize {
    let changed = diff.removed.len() + diff.labels_changed.len() + diff.sources_changed.len();
    merged_targets(old).len() - changed
}

/// The entry of the file at `path`.
fn file_entry<'a>(set: &'a FileTargets, path: &Path) -> Option<&'a FileEntry> {
    set.files().find(|(p, _)| *p == path).map(|(_, e)| e)
}

/// Every target with the file it came from.
fn targets(set: &FileTargets) -> impl Iterator<Item = (&Path, &Target)> {
    set.files()
        .flat_map(|(p, e)| e.targets.iter().map(move |t| (p, t)))
}

fn rooms_of(set: &FileTargets, path: &Path) -> Option<Vec<String>> {
    let entry = file_entry(set, path)?;
    Some(
        entry
            .targets
            .iter()
            .map(|t| t.key.room_id.clone())
            .collect(),
    )
}

/// Writes `text` next to `path` and renames it over `path`, as editors and tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn start(patterns: Vec<PathBuf>, refresh: Duration, watch: bool) -> files::FileWatcher {
    let config = TargetFilesConfig {
        refresh_interval: refresh,
        watch,
        debounce: Duration::from_millis(20),
        ..TargetFilesConfig::new(patterns)
    };
    files::watch(config, CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the published set satisfies `ok`, or fails after [`DEADLINE`] with `what`.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<FileTargets>>,
    what: &str,
    ok: impl Fn(&FileTargets) -> bool,
) -> Arc<FileTargets> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = Arc::clone(&rx.borrow_and_update());
        if ok(&now) {
            return now;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("watcher stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within {DEADLINE:?}; last set: {now:#?}"),
        }
    }
}

/// Long enough that only file events can explain a change within the test.
const NO_REFRESH: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn file_added_edited_replaced_by_rename_and_deleted() {
    let dir = scratch("lifecycle");
    let file = dir.join("a.yaml");
    let mut w = start(vec![dir.join("*.yaml")], NO_REFRESH, true).await;
    assert_eq!(w.targets.borrow().files().count(), 0);

    std::fs::write(&file, rooms(&["r1"])).unwrap();
    wait_for(&mut w.targets, "the added file", |s| {
        rooms_of(s, &file) == Some(vec!["r1".into()])
    })
    .await;

    std::fs::write(&file, rooms(&["r1", "r2"])).unwrap();
    wait_for(&mut w.targets, "the edit", |s| {
        rooms_of(s, &file) == Some(vec!["r1".into(), "r2".into()])
    })
    .await;

    replace(&file, &rooms(&["r3"]));
    let s = wait_for(&mut w.targets, "the renamed-over file", |s| {
        rooms_of(s, &file) == Some(vec!["r3".into()])
    })
    .await;
    // The temporary file never matched.
    assert_eq!(s.files().count(), 1);
    assert!(file_entry(&s, &file).is_some_and(|e| e.last_load_successful));

    std::fs::remove_file(&file).unwrap();
    wait_for(&mut w.targets, "the deletion", |s| s.files().count() == 0).await;
}

#[tokio::test]
async fn kubernetes_data_symlink_swap() {
    let dir = scratch("k8s");
    // The layout of a mounted ConfigMap: `..data` points at a timestamped directory and the
    // file is a symlink through `..data`.
    let v1 = dir.join("..2024_05_01_10_00_00.000000001");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("targets.yaml"), rooms(&["old"])).unwrap();
    std::os::unix::fs::symlink(v1.file_name().unwrap(), dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/targets.yaml", dir.join("targets.yaml")).unwrap();
    let file = dir.join("targets.yaml");

    let mut w = start(vec![dir.join("*.yaml")], NO_REFRESH, true).await;
    assert_eq!(
        rooms_of(&w.targets.borrow(), &file),
        Some(vec!["old".into()])
    );

    // The kubelet's update: a new timestamped directory, a `..data_tmp` symlink to it renamed
    // over `..data`, the old directory removed. The file's own symlink never changes.
    let v2 = dir.join("..2024_05_01_10_05_00.000000002");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("targets.yaml"), rooms(&["new1", "new2"])).unwrap();
    std::os::unix::fs::symlink(v2.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();

    let s = wait_for(&mut w.targets, "the swapped content", |s| {
        rooms_of(s, &file) == Some(vec!["new1".into(), "new2".into()])
    })
    .await;
    // Only the file matched, not `..data` nor the timestamped directories.
    assert_eq!(
        s.files().map(|(p, _)| p.to_path_buf()).collect::<Vec<_>>(),
        [file]
    );
}

#[tokio::test]
async fn broken_file_keeps_its_targets_until_fixed() {
    let dir = scratch("broken");
    let file = dir.join("a.yaml");
    std::fs::write(&file, rooms(&["r1", "r2"])).unwrap();
    let mut w = start(vec![dir.join("*.yaml")], NO_REFRESH, true).await;
    assert!(
        file_entry(&w.targets.borrow(), &file)
            .unwrap()
            .last_load_successful
    );

    // An app ID with a space on line 2: an error placed at file:line:col.
    replace(
        &file,
        "- {kind: webcast, app_id: a, room_id: r1}\n- {kind: webcast, app_id: my app, room_id: r9}\n",
    );
    let s = wait_for(&mut w.targets, "the failed load", |s| {
        file_entry(s, &file).is_some_and(|e| !e.last_load_successful)
    })
    .await;
    let entry = file_entry(&s, &file).unwrap();
    assert_eq!(rooms_of(&s, &file), Some(vec!["r1".into(), "r2".into()]));
    let error = entry.last_error.as_deref().unwrap();
    let place = format!("{}:2:27: `targets[1].app_id` is `my app`", file.display());
    assert!(error.starts_with(&place), "{error}");

    replace(&file, &rooms(&["r5"]));
    let s = wait_for(&mut w.targets, "the fixed file", |s| {
        file_entry(s, &file).is_some_and(|e| e.last_load_successful)
    })
    .await;
    assert_eq!(rooms_of(&s, &file), Some(vec!["r5".into()]));
    assert_eq!(file_entry(&s, &file).unwrap().last_error, None);
}

#[tokio::test]
async fn a_file_broken_from_the_start_is_listed_with_no_targets() {
    let dir = scratch("broken-first");
    let file = dir.join("a.yaml");
    std::fs::write(&file, "- {kind: webcast, app_id: a\n").unwrap();
    let w = start(vec![dir.join("*.yaml")], NO_REFRESH, true).await;
    let s = w.targets.borrow();
    let entry = file_entry(&s, &file).unwrap();
    assert!(!entry.last_load_successful);
    assert!(entry.targets.is_empty());
    assert!(entry
        .last_error
        .as_deref()
        .unwrap()
        .contains("YAML syntax error"));
}

#[tokio::test]
async fn globs_match_several_files_and_one_target_in_two_files_is_one_target() {
    let dir = scratch("globs");
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.yaml"), rooms(&["shared", "ra"])).unwrap();
    std::fs::write(
        dir.join("b.json"),
        r#"[{"kind": "webcast", "app_id": "a", "room_id": "shared", "labels": {"team": "b"}}]"#,
    )
    .unwrap();
    std::fs::write(dir.join("c.txt"), rooms(&["no"])).unwrap();
    std::fs::write(dir.join(".hidden.yaml"), rooms(&["no"])).unwrap();
    std::fs::write(dir.join("sub/d.yaml"), rooms(&["no"])).unwrap();
    std::fs::write(dir.join("other.yml"), rooms(&["ro"])).unwrap();
    let patterns = vec![
        dir.join("*.yaml"),
        dir.join("*.json"),
        dir.join("other.yml"),
    ];
    let w = start(patterns, NO_REFRESH, true).await;
    let s = Arc::clone(&w.targets.borrow());
    let names: Vec<String> = s
        .files()
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.yaml", "b.json", "other.yml"]);
    assert_eq!(targets(&s).count(), 4);
    assert!(targets(&s).all(|(p, t)| rooms_of(&s, p).unwrap().contains(&t.key.room_id)));

    let sources = s
        .files()
        .map(|(p, e)| (Source::file(p), e.targets.as_slice()));
    let merged = MergedTargets::merge(sources);
    assert_eq!(merged_targets(&merged).len(), 3);
    let shared = merged_target(&merged, &key("shared")).unwrap();
    assert_eq!(
        shared.sources,
        [
            Source::file(dir.join("a.yaml")),
            Source::file(dir.join("b.json"))
        ]
    );
    // a.yaml ranks before b.json, so its (empty) labels win.
    assert!(shared.target.labels.is_empty());
}

#[tokio::test]
async fn refresh_rereads_files_when_no_event_is_seen() {
    let dir = scratch("refresh");
    let file = dir.join("a.yaml");
    std::fs::write(&file, rooms(&["r1"])).unwrap();
    // No watching: only the refresh can see changes.
    let mut w = start(vec![dir.join("*.yaml")], Duration::from_millis(100), false).await;
    assert_eq!(
        rooms_of(&w.targets.borrow(), &file),
        Some(vec!["r1".into()])
    );

    // Same size and the old modification time: the refresh re-reads whatever the times say.
    let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, rooms(&["r2"])).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    wait_for(&mut w.targets, "the refreshed file", |s| {
        rooms_of(s, &file) == Some(vec!["r2".into()])
    })
    .await;

    // A new file and a directory that did not exist when the watcher started.
    std::fs::write(dir.join("b.yaml"), rooms(&["r3"])).unwrap();
    wait_for(&mut w.targets, "the new file", |s| targets(s).count() == 2).await;
}

#[tokio::test]
async fn a_directory_made_after_start_is_picked_up() {
    let dir = scratch("late-dir");
    let sub = dir.join("later");
    let mut w = start(vec![sub.join("*.yaml")], Duration::from_millis(100), true).await;
    assert_eq!(w.targets.borrow().files().count(), 0);
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("a.yaml"), rooms(&["r1"])).unwrap();
    wait_for(&mut w.targets, "the file in the new directory", |s| {
        targets(s).count() == 1
    })
    .await;
    // Now watched: a rename is seen.
    replace(&sub.join("a.yaml"), &rooms(&["r1", "r2"]));
    wait_for(&mut w.targets, "the edit", |s| targets(s).count() == 2).await;
}

#[tokio::test]
async fn bad_patterns_are_refused_and_shutdown_ends_the_task() {
    let dir = scratch("patterns");
    let config = TargetFilesConfig::new(vec![dir.join("*/a.yaml")]);
    let err = files::watch(config, CancellationToken::new())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("only in the file name"), "{err}");

    let stop = CancellationToken::new();
    let config = TargetFilesConfig::new(vec![dir.join("*.yaml")]);
    let w = files::watch(config, stop.clone()).await.unwrap();
    stop.cancel();
    tokio::time::timeout(DEADLINE, w.task)
        .await
        .unwrap()
        .unwrap();
}

fn target(room: &str, labels: &[(&str, &str)]) -> Target {
    Target {
        key: key(room),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn merge_and_diff() {
    let file = Source::file("/t/a.yaml");
    let config = [
        target("c", &[("team", "config")]),
        target("both", &[("team", "config")]),
    ];
    let from_file = [target("both", &[("team", "file")]), target("f", &[])];
    let old = MergedTargets::merge([
        (Source::Config, &config[..]),
        (file.clone(), &from_file[..]),
    ]);
    assert_eq!(merged_targets(&old).len(), 3);
    let both = merged_target(&old, &key("both")).unwrap();
    assert_eq!(both.sources, [Source::Config, file.clone()]);
    assert_eq!(*both.target.labels, [("team".into(), "config".into())]);

    // Next: `c` leaves the config (the API still has it, with other labels), `both` leaves the
    // config (the file's labels now win), `f` stays as it was, `new` arrives by the API.
    let config2 = [target("f", &[])];
    let api = [target("c", &[("team", "api")]), target("new", &[])];
    let new = MergedTargets::merge([
        (Source::Api, &api[..]),
        (Source::Config, &config2[..]),
        (file.clone(), &from_file[..]),
    ]);
    let diff = old.diff(&new);
    assert_eq!(diff.added, [target("new", &[])]);
    assert!(diff.removed.is_empty());
    assert_eq!(
        diff.labels_changed,
        [
            target("both", &[("team", "file")]),
            target("c", &[("team", "api")])
        ]
    );
    assert_eq!(diff.sources_changed.len(), 1);
    assert_eq!(diff.sources_changed[0].target.key, key("f"));
    assert_eq!(
        diff.sources_changed[0].sources,
        [Source::Config, file.clone()]
    );
    assert_eq!(unchanged(&old, &diff), 0);
    assert!(!nothing(&diff));

    // Back: `new` is removed, nothing else; the same set twice is an empty diff.
    let back = MergedTargets::merge([
        (Source::Api, &api[..1]),
        (Source::Config, &config2[..]),
        (file, &from_file[..]),
    ]);
    let diff = new.diff(&back);
    assert_eq!(diff.removed, [key("new")]);
    assert!(diff.added.is_empty() && diff.labels_changed.is_empty());
    assert_eq!(unchanged(&new, &diff), 3);
    assert!(nothing(&back.diff(&back)));
}

/// A problem as (index, field, (line, column), message).
type Seen = (Option<usize>, Option<String>, Option<(u32, u32)>, String);

fn problems(err: BodyError) -> Vec<Seen> {
    match err {
        BodyError::Invalid { problems: p, .. } => p
            .into_iter()
            .map(|p| (p.index, p.field, p.pos.map(|p| (p.line, p.col)), p.message))
            .collect(),
        other => panic!("expected problems, got {other}"),
    }
}

#[test]
fn api_body_good() {
    // Tabs, escapes and numbers as JSON writes them.
    let body = "[\n\t{\"kind\": \"record\", \"app_id\": \"app\\u0031\", \"room_id\": \"r\\u002d1\", \"task_id\": 42,\n\t \"labels\": {\"team\": \"live \\\"a\\\" \\/\"}},\n\t{\"kind\":\"webcast\",\"app_id\":\"a\",\"room_id\":\"lobby\"}\n]";
    let targets = api::parse_register(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].key.app_id, "app1");
    assert_eq!(targets[0].key.room_id, "r-1");
    assert_eq!(targets[0].key.task_id.as_deref(), Some("42"));
    assert_eq!(*targets[0].labels, [("team".into(), "live \"a\" /".into())]);
    assert_eq!(targets[1].key, key("lobby"));
    assert_eq!(api::parse_register(b" [] ").unwrap(), []);
}

#[test]
fn api_body_lists_every_problem_with_index_field_and_fix() {
    let body = r#"[
  {"kind": "recrod", "app_id": "a", "room_id": "r", "task_id": "t"},
  {"kind": "record", "app_id": "my app", "room_id": "r", "taskid": "t"},
  {"kind": "webcast", "app_id": "a", "labels": {"job": "x"}},
  "webcast",
  {"app_id": "a", "room_id": "r"},
  {"kind": "webcast", "app_id": "a", "room_id": "r", "kind": "webcast"}
]"#;
    let got = problems(api::parse_register(body.as_bytes()).unwrap_err());
    let want: Vec<Seen> = vec![
        (Some(0), Some("kind".into()), Some((2, 12)), "`[0].kind` is `recrod`; did you mean `record`? use `record` (GetRecordTask) or `webcast` (GetWebCastTask)".into()),
        (Some(1), None, Some((3, 3)), "`[1]` is a record target without `task_id`; GetRecordTask needs one: add `\"task_id\": \"...\"` (only webcast targets may leave it out, meaning the room's newest task)".into()),
        (Some(1), Some("app_id".into()), Some((3, 32)), "`[1].app_id` is `my app`; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)".into()),
        (Some(1), Some("taskid".into()), Some((3, 58)), "unknown key `taskid` in `[1]`; did you mean `task_id`?".into()),
        (Some(2), None, Some((4, 3)), "`[2]` has no `room_id`; add `\"room_id\": \"...\"` (the RoomId the task records)".into()),
        (Some(2), Some("labels.job".into()), Some((4, 49)), "`[2].labels.job`: label name `job` collides with a label the exporter sets itself (kind, app_id, room_id, task_id, file, reason, action, outcome, phase, le, instance, job, version, revision); rename it, e.g. `job_name`".into()),
        (Some(3), None, Some((5, 3)), "`[3]` must be an object with keys (kind, app_id, room_id, task_id, labels), found a single value".into()),
        (Some(4), None, Some((6, 3)), "`[4]` has no `kind`; add `\"kind\": \"record\"` or `\"kind\": \"webcast\"`".into()),
        (Some(5), Some("kind".into()), Some((7, 54)), "duplicate key `kind` in `[5]` (first given at line 7); remove one of them".into()),
    ];
    assert_eq!(got, want);
}

#[test]
fn api_body_shape_syntax_and_size() {
    let one = |body: &[u8]| {
        let p = problems(api::parse_register(body).unwrap_err());
        assert_eq!(p.len(), 1, "{p:?}");
        p.into_iter().next().unwrap()
    };
    let (_, _, pos, msg) = one(br#"{"kind": "webcast", "app_id": "a", "room_id": "r"}"#);
    assert_eq!(pos, Some((1, 1)));
    assert!(msg.contains("must be a JSON array of targets"), "{msg}");
    let (_, _, pos, msg) = one(b"[\n {\"kind\": \"webcast\",}\n]");
    assert_eq!(pos, Some((2, 21)));
    assert_eq!(msg, "the body is not valid JSON: key must be a string");
    // YAML that is not JSON is refused.
    let (_, _, _, msg) = one(b"[{kind: webcast, app_id: a, room_id: r}]");
    assert!(msg.starts_with("the body is not valid JSON"), "{msg}");
    assert!(one(b"  \n").3.starts_with("the body is empty"));
    assert!(one(b"[\xff]").3.contains("not UTF-8"));

    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let err = api::parse_register(&big).unwrap_err();
    assert_eq!(err.status(), 413);
    assert!(matches!(err, BodyError::TooLarge { .. }));
}

#[test]
fn api_delete_takes_keys_and_ignores_labels() {
    let body = r#"[
  {"kind": "webcast", "app_id": "a", "room_id": "r1", "labels": {"job": 1, "__x": {}}},
  {"kind": "record", "app_id": "a", "room_id": "r", "task_id": "t"}
]"#;
    let keys = api::parse_deregister(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], key("r1"));
    assert_eq!(keys[1].task_id.as_deref(), Some("t"));

    let body = r#"[{"kind": "webcast", "app_id": "a", "room_id": "r"}, {"kind": "record", "app_id": "a", "room_id": "bad room", "task_id": "t"}]"#;
    let got = problems(api::parse_deregister(body.as_bytes()).unwrap_err());
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].0, got[0].1.as_deref(), got[0].2),
        (Some(1), Some("room_id"), None)
    );
    assert!(
        got[0].3.starts_with("`[1].room_id` is `bad room`"),
        "{got:?}"
    );
}

#[test]
fn api_error_answer_is_json_with_every_problem() {
    let err = api::parse_register(
        br#"[{"kind": "webcast", "room_id": "r"}, {"kind": "x", "app_id": "a", "room_id": "r"}]"#,
    )
    .unwrap_err();
    assert_eq!(err.status(), 400);
    let v: serde_json::Value = serde_json::from_str(&err.to_json()).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert_eq!(v["error"], "2 problem(s) in the request body");
    let p = v["problems"].as_array().unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0]["index"], 0);
    assert!(p[0].get("field").is_none());
    assert_eq!(
        (p[0]["line"].as_u64(), p[0]["column"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(p[1]["index"], 1);
    assert_eq!(p[1]["field"], "kind");
    assert!(p[1]["message"]
        .as_str()
        .unwrap()
        .starts_with("`[1].kind` is `x`"));
}
