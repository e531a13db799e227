//! The HTTP endpoint: `/metrics`, the landing page `/`, the targets page `/targets`,
//! `/-/healthy`, `/-/ready`, `/-/reload` and the registration API `/api/v1/targets`, served with
//! hyper on an already-bound listener until a cancellation token fires, then shut down
//! gracefully within a bounded time.
//!
//! The server knows nothing about the scheduler or the store: it is handed an [`App`] with a
//! closure that makes the exposition [`Page`] in the negotiated [`Format`] (OpenMetrics when
//! the scraper's `Accept` asks for it, else text 0.0.4), a readiness flag, what the landing
//! page says, and a [`Targets`] implementation for the pages and the registration API. The
//! closure runs on tokio's blocking pool. The answer is gzip-compressed when `Accept-Encoding`
//! allows it, and its body is streamed from the page's shared chunks, so concurrent or slow
//! scrapes hold references to one page rather than copies of it.
//!
//! **Security** (`--web.config.file`, see [`crate::web_config`]): each connection is wrapped
//! with the web config in force when it is accepted (TLS, mTLS), and each request is checked
//! against the basic-auth users in force when it arrives, so a reload applies at once. A refused
//! request gets `401` with `WWW-Authenticate`. Every path needs credentials except
//! `/-/healthy` and `/-/ready`: they say only "Healthy"/"Ready", and leaving them open lets
//! Kubernetes probes work without a password in the pod spec. (The exporter-toolkit protects
//! every path; TLS and client certificates still apply to the probes here.)
//!
//! Logins are cheap to refuse and cannot crowd out good ones: see
//! [`crate::web_config::auth`] (caches, a bounded bcrypt queue answering `429`, slowed repeat
//! failures). Refused logins are counted in `volcengine_rtc_http_auth_failures_total` and
//! logged at most once a minute ([`HttpStats`]).
//!
//! **Load** (`--web.max-requests`, default 40, 0 for no cap): requests above that many in
//! flight get `503`, as with `promhttp`'s in-flight limit, so scrapers cannot pile up; a
//! request's place is held until its whole body is sent. One connection holds at most
//! [`PER_CONNECTION_REQUESTS`] places (more get `503` too) and opens at most
//! [`MAX_STREAMS`] HTTP/2 streams. The probes are not counted. A registration body is read
//! before its request takes a place, under one of [`MAX_UPLOADS`] upload slots, so slow
//! uploads cannot hold the places scrapes need.
//!
//! **Stalls** (`server/connection.rs`): a connection must complete a request head within
//! `--web.read-header-timeout` of the accept (TLS handshake included) and is closed after that
//! long without a request; a request body must arrive within `--web.read-timeout` of its head
//! (else `408`); an answer that makes no progress for `--web.write-timeout` has its connection
//! dropped. A refusal first reads and drops the rest of the request's body, within the route's
//! limit (`server/request_body.rs`), so HTTP/2 clients still uploading see its status.
//!
//! **Lifecycle** (`--web.enable-lifecycle`): `POST` or `PUT /-/reload` reloads the
//! configuration ([`crate::reload`]); without the flag it answers `403`, and `GET` answers
//! `405`, as in Prometheus.
//!
//! **Registration API** (`--web.enable-targets-api`): `GET`, `POST` and `DELETE
//! /api/v1/targets`; a bad body answers `400` with its problems (the first 100), one over the
//! size or count limits `413` (see [`crate::sources::api`]); without the flag `404`.

mod connection;
mod request_body;
mod stats;

pub use stats::HttpStats;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY,
};
use hyper::http::request::Parts;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::clock::rfc3339_ms;
use crate::exposition::{Format, Page};
use crate::model::{Target, TargetKey};
use crate::pages::{self, PageInfo, TargetRow, TargetsQuery};
use crate::reload::Reloader;
use crate::sources::{api, Source};
use crate::web_config::{SharedWebConfig, Unauthorized, WebConfig};
use connection::{CloseReason, Connection, Open, Progress, Timeouts};
use request_body::RequestBody;

