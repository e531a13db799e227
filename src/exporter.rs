//! The running exporter: wires config → scheduler → budget → client → store → HTTP.
//!
//! One poll loop per action picks the most overdue target when the action's limiter allows a
//! start, and hands it to a task that fetches it (retries inside the budget) and records the
//! answer. A housekeeping loop applies retention and refreshes the scheduler gauges. The HTTP
//! server renders `/metrics` from the store at scrape time and never waits on the API.
//!
//! Wrong credentials fail every target of an action alike, so per-target backoff alone would
//! still send one request per target at first (a storm with thousands of targets). After
//! [`AUTH_TRIP`] authentication failures in a row an action's polling is held (`AuthGate`):
//! one probe request at a time, after a pause that starts at `active_interval` and doubles per
//! failed probe (capped at [`crate::scheduler::MAX_BACKOFF`]). Any other answer lifts the hold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::Limiter;
use crate::config::Settings;
use crate::model::{Action, Kind, Outcome, Target, TaskSnapshot};
use crate::scheduler::{PollResult, Scheduler};
use crate::server::{self, App, LandingInfo};
use crate::store::{Store, TargetId};
use crate::telemetry::Telemetry;
use crate::volc::client::Client;
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

/// How long shutdown waits for requests in flight before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How often retention, gauges and the rate in force are refreshed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// Authentication failures in a row (with no other answer between) that hold an action.
pub const AUTH_TRIP: u32 = 3;

/// Everything the loops share.
pub struct Exporter {
    pub settings: Settings,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub limiters: [Arc<Limiter>; 2],
    client: Client,
    scheduler: Mutex<Scheduler>,
    wake: [Notify; 2],
    in_flight: Arc<Semaphore>,
    health: Health,
    auth: [AuthGate; 2],
}

