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

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::Limiter;
use crate::config::Settings;
use crate::durable::Durable;
use crate::metrics::own::Telemetry;
use crate::model::{Action, Kind, Outcome, PerAction, Target, TargetKey, TaskSnapshot};
use crate::persist::{self, PersistError, Source, Submitted};
use crate::scheduler::{AuthGate, Gate, Phase, PollResult, Scheduler};
use crate::state_log::StateLog;
use crate::store::{PendingStop, Store, TargetId};
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
    /// The durable store could not be opened (in memory: never expected).
    #[error("cannot open the store")]
    Store(#[from] PersistError),
}

/// How long shutdown waits for the store to write what is queued.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(5);
/// How often rows past retention are pruned from the store.
const PRUNE_EVERY: u32 = 60;

/// What [`Exporter::set_targets`], [`Exporter::add_targets`] or
/// [`Exporter::remove_targets`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetChange {
    /// Targets new to the exporter.
    pub added: usize,
    /// Targets removed (no source left).
    pub removed: usize,
}

/// The parts, wired: everything the loops share.
pub struct Exporter {
    /// The settings in force; a reload replaces them.
    settings: RwLock<Settings>,
    pub store: Arc<Store>,
    pub telemetry: Arc<Telemetry>,
    pub limiters: PerAction<Arc<Limiter>>,
    /// Rebuilt by a reload that changes the `api:` section.
    client: RwLock<Arc<Client>>,
    scheduler: Mutex<Scheduler>,
    /// Woken when a poll of the action finishes (a slot is free, or the auth hold changed).
    wake: PerAction<Notify>,
    in_flight: Arc<Semaphore>,
    log: StateLog,
    auth: PerAction<AuthGate>,
    durable: Durable,
    /// This exporter (for the tasks a reload starts).
    me: std::sync::Weak<Exporter>,
    /// The followers of files a reload may restart.
    followers: Mutex<Followers>,
    /// The callback receiver and the path it is served on, once the web side serves one (a
    /// reload updates its policy).
    callbacks: std::sync::OnceLock<(Arc<crate::callbacks::Receiver>, String)>,
}

/// The run's shutdown and the followers of files a reload restarts, each stopped by its token.
#[derive(Default)]
struct Followers {
    /// Cancelled when the run ends; each follower's token is its child.
    run: Option<CancellationToken>,
    /// The target files' follower ([`Exporter::follow_files`]).
    target_files: Option<CancellationToken>,
    /// The credential files' watcher ([`Exporter::watch_credentials`]).
    credentials: Option<CancellationToken>,
}

impl Exporter {
    /// Builds the pieces from checked settings, with state kept in memory only.
    pub fn new(
        settings: Settings,
        telemetry: Arc<Telemetry>,
    ) -> Result<Arc<Exporter>, ExporterError> {
        let opened = persist::open_in_memory(persist::WriterConfig::default())?;
        Exporter::with_store(settings, telemetry, opened)
    }

