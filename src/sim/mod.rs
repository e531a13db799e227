//! A simulated Volcengine RTC OpenAPI for tests, benchmarks and the `demo` command: scripted
//! task timelines for `GetRecordTask` and `GetWebCastTask`, V4 signature verification, a
//! per-action QPS limit, and fault injection.
//!
//! - [`clock`] — the simulator's "now": real wall-clock ms, moved along by tokio's clock and a
//!   manual offset, so tests control it and demo timestamps stay real.
//! - [`task`] — [`SimTask`] timelines and the JSON the API gives for them at a moment.
//! - [`fault`] — [`Fault`]s and the [`FaultSpec`] saying which requests get them.
//! - [`traffic`] — the QPS window, per-outcome counters and the bounded request log.
//! - [`handler`] — one request in, one [`Reply`] out: a pure function of the request, the
//!   simulator's state and its clock.
//! - [`verify`] — the server side of V4 signing: the check the vendor makes on each request.
//! - [`server`] — [`serve`]: hyper on a bound listener, until a `CancellationToken` fires.
//! - [`scenario`] — ready-made worlds: [`demo_scenario`] and [`bulk_scenario`].
//! - [`env`](mod@env) — [`MapEnv`], a made-up process environment (credentials, the callback key).
//! - [`callback`] — the vendor's callbacks: each task's lifecycle events, signed and POSTed to
//!   a loopback URL ([`CallbackSender`], [`run_callbacks`]).
//!
//! Choices where the vendor's documents are silent: a task that is unknown, not started yet,
//! or started over 72 h ago answers HTTP 400 `InvalidParameter.ErrorActiveTaskNotFound` (the
//! status its other `InvalidParameter.*` codes use; clients classify on `Code`). Signatures are
//! checked against the crate's wall clock ([`crate::clock::now`], as clients sign), not the
//! simulator's [`Clock`], so tests may move the simulated world days ahead and still sign
//! normally. The QPS window counts admitted requests only.
//!
//! ```no_run
//! # async fn f() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use volc_rtc_exporter::sim::{self, Clock, SimOptions, Simulator};
//! let scenario = sim::demo_scenario(volc_rtc_exporter::clock::now());
//! let simulator = Arc::new(Simulator::from_scenario(&scenario, SimOptions::default(), Clock::system()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(sim::serve(listener, simulator, shutdown.clone()));
//! # Ok(()) }
//! ```

pub mod callback;
pub mod clock;
pub mod env;
pub mod fault;
pub mod handler;
pub mod scenario;
pub mod server;
pub mod task;
pub mod traffic;
pub mod verify;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::credentials::Credentials;
use crate::model::{Action, Kind, Outcome, PerAction};

pub use callback::{run_callbacks, CallbackSender, Delivery, NonceSpelling, SimCallback};
pub use clock::Clock;
pub use env::MapEnv;
pub use fault::{Fault, FaultId, FaultSpec, TaskMatch};
pub use handler::{Reply, SimRequest};
pub use scenario::{bulk_scenario, demo_scenario, Scenario};
pub use server::serve;
pub use task::{stop_reason, FileStage, SimFile, SimStream, SimTask, TaskDetail, WebcastPlan};
pub use traffic::RequestRecord;

/// The `Service` the simulator answers as, and the `Version`s it accepts per action: the
/// exporter's own.
pub use crate::model::{RECORD_VERSIONS, SERVICE, WEBCAST_VERSIONS};

/// How the simulator behaves; change it at run time with [`Simulator::configure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOptions {
    /// `Region` in every answer (and in the credential scope it expects).
    pub region: String,
    /// Requests per sliding second, per action; `None` = no limit. Default 60, as the
    /// vendor's.
    pub qps_limit: PerAction<Option<u32>>,
    /// Verify every request's V4 signature (default on; off for benches that do not sign).
    pub verify_signatures: bool,
    /// How far X-Date may be from the simulator's wall time (default 900 s, as the vendor's).
    pub max_skew: Duration,
    /// How many requests per action the request log keeps (oldest dropped first; 0 = no log).
    /// Per-outcome counters are kept regardless.
    pub request_log_capacity: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            region: "cn-north-1".into(),
            qps_limit: PerAction::new(|_| Some(60)),
            verify_signatures: true,
            max_skew: Duration::from_secs(900),
            request_log_capacity: 100_000,
        }
    }
}

impl SimOptions {
    /// With `limit` requests per second for `action` (`None`: unlimited).
    pub fn with_qps_limit(mut self, action: Action, limit: Option<u32>) -> Self {
        self.qps_limit[action] = limit;
        self
    }
}

type TaskKey = (Kind, String, String, String);

/// The simulated world's tasks, indexed for both kinds of lookup.
#[derive(Debug, Default)]
struct TaskStore {
    by_key: HashMap<TaskKey, SimTask>,
    /// Webcast task IDs per (app, room), for "the room's newest task".
    webcast_rooms: HashMap<(String, String), Vec<String>>,
}

/// Who may call: access key ID -> its credentials (a session token, if set, must be sent).
type KeyTable = HashMap<String, Credentials>;