impl Exporter {
    /// Builds the pieces from checked settings.
    pub fn new(settings: Settings, telemetry: Arc<Telemetry>) -> anyhow::Result<Arc<Exporter>> {
        let limiters = Action::ALL.map(|a| Arc::new(Limiter::new(settings.budget_for(a))));
        for a in Action::ALL {
            telemetry
                .budget
                .with_label_values(&[a.as_str()])
                .set(settings.budget_for(a));
            telemetry
                .rate_limit
                .with_label_values(&[a.as_str()])
                .set(settings.budget_for(a));
        }
        let client = Client::new(
            &settings.api,
            settings.credentials.clone(),
            limiters.clone(),
            telemetry.clone(),
        )?;
        let store = Arc::new(Store::new(settings.targets.clone()));
        let scheduler = Scheduler::new(&settings.targets, &settings.schedule, Instant::now());
        let in_flight = Arc::new(Semaphore::new(settings.api.max_in_flight.max(1)));
        let health = Health::new(settings.targets.len());
        Ok(Arc::new(Exporter {
            settings,
            store,
            telemetry,
            limiters,
            client,
            scheduler: Mutex::new(scheduler),
            wake: [Notify::new(), Notify::new()],
            in_flight,
            health,
            auth: [AuthGate::default(), AuthGate::default()],
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

    async fn poll_action(
        self: Arc<Self>,
        action: Action,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) {
        let limiter = self.limiters[action.index()].clone();
        let gate = &self.auth[action.index()];
        loop {
            // While authentication fails, wait out the hold (or the probe in flight).
            if let Gate::Wait(until) = gate.check(Instant::now()) {
                let woken = self.wake[action.index()].notified();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = woken => {}
                    _ = sleep_until_opt(until) => {}
                }
                continue;
            }
            // Wait until some target of this action is due.
            let next = self.scheduler().next_due(action);
            let woken = self.wake[action.index()].notified();
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
                me.auth[action.index()].finish(
                    probe,
                    auth_failed,
                    Instant::now(),
                    me.settings.schedule.active_interval,
                );
                me.record(id, result);
                drop(permit);
                me.wake[action.index()].notify_one();
            });
        }
    }

    /// Applies one poll's result to the store, the scheduler and the logs.
    fn record(&self, id: TargetId, result: Result<TaskSnapshot, ApiError>) {
        let wall = SystemTime::now();
        let now = Instant::now();
        let target = &self.store.targets()[id];
        match result {
            Ok(snapshot) => {
                let update = self.store.record_success(id, snapshot.clone(), wall);
                if update.newly_terminal {
                    target_event!(
                        INFO,
                        target,
                        status = snapshot.status,
                        stop_reason = %snapshot.stop_reason,
                        "task ended"
                    );
                }
                self.health.success(id, target, target.key.kind.action());
                self.scheduler().complete(
                    id,
                    PollResult::success(&snapshot, update.changed),
                    now,
                    wall,
                );
            }
            Err(err) => {
                self.store.record_failure(id);
                self.health.failure(id, target, &err);
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
                .expire(SystemTime::now(), self.settings.schedule.retention);
            if expired > 0 {
                tracing::debug!(expired, "series of finished tasks dropped after retention");
            }
            self.refresh_gauges();
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
                .set(self.limiters[action.index()].rate());
        }
        let counts = sched.phase_counts();
        drop(sched);
        for kind in Kind::ALL {
            for phase in crate::scheduler::Phase::ALL {
                self.telemetry
                    .targets
                    .with_label_values(&[kind.as_str(), phase.as_str()])
                    .set(counts[kind.action().index()][phase as usize] as i64);
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Runs the exporter until `shutdown`: polling in the background, HTTP on `listener`.
pub async fn run(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ready = Arc::new(AtomicBool::new(false));
    let render_from = exporter.clone();
    let app = Arc::new(App {
        render: Box::new(move |format| {
            crate::render::page(&render_from.store, &render_from.telemetry, format)
        }),
        ready: ready.clone(),
        landing: LandingInfo::new(exporter.landing_summary()),
    });
    let http = tokio::spawn(server::serve(listener, app, shutdown.clone()));
    exporter.refresh_gauges();
    let polling = {
        let exporter = exporter.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { exporter.poll(stop).await })
    };
    ready.store(true, Ordering::SeqCst);
    tracing::info!(targets = exporter.settings.targets.len(), "polling started");
    let served = http.await;
    let _ = polling.await;
    match served {
        Ok(r) => r.map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
    }
}

impl Exporter {
    fn landing_summary(&self) -> String {
        let mut per_kind = [0usize; 2];
        for t in &self.settings.targets {
            per_kind[t.key.kind.action().index()] += 1;
        }
        format!(
            "{} record and {} webcast targets; endpoint {} ({})",
            per_kind[0],
            per_kind[1],
            self.settings.api.endpoint.base_url(),
            self.settings.api.region
        )
    }
}

/// What [`AuthGate::check`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Poll as usual (also: send the probe).
    Open,
    /// Held: wait until this time (or, with `None`, for the probe in flight to finish).
    Wait(Option<Instant>),
}

/// One action's hold on polling while authentication fails (see the module documentation).
#[derive(Debug, Default)]
struct AuthGate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Authentication failures in a row, with no other answer between.
    in_a_row: u32,
    /// Held: no request but probes until `until`.
    held: bool,
    /// Failed probes since the hold began.
    probes_failed: u32,
    until: Option<Instant>,
    probe_in_flight: bool,
}

impl AuthGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, now: Instant) -> Gate {
        let s = self.lock();
        if !s.held {
            Gate::Open
        } else if s.probe_in_flight {
            Gate::Wait(None)
        } else {
            match s.until {
                Some(t) if t > now => Gate::Wait(Some(t)),
                _ => Gate::Open,
            }
        }
    }

    /// A request is being sent; returns whether it is the probe of a hold.
    fn begin(&self, now: Instant) -> bool {
        let mut s = self.lock();
        let probe = s.held && !s.probe_in_flight && s.until.is_none_or(|t| t <= now);
        if probe {
            s.probe_in_flight = true;
        }
        probe
    }

    /// A request (the probe, or not) finished.
    fn finish(&self, probe: bool, auth_failed: bool, now: Instant, interval: Duration) {
        let mut s = self.lock();
        if probe {
            s.probe_in_flight = false;
        }
        if !auth_failed {
            *s = GateState::default();
            return;
        }
        s.in_a_row = s.in_a_row.saturating_add(1);
        let pause = |n: u32| {
            interval
                .max(Duration::from_secs(1))
                .saturating_mul(1u32 << n.min(16))
                .min(crate::scheduler::MAX_BACKOFF.max(interval))
        };
        if !s.held && s.in_a_row >= AUTH_TRIP {
            s.held = true;
            s.probes_failed = 0;
            s.until = Some(now + pause(0));
        } else if s.held && probe {
            s.probes_failed = s.probes_failed.saturating_add(1);
            s.until = Some(now + pause(s.probes_failed));
        }
    }
}

/// Logs state changes once: a target going down or coming back, and auth failures per action
/// (the [`AuthGate`] keeps those from becoming a request storm).
struct Health {
    up: Mutex<Vec<Option<bool>>>,
    auth_failing: [AtomicBool; 2],
}

impl Health {
    fn new(n: usize) -> Self {
        Health {
            up: Mutex::new(vec![None; n]),
            auth_failing: [AtomicBool::new(false), AtomicBool::new(false)],
        }
    }

