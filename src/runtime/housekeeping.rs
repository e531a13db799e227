//! Housekeeping: retention and pruning every second, the scheduler and budget gauges, and the
//! credential files' watcher (started, restarted or stopped as a reload changes the files).

use super::*;

impl Exporter {
    /// Re-reads the `*_file` credentials every [`DEFAULT_RELOAD_INTERVAL`] until `shutdown`,
    /// when the config names any (see [`CredentialsHandle::watch`]); a reload that changes
    /// which files are named restarts it ([`Exporter::rewatch_credentials`]).
    ///
    /// [`DEFAULT_RELOAD_INTERVAL`]: crate::credentials::DEFAULT_RELOAD_INTERVAL
    /// [`CredentialsHandle::watch`]: crate::credentials::CredentialsHandle::watch
    pub(super) fn watch_credentials(&self, shutdown: &CancellationToken) {
        self.followers().run = Some(shutdown.clone());
        self.rewatch_credentials();
    }

    /// Stops the credential files' watcher, if one runs, and starts one for the files the
    /// credentials now name, if any (after a reload changed them).
    pub(super) fn rewatch_credentials(&self) {
        let mut followers = self.followers();
        let stopped = followers
            .credentials
            .take()
            .map(|old| old.cancel())
            .is_some();
        let Some(run) = followers.run.clone() else {
            return;
        };
        let handle = self.client().credentials().clone();
        let files = handle.files();
        if files.is_empty() {
            if stopped {
                tracing::info!("the config names no credential files any more; none are re-read");
            }
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let token = run.child_token();
        followers.credentials = Some(token.clone());
        drop(followers);
        let interval = crate::credentials::DEFAULT_RELOAD_INTERVAL;
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(
            files = %files.join(", "),
            every = ?interval,
            "re-reading the credential files for rotations (and at once when the API refuses them)"
        );
        runtime.spawn(handle.watch(interval, token));
    }

    pub(super) async fn housekeeping(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u32 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = crate::clock::now();
            let retention = self.settings().schedule.retention;
            let expired = self.store.expire_ids(now, retention);
            if !expired.is_empty() {
                tracing::debug!(
                    expired = expired.len(),
                    "series of finished tasks dropped after retention"
                );
                for &id in &expired {
                    self.durable.put(&self.store, id, None);
                }
            }
            if ticks % PRUNE_EVERY == 0 {
                self.durable.prune(now, retention);
            }
            ticks = ticks.wrapping_add(1);
            self.refresh_gauges();
        }
    }

    /// The configured budget per action (set once, before serving).
    pub(super) fn set_budget_gauges(&self) {
        for a in Action::ALL {
            let budget = self.settings().budget_for(a);
            self.telemetry
                .budget
                .with_label_values(&[a.as_str()])
                .set(budget);
            self.telemetry
                .rate_limit
                .with_label_values(&[a.as_str()])
                .set(budget);
        }
    }

    /// Scheduler lag, targets by phase, and the rate in force.
    pub fn refresh_gauges(&self) {
        let now = Instant::now();
        let sched = self.scheduler();
        for action in Action::ALL {
            self.telemetry
                .scheduler_lag
                .with_label_values(&[action.as_str()])
                .set(sched.lag(action, now).as_secs_f64());
            self.telemetry
                .rate_limit
                .with_label_values(&[action.as_str()])
                .set(self.limiters[action].rate());
        }
        let counts = sched.phase_counts();
        drop(sched);
        for kind in Kind::ALL {
            for phase in Phase::ALL {
                self.telemetry
                    .targets
                    .with_label_values(&[kind.as_str(), phase.as_str()])
                    .set(counts[kind.action()][phase as usize] as i64);
            }
        }
    }
}
