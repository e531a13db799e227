//! The config checker seen from outside: each problem it detects, with its message and exact
//! line:column; several problems reported at once; a valid config read back field by field;
//! garbage that must not panic; secrets that must never leak.

use std::path::{Path, PathBuf};
use std::time::Duration;

use volc_rtc_exporter::config::{self, CredentialSource, Settings};
use volc_rtc_exporter::model::{Action, Kind};
use volc_rtc_exporter::sim::MapEnv;

const AK: &str = "AKLTexampleaccesskeyid1234";
const SK: &str = "U2VjcmV0S2V5VGhhdE11c3ROZXZlckxlYWs=";
const TOKEN: &str = "STSTokenThatMustNeverLeak0123456789";

/// An environment with credentials, so only the config itself is judged.
fn env() -> MapEnv {
    MapEnv::new()
        .with_var("VOLC_ACCESSKEY", AK)
        .with_var("VOLC_SECRETKEY", SK)
}

const TARGET: &str = "targets:\n  - {kind: record, app_id: a1, room_id: r1, task_id: t1}\n";
/// The same target in block style, so keys can be added below it (from line 6 on).
const TARGET_BLOCK: &str =
    "targets:\n  - kind: record\n    app_id: a1\n    room_id: r1\n    task_id: t1\n";

fn parse(text: &str) -> Result<Settings, config::ConfigError> {
    config::parse(text, "c.yaml", &env())
}

fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(s) => panic!(
            "expected problems, got settings with warnings {:?}",
            s.warnings
        ),
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
    }
}

/// Exactly one problem, returned as `FILE:LINE:COL: message`.
fn one(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "expected one problem, got {p:#?}");
    p[0].clone()
}