    fn set(&self, id: TargetId, up: bool) -> Option<bool> {
        let mut v = self.up.lock().unwrap_or_else(|e| e.into_inner());
        v.get_mut(id).and_then(|slot| slot.replace(up))
    }

    fn success(&self, id: TargetId, target: &Target, action: Action) {
        if self.auth_failing[action.index()].swap(false, Ordering::SeqCst) {
            tracing::info!(action = %action, "authentication works again");
        }
        if self.set(id, true) == Some(false) {
            target_event!(INFO, target, "target recovered");
        }
    }

    fn failure(&self, id: TargetId, target: &Target, err: &ApiError) {
        let action = target.key.kind.action();
        if err.outcome == Outcome::AuthError {
            if !self.auth_failing[action.index()].swap(true, Ordering::SeqCst) {
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
        if self.set(id, false) == Some(false) {
            return;
        }
        if err.outcome == Outcome::NotFound {
            target_event!(
                INFO,
                target,
                "task not found (not started yet, or started over 72 h ago); backing off"
            );
        } else {
            target_event!(
                WARN,
                target,
                outcome = %err.outcome,
                error = %err,
                "poll failed; keeping the last known values"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn auth_gate_trips_probes_with_doubling_pauses_and_lifts_on_any_other_answer() {
        let gate = AuthGate::default();
        let i = Duration::from_secs(2);
        let t0 = Instant::now();
        // Two failures in a row, then a success: never held.
        for ok in [false, false, true, false, false] {
            assert_eq!(gate.check(t0), Gate::Open);
            assert!(!gate.begin(t0));
            gate.finish(false, !ok, t0, i);
        }
        // The third in a row holds the action for one interval.
        gate.finish(false, true, t0, i);
        assert_eq!(gate.check(t0), Gate::Wait(Some(t0 + i)));
        // Requests already in flight failing too do not lengthen the hold.
        gate.finish(false, true, t0, i);
        assert_eq!(gate.check(t0 + i / 2), Gate::Wait(Some(t0 + i)));
        // Then one probe at a time; a failed probe doubles the pause.
        let t1 = t0 + i;
        assert_eq!(gate.check(t1), Gate::Open);
        assert!(gate.begin(t1));
        assert_eq!(gate.check(t1), Gate::Wait(None));
        assert!(!gate.begin(t1), "only one probe in flight");
        gate.finish(true, true, t1, i);
        assert_eq!(gate.check(t1), Gate::Wait(Some(t1 + 2 * i)));
        let t2 = t1 + 2 * i;
        assert!(gate.begin(t2));
        gate.finish(true, true, t2, i);
        assert_eq!(gate.check(t2), Gate::Wait(Some(t2 + 4 * i)));
        // Capped at the maximum backoff.
        let mut t = t2 + 4 * i;
        for _ in 0..20 {
            assert!(gate.begin(t));
            gate.finish(true, true, t, i);
            match gate.check(t) {
                Gate::Wait(Some(until)) => {
                    assert!(until - t <= crate::scheduler::MAX_BACKOFF);
                    t = until;
                }
                other => panic!("{other:?}"),
            }
        }
        // A probe answered with anything but an auth error lifts the hold.
        assert!(gate.begin(t));
        gate.finish(true, false, t, i);
        assert_eq!(gate.check(t), Gate::Open);
        assert!(!gate.begin(t));
    }
}
