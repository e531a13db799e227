//! `targets::table`: the target table renders each target's series from its polls, counts
//! stops once, expires finished tasks and rebuilds only what changed.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use volc_rtc_exporter::exposition::{Format, Page};
use volc_rtc_exporter::model::{
    status, Kind, LastPoll, Outcome, RecordFile, Target, TargetKey, TaskSnapshot,
};
use volc_rtc_exporter::targets::table::*;

/// The stop counter's sample name.
const STOPS_NAME: &str = "volcengine_rtc_task_stops_total";

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
    let mut page = Page::new();
    store.page(Format::Text, None, &mut page);
    let mut out = Vec::new();
    page.write_to(&mut out).unwrap();
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
fn nothing_before_first_poll_but_the_stop_counter() {
    let store = Store::new(vec![target(Kind::Record, Some("t1"), &[])]);
    assert_eq!(
        rendered(&store),
        "# HELP volcengine_rtc_task_stops_total Terminal tasks seen, each task counted once when first seen terminal.\n\
         # TYPE volcengine_rtc_task_stops_total counter\n\
         volcengine_rtc_task_stops_total{kind=\"record\",app_id=\"app1\",reason=\"IdleTimeOut\"} 0\n\
         volcengine_rtc_task_stops_total{kind=\"record\",app_id=\"app1\",reason=\"StartTaskFailed\"} 0\n\
         volcengine_rtc_task_stops_total{kind=\"record\",app_id=\"app1\",reason=\"StopByAPI\"} 0\n\
         volcengine_rtc_task_stops_total{kind=\"record\",app_id=\"app1\",reason=\"UnknownStopReason\"} 0\n"
    );
    let empty = Store::new(vec![]);
    assert_eq!(
        rendered(&empty),
        "# HELP volcengine_rtc_task_stops_total Terminal tasks seen, each task counted once when first seen terminal.\n\
         # TYPE volcengine_rtc_task_stops_total counter\n"
    );
}

#[test]
fn record_running_without_files_full_text() {
    let store = Store::new(vec![target(Kind::Record, Some("t1"), &[("team", "live")])]);
    let u = store.record_success(0, running(T0), at(T0 + 60_000));
    assert_eq!(
        u,
        Update {
            changed: true,
            newly_terminal: false,
            new_task: false,
            followed_task: false
        }
    );
    let l = r#"{kind="record",app_id="app1",room_id="r1",task_id="t1",team="live"}"#;
    let expected = format!(
        "# HELP volcengine_rtc_task_status Task Status from the API: 0 unknown, 1 not started, 2 running, 3 ended, 4 failed.\n\
         # TYPE volcengine_rtc_task_status gauge\n\
         volcengine_rtc_task_status{l} 2\n\
         # HELP volcengine_rtc_task_start_timestamp_seconds Task StartTime.\n\
         # TYPE volcengine_rtc_task_start_timestamp_seconds gauge\n\
         volcengine_rtc_task_start_timestamp_seconds{l} 1700000000.123\n\
         # HELP volcengine_rtc_task_duration_seconds EndTime minus StartTime once ended; time since StartTime as of the last poll while not ended.\n\
         # TYPE volcengine_rtc_task_duration_seconds gauge\n\
         volcengine_rtc_task_duration_seconds{l} 60\n\
         # HELP volcengine_rtc_record_files Number of files in RecordFileList.\n\
         # TYPE volcengine_rtc_record_files gauge\n\
         volcengine_rtc_record_files{l} 0\n\
         # HELP volcengine_rtc_record_size_bytes Sum of the recorded files' Size.\n\
         # TYPE volcengine_rtc_record_size_bytes gauge\n\
         volcengine_rtc_record_size_bytes{l} 0\n\
         # HELP volcengine_rtc_target_up 1 if the target's last poll succeeded, else 0.\n\
         # TYPE volcengine_rtc_target_up gauge\n\
         volcengine_rtc_target_up{l} 1\n\
         # HELP volcengine_rtc_target_last_success_timestamp_seconds When the target's last successful poll happened.\n\
         # TYPE volcengine_rtc_target_last_success_timestamp_seconds gauge\n\
         volcengine_rtc_target_last_success_timestamp_seconds{l} 1700000060.123\n\
         # HELP volcengine_rtc_task_stops_total Terminal tasks seen, each task counted once when first seen terminal.\n\
         # TYPE volcengine_rtc_task_stops_total counter\n\
         volcengine_rtc_task_stops_total{{kind=\"record\",app_id=\"app1\",reason=\"IdleTimeOut\"}} 0\n\
         volcengine_rtc_task_stops_total{{kind=\"record\",app_id=\"app1\",reason=\"StartTaskFailed\"}} 0\n\
         volcengine_rtc_task_stops_total{{kind=\"record\",app_id=\"app1\",reason=\"StopByAPI\"}} 0\n\
         volcengine_rtc_task_stops_total{{kind=\"record\",app_id=\"app1\",reason=\"UnknownStopReason\"}} 0\n"
    );
    assert_eq!(rendered(&store), expected);

    // The next poll moves the duration and the last-success time, nothing else.
    let u = store.record_success(0, running(T0), at(T0 + 75_500));
    assert!(!u.changed && !u.newly_terminal && !u.new_task);
    assert!(series(&store).contains(&format!("volcengine_rtc_task_duration_seconds{l} 75.5\n")));
}

