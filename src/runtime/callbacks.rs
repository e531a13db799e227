//! The exporter's side of RTC callbacks: each delivery is judged by
//! [`crate::callbacks::Receiver`] (signature, app, size, duplicates) and then acted on at once —
//! the vendor waits 5 s and retries — by registering the task as a target with the `callback`
//! source and polling it now; a `RecordStopped` file list goes into the target's values before
//! that poll. Accepted event ids are persisted, so a delivery repeated after a restart is still
//! a duplicate.
//!
//! The receiver follows the config: a reload's key, `app_ids` and `labels` apply to the next
//! delivery, and `secret_key_file` is re-read every few seconds
//! ([`crate::credentials::DEFAULT_RELOAD_INTERVAL`], as the credential files are), so a
//! rotated Secret is used without a restart.

use std::sync::{Arc, Weak};

use super::Exporter;
use crate::callbacks::{self, Action, CallbackSettings, Dedup, Receiver};
use crate::http::Callbacks;
use crate::state::{EventRetention, Source};

/// What the server calls for `POST <callbacks.path>`.
pub struct CallbackEndpoint {
    receiver: Arc<Receiver>,
    exporter: Arc<Exporter>,
}

impl CallbackEndpoint {
    /// A receiver for `settings`, its duplicate filter seeded with the event ids the store
    /// kept, its counter registered with the exporter's metrics.
    pub fn new(exporter: Arc<Exporter>, settings: &CallbackSettings) -> CallbackEndpoint {
        let now_ms = crate::clock::now_ms();
        let seen = exporter.durable.take_events();
        let dedup = Dedup::seeded(EventRetention::default(), &seen, now_ms);
        let receiver = Arc::new(Receiver::for_settings(settings, dedup));
        exporter.telemetry.register_callbacks(receiver.metrics());
        let _ = exporter
            .callbacks
            .set((receiver.clone(), settings.path.clone()));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reread_key(Arc::downgrade(&receiver)));
        }
        CallbackEndpoint { receiver, exporter }
    }
}

/// Re-reads the key file until the receiver is gone (the server stopped).
pub(super) async fn reread_key(receiver: Weak<Receiver>) {
    let mut tick = tokio::time::interval(crate::credentials::DEFAULT_RELOAD_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(receiver) = receiver.upgrade() else {
            return;
        };
        // Off the runtime's threads: a hung network mount must not stall the server.
        let _ = tokio::task::spawn_blocking(move || receiver.reread_key()).await;
    }
}

impl Callbacks for CallbackEndpoint {
    fn deliver(&self, body: &[u8]) -> (u16, String) {
        if self.exporter.settings().callbacks.is_none() {
            return (
                404,
                "callbacks are off: a reload removed the `callbacks:` section".into(),
            );
        }
        let now_ms = crate::clock::now_ms();
        let decision = self.receiver.receive(body, now_ms);
        if decision.status() >= 400 {
            tracing::debug!(
                status = decision.status(),
                reason = %decision.reason,
                "callback refused"
            );
        }
        if let Some(id) = &decision.remember {
            self.exporter.durable.remember_event(id, now_ms);
        }
        let status = decision.status();
        let text = if decision.reason.is_empty() {
            "OK".to_string()
        } else {
            decision.reason.clone()
        };
        let e = &self.exporter;
        match decision.action {
            Action::Nothing => {}
            // A start that failed may never be followed by `RecordStopped`: such a task keeps
            // the usual active interval until its failure shows.
            Action::RegisterAndPoll {
                target,
                start_failed,
            } => e.follow_now(target, None, !start_failed),
            Action::Poll { target } => e.follow_now(target, None, true),
            Action::ApplyFilesAndPoll { target, files } => {
                e.follow_now(target, Some(files), true);
            }
        }
        (status, text)
    }

    fn max_body(&self) -> usize {
        callbacks::MAX_BODY_BYTES
    }

    fn too_large(&self) -> (u16, String) {
        let outcome = callbacks::Outcome::TooLarge;
        self.receiver
            .metrics()
            .count(callbacks::metrics::UNVERIFIED, outcome);
        (
            outcome.status(),
            format!(
                "the body is larger than {} bytes",
                callbacks::MAX_BODY_BYTES
            ),
        )
    }
}

impl Exporter {
    /// A task a callback named: followed as a target (source `callback`, if not known yet),
    /// `files` put into its values at once, and polled now. `announced`: its end will be
    /// announced too (see [`crate::scheduler::Scheduler::announce`]).
    pub(super) fn follow_now(
        &self,
        target: crate::model::Target,
        files: Option<Vec<crate::model::RecordFile>>,
        announced: bool,
    ) {
        let key = target.key.clone();
        self.add_targets(Source::Callback, std::slice::from_ref(&target));
        let Some(id) = self.store.id_of(&key) else {
            return;
        };
        if let Some(files) = files {
            if self.store.apply_files(id, files) {
                self.durable.put(&self.store, id, None);
            }
        }
        let now = tokio::time::Instant::now();
        let mut scheduler = self.scheduler();
        // Its end will be announced as well: while it runs it is polled less often.
        if announced {
            scheduler.announce(id);
        }
        scheduler.poll_now(id, now);
        drop(scheduler);
        self.sync_phase(id);
        self.wake[key.kind.action()].notify_one();
    }
}
