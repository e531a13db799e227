//! Domain types shared by every module: what a target is, which action queries it, what one
//! answer says about a task, and how a request ended.
//!
//! Nothing here does I/O. Times are the API's own units (milliseconds since the Unix epoch) so
//! that a snapshot is exactly what the API answered; conversions to seconds happen at render.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The two kinds of task the exporter follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Cloud recording, queried with `GetRecordTask`.
    Record,
    /// Cloud web-page capture, queried with `GetWebCastTask`.
    Webcast,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Record, Kind::Webcast];

    /// The value of the `kind` label and of the config's `kind` key.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Record => "record",
            Kind::Webcast => "webcast",
        }
    }

    /// The OpenAPI action that answers for this kind.
    pub fn action(self) -> Action {
        match self {
            Kind::Record => Action::GetRecordTask,
            Kind::Webcast => Action::GetWebCastTask,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two query actions; each has its own request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    GetRecordTask,
    GetWebCastTask,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::GetRecordTask, Action::GetWebCastTask];

    /// The `Action` query parameter, the config's budget key and the `action` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::GetRecordTask => "GetRecordTask",
            Action::GetWebCastTask => "GetWebCastTask",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Action::GetRecordTask => Kind::Record,
            Action::GetWebCastTask => Kind::Webcast,
        }
    }

    /// Dense index, for per-action arrays.
    pub fn index(self) -> usize {
        match self {
            Action::GetRecordTask => 0,
            Action::GetWebCastTask => 1,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `T` per action, indexed by [`Action`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerAction<T>([T; 2]);

impl<T> PerAction<T> {
    /// `f(action)` for each action.
    pub fn new(f: impl FnMut(Action) -> T) -> Self {
        PerAction(Action::ALL.map(f))
    }
}

impl<T> std::ops::Index<Action> for PerAction<T> {
    type Output = T;
    fn index(&self, action: Action) -> &T {
        &self.0[action.index()]
    }
}

impl<T> std::ops::IndexMut<Action> for PerAction<T> {
    fn index_mut(&mut self, action: Action) -> &mut T {
        &mut self.0[action.index()]
    }
}

/// The OpenAPI's service name in the credential scope (not configurable).
pub const SERVICE: &str = "rtc";
/// `Version`s `GetRecordTask` is known to answer (the default first).
pub const RECORD_VERSIONS: [&str; 2] = ["2022-06-01", "2023-06-01"];
/// `Version`s `GetWebCastTask` is known to answer (the default first).
pub const WEBCAST_VERSIONS: [&str; 1] = ["2020-12-01"];

impl Action {
    /// The `Version`s this action is known to answer, the default first.
    pub fn versions(self) -> &'static [&'static str] {
        match self {
            Action::GetRecordTask => &RECORD_VERSIONS,
            Action::GetWebCastTask => &WEBCAST_VERSIONS,
        }
    }
}

/// `[a-zA-Z0-9_@.-]{1,128}`, the vendor's rule for AppId, RoomId and TaskId.
pub fn is_valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'.' | b'-'))
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, the Prometheus label name rule.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What identifies a target: one task (or, for a webcast target without `task_id`, one room's
/// newest web-capture task).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetKey {
    pub kind: Kind,
    pub app_id: String,
    pub room_id: String,
    /// Always set for record targets; `None` means "the room's newest task" (webcast only).
    pub task_id: Option<String>,
}

/// A target's extra labels, sorted by name. Shared: the targets of one file that carry the same
/// labels hold one copy (a file of 100,000 targets typically has a few dozen label sets).
pub type Labels = std::sync::Arc<[(String, String)]>;

/// One configured target: its key plus the user's extra labels (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub key: TargetKey,
    pub labels: Labels,
}

/// Label names the exporter sets itself; a target's own labels (from the config, target files,
/// the API or `callbacks.labels`) may not use them.
pub const RESERVED_LABELS: [&str; 14] = [
    "kind", "app_id", "room_id", "task_id", "file", "reason", "action", "outcome", "phase", "le",
    "instance", "job", "version", "revision",
];

/// A place in a file: 1-based line and column (columns count characters). Kept small, as
/// every node of a config's tree has one; past `u32::MAX` a number stays at that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    /// The place of 1-based `line` and `col`.
    pub fn new(line: usize, col: usize) -> Pos {
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Pos {
            line: small(line),
            col: small(col),
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One problem found in a file the exporter reads (the config, a targets file, the web config,
/// its `callbacks:` section): the file, where in it when known, and what is wrong and what to
/// do. Shown as `file:line:col: message` (a part left out when empty or unknown), control
/// characters escaped so that one problem stays one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |f: &mut fmt::Formatter<'_>, text: &str| {
            text.chars().try_for_each(|c| match c.is_control() {
                true => write!(f, "{}", c.escape_debug()),
                false => fmt::Write::write_char(f, c),
            })
        };
        if !self.file.is_empty() {
            one_line(f, &self.file)?;
            f.write_str(if self.pos.is_some() { ":" } else { ": " })?;
        }
        if let Some(pos) = self.pos {
            write!(f, "{pos}: ")?;
        }
        one_line(f, &self.message)
    }
}