#[test]
fn record_ended_with_three_files() {
    let store = Store::new(vec![target(Kind::Record, Some("t1"), &[])]);
    let mut snap = ended(T0, T0 + 3_600_000, "StopByAPI");
    snap.files = vec![
        RecordFile {
            vid: Some("v1".into()),
            object_key: Some("k/1.mp4".into()),
            duration_ms: Some(3_599_500),
            size_bytes: Some(1_048_576),
            start_time_ms: Some(T0),
        },
        RecordFile {
            object_key: Some("k/2.mp4".into()),
            duration_ms: Some(1_000),
            size_bytes: Some(2_000),
            ..Default::default()
        },
        // Nothing but its position: labelled "2", no size, no duration.
        RecordFile::default(),
    ];
    let u = store.record_success(0, snap, at(T0 + 3_700_000));
    assert!(u.changed && u.newly_terminal && !u.new_task);
    let l = r#"kind="record",app_id="app1",room_id="r1",task_id="t1""#;
    assert_eq!(
        series(&store),
        format!(
            "volcengine_rtc_task_status{{{l}}} 3\n\
             volcengine_rtc_task_start_timestamp_seconds{{{l}}} 1700000000.123\n\
             volcengine_rtc_task_end_timestamp_seconds{{{l}}} 1700003600.123\n\
             volcengine_rtc_task_duration_seconds{{{l}}} 3600\n\
             volcengine_rtc_task_stop_reason{{{l},reason=\"StopByAPI\"}} 1\n\
             volcengine_rtc_record_files{{{l}}} 3\n\
             volcengine_rtc_record_size_bytes{{{l}}} 1050576\n\
             volcengine_rtc_record_file_size_bytes{{{l},file=\"v1\"}} 1048576\n\
             volcengine_rtc_record_file_size_bytes{{{l},file=\"k/2.mp4\"}} 2000\n\
             volcengine_rtc_record_file_duration_seconds{{{l},file=\"v1\"}} 3599.5\n\
             volcengine_rtc_record_file_duration_seconds{{{l},file=\"k/2.mp4\"}} 1\n\
             volcengine_rtc_target_up{{{l}}} 1\n\
             volcengine_rtc_target_last_success_timestamp_seconds{{{l}}} 1700003700.123\n"
        )
    );
    assert_eq!(
        stops(&store),
        "volcengine_rtc_task_stops_total{kind=\"record\",app_id=\"app1\",reason=\"StopByAPI\"} 1\n"
    );
}

#[test]
fn position_only_file_gets_its_position_and_duplicates_are_disambiguated() {
    let store = Store::new(vec![target(Kind::Record, Some("t1"), &[])]);
    let file = |vid: Option<&str>, size| RecordFile {
        vid: vid.map(Into::into),
        size_bytes: Some(size),
        ..Default::default()
    };
    let mut snap = running(T0);
    snap.files = vec![
        file(None, 1),
        file(Some("a"), 2),
        file(Some("a"), 3),
        file(Some("a#2"), 4),
        file(Some("0"), 5),
        file(Some("a"), 6),
    ];
    store.record_success(0, snap, at(T0));
    let sizes: Vec<String> = series(&store)
        .lines()
        .filter(|l| l.starts_with("volcengine_rtc_record_file_size_bytes"))
        .map(|l| l.split_once(",file=").unwrap().1.to_string())
        .collect();
    assert_eq!(
        sizes,
        [
            r#""0"} 1"#,
            r#""a"} 2"#,
            r#""a#2"} 3"#,
            r#""a#2#2"} 4"#,
            r#""0#2"} 5"#,
            r#""a#3"} 6"#
        ]
    );
}

