//! The poll loops: one per action asks the scheduler which target is due (and the action's auth
//! hold whether polling is held), waits for a slot and the action's limiter, fetches the target
//! and applies the answer to the table, the scheduler, the durable state and the state log.
//! `once` polls each target once through the same path.

use super::*;

impl Exporter {
    /// Polls until `shutdown`, then waits (bounded) for requests in flight.
    pub async fn poll(self: &Arc<Self>, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        for action in Action::ALL {
            let me = self.clone();
            let stop = shutdown.clone();
            let t = tracker.clone();
            tracker.spawn(async move { me.poll_action(action, stop, t).await });
        }
        let me = self.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move { me.housekeeping(stop).await });
        tracker.close();
        shutdown.cancelled().await;
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still in flight after {:?}; leaving them",
                SHUTDOWN_GRACE
            );
        }
    }

    /// Polls every target once, inside the budget and the in-flight limit, and records each
    /// answer in the store (not in the scheduler or the logs). Returns the failures, by
    /// target id.
    pub async fn poll_each_once(
        self: &Arc<Self>,
    ) -> Result<Vec<(TargetId, ApiError)>, ExporterError> {
        let mut tasks = tokio::task::JoinSet::new();
        for (id, target) in self.store.targets() {
            let me = self.clone();
            tasks.spawn(async move {
                let _permit = me.in_flight.acquire().await;
                (id, me.client().fetch(&target.key).await)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (id, result) = joined.map_err(ExporterError::PollTask)?;
            match result {
                Ok(snapshot) => {
                    self.store.record_success(id, snapshot, crate::clock::now());
                }
                Err(err) => {
                    let error = err.to_string();
                    self.store
                        .record_failure(id, err.outcome, &error, crate::clock::now());
                    failed.push((id, err));
                }
            }
        }
        failed.sort_by_key(|(id, _)| *id);
        Ok(failed)
    }

    pub(super) async fn poll_action(
        self: Arc<Self>,
        action: Action,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        let limiter = self.limiters[action].clone();
        let gate = &self.auth[action];
        loop {
            // While authentication fails, wait out the hold (or the probe in flight).
            if let Gate::Wait(until) = gate.check(Instant::now()) {
                let woken = self.wake[action].notified();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = woken => {}
                    _ = sleep_until_opt(until) => {}
                }
                continue;
            }
            // Wait until some target of this action is due.
            let next = self.scheduler().next_due(action);
            let woken = self.wake[action].notified();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = woken => continue,
                _ = sleep_until_opt(next) => {}
            }
            if next.is_none_or(|t| t > Instant::now()) {
                continue;
            }
            // A slot for one more request in flight (across both actions), then the budget.
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = self.in_flight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = limiter.acquire() => {}
            }
            // Chosen at the last moment: the most overdue target now.
            let Some(id) = self.scheduler().pop_due(action, Instant::now()) else {
                continue;
            };
            let probe = gate.begin(Instant::now());
            let Some(target) = self.store.target(id) else {
                continue;
            };
            let me = self.clone();
            tracker.spawn(async move {
                let client = me.client();
                let result = client.fetch_acquired(&target.key).await;
                let auth_failed = matches!(&result, Err(e) if e.outcome == Outcome::AuthError);
                me.auth[action].finish(
                    probe,
                    auth_failed,
                    Instant::now(),
                    me.settings().schedule.active_interval,
                );
                let pending = me.record(id, result);
                drop(permit);
                me.wake[action].notify_one();
                // The stop shows in /metrics only once it is on disk with its answer.
                if let Some((submitted, stop)) = pending {
                    if submitted.durable().await.is_ok() {
                        me.store.count_stop(&stop);
                    }
                }
            });
        }
    }

    /// Applies one poll's result to the store, the scheduler and the logs, and writes it to
    /// the durable store. Returns the stop it revealed, to count once that write is durable.
    pub(super) fn record(
        &self,
        id: TargetId,
        result: Result<TaskSnapshot, ApiError>,
    ) -> Option<(Submitted, PendingStop)> {
        let now = Instant::now();
        let wall = crate::clock::wall_at(now);
        // A target removed while its poll was in flight: the answer is dropped.
        let target = self.store.target(id)?;
        let target = &*target;
        let mut stop = None;
        match result {
            Ok(snapshot) => {
                let (update, pending) =
                    self.store
                        .record_success_deferred(id, snapshot.clone(), wall);
                if update.followed_task {
                    self.log.followed_task(target, &snapshot);
                }
                if update.newly_terminal {
                    self.log.task_ended(target, &snapshot);
                }
                stop = pending;
                self.log.success(id, target, target.key.kind.action());
                self.scheduler().complete(
                    id,
                    PollResult::success(&snapshot, update.changed),
                    now,
                    wall,
                );
            }
            Err(err) => {
                self.store
                    .record_failure(id, err.outcome, &err.to_string(), wall);
                self.log.failure(id, target, &err);
                self.scheduler()
                    .complete(id, PollResult::Failed(err.outcome), now, wall);
            }
        }
        self.sync_phase(id);
        let submitted = self.durable.put(&self.store, id, stop.as_ref())?;
        stop.map(|stop| (submitted, stop))
    }
}

impl Exporter {
    /// Writes the scheduler's judgement of target `id` (its phase, and whether it is parked)
    /// into the table, which the pages, `/metrics` and the durable state read.
    pub(super) fn sync_phase(&self, id: TargetId) {
        let (phase, parked) = {
            let sched = self.scheduler();
            (sched.phase(id), sched.is_parked(id))
        };
        if let Some(phase) = phase {
            self.store.set_phase(id, phase);
        }
        self.store.set_parked(id, parked);
    }
}

pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
