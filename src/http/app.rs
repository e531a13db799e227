//! What the server is handed and what its requests share: the [`App`] (the exposition, the
//! readiness flag, what the landing page says, the [`Targets`] behind the pages and the
//! registration API, the web config, the [`Reload`] and [`Callbacks`] hooks), the `--web.*`
//! [`Options`] with their defaults, and the state one `serve` call shares among its requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::pages::{Link, PageInfo, TargetRow};
use super::stats::HttpStats;
use super::web_config::SharedWebConfig;
use crate::exposition::{Format, Page};
use crate::model::{Target, TargetKey};
use crate::targets::Source;

/// The default of `--web.max-requests`, as node_exporter's.
pub const DEFAULT_MAX_REQUESTS: usize = 40;
/// The default of `--web.read-header-timeout`.
const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `--web.read-timeout`.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of `--web.write-timeout`.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most `--web.max-requests` places one connection may hold at once.
pub const PER_CONNECTION_REQUESTS: usize = 4;
/// The most registration bodies read at once (each up to 1 MiB); more get `503`.
pub const MAX_UPLOADS: usize = 4;

/// Makes the whole exposition in the given format; runs on tokio's blocking pool.
pub type Render = Box<dyn Fn(Format) -> Page + Send + Sync>;

/// Everything the server needs from the rest of the exporter. Build with [`App::new`] and
/// the `with_*` methods.
pub struct App {
    /// Writes the `/metrics` body.
    pub render: Render,
    /// `/-/ready` answers 200 once this is true, 503 before.
    pub ready: Arc<AtomicBool>,
    /// What the landing page says about the exporter.
    pub landing: LandingInfo,
    /// The targets, for the pages and the registration API.
    pub targets: Arc<dyn Targets>,
    /// TLS and basic auth in force (swapped by a reload).
    pub web: SharedWebConfig,
    pub options: Options,
    /// What `POST /-/reload` runs; `None`: nothing to reload.
    pub reload: Option<Arc<dyn Reload>>,
    /// RTC callbacks: the path they are POSTed to and what receives them; `None`: off.
    pub callbacks: Option<(String, Arc<dyn Callbacks>)>,
    /// The server's counters (refused logins, closed connections); register
    /// [`HttpStats::collector`] to expose them.
    pub stats: Arc<HttpStats>,
}

/// Receives RTC callback deliveries (outside basic auth: the vendor signs them instead).
pub trait Callbacks: Send + Sync {
    /// Judges and acts on one delivery's body; returns the HTTP status and a short text
    /// (never the key or the body).
    fn deliver(&self, body: &[u8]) -> (u16, String);

    /// The largest body accepted; a larger one is answered 413 unread.
    fn max_body(&self) -> usize;

    /// Counts a delivery refused unread for its size; returns the status and text.
    fn too_large(&self) -> (u16, String);
}

/// A reload under way: the summary of what changed, or why nothing did (as text).
pub type Reloading = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// What `POST /-/reload` runs: the configuration files read, checked and applied again (the
/// exporter's `reload::Reloader`), off the async threads.
pub trait Reload: Send + Sync {
    /// Runs one reload; `trigger` (`HTTP`) is logged.
    fn run(self: Arc<Self>, trigger: &'static str) -> Reloading;
}

impl App {
    /// An app with no targets, no web config, default [`Options`] and nothing to reload.
    pub fn new(render: Render, ready: Arc<AtomicBool>, landing: LandingInfo) -> App {
        App {
            render,
            ready,
            landing,
            targets: Arc::new(NoTargets),
            web: SharedWebConfig::default(),
            options: Options::default(),
            reload: None,
            callbacks: None,
            stats: Arc::default(),
        }
    }

    pub fn with_targets(mut self, targets: Arc<dyn Targets>) -> App {
        self.targets = targets;
        self
    }

    pub fn with_web_config(mut self, web: SharedWebConfig) -> App {
        self.web = web;
        self
    }

    pub fn with_options(mut self, options: Options) -> App {
        self.options = options;
        self
    }

    pub fn with_reloader(mut self, reload: Arc<dyn Reload>) -> App {
        self.reload = Some(reload);
        self
    }

