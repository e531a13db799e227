//! Targets for the page tests (`tests/pages.rs`, `tests/browser.rs`): a small, realistic mix
//! of apps, phases, failing targets and failed tasks, including hostile strings, at a fixed
//! "now" so every relative time is known.
#![allow(dead_code)]

use volc_rtc_exporter::http::pages::{PageInfo, TargetRow};
use volc_rtc_exporter::model::{status, stop_reason, Kind};
use volc_rtc_exporter::scheduler::Phase;

/// 2026-12-01 11:00:00 UTC.
pub const NOW_MS: i64 = 1_796_122_800_000;
pub const HOUR_MS: i64 = 3_600_000;

/// An app ID, label and error written to break out of HTML if anything forgot to escape.
pub const EVIL_APP: &str = "<script>alert(\"app\")</script>";
pub const EVIL_LABEL: &str = "a\"b'c&d<i>";
pub const EVIL_ERROR: &str = "\"><img src=x onerror=alert(1)> 'quoted' & <b>bold</b>";

/// A healthy running record target polled 12 s ago and due in 3 s.
pub fn row(app: &str, room: &str, task: &str, phase: Phase) -> TargetRow {
    TargetRow {
        kind: Kind::Record,
        app_id: app.to_string(),
        room_id: room.to_string(),
        task_id: Some(task.to_string()),
        labels: Default::default(),
        sources: vec!["config".to_string()],
        phase,
        status: Some(status::RUNNING),
        stop_reason: None,
        up: true,
        last_poll_ms: Some(NOW_MS - 12_000),
        last_outcome: Some("success".to_string()),
        last_error: None,
        next_due_ms: Some(NOW_MS + 3_000),
        end_time_ms: None,
    }
}

/// The same target, failing: its last poll timed out.
pub fn failing(mut r: TargetRow, error: &str) -> TargetRow {
    r.up = false;
    r.last_outcome = Some("timeout".to_string());
    r.last_error = Some(error.to_string());
    r
}

/// The same target, ended `ago_ms` ago with this Status and StopReason.
pub fn ended(mut r: TargetRow, status: i64, reason: &str, ago_ms: i64) -> TargetRow {
    r.status = Some(status);
    r.stop_reason = Some(reason.to_string());
    r.end_time_ms = Some(NOW_MS - ago_ms);
    r.next_due_ms = None;
    r
}

pub fn info() -> PageInfo {
    let mut info = PageInfo::new(NOW_MS);
    info.revision = "3f9c2ab".to_string();
    info.facts = vec![
        ("Budget".to_string(), "50 requests/s per action".to_string()),
        (
            "Target files".to_string(),
            "/etc/volc/targets/*.yaml".to_string(),
        ),
    ];
    info.extra_links = vec![volc_rtc_exporter::http::pages::Link::new(
        "api/v1/targets",
        "Targets API",
    )];
    info
}

/// Two ordinary apps and one with a hostile ID: 14 targets, 4 failing (2 in `app-live`), 3
/// failed tasks of which 2 ended within 24 h.
pub fn fixture() -> Vec<TargetRow> {
    let mut rows = vec![
        row("app-live", "room-1042", "rec-1042-a", Phase::Active),
        row("app-live", "room-1043", "rec-1043-a", Phase::Active),
        failing(
            row("app-live", "room-1044", "rec-1044-a", Phase::Active),
            "timeout after 5s: GET GetRecordTask",
        ),
        failing(
            row("app-live", "room-1045", "rec-1045-a", Phase::Settling),
            "server error 500: InternalError",
        ),
        ended(
            row("app-live", "room-0999", "rec-0999-a", Phase::Done),
            status::FAILED,
            stop_reason::START_TASK_FAILED,
            2 * HOUR_MS,
        ),
        ended(
            row("app-live", "room-0998", "rec-0998-a", Phase::Done),
            status::ENDED,
            stop_reason::STOP_BY_API,
            3 * HOUR_MS,
        ),
        ended(
            row("app-live", "room-0900", "rec-0900-a", Phase::Expired),
            status::FAILED,
            stop_reason::UNKNOWN,
            30 * HOUR_MS,
        ),
        row("app-edu", "class-7", "rec-7-a", Phase::Active),
        ended(
            row("app-edu", "class-8", "cap-8", Phase::Done),
            status::ENDED,
            stop_reason::START_TASK_FAILED,
            20 * 60_000,
        ),
    ];
    // Never polled yet: pending, not failing.
    let mut fresh = row("app-edu", "class-9", "rec-9-a", Phase::New);
    fresh.up = false;
    fresh.last_poll_ms = None;
    fresh.last_outcome = None;
    fresh.status = None;
    fresh.next_due_ms = Some(NOW_MS + 40_000);
    fresh.sources = vec!["api".to_string()];
    rows.push(fresh);
    // A webcast target that follows its room's newest task, from a target file.
    let mut webcast = row("app-edu", "class-10", "", Phase::Active);
    webcast.kind = Kind::Webcast;
    webcast.task_id = None;
    webcast.sources = vec![
        "file:/etc/volc/targets/edu.yaml".to_string(),
        "api".to_string(),
    ];
    webcast.labels = vec![("team".to_string(), "edu".to_string())];
    rows.push(webcast);
    rows.push(failing(
        row("app-edu", "class-11", "rec-11-a", Phase::Active),
        "not found: the task is not visible yet",
    ));
    // Hostile strings everywhere a user or the API can put them.
    let mut evil = failing(
        row(EVIL_APP, "room\"<x>", "task'&", Phase::Active),
        EVIL_ERROR,
    );
    evil.labels = vec![(EVIL_LABEL.to_string(), EVIL_LABEL.to_string())];
    evil.sources = vec!["file:/tmp/<evil>.yaml".to_string()];
    evil.stop_reason = Some("<u>reason</u>".to_string());
    rows.push(evil);
    rows.push(row(EVIL_APP, "room-2", "task-2", Phase::Active));
    rows
}
