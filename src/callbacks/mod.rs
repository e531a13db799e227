//! RTC's event callbacks: tasks discovered the moment they start, their files the moment they
//! end, with no target list to keep.
//!
//! RTC POSTs a signed JSON envelope for each event; a delivery is judged by [`handle`], a pure
//! function of the body, the [`Policy`] (key and allowed apps), the [`Dedup`] memory and the
//! time, into a [`Decision`]: the HTTP answer ([`Outcome::status`]), the label to count, the
//! event id to persist, and the [`Action`] for the exporter to queue. Nothing here waits on I/O,
//! so an answer takes microseconds and the vendor's 5-second deadline is never at risk.
//! [`Receiver`] puts the pieces together behind one lock for the HTTP handler to call.
//!
//! - [`verify`] — the signature: sorted values and key, concatenated, SHA-256, hex.
//! - [`event`] — the body read defensively into an [`event::Envelope`] and an [`Event`].
//! - [`dedup`] — bounded `EventId` memory, seeded from the store after a restart.
//! - [`metrics`] — `volcengine_rtc_callbacks_total{event_type,outcome}`, labels bounded.
//! - [`settings`] — the `callbacks:` config section and its checks.
//!
//! Order of checks, each answered at the first failure: size (413), envelope (400), signature
//! (401), app (403), `EventId` present (400), duplicate (200, nothing done), event data (400
//! for the two documented types, otherwise unknown shapes are data: 200, counted, ignored).
//! A body forwarded unchanged by another service verifies as the vendor's own: no header is
//! used.

pub mod dedup;
pub mod event;
pub mod metrics;
pub mod settings;
pub mod verify;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::credentials::Secret;
use crate::model::{Kind, RecordFile, Target, TargetKey};

pub use dedup::Dedup;
pub use event::{Event, TaskIds, MAX_BODY_BYTES};
pub use metrics::CallbackMetrics;
pub use settings::CallbackSettings;

/// How one delivery was judged: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Accepted,
    Duplicate,
    BadSignature,
    UnknownApp,
    TooLarge,
    Malformed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::BadSignature => "bad_signature",
            Outcome::UnknownApp => "unknown_app",
            Outcome::TooLarge => "too_large",
            Outcome::Malformed => "malformed",
        }
    }

    /// The HTTP status to answer: 200 for accepted and duplicate (the vendor must stop
    /// retrying), 401, 403, 413, 400.
    pub fn status(self) -> u16 {
        match self {
            Outcome::Accepted | Outcome::Duplicate => 200,
            Outcome::BadSignature => 401,
            Outcome::UnknownApp => 403,
            Outcome::TooLarge => 413,
            Outcome::Malformed => 400,
        }
    }
}

/// What the exporter should do about an accepted delivery. Every variant with a target means
/// "register it with source `callback` (and the configured labels) unless it is known".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (refused, duplicate, or an event that names no task).
    Nothing,
    /// Poll the target at once: a task started (`RecordStarted`, a web-capture event). With
    /// `start_failed` (`Code` 1) the poll must not wait: `StartTaskFailed` has to page soon.
    RegisterAndPoll { target: Target, start_failed: bool },
    /// `RecordStopped`: put `files` into the target's snapshot now, then schedule a poll for
    /// the Status and StopReason the event does not carry.
    ApplyFilesAndPoll {
        target: Target,
        files: Vec<RecordFile>,
    },
    /// Schedule a poll (an upload event).
    Poll { target: Target },
}

impl Action {
    /// The target acted on, if any.
    #[cfg(test)]
    pub(crate) fn target(&self) -> Option<&Target> {
        match self {
            Action::Nothing => None,
            Action::RegisterAndPoll { target, .. }
            | Action::ApplyFilesAndPoll { target, .. }
            | Action::Poll { target } => Some(target),
        }
    }
}

/// One judged delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// `EventType` once the signature held; `None` before (count it as `unverified`).
    pub event_type: Option<String>,
    /// The id to persist (`state::Change::Event`, in [`Dedup::key`] form) for an accepted
    /// delivery.
    pub remember: Option<String>,
    pub action: Action,
    /// Why it was refused, for the answer body and a debug log; never holds the key or the
    /// body.
    pub reason: String,
}