/// `Content-Type` of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = crate::exposition::TEXT_CONTENT_TYPE;
/// How long in-flight requests may run on after shutdown begins; then connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The default of `--web.max-requests`, as node_exporter's.
pub const DEFAULT_MAX_REQUESTS: usize = 40;
/// The default of `--web.read-header-timeout`.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `--web.read-timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of `--web.write-timeout`.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most `--web.max-requests` places one connection may hold at once.
pub const PER_CONNECTION_REQUESTS: usize = 4;
/// The most registration bodies read at once (each up to 1 MiB); more get `503`.
pub const MAX_UPLOADS: usize = 4;
/// The most HTTP/2 streams a client may open at once on one connection.
pub const MAX_STREAMS: u32 = 16;
/// How long a connection closed for idling may finish what it is doing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

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
    pub reload: Option<Arc<Reloader>>,
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

    pub fn with_reloader(mut self, reload: Arc<Reloader>) -> App {
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
    /// The targets are fine as JSON but cannot be taken; every reason (answer 400).
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    /// Something failed on the exporter's side, e.g. persisting (answer 500).
    #[error("{0}")]
    Failed(String),
}

/// No targets and no registration: for servers that only serve `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTargets;

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
const CONFIGURATION: &str = "Configuration";

/// One link on the pages' navigation bar.
pub type Link = pages::Link;

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
    fn page_info(&self, now_ms: i64, targets_api: bool) -> PageInfo {
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
struct Shared {
    app: Arc<App>,
    /// Threads a gzip scrape may compress changed chunks on.
    threads: usize,
    /// Places for requests in flight (`--web.max-requests`); `None`: no cap.
    places: Option<Arc<Semaphore>>,
    /// Slots for registration bodies being read ([`MAX_UPLOADS`]).
    uploads: Arc<Semaphore>,
}

/// Serves HTTP on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// in-flight requests finish for up to [`SHUTDOWN_GRACE`], drops whatever connections remain,
/// and returns. Idle keep-alive connections are closed at once. Accept errors and failed TLS
/// handshakes are logged and the server carries on, so this returns an error only if the
/// listener itself is unusable.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::debug!(address = %local, "HTTP server listening");
    let max = app.options.max_requests;
    let shared = Arc::new(Shared {
        places: (max > 0).then(|| Arc::new(Semaphore::new(max))),
        uploads: Arc::new(Semaphore::new(MAX_UPLOADS)),
        app,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    let connection = move |stream, peer: std::net::SocketAddr, closing: CancellationToken| {
        serve_connection(shared.clone(), stream, peer, closing)
    };
    crate::accept::serve(listener, connection, shutdown, SHUTDOWN_GRACE, "exporter").await;
    tracing::debug!(address = %local, "HTTP server stopped");
    Ok(())
}

/// One connection: the TLS handshake, then HTTP/1.1 or HTTP/2 until the client leaves, the
/// watchdog closes it for a stall, or shutdown.
async fn serve_connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    closing: CancellationToken,
) {
    let options = &shared.app.options;
    let places =
        (options.max_requests > 0).then(|| PER_CONNECTION_REQUESTS.min(options.max_requests));
    let conn = Connection::new(places);
    let timeouts = Timeouts {
        header: options.read_header_timeout,
        write: options.write_timeout,
    };
    let watchdog = conn.clone().watch(timeouts);
    let mut watchdog = std::pin::pin!(watchdog);
    let web = shared.app.web.get();
    let stream = tokio::select! {
        accepted = web.accept(stream) => match accepted {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
        },
        reason = &mut watchdog => {
            shared.app.stats.closed(reason);
            tracing::debug!(%peer, reason = reason.label(), "closing a stalled connection");
            return;
        }
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if !web.http2() {
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.read_header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let stats = shared.app.stats.clone();
    let service = {
        let conn = conn.clone();
        service_fn(move |request| handle(shared.clone(), conn.clone(), peer, request))
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        reason = &mut watchdog => {
            // Counted first, so a client that sees the close also sees the count.
            stats.closed(reason);
            tracing::debug!(%peer, reason = reason.label(), "closing a stalled connection");
            // An idle connection is told (HTTP/2 GOAWAY); one that never sent a request, or
            // whose answer is stuck, is just dropped.
            if reason == CloseReason::Idle {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await;
            }
            return;
        }
        () = closing.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        // hyper's own header timer (HTTP/1.1) may fire before the watchdog: the same stall.
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            stats.closed(conn.stall());
        }
        tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
    }
}

type Answer = Response<Body>;

/// A response body sent frame by frame from shared buffers: hyper writes each large `Bytes`
/// as it is (vectored), so a page is not copied per request and a client that does not read
/// holds only references. Runs of small pieces (the deflate pieces of a gzip page, headers)
/// are joined into frames of up to [`JOINED_FRAME`] bytes as they are sent: many small writes
/// would each leave a short TCP segment that Nagle's algorithm holds back until the peer's
/// delayed ACK, 40 ms later. Its exact size is known, so the answer has a `Content-Length`.
pub struct Body {
    frames: std::iter::Peekable<std::vec::IntoIter<Bytes>>,
    remaining: u64,
    /// What the request holds until its answer's body is dropped (sent, or the client went
    /// away), and where the body reports its progress.
    hold: Hold,
}

/// What an answer's body holds until it is dropped.
#[derive(Default)]
struct Hold {
    /// The request's places under `--web.max-requests`: the server's and its connection's.
    _places: Vec<OwnedSemaphorePermit>,
    /// The request counts as open on its connection.
    _open: Option<Open>,
    progress: Option<Arc<Progress>>,
}

/// Pieces shorter than this are joined with their neighbours; longer ones are sent as they are.
const SMALL_FRAME: usize = 16 * 1024;
/// How large a frame of joined pieces may grow.
pub const JOINED_FRAME: usize = 64 * 1024;

impl Body {
    pub fn new(frames: Vec<Bytes>) -> Body {
        let remaining = frames.iter().map(|f| f.len() as u64).sum();
        Body {
            frames: frames.into_iter().peekable(),
            remaining,
            hold: Hold::default(),
        }
    }

    /// Holds `places` until the body is dropped.
    fn hold_places(&mut self, places: Vec<OwnedSemaphorePermit>) {
        self.hold._places = places;
    }

    /// Keeps the request open on its connection until the body is dropped, and reports the
    /// body's progress to the connection's watchdog.
    fn track(&mut self, open: Open, progress: Arc<Progress>) {
        self.hold._open = Some(open);
        self.hold.progress = Some(progress);
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::new(vec![bytes])
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let Some(first) = self.frames.find(|f| !f.is_empty()) else {
            return Poll::Ready(None);
        };
        let frame = if first.len() >= SMALL_FRAME {
            first
        } else {
            let mut joined = BytesMut::with_capacity(JOINED_FRAME);
            joined.extend_from_slice(&first);
            while let Some(next) = self
                .frames
                .next_if(|f| f.len() < SMALL_FRAME && joined.len() + f.len() <= JOINED_FRAME)
            {
                joined.extend_from_slice(&next);
            }
            joined.freeze()
        };
        self.remaining -= frame.len() as u64;
        if let Some(progress) = &self.hold.progress {
            progress.moved();
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// The paths the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Landing,
    TargetsPage,
    Metrics,
    Healthy,
    Ready,
    Reload,
    TargetsApi,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        Some(match path {
            "/" => Route::Landing,
            "/targets" => Route::TargetsPage,
            "/metrics" => Route::Metrics,
            "/-/healthy" => Route::Healthy,
            "/-/ready" => Route::Ready,
            "/-/reload" => Route::Reload,
            "/api/v1/targets" => Route::TargetsApi,
            _ => return None,
        })
    }

    /// Probes need no credentials and are not counted against `--web.max-requests`.
    fn is_probe(self) -> bool {
        matches!(self, Route::Healthy | Route::Ready)
    }
}

async fn handle(
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    peer: std::net::SocketAddr,
    request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let open = conn.begin();
    let web = shared.app.web.get();
    let (head, body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + shared.app.options.read_timeout;
    let mut body = RequestBody::new(body, deadline);
    let client = Client {
        conn: &conn,
        peer,
        web: &web,
    };
    let (mut answer, places) = respond(&shared, &client, &head, &mut body).await;
    // Whatever the handler left of the body is read and dropped first, so HTTP/2 clients
    // still uploading see the answer (without holding places meanwhile).
    body.drain(&head).await;
    answer.body_mut().hold_places(places);
    for (name, value) in web.response_headers() {
        answer.headers_mut().insert(name.clone(), value.clone());
    }
    answer.body_mut().track(open, conn.sending());
    Ok(answer)
}

/// Who is asking: the connection, its peer, and the web config in force for the request.
struct Client<'a> {
    conn: &'a Arc<Connection>,
    peer: std::net::SocketAddr,
    web: &'a WebConfig,
}

/// The answer, and the `--web.max-requests` places to hold until it is sent.
async fn respond(
    shared: &Arc<Shared>,
    client: &Client<'_>,
    head: &Parts,
    body: &mut RequestBody,
) -> (Answer, Vec<OwnedSemaphorePermit>) {
    if let Some((path, callbacks)) = &shared.app.callbacks {
        if head.uri.path() == path {
            return (callback(callbacks.clone(), head, body).await, Vec::new());
        }
    }
    let route = Route::of(head.uri.path());
    if route == Some(Route::TargetsApi) {
        body.set_limit(api::MAX_BODY_BYTES);
    }
    let probe = route.is_some_and(Route::is_probe);
    if !probe {
        // Waiting for a turn at bcrypt is bounded like reading a body.
        let checked = tokio::time::timeout(
            shared.app.options.read_timeout,
            client
                .web
                .authorize_async(&head.headers, &client.conn.caller),
        )
        .await
        .unwrap_or(Err(Unauthorized::Busy));
        if let Err(refused) = checked {
            shared.app.stats.auth_refused(refused, client.peer);
            let (parts, body) = refused.response().into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return (Response::from_parts(parts, Body::from(body)), Vec::new());
        }
    }
    let Some(route) = route else {
        return (plain(StatusCode::NOT_FOUND, "Not found\n"), Vec::new());
    };
    let call = (route == Route::TargetsApi).then(|| ApiCall::of(shared, &head.method));
    // An upload is read before it takes a place, under its own small cap: slow uploads hold
    // upload slots, never the places scrapes need.
    let upload = match call {
        Some(ApiCall::Write) => match read_upload(shared, body).await {
            Ok(upload) => Some(upload),
            Err(refusal) => return (refusal, Vec::new()),
        },
        _ => None,
    };
    let places = if probe {
        Vec::new()
    } else {
        match take_places(shared, client.conn) {
            Ok(places) => places,
            Err(refusal) => return (text(StatusCode::SERVICE_UNAVAILABLE, refusal), Vec::new()),
        }
    };
    let answer = match (route, call, upload) {
        (Route::Reload, ..) => reload(shared, &head.method).await,
        (Route::TargetsApi, Some(ApiCall::Off), _) => json(
            StatusCode::NOT_FOUND,
            api_error(
                "not_found",
                "the targets API is off; start the exporter with --web.enable-targets-api",
            ),
        ),
        (Route::TargetsApi, Some(ApiCall::List), _) => targets_list(shared).await,
        (Route::TargetsApi, _, Some((upload, slot))) => {
            targets_write(shared, &head.method, upload, slot).await
        }
        (Route::TargetsApi, ..) => not_allowed("GET, HEAD, POST, DELETE", "Method not allowed\n"),
        _ => read_only(shared, route, head).await,
    };
    (answer, places)
}

/// What a request to `/api/v1/targets` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiCall {
    /// The API is off (`404`).
    Off,
    /// `GET` or `HEAD`.
    List,
    /// `POST` or `DELETE`: a body to read.
    Write,
    /// Another method (`405`).
    Other,
}

impl ApiCall {
    fn of(shared: &Shared, method: &Method) -> ApiCall {
        if !shared.app.options.enable_targets_api {
            ApiCall::Off
        } else if method == Method::GET || method == Method::HEAD {
            ApiCall::List
        } else if method == Method::POST || method == Method::DELETE {
            ApiCall::Write
        } else {
            ApiCall::Other
        }
    }
}

/// A registration body and the upload slot (one of [`MAX_UPLOADS`]) it holds until it has
/// been applied; or the answer refusing it (`503` with every slot taken, `408`, `413`, `400`).
async fn read_upload(
    shared: &Shared,
    body: &mut RequestBody,
) -> Result<(Bytes, OwnedSemaphorePermit), Answer> {
    let Ok(slot) = shared.uploads.clone().try_acquire_owned() else {
        tracing::debug!(
            limit = MAX_UPLOADS,
            "request refused: too many uploads in flight"
        );
        return Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Limit of concurrent uploads reached ({MAX_UPLOADS}), try again later.\n"),
        ));
    };
    match body.read(api::MAX_BODY_BYTES).await {
        Ok(bytes) => Ok((bytes, slot)),
        Err(err) => Err(body_error(&err)),
    }
}

