//! The simulator as the vendor's callback sender: each task's lifecycle events, signed with a
//! callback key and POSTed to a URL it is given (loopback only), retried as the vendor retries.
//!
//! Events per task ([`SimTask::callbacks`]):
//! - record task: `RecordStarted` when it starts running (`Code` 0), or at its start with
//!   `Code` 1 when it ends with `StartTaskFailed`; `RecordStopped` with its final
//!   `RecordFileList` once it has ended and its last file stage has come;
//! - webcast task: `WebcastStatusChanged` with `Status` 1 when it runs, and with `Reason`
//!   `StartEventTimeout` when it fails to start. The vendor's web-capture event names are not
//!   confirmed; this one is an assumption that the receiver recognises by shape.
//!
//! Event ids and nonces are derived from the task and the event, so a resent event is a
//! duplicate, as the vendor's retries are.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::task::{SimTask, TaskDetail};
use super::Simulator;
use crate::callbacks::verify::{signature, Signed};
use crate::credentials::Secret;
use crate::model::{status, stop_reason};

/// The `Version` the vendor's deliveries carry.
pub const CALLBACK_VERSION: &str = "2020-12-01";
/// The web-capture event type the simulator sends (an assumption; see the module doc).
pub const WEBCAST_EVENT: &str = "WebcastStatusChanged";

/// One event as the vendor would deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCallback {
    /// When it happens in the simulated world, ms since the epoch.
    pub at_ms: i64,
    pub event_type: String,
    /// `EventData`: a JSON document, sent inside a string.
    pub event_data: String,
    pub event_id: String,
    pub app_id: String,
    /// Four digits.
    pub nonce: String,
}

/// How the nonce field is spelled in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonceSpelling {
    /// `Nonce`, as the 2024 Volcengine pages.
    #[default]
    Nonce,
    /// `Noce`, as the BytePlus and 2023 Volcengine pages.
    Noce,
}

impl SimCallback {
    fn new(task: &SimTask, at_ms: i64, event_type: &str, data: Value) -> SimCallback {
        let digest = Sha256::digest(
            format!(
                "{}/{}/{}/{}/{event_type}/{at_ms}/{data}",
                task.kind(),
                task.app_id,
                task.room_id,
                task.task_id
            )
            .as_bytes(),
        );
        let nonce = u16::from_be_bytes([digest[0], digest[1]]) % 10_000;
        SimCallback {
            at_ms,
            event_type: event_type.into(),
            event_data: data.to_string(),
            event_id: hex::encode(&digest[2..18]),
            app_id: task.app_id.clone(),
            nonce: format!("{nonce:04}"),
        }
    }

    /// `EventTime`: RFC 3339, UTC.
    pub fn event_time(&self) -> String {
        let nanos = i128::from(self.at_ms) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
    }

    /// The delivery body, signed with `key`.
    pub fn body(&self, key: &Secret, spelling: NonceSpelling) -> Vec<u8> {
        let event_time = self.event_time();
        let signed = Signed {
            event_type: &self.event_type,
            event_data: &self.event_data,
            event_time: &event_time,
            event_id: &self.event_id,
            app_id: &self.app_id,
            version: CALLBACK_VERSION,
            nonce: &self.nonce,
        };
        let nonce_name = match spelling {
            NonceSpelling::Nonce => "Nonce",
            NonceSpelling::Noce => "Noce",
        };
        let mut body = serde_json::Map::new();
        body.insert("EventType".into(), json!(self.event_type));
        body.insert("EventData".into(), json!(self.event_data));
        body.insert("EventTime".into(), json!(event_time));
        body.insert("EventId".into(), json!(self.event_id));
        body.insert("AppId".into(), json!(self.app_id));
        body.insert("Version".into(), json!(CALLBACK_VERSION));
        body.insert(nonce_name.into(), json!(self.nonce));
        body.insert("Signature".into(), json!(signature(&signed, key)));
        Value::Object(body).to_string().into_bytes()
    }
}