impl Decision {
    fn refuse(outcome: Outcome, event_type: Option<&str>, reason: impl Into<String>) -> Decision {
        Decision {
            outcome,
            event_type: event_type.map(str::to_owned),
            remember: None,
            action: Action::Nothing,
            reason: reason.into(),
        }
    }

    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        self.outcome.status()
    }
}

/// What deliveries are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub key: Secret,
    /// `None`: any app.
    pub app_ids: Option<BTreeSet<String>>,
    /// Added to discovered targets (sorted by name).
    pub labels: Vec<(String, String)>,
}

impl From<&CallbackSettings> for Policy {
    fn from(s: &CallbackSettings) -> Policy {
        Policy {
            key: s.key.clone(),
            app_ids: s.app_ids.clone(),
            labels: s.labels.clone(),
        }
    }
}

/// Judges one delivery (see the module doc for the order of checks). A new accepted event id
/// is recorded in `dedup` at `now_ms`.
pub fn handle(policy: &Policy, dedup: &mut Dedup, body: &[u8], now_ms: i64) -> Decision {
    if body.len() > MAX_BODY_BYTES {
        return Decision::refuse(
            Outcome::TooLarge,
            None,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    let envelope = match event::parse_envelope(body) {
        Ok(e) => e,
        Err(e) => return Decision::refuse(Outcome::Malformed, None, e.0),
    };
    let Some(signature) = envelope.signature.as_deref() else {
        return Decision::refuse(Outcome::BadSignature, None, "the body has no `Signature`");
    };
    // Both spellings are tried when a body carries both; a body without a nonce is checked
    // with an empty one.
    let nonces: Vec<&str> = match envelope.nonces.as_slice() {
        [] => vec![""],
        some => some.iter().map(String::as_str).collect(),
    };
    let signed = nonces.iter().any(|nonce| {
        let values = verify::Signed {
            event_type: &envelope.event_type,
            event_data: &envelope.event_data,
            event_time: &envelope.event_time,
            event_id: &envelope.event_id,
            app_id: &envelope.app_id,
            version: &envelope.version,
            nonce,
        };
        verify::verify(&values, &policy.key, signature)
    });
    if !signed {
        return Decision::refuse(
            Outcome::BadSignature,
            None,
            "the signature does not match; check that the callback key is the one in the RTC console",
        );
    }
    let event_type = Some(envelope.event_type.as_str());
    if let Some(allowed) = &policy.app_ids {
        if !allowed.contains(&envelope.app_id) {
            return Decision::refuse(
                Outcome::UnknownApp,
                event_type,
                "the app is not in `callbacks.app_ids`",
            );
        }
    }
    if envelope.event_id.is_empty() {
        return Decision::refuse(Outcome::Malformed, event_type, "the body has no `EventId`");
    }
    if dedup.contains(&envelope.event_id, now_ms) {
        let mut d = Decision::refuse(Outcome::Duplicate, event_type, "already received");
        d.reason.clear();
        return d;
    }
    let event = match event::parse_event(&envelope) {
        Ok(e) => e,
        Err(e) => return Decision::refuse(Outcome::Malformed, event_type, e.0),
    };
    dedup.check_and_insert(&envelope.event_id, now_ms);
    Decision {
        outcome: Outcome::Accepted,
        event_type: event_type.map(str::to_owned),
        remember: Some(Dedup::key(&envelope.event_id)),
        action: action(event, &policy.labels),
        reason: String::new(),
    }
}

fn target(kind: Kind, task: TaskIds, labels: &[(String, String)]) -> Target {
    Target {
        key: TargetKey {
            kind,
            app_id: task.app_id,
            room_id: task.room_id,
            task_id: Some(task.task_id),
        },
        labels: labels.to_vec().into(),
    }
}

/// What an event asks of the exporter.
pub fn action(event: Event, labels: &[(String, String)]) -> Action {
    match event {
        Event::RecordStarted { task, code, .. } => Action::RegisterAndPoll {
            target: target(Kind::Record, task, labels),
            start_failed: code == 1,
        },
        Event::RecordStopped { task, files, .. } => Action::ApplyFilesAndPoll {
            target: target(Kind::Record, task, labels),
            files,
        },
        Event::RecordUpload { task, .. } => Action::Poll {
            target: target(Kind::Record, task, labels),
        },
        Event::WebCapture { task, .. } => Action::RegisterAndPoll {
            target: target(Kind::Webcast, task, labels),
            start_failed: false,
        },
        Event::Unknown => Action::Nothing,
    }
}

/// How [`Receiver::reread_key`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyReread {
    /// The key is not from a file, or the file still holds the key in use.
    Unchanged,
    /// The file holds a new key, now in use.
    Rotated,
    /// The file changed but two reads did not agree yet (a writer half-way); tried again later.
    Unsettled,
    /// The file is unreadable, empty or holds more than a key: the key in use is kept.
    Failed(String),
}

/// [`handle`] with its state and counting: what the HTTP handler calls. The policy can be
/// replaced while deliveries come in: by a reload ([`Receiver::set_settings`]) and by a new key
/// in `secret_key_file` ([`Receiver::reread_key`]).
#[derive(Debug)]
pub struct Receiver {
    policy: RwLock<Arc<Policy>>,
    /// `secret_key_file`, when the key comes from one.
    key_file: RwLock<Option<PathBuf>>,
    /// The key file is in a broken state already reported.
    key_failing: AtomicBool,
    dedup: Mutex<Dedup>,
    metrics: CallbackMetrics,
}

impl Receiver {
    /// A receiver remembering what `dedup` holds (see [`Dedup::seeded`]).
    pub fn new(policy: Policy, dedup: Dedup) -> Receiver {
        Receiver {
            policy: RwLock::new(Arc::new(policy)),
            key_file: RwLock::new(None),
            key_failing: AtomicBool::new(false),
            dedup: Mutex::new(dedup),
            metrics: CallbackMetrics::new(),
        }
    }

    /// The receiver for checked settings: their policy, and their key file re-read by
    /// [`Receiver::reread_key`].
    pub fn for_settings(settings: &CallbackSettings, dedup: Dedup) -> Receiver {
        let r = Receiver::new(Policy::from(settings), dedup);
        r.set_key_file(settings);
        r
    }

    /// A reload's settings: key, apps and labels apply to the next delivery.
    pub fn set_settings(&self, settings: &CallbackSettings) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Policy::from(settings));
        self.set_key_file(settings);
        self.key_failing.store(false, Ordering::Relaxed);
    }

    fn set_key_file(&self, settings: &CallbackSettings) {
        let file = match &settings.key_source {
            settings::KeySource::File(path) => Some(path.clone()),
            _ => None,
        };
        *self.key_file.write().unwrap_or_else(|p| p.into_inner()) = file;
    }

    /// Reads `secret_key_file` again and puts a new key in use once two reads agree. A file
    /// that became unreadable or empty keeps the key in use: logged once per broken state
    /// (the file and the fix, never the key) and counted as a `failure`.
    pub fn reread_key(&self) -> KeyReread {
        let Some(path) = self
            .key_file
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return KeyReread::Unchanged;
        };
        let key = match settings::read_key_file(&path) {
            Ok(key) => key,
            Err(message) => {
                if !self.key_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %message,
                        "callbacks: cannot re-read the callback key; the key in use is kept until the file holds a key again"
                    );
                    self.metrics.count_key_reload(false);
                }
                return KeyReread::Failed(message);
            }
        };
        if self.key_failing.swap(false, Ordering::Relaxed) {
            tracing::info!(file = %path.display(), "callbacks: the callback key file is readable again");
        }
        let current = self.policy();
        if key == current.key {
            return KeyReread::Unchanged;
        }
        // A writer that truncates, then writes, is not caught half-way.
        if settings::read_key_file(&path).ok().as_ref() != Some(&key) {
            return KeyReread::Unsettled;
        }
        let mut next = (*current).clone();
        next.key = key;
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        self.metrics.count_key_reload(true);
        tracing::info!(file = %path.display(), "callbacks: the callback key changed; the new key is in use");
        KeyReread::Rotated
    }

    /// Judges and counts one delivery; logs each undocumented event type once.
    pub fn receive(&self, body: &[u8], now_ms: i64) -> Decision {
        let policy = self.policy();
        let decision = {
            let mut dedup = self.dedup.lock().unwrap_or_else(|p| p.into_inner());
            handle(&policy, &mut dedup, body, now_ms)
        };
        let label = match &decision.event_type {
            None => metrics::UNVERIFIED.to_owned(),
            Some(t) => {
                let (label, first) = self.metrics.event_type_label(t);
                if first {
                    tracing::info!(
                        event_type = %label,
                        "callbacks: an event type this exporter does not act on was received; it is counted and otherwise ignored"
                    );
                }
                label
            }
        };
        self.metrics.count(&label, decision.outcome);
        if decision.outcome.status() != 200 {
            tracing::debug!(outcome = decision.outcome.as_str(), reason = %decision.reason, "callbacks: delivery refused");
        }
        decision
    }

    pub fn metrics(&self) -> &CallbackMetrics {
        &self.metrics
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EventRetention;
    use serde_json::json;

    const KEY: &str = "cb-key-123";

    fn policy() -> Policy {
        Policy {
            key: Secret::new(KEY),
            app_ids: None,
            labels: vec![("env".into(), "prod".into())],
        }
    }

    /// A body signed as the vendor signs, with the nonce under `nonce_name`.
    fn body(
        event_type: &str,
        event_id: &str,
        data: serde_json::Value,
        nonce_name: &str,
    ) -> Vec<u8> {
        body_with_key(event_type, event_id, data, nonce_name, KEY)
    }

    fn body_with_key(
        event_type: &str,
        event_id: &str,
        data: serde_json::Value,
        nonce_name: &str,
        key: &str,
    ) -> Vec<u8> {
        let data = data.to_string();
        let values = verify::Signed {
            event_type,
            event_data: &data,
            event_time: "2024-01-01T00:00:00Z",
            event_id,
            app_id: "app1",
            version: "2020-12-01",
            nonce: "4821",
        };
        let sig = verify::signature(&values, &Secret::new(key));
        let mut o = serde_json::Map::new();
        o.insert("EventType".into(), json!(event_type));
        o.insert("EventData".into(), json!(data));
        o.insert("EventTime".into(), json!("2024-01-01T00:00:00Z"));
        o.insert("EventId".into(), json!(event_id));
        o.insert("AppId".into(), json!("app1"));
        o.insert("Version".into(), json!("2020-12-01"));
        o.insert(nonce_name.into(), json!("4821"));
        o.insert("Signature".into(), json!(sig));
        serde_json::Value::Object(o).to_string().into_bytes()
    }

    fn dedup() -> Dedup {
        Dedup::new(EventRetention::default())
    }

    fn started(code: i64) -> serde_json::Value {
        json!({"AppId":"app1","BusinessId":"","RoomId":"r1","TaskId":"t1","Code":code,"ErrorMessage":""})
    }

    fn key(kind: Kind) -> TargetKey {
        TargetKey {
            kind,
            app_id: "app1".into(),
            room_id: "r1".into(),
            task_id: Some("t1".into()),
        }
    }

    #[test]
    fn record_started_registers_and_polls_under_both_nonce_spellings() {
        let mut d = dedup();
        for (id, spelling) in [("e1", "Nonce"), ("e2", "Noce")] {
            let decision = handle(
                &policy(),
                &mut d,
                &body("RecordStarted", id, started(0), spelling),
                5,
            );
            assert_eq!(
                decision.outcome,
                Outcome::Accepted,
                "{spelling}: {}",
                decision.reason
            );
            assert_eq!(decision.status(), 200);
            assert_eq!(decision.remember.as_deref(), Some(id));
            assert_eq!(decision.event_type.as_deref(), Some("RecordStarted"));
            assert_eq!(
                decision.action,
                Action::RegisterAndPoll {
                    target: Target {
                        key: key(Kind::Record),
                        labels: vec![("env".into(), "prod".into())].into()
                    },
                    start_failed: false
                }
            );
        }
        let failed = handle(
            &policy(),
            &mut d,
            &body("RecordStarted", "e3", started(1), "Nonce"),
            5,
        );
        assert!(matches!(
            failed.action,
            Action::RegisterAndPoll {
                start_failed: true,
                ..
            }
        ));
    }

    #[test]
    fn record_stopped_applies_files() {
        let data = json!({"AppId":"app1","RoomId":"r1","TaskId":"t1","Code":0,
            "RecordFileList":[{"Vid":"v1","Duration":1000,"Size":2000,"StartTime":3000}]});
        let decision = handle(
            &policy(),
            &mut dedup(),
            &body("RecordStopped", "e1", data, "Nonce"),
            0,
        );
        let Action::ApplyFilesAndPoll { target, files } = decision.action else {
            panic!("{:?}", decision.action);
        };
        assert_eq!(target.key, key(Kind::Record));
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].vid.as_deref(), Some("v1"));
        assert_eq!(files[0].size_bytes, Some(2000));
    }

    #[test]
    fn webcast_upload_and_unknown_events() {
        let mut d = dedup();
        let web = handle(
            &policy(),
            &mut d,
            &body(
                "WebcastStarted",
                "w1",
                json!({"RoomId":"r1","TaskId":"t1","Status":1}),
                "Nonce",
            ),
            0,
        );
        assert_eq!(
            web.action.target().map(|t| t.key.clone()),
            Some(key(Kind::Webcast))
        );
        let upload = handle(
            &policy(),
            &mut d,
            &body("RecordUploadDone", "u1", started(0), "Nonce"),
            0,
        );
        assert!(matches!(upload.action, Action::Poll { .. }));
        let unknown = handle(
            &policy(),
            &mut d,
            &body("UserJoinRoom", "x1", json!({"UserId":"u"}), "Nonce"),
            0,
        );
        assert_eq!(
            (unknown.outcome, unknown.status()),
            (Outcome::Accepted, 200)
        );
        assert_eq!(unknown.action, Action::Nothing);
        assert_eq!(unknown.event_type.as_deref(), Some("UserJoinRoom"));
    }

    #[test]
    fn duplicates_are_answered_200_and_do_nothing() {
        let mut d = dedup();
        let b = body("RecordStarted", "e1", started(0), "Nonce");
        assert_eq!(handle(&policy(), &mut d, &b, 0).outcome, Outcome::Accepted);
        let again = handle(&policy(), &mut d, &b, 1_000);
        assert_eq!((again.outcome, again.status()), (Outcome::Duplicate, 200));
        assert_eq!((again.action, again.remember), (Action::Nothing, None));
        // After a restart, seeded from what was persisted.
        let persisted = [("e1".to_string(), 0)].into_iter().collect();
        let mut restarted = Dedup::seeded(EventRetention::default(), &persisted, 2_000);
        assert_eq!(
            handle(&policy(), &mut restarted, &b, 2_000).outcome,
            Outcome::Duplicate
        );
    }

    #[test]
    fn refusals_and_their_statuses() {
        let mut d = dedup();
        let good = body("RecordStarted", "e1", started(0), "Nonce");
        let cases: Vec<(Vec<u8>, Outcome, u16)> = vec![
            (
                body_with_key("RecordStarted", "e1", started(0), "Nonce", "wrong"),
                Outcome::BadSignature,
                401,
            ),
            (
                String::from_utf8_lossy(&good)
                    .replace("\"t1", "\"t2")
                    .into_bytes(),
                Outcome::BadSignature,
                401,
            ),
            (
                br#"{"EventType":"RecordStarted"}"#.to_vec(),
                Outcome::BadSignature,
                401,
            ),
            (b"not json".to_vec(), Outcome::Malformed, 400),
            (vec![b' '; MAX_BODY_BYTES + 1], Outcome::TooLarge, 413),
            (
                body("RecordStarted", "", started(0), "Nonce"),
                Outcome::Malformed,
                400,
            ),
            (
                body("RecordStarted", "e9", json!({"RoomId":"r1"}), "Nonce"),
                Outcome::Malformed,
                400,
            ),
        ];
        for (b, outcome, status) in cases {
            let decision = handle(&policy(), &mut d, &b, 0);
            assert_eq!(
                (decision.outcome, decision.status()),
                (outcome, status),
                "{}",
                decision.reason
            );
            assert_eq!(decision.action, Action::Nothing);
            assert!(!decision.reason.contains(KEY));
        }
        // Nothing refused was remembered: the good delivery is still new.
        assert_eq!(
            handle(&policy(), &mut d, &good, 0).outcome,
            Outcome::Accepted
        );
        // Exactly 64 KiB is still read.
        let mut padded = good.clone();
        padded.resize(MAX_BODY_BYTES, b' ');
        assert_eq!(
            handle(&policy(), &mut dedup(), &padded, 0).outcome,
            Outcome::Accepted
        );
    }

    #[test]
    fn app_ids_restrict_after_the_signature() {
        let mut p = policy();
        p.app_ids = Some(["other".to_string()].into());
        let b = body("RecordStarted", "e1", started(0), "Nonce");
        let decision = handle(&p, &mut dedup(), &b, 0);
        assert_eq!(
            (decision.outcome, decision.status()),
            (Outcome::UnknownApp, 403)
        );
        p.app_ids = Some(["app1".to_string()].into());
        assert_eq!(handle(&p, &mut dedup(), &b, 0).outcome, Outcome::Accepted);
    }

    #[test]
    fn receiver_counts_with_bounded_labels() {
        let r = Receiver::new(policy(), dedup());
        let b = body("RecordStarted", "e1", started(0), "Nonce");
        assert_eq!(r.receive(&b, 0).status(), 200);
        assert_eq!(r.receive(&b, 0).status(), 200);
        assert_eq!(r.receive(b"{}", 0).status(), 401);
        assert_eq!(
            r.receive(&body("Odd", "o1", json!({}), "Noce"), 0).status(),
            200
        );
        let m = r.metrics();
        let n = |label: &str, o: Outcome| m.total.with_label_values(&[label, o.as_str()]).get();
        assert_eq!(n("RecordStarted", Outcome::Accepted), 1);
        assert_eq!(n("RecordStarted", Outcome::Duplicate), 1);
        assert_eq!(n(metrics::UNVERIFIED, Outcome::BadSignature), 1);
        assert_eq!(n("Odd", Outcome::Accepted), 1);
        assert!(!format!("{r:?}").contains(KEY));
    }

    #[test]
    fn the_key_file_is_followed_and_a_broken_one_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("callback-key");
        std::fs::write(&file, format!("{KEY}\n")).unwrap();
        let settings = CallbackSettings {
            key: Secret::new(KEY),
            key_source: settings::KeySource::File(file.clone()),
            path: "/cb".into(),
            app_ids: None,
            labels: Vec::new(),
            active_interval: settings::DEFAULT_ACTIVE_INTERVAL,
        };
        let r = Receiver::for_settings(&settings, dedup());
        let old = |id: &str| body("RecordStarted", id, started(0), "Nonce");
        let new = |id: &str| body_with_key("RecordStarted", id, started(0), "Nonce", "new-key-456");
        assert_eq!(r.reread_key(), KeyReread::Unchanged);
        assert_eq!(r.receive(&old("e1"), 0).status(), 200);
        assert_eq!(r.receive(&new("e2"), 0).status(), 401);
        // Kubernetes-style: the file now holds another key.
        std::fs::write(&file, "new-key-456").unwrap();
        assert_eq!(r.reread_key(), KeyReread::Rotated);
        assert_eq!(r.receive(&new("e3"), 0).status(), 200);
        assert_eq!(r.receive(&old("e4"), 0).status(), 401);
        assert_eq!(
            r.metrics()
                .key_reloads
                .with_label_values(&["success"])
                .get(),
            1
        );
        assert!(!format!("{r:?}").contains("new-key-456"));
        // Emptied, then gone: the key in use stays, one failure counted for the broken state.
        std::fs::write(&file, "  \n").unwrap();
        assert!(
            matches!(r.reread_key(), KeyReread::Failed(m) if m.contains("is empty") && !m.contains("new-key"))
        );
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(r.reread_key(), KeyReread::Failed(_)));
        assert_eq!(
            r.metrics()
                .key_reloads
                .with_label_values(&["failure"])
                .get(),
            1
        );
        assert_eq!(r.receive(&new("e5"), 0).status(), 200);
        // Back with the same key: nothing to rotate; a later break is counted again.
        std::fs::write(&file, "new-key-456").unwrap();
        assert_eq!(r.reread_key(), KeyReread::Unchanged);
        std::fs::write(&file, "").unwrap();
        assert!(matches!(r.reread_key(), KeyReread::Failed(_)));
        assert_eq!(
            r.metrics()
                .key_reloads
                .with_label_values(&["failure"])
                .get(),
            2
        );
        // A reload's settings (inline key now) replace the policy and stop the file re-reads.
        let inline = CallbackSettings {
            key: Secret::new(KEY),
            key_source: settings::KeySource::Inline,
            app_ids: Some(["app1".to_string()].into()),
            ..settings
        };
        r.set_settings(&inline);
        assert_eq!(r.reread_key(), KeyReread::Unchanged);
        assert_eq!(r.receive(&old("e6"), 0).status(), 200);
    }
}