/// A place under `--web.max-requests` and one of the connection's, or the text of the `503`
/// answer.
fn take_places(shared: &Shared, conn: &Connection) -> Result<Vec<OwnedSemaphorePermit>, String> {
    let Some(places) = &shared.places else {
        return Ok(Vec::new());
    };
    let limit = shared.app.options.max_requests;
    let Some(own) = conn.try_place() else {
        tracing::debug!(
            limit = PER_CONNECTION_REQUESTS,
            "request refused: too many requests in flight on one connection"
        );
        return Err(format!(
            "Limit of concurrent requests per connection reached ({}), try again later.\n",
            PER_CONNECTION_REQUESTS.min(limit)
        ));
    };
    let Ok(place) = places.clone().try_acquire_owned() else {
        tracing::debug!(limit, "request refused: too many requests in flight");
        return Err(format!(
            "Limit of concurrent requests reached ({limit}), try again later.\n"
        ));
    };
    Ok([Some(place), own].into_iter().flatten().collect())
}

/// One RTC callback delivery: POST only, the body capped, judged and acted on at once (the
/// vendor waits 5 s and retries).
async fn callback(callbacks: Arc<dyn Callbacks>, head: &Parts, body: &mut RequestBody) -> Answer {
    // One byte over the limit is read, so the receiver judges (and counts) it as too large.
    let limit = callbacks.max_body().saturating_add(1);
    body.set_limit(limit);
    if head.method != Method::POST {
        return not_allowed("POST", "Only POST requests allowed\n");
    }
    let (status, reason) = match body.read(limit).await {
        Ok(body) => callbacks.deliver(&body),
        Err(api::BodyError::TooLarge { .. }) => callbacks.too_large(),
        Err(e) => (e.status(), e.to_string()),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(status, format!("{reason}\n"))
}

/// The GET/HEAD routes.
async fn read_only(shared: &Arc<Shared>, route: Route, head: &Parts) -> Answer {
    if head.method != Method::GET && head.method != Method::HEAD {
        return not_allowed("GET, HEAD", "Method not allowed\n");
    }
    // For HEAD, hyper sends the headers of this answer and drops its body.
    match route {
        Route::Metrics => metrics(shared, &head.headers).await,
        Route::Healthy => plain(StatusCode::OK, "Healthy\n"),
        Route::Ready if shared.app.ready.load(Ordering::Acquire) => {
            plain(StatusCode::OK, "Ready\n")
        }
        Route::Ready => plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n"),
        Route::Landing | Route::TargetsPage => {
            let query =
                (route == Route::TargetsPage).then(|| TargetsQuery::from_query(head.uri.query()));
            page(shared, query).await
        }
        Route::Reload | Route::TargetsApi => plain(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

/// `/` (no query) or `/targets`, rendered on the blocking pool from a snapshot of the rows.
async fn page(shared: &Arc<Shared>, query: Option<TargetsQuery>) -> Answer {
    let job = shared.clone();
    let made = tokio::task::spawn_blocking(move || {
        let rows = job.app.targets.target_rows();
        let mut info = job
            .app
            .landing
            .page_info(crate::clock::now_ms(), job.app.options.enable_targets_api);
        if let Some(summary) = job.app.targets.summary() {
            info.facts.retain(|(name, _)| name != CONFIGURATION);
            info.facts.insert(0, (CONFIGURATION.to_owned(), summary));
        }
        match query {
            None => pages::landing_page(&info, &rows),
            Some(query) => pages::targets_page(&info, &rows, &query),
        }
    })
    .await;
    match made {
        Ok(html) => {
            let mut answer = Response::new(Body::from(Bytes::from(html)));
            answer.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            answer
        }
        Err(err) => {
            tracing::error!(error = %err, "rendering a page failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "Rendering failed\n")
        }
    }
}

/// `/-/reload`, as Prometheus answers it.
async fn reload(shared: &Arc<Shared>, method: &Method) -> Answer {
    if method != Method::POST && method != Method::PUT {
        return not_allowed("POST, PUT", "Only POST or PUT requests allowed\n");
    }
    if !shared.app.options.enable_lifecycle {
        return plain(StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n");
    }
    let Some(reloader) = &shared.app.reload else {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "There is no configuration file to reload.\n",
        );
    };
    match reloader.reload_async("HTTP").await {
        Ok(summary) => text(StatusCode::OK, summary.to_string()),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {err}\n"),
        ),
    }
}

/// `GET /api/v1/targets`.
async fn targets_list(shared: &Arc<Shared>) -> Answer {
    let job = shared.clone();
    match tokio::task::spawn_blocking(move || targets_json(&job.app.targets.target_rows())).await {
        Ok(body) => json(StatusCode::OK, body),
        Err(err) => {
            tracing::error!(error = %err, "listing the targets failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                api_error("internal", "listing the targets failed"),
            )
        }
    }
}

/// `POST` (register) or `DELETE` (unregister) `/api/v1/targets` with its body, parsed and
/// applied on the blocking pool while `_slot` (its upload slot) is held, so at most
/// [`MAX_UPLOADS`] bodies are in memory and parsed at once.
async fn targets_write(
    shared: &Arc<Shared>,
    method: &Method,
    body: Bytes,
    _slot: OwnedSemaphorePermit,
) -> Answer {
    let targets = shared.app.targets.clone();
    let register = method == Method::POST;
    let done = tokio::task::spawn_blocking(move || {
        if register {
            let parsed = api::parse_register(&body).map_err(WriteError::Body)?;
            let count = parsed.len();
            let r = targets
                .register(parsed, Source::Api)
                .map_err(WriteError::Refused)?;
            tracing::info!(
                targets = count,
                added = r.added,
                existing = r.existing,
                "targets registered through the API"
            );
            Ok(serde_json::json!({"added": r.added, "existing": r.existing}))
        } else {
            let keys = api::parse_deregister(&body).map_err(WriteError::Body)?;
            let count = keys.len();
            let r = targets
                .unregister(keys, Source::Api)
                .map_err(WriteError::Refused)?;
            tracing::info!(
                targets = count,
                removed = r.removed,
                unknown = r.unknown,
                "targets unregistered through the API"
            );
            Ok(serde_json::json!({"removed": r.removed, "unknown": r.unknown}))
        }
    })
    .await;
    match done {
        Ok(Ok(data)) => json(
            StatusCode::OK,
            serde_json::json!({"status": "success", "data": data}).to_string(),
        ),
        Ok(Err(WriteError::Body(err))) => body_error(&err),
        Ok(Err(WriteError::Refused(refusal))) => {
            let (status, kind) = match &refusal {
                ApiRefusal::Unsupported => (StatusCode::NOT_IMPLEMENTED, "unavailable"),
                ApiRefusal::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_data"),
                ApiRefusal::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            json(status, api_error(kind, &refusal.to_string()))
        }
        Err(err) => {
            tracing::error!(error = %err, "a registration API request failed");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                api_error("internal", "the request could not be completed"),
            )
        }
    }
}

/// Why a registration write was not applied.
enum WriteError {
    /// The body was refused (`400`, `413`).
    Body(api::BodyError),
    /// The targets could not be taken.
    Refused(ApiRefusal),
}

fn body_error(err: &api::BodyError) -> Answer {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(status, err.to_json())
}

/// `{"status":"error","errorType":kind,"error":message}`, as the Prometheus API answers.
fn api_error(kind: &str, message: &str) -> String {
    serde_json::json!({"status": "error", "errorType": kind, "error": message}).to_string()
}

/// `GET /api/v1/targets`: `{"status":"success","data":[…]}`, one object per target with its
/// key, labels, sources, phase, health, task status, last poll (time, outcome, error) and next
/// due time. Times are RFC 3339 in UTC, `null` when unknown.
pub fn targets_json(rows: &[TargetRow]) -> String {
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|row| {
            let labels: serde_json::Map<String, serde_json::Value> = row
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().into()))
                .collect();
            serde_json::json!({
                "kind": row.kind.as_str(),
                "app_id": row.app_id,
                "room_id": row.room_id,
                "task_id": row.task_id,
                "labels": labels,
                "sources": row.sources,
                "phase": row.phase.as_str(),
                "health": health_str(row),
                "status": row.status,
                "stop_reason": row.stop_reason,
                "last_poll": row.last_poll_ms.map(rfc3339_ms),
                "last_outcome": row.last_outcome,
                "last_error": row.last_error,
                "next_due": row.next_due_ms.map(rfc3339_ms),
                "end_time": row.end_time_ms.map(rfc3339_ms),
            })
        })
        .collect();
    serde_json::json!({"status": "success", "data": data}).to_string()
}

fn health_str(row: &TargetRow) -> &'static str {
    match row.health() {
        pages::Health::Up => "up",
        pages::Health::Down => "down",
        pages::Health::Pending => "pending",
    }
}

