//! Fault injection: what can go wrong with an answer, which requests a fault applies to, and
//! how many times.
//!
//! A fault is applied after the signature check and the QPS limit, to requests whose action and
//! IDs match its [`FaultSpec`]; the first matching fault (in injection order) wins and uses up
//! one of its `times`. Faults that only change the shape of the JSON (spellings, extra or
//! missing fields, large numbers) apply to whatever the simulator would have answered.

use std::time::Duration;

use crate::model::Action;

/// One way an answer can go wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP `status` with the vendor error `code` in `ResponseMetadata.Error` (e.g. 500
    /// `InternalError`, 503 `ServiceUnavailableTemp`, 401 `SignatureDoesNotMatch`).
    HttpError { status: u16, code: String },
    /// HTTP 502 with a proxy's HTML page instead of JSON.
    HtmlBadGateway,
    /// HTTP 200 whose `ResponseMetadata` carries an `Error` with `code`.
    ErrorInOk { code: String },
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// HTTP 200 with only the first half of the normal body (`Content-Length` matching it).
    TruncatedJson,
    /// The connection is closed (reset) without any answer.
    ResetConnection,
    /// The normal answer, after this delay (tokio time).
    Slow(Duration),
    /// HTTP 429 `FlowLimitExceeded.QPSOverLimit`, whatever the QPS.
    Throttle,
    /// `Result.WebcastTask` instead of `Result.WebCastTask`.
    WebcastSpelling,
    /// `Monitor`/`EventNotify` instead of `MonitorConfig`/`EventNotifyConfig`.
    ShortConfigSpellings,
    /// Unknown fields added at every level (metadata, result, task, files, error).
    ExtraFields,
    /// Every optional field left out (only `StartTime` and `Status` stay in a task).
    MissingOptionalFields,
    /// The normal answer padded with an unknown field to at least `bytes` bytes.
    HugeBody { bytes: usize },
    /// File sizes and durations pushed above 2^32.
    LargeNumbers,
}

impl Fault {
    /// HTTP 500 `InternalError`.
    pub fn internal_error() -> Self {
        Fault::HttpError {
            status: 500,
            code: "InternalError".into(),
        }
    }

    /// HTTP 503 `ServiceUnavailableTemp`.
    pub fn unavailable() -> Self {
        Fault::HttpError {
            status: 503,
            code: "ServiceUnavailableTemp".into(),
        }
    }

    /// HTTP 401 `SignatureDoesNotMatch`: what wrong credentials look like.
    pub fn auth_error() -> Self {
        Fault::HttpError {
            status: 401,
            code: "SignatureDoesNotMatch".into(),
        }
    }
}

/// Which requests a fault applies to; `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMatch {
    pub app_id: Option<String>,
    pub room_id: Option<String>,
    /// For a webcast request without TaskId, only `None` matches.
    pub task_id: Option<String>,
}

impl TaskMatch {
    /// Exactly this task (`task_id` `None` matches any task of the room).
    pub fn task(app_id: &str, room_id: &str, task_id: Option<&str>) -> Self {
        TaskMatch {
            app_id: Some(app_id.into()),
            room_id: Some(room_id.into()),
            task_id: task_id.map(Into::into),
        }
    }

    pub(crate) fn matches(
        &self,
        app: Option<&str>,
        room: Option<&str>,
        task: Option<&str>,
    ) -> bool {
        fn one(want: &Option<String>, got: Option<&str>) -> bool {
            want.as_deref().is_none_or(|w| Some(w) == got)
        }
        one(&self.app_id, app) && one(&self.room_id, room) && one(&self.task_id, task)
    }
}

/// A fault and the requests it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// Only requests for this action (`None`: both).
    pub action: Option<Action>,
    /// Only requests for these IDs (`None`: any).
    pub target: Option<TaskMatch>,
    pub fault: Fault,
    /// How many requests it applies to; `None` = every matching request until cleared.
    pub times: Option<usize>,
}

impl FaultSpec {
    /// `fault` for the next matching request only.
    pub fn once(fault: Fault) -> Self {
        FaultSpec {
            action: None,
            target: None,
            fault,
            times: Some(1),
        }
    }

    /// `fault` for every matching request until cleared.
    pub fn always(fault: Fault) -> Self {
        FaultSpec {
            times: None,
            ..FaultSpec::once(fault)
        }
    }

    /// For the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    /// Only for requests of `action`.
    pub fn for_action(mut self, action: Action) -> Self {
        self.action = Some(action);
        self
    }

    /// Only for requests for these IDs.
    pub fn for_target(mut self, target: TaskMatch) -> Self {
        self.target = Some(target);
        self
    }
}

/// Identifies an injected fault, to clear it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultId(pub(crate) u64);

/// The injected faults, in injection order.
#[derive(Debug, Default)]
pub(crate) struct FaultList {
    next_id: u64,
    active: Vec<(FaultId, FaultSpec)>,
}

impl FaultList {
    pub(crate) fn push(&mut self, spec: FaultSpec) -> FaultId {
        self.next_id += 1;
        let id = FaultId(self.next_id);
        if spec.times != Some(0) {
            self.active.push((id, spec));
        }
        id
    }

    pub(crate) fn remove(&mut self, id: FaultId) -> bool {
        let before = self.active.len();
        self.active.retain(|(i, _)| *i != id);
        before != self.active.len()
    }

    pub(crate) fn clear(&mut self) {
        self.active.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.active.len()
    }

    /// The first fault matching the request, using up one of its times.
    pub(crate) fn take(
        &mut self,
        action: Action,
        app: Option<&str>,
        room: Option<&str>,
        task: Option<&str>,
    ) -> Option<Fault> {
        let pos = self.active.iter().position(|(_, s)| {
            s.action.is_none_or(|a| a == action)
                && s.target.as_ref().is_none_or(|t| t.matches(app, room, task))
        })?;
        let spec = &mut self.active[pos].1;
        let fault = spec.fault.clone();
        if let Some(n) = spec.times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.active.remove(pos);
            }
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_fault_wins_and_is_used_up() {
        let mut list = FaultList::default();
        list.push(
            FaultSpec::once(Fault::Throttle)
                .times(2)
                .for_action(Action::GetWebCastTask),
        );
        let id = list.push(
            FaultSpec::always(Fault::MalformedJson).for_target(TaskMatch::task(
                "a",
                "r",
                Some("t"),
            )),
        );
        let rec = Action::GetRecordTask;
        let web = Action::GetWebCastTask;
        assert_eq!(list.take(rec, Some("a"), Some("r"), Some("x")), None);
        assert_eq!(
            list.take(rec, Some("a"), Some("r"), Some("t")),
            Some(Fault::MalformedJson)
        );
        assert_eq!(list.take(web, None, None, None), Some(Fault::Throttle));
        assert_eq!(list.take(web, None, None, None), Some(Fault::Throttle));
        assert_eq!(list.take(web, None, None, None), None);
        assert_eq!(list.len(), 1);
        assert!(list.remove(id));
        assert_eq!(list.len(), 0);
    }
}
