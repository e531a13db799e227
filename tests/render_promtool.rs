//! The whole `/metrics` body — per-target families for varied targets (hostile label values
//! included) plus the self-metrics — checked by `promtool check metrics`, which parses it and
//! lints it, in text format 0.0.4 and in OpenMetrics 1.0; the OpenMetrics body is also parsed
//! by the Python `prometheus_client` OpenMetrics parser. promtool and `prometheus_client` must
//! be installed (`scripts/install-test-deps`); a missing tool fails.

mod tools;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use volc_rtc_exporter::exposition::Format;
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::metrics::{page, render};
use volc_rtc_exporter::model::{
    status, Kind, Outcome, RecordFile, Target, TargetKey, TaskSnapshot,
};
use volc_rtc_exporter::targets::table::Store;

const T0: u64 = 1_700_000_000_123;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn target(kind: Kind, room: &str, task: Option<&str>, labels: &[(&str, &str)]) -> Target {
    Target {
        key: TargetKey {
            kind,
            app_id: "661e8f0d1ab2c3d4e5f60718".into(),
            room_id: room.into(),
            task_id: task.map(Into::into),
        },
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    }
}

const HOSTILE: &str = "q\"uote b\\ackslash\nnewline } # , = 🎥 录制 \t";

fn store_and_telemetry() -> (Store, Telemetry) {
    let store = Store::new(vec![
        target(Kind::Record, "Room1", Some("Task1"), &[("team", "live")]),
        target(Kind::Record, "Room1", Some("Task2"), &[("team", HOSTILE)]),
        target(Kind::Record, "Room2", Some("Task3"), &[]),
        target(
            Kind::Webcast,
            "Room3",
            None,
            &[("env", ""), ("team", "web")],
        ),
        target(Kind::Webcast, "Room4", Some("Cast1"), &[]),
        target(Kind::Record, "Room5", Some("Never"), &[]),
    ]);
    store.record_success(
        0,
        TaskSnapshot {
            status: status::RUNNING,
            start_time_ms: 1_700_000_000_123,
            ..Default::default()
        },
        at(T0 + 30_000),
    );
    let files = vec![
        RecordFile {
            vid: Some(HOSTILE.into()),
            duration_ms: Some(3_599_999),
            size_bytes: Some(1 << 40),
            ..Default::default()
        },
        RecordFile {
            vid: Some(HOSTILE.into()),
            object_key: Some("rec/\"x\".mp4".into()),
            duration_ms: Some(1),
            size_bytes: Some(0),
            ..Default::default()
        },
        RecordFile {
            object_key: Some("rec/3.mp4".into()),
            ..Default::default()
        },
        RecordFile::default(),
    ];
    store.record_success(
        1,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_123,
            end_time_ms: 1_700_003_600_456,
            stop_reason: HOSTILE.into(),
            files,
            ..Default::default()
        },
        at(T0 + 3_700_000),
    );
    store.record_success(
        2,
        TaskSnapshot {
            status: status::FAILED,
            start_time_ms: 1_700_000_000_000,
            stop_reason: "StartTaskFailed".into(),
            ..Default::default()
        },
        at(T0),
    );
    store.record_failure(2, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
    store.record_success(
        3,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_000,
            end_time_ms: 1_700_086_400_000,
            stop_reason: "ExceedMaxRunningTime".into(),
            max_running_time_s: Some(86_400),
            user_id: Some(HOSTILE.into()),
            ..Default::default()
        },
        at(T0 + 86_500_000),
    );
    store.record_failure(4, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
    store.record_failure(5, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);

    let telemetry = Telemetry::new();
    telemetry.observe_request(
        volc_rtc_exporter::model::Action::GetRecordTask,
        volc_rtc_exporter::model::Outcome::Success,
        Duration::from_millis(42),
    );
    // A reason first seen after start: its `_created` is when it was counted.
    store.record_success(
        4,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_000,
            end_time_ms: 1_700_000_100_000,
            stop_reason: "SomethingNew".into(),
            ..Default::default()
        },
        at(T0 + 200_000),
    );
    (store, telemetry)
}