impl SimTask {
    /// This task's lifecycle events, in time order (see the module doc).
    pub fn callbacks(&self) -> Vec<SimCallback> {
        let ids = json!({
            "AppId": self.app_id,
            "BusinessId": "",
            "RoomId": self.room_id,
            "TaskId": self.task_id,
        });
        let with = |extra: Value| {
            let mut data = ids.clone();
            if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
                d.extend(e);
            }
            data
        };
        let failed_start = self
            .end
            .as_ref()
            .filter(|e| e.stop_reason == stop_reason::START_TASK_FAILED);
        let running_at = self.start_ms.saturating_add(self.pending_ms);
        let mut out = Vec::new();
        match &self.detail {
            TaskDetail::Record(plan) => {
                if failed_start.is_some() {
                    out.push(SimCallback::new(
                        self,
                        self.start_ms,
                        "RecordStarted",
                        with(json!({"Code": 1, "ErrorMessage": "start task failed"})),
                    ));
                    return out;
                }
                out.push(SimCallback::new(
                    self,
                    running_at,
                    "RecordStarted",
                    with(json!({"Code": 0, "ErrorMessage": ""})),
                ));
                if let Some(end) = &self.end {
                    let last = plan.file_stages.last();
                    let at = last.map_or(end.at_ms, |s| s.at_ms.max(end.at_ms));
                    let files: Vec<Value> = last
                        .map(|s| s.files.as_slice())
                        .unwrap_or_default()
                        .iter()
                        .map(|f| {
                            json!({
                                "Vid": f.vid.as_deref().unwrap_or(""),
                                "ObjectKey": f.object_key.as_deref().unwrap_or(""),
                                "Duration": f.duration_ms,
                                "Size": f.size_bytes,
                                "StartTime": f.start_ms,
                                "AudioCodec": f.audio_codec,
                                "EncryptionType": 0,
                            })
                        })
                        .collect();
                    let code = i64::from(end.status == status::FAILED);
                    out.push(SimCallback::new(
                        self,
                        at,
                        "RecordStopped",
                        with(json!({"Code": code, "RecordFileList": files})),
                    ));
                }
            }
            TaskDetail::Webcast(_) => match failed_start {
                Some(end) => out.push(SimCallback::new(
                    self,
                    end.at_ms,
                    WEBCAST_EVENT,
                    with(json!({"Status": status::FAILED, "Reason": "StartEventTimeout"})),
                )),
                None => out.push(SimCallback::new(
                    self,
                    running_at,
                    WEBCAST_EVENT,
                    with(json!({"Status": 1})),
                )),
            },
        }
        out
    }
}

impl Simulator {
    /// Every task's events with `from_ms < at_ms <= to_ms`, in time order.
    pub fn callbacks_between(&self, from_ms: i64, to_ms: i64) -> Vec<SimCallback> {
        let mut out: Vec<SimCallback> = super::read(&self.tasks)
            .by_key
            .values()
            .flat_map(SimTask::callbacks)
            .filter(|c| c.at_ms > from_ms && c.at_ms <= to_ms)
            .collect();
        out.sort_by(|a, b| (a.at_ms, &a.event_id).cmp(&(b.at_ms, &b.event_id)));
        out
    }
}

/// Why a callback URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackUrlError {
    #[error("the callback URL {0:?} is not a valid http URL")]
    Invalid(String),
    #[error("the callback URL {0:?} is not on a loopback address; the simulator sends only to 127.0.0.0/8, ::1 or localhost")]
    NotLoopback(String),
}

/// Sends signed deliveries to one URL, retrying as the vendor does: up to `retries` more
/// times after an answer other than 200 or no answer within `timeout`.
#[derive(Debug, Clone)]
pub struct CallbackSender {
    client: reqwest::Client,
    url: reqwest::Url,
    key: Secret,
    /// The nonce spelling used (alternate between senders to exercise both).
    pub spelling: NonceSpelling,
    /// Further attempts after a failed one (the vendor's: 2).
    pub retries: u32,
    /// How long an answer may take (the vendor's: 5 s).
    pub timeout: Duration,
}

/// What one delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The last answer's status, `None` when no attempt was answered.
    pub status: Option<u16>,
    pub attempts: u32,
}

impl CallbackSender {
    /// A sender to `url` (http, loopback only) signing with `key`.
    pub fn new(url: &str, key: Secret) -> Result<CallbackSender, CallbackUrlError> {
        let parsed =
            reqwest::Url::parse(url).map_err(|_| CallbackUrlError::Invalid(url.to_owned()))?;
        if parsed.scheme() != "http" {
            return Err(CallbackUrlError::Invalid(url.to_owned()));
        }
        let loopback = match parsed.host_str() {
            Some("localhost") => true,
            Some(host) => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        };
        if !loopback {
            return Err(CallbackUrlError::NotLoopback(url.to_owned()));
        }
        Ok(CallbackSender {
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            url: parsed,
            key,
            spelling: NonceSpelling::Nonce,
            retries: 2,
            timeout: Duration::from_secs(5),
        })
    }

