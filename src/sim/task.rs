//! Scripted task timelines and what the API says about them at a given moment.
//!
//! A [`SimTask`] exists from its `start_ms` on (before that the API does not know it), is
//! "not started" (Status 1) for `pending_ms`, runs (Status 2) until its [`TaskEnd`] if it has
//! one, and then answers Status 3 or 4 with a StopReason. A record task's `RecordFileList`
//! follows its [`FileStage`]s: the newest stage whose time has come is the list answered, so
//! files can appear, and their sizes settle, after the end. A stage is set at a fixed time
//! ([`SimTask::files_at`]) or a delay after the end ([`SimTask::uploads_after_end`]: RTC
//! uploads a recording's files after the task ends, large ones for minutes); a task given no
//! stage never lists a file. The vendor only answers for tasks
//! started in the last [`HORIZON_MS`]; older ones are "not found".

use serde_json::{json, Map, Value};

use crate::model::{status, Kind, VISIBILITY_WINDOW};

pub use crate::model::stop_reason;

/// How far back the API can see ([`VISIBILITY_WINDOW`], 72 hours), in ms.
pub const HORIZON_MS: i64 = VISIBILITY_WINDOW.as_millis() as i64;

/// One simulated task and its whole timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct SimTask {
    pub app_id: String,
    pub room_id: String,
    pub task_id: String,
    /// `StartTime`, ms since the epoch; the task is unknown to the API before it.
    pub start_ms: i64,
    /// How long after `start_ms` the task stays at Status 1 (not started) before running.
    pub pending_ms: i64,
    /// When and how it ends; `None` = runs for ever.
    pub end: Option<TaskEnd>,
    /// What kind of task it is, with the kind's own details.
    pub detail: TaskDetail,
}

/// The end of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEnd {
    /// `EndTime`, ms since the epoch.
    pub at_ms: i64,
    /// `Status` from then on: [`status::ENDED`] or [`status::FAILED`].
    pub status: i64,
    pub stop_reason: String,
}

/// Kind-specific parts of a task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskDetail {
    Record(RecordPlan),
    Webcast(WebcastPlan),
}

/// A record task's files over time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordPlan {
    /// Sorted by `at_ms`; the newest stage with `at_ms <= now` is the answered list.
    pub file_stages: Vec<FileStage>,
    /// Stages whose `at_ms` counts from the task's end (EndTime) instead of the epoch; none
    /// of them is listed while the task has not ended. Sorted by `at_ms`.
    pub after_end: Vec<FileStage>,
}

/// The whole `RecordFileList` from `at_ms` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStage {
    pub at_ms: i64,
    pub files: Vec<SimFile>,
}

/// One entry of `RecordFileList`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimFile {
    /// Set for VOD storage (answered as `""` when unset).
    pub vid: Option<String>,
    /// Set for object storage (answered as `""` when unset).
    pub object_key: Option<String>,
    pub duration_ms: i64,
    pub size_bytes: i64,
    pub start_ms: i64,
    pub streams: Vec<SimStream>,
    pub video_codec: String,
    pub audio_codec: String,
    pub width: i64,
    pub height: i64,
}

/// One entry of a file's `StreamList`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStream {
    pub user_id: String,
    /// 0 normal, 1 screen.
    pub stream_type: i64,
    pub index: Option<i64>,
}

/// A webcast task's fixed fields.
#[derive(Debug, Clone, PartialEq)]
pub struct WebcastPlan {
    pub user_id: String,
    pub source_url: String,
    /// `MaxRunningTime`, seconds.
    pub max_running_time_s: i64,
    pub video_solutions: Vec<VideoSolution>,
    /// `BlankCheckInterval`, `CrashCheckInterval`, `FreezeCheckInterval`, seconds.
    pub monitor: [i64; 3],
    pub enable_event_notify: bool,
    /// `EventNotifyConfig.StartTimeout`, seconds.
    pub start_timeout_s: i64,
}

/// One entry of `VideoSolutions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSolution {
    pub width: i64,
    pub height: i64,
    pub frame_rate: i64,
    /// kbps.
    pub bitrate: i64,
}

impl Default for WebcastPlan {
    fn default() -> Self {
        WebcastPlan {
            user_id: "webcast_bot".into(),
            source_url: "https://example.com/live/page".into(),
            max_running_time_s: 86_400,
            video_solutions: vec![VideoSolution {
                width: 1280,
                height: 720,
                frame_rate: 15,
                bitrate: 1_200,
            }],
            monitor: [0, 0, 0],
            enable_event_notify: false,
            start_timeout_s: 10,
        }
    }
}

/// The task's state at one moment, as the API would describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState<'a> {
    pub status: i64,
    /// 0 while not ended.
    pub end_ms: i64,
    /// `""` while not ended.
    pub stop_reason: &'a str,
    pub files: &'a [SimFile],
}