/// How far back the API can see: a task that started longer ago than this is no longer
/// answered for.
pub const VISIBILITY_WINDOW: std::time::Duration = std::time::Duration::from_secs(72 * 3600);

/// Where a target is in its life (see [`crate::scheduler`]): the `phase` label of
/// `volcengine_rtc_targets`, and stored by [`crate::state`] under the same names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    New,
    Active,
    Settling,
    Done,
    Expired,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::New,
        Phase::Active,
        Phase::Settling,
        Phase::Done,
        Phase::Expired,
    ];

    /// The `phase` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::New => "new",
            Phase::Active => "active",
            Phase::Settling => "settling",
            Phase::Done => "done",
            Phase::Expired => "expired",
        }
    }

    /// Dense index into [`Phase::ALL`], for per-phase arrays.
    pub fn index(self) -> usize {
        match self {
            Phase::New => 0,
            Phase::Active => 1,
            Phase::Settling => 2,
            Phase::Done => 3,
            Phase::Expired => 4,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// StopReason values the vendor documents.
pub mod stop_reason {
    pub const UNKNOWN: &str = "UnknownStopReason";
    pub const STOP_BY_API: &str = "StopByAPI";
    pub const START_TASK_FAILED: &str = "StartTaskFailed";
    /// Record tasks only.
    pub const IDLE_TIME_OUT: &str = "IdleTimeOut";
    /// Webcast tasks only.
    pub const EXCEED_MAX_RUNNING_TIME: &str = "ExceedMaxRunningTime";
}

/// The API's task Status.
pub mod status {
    pub const UNKNOWN: i64 = 0;
    pub const NOT_STARTED: i64 = 1;
    pub const RUNNING: i64 = 2;
    pub const ENDED: i64 = 3;
    pub const FAILED: i64 = 4;
}

/// One answer about one task, as the API gave it (fields it left out are defaults).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// `Status`: see [`status`].
    pub status: i64,
    /// `StartTime`, ms since the epoch (0 if absent).
    pub start_time_ms: i64,
    /// `EndTime`, ms since the epoch; 0 while the task has not ended.
    pub end_time_ms: i64,
    /// `StopReason`; empty while the task has not ended.
    pub stop_reason: String,
    /// `RecordFileList` (record tasks; empty for webcast).
    pub files: Vec<RecordFile>,
    /// `MaxRunningTime` in seconds (webcast tasks only).
    pub max_running_time_s: Option<i64>,
    /// `UserId` (webcast tasks only).
    pub user_id: Option<String>,
}

impl TaskSnapshot {
    /// A task is terminal once it has a StopReason, an EndTime, or a terminal Status.
    pub fn is_terminal(&self) -> bool {
        self.status == status::ENDED
            || self.status == status::FAILED
            || self.end_time_ms > 0
            || !self.stop_reason.is_empty()
    }
}

/// One entry of `RecordFileList`; every field is optional in the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFile {
    pub vid: Option<String>,
    pub object_key: Option<String>,
    /// `Duration`, ms.
    pub duration_ms: Option<i64>,
    /// `Size`, bytes.
    pub size_bytes: Option<i64>,
    /// `StartTime`, ms since the epoch.
    pub start_time_ms: Option<i64>,
}

impl RecordFile {
    /// The `file` label value: Vid, else ObjectKey, else the file's position in the list.
    pub fn label(&self, position: usize) -> String {
        match (&self.vid, &self.object_key) {
            (Some(v), _) if !v.is_empty() => v.clone(),
            (_, Some(k)) if !k.is_empty() => k.clone(),
            _ => position.to_string(),
        }
    }
}