fn warnings(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(s) => s.warnings,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("volc-config-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

// ---- one test per problem ----

#[test]
fn unknown_key_suggests_the_closest() {
    let text = format!("api:\n  timeot: 5s\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:3: unknown key `timeot` in `api`; did you mean `timeout`?"
    );
}

#[test]
fn unknown_key_without_a_near_match_lists_valid_keys() {
    let text = format!("{TARGET_BLOCK}    colour: blue\n");
    assert_eq!(
        one(&text),
        "c.yaml:6:5: unknown key `colour` in `targets[0]`; valid keys are: kind, app_id, room_id, task_id, labels"
    );
}

#[test]
fn misplaced_top_level_key_names_its_section() {
    let text = format!("timeout: 5s\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:1:1: unknown top-level key `timeout`; it belongs under `api:` (indent it there)"
    );
}

#[test]
fn budget_key_case_typo() {
    let text = format!("budget:\n  getRecordTask: 10\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:3: unknown key `getRecordTask` in `budget`; did you mean `GetRecordTask`?"
    );
}

#[test]
fn duplicate_target_names_the_first_line() {
    let text = "targets:\n  - kind: record\n    app_id: a1\n    room_id: r1\n    task_id: t1\n  - {kind: webcast, app_id: a1, room_id: r1}\n  - kind: record\n    app_id: a1\n    room_id: r1\n    task_id: t1\n";
    assert_eq!(
        one(text),
        "c.yaml:7:5: duplicate target: `targets[2]` has the same kind, app_id, room_id and task_id as `targets[0]` at line 2; remove one of them"
    );
}

#[test]
fn same_ids_different_kind_is_not_a_duplicate() {
    let text = "targets:\n  - {kind: record, app_id: a, room_id: r, task_id: t}\n  - {kind: webcast, app_id: a, room_id: r, task_id: t}\n";
    let s = parse(text).unwrap();
    assert_eq!(s.targets.len(), 2);
}

#[test]
fn invalid_app_id() {
    let text = "targets:\n  - kind: record\n    app_id: my app\n    room_id: r1\n    task_id: t1\n";
    assert_eq!(
        one(text),
        "c.yaml:3:13: `targets[0].app_id` is `my app`; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)"
    );
}

#[test]
fn invalid_room_id_too_long() {
    let long = "r".repeat(129);
    let text = format!("targets:\n  - kind: webcast\n    app_id: a1\n    room_id: {long}\n");
    assert_eq!(
        one(&text),
        "c.yaml:4:14: `targets[0].room_id` is 129 characters long; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)"
    );
}

#[test]
fn invalid_task_id_empty() {
    let text = "targets:\n  - {kind: record, app_id: a1, room_id: r1, task_id: \"\"}\n";
    assert_eq!(
        one(text),
        "c.yaml:2:54: `targets[0].task_id` is empty; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)"
    );
}

#[test]
fn numeric_ids_are_taken_as_written() {
    let text = "targets:\n  - {kind: record, app_id: 0123, room_id: 1e3, task_id: 7}\n";
    let s = parse(text).unwrap();
    let key = &s.targets[0].key;
    assert_eq!(
        (
            key.app_id.as_str(),
            key.room_id.as_str(),
            key.task_id.as_deref()
        ),
        ("0123", "1e3", Some("7"))
    );
}

#[test]
fn record_target_without_task_id() {
    let text = "targets:\n  - kind: record\n    app_id: a1\n    room_id: r1\n";
    assert_eq!(
        one(text),
        "c.yaml:2:5: `targets[0]` is a record target without `task_id`; GetRecordTask needs one: add `task_id: ...` (only webcast targets may leave it out, meaning the room's newest task)"
    );
}

#[test]
fn webcast_target_without_task_id_is_fine() {
    let s = parse("targets:\n  - {kind: webcast, app_id: a1, room_id: r1}\n").unwrap();
    assert_eq!(s.targets[0].key.kind, Kind::Webcast);
    assert_eq!(s.targets[0].key.task_id, None);
}

#[test]
fn unknown_kind() {
    let text = "targets:\n  - kind: recrod\n    app_id: a1\n    room_id: r1\n    task_id: t1\n";
    assert_eq!(
        one(text),
        "c.yaml:2:11: `targets[0].kind` is `recrod`; did you mean `record`? use `record` (GetRecordTask) or `webcast` (GetWebCastTask)"
    );
}

#[test]
fn missing_kind_app_and_room() {
    let p = problems("targets:\n  - task_id: t1\n");
    assert_eq!(
        p,
        [
            "c.yaml:2:5: `targets[0]` has no `kind`; add `kind: record` or `kind: webcast`",
            "c.yaml:2:5: `targets[0]` has no `app_id`; add `app_id: ...` (the RTC AppId)",
            "c.yaml:2:5: `targets[0]` has no `room_id`; add `room_id: ...` (the RoomId the task records)",
        ]
    );
}

#[test]
fn zero_budget() {
    let text = format!("budget:\n  GetRecordTask: 0\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:18: `budget.GetRecordTask` is `0`; it is requests per second for GetRecordTask, above 0 (default 50; the vendor allows 60)"
    );
}

#[test]
fn negative_budget() {
    let text = format!("budget:\n  GetWebCastTask: -5\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:19: `budget.GetWebCastTask` is `-5`; it is requests per second for GetWebCastTask, above 0 (default 50; the vendor allows 60)"
    );
}

#[test]
fn budget_not_a_number() {
    let text = format!("budget:\n  GetWebCastTask: fast\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:19: `budget.GetWebCastTask` is `fast`, not a number; it is requests per second for GetWebCastTask, above 0 (default 50; the vendor allows 60)"
    );
}

#[test]
fn budget_above_sixty_is_a_warning() {
    let text = format!("budget:\n  GetRecordTask: 100\n  GetWebCastTask: 0.5\n{TARGET}");
    let s = parse(&text).unwrap();
    assert_eq!(s.budget_for(Action::GetRecordTask), 100.0);
    assert_eq!(s.budget_for(Action::GetWebCastTask), 0.5);
    assert_eq!(
        s.warnings,
        ["c.yaml:2:18: `budget.GetRecordTask` is 100/s, above the vendor's default quota of 60/s; fine if your account's quota was raised, else expect throttling"]
    );
}

#[test]
fn zero_duration() {
    let text = format!("schedule:\n  active_interval: 0s\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:20: `schedule.active_interval` is `0s`; it must be longer than zero (default 15s)"
    );
}

#[test]
fn negative_duration() {
    let text = format!("api:\n  timeout: -5s\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:12: `api.timeout`: `-5s` is not a duration; write it like 500ms, 15s, 5m, 1h30m or 1d (units y, w, d, h, m, s, ms, largest first, each once); it must be positive"
    );
}

#[test]
fn unparsable_duration() {
    let text = format!("schedule:\n  retention: 1.5h\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:14: `schedule.retention`: `1.5h` is not a duration; write it like 500ms, 15s, 5m, 1h30m or 1d (units y, w, d, h, m, s, ms, largest first, each once)"
    );
    let text = format!("schedule:\n  settle_interval: 30\n{TARGET}");
    assert!(
        one(&text).starts_with("c.yaml:2:20: `schedule.settle_interval`: `30` is not a duration")
    );
}

#[test]
fn invalid_label_name() {
    let text = format!("{TARGET_BLOCK}    labels: {{team-name: live}}\n");
    assert_eq!(
        one(&text),
        "c.yaml:6:14: `targets[0].labels.team-name`: label name `team-name` is not a valid Prometheus label name; use letters, digits and `_`, not starting with a digit"
    );
}

#[test]
fn double_underscore_label_name() {
    let text = format!("{TARGET_BLOCK}    labels:\n      __meta: x\n");
    assert_eq!(
        one(&text),
        "c.yaml:7:7: `targets[0].labels.__meta`: label name `__meta` starts with `__`, which Prometheus reserves; rename it"
    );
}

#[test]
fn label_colliding_with_a_builtin() {
    let text = format!("{TARGET_BLOCK}    labels:\n      team: a\n      job: x\n");
    assert_eq!(
        one(&text),
        "c.yaml:8:7: `targets[0].labels.job`: label name `job` collides with a label the exporter sets itself (kind, app_id, room_id, task_id, file, reason, action, outcome, phase, le, instance, job, version, revision); rename it, e.g. `job_name`"
    );
}

#[test]
fn endpoint_without_scheme() {
    let text = format!("api:\n  endpoint: rtc.volcengineapi.com\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:13: `api.endpoint` `rtc.volcengineapi.com` has no scheme; write it as scheme://host[:port], e.g. `https://rtc.volcengineapi.com` or `https://open.byteplusapi.com`"
    );
}

#[test]
fn endpoint_with_path_or_bad_scheme() {
    let text = format!("api:\n  endpoint: https://rtc.volcengineapi.com/v1\n{TARGET}");
    assert!(one(&text).starts_with(
        "c.yaml:2:13: `api.endpoint` `https://rtc.volcengineapi.com/v1` has a path, query or fragment; the API is served at the root;"
    ));
    let text = format!("api:\n  endpoint: ftp://example.com\n{TARGET}");
    assert!(one(&text).starts_with(
        "c.yaml:2:13: `api.endpoint` `ftp://example.com` has scheme `ftp`: only http and https work;"
    ));
    let text = format!("api:\n  endpoint: https://user:pw@example.com\n{TARGET}");
    assert!(one(&text).contains("contains a user name or password"));
    let text = format!("api:\n  endpoint: http://127.0.0.1:99999\n{TARGET}");
    assert!(one(&text).contains("is not a valid URL"));
}

#[test]
fn endpoint_forms_accepted() {
    let text = format!("api:\n  endpoint: http://127.0.0.1:8080/\n{TARGET}");
    let s = parse(&text).unwrap();
    assert_eq!(s.api.endpoint.scheme, "http");
    assert_eq!(s.api.endpoint.host, "127.0.0.1");
    assert_eq!(s.api.endpoint.port, Some(8080));
    assert_eq!(s.api.endpoint.base_url(), "http://127.0.0.1:8080");
    let text = format!("api:\n  endpoint: https://open.byteplusapi.com:443\n{TARGET}");
    let s = parse(&text).unwrap();
    assert_eq!(s.api.endpoint.host_header(), "open.byteplusapi.com");
}

#[test]
fn max_in_flight_zero() {
    let text = format!("api:\n  max_in_flight: 0\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:18: `api.max_in_flight` is 0, so no request could ever be sent; set it to at least 1 (default 16)"
    );
    let text = format!("api:\n  max_in_flight: -3\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:18: `api.max_in_flight` is `-3`; it must be a whole number of at least 1 (default 16)"
    );
}

#[test]
fn absurdly_large_values_are_refused() {
    let text = format!("api:\n  max_in_flight: 1000000\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:18: `api.max_in_flight` is 1000000; at most 10000 is accepted (the budget, not concurrency, bounds the rate; default 16)"
    );
    let text = format!("budget:\n  GetRecordTask: 1e9\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:18: `budget.GetRecordTask` is 1000000000/s; at most 10000/s is accepted"
    );
    let text = format!("schedule:\n  retention: 2y\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:14: `schedule.retention` is `2y`, longer than the 1y this exporter accepts (default 1d)"
    );
    let text = format!("schedule:\n  retention: 1y\n{TARGET}");
    assert_eq!(
        parse(&text).unwrap().schedule.retention.as_secs(),
        365 * 86_400
    );
}

#[test]
fn shadowed_inline_credentials_are_a_warning() {
    let dir = temp_dir("shadowed");
    std::fs::write(dir.join("ak"), AK).unwrap();
    std::fs::write(dir.join("sk"), SK).unwrap();
    std::fs::write(dir.join("tok"), TOKEN).unwrap();
    std::fs::write(
        dir.join("c.yaml"),
        format!("credentials:\n  access_key_id_file: ak\n  secret_access_key_file: sk\n  session_token_file: tok\n  secret_access_key: other\n  session_token: other\n{TARGET}"),
    )
    .unwrap();
    let s = config::load(&dir.join("c.yaml"), &MapEnv::new()).unwrap();
    assert_eq!(s.credentials.secret_access_key.expose(), SK);
    assert_eq!(
        s.credentials.session_token.as_ref().map(|t| t.expose()),
        Some(TOKEN)
    );
    let file = dir.join("c.yaml").display().to_string();
    assert_eq!(
        s.warnings,
        [
            format!("{file}:5:22: `credentials.secret_access_key` is ignored: the `*_file` keys come first in the chain; remove one of the two"),
            format!("{file}:6:18: `credentials.session_token` is ignored: `session_token_file` comes first; remove one of the two"),
        ]
    );
}

#[test]
fn empty_targets_is_a_warning() {
    assert_eq!(
        warnings("targets: []\n"),
        ["c.yaml:1:10: `targets` is empty, so nothing will be polled; add targets to follow tasks, \
          or `target_files:` or `callbacks:` to find them"]
    );
    assert_eq!(warnings("targets:\n").len(), 1);
}

#[test]
fn missing_targets_is_a_problem() {
    assert_eq!(
        one("api:\n  region: cn-north-1\n"),
        "c.yaml: there is no `targets:` list; add one with the tasks to follow, or `target_files:` or \
         `callbacks:` to find them (see examples/config.yaml)"
    );
}

#[test]
fn unknown_record_version_is_a_warning() {
    let text = format!("api:\n  record_version: \"2024-01-01\"\n{TARGET}");
    assert_eq!(
        warnings(&text),
        ["c.yaml:2:19: `api.record_version` is `2024-01-01`, which this exporter has not been tested with; GetRecordTask is known to answer 2022-06-01 and 2023-06-01"]
    );
    let text = format!("api:\n  record_version: 2023-06-01\n{TARGET}");
    let s = parse(&text).unwrap();
    assert_eq!(s.api.record_version, "2023-06-01");
    assert!(s.warnings.is_empty());
}

#[test]
fn malformed_version_is_a_problem() {
    let text = format!("api:\n  webcast_version: latest\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:20: `api.webcast_version` is `latest`; a Version is a date like `2020-12-01` (quote it)"
    );
}

#[test]
fn no_credentials_found() {
    let home = temp_dir("nocreds");
    let env = MapEnv::new().with_home(&home);
    let err = config::parse(TARGET, "c.yaml", &env).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "c.yaml: no credentials found; searched: config keys credentials.access_key_id_file/secret_access_key_file (not set); config keys credentials.access_key_id/secret_access_key (not set); environment variables VOLC_ACCESSKEY/VOLC_SECRETKEY (not set); {}/.volc/credentials (not found). Fix: set `credentials.access_key_id_file` and `credentials.secret_access_key_file` in the config, or export VOLC_ACCESSKEY and VOLC_SECRETKEY, or write `access_key_id` and `secret_access_key` under `[default]` in ~/.volc/credentials",
            home.display()
        )
    );
}

