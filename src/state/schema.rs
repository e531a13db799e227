//! The stored form: the row types and their JSON, the encodings of the tables' keys, the
//! tables, and the load of a whole store at open.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableError};
use serde::{Deserialize, Serialize};

use crate::model::{Kind, LastPoll, Outcome, Phase, RecordFile, Target, TargetKey, TaskSnapshot};

/// The version of the tables' layout, kept in `meta`.
pub const SCHEMA_VERSION: u64 = 1;

pub(super) const TARGETS: TableDefinition<&str, &[u8]> = TableDefinition::new("targets");
pub(super) const COUNTED: TableDefinition<&str, i64> = TableDefinition::new("counted");
pub(super) const STOPS: TableDefinition<&str, u64> = TableDefinition::new("stops");
pub(super) const EVENTS: TableDefinition<&str, i64> = TableDefinition::new("events");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

// ---------------------------------------------------------------------------------------------
// Stored types

pub use crate::model::Source;

/// Where a target is on its way to "done", so that a restart resumes instead of starting over.
///
/// Rows of earlier versions may also hold `identical` (a count that was always written as 0):
/// it is ignored on load and no longer written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settle {
    pub phase: Phase,
    /// When the current task was first seen terminal, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminal_since_ms: Option<i64>,
    /// The current task was counted in `task_stops_total`.
    #[serde(skip_serializing_if = "is_false")]
    pub stop_counted: bool,
    /// The target's series were removed after retention (kept so a restart does not show
    /// them again).
    #[serde(skip_serializing_if = "is_false")]
    pub expired: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One `RecordFileList` entry as stored (see [`RecordFile`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time_ms: Option<i64>,
}

/// A target's last answer as stored (see [`TaskSnapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredSnapshot {
    pub status: i64,
    pub start_time_ms: i64,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub end_time_ms: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stop_reason: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<StoredFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running_time_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

impl From<&RecordFile> for StoredFile {
    fn from(f: &RecordFile) -> StoredFile {
        StoredFile {
            vid: f.vid.clone(),
            object_key: f.object_key.clone(),
            duration_ms: f.duration_ms,
            size_bytes: f.size_bytes,
            start_time_ms: f.start_time_ms,
        }
    }
}

impl From<StoredFile> for RecordFile {
    fn from(f: StoredFile) -> RecordFile {
        RecordFile {
            vid: f.vid,
            object_key: f.object_key,
            duration_ms: f.duration_ms,
            size_bytes: f.size_bytes,
            start_time_ms: f.start_time_ms,
        }
    }
}

impl From<&TaskSnapshot> for StoredSnapshot {
    fn from(s: &TaskSnapshot) -> StoredSnapshot {
        StoredSnapshot {
            status: s.status,
            start_time_ms: s.start_time_ms,
            end_time_ms: s.end_time_ms,
            stop_reason: s.stop_reason.clone(),
            files: s.files.iter().map(StoredFile::from).collect(),
            max_running_time_s: s.max_running_time_s,
            user_id: s.user_id.clone(),
        }
    }
}

impl From<StoredSnapshot> for TaskSnapshot {
    fn from(s: StoredSnapshot) -> TaskSnapshot {
        TaskSnapshot {
            status: s.status,
            start_time_ms: s.start_time_ms,
            end_time_ms: s.end_time_ms,
            stop_reason: s.stop_reason,
            files: s.files.into_iter().map(RecordFile::from).collect(),
            max_running_time_s: s.max_running_time_s,
            user_id: s.user_id,
        }
    }
}

/// A target's last poll as stored (see [`LastPoll`]); the outcome by its label name. A row
/// written before this field existed has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredPoll {
    pub at_ms: i64,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&LastPoll> for StoredPoll {
    fn from(p: &LastPoll) -> StoredPoll {
        StoredPoll {
            at_ms: p.at_ms,
            outcome: p.outcome.as_str().to_string(),
            error: p.error.clone(),
        }
    }
}

impl TryFrom<StoredPoll> for LastPoll {
    type Error = crate::model::UnknownOutcome;

    /// Fails for an outcome this version does not know (a row from a newer one).
    fn try_from(p: StoredPoll) -> Result<LastPoll, Self::Error> {
        Ok(LastPoll {
            at_ms: p.at_ms,
            outcome: p.outcome.parse::<Outcome>()?,
            error: p.error,
        })
    }
}

/// Everything stored about one target (its key is the row's key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetRecord {
    /// Where the target came from; a target without sources is removed, not stored.
    pub sources: BTreeSet<Source>,
    /// The target's own labels, sorted by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(String, String)>,
    /// When the target became known, ms since the epoch (for "never seen yet" rules).
    pub added_ms: i64,
    /// The last successful answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<StoredSnapshot>,
    /// The last poll's outcome (`target_up`); `None` before the first poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
    /// When the last successful poll happened, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_ms: Option<i64>,
    /// The last poll: when, its outcome, its error; `None` before the first, and in rows
    /// written by versions that did not keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<StoredPoll>,
    pub settle: Settle,
}