fn body() -> String {
    let (store, telemetry) = store_and_telemetry();
    let mut out = Vec::new();
    render(&store, &telemetry, &mut out);
    String::from_utf8(out).expect("the body is UTF-8")
}

fn openmetrics_body() -> String {
    let (store, telemetry) = store_and_telemetry();
    let mut out = Vec::new();
    page(&store, &telemetry, Format::OpenMetrics)
        .write_to(&mut out)
        .unwrap();
    String::from_utf8(out).expect("the body is UTF-8")
}

/// Parses `text` with `prometheus_client`'s OpenMetrics parser and prints one line per
/// sample: `name<TAB>labels as sorted JSON<TAB>value`.
const PARSE_OPENMETRICS: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(family.type + "\t" + s.name + "\t" + json.dumps(s.labels, sort_keys=True, ensure_ascii=False) + "\t" + repr(s.value))
"#;

/// The OpenMetrics parser's samples as (type, name, labels JSON, value), or its error.
fn parse_openmetrics(text: &str) -> Result<Vec<(String, String, String, String)>, String> {
    let out = tools::run_with_input(
        Command::new(tools::python()).args(["-c", PARSE_OPENMETRICS]),
        text.as_bytes(),
        "python3 with prometheus_client must be installed (scripts/install-test-deps)",
    );
    if !out.status.success() {
        return Err(tools::output_text(&out));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, '\t').collect();
            assert_eq!(f.len(), 4, "{l}");
            (f[0].into(), f[1].into(), f[2].into(), f[3].into())
        })
        .collect())
}

/// `promtool check metrics` on `text`: its exit code and what it printed.
fn promtool_check_metrics(text: &str) -> (Option<i32>, String) {
    let out = tools::run_with_input(
        Command::new(tools::promtool_program()).args(["check", "metrics"]),
        text.as_bytes(),
        "promtool must be installed (scripts/install-test-deps)",
    );
    (out.status.code(), tools::output_text(&out))
}

/// Whether `promtool check metrics` passes `text` (exit code 0), and what it printed.
fn promtool_check(text: &str) -> (bool, String) {
    let (code, report) = promtool_check_metrics(text);
    (code == Some(0), report)
}