/// The simulated OpenAPI: shared (behind an `Arc`) between [`serve`] and whoever scripts it.
#[derive(Debug)]
pub struct Simulator {
    clock: Clock,
    options: RwLock<SimOptions>,
    tasks: RwLock<TaskStore>,
    keys: RwLock<KeyTable>,
    faults: Mutex<fault::FaultList>,
    traffic: traffic::Traffic,
    request_seq: std::sync::atomic::AtomicU64,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(l: &Mutex<T>) -> MutexGuard<'_, T> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

impl Simulator {
    /// An empty world (no tasks, no accepted keys).
    pub fn new(options: SimOptions, clock: Clock) -> Self {
        Simulator {
            clock,
            options: RwLock::new(options),
            tasks: RwLock::default(),
            keys: RwLock::default(),
            faults: Mutex::default(),
            traffic: traffic::Traffic::default(),
            request_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A world with the scenario's tasks and faults, accepting its credentials.
    pub fn from_scenario(scenario: &Scenario, options: SimOptions, clock: Clock) -> Self {
        let sim = Simulator::new(options, clock);
        sim.add_credentials(&scenario.credentials);
        sim.add_tasks(scenario.tasks.iter().cloned());
        for fault in &scenario.faults {
            sim.inject(fault.clone());
        }
        sim
    }

    /// The simulator's clock (advance it in tests).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The options in force.
    pub fn options(&self) -> SimOptions {
        read(&self.options).clone()
    }

    /// Changes options at run time (QPS limits, signature checking, region, log size).
    pub fn configure(&self, f: impl FnOnce(&mut SimOptions)) {
        f(&mut write(&self.options));
    }

    /// Accepts requests signed with these credentials (a session token, if given, must be
    /// sent as `X-Security-Token`).
    pub fn add_credentials(&self, credentials: &Credentials) {
        write(&self.keys).insert(credentials.access_key_id.clone(), credentials.clone());
    }

    /// Stops accepting this access key.
    pub fn remove_credentials(&self, access_key_id: &str) {
        write(&self.keys).remove(access_key_id);
    }

    /// The credentials of an access key, as the signature verifier looks them up.
    pub(crate) fn lookup_key(&self, access_key_id: &str) -> Option<Credentials> {
        read(&self.keys).get(access_key_id).cloned()
    }

    /// Adds a task, replacing any task with the same kind and IDs.
    pub fn add_task(&self, task: SimTask) {
        self.add_tasks(std::iter::once(task));
    }

    /// Adds tasks, replacing any with the same kind and IDs.
    pub fn add_tasks(&self, tasks: impl IntoIterator<Item = SimTask>) {
        let mut store = write(&self.tasks);
        for task in tasks {
            let key = (
                task.kind(),
                task.app_id.clone(),
                task.room_id.clone(),
                task.task_id.clone(),
            );
            if task.kind() == Kind::Webcast {
                let ids = store
                    .webcast_rooms
                    .entry((task.app_id.clone(), task.room_id.clone()))
                    .or_default();
                if !ids.contains(&task.task_id) {
                    ids.push(task.task_id.clone());
                }
            }
            store.by_key.insert(key, task);
        }
    }

    /// Removes a task; returns it if it was there.
    pub fn remove_task(
        &self,
        kind: Kind,
        app_id: &str,
        room_id: &str,
        task_id: &str,
    ) -> Option<SimTask> {
        let mut store = write(&self.tasks);
        let key = (
            kind,
            app_id.to_owned(),
            room_id.to_owned(),
            task_id.to_owned(),
        );
        let removed = store.by_key.remove(&key);
        if removed.is_some() && kind == Kind::Webcast {
            if let Some(ids) = store
                .webcast_rooms
                .get_mut(&(app_id.to_owned(), room_id.to_owned()))
            {
                ids.retain(|t| t != task_id);
            }
        }
        removed
    }

    /// A copy of one task.
    pub fn task(&self, kind: Kind, app_id: &str, room_id: &str, task_id: &str) -> Option<SimTask> {
        let key = (
            kind,
            app_id.to_owned(),
            room_id.to_owned(),
            task_id.to_owned(),
        );
        read(&self.tasks).by_key.get(&key).cloned()
    }

    /// How many tasks the world holds.
    pub fn task_count(&self) -> usize {
        read(&self.tasks).by_key.len()
    }

    /// Injects a fault; it applies until used up or cleared.
    pub fn inject(&self, spec: FaultSpec) -> FaultId {
        lock(&self.faults).push(spec)
    }

    /// Clears one fault; false if it was already used up or cleared.
    pub fn clear_fault(&self, id: FaultId) -> bool {
        lock(&self.faults).remove(id)
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    /// How many faults are still active.
    pub fn active_faults(&self) -> usize {
        lock(&self.faults).len()
    }

    /// Arrival times of the logged requests for `action` (every request naming it, whatever
    /// the answer), sorted. Bounded by [`SimOptions::request_log_capacity`].
    pub fn request_log(&self, action: Action) -> Vec<Instant> {
        self.traffic
            .records(action)
            .into_iter()
            .map(|r| r.at)
            .collect()
    }

    /// The logged requests for `action` with what a correct client should make of each answer.
    pub fn request_records(&self, action: Action) -> Vec<RequestRecord> {
        self.traffic.records(action)
    }

    /// Empties the request logs (counters keep counting).
    pub fn clear_request_log(&self) {
        self.traffic.clear_log();
    }

    /// The most logged requests for `action` that arrived within any one `window`.
    pub fn max_requests_in_window(&self, action: Action, window: Duration) -> usize {
        crate::budget::max_starts_in_window(&self.request_log(action), window)
    }

    /// Requests for `action` answered with `outcome` since the start (not bounded by the log).
    pub fn request_count(&self, action: Action, outcome: Outcome) -> u64 {
        self.traffic.count(action, outcome)
    }

    /// All requests for `action` since the start.
    pub fn total_requests(&self, action: Action) -> u64 {
        self.traffic.total(action)
    }
}