impl TargetRecord {
    /// A target just learned from `source` at `now_ms`: phase new, no answer yet.
    pub fn new(target: &Target, source: Source, now_ms: i64) -> TargetRecord {
        TargetRecord {
            sources: BTreeSet::from([source]),
            labels: target.labels.to_vec(),
            added_ms: now_ms,
            ..TargetRecord::default()
        }
    }

    /// The model's target for the row stored under `key`.
    pub fn target(&self, key: &TargetKey) -> Target {
        Target {
            key: key.clone(),
            labels: self.labels.clone().into(),
        }
    }

    /// The last answer as the model's snapshot.
    pub fn task_snapshot(&self) -> Option<TaskSnapshot> {
        self.snapshot.clone().map(TaskSnapshot::from)
    }

    /// The last poll as the model has it. A row written before the last poll was kept says
    /// only whether it succeeded: a success is the last success; a failure's outcome and
    /// error are not known (`None`, never a made-up outcome). So is an outcome this version
    /// does not know.
    pub fn last_poll(&self) -> Option<LastPoll> {
        match (&self.last_poll, self.up, self.last_success_ms) {
            (Some(stored), _, _) => LastPoll::try_from(stored.clone()).ok(),
            (None, Some(true), Some(at_ms)) => Some(LastPoll {
                at_ms,
                outcome: Outcome::Success,
                error: None,
            }),
            _ => None,
        }
    }

    /// When the task ended for retention: its EndTime, else when it was first seen terminal;
    /// `None` while the task has not ended (or no answer is stored).
    pub fn ended_ms(&self) -> Option<i64> {
        let s = self.snapshot.as_ref()?;
        let terminal = TaskSnapshot::from(s.clone()).is_terminal();
        if !terminal {
            return None;
        }
        if s.end_time_ms > 0 {
            Some(s.end_time_ms)
        } else {
            self.settle.terminal_since_ms
        }
    }
}

pub use crate::model::TaskRef;

/// The `(kind, app_id, reason)` of a `task_stops_total` counter.
pub type StopKey = (Kind, String, String);

/// Everything in the store, read once at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every stored target, sorted by key.
    pub targets: Vec<(TargetKey, TargetRecord)>,
    /// The tasks already counted as stopped.
    pub counted: HashSet<TaskRef>,
    /// The `task_stops_total` counters.
    pub stops: BTreeMap<StopKey, u64>,
    /// Callback event ids and when they were received, ms.
    pub events: HashMap<String, i64>,
}

// ---------------------------------------------------------------------------------------------
// Keys

fn kind_from_str(s: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| k.as_str() == s)
}

pub(super) fn target_key_str(key: &TargetKey) -> String {
    // Serialising strings cannot fail.
    serde_json::to_string(&(key.kind.as_str(), &key.app_id, &key.room_id, &key.task_id))
        .unwrap_or_default()
}

fn parse_target_key(s: &str) -> Option<TargetKey> {
    let (kind, app_id, room_id, task_id): (String, String, String, Option<String>) =
        serde_json::from_str(s).ok()?;
    Some(TargetKey {
        kind: kind_from_str(&kind)?,
        app_id,
        room_id,
        task_id,
    })
}

pub(super) fn task_key_str(t: &TaskRef) -> String {
    serde_json::to_string(&(
        t.key.kind.as_str(),
        &t.key.app_id,
        &t.key.room_id,
        &t.key.task_id,
        t.start_time_ms,
    ))
    .unwrap_or_default()
}