#[test]
fn webcast_with_max_running_time_following_the_room() {
    let store = Store::new(vec![target(Kind::Webcast, None, &[("env", "prod")])]);
    let mut snap = running(T0);
    snap.max_running_time_s = Some(86_400);
    snap.user_id = Some("bot".into());
    assert!(
        store
            .record_success(0, snap.clone(), at(T0 + 1_000))
            .followed_task
    );
    // The same task again is no new followed task.
    assert!(
        !store
            .record_success(0, snap.clone(), at(T0 + 1_000))
            .followed_task
    );
    let l = r#"kind="webcast",app_id="app1",room_id="r1",task_id="",env="prod""#;
    assert_eq!(
        series(&store),
        format!(
            "volcengine_rtc_task_status{{{l}}} 2\n\
             volcengine_rtc_task_start_timestamp_seconds{{{l}}} 1700000000.123\n\
             volcengine_rtc_task_duration_seconds{{{l}}} 1\n\
             volcengine_rtc_webcast_max_running_time_seconds{{{l}}} 86400\n\
             volcengine_rtc_webcast_followed_task_info{{{l},start_time=\"2023-11-14T22:13:20.123Z\",user_id=\"bot\"}} 1\n\
             volcengine_rtc_target_up{{{l}}} 1\n\
             volcengine_rtc_target_last_success_timestamp_seconds{{{l}}} 1700000001.123\n"
        )
    );
    assert!(rendered(&store).contains(
        "volcengine_rtc_task_stops_total{kind=\"webcast\",app_id=\"app1\",reason=\"ExceedMaxRunningTime\"} 0\n"
    ));
    // The room's next task replaces the info series.
    snap.start_time_ms = T0 + 3_600_000;
    snap.user_id = Some("bot2".into());
    let u = store.record_success(0, snap, at(T0 + 3_601_000));
    assert!(u.followed_task);
    let s = series(&store);
    assert!(s.contains(&format!(
        "volcengine_rtc_webcast_followed_task_info{{{l},start_time=\"2023-11-14T23:13:20.123Z\",user_id=\"bot2\"}} 1\n"
    )), "{s}");
    assert_eq!(s.matches("webcast_followed_task_info").count(), 1, "{s}");
    // A target with a task_id has no such series.
    let pinned = Store::new(vec![target(Kind::Webcast, Some("t1"), &[])]);
    let u = pinned.record_success(0, running(T0), at(T0 + 1_000));
    assert!(!u.followed_task);
    assert!(!series(&pinned).contains("followed_task_info"));
}

