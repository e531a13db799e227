//! The running exporter: wires config → scheduler → budget → client → store → HTTP, and
//! decides nothing itself.
//!
//! One poll loop per action asks the [`Scheduler`] which target is due (and the action's
//! [`AuthGate`] whether polling is held), waits for a slot and the action's [`Limiter`], hands
//! the target to a task that fetches it ([`Client`], retries inside the budget), and applies
//! the answer to the [`Store`], the scheduler and the [`StateLog`]. A housekeeping loop applies
//! retention and refreshes the scheduler gauges. The HTTP server renders `/metrics` from the
//! store at scrape time and never waits on the API. `once` uses the same wiring
//! ([`Exporter::poll_each_once`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::Limiter;
use crate::config::Settings;
use crate::model::{Action, Kind, Outcome, PerAction, TaskSnapshot};
use crate::scheduler::{AuthGate, Gate, Phase, PollResult, Scheduler};
use crate::state_log::StateLog;
use crate::store::{Store, TargetId};
use crate::telemetry::Telemetry;
use crate::volc::client::{Client, ClientError};
use crate::volc::parse::ApiError;

/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often retention, gauges and the rate in force are refreshed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// Why the exporter could not be built or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ExporterError {
    /// The API client could not be built from the settings.
    #[error("cannot build the API client")]
    Client(#[from] ClientError),
    /// The HTTP server's listener failed.
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    /// The HTTP server's task panicked or was cancelled.
    #[error("the HTTP server task failed")]
    HttpTask(#[source] JoinError),
    /// A poll task of [`Exporter::poll_each_once`] panicked or was cancelled.
    #[error("a poll task failed")]
    PollTask(#[source] JoinError),
}

/// The parts, wired: everything the loops share.
pub struct Exporter {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub limiters: PerAction<Arc<Limiter>>,
    client: Client,
    scheduler: Mutex<Scheduler>,
    /// Woken when a poll of the action finishes (a slot is free, or the auth hold changed).
    wake: PerAction<Notify>,
    in_flight: Arc<Semaphore>,
    log: StateLog,
    auth: PerAction<AuthGate>,
}

impl Exporter {
    /// Builds the pieces from checked settings.
    pub fn new(
        settings: Settings,
        telemetry: Arc<Telemetry>,
    ) -> Result<Arc<Exporter>, ExporterError> {
        let limiters = PerAction::new(|a| Arc::new(Limiter::new(settings.budget_for(a))));
        let client = Client::new(
            &settings.api,
            settings.credentials.clone(),
            limiters.clone(),
            telemetry.clone(),
        )?;
        let store = Arc::new(Store::new(settings.targets.clone()));
        let scheduler = Scheduler::new(&settings.targets, &settings.schedule, Instant::now());
        let in_flight = Arc::new(Semaphore::new(settings.api.max_in_flight.max(1)));
        let log = StateLog::new(settings.targets.len());
        Ok(Arc::new(Exporter {
            settings,
            store,
            telemetry,
            limiters,
            client,
            scheduler: Mutex::new(scheduler),
            wake: PerAction::default(),
            in_flight,
            log,
            auth: PerAction::default(),
        }))
    }

    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `/metrics` body.
    pub fn render(&self, out: &mut Vec<u8>) {
        crate::render::render(&self.store, &self.telemetry, out);
    }

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
        for id in 0..self.store.targets().len() {
            let me = self.clone();
            tasks.spawn(async move {
                let _permit = me.in_flight.acquire().await;
                let key = &me.store.targets()[id].key;
                (id, me.client.fetch(key).await)
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
                    self.store.record_failure(id);
                    failed.push((id, err));
                }
            }
        }
        failed.sort_by_key(|(id, _)| *id);
        Ok(failed)
    }

    async fn poll_action(
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
            let me = self.clone();
            tracker.spawn(async move {
                let key = &me.store.targets()[id].key;
                let result = me.client.fetch_acquired(key).await;
                let auth_failed = matches!(&result, Err(e) if e.outcome == Outcome::AuthError);
                me.auth[action].finish(
                    probe,
                    auth_failed,
                    Instant::now(),
                    me.settings.schedule.active_interval,
                );
                me.record(id, result);
                drop(permit);
                me.wake[action].notify_one();
            });
        }
    }

    /// Applies one poll's result to the store, the scheduler and the logs.
    fn record(&self, id: TargetId, result: Result<TaskSnapshot, ApiError>) {
        let now = Instant::now();
        let wall = crate::clock::wall_at(now);
        let target = &self.store.targets()[id];
        match result {
            Ok(snapshot) => {
                let update = self.store.record_success(id, snapshot.clone(), wall);
                if update.newly_terminal {
                    self.log.task_ended(target, &snapshot);
                }
                self.log.success(id, target, target.key.kind.action());
                self.scheduler().complete(
                    id,
                    PollResult::success(&snapshot, update.changed),
                    now,
                    wall,
                );
            }
            Err(err) => {
                self.store.record_failure(id);
                self.log.failure(id, target, &err);
                self.scheduler()
                    .complete(id, PollResult::Failed(err.outcome), now, wall);
            }
        }
    }

    async fn housekeeping(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let expired = self
                .store
                .expire(crate::clock::now(), self.settings.schedule.retention);
            if expired > 0 {
                tracing::debug!(expired, "series of finished tasks dropped after retention");
            }
            self.refresh_gauges();
        }
    }

    /// The configured budget per action (set once, before serving).
    fn set_budget_gauges(&self) {
        for a in Action::ALL {
            let budget = self.settings.budget_for(a);
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

    fn landing_summary(&self) -> String {
        let mut per_kind = PerAction::<usize>::default();
        for t in &self.settings.targets {
            per_kind[t.key.kind.action()] += 1;
        }
        format!(
            "{} record and {} webcast targets; endpoint {} ({})",
            per_kind[Action::GetRecordTask],
            per_kind[Action::GetWebCastTask],
            self.settings.api.endpoint.base_url(),
            self.settings.api.region
        )
    }
}

// ----- the HTTP side (reload hook, page rows, `--web.*` options): see exporter/web.rs -----

mod web;
pub use web::{run_with, WebSetup};

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Runs the exporter until `shutdown`: polling in the background, HTTP on `listener` with the
/// default web setup (plain HTTP, no auth, no lifecycle or targets API); see [`run_with`].
pub async fn run(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ExporterError> {
    run_with(exporter, listener, WebSetup::default(), shutdown).await
}