#[test]
fn body_passes_promtool_check_metrics_without_lint_findings() {
    let text = body();
    let (ok, report) = promtool_check(&text);
    assert!(
        ok && report.trim().is_empty(),
        "promtool: {report}\n---\n{text}"
    );

    // The body really holds what was checked: every per-target family, the hostile values
    // escaped, self-metrics and process metrics.
    for needle in [
        "volcengine_rtc_task_status{",
        "volcengine_rtc_task_start_timestamp_seconds{",
        "volcengine_rtc_task_end_timestamp_seconds{",
        "volcengine_rtc_task_duration_seconds{",
        "volcengine_rtc_task_stop_reason{",
        "volcengine_rtc_record_files{",
        "volcengine_rtc_record_size_bytes{",
        "volcengine_rtc_record_file_size_bytes{",
        "volcengine_rtc_record_file_duration_seconds{",
        "volcengine_rtc_webcast_max_running_time_seconds{",
        "volcengine_rtc_target_up{",
        "volcengine_rtc_target_last_success_timestamp_seconds{",
        "volcengine_rtc_task_stops_total{",
        "volcengine_rtc_api_requests_total{",
        "volcengine_rtc_exporter_build_info{",
        "process_resident_memory_bytes ",
        r#"file="q\"uote b\\ackslash\nnewline } # , = 🎥 录制 	#2""#,
        r#"reason="q\"uote b\\ackslash\nnewline } # , = 🎥 录制 	"} 1"#,
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn promtool_catches_broken_bodies() {
    // Guard: the check above can fail. A family without HELP is a lint finding, a raw newline
    // inside a label value a parse error.
    let (ok, report) = promtool_check("# TYPE foo_total counter\nfoo_total 1\n");
    assert!(!(ok && report.trim().is_empty()), "{report}");
    let (ok, _) = promtool_check("# HELP foo x\n# TYPE foo gauge\nfoo{a=\"x\ny\"} 1\n");
    assert!(!ok);
}

#[test]
fn openmetrics_body_passes_promtool_and_the_python_parser() {
    let text = openmetrics_body();
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    // promtool parses OpenMetrics with its text-format parser: the body must parse, and the
    // only lint findings allowed are the ones that reading OpenMetrics as text causes (a
    // counter's `_total` and `_created` series look like families without HELP).
    let (code, report) = promtool_check_metrics(&text);
    assert!(
        matches!(code, Some(0 | 3)) && !report.contains("error"),
        "promtool: {report}\n---\n{text}"
    );
    let counters = [
        "volcengine_rtc_task_stops",
        "volcengine_rtc_api_requests",
        "process_cpu_seconds",
    ];
    for finding in report.lines() {
        let known = counters.iter().any(|c| {
            finding == format!("{c}_total no help text")
                || finding == format!("{c}_created no help text")
        });
        assert!(known, "promtool: {finding}\n---\n{text}");
    }

    let samples = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
    let find = |name: &str, label: &str| {
        samples
            .iter()
            .filter(|(_, n, l, _)| n == name && l.contains(label))
            .collect::<Vec<_>>()
    };
    // The stop counter: a counter family without `_total`, each series with `_created`.
    let stops = find("volcengine_rtc_task_stops_total", "");
    let created = find("volcengine_rtc_task_stops_created", "");
    assert!(stops.len() >= 8, "{stops:?}");
    assert_eq!(stops.len(), created.len());
    assert!(stops.iter().all(|(t, ..)| t == "counter"));
    let new_reason = find(
        "volcengine_rtc_task_stops_created",
        "\"reason\": \"SomethingNew\"",
    );
    assert_eq!(new_reason.len(), 1, "{created:?}");
    assert_eq!(new_reason[0].3, "1700000200.123");
    // The reasons counted from the start were created when the process started.
    let started: f64 = find("process_start_time_seconds", "")[0].3.parse().unwrap();
    let seeded = find(
        "volcengine_rtc_task_stops_created",
        "\"reason\": \"StopByAPI\"",
    );
    assert_eq!(seeded[0].3.parse::<f64>().unwrap(), started);
    // The self-metric counters too.
    let requests = find(
        "volcengine_rtc_api_requests_total",
        "\"outcome\": \"success\"",
    );
    assert!(
        requests.iter().any(|s| s.3.parse::<f64>() == Ok(1.0)),
        "{requests:?}"
    );
    assert!(!find("volcengine_rtc_api_requests_created", "").is_empty());
    assert!(!find("process_cpu_seconds_created", "").is_empty());
    assert!(!find("volcengine_rtc_api_request_duration_seconds_bucket", "+Inf").is_empty());
    // The hostile values come back exactly as they went in.
    let hostile = serde_json::to_string(HOSTILE).unwrap();
    assert!(
        !find(
            "volcengine_rtc_task_stop_reason",
            &format!("\"reason\": {hostile}")
        )
        .is_empty(),
        "{samples:?}"
    );

    // The per-target series are the text format's, sample for sample.
    let text_body = body();
    let series = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| {
                l.starts_with("volcengine_rtc_") && !l.starts_with("volcengine_rtc_task_stops")
            })
            .filter(|l| {
                !l.starts_with("volcengine_rtc_api") && !l.starts_with("volcengine_rtc_exporter")
            })
            .map(String::from)
            .collect()
    };
    assert_eq!(series(&text), series(&text_body));
    assert!(series(&text).len() > 20);
}

#[test]
fn the_openmetrics_parser_catches_broken_bodies() {
    // Guard: the check above can fail. Without `# EOF`, or with a counter sample that is not
    // `_total`, the parser refuses the body.
    assert!(parse_openmetrics("# TYPE foo counter\nfoo_total 1\n").is_err());
    assert!(parse_openmetrics("# TYPE foo counter\nfoo 1\n# EOF\n").is_err());
    assert!(parse_openmetrics("# TYPE foo counter\nfoo_total 1\n# EOF\n").is_ok());
}