fn parse_task_key(s: &str) -> Option<TaskRef> {
    let (kind, app_id, room_id, task_id, start_time_ms): (
        String,
        String,
        String,
        Option<String>,
        i64,
    ) = serde_json::from_str(s).ok()?;
    Some(TaskRef {
        key: TargetKey {
            kind: kind_from_str(&kind)?,
            app_id,
            room_id,
            task_id,
        },
        start_time_ms,
    })
}

pub(super) fn stop_key_str(kind: Kind, app_id: &str, reason: &str) -> String {
    serde_json::to_string(&(kind.as_str(), app_id, reason)).unwrap_or_default()
}

fn parse_stop_key(s: &str) -> Option<StopKey> {
    let (kind, app_id, reason): (String, String, String) = serde_json::from_str(s).ok()?;
    Some((kind_from_str(&kind)?, app_id, reason))
}

/// A row that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("table {table}: a row does not decode: {what}")]
struct BadRow {
    table: &'static str,
    what: String,
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
pub(super) fn bad(table: &'static str, what: impl fmt::Display) -> redb::Error {
    redb::Error::Corrupted(
        BadRow {
            table,
            what: what.to_string(),
        }
        .to_string(),
    )
}

#[allow(clippy::result_large_err)] // redb's own error type, rare and kept inside this module
pub(super) fn load(db: &Database) -> Result<Loaded, redb::Error> {
    let txn = db.begin_read()?;
    let mut state = Loaded::default();
    match txn.open_table(META) {
        Ok(t) => {
            if let Some(v) = t.get("schema")? {
                if v.value() > SCHEMA_VERSION {
                    return Err(bad(
                        "meta",
                        format!(
                            "schema {} is newer than this exporter's {SCHEMA_VERSION}",
                            v.value()
                        ),
                    ));
                }
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(TARGETS) {
        Ok(t) => {
            state
                .targets
                .reserve(usize::try_from(t.len()?).unwrap_or(0));
            for row in t.iter()? {
                let (k, v) = row?;
                let key = parse_target_key(k.value()).ok_or_else(|| bad("targets", k.value()))?;
                let record: TargetRecord =
                    serde_json::from_slice(v.value()).map_err(|e| bad("targets", e))?;
                state.targets.push((key, record));
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state.targets.sort_by(|a, b| a.0.cmp(&b.0));
    match txn.open_table(COUNTED) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, _) = row?;
                let task = parse_task_key(k.value()).ok_or_else(|| bad("counted", k.value()))?;
                state.counted.insert(task);
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(STOPS) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                let key = parse_stop_key(k.value()).ok_or_else(|| bad("stops", k.value()))?;
                state.stops.insert(key, v.value());
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    match txn.open_table(EVENTS) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                state.events.insert(k.value().to_string(), v.value());
            }
        }
        Err(TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(state)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::status;

    #[test]
    fn last_poll_round_trips_and_rows_without_it_still_decode() {
        let polled = TargetRecord {
            last_poll: Some(StoredPoll::from(&LastPoll {
                at_ms: 5,
                outcome: Outcome::NetworkError,
                error: Some("network_error: reset".into()),
            })),
            ..TargetRecord::default()
        };
        let json = serde_json::to_string(&polled).unwrap();
        assert!(
            json.contains(r#""last_poll":{"at_ms":5,"outcome":"network_error","error":"network_error: reset"}"#),
            "{json}"
        );
        let back: TargetRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, polled);
        assert_eq!(
            back.last_poll().map(|p| p.outcome),
            Some(Outcome::NetworkError)
        );

        // Rows of an older version: no `last_poll`.
        let old = |up: bool| {
            format!(
                r#"{{"sources":["config"],"added_ms":1,"up":{up},"last_success_ms":7,"settle":{{"phase":"active"}}}}"#
            )
        };
        let was_up: TargetRecord = serde_json::from_str(&old(true)).unwrap();
        assert_eq!(was_up.last_poll, None);
        assert_eq!(
            was_up.last_poll(),
            Some(LastPoll {
                at_ms: 7,
                outcome: Outcome::Success,
                error: None
            })
        );
        let was_down: TargetRecord = serde_json::from_str(&old(false)).unwrap();
        assert_eq!(was_down.last_poll(), None, "no made-up outcome");
        // An outcome a newer version wrote: the row still decodes, the poll is unknown.
        let newer: TargetRecord =
            serde_json::from_str(r#"{"last_poll":{"at_ms":1,"outcome":"quantum_error"}}"#).unwrap();
        assert_eq!(newer.last_poll(), None);
    }

    fn key(task: Option<&str>) -> TargetKey {
        TargetKey {
            kind: if task.is_some() {
                Kind::Record
            } else {
                Kind::Webcast
            },
            app_id: "app\"1".into(),
            room_id: "room,1".into(),
            task_id: task.map(String::from),
        }
    }

    #[test]
    fn keys_round_trip_with_awkward_ids() {
        for k in [key(Some("t[1]")), key(None)] {
            assert_eq!(parse_target_key(&target_key_str(&k)), Some(k.clone()));
            let t = TaskRef {
                key: k,
                start_time_ms: 42,
            };
            assert_eq!(parse_task_key(&task_key_str(&t)), Some(t));
        }
        assert_eq!(
            parse_stop_key(&stop_key_str(Kind::Webcast, "a", "StopByAPI")),
            Some((Kind::Webcast, "a".into(), "StopByAPI".into()))
        );
        assert_eq!(parse_target_key("[\"video\",\"a\",\"r\",null]"), None);
    }

    #[test]
    fn sources_as_strings() {
        for (s, text) in [
            (Source::Config, "config"),
            (Source::file("/etc/t.yml"), "file:/etc/t.yml"),
            (Source::Api, "api"),
            (Source::Callback, "callback"),
        ] {
            assert_eq!(s.to_string(), text);
            assert_eq!(text.parse::<Source>(), Ok(s));
        }
        assert!("file:".parse::<Source>().is_err());
        assert!("sd".parse::<Source>().is_err());
    }

    #[test]
    fn snapshot_converts_both_ways_and_stays_small() {
        let snap = TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_700_000_000_000,
            end_time_ms: 1_700_000_360_000,
            stop_reason: "StopByAPI".into(),
            files: vec![RecordFile {
                vid: Some("v1".into()),
                size_bytes: Some(1024),
                ..Default::default()
            }],
            max_running_time_s: None,
            user_id: None,
        };
        let stored = StoredSnapshot::from(&snap);
        assert_eq!(TaskSnapshot::from(stored.clone()), snap);
        let json = serde_json::to_string(&stored).unwrap_or_default();
        assert_eq!(
            json,
            "{\"status\":3,\"start_time_ms\":1700000000000,\"end_time_ms\":1700000360000,\
             \"stop_reason\":\"StopByAPI\",\"files\":[{\"vid\":\"v1\",\"size_bytes\":1024}]}"
        );
    }

    #[test]
    fn ended_uses_end_time_else_first_terminal_sight() {
        let mut r = TargetRecord::default();
        assert_eq!(r.ended_ms(), None);
        r.snapshot = Some(StoredSnapshot {
            status: status::RUNNING,
            ..Default::default()
        });
        assert_eq!(r.ended_ms(), None);
        r.snapshot = Some(StoredSnapshot {
            status: status::FAILED,
            ..Default::default()
        });
        r.settle.terminal_since_ms = Some(77);
        assert_eq!(r.ended_ms(), Some(77));
        r.snapshot = Some(StoredSnapshot {
            status: status::ENDED,
            end_time_ms: 55,
            ..Default::default()
        });
        assert_eq!(r.ended_ms(), Some(55));
    }

    #[test]
    fn a_settle_with_the_old_identical_count_still_loads() {
        let old: TargetRecord = serde_json::from_str(
            r#"{"sources":["config"],"added_ms":1,"settle":{"phase":"settling","identical":1,"stop_counted":true}}"#,
        )
        .unwrap();
        assert_eq!(old.settle.phase, Phase::Settling);
        assert!(old.settle.stop_counted);
        let json = serde_json::to_string(&old).unwrap();
        assert!(!json.contains("identical"), "{json}");
    }

    #[test]
    fn phases_are_stored_under_their_label_names() {
        for phase in Phase::ALL {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{}\"", phase.as_str()));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), phase);
        }
        assert_eq!(Settle::default().phase, Phase::New);
    }

    #[test]
    fn a_room_target_tells_its_tasks_apart_by_start_time() {
        let snap = TaskSnapshot {
            start_time_ms: 9,
            ..Default::default()
        };
        assert_eq!(TaskRef::of(&key(None), &snap).start_time_ms, 9);
        assert_eq!(TaskRef::of(&key(Some("t")), &snap).start_time_ms, 0);
    }
}