impl SimTask {
    /// A record task starting at `start_ms`, running for ever, with no files.
    pub fn record(app_id: &str, room_id: &str, task_id: &str, start_ms: i64) -> Self {
        Self::new(
            app_id,
            room_id,
            task_id,
            start_ms,
            TaskDetail::Record(RecordPlan::default()),
        )
    }

    /// A webcast task starting at `start_ms`, running for ever (or until its
    /// `MaxRunningTime`, if [`SimTask::exceeds_max_running_time`] is used), with default details.
    pub fn webcast(app_id: &str, room_id: &str, task_id: &str, start_ms: i64) -> Self {
        Self::new(
            app_id,
            room_id,
            task_id,
            start_ms,
            TaskDetail::Webcast(WebcastPlan::default()),
        )
    }

    fn new(app_id: &str, room_id: &str, task_id: &str, start_ms: i64, detail: TaskDetail) -> Self {
        SimTask {
            app_id: app_id.into(),
            room_id: room_id.into(),
            task_id: task_id.into(),
            start_ms,
            pending_ms: 0,
            end: None,
            detail,
        }
    }

    pub fn kind(&self) -> Kind {
        match self.detail {
            TaskDetail::Record(_) => Kind::Record,
            TaskDetail::Webcast(_) => Kind::Webcast,
        }
    }

    /// Ends the task at `at_ms` with `reason`; Status 4 (failed) for `StartTaskFailed`, else 3.
    pub fn ends(mut self, at_ms: i64, reason: &str) -> Self {
        let status = if reason == stop_reason::START_TASK_FAILED {
            status::FAILED
        } else {
            status::ENDED
        };
        self.end = Some(TaskEnd {
            at_ms,
            status,
            stop_reason: reason.into(),
        });
        self
    }

    /// Keeps Status 1 (not started) for `ms` after the start.
    pub fn pending_for(mut self, ms: i64) -> Self {
        self.pending_ms = ms;
        self
    }

    /// Adds a file stage (record tasks; ignored for webcast).
    pub fn files_at(mut self, at_ms: i64, files: Vec<SimFile>) -> Self {
        if let TaskDetail::Record(plan) = &mut self.detail {
            plan.file_stages.push(FileStage { at_ms, files });
            plan.file_stages.sort_by_key(|s| s.at_ms);
        }
        self
    }

    /// Adds a file stage listed `delay_ms` after the task's end, whenever that is set (record
    /// tasks; ignored for webcast): late uploads. Before the end, and for a task that never
    /// ends, it is not listed. Stages at fixed times ([`SimTask::files_at`]) still apply; the
    /// newest stage whose time has come wins.
    pub fn uploads_after_end(mut self, delay_ms: i64, files: Vec<SimFile>) -> Self {
        if let TaskDetail::Record(plan) = &mut self.detail {
            plan.after_end.push(FileStage {
                at_ms: delay_ms,
                files,
            });
            plan.after_end.sort_by_key(|s| s.at_ms);
        }
        self
    }

    /// Webcast: sets `MaxRunningTime` and ends the task with `ExceedMaxRunningTime` when it is
    /// reached (ignored for record tasks).
    pub fn exceeds_max_running_time(mut self, max_running_time_s: i64) -> Self {
        if let TaskDetail::Webcast(plan) = &mut self.detail {
            plan.max_running_time_s = max_running_time_s;
            let at = self
                .start_ms
                .saturating_add(max_running_time_s.saturating_mul(1000));
            return self.ends(at, stop_reason::EXCEED_MAX_RUNNING_TIME);
        }
        self
    }

    /// Changes the webcast details (ignored for record tasks).
    pub fn webcast_plan(mut self, f: impl FnOnce(&mut WebcastPlan)) -> Self {
        if let TaskDetail::Webcast(plan) = &mut self.detail {
            f(plan);
        }
        self
    }