    /// Builds the pieces from checked settings over an opened durable store: every stored
    /// target is served at once as it was, and reconciled with the config (see
    /// [`Durable::start`]).
    pub fn with_store(
        settings: Settings,
        telemetry: Arc<Telemetry>,
        opened: persist::Opened,
    ) -> Result<Arc<Exporter>, ExporterError> {
        let limiters = PerAction::new(|a| Arc::new(Limiter::new(settings.budget_for(a))));
        // The handle knows the `*_file` keys, so the files can be re-read (see
        // `watch_credentials`) and an authentication failure can re-read them at once.
        let credentials = crate::credentials::CredentialsHandle::new(
            settings.credentials.clone(),
            settings.credential_config.clone(),
        );
        let client = Client::new(
            &settings.api,
            credentials,
            limiters.clone(),
            telemetry.clone(),
        )?;
        let store = Arc::new(Store::new(Vec::new()));
        let now = Instant::now();
        let mut scheduler = Scheduler::new(&[], &settings.schedule, now);
        let (durable, restored) = Durable::start(
            opened,
            &settings.targets,
            &store,
            &mut scheduler,
            &settings.schedule,
            now,
            crate::clock::wall_at(now),
        );
        if restored.restored > 0 || restored.removed > 0 {
            tracing::info!(
                restored = restored.restored,
                not_polled_again = restored.parked,
                added = restored.added,
                removed = restored.removed,
                "state restored from the store"
            );
        }
        // Recordings a callback announced before the restart are still announced.
        scheduler.set_announced_interval(settings.callbacks.as_ref().map(|c| c.active_interval));
        let callback = persist::Source::Callback.to_string();
        for (id, target) in store.targets() {
            if target.key.kind == crate::model::Kind::Record
                && durable.sources_of(id).contains(&callback)
            {
                scheduler.announce(id);
            }
        }
        telemetry.register_credentials(client.credentials().clone());
        let in_flight = Arc::new(Semaphore::new(settings.api.max_in_flight.max(1)));
        let log = StateLog::new(store.len());
        Ok(Arc::new_cyclic(|me| Exporter {
            me: me.clone(),
            followers: Mutex::new(Followers::default()),
            settings: RwLock::new(settings),
            store,
            telemetry,
            limiters,
            client: RwLock::new(Arc::new(client)),
            scheduler: Mutex::new(scheduler),
            wake: PerAction::default(),
            in_flight,
            log,
            auth: PerAction::default(),
            durable,
            callbacks: std::sync::OnceLock::new(),
        }))
    }

    /// Follows the target files of the settings in force until `shutdown` (or until a
    /// reload changes the patterns, which stops this and starts anew). Returns the task
    /// applying the changes.
    pub async fn follow_files(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let current = shutdown.child_token();
        {
            let mut followers = self.followers();
            followers.run = Some(shutdown.clone());
            followers.target_files = Some(current.clone());
        }
        follow_target_files(self, current).await
    }

    /// After a reload changed `target_files`: stops following the old patterns and follows
    /// the new ones (in the background).
    fn refollow_files(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let mut followers = self.followers();
        let (Some(parent), Some(old)) = (followers.run.clone(), followers.target_files.take())
        else {
            return;
        };
        drop(followers);
        old.cancel();
        tokio::spawn(async move {
            if let Some(task) = me.follow_files(&parent).await {
                let _ = task.await;
            }
        });
    }

    /// Re-reads the `*_file` credentials every [`DEFAULT_RELOAD_INTERVAL`] until `shutdown`,
    /// when the config names any (see [`CredentialsHandle::watch`]); a reload that changes
    /// which files are named restarts it ([`Exporter::rewatch_credentials`]).
    ///
    /// [`DEFAULT_RELOAD_INTERVAL`]: crate::credentials::DEFAULT_RELOAD_INTERVAL
    /// [`CredentialsHandle::watch`]: crate::credentials::CredentialsHandle::watch
    fn watch_credentials(&self, shutdown: &CancellationToken) {
        self.followers().run = Some(shutdown.clone());
        self.rewatch_credentials();
    }