/// How one API request ended: the `outcome` label of `volcengine_rtc_api_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Throttled,
    AuthError,
    NotFound,
    ClientError,
    ServerError,
    Timeout,
    NetworkError,
    DecodeError,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Success,
        Outcome::Throttled,
        Outcome::AuthError,
        Outcome::NotFound,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Timeout,
        Outcome::NetworkError,
        Outcome::DecodeError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Throttled => "throttled",
            Outcome::AuthError => "auth_error",
            Outcome::NotFound => "not_found",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
            Outcome::NetworkError => "network_error",
            Outcome::DecodeError => "decode_error",
        }
    }

    /// Worth another attempt after a backoff (inside the budget).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Outcome::ServerError | Outcome::Timeout | Outcome::NetworkError
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Outcome::as_str`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome {0:?}")]
pub struct UnknownOutcome(pub String);

impl std::str::FromStr for Outcome {
    type Err = UnknownOutcome;

    /// The outcome named as in the `outcome` label.
    fn from_str(s: &str) -> Result<Outcome, UnknownOutcome> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_string()))
    }
}

/// How a target's last poll went, for `/targets` and `/api/v1/targets`; kept across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPoll {
    /// When the answer (or the failure) came, ms since the epoch.
    pub at_ms: i64,
    /// [`Outcome::Success`], or how the poll failed (after its retries).
    pub outcome: Outcome,
    /// The failure's text (never a secret); `None` for a success.
    pub error: Option<String>,
}

/// A target's place in the target table (`crate::targets::table`); the scheduler and the
/// durable state use the same id. An
/// id freed by a removal may be given to a new target.
pub type TargetId = usize;

/// One source of targets; a target known from several sources is one target with several
/// sources, and it leaves when its last source drops it. Stored and shown as `config`,
/// `file:<path>`, `api` or `callback`. The order of the variants is the precedence used when the same target
/// comes from several sources: the config first, then target files in path order, then the
/// registration API, then callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The config file's `targets:` list.
    Config,
    /// A file matched by `target_files`.
    File(Arc<Path>),
    /// Registered with `POST /api/v1/targets`.
    Api,
    /// Learned from a vendor callback.
    Callback,
}

impl Source {
    /// A file source for `path`.
    pub fn file(path: impl Into<PathBuf>) -> Source {
        Source::File(Arc::from(path.into()))
    }
}

impl fmt::Display for Source {
    /// `config`, `file:<path>`, `api` or `callback`: the value of a `source` label or column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Config => f.write_str("config"),
            Source::File(path) => write!(f, "file:{}", path.display()),
            Source::Api => f.write_str("api"),
            Source::Callback => f.write_str("callback"),
        }
    }
}

/// A string that is not one of the [`Source`] forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target source {0:?}: expected config, file:<path>, api or callback")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Source, UnknownSource> {
        match s {
            "config" => Ok(Source::Config),
            "api" => Ok(Source::Api),
            "callback" => Ok(Source::Callback),
            _ => match s.strip_prefix("file:") {
                Some(path) if !path.is_empty() => Ok(Source::file(path)),
                _ => Err(UnknownSource(s.to_string())),
            },
        }
    }
}

impl serde::Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Source, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One task, for the set of tasks already counted as stopped: the target's key and, for a
/// room-following webcast target (no `task_id`), the task's StartTime, which tells its tasks
/// apart. For a target with a `task_id` the StartTime is 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskRef {
    pub key: TargetKey,
    pub start_time_ms: i64,
}

impl TaskRef {
    /// The task `snapshot` describes, answered for the target `key`.
    pub fn of(key: &TargetKey, snapshot: &TaskSnapshot) -> TaskRef {
        TaskRef {
            key: key.clone(),
            start_time_ms: if key.task_id.is_some() {
                0
            } else {
                snapshot.start_time_ms
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_label_prefers_vid_then_object_key_then_position() {
        let mut f = RecordFile {
            vid: Some("v1".into()),
            object_key: Some("k/1.mp4".into()),
            ..Default::default()
        };
        assert_eq!(f.label(2), "v1");
        f.vid = Some(String::new());
        assert_eq!(f.label(2), "k/1.mp4");
        f.object_key = None;
        assert_eq!(f.label(2), "2");
    }

    #[test]
    fn terminal_detection() {
        let mut s = TaskSnapshot {
            status: status::RUNNING,
            ..Default::default()
        };
        assert!(!s.is_terminal());
        s.stop_reason = "StopByAPI".into();
        assert!(s.is_terminal());
        let failed = TaskSnapshot {
            status: status::FAILED,
            ..Default::default()
        };
        assert!(failed.is_terminal());
    }

    #[test]
    fn outcome_names_roundtrip() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        assert_eq!(
            "failure".parse::<Outcome>(),
            Err(UnknownOutcome("failure".into()))
        );
    }

    #[test]
    fn action_kind_roundtrip() {
        for k in Kind::ALL {
            assert_eq!(k.action().kind(), k);
        }
        assert_eq!(Action::GetWebCastTask.as_str(), "GetWebCastTask");
    }
}
