//! What the pages are rendered from: a snapshot of each target as plain [`TargetRow`]s, and
//! the [`PageInfo`] about the exporter itself (which includes "now").

use std::fmt::Write as _;

use crate::model::{status, stop_reason, Kind};
use crate::scheduler::Phase;

/// One target as the pages show it, filled by the caller from the exporter's state.
///
/// Times are wall-clock milliseconds since the Unix epoch, like the API's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRow {
    pub kind: Kind,
    pub app_id: String,
    pub room_id: String,
    /// `None` for a webcast target that follows the room's newest task.
    pub task_id: Option<String>,
    /// The user's extra labels, in the order to show them.
    pub labels: Vec<(String, String)>,
    /// Where the target comes from: `config`, `file:<path>`, `api`, `callback`, ….
    pub sources: Vec<String>,
    pub phase: Phase,
    /// The task's last known `Status` (see [`crate::model::status`]); `None` before any answer.
    pub status: Option<i64>,
    /// The task's `StopReason`, once it has one.
    pub stop_reason: Option<String>,
    /// Whether the last poll got an answer about the task (the `up` metric).
    pub up: bool,
    /// When the target was last polled; `None` if never.
    pub last_poll_ms: Option<i64>,
    /// How the last poll ended (an [`crate::model::Outcome`] label, e.g. `success`, `timeout`).
    pub last_outcome: Option<String>,
    /// The last poll's error, if it failed. Never put secrets here.
    pub last_error: Option<String>,
    /// When the target is next due; `None` if it is no longer polled.
    pub next_due_ms: Option<i64>,
    /// The task's `EndTime`, once it has one.
    pub end_time_ms: Option<i64>,
}

/// A target's health as the pages show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The last poll got an answer.
    Up,
    /// Polled, and the last poll failed: a failing target.
    Down,
    /// Not polled yet.
    Pending,
}

impl Health {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Pending => "pending",
        }
    }
}

impl TargetRow {
    /// Up if the last poll got an answer, pending if never polled, down otherwise.
    pub fn health(&self) -> Health {
        if self.up {
            Health::Up
        } else if self.last_poll_ms.is_none() {
            Health::Pending
        } else {
            Health::Down
        }
    }

    /// Whether the exporter fails to get answers about this target.
    pub fn is_failing(&self) -> bool {
        self.health() == Health::Down
    }

    /// Whether the task itself failed: `Status` 4, or stopped with `StartTaskFailed`.
    pub fn task_failed(&self) -> bool {
        self.status == Some(status::FAILED)
            || self.stop_reason.as_deref() == Some(stop_reason::START_TASK_FAILED)
    }

    /// The `id` of this target's row on the targets page (a link target from the landing
    /// page). Letters, digits, `-` and `.` are kept; every other byte becomes `_xx` (hex), and
    /// `__` separates the parts, so distinct targets never share an id.
    pub fn anchor(&self) -> String {
        let mut id = String::with_capacity(8 + self.app_id.len() + self.room_id.len() + 24);
        id.push_str("t-");
        id.push_str(self.kind.as_str());
        for part in [
            Some(self.app_id.as_str()),
            Some(self.room_id.as_str()),
            self.task_id.as_deref(),
        ] {
            id.push_str("__");
            let Some(part) = part else {
                // "follows the room's newest task": a bare `_` that no escaped ID produces.
                id.push('_');
                continue;
            };
            for b in part.bytes() {
                if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                    id.push(char::from(b));
                } else {
                    let _ = write!(id, "_{b:02x}");
                }
            }
        }
        id
    }
}

/// A link on the pages' navigation bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Relative (`api/v1/targets`) so it works under a path prefix, or absolute. Escaped but
    /// not otherwise checked: only the exporter's own links belong here.
    pub href: String,
    pub text: String,
}

impl Link {
    pub fn new(href: impl Into<String>, text: impl Into<String>) -> Link {
        Link {
            href: href.into(),
            text: text.into(),
        }
    }
}

/// What the pages say about the exporter itself. Only public facts: never put secrets here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    pub name: String,
    pub version: String,
    pub revision: String,
    /// The wall-clock time of the snapshot, ms since the Unix epoch: "12s ago" is relative
    /// to it.
    pub now_ms: i64,
    /// Facts shown on the landing page as name/value pairs, in order, e.g.
    /// `("Budget", "50 requests/s per action")`.
    pub facts: Vec<(String, String)>,
    /// Links added after the standard ones (Targets, Metrics, Health, Readiness), e.g.
    /// `api/v1/targets` when the registration API is on.
    pub extra_links: Vec<Link>,
}

impl PageInfo {
    /// This crate's name, version and revision at `now_ms`, with no facts and no extra links.
    pub fn new(now_ms: i64) -> PageInfo {
        PageInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: crate::REVISION.to_string(),
            now_ms,
            facts: Vec::new(),
            extra_links: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> TargetRow {
        TargetRow {
            kind: Kind::Record,
            app_id: "app".into(),
            room_id: "room".into(),
            task_id: Some("task".into()),
            labels: vec![],
            sources: vec!["config".into()],
            phase: Phase::Active,
            status: None,
            stop_reason: None,
            up: false,
            last_poll_ms: None,
            last_outcome: None,
            last_error: None,
            next_due_ms: None,
            end_time_ms: None,
        }
    }

    #[test]
    fn health_and_task_failure() {
        let mut r = row();
        assert_eq!(r.health(), Health::Pending);
        assert!(!r.is_failing());
        r.last_poll_ms = Some(1);
        assert_eq!(r.health(), Health::Down);
        assert!(r.is_failing());
        r.up = true;
        assert_eq!(r.health(), Health::Up);
        assert!(!r.task_failed());
        r.status = Some(status::FAILED);
        assert!(r.task_failed());
        r.status = Some(status::ENDED);
        r.stop_reason = Some(stop_reason::START_TASK_FAILED.into());
        assert!(r.task_failed());
        r.stop_reason = Some(stop_reason::STOP_BY_API.into());
        assert!(!r.task_failed());
    }

    #[test]
    fn anchors_are_safe_and_distinct() {
        let mut r = row();
        assert_eq!(r.anchor(), "t-record__app__room__task");
        r.app_id = "a<\"b".into();
        r.room_id = "r_1".into();
        assert_eq!(r.anchor(), "t-record__a_3c_22b__r_5f1__task");
        // A webcast target following the room's newest task differs from a task named "_".
        r.kind = Kind::Webcast;
        r.task_id = None;
        let newest = r.anchor();
        r.task_id = Some("_".into());
        assert_ne!(newest, r.anchor());
        assert_eq!(newest, "t-webcast__a_3c_22b__r_5f1___");
        assert_eq!(r.anchor(), "t-webcast__a_3c_22b__r_5f1___5f");
        // Parts cannot run into each other.
        let (mut a, mut b) = (row(), row());
        a.app_id = "x__y".into();
        a.room_id = "z".into();
        b.app_id = "x".into();
        b.room_id = "y__z".into();
        assert_ne!(a.anchor(), b.anchor());
    }
}
