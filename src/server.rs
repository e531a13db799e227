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
//! **Load** (`--web.max-requests`, default 40, 0 for no cap): requests above that many in
//! flight get `503`, as with `promhttp`'s in-flight limit, so scrapers cannot pile up; a
//! request's place is held until its whole body is sent. The probes are not counted.
//!
//! **Lifecycle** (`--web.enable-lifecycle`): `POST` or `PUT /-/reload` reloads the
//! configuration ([`crate::reload`]); without the flag it answers `403`, and `GET` answers
//! `405`, as in Prometheus.
//!
//! **Registration API** (`--web.enable-targets-api`): `GET`, `POST` and `DELETE
//! /api/v1/targets`; a bad body answers `400` with every problem; without the flag `404`.

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
use crate::web_config::{SharedWebConfig, WebConfig};

/// `Content-Type` of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = crate::exposition::TEXT_CONTENT_TYPE;
/// How long in-flight requests may run on after shutdown begins; then connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A client that has not sent a whole request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `--web.max-requests`, as node_exporter's.
pub const DEFAULT_MAX_REQUESTS: usize = 40;

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
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_requests: DEFAULT_MAX_REQUESTS,
            enable_lifecycle: false,
            enable_targets_api: false,
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
        app,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    let connection = move |stream, peer: std::net::SocketAddr, closing: CancellationToken| {
        let shared = shared.clone();
        async move {
            let web = shared.app.web.get();
            let stream = match web.accept(stream).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
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
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let service = service_fn(move |request| handle(shared.clone(), request));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "HTTP connection ended with an error");
            }
        }
    };
    crate::accept::serve(listener, connection, shutdown, SHUTDOWN_GRACE, "exporter").await;
    tracing::debug!(address = %local, "HTTP server stopped");
    Ok(())
}

type Answer = Response<Body>;

/// A response body sent frame by frame from shared buffers: hyper writes each large `Bytes`
/// as it is (vectored), so a page is not copied per request and a client that does not read
/// holds only references (frames may also be made as they are taken, as the text of a chunk
/// kept compressed is). Runs of small pieces (the deflate pieces of a gzip page, headers)
/// are joined into frames of up to [`JOINED_FRAME`] bytes as they are sent: many small writes
/// would each leave a short TCP segment that Nagle's algorithm holds back until the peer's
/// delayed ACK, 40 ms later. Its exact size is known, so the answer has a `Content-Length`.
pub struct Body {
    frames: std::iter::Peekable<Box<dyn Iterator<Item = Bytes> + Send>>,
    remaining: u64,
    /// The request's place under `--web.max-requests`, given back when the body is dropped
    /// (sent, or the client went away).
    _permit: Option<OwnedSemaphorePermit>,
}

/// Pieces shorter than this are joined with their neighbours; longer ones are sent as they are.
const SMALL_FRAME: usize = 16 * 1024;
/// How large a frame of joined pieces may grow.
pub const JOINED_FRAME: usize = 64 * 1024;

impl Body {
    pub fn new(frames: Vec<Bytes>) -> Body {
        let remaining = frames.iter().map(|f| f.len() as u64).sum();
        Body::streamed(remaining, frames.into_iter())
    }

    /// A body of `len` bytes whose frames `frames` makes as they are taken. Frames that end
    /// short of `len` end the body early (the connection is closed).
    pub fn streamed(len: u64, frames: impl Iterator<Item = Bytes> + Send + 'static) -> Body {
        let frames: Box<dyn Iterator<Item = Bytes> + Send> = Box::new(frames);
        Body {
            frames: frames.peekable(),
            remaining: len,
            _permit: None,
        }
    }

    /// Holds `permit` until the body is dropped.
    fn hold(&mut self, permit: Option<OwnedSemaphorePermit>) {
        self._permit = permit;
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
        self.remaining = self.remaining.saturating_sub(frame.len() as u64);
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

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let web = shared.app.web.get();
    let mut answer = respond(&shared, &web, request).await;
    for (name, value) in web.response_headers() {
        answer.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(answer)
}

async fn respond(shared: &Arc<Shared>, web: &WebConfig, request: Request<Incoming>) -> Answer {
    if let Some((path, callbacks)) = &shared.app.callbacks {
        if request.uri().path() == path {
            return callback(callbacks.clone(), request).await;
        }
    }
    let route = Route::of(request.uri().path());
    let probe = route.is_some_and(Route::is_probe);
    if !probe {
        if let Err(refused) = web.authorize_async(request.headers()).await {
            tracing::debug!(
                reason = refused.label(),
                "request refused: not authenticated"
            );
            let (parts, body) = refused.response().into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Response::from_parts(parts, Body::from(body));
        }
    }
    let Some(route) = route else {
        return plain(StatusCode::NOT_FOUND, "Not found\n");
    };
    let permit = match (&shared.places, probe) {
        (Some(places), false) => match places.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                tracing::debug!(
                    limit = shared.app.options.max_requests,
                    "request refused: too many requests in flight"
                );
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Limit of concurrent requests reached ({}), try again later.\n",
                        shared.app.options.max_requests
                    ),
                );
            }
        },
        _ => None,
    };
    let mut answer = match route {
        Route::Reload => reload(shared, request.method()).await,
        Route::TargetsApi => targets_api(shared, request).await,
        _ => read_only(shared, route, &request).await,
    };
    answer.body_mut().hold(permit);
    answer
}