    /// Stops the credential files' watcher, if one runs, and starts one for the files the
    /// credentials now name, if any (after a reload changed them).
    fn rewatch_credentials(&self) {
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

    fn followers(&self) -> MutexGuard<'_, Followers> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces every target of `source` by `targets` (a config reload, a target file read
    /// again): targets already known keep their state and schedule (no new poll, no second
    /// count), new ones start as `new` spread over one `active_interval`, and those `source`
    /// no longer lists lose it; a target left without sources is removed at once (its series
    /// and its row). The same target from two sources is one target.
    pub fn set_targets(&self, source: Source, targets: &[Target]) -> TargetChange {
        let keep: HashSet<&TargetKey> = targets.iter().map(|t| &t.key).collect();
        let gone: Vec<TargetKey> = self
            .durable
            .ids_of(&source)
            .into_iter()
            .filter_map(|id| self.store.target(id))
            .filter(|t| !keep.contains(&t.key))
            .map(|t| t.key.clone())
            .collect();
        let mut change = self.remove_targets(&source, &gone);
        let added = self.add_targets(source, targets);
        change.added = added.added;
        change
    }

    /// Adds `targets` from `source` (the registration API, a callback): new ones start as
    /// `new`, spread over one `active_interval` (a single one is due at once); known ones
    /// gain the source and keep their state.
    pub fn add_targets(&self, source: Source, targets: &[Target]) -> TargetChange {
        let now = Instant::now();
        let now_ms = crate::clock::system_time_to_ms(crate::clock::wall_at(now));
        let mut fresh = Vec::new();
        for t in targets {
            let (id, new) = self.store.insert(t.clone());
            if new {
                self.durable.added(id, source.clone(), now_ms);
                fresh.push((id, t));
            } else if !self.durable.add_source(id, source.clone()) {
                continue;
            }
            let phase = self.scheduler().phase(id);
            self.durable.put(&self.store, id, phase, None);
        }
        if !fresh.is_empty() {
            self.scheduler().insert(&fresh, now);
            for action in Action::ALL {
                self.wake[action].notify_one();
            }
        }
        TargetChange {
            added: fresh.len(),
            removed: 0,
        }
    }

    /// Drops `source` from the targets with these keys; a target left without sources is
    /// removed at once: its series leave `/metrics` and its row the store.
    pub fn remove_targets(&self, source: &Source, keys: &[TargetKey]) -> TargetChange {
        let mut removed = 0;
        for key in keys {
            let Some(id) = self.store.id_of(key) else {
                continue;
            };
            match self.durable.drop_source(id, source) {
                None => {}
                Some(0) => {
                    self.scheduler().remove(id);
                    self.store.remove(id);
                    self.log.forget(id);
                    self.durable.remove(id, key);
                    removed += 1;
                }
                Some(_) => {
                    let phase = self.scheduler().phase(id);
                    self.durable.put(&self.store, id, phase, None);
                }
            }
        }
        TargetChange { added: 0, removed }
    }

    /// Target `id`'s sources (`config`, `file:<path>`, `api`, `callback`).
    pub fn sources_of(&self, id: TargetId) -> Vec<String> {
        self.durable.sources_of(id)
    }

    /// Writes what is queued for the store and stops its writer (blocking, bounded).
    fn close_store(&self) -> bool {
        self.durable.close(STORE_CLOSE_WAIT)
    }

    /// The durable store's statistics.
    pub fn storage_stats(&self) -> &Arc<persist::Stats> {
        self.durable.stats()
    }

    /// The settings in force.
    pub fn settings(&self) -> RwLockReadGuard<'_, Settings> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.settings.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The API client in force.
    fn client(&self) -> Arc<Client> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn scheduler(&self) -> MutexGuard<'_, Scheduler> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `/metrics` body.
    pub fn render(&self, out: &mut Vec<u8>) {
        crate::metrics::render(&self.store, &self.telemetry, out);
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
    fn record(
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
                stop = pending.filter(|_| self.durable.claim_stop(&target.key, &snapshot));
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
        let (phase, parked) = {
            let sched = self.scheduler();
            (sched.phase(id), sched.is_parked(id))
        };
        self.store.set_parked(id, parked);
        let submitted = self.durable.put(&self.store, id, phase, stop.as_ref())?;
        stop.map(|stop| (submitted, stop))
    }

    async fn housekeeping(self: Arc<Self>, shutdown: CancellationToken) {
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
                let sched = self.scheduler();
                let phases: Vec<_> = expired.iter().map(|&id| sched.phase(id)).collect();
                drop(sched);
                for (&id, phase) in expired.iter().zip(phases) {
                    self.durable.put(&self.store, id, phase, None);
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
    fn set_budget_gauges(&self) {
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

    /// The landing page's line about what is followed and where it is asked: every target,
    /// whatever its source, by kind and by source, and the API endpoint; read at each render,
    /// so a reload or a registration shows at once.
    pub(crate) fn landing_summary(&self) -> String {
        let mut per_kind = PerAction::<usize>::default();
        let mut per_source: std::collections::BTreeMap<&'static str, usize> = Default::default();
        for (id, target) in self.store.targets() {
            per_kind[target.key.kind.action()] += 1;
            for source in self.sources_of(id) {
                let name = match source.split(':').next().unwrap_or_default() {
                    "config" => "the config",
                    "file" => "target files",
                    "api" => "the API",
                    "callback" => "callbacks",
                    _ => "elsewhere",
                };
                *per_source.entry(name).or_default() += 1;
            }
        }
        let sources: Vec<String> = per_source
            .iter()
            .map(|(name, n)| format!("{n} from {name}"))
            .collect();
        let settings = self.settings();
        format!(
            "{} record and {} webcast targets{}; endpoint {} ({})",
            per_kind[Action::GetRecordTask],
            per_kind[Action::GetWebCastTask],
            if sources.is_empty() {
                String::new()
            } else {
                format!(" ({})", sources.join(", "))
            },
            settings.api.endpoint.base_url(),
            settings.api.region
        )
    }
}

/// Follows `target_files` (if any): loads them before polling starts, then applies every
/// change: each file is a source of its own, a broken file keeps its previous targets (and
/// reports 0 in `volcengine_rtc_target_file_last_load_successful{file}`), a file gone drops its
/// targets. Returns the task applying the changes.
async fn follow_target_files(
    exporter: &Arc<Exporter>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let patterns = exporter.settings().target_files.clone();
    let known: Vec<Source> = exporter
        .durable
        .sources_in_use()
        .into_iter()
        .filter(|s| matches!(s, Source::File(_)))
        .collect();
    if patterns.is_empty() {
        // No target files any more: what they listed leaves.
        for source in known {
            exporter.set_targets(source, &[]);
        }
        return None;
    }
    let mut config = crate::sources::files::TargetFilesConfig::new(patterns);
    config.refresh_interval = exporter.settings().target_files_refresh_interval;
    let watcher = match crate::sources::files::watch(config, shutdown).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot follow the target files; fix `target_files`");
            return None;
        }
    };
    let mut rx = watcher.targets;
    let me = exporter.clone();
    let mut previous: Vec<Source> = known;
    let first = rx.borrow_and_update().clone();
    previous = me.apply_target_files(&first, previous);
    Some(tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            previous = me.apply_target_files(&snapshot, previous);
        }
        let _ = watcher.task.await;
    }))
}

