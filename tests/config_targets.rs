//! Targets files seen from outside: a file holding only a list of targets (YAML or JSON), each
//! written as under `targets:` in the config, read by [`config::load_targets`] with the same
//! checks as the config and every problem at its `file:line:col`.

use std::path::PathBuf;

use volc_rtc_exporter::config;
use volc_rtc_exporter::model::{Kind, Target};

/// Writes `text` to a fresh file named `name` and loads it.
fn load(name: &str, text: &str) -> (PathBuf, Result<Vec<Target>, config::ConfigError>) {
    let dir = std::env::temp_dir().join(format!("volc-targets-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let loaded = config::load_targets(&path);
    (path, loaded)
}

fn problems(name: &str, text: &str) -> Vec<String> {
    let (path, loaded) = load(name, text);
    let err = loaded.expect_err("expected problems");
    let file = path.display().to_string();
    err.problems()
        .iter()
        .map(|p| {
            assert_eq!(p.file, file);
            let line = p.to_string();
            line.strip_prefix(&format!("{file}:"))
                .unwrap_or(&line)
                .to_owned()
        })
        .collect()
}

#[test]
fn good_yaml_file() {
    let text = "# two targets\n- kind: record\n  app_id: app1\n  room_id: r1\n  task_id: t1\n  labels: {zone: b, team: live}\n- {kind: webcast, app_id: app2, room_id: lobby}\n";
    let (_, loaded) = load("good.yaml", text);
    let targets = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(targets.len(), 2);
    let t = &targets[0];
    assert_eq!(t.key.kind, Kind::Record);
    assert_eq!(
        (
            t.key.app_id.as_str(),
            t.key.room_id.as_str(),
            t.key.task_id.as_deref()
        ),
        ("app1", "r1", Some("t1"))
    );
    assert_eq!(
        *t.labels,
        [("team".into(), "live".into()), ("zone".into(), "b".into())]
    );
    assert_eq!(targets[1].key.kind, Kind::Webcast);
    assert_eq!(targets[1].key.task_id, None);
}

#[test]
fn json_file() {
    let text = r#"[
  {"kind": "record", "app_id": "0123", "room_id": "r1", "task_id": 7},
  {"kind": "webcast", "app_id": "a", "room_id": "r2", "labels": {"team": "live"}}
]
"#;
    let (_, loaded) = load("targets.json", text);
    let targets = loaded.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[0].key.app_id, "0123");
    assert_eq!(targets[0].key.task_id.as_deref(), Some("7"));
    assert_eq!(*targets[1].labels, [("team".into(), "live".into())]);

    // A JSON file with a problem: placed in the JSON text.
    let text = "[\n  {\"kind\": \"record\", \"app_id\": \"my app\", \"room_id\": \"r1\", \"task_id\": \"t1\"}\n]\n";
    assert_eq!(
        problems("bad.json", text),
        ["2:32: `targets[0].app_id` is `my app`; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)"]
    );
}

#[test]
fn broken_file_reports_every_problem_at_once() {
    let text = "- kind: recrod\n  app_id: a1\n  room_id: r1\n  task_id: t1\n- kind: record\n  app_id: a1\n  room_id: r1\n  taskid: t1\n  labels: {job: x}\n- webcast\n- {kind: webcast, app_id: a1}\n";
    assert_eq!(
        problems("broken.yaml", text),
        [
            "1:9: `targets[0].kind` is `recrod`; did you mean `record`? use `record` (GetRecordTask) or `webcast` (GetWebCastTask)",
            "5:3: `targets[1]` is a record target without `task_id`; GetRecordTask needs one: add `task_id: ...` (only webcast targets may leave it out, meaning the room's newest task)",
            "8:3: unknown key `taskid` in `targets[1]`; did you mean `task_id`?",
            "9:12: `targets[1].labels.job`: label name `job` collides with a label the exporter sets itself (kind, app_id, room_id, task_id, file, reason, action, outcome, phase, le, instance, job, version, revision); rename it, e.g. `job_name`",
            "10:3: `targets[2]` must be a mapping with keys (kind, app_id, room_id, task_id, labels), found a single value",
            "11:3: `targets[3]` has no `room_id`; add `room_id: ...` (the RoomId the task records)",
        ]
    );
}

#[test]
fn duplicate_targets_name_the_first_line() {
    let text = "- {kind: record, app_id: a, room_id: r, task_id: t}\n- {kind: webcast, app_id: a, room_id: r, task_id: t}\n- kind: record\n  app_id: a\n  room_id: r\n  task_id: t\n";
    assert_eq!(
        problems("dup.yaml", text),
        ["3:3: duplicate target: `targets[2]` has the same kind, app_id, room_id and task_id as `targets[0]` at line 1; remove one of them"]
    );
}

#[test]
fn wrong_shapes_and_syntax_errors_have_places() {
    assert_eq!(
        problems(
            "map.yaml",
            "targets:\n  - {kind: webcast, app_id: a, room_id: r}\n"
        ),
        ["1:1: a targets file must be a list (each entry starting with `- `), found a mapping"]
    );
    let p = problems("syntax.yaml", "- {kind: webcast, app_id: a\n- x\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("YAML syntax error"), "{p:?}");
}

#[test]
fn empty_file_is_an_empty_list() {
    for text in ["", "# nothing yet\n", "[]\n"] {
        let (_, loaded) = load("empty.yaml", text);
        assert_eq!(loaded.map(|t| t.len()), Ok(0), "{text:?}");
    }
}

#[test]
fn unreadable_file_is_a_problem() {
    let path = std::env::temp_dir().join("volc-targets-test-missing/none.yaml");
    let err = config::load_targets(&path).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "none.yaml: cannot read the targets file: No such file or directory (os error 2)"
        ),
        "{err}"
    );
}