    /// The task's state at `now_ms`, or `None` when the API cannot see it then (not yet
    /// started, or started more than 72 hours before).
    pub fn state_at(&self, now_ms: i64) -> Option<TaskState<'_>> {
        if now_ms < self.start_ms || now_ms.saturating_sub(self.start_ms) > HORIZON_MS {
            return None;
        }
        Some(self.state_ignoring_horizon(now_ms))
    }

    /// The task's state at `now_ms`, even past the 72-hour horizon (for reports and tests).
    pub fn state_ignoring_horizon(&self, now_ms: i64) -> TaskState<'_> {
        let files: &[SimFile] = match &self.detail {
            TaskDetail::Record(plan) => {
                let fixed = plan
                    .file_stages
                    .iter()
                    .rev()
                    .find(|s| s.at_ms <= now_ms)
                    .map(|s| (s.at_ms, s.files.as_slice()));
                let late = self.end.as_ref().and_then(|end| {
                    plan.after_end
                        .iter()
                        .map(|s| (end.at_ms.saturating_add(s.at_ms), s.files.as_slice()))
                        .rfind(|&(at, _)| at <= now_ms)
                });
                match (fixed, late) {
                    (Some(f), Some(l)) => if l.0 >= f.0 { l } else { f }.1,
                    (f, l) => f.or(l).map_or(&[], |(_, files)| files),
                }
            }
            TaskDetail::Webcast(_) => &[],
        };
        match &self.end {
            Some(end) if end.at_ms <= now_ms => TaskState {
                status: end.status,
                end_ms: end.at_ms,
                stop_reason: &end.stop_reason,
                files,
            },
            _ => TaskState {
                status: if now_ms < self.start_ms.saturating_add(self.pending_ms) {
                    status::NOT_STARTED
                } else {
                    status::RUNNING
                },
                end_ms: 0,
                stop_reason: "",
                files,
            },
        }
    }

    /// The `Result` object the API answers at `now_ms`: `{"RecordTask": {…}}` or
    /// `{"WebCastTask": {…}}` with every field filled; `None` when the task cannot be seen.
    pub fn result_json(&self, now_ms: i64) -> Option<Value> {
        let state = self.state_at(now_ms)?;
        let mut task = Map::new();
        task.insert("StartTime".into(), json!(self.start_ms));
        task.insert("EndTime".into(), json!(state.end_ms));
        task.insert("Status".into(), json!(state.status));
        task.insert("StopReason".into(), json!(state.stop_reason));
        let mut result = Map::new();
        match &self.detail {
            TaskDetail::Record(_) => {
                let files: Vec<Value> = state.files.iter().map(file_json).collect();
                task.insert("RecordFileList".into(), Value::Array(files));
                result.insert("RecordTask".into(), Value::Object(task));
            }
            TaskDetail::Webcast(plan) => {
                task.insert("UserId".into(), json!(plan.user_id));
                task.insert("SourceURL".into(), json!(plan.source_url));
                task.insert("MaxRunningTime".into(), json!(plan.max_running_time_s));
                let solutions: Vec<Value> = plan
                    .video_solutions
                    .iter()
                    .map(|v| {
                        json!({
                            "Width": v.width,
                            "Height": v.height,
                            "FrameRate": v.frame_rate,
                            "Bitrate": v.bitrate,
                        })
                    })
                    .collect();
                task.insert("VideoSolutions".into(), Value::Array(solutions));
                task.insert(
                    "MonitorConfig".into(),
                    json!({
                        "BlankCheckInterval": plan.monitor[0],
                        "CrashCheckInterval": plan.monitor[1],
                        "FreezeCheckInterval": plan.monitor[2],
                    }),
                );
                task.insert(
                    "EventNotifyConfig".into(),
                    json!({
                        "EnableEventNotify": plan.enable_event_notify,
                        "StartTimeout": plan.start_timeout_s,
                    }),
                );
                result.insert("WebCastTask".into(), Value::Object(task));
            }
        }
        Some(Value::Object(result))
    }
}