    /// Serves RTC callbacks on `path` (POST only, outside basic auth).
    pub fn with_callbacks(mut self, path: String, callbacks: Arc<dyn Callbacks>) -> App {
        self.callbacks = Some((path, callbacks));
        self
    }
}

/// The `--web.*` switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--web.max-requests`: requests in flight above this get 503; 0 means no cap.
    pub max_requests: usize,
    /// `--web.enable-lifecycle`: `POST /-/reload`.
    pub enable_lifecycle: bool,
    /// `--web.enable-targets-api`: `/api/v1/targets`.
    pub enable_targets_api: bool,
    /// `--web.read-header-timeout`: from the accept to a complete request head, and the
    /// longest a connection may go without a request.
    pub read_header_timeout: Duration,
    /// `--web.read-timeout`: from a request's head to the end of its body.
    pub read_timeout: Duration,
    /// `--web.write-timeout`: the longest an answer may make no progress.
    pub write_timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_requests: DEFAULT_MAX_REQUESTS,
            enable_lifecycle: false,
            enable_targets_api: false,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// What the pages and the registration API need from the exporter. `register` and
/// `unregister` answer [`ApiRefusal::Unsupported`] unless implemented.
pub trait Targets: Send + Sync {
    /// A snapshot of every target as the pages and `GET /api/v1/targets` show it. Called on
    /// the blocking pool.
    fn target_rows(&self) -> Vec<TargetRow>;

    /// The landing page's "Configuration" line as of now (after reloads too); `None` keeps
    /// the one the app was started with.
    fn summary(&self) -> Option<String> {
        None
    }

    /// Adds `targets` from `source` (for `POST /api/v1/targets`, [`Source::Api`]); a target
    /// already followed keeps its state and gains the source.
    fn register(&self, targets: Vec<Target>, source: Source) -> Result<Registered, ApiRefusal> {
        let _ = (targets, source);
        Err(ApiRefusal::Unsupported)
    }

    /// Removes `source` from the targets with these keys (`DELETE /api/v1/targets`); a target
    /// left without a source is dropped.
    fn unregister(&self, keys: Vec<TargetKey>, source: Source) -> Result<Unregistered, ApiRefusal> {
        let _ = (keys, source);
        Err(ApiRefusal::Unsupported)
    }
}

/// What a `POST /api/v1/targets` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Registered {
    /// Targets new to the exporter.
    pub added: usize,
    /// Targets it already followed (from this or another source).
    pub existing: usize,
}

/// What a `DELETE /api/v1/targets` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unregistered {
    /// Targets that lost the source.
    pub removed: usize,
    /// Keys that were not registered through the source.
    pub unknown: usize,
}

/// Why the registration API refused a request it could parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiRefusal {
    /// This exporter cannot change its targets through the API (answer 501).
    #[error("registering targets through the API is not available in this build")]
    Unsupported,
}

/// No targets and no registration: for servers that only serve `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct NoTargets;

impl Targets for NoTargets {
    fn target_rows(&self) -> Vec<TargetRow> {
        Vec::new()
    }
}

/// What the landing page says about the exporter. Only public facts: never put secrets here.
#[derive(Debug, Clone)]
pub struct LandingInfo {
    pub name: String,
    pub version: String,
    pub revision: String,
    /// One line about the configuration, e.g. "120 targets, budget 50/s per action".
    pub summary: String,
    /// Links added after the standard ones (targets, metrics, health, readiness).
    pub links: Vec<Link>,
}

/// The name of the landing page's line about the configuration.
pub(super) const CONFIGURATION: &str = "Configuration";

impl LandingInfo {
    /// This crate's name, version and revision, the given summary, and a link to the
    /// project's repository when `Cargo.toml` names one.
    pub fn new(summary: impl Into<String>) -> LandingInfo {
        let mut links = Vec::new();
        let repository = env!("CARGO_PKG_REPOSITORY");
        if !repository.is_empty() {
            links.push(Link::new(repository, "Project"));
        }
        LandingInfo {
            name: env!("CARGO_PKG_NAME").to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: crate::REVISION.to_string(),
            summary: summary.into(),
            links,
        }
    }

    /// The pages' header at `now_ms`, with the API link when the API is on.
    pub(super) fn page_info(&self, now_ms: i64, targets_api: bool) -> PageInfo {
        let mut info = PageInfo::new(now_ms);
        info.name.clone_from(&self.name);
        info.version.clone_from(&self.version);
        info.revision.clone_from(&self.revision);
        if !self.summary.is_empty() {
            info.facts
                .push((CONFIGURATION.to_string(), self.summary.clone()));
        }
        info.extra_links.clone_from(&self.links);
        if targets_api {
            info.extra_links
                .push(Link::new("api/v1/targets", "Targets API"));
        }
        info
    }
}

/// State shared by every request of one `serve` call.
pub(super) struct Shared {
    pub(super) app: Arc<App>,
    /// Threads a gzip scrape may compress changed chunks on.
    pub(super) threads: usize,
    /// Places for requests in flight (`--web.max-requests`); `None`: no cap.
    pub(super) places: Option<Arc<Semaphore>>,
    /// Slots for registration bodies being read ([`MAX_UPLOADS`]).
    pub(super) uploads: Arc<Semaphore>,
}