impl Exporter {
    /// Applies one snapshot of the target files; returns the file sources it holds.
    fn apply_target_files(
        &self,
        files: &crate::sources::files::FileTargets,
        previous: Vec<Source>,
    ) -> Vec<Source> {
        let mut now = Vec::new();
        for (path, entry) in files.files() {
            let source = Source::File(path.display().to_string());
            let name = path.display().to_string();
            self.telemetry
                .target_file_ok
                .with_label_values(&[name.as_str()])
                .set(i64::from(entry.last_load_successful));
            let change = self.set_targets(source.clone(), &entry.targets);
            if change.added > 0 || change.removed > 0 {
                tracing::info!(
                    file = %name,
                    added = change.added,
                    removed = change.removed,
                    "target file applied"
                );
            }
            now.push(source);
        }
        for gone in previous.into_iter().filter(|s| !now.contains(s)) {
            if let Source::File(name) = &gone {
                let _ = self.telemetry.target_file_ok.remove_label_values(&[name]);
                tracing::info!(file = %name, "target file gone; its targets leave");
            }
            self.set_targets(gone, &[]);
        }
        now
    }
}
// ----- the HTTP side (reload hook, page rows, `--web.*` options): see exporter/web.rs -----

mod callbacks;
mod web;
pub use callbacks::CallbackEndpoint;
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