#[test]
fn half_configured_credentials_point_at_the_key() {
    let text = format!("credentials:\n  access_key_id: {AK}\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:2:3: `credentials.access_key_id` is set but `credentials.secret_access_key` is not; set both, or remove `access_key_id`"
    );
}

#[test]
fn unreadable_credential_file_names_file_and_os_error() {
    let dir = temp_dir("unreadable");
    std::fs::write(dir.join("sk"), SK).unwrap();
    let cfg = dir.join("c.yaml");
    std::fs::write(
        &cfg,
        format!("credentials:\n  access_key_id_file: ak\n  secret_access_key_file: sk\n{TARGET}"),
    )
    .unwrap();
    let err = config::load(&cfg, &MapEnv::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:3: cannot read the file {} named by `credentials.access_key_id_file`: No such file or directory (os error 2)",
            cfg.display(),
            dir.join("ak").display()
        )
    );
    // Relative paths are relative to the config file's directory.
    std::fs::write(dir.join("ak"), format!("{AK}\n")).unwrap();
    let s = config::load(&cfg, &MapEnv::new()).unwrap();
    assert_eq!(s.credential_source, CredentialSource::Files);
    assert_eq!(s.credentials.access_key_id, AK);
    assert_eq!(s.credentials.secret_access_key.expose(), SK);
}