    /// POSTs `event`, retrying as the vendor does.
    pub async fn send(&self, event: &SimCallback) -> Delivery {
        let body = event.body(&self.key, self.spelling);
        let mut delivery = Delivery {
            status: None,
            attempts: 0,
        };
        while delivery.attempts <= self.retries {
            delivery.attempts += 1;
            let answer = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .timeout(self.timeout)
                .body(body.clone())
                .send()
                .await;
            match answer {
                Ok(r) => {
                    delivery.status = Some(r.status().as_u16());
                    if r.status().as_u16() == 200 {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "simulator: callback delivery failed");
                }
            }
        }
        delivery
    }
}

/// Sends every event as it comes due on the simulator's clock: those after `since_ms` at once
/// (a world already running), then each new one within `every`. Runs until `shutdown`.
pub async fn run_callbacks(
    sim: Arc<Simulator>,
    sender: CallbackSender,
    since_ms: i64,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut last = since_ms;
    loop {
        let now = sim.clock().now_ms();
        for event in sim.callbacks_between(last, now) {
            sender.send(&event).await;
        }
        last = now;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::{handle, Action, Dedup, Outcome, Policy};
    use crate::sim::task::SimFile;
    use crate::state::EventRetention;

    fn policy() -> Policy {
        Policy {
            key: Secret::new("sim-key"),
            app_ids: None,
            labels: Default::default(),
        }
    }

    #[test]
    fn lifecycle_events_verify_and_carry_the_final_files() {
        let f = SimFile::object("a/1.mp4", 1_000, 9_000, "u1");
        let task = SimTask::record("app", "room", "task", 1_000)
            .pending_for(500)
            .ends(10_000, stop_reason::IDLE_TIME_OUT)
            .files_at(12_000, vec![f.clone().size(10)])
            .files_at(15_000, vec![f.clone()]);
        let events = task.callbacks();
        let times: Vec<(i64, &str)> = events
            .iter()
            .map(|e| (e.at_ms, e.event_type.as_str()))
            .collect();
        assert_eq!(times, [(1_500, "RecordStarted"), (15_000, "RecordStopped")]);
        let mut dedup = Dedup::new(EventRetention::default());
        let mut actions = Vec::new();
        for (e, spelling) in events
            .iter()
            .zip([NonceSpelling::Noce, NonceSpelling::Nonce])
        {
            let d = handle(
                &policy(),
                &mut dedup,
                &e.body(&Secret::new("sim-key"), spelling),
                0,
            );
            assert_eq!(d.outcome, Outcome::Accepted, "{}", d.reason);
            actions.push(d.action);
        }
        let Action::ApplyFilesAndPoll { files, .. } = &actions[1] else {
            panic!("{:?}", actions[1]);
        };
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].size_bytes, Some(f.size_bytes));
        assert_eq!(files[0].object_key.as_deref(), Some("a/1.mp4"));
        assert_eq!(events[0].event_time(), "1970-01-01T00:00:01.5Z");
        // The same event twice has the same id: the receiver sees the duplicate.
        assert_eq!(task.callbacks()[0].event_id, events[0].event_id);
    }

    #[test]
    fn failed_starts_and_webcast() {
        let failed =
            SimTask::record("app", "room", "t", 0).ends(100, stop_reason::START_TASK_FAILED);
        let events = failed.callbacks();
        assert_eq!(events.len(), 1);
        let d = handle(
            &policy(),
            &mut Dedup::new(EventRetention::default()),
            &events[0].body(&Secret::new("sim-key"), NonceSpelling::Nonce),
            0,
        );
        assert!(matches!(
            d.action,
            Action::RegisterAndPoll {
                start_failed: true,
                ..
            }
        ));
        let web = SimTask::webcast("app", "room", "w", 50).callbacks();
        assert_eq!((web.len(), web[0].at_ms), (1, 50));
        let d = handle(
            &policy(),
            &mut Dedup::new(EventRetention::default()),
            &web[0].body(&Secret::new("sim-key"), NonceSpelling::Nonce),
            0,
        );
        assert_eq!(
            d.action.target().map(|t| t.key.kind),
            Some(crate::model::Kind::Webcast)
        );
    }

    #[test]
    fn only_loopback_urls() {
        let key = || Secret::new("k");
        assert!(CallbackSender::new("http://127.0.0.1:9/cb", key()).is_ok());
        assert!(CallbackSender::new("http://127.8.9.1:9/cb", key()).is_ok());
        assert!(CallbackSender::new("http://[::1]:9/cb", key()).is_ok());
        assert!(CallbackSender::new("http://localhost:9/cb", key()).is_ok());
        for bad in [
            "http://10.0.0.1/cb",
            "http://example.com/cb",
            "https://127.0.0.1/cb",
            "nope",
        ] {
            assert!(CallbackSender::new(bad, key()).is_err(), "{bad}");
        }
    }
}
