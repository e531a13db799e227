//! Log de-duplication: the exporter logs changes, not every poll. A target going down is
//! logged once (and its recovery once); authentication failing is logged once per action
//! (the scheduler's [`crate::scheduler::AuthGate`] keeps those failures from becoming a
//! request storm), and its return once; a task's end once. Every per-target event carries the
//! target's kind, app_id, room_id and task_id as fields.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::model::{Action, Outcome, PerAction, Target, TaskSnapshot};
use crate::targets::table::TargetId;
use crate::volc::parse::ApiError;

/// A log event about one target: its kind, app_id, room_id and task_id as fields, then the
/// event's own fields and message.
macro_rules! target_event {
    ($level:ident, $target:expr, $($rest:tt)+) => {
        tracing::event!(
            tracing::Level::$level,
            kind = %$target.key.kind,
            app_id = %$target.key.app_id,
            room_id = %$target.key.room_id,
            task_id = $target.key.task_id.as_deref().unwrap_or(""),
            $($rest)+
        )
    };
}

/// Remembers what was last logged per target and per action, so each change is logged once.
pub struct StateLog {
    up: Mutex<Vec<Option<bool>>>,
    auth_failing: PerAction<AtomicBool>,
}

impl StateLog {
    /// For `n` targets, none seen yet.
    pub fn new(n: usize) -> Self {
        StateLog {
            up: Mutex::new(vec![None; n]),
            auth_failing: PerAction::default(),
        }
    }

    fn set(&self, id: TargetId, up: bool) -> Option<bool> {
        let mut v = self.up.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() <= id {
            v.resize(id + 1, None);
        }
        v.get_mut(id).and_then(|slot| slot.replace(up))
    }

    /// Target `id` was removed: a target given its id later starts unseen.
    pub fn forget(&self, id: TargetId) {
        let mut v = self.up.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = v.get_mut(id) {
            *slot = None;
        }
    }

    /// A poll of target `id` succeeded.
    pub fn success(&self, id: TargetId, target: &Target, action: Action) {
        if self.auth_failing[action].swap(false, Ordering::SeqCst) {
            tracing::info!(action = %action, "authentication works again");
        }
        if self.set(id, true) == Some(false) {
            target_event!(INFO, target, "target recovered");
        }
    }

    /// A poll of target `id` failed.
    pub fn failure(&self, id: TargetId, target: &Target, err: &ApiError) {
        let action = target.key.kind.action();
        if err.outcome == Outcome::AuthError {
            if !self.auth_failing[action].swap(true, Ordering::SeqCst) {
                tracing::error!(
                    action = %action,
                    code = err.code.as_deref().unwrap_or(""),
                    error = %err,
                    "authentication failed: check the access key id and secret, the region, and the \
                     clock (signatures are valid for 15 minutes); polling of this action is held, \
                     one probe at a time with growing pauses, until a request is accepted"
                );
            }
            self.set(id, false);
            return;
        }
        let before = self.set(id, false);
        if before == Some(false) {
            return;
        }
        if err.outcome == Outcome::NotFound {
            target_event!(
                INFO,
                target,
                "task not found (not started yet, or started over 72 h ago); backing off"
            );
        } else if before == Some(true) {
            // A poll succeeded before: its values stay on /metrics.
            target_event!(
                WARN,
                target,
                outcome = %err.outcome,
                error = %err,
                "poll failed; keeping the last known values"
            );
        } else {
            // No success seen yet: there may be no values to keep, so none are promised.
            target_event!(
                WARN,
                target,
                outcome = %err.outcome,
                error = %err,
                "poll failed"
            );
        }
    }

    /// A room-following webcast target now follows another task: the API names no TaskId, so
    /// the task is told by its StartTime and UserId (`volcengine_rtc_webcast_followed_task_info`).
    pub fn followed_task(&self, target: &Target, snapshot: &TaskSnapshot) {
        target_event!(
            INFO,
            target,
            start_time = %crate::clock::rfc3339_ms(snapshot.start_time_ms),
            user_id = snapshot.user_id.as_deref().unwrap_or(""),
            status = snapshot.status,
            "room-following target follows a task"
        );
    }

    /// The task behind `target` was just seen ending (the store says so only once).
    pub fn task_ended(&self, target: &Target, snapshot: &TaskSnapshot) {
        target_event!(
            INFO,
            target,
            status = snapshot.status,
            stop_reason = %snapshot.stop_reason,
            "task ended"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::model::{Kind, TargetKey};

    /// Everything logged while `f` runs, as text.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn target() -> Target {
        Target {
            key: TargetKey {
                kind: Kind::Record,
                app_id: "app".into(),
                room_id: "room".into(),
                task_id: Some("task".into()),
            },
            labels: Default::default(),
        }
    }

    fn network_error() -> ApiError {
        ApiError::new(Outcome::NetworkError, None, "connection refused")
    }

    #[test]
    fn a_followed_task_is_named_by_start_time_and_user() {
        let log = StateLog::new(1);
        let mut t = target();
        t.key.kind = Kind::Webcast;
        t.key.task_id = None;
        let snap = TaskSnapshot {
            status: 2,
            start_time_ms: 1_700_000_000_123,
            user_id: Some("capture-bot".into()),
            ..TaskSnapshot::default()
        };
        let text = logged(|| log.followed_task(&t, &snap));
        assert!(
            text.contains("room-following target follows a task"),
            "{text}"
        );
        assert!(
            text.contains("start_time=2023-11-14T22:13:20.123Z"),
            "{text}"
        );
        assert!(text.contains("user_id=\"capture-bot\""), "{text}");
        assert!(text.contains("room_id=room"), "{text}");
    }

    #[test]
    fn a_failure_before_any_success_promises_no_kept_values() {
        let log = StateLog::new(1);
        let t = target();
        let text = logged(|| log.failure(0, &t, &network_error()));
        assert!(text.contains("poll failed"), "{text}");
        assert!(!text.contains("last known values"), "{text}");
    }

    #[test]
    fn a_failure_after_a_success_keeps_the_values_and_is_logged_once() {
        let log = StateLog::new(1);
        let t = target();
        let text = logged(|| {
            log.success(0, &t, Action::GetRecordTask);
            log.failure(0, &t, &network_error());
            log.failure(0, &t, &network_error());
        });
        assert_eq!(
            text.matches("poll failed; keeping the last known values")
                .count(),
            1,
            "{text}"
        );
        let text = logged(|| log.success(0, &t, Action::GetRecordTask));
        assert!(text.contains("target recovered"), "{text}");
    }
}