/// One RTC callback delivery: POST only, the body capped, judged and acted on at once (the
/// vendor waits 5 s and retries).
async fn callback(callbacks: Arc<dyn Callbacks>, request: Request<Incoming>) -> Answer {
    if request.method() != Method::POST {
        return not_allowed("POST", "Only POST requests allowed\n");
    }
    // One byte over the limit is read, so the receiver judges (and counts) it as too large.
    let limit = callbacks.max_body().saturating_add(1);
    let read = crate::sources::api::read_body(request.into_body(), limit).await;
    let (status, reason) = match read {
        Ok(body) => callbacks.deliver(&body),
        Err(crate::sources::api::BodyError::TooLarge { .. }) => callbacks.too_large(),
        Err(e) => (400, e.to_string()),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(status, format!("{reason}\n"))
}

/// The GET/HEAD routes.
async fn read_only(shared: &Arc<Shared>, route: Route, request: &Request<Incoming>) -> Answer {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return not_allowed("GET, HEAD", "Method not allowed\n");
    }
    // For HEAD, hyper sends the headers of this answer and drops its body.
    match route {
        Route::Metrics => metrics(shared, request.headers()).await,
        Route::Healthy => plain(StatusCode::OK, "Healthy\n"),
        Route::Ready if shared.app.ready.load(Ordering::Acquire) => {
            plain(StatusCode::OK, "Ready\n")
        }
        Route::Ready => plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n"),
        Route::Landing | Route::TargetsPage => {
            let query = (route == Route::TargetsPage)
                .then(|| TargetsQuery::from_query(request.uri().query()));
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

/// `/api/v1/targets`.
async fn targets_api(shared: &Arc<Shared>, request: Request<Incoming>) -> Answer {
    if !shared.app.options.enable_targets_api {
        return json(
            StatusCode::NOT_FOUND,
            api_error(
                "not_found",
                "the targets API is off; start the exporter with --web.enable-targets-api",
            ),
        );
    }
    let method = request.method().clone();
    if method == Method::GET || method == Method::HEAD {
        let job = shared.clone();
        return match tokio::task::spawn_blocking(move || {
            targets_json(&job.app.targets.target_rows())
        })
        .await
        {
            Ok(body) => json(StatusCode::OK, body),
            Err(err) => {
                tracing::error!(error = %err, "listing the targets failed");
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    api_error("internal", "listing the targets failed"),
                )
            }
        };
    }
    if method != Method::POST && method != Method::DELETE {
        return not_allowed("GET, HEAD, POST, DELETE", "Method not allowed\n");
    }
    let body = match api::read_body(request.into_body(), api::MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(err) => return body_error(&err),
    };
    let targets = shared.app.targets.clone();
    let outcome = if method == Method::POST {
        let parsed = match api::parse_register(&body) {
            Ok(parsed) => parsed,
            Err(err) => return body_error(&err),
        };
        let count = parsed.len();
        tokio::task::spawn_blocking(move || targets.register(parsed, Source::Api))
            .await
            .map(|done| {
                done.map(|r| {
                    tracing::info!(
                        targets = count,
                        added = r.added,
                        existing = r.existing,
                        "targets registered through the API"
                    );
                    serde_json::json!({"added": r.added, "existing": r.existing})
                })
            })
    } else {
        let keys = match api::parse_deregister(&body) {
            Ok(keys) => keys,
            Err(err) => return body_error(&err),
        };
        let count = keys.len();
        tokio::task::spawn_blocking(move || targets.unregister(keys, Source::Api))
            .await
            .map(|done| {
                done.map(|r| {
                    tracing::info!(
                        targets = count,
                        removed = r.removed,
                        unknown = r.unknown,
                        "targets unregistered through the API"
                    );
                    serde_json::json!({"removed": r.removed, "unknown": r.unknown})
                })
            })
    };
    match outcome {
        Ok(Ok(data)) => json(
            StatusCode::OK,
            serde_json::json!({"status": "success", "data": data}).to_string(),
        ),
        Ok(Err(refusal)) => {
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
            page.gzip(job.threads).map(Body::new)
        } else {
            Ok(Body::streamed(page.len() as u64, page.identity()))
        }
    })
    .await;
    let body = match made {
        Ok(Ok(body)) => body,
        Ok(Err(err)) => {
            tracing::error!(error = %err, "compressing /metrics failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Compression failed\n");
        }
        Err(err) => {
            tracing::error!(error = %err, "rendering /metrics failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "Rendering failed\n");
        }
    };
    let mut answer = Response::new(body);
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