fn not_allowed(allow: &'static str, body: &'static str) -> Answer {
    let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, body);
    answer
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    answer
}

fn text(status: StatusCode, body: String) -> Answer {
    let mut answer = Response::new(Body::from(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

fn json(status: StatusCode, body: String) -> Answer {
    let mut answer = Response::new(Body::from(Bytes::from(body)));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

/// Makes the page on the blocking pool in the negotiated format, compressed when the client
/// accepts gzip, and streams it from the page's shared chunks.
async fn metrics(shared: &Arc<Shared>, headers: &HeaderMap) -> Answer {
    let gzip = accepts_gzip(headers);
    let format = Format::negotiate(
        headers
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let job = shared.clone();
    let made = tokio::task::spawn_blocking(move || {
        let page = (job.app.render)(format);
        if gzip {
            page.gzip(job.threads)
        } else {
            Ok(page.identity())
        }
    })
    .await;
    let frames = match made {
        Ok(Ok(frames)) => frames,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "compressing /metrics failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Compression failed\n");
        }
        Err(err) => {
            tracing::error!(error = %err, "rendering /metrics failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Rendering failed\n");
        }
    };
    let mut answer = Response::new(Body::new(frames));
    let headers = answer.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.append(VARY, HeaderValue::from_static("Accept"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    answer
}

fn plain(status: StatusCode, text: &'static str) -> Answer {
    let mut answer = Response::new(Body::from(Bytes::from_static(text.as_bytes())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// Whether the `Accept-Encoding` headers allow gzip: `gzip` (or `x-gzip`) with a non-zero
/// quality, or else `*` with a non-zero quality. Unparsable parts are ignored.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for part in value.split(',') {
            let mut fields = part.split(';');
            let coding = fields.next().unwrap_or("").trim();
            let mut quality = 1.0;
            for param in fields {
                if let Some((key, val)) = param.split_once('=') {
                    if key.trim().eq_ignore_ascii_case("q") {
                        quality = val.trim().parse::<f32>().unwrap_or(0.0);
                    }
                }
            }
            let accepted = quality > 0.0;
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(gzip.unwrap_or(false) || accepted);
            } else if coding == "*" {
                any = Some(accepted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(ACCEPT_ENCODING, HeaderValue::from_str(value).unwrap());
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_negotiation() {
        assert!(!accept(&[]));
        assert!(accept(&["gzip"]));
        assert!(accept(&["GZIP"]));
        assert!(accept(&["deflate, gzip;q=1.0, *;q=0.5"]));
        assert!(accept(&["br", "x-gzip"]));
        assert!(accept(&["*"]));
        assert!(accept(&["gzip;q=0.001"]));
        assert!(!accept(&["identity"]));
        assert!(!accept(&["gzip;q=0"]));
        assert!(!accept(&["gzip; q=0.0"]));
        assert!(!accept(&["*;q=0.5, gzip;q=0"]));
        assert!(!accept(&["*;q=0"]));
        assert!(!accept(&["gzip;q=nonsense"]));
        assert!(!accept(&["br, deflate"]));
    }

    #[test]
    fn small_pieces_are_joined_and_large_ones_sent_as_they_are() {
        use http_body_util::BodyExt as _;
        let big = Bytes::from(vec![b'b'; 100_000]);
        let mut frames = vec![Bytes::new(), Bytes::from_static(b"# HELP x\n")];
        frames.extend((0..100).map(|i| Bytes::from(vec![b'0' + (i % 10) as u8; 1_000])));
        frames.push(big.clone());
        frames.push(Bytes::from_static(b"tail\n"));
        let expected = frames.concat();
        let body = Body::new(frames);
        assert_eq!(
            hyper::body::Body::size_hint(&body).exact(),
            Some(expected.len() as u64)
        );
        let sent: Vec<Bytes> = collect_frames(body);
        assert_eq!(sent.concat(), expected);
        let sizes: Vec<usize> = sent.iter().map(Bytes::len).collect();
        // 9 + 100 × 1,000 bytes in two joined frames, the large piece as it is (the same
        // buffer, not a copy), then the tail.
        assert_eq!(sizes, [9 + 65_000, 35_000, 100_000, 5]);
        assert_eq!(sent[2].as_ptr(), big.as_ptr());

        fn collect_frames(body: Body) -> Vec<Bytes> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut body = body;
                let mut out = Vec::new();
                while let Some(frame) = body.frame().await {
                    out.push(frame.unwrap().into_data().unwrap());
                }
                out
            })
        }
    }
}