#[test]
fn yaml_syntax_error_has_its_position() {
    let p = problems("api:\n  timeout: 5s\n targets: [\n");
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("c.yaml:3:"), "{p:?}");
    assert!(p[0].contains("YAML syntax error"), "{p:?}");
}

#[test]
fn duplicate_key_names_the_first() {
    let text = format!("api:\n  timeout: 5s\n  timeout: 6s\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:3:3: duplicate key `timeout` in `api` (first given at line 2); remove one of them"
    );
}

#[test]
fn wrongly_shaped_values() {
    let p = problems("api: [1, 2]\nbudget: 5\ntargets:\n  - record\n  - {kind: webcast, app_id: [a], room_id: r}\n");
    assert_eq!(
        p,
        [
            "c.yaml:1:6: `api` must be a mapping of keys (endpoint, region, timeout, max_in_flight, record_version, webcast_version), found a list",
            "c.yaml:2:9: `budget` must be a mapping of keys (GetRecordTask, GetWebCastTask), found a single value",
            "c.yaml:4:5: `targets[0]` must be a mapping with keys (kind, app_id, room_id, task_id, labels), found a single value",
            "c.yaml:5:29: `targets[1].app_id` must be a single value, found a list",
        ]
    );
    let p = problems("targets: {a: b}\n");
    assert_eq!(
        p,
        ["c.yaml:1:10: `targets` must be a list (each entry starting with `- `), found a mapping"]
    );
    assert_eq!(
        one("- a\n- b\n"),
        "c.yaml:1:1: the config must be a mapping with keys such as `api:` and `targets:`, found a list"
    );
    assert_eq!(
        one(""),
        "c.yaml: the config is empty; it needs at least a `targets:` list (see examples/config.yaml)"
    );
}