fn file_json(f: &SimFile) -> Value {
    let streams: Vec<Value> = f
        .streams
        .iter()
        .map(|s| {
            let mut m = Map::new();
            m.insert("UserId".into(), json!(s.user_id));
            m.insert("StreamType".into(), json!(s.stream_type));
            if let Some(i) = s.index {
                m.insert("Index".into(), json!(i));
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "Vid": f.vid.as_deref().unwrap_or(""),
        "ObjectKey": f.object_key.as_deref().unwrap_or(""),
        "Duration": f.duration_ms,
        "Size": f.size_bytes,
        "StartTime": f.start_ms,
        "StreamList": streams,
        "VideoCodec": f.video_codec,
        "AudioCodec": f.audio_codec,
        "VideoWidth": f.width,
        "VideoHeight": f.height,
    })
}

impl SimFile {
    /// A plausible MP4 file in object storage recorded from `start_ms` for `duration_ms`, with
    /// a size of roughly 1.5 Mbit/s.
    pub fn object(key: &str, start_ms: i64, duration_ms: i64, user_id: &str) -> Self {
        SimFile {
            vid: None,
            object_key: Some(key.into()),
            duration_ms,
            size_bytes: duration_ms.saturating_mul(1_500_000 / 8 / 1000),
            start_ms,
            streams: vec![SimStream {
                user_id: user_id.into(),
                stream_type: 0,
                index: None,
            }],
            video_codec: "h264".into(),
            audio_codec: "aac".into(),
            width: 1280,
            height: 720,
        }
    }

    /// The same, stored in VOD (identified by `vid`).
    pub fn vod(vid: &str, start_ms: i64, duration_ms: i64, user_id: &str) -> Self {
        SimFile {
            vid: Some(vid.into()),
            object_key: None,
            ..SimFile::object("", start_ms, duration_ms, user_id)
        }
    }

    /// With its size set.
    pub fn size(mut self, bytes: i64) -> Self {
        self.size_bytes = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_of_a_record_task() {
        let f = SimFile::object("a/b.mp4", 1_000, 9_000, "u1");
        let t = SimTask::record("app", "room", "task", 1_000)
            .pending_for(500)
            .ends(10_000, stop_reason::IDLE_TIME_OUT)
            .files_at(12_000, vec![f.clone().size(10)])
            .files_at(15_000, vec![f.clone()]);
        assert!(t.state_at(999).is_none());
        assert_eq!(
            t.state_at(1_000).map(|s| s.status),
            Some(status::NOT_STARTED)
        );
        assert_eq!(t.state_at(1_500).map(|s| s.status), Some(status::RUNNING));
        let ended = t.state_at(10_000);
        assert_eq!(ended.as_ref().map(|s| s.status), Some(status::ENDED));
        assert_eq!(ended.as_ref().map(|s| s.files.len()), Some(0));
        assert_eq!(t.state_at(12_000).map(|s| s.files[0].size_bytes), Some(10));
        assert_eq!(
            t.state_at(15_000).map(|s| s.files[0].size_bytes),
            Some(f.size_bytes)
        );
        assert!(t.state_at(1_000 + HORIZON_MS).is_some());
        assert!(t.state_at(1_001 + HORIZON_MS).is_none());
    }

    #[test]
    fn uploads_after_the_end_appear_with_their_delay() {
        let f = SimFile::object("late.mp4", 1_000, 9_000, "u1");
        // Set before the end is known: the delay counts from whatever the end turns out to be.
        let t = SimTask::record("app", "room", "task", 1_000)
            .uploads_after_end(60_000, vec![f.clone().size(5)])
            .uploads_after_end(90_000, vec![f.clone()])
            .ends(10_000, stop_reason::STOP_BY_API);
        let files = |now: i64| t.state_at(now).map(|s| s.files.to_vec());
        assert_eq!(files(9_999), Some(vec![]));
        assert_eq!(files(10_000), Some(vec![]), "ended, nothing uploaded yet");
        assert_eq!(files(69_999), Some(vec![]));
        assert_eq!(files(70_000), Some(vec![f.clone().size(5)]));
        assert_eq!(files(100_000), Some(vec![f.clone()]));
        // A task that never ends never lists them; webcast tasks ignore them.
        let running = SimTask::record("app", "room", "t2", 0).uploads_after_end(0, vec![f.clone()]);
        assert_eq!(running.state_at(HORIZON_MS).map(|s| s.files.len()), Some(0));
        let web = SimTask::webcast("app", "room", "w", 0)
            .uploads_after_end(0, vec![f.clone()])
            .ends(5, stop_reason::STOP_BY_API);
        assert_eq!(web.state_at(10).map(|s| s.files.len()), Some(0));
        // Mixed with a fixed-time stage: the newest whose time has come wins.
        let mixed = SimTask::record("app", "room", "t3", 0)
            .ends(1_000, stop_reason::IDLE_TIME_OUT)
            .files_at(2_000, vec![f.clone().size(1)])
            .uploads_after_end(5_000, vec![f.clone().size(2)])
            .files_at(9_000, vec![f.clone().size(3)]);
        let size = |now: i64| mixed.state_at(now).map(|s| s.files[0].size_bytes);
        assert_eq!(size(2_000), Some(1));
        assert_eq!(size(6_000), Some(2));
        assert_eq!(size(9_000), Some(3));
        // The answer shows them too.
        let json = t.result_json(70_000).unwrap();
        assert_eq!(json["RecordTask"]["RecordFileList"][0]["Size"], json!(5));
    }

    #[test]
    fn start_task_failed_is_status_4_and_webcast_max_running_time_ends() {
        let t = SimTask::record("a", "r", "t", 0).ends(5, stop_reason::START_TASK_FAILED);
        assert_eq!(t.state_at(5).map(|s| s.status), Some(status::FAILED));
        let w = SimTask::webcast("a", "r", "w", 1_000).exceeds_max_running_time(10);
        let s = w.state_at(11_000);
        assert_eq!(
            s.as_ref().map(|s| s.stop_reason),
            Some("ExceedMaxRunningTime")
        );
        assert_eq!(s.map(|s| s.end_ms), Some(11_000));
        let result = w.result_json(2_000);
        assert_eq!(
            result
                .as_ref()
                .map(|r| r["WebCastTask"]["MaxRunningTime"].clone()),
            Some(json!(10))
        );
    }
}
