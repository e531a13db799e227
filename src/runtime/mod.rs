//! The running exporter: wires config → scheduler → budget → client → target table → HTTP,
//! and decides nothing itself. [`Exporter`] holds the parts; each concern has its file:
//!
//! - `poll` — one poll loop per action asks the [`Scheduler`] which target is due (and the
//!   action's [`AuthGate`] whether polling is held), waits for a slot and the action's
//!   [`Limiter`], fetches the target ([`Client`], retries inside the budget) and applies the
//!   answer to the [`Store`], the scheduler, the durable state and the state log; `once` uses
//!   the same path ([`Exporter::poll_each_once`]);
//! - `housekeeping` — retention, pruning, gauges, the credential files' watcher;
//! - `targets` — the one way the target set changes, for every source;
//! - `reload` — a reload applied live; `callbacks` — what a verified callback does;
//! - `serve` — the HTTP side (pages, the registration API, [`run_with`]); `log` — each state
//!   change logged once.
//!
//! The HTTP server renders `/metrics` from the table at scrape time and never waits on the API.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::Limiter;
use crate::config::Settings;
use crate::metrics::own::Telemetry;
use crate::model::{Action, Kind, Outcome, PerAction, Target, TargetKey, TaskSnapshot};
use crate::scheduler::{AuthGate, Gate, Phase, PollResult, Scheduler};
use crate::state::{self, Source, StateError, Submitted};
use crate::targets::table::{PendingStop, Store, TargetId};
use crate::volc::client::{Client, ClientError};
use crate::volc::parse::ApiError;
use durable::Durable;
use log::StateLog;

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
    Store(#[from] StateError),
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
    /// Targets that took other labels (from the source that ranks first).
    pub relabelled: usize,
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
        let opened = state::open_in_memory(state::WriterConfig::default())?;
        Exporter::with_store(settings, telemetry, opened)
    }

    /// Builds the pieces from checked settings over an opened durable store: every stored
    /// target is served at once as it was, and reconciled with the config (see
    /// `Durable::start`).
    pub fn with_store(
        settings: Settings,
        telemetry: Arc<Telemetry>,
        opened: state::Opened,
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
        for (id, target) in store.targets() {
            if target.key.kind == crate::model::Kind::Record
                && store
                    .sources(id)
                    .contains(&crate::targets::Source::Callback)
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

    fn followers(&self) -> MutexGuard<'_, Followers> {
        // A poisoned lock only means a panic elsewhere; the data is still usable.
        self.followers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what is queued for the store and stops its writer (blocking, bounded).
    fn close_store(&self) -> bool {
        self.durable.close(STORE_CLOSE_WAIT)
    }

    /// The durable store's statistics.
    pub fn storage_stats(&self) -> &Arc<state::Stats> {
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

mod durable;
mod housekeeping;
mod poll;
mod reload;
mod targets;

mod callbacks;
mod log;
mod serve;
pub use callbacks::CallbackEndpoint;
pub use serve::{run_with, WebSetup};