#[test]
fn failure_keeps_last_values_and_sets_up_to_zero() {
    let store = Store::new(vec![target(Kind::Record, Some("t1"), &[])]);
    store.record_failure(0, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
    let l = r#"kind="record",app_id="app1",room_id="r1",task_id="t1""#;
    assert_eq!(
        series(&store),
        format!("volcengine_rtc_target_up{{{l}}} 0\n")
    );
    assert_eq!(
        store.state(0).and_then(|s| s.last_poll),
        Some(LastPoll {
            at_ms: 0,
            outcome: Outcome::Timeout,
            error: Some("timeout".into())
        })
    );
    store.record_success(0, running(T0), at(T0 + 10_000));
    assert_eq!(
        store.state(0).and_then(|s| s.last_poll),
        Some(LastPoll {
            at_ms: T0 + 10_000,
            outcome: Outcome::Success,
            error: None
        })
    );
    assert_eq!(
        store.state(0).and_then(|s| s.last_poll),
        store.state(0).and_then(|s| s.last_poll)
    );
    let before = series(&store);
    store.record_failure(0, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
    let after = series(&store);
    assert_eq!(
        after,
        before.replace(
            &format!("volcengine_rtc_target_up{{{l}}} 1\n"),
            &format!("volcengine_rtc_target_up{{{l}}} 0\n")
        )
    );
    assert_ne!(before, after);
    assert_eq!(store.state(0).and_then(|s| s.snapshot), Some(running(T0)));
    store.record_success(0, running(T0), at(T0 + 20_000));
    assert!(series(&store).contains(&format!("volcengine_rtc_target_up{{{l}}} 1\n")));
}

#[test]
fn stops_counted_once_across_polls_and_scrapes() {
    let store = Store::new(vec![
        target(Kind::Record, Some("t1"), &[]),
        target(Kind::Record, Some("t2"), &[]),
    ]);
    // t1: seen running, then terminal, then the same answer again and again.
    store.record_success(0, running(T0), at(T0));
    let snap = ended(T0, T0 + 5_000, "StartTaskFailed");
    let first = store.record_success(0, snap.clone(), at(T0 + 6_000));
    assert!(first.changed && first.newly_terminal);
    for i in 0..5 {
        let u = store.record_success(0, snap.clone(), at(T0 + 7_000 + i));
        assert!(!u.changed && !u.newly_terminal && !u.new_task);
        store.record_failure(0, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
        let _ = rendered(&store);
    }
    // Files arriving later change the answer but not the count.
    let mut later = snap.clone();
    later.files.push(RecordFile::default());
    let u = store.record_success(0, later, at(T0 + 60_000));
    assert!(u.changed && !u.newly_terminal);
    // t2: already terminal on its first poll.
    let u = store.record_success(1, ended(T0, T0 + 1, "StartTaskFailed"), at(T0 + 2));
    assert!(u.newly_terminal);
    store.record_success(1, ended(T0, T0 + 1, "StartTaskFailed"), at(T0 + 3));
    for _ in 0..3 {
        assert_eq!(
            stops(&store),
            "volcengine_rtc_task_stops_total{kind=\"record\",app_id=\"app1\",reason=\"StartTaskFailed\"} 2\n"
        );
    }
}

#[test]
fn new_webcast_task_in_the_room_is_counted_again() {
    let store = Store::new(vec![target(Kind::Webcast, None, &[])]);
    let u = store.record_success(0, ended(T0, T0 + 10, "IdleTimeOut"), at(T0 + 20));
    assert!(u.newly_terminal && !u.new_task);
    store.record_success(0, ended(T0, T0 + 10, "IdleTimeOut"), at(T0 + 30));
    let u = store.record_success(0, running(T0 + 1_000), at(T0 + 1_100));
    assert!(u.new_task && u.changed && !u.newly_terminal);
    let u = store.record_success(
        0,
        ended(T0 + 1_000, T0 + 2_000, "IdleTimeOut"),
        at(T0 + 2_100),
    );
    assert!(u.newly_terminal && !u.new_task);
    store.record_success(
        0,
        ended(T0 + 1_000, T0 + 2_000, "IdleTimeOut"),
        at(T0 + 2_200),
    );
    assert_eq!(
        stops(&store),
        "volcengine_rtc_task_stops_total{kind=\"webcast\",app_id=\"app1\",reason=\"IdleTimeOut\"} 2\n"
    );
    // A task that had no StartTime yet and starts is the same task.
    let room = Store::new(vec![target(Kind::Webcast, None, &[])]);
    let not_started = TaskSnapshot {
        status: status::NOT_STARTED,
        ..Default::default()
    };
    room.record_success(0, not_started, at(T0));
    let u = room.record_success(0, running(T0 + 5), at(T0 + 10));
    assert!(u.changed && !u.new_task);
    // A record target whose StartTime changes is still the same task.
    let rec = Store::new(vec![target(Kind::Record, Some("t1"), &[])]);
    rec.record_success(0, ended(T0, T0 + 10, "StopByAPI"), at(T0 + 20));
    let u = rec.record_success(0, ended(T0 + 5, T0 + 10, "StopByAPI"), at(T0 + 30));
    assert!(!u.new_task && !u.newly_terminal && u.changed);
}

#[test]
fn hostile_label_values_are_escaped() {
    let hostile = "a\"b\\c\nd}e#f,g=h 🎥 录制";
    let mut t = target(Kind::Record, Some("t1"), &[("team", hostile), ("z", "")]);
    t.key.room_id = "}{\"".into();
    let store = Store::new(vec![t]);
    let mut snap = ended(T0, T0 + 1, hostile);
    snap.files = vec![RecordFile {
        object_key: Some("dir/\"x\"\\\n.mp4".into()),
        size_bytes: Some(7),
        ..Default::default()
    }];
    store.record_success(0, snap, at(T0 + 2));
    let text = rendered(&store);
    let esc = r#"a\"b\\c\nd}e#f,g=h 🎥 录制"#;
    let l =
        format!(r#"kind="record",app_id="app1",room_id="}}{{\"",task_id="t1",team="{esc}",z="""#);
    assert!(
        text.contains(&format!(
            "volcengine_rtc_task_stop_reason{{{l},reason=\"{esc}\"}} 1\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "volcengine_rtc_record_file_size_bytes{{{l},file=\"dir/\\\"x\\\"\\\\\\n.mp4\"}} 7\n"
    )));
    assert!(text.contains(&format!(
        "volcengine_rtc_task_stops_total{{kind=\"record\",app_id=\"app1\",reason=\"{esc}\"}} 1\n"
    )));
    // Every line is a comment or a series ending in a value: no raw newline leaked.
    for line in text.lines() {
        assert!(
            line.starts_with("# ") || line.starts_with("volcengine_rtc_"),
            "{line}"
        );
    }
}

#[test]
fn unknown_ids_are_ignored() {
    let store = Store::new(vec![target(Kind::Record, Some("t1"), &[])]);
    assert_eq!(
        store.record_success(7, running(T0), at(T0)),
        Update::default()
    );
    store.record_failure(7, Outcome::Timeout, "timeout", SystemTime::UNIX_EPOCH);
    assert_eq!(store.state(7).and_then(|s| s.snapshot), None);
    assert_eq!(series(&store), "");
}

#[test]
fn renders_stay_well_formed_while_polls_record() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    let targets: Vec<Target> = (0..50)
        .map(|i| {
            let mut t = target(Kind::Record, Some("t"), &[]);
            t.key.task_id = Some(format!("t{i}"));
            t
        })
        .collect();
    let store = std::sync::Arc::new(Store::new(targets));
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for round in 0..200i64 {
                for id in 0..50usize {
                    let mut snap = running(T0);
                    snap.files = (0..(round % 4))
                        .map(|f| RecordFile {
                            vid: Some(format!("v{f}")),
                            size_bytes: Some(f),
                            ..Default::default()
                        })
                        .collect();
                    if (id as i64 + round) % 7 == 0 {
                        store.record_failure(
                            id,
                            Outcome::Timeout,
                            "timeout",
                            SystemTime::UNIX_EPOCH,
                        );
                    } else {
                        store.record_success(id, snap, at(T0 + round));
                    }
                }
            }
        })
    };
    for _ in 0..50 {
        let text = rendered(&store);
        let mut seen = HashSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(seen.insert(series.to_string()), "duplicate {series}");
        }
    }
    writer.join().unwrap();
}

#[test]
fn openmetrics_stop_counter_has_created() {
    let store = Store::new(vec![target(Kind::Webcast, None, &[])]);
    store.record_success(0, ended(T0, T0 + 10, "IdleTimeOut"), at(T0 + 20));
    store.record_success(0, ended(T0 + 30, T0 + 40, "Brand\"New"), at(T0 + 2_500));
    let mut page = Page::new();
    store.page(Format::OpenMetrics, Some(1_690_000_000.5), &mut page);
    let mut text = Vec::new();
    page.write_to(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let stops = &text[text.find("# HELP volcengine_rtc_task_stops ").unwrap()..];
    let l = |reason: &str| format!("{{kind=\"webcast\",app_id=\"app1\",reason=\"{reason}\"}}");
    assert_eq!(
        stops,
        format!(
            "# HELP volcengine_rtc_task_stops Terminal tasks seen, each task counted once when first seen terminal.\n\
             # TYPE volcengine_rtc_task_stops counter\n\
             volcengine_rtc_task_stops_total{} 1\n\
             volcengine_rtc_task_stops_created{} 1700000002.623\n\
             volcengine_rtc_task_stops_total{} 0\n\
             volcengine_rtc_task_stops_created{} 1690000000.5\n\
             volcengine_rtc_task_stops_total{} 1\n\
             volcengine_rtc_task_stops_created{} 1700000000.143\n\
             volcengine_rtc_task_stops_total{} 0\n\
             volcengine_rtc_task_stops_created{} 1690000000.5\n\
             volcengine_rtc_task_stops_total{} 0\n\
             volcengine_rtc_task_stops_created{} 1690000000.5\n\
             volcengine_rtc_task_stops_total{} 0\n\
             volcengine_rtc_task_stops_created{} 1690000000.5\n",
            l("Brand\\\"New"),
            l("Brand\\\"New"),
            l("ExceedMaxRunningTime"),
            l("ExceedMaxRunningTime"),
            l("IdleTimeOut"),
            l("IdleTimeOut"),
            l("StartTaskFailed"),
            l("StartTaskFailed"),
            l("StopByAPI"),
            l("StopByAPI"),
            l("UnknownStopReason"),
            l("UnknownStopReason"),
        )
    );
    // IdleTimeOut is no web-capture reason, so it was created when first counted too.
    // Without a start time the counted-from-start reasons have no `_created`.
    let mut page = Page::new();
    store.page(Format::OpenMetrics, None, &mut page);
    let mut text = Vec::new();
    page.write_to(&mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert_eq!(text.matches("_created{").count(), 2);
}