#[test]
fn label_without_value() {
    let text = format!("{TARGET_BLOCK}    labels:\n      team:\n");
    assert_eq!(
        one(&text),
        "c.yaml:7:7: `targets[0].labels.team` has no value; give it one (quote it if it looks like a number or `null`) or remove it"
    );
}

#[test]
fn anchors_and_aliases_work() {
    let text = "targets:\n  - {kind: webcast, app_id: a, room_id: r1, labels: &l {team: live}}\n  - {kind: webcast, app_id: a, room_id: r2, labels: *l}\n";
    let s = parse(text).unwrap();
    assert_eq!(
        *s.targets[1].labels,
        [("team".to_owned(), "live".to_owned())]
    );
}

#[test]
fn control_characters_in_keys_stay_on_one_line() {
    let text = format!("\"col\\nour\": 1\n{TARGET}");
    assert_eq!(
        one(&text),
        "c.yaml:1:1: unknown top-level key `col\\nour`; valid keys are: api, credentials, budget, schedule, targets"
    );
}

// ---- all at once ----

#[test]
fn broken_file_reports_every_problem_at_once() {
    let err = config::load(&fixture("broken.yaml"), &MapEnv::new()).unwrap_err();
    let file = fixture("broken.yaml").display().to_string();
    let got: Vec<String> = err
        .problems()
        .iter()
        .map(|p| {
            let pos = p
                .pos
                .map(|p| format!("{}:{}", p.line, p.col))
                .unwrap_or_default();
            assert_eq!(p.file, file);
            format!("{pos} {}", p.message.split(';').next().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        got,
        [
            "3:3 unknown key `regoin` in `api`",
            "4:12 `api.timeout` is `0s`",
            "5:18 `api.max_in_flight` is 0, so no request could ever be sent",
            "7:3 `credentials.access_key_id` is set but `credentials.secret_access_key` is not",
            "9:18 `budget.GetRecordTask` is `-1`",
            "11:20 `schedule.active_interval`: `soon` is not a duration",
            "12:3 unknown key `retension` in `schedule`",
            "15:11 `targets[0].kind` is `recording`",
            "16:13 `targets[0].app_id` is `app id`",
            "19:5 `targets[1]` is a record target without `task_id`",
            "22:14 `targets[1].labels.instance`: label name `instance` collides with a label the exporter sets itself (kind, app_id, room_id, task_id, file, reason, action, outcome, phase, le, instance, job, version, revision)",
            "23:5 unknown key `taskid` in `targets[1]`",
            "25:5 duplicate target: `targets[3]` has the same kind, app_id, room_id and task_id as `targets[2]` at line 24",
        ]
    );
    // Display: one problem per line, FILE:LINE:COL: message.
    let text = err.to_string();
    assert_eq!(text.lines().count(), got.len());
    assert!(text.lines().all(|l| l.starts_with(&format!("{file}:"))));
}

// ---- a valid config, every field ----

#[test]
fn valid_config_round_trip() {
    let dir = temp_dir("valid");
    std::fs::write(dir.join("token"), format!("  {TOKEN}\n")).unwrap();
    let text = format!(
        "api:
  endpoint: https://open.byteplusapi.com
  region: ap-singapore-1
  timeout: 2s500ms
  max_in_flight: 4
  record_version: \"2023-06-01\"
  webcast_version: \"2020-12-01\"
credentials:
  access_key_id: {AK}
  secret_access_key: {SK}
  session_token_file: token
budget:
  GetRecordTask: 20
  GetWebCastTask: 7.5
schedule:
  active_interval: 30s
  settle_interval: 5m
  retention: 1d12h
targets:
  - kind: record
    app_id: app1
    room_id: room@1
    task_id: task.1
    labels: {{zone: b, team: live}}
  - kind: webcast
    app_id: app2
    room_id: lobby
"
    );
    std::fs::write(dir.join("config.yaml"), &text).unwrap();
    let s = config::load(&dir.join("config.yaml"), &MapEnv::new()).unwrap();
    assert_eq!(s.api.endpoint.base_url(), "https://open.byteplusapi.com");
    assert_eq!(s.api.region, "ap-singapore-1");
    assert_eq!(s.api.service, "rtc");
    assert_eq!(s.api.timeout, Duration::from_millis(2500));
    assert_eq!(s.api.max_in_flight, 4);
    assert_eq!(s.api.version_for(Action::GetRecordTask), "2023-06-01");
    assert_eq!(s.api.version_for(Action::GetWebCastTask), "2020-12-01");
    assert_eq!(s.credential_source, CredentialSource::Inline);
    assert_eq!(s.credentials.access_key_id, AK);
    assert_eq!(s.credentials.secret_access_key.expose(), SK);
    assert_eq!(
        s.credentials.session_token.as_ref().map(|t| t.expose()),
        Some(TOKEN)
    );
    assert_eq!(s.budget, [20.0, 7.5]);
    assert_eq!(s.schedule.active_interval, Duration::from_secs(30));
    assert_eq!(s.schedule.settle_interval, Duration::from_secs(300));
    assert_eq!(s.schedule.retention, Duration::from_secs(36 * 3600));
    assert_eq!(s.targets.len(), 2);
    let t = &s.targets[0];
    assert_eq!(t.key.kind, Kind::Record);
    assert_eq!(
        (
            t.key.app_id.as_str(),
            t.key.room_id.as_str(),
            t.key.task_id.as_deref()
        ),
        ("app1", "room@1", Some("task.1"))
    );
    assert_eq!(
        *t.labels,
        [
            ("team".to_owned(), "live".to_owned()),
            ("zone".to_owned(), "b".to_owned())
        ]
    );
    let t = &s.targets[1];
    assert_eq!(t.key.kind, Kind::Webcast);
    assert_eq!(t.key.task_id, None);
    assert!(t.labels.is_empty());
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn defaults_when_only_targets_given() {
    let s = parse(TARGET).unwrap();
    let api = config::ApiSettings::default();
    assert_eq!(s.api.endpoint, api.endpoint);
    assert_eq!(s.api.endpoint.base_url(), "https://rtc.volcengineapi.com");
    assert_eq!(s.api.region, "cn-north-1");
    assert_eq!(s.api.service, "rtc");
    assert_eq!(s.api.timeout, Duration::from_secs(5));
    assert_eq!(s.api.max_in_flight, 16);
    assert_eq!(s.api.record_version, "2022-06-01");
    assert_eq!(s.api.webcast_version, "2020-12-01");
    assert_eq!(s.budget, [config::default_budget(); 2]);
    assert_eq!(config::default_budget(), 50.0);
    assert_eq!(s.schedule.active_interval, Duration::from_secs(15));
    assert_eq!(s.schedule.settle_interval, Duration::from_secs(60));
    assert_eq!(s.schedule.retention, Duration::from_secs(86_400));
    assert_eq!(s.credential_source, CredentialSource::Environment);
    assert!(s.warnings.is_empty());
}

#[test]
fn example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml");
    let s = config::load(&path, &env()).unwrap_or_else(|e| panic!("{e}"));
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.targets.len(), 4);
    assert!(s
        .targets
        .iter()
        .any(|t| t.key.kind == Kind::Webcast && t.key.task_id.is_none()));
    assert!(s.targets.iter().any(|t| !t.labels.is_empty()));
    let d = config::ApiSettings::default();
    assert_eq!(s.api.endpoint, d.endpoint);
    assert_eq!(s.api.timeout, d.timeout);
    assert_eq!(s.api.max_in_flight, d.max_in_flight);
}

#[test]
fn summary_shows_counts_and_masked_key() {
    let text = "targets:
  - {kind: record, app_id: appA, room_id: r1, task_id: t1}
  - {kind: record, app_id: appA, room_id: r1, task_id: t2}
  - {kind: webcast, app_id: appB, room_id: r1}
budget: {GetRecordTask: 70}
";
    let s = parse(text).unwrap();
    let summary = s.summary();
    for want in [
        "targets:     3 (record 2, webcast 1)",
        "  app appA: record 2, webcast 0",
        "  app appB: record 0, webcast 1",
        "budget:      GetRecordTask 70/s, GetWebCastTask 50/s",
        "schedule:    active tasks every 15s, settling tasks every 1m, retention 1d",
        "api:         https://rtc.volcengineapi.com (region cn-north-1, service rtc), timeout 5s, at most 16 requests in flight",
        "versions:    GetRecordTask 2022-06-01, GetWebCastTask 2020-12-01",
        "credentials: access key AKLT****1234 from environment variables VOLC_ACCESSKEY/VOLC_SECRETKEY",
        "warnings:    1",
        "  c.yaml:5:25: `budget.GetRecordTask` is 70/s",
    ] {
        assert!(summary.contains(want), "missing {want:?} in:\n{summary}");
    }
}

// ---- secrets ----

#[test]
fn secrets_never_appear_in_summary_errors_or_debug() {
    let env = MapEnv::new()
        .with_var("VOLC_ACCESSKEY", AK)
        .with_var("VOLC_SECRETKEY", SK)
        .with_var("VOLC_SESSIONTOKEN", TOKEN);
    let s = config::parse(TARGET, "c.yaml", &env).unwrap();
    assert_eq!(
        s.credentials.session_token.as_ref().map(|t| t.expose()),
        Some(TOKEN)
    );
    for shown in [s.summary(), format!("{s:?}"), format!("{env:?}")] {
        assert!(!shown.contains(SK), "secret in {shown}");
        assert!(!shown.contains(TOKEN), "token in {shown}");
    }
    assert!(s.summary().contains("with a session token"));

    // Inline secrets in a file full of problems, some of them next to the secrets.
    let text = format!(
        "credentials:\n  secret_access_key: {SK}\n  session_token: {TOKEN}\n  secret_acess_key: {SK}\napi: {{timeout: {SK}}}\n{TARGET}"
    );
    let err = config::parse(&text, "c.yaml", &MapEnv::new()).unwrap_err();
    assert!(err.problems().len() >= 3, "{err}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(TOKEN), "{shown}");
        // The only echo of a value is the bad timeout, which is not a credential key.
        for line in shown.lines().filter(|l| !l.contains("`api.timeout`")) {
            assert!(!line.contains(SK), "{line}");
        }
    }
    assert!(err
        .to_string()
        .contains("unknown key `secret_acess_key` in `credentials`"));
    // A secret with a space is malformed; the message does not echo it.
    let text =
        format!("credentials:\n  access_key_id: {AK}\n  secret_access_key: \"a {SK}\"\n{TARGET}");
    let err = config::parse(&text, "c.yaml", &MapEnv::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.yaml:3:3: `credentials.secret_access_key` contains spaces or control characters; it must be a single token"
    );
}

// ---- garbage ----

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let alphabet: Vec<char> = "ab:- \n\t[]{}&*!|>'\"#,?%@`0123456789.~\\\u{0}\u{feff}é"
        .chars()
        .collect();
    let env = env();
    for _ in 0..3000 {
        let len = (rng.next() % 200) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        if let Err(e) = config::parse(&text, "fuzz.yaml", &env) {
            assert!(!e.problems().is_empty());
            assert_eq!(e.to_string().lines().count(), e.problems().len(), "{e}");
        }
    }
    // Random bytes: as text (lossy) through `parse`, raw through `load`.
    let dir = temp_dir("bytes");
    for i in 0..300 {
        let len = (rng.next() % 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = config::parse(&String::from_utf8_lossy(&bytes), "bytes.yaml", &env);
        if i % 10 == 0 {
            let path = dir.join("bytes.yaml");
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = config::load(&path, &env) {
                assert_eq!(e.to_string().lines().count(), e.problems().len(), "{e}");
            }
        }
    }
    // Mutations of a valid file: every byte position replaced with a structural character.
    let valid =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config.yaml"))
            .unwrap();
    let chars: Vec<char> = valid.chars().collect();
    for i in (0..chars.len()).step_by(11) {
        for c in [':', '-', '[', '\n'] {
            let mut m = chars.clone();
            m[i] = c;
            let m: String = m.into_iter().collect();
            if let Err(e) = config::parse(&m, "mut.yaml", &env) {
                assert_eq!(e.to_string().lines().count(), e.problems().len(), "{e}");
            }
        }
    }
}

#[test]
fn hostile_inputs_give_problems_not_panics() {
    let cases = [
        "[".repeat(100_000),
        "{".repeat(100_000),
        "- ".repeat(10_000),
        format!("budget:\n  GetRecordTask: 1{}\n{TARGET}", "0".repeat(400)),
        format!("budget:\n  GetRecordTask: 1e400\n{TARGET}"),
        format!("budget:\n  GetRecordTask: .nan\n{TARGET}"),
        format!("api:\n  max_in_flight: 99999999999999999999999999\n{TARGET}"),
        format!("api:\n  timeout: 99999999999999999999999y\n{TARGET}"),
        format!("api:\n  timeout: 9999999999999y\n{TARGET}"),
        format!("api: !!binary aGVsbG8=\n{TARGET}"),
        "targets: &a [*a]\n".to_owned(),
        "? [a, b]\n: c\ntargets: []\n".to_owned(),
        "targets:\n  - {kind: record, app_id: a, room_id: r, task_id: t, labels: [x]}\n".to_owned(),
        "targets:\n  - {kind: record, app_id: a, room_id: r, task_id: t, labels: {a: {b: c}}}\n"
            .to_owned(),
        "targets:\n  - {kind: [record], app_id: {a: 1}, room_id: null, task_id: ~}\n".to_owned(),
        "targets: 5\napi: true\nschedule: [1]\ncredentials: \"x\"\n".to_owned(),
        "\u{feff}targets: []\n".to_owned(),
        "%YAML 1.2\n---\ntargets: []\n...\n".to_owned(),
        "targets: []\n---\ntargets: []\n".to_owned(),
        "a: 1\n\tb: 2\n".to_owned(),
    ];
    for case in &cases {
        let r = parse(case);
        if let Err(e) = &r {
            assert!(!e.problems().is_empty());
            for p in e.problems() {
                assert!(!p.message.is_empty());
            }
        }
    }
    // The overflowing numbers are problems with positions.
    for case in &cases[3..9] {
        let e = parse(case)
            .err()
            .unwrap_or_else(|| panic!("{case:?} passed"));
        assert_eq!(e.problems().len(), 1, "{e}");
        assert_eq!(e.problems()[0].pos.map(|p| p.line), Some(2), "{e}");
    }
}

#[test]
fn non_utf8_file_is_a_problem_with_position() {
    let dir = temp_dir("nonutf8");
    let path = dir.join("c.yaml");
    let mut bytes = b"targets:\n  - kind: rec".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"ord\n");
    std::fs::write(&path, &bytes).unwrap();
    let err = config::load(&path, &env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:14: the file is not valid UTF-8 text; save it as UTF-8",
            path.display()
        )
    );
    let err = config::load(&dir.join("missing.yaml"), &env()).unwrap_err();
    assert!(err.to_string().ends_with(
        "missing.yaml: cannot read the config file: No such file or directory (os error 2)"
    ));
}
