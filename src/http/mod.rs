//! HTTP: `/metrics`, the landing page `/`, the targets page `/targets`, `/-/healthy`,
//! `/-/ready`, `/-/reload` and the registration API `/api/v1/targets`, served with hyper on an
//! already-bound listener until a cancellation token fires, then shut down gracefully within a
//! bounded time.
//!
//! What is where, in the order a request meets it:
//!
//! - this file — [`serve`]: the listener handed to the [`accept`] loop (one task per
//!   connection, a graceful drain, a rate-limited "out of open files" log), and each
//!   connection served: TLS handshake, HTTP/1.1 or HTTP/2, watched for stalls;
//! - `app.rs` — what the server is handed: [`App`], [`Options`] (`--web.*`), the [`Targets`],
//!   [`Reload`] and [`Callbacks`] hooks, [`LandingInfo`]; and the state the requests share;
//! - [`web_config`] — `--web.config.file`: TLS and mTLS ([`web_config::tls`]), basic auth
//!   ([`web_config::auth`]);
//! - `connection.rs` — one connection's bookkeeping, its places, and its stall watchdog;
//! - `routes.rs` — each request routed, authorized, given its places and answered: `/metrics`
//!   (format and gzip negotiation), the pages, the probes, `/-/reload`, the callback path;
//! - `api.rs` — `/api/v1/targets` (`targets_json`, registration and removal);
//! - `body.rs` — the response [`Body`] streamed from shared chunks, holding the request's
//!   places until it is sent; a request's body read against a deadline and drained before a
//!   refusal;
//! - [`pages`] — the HTML of `/` and `/targets`, rendered purely from a snapshot of the targets;
//! - `stats.rs` — the server's own counters ([`HttpStats`]).
//!
//! The server knows nothing about the scheduler or the store: it is handed an [`App`] with a
//! closure that makes the exposition [`Page`](crate::exposition::Page) in the negotiated
//! [`Format`](crate::exposition::Format) (OpenMetrics when the scraper's `Accept` asks for it,
//! else text 0.0.4), a readiness flag, what the landing page says, and a [`Targets`]
//! implementation for the pages and the registration API. The closure runs on tokio's blocking
//! pool. The answer is gzip-compressed when `Accept-Encoding` allows it, and its body is
//! streamed from the page's shared chunks, so concurrent or slow scrapes hold references to one
//! page rather than copies of it.
//!
//! **Security** (`--web.config.file`, see [`web_config`]): each connection is wrapped
//! with the web config in force when it is accepted (TLS, mTLS), and each request is checked
//! against the basic-auth users in force when it arrives, so a reload applies at once. A refused
//! request gets `401` with `WWW-Authenticate`. Every path needs credentials except
//! `/-/healthy` and `/-/ready`: they say only "Healthy"/"Ready", and leaving them open lets
//! Kubernetes probes work without a password in the pod spec. (The exporter-toolkit protects
//! every path; TLS and client certificates still apply to the probes here.)
//!
//! Logins are cheap to refuse and cannot crowd out good ones: see
//! [`web_config::auth`] (caches, a bounded bcrypt queue answering `429`, slowed repeat
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
//! **Stalls** (`connection.rs`): a connection must complete a request head within
//! `--web.read-header-timeout` of the accept (TLS handshake included) and is closed after that
//! long without a request; a request body must arrive within `--web.read-timeout` of its head
//! (else `408`); an answer that makes no progress for `--web.write-timeout` has its connection
//! dropped. A refusal first reads and drops the rest of the request's body, within the route's
//! limit (`body.rs`), so HTTP/2 clients still uploading see its status.
//!
//! **Lifecycle** (`--web.enable-lifecycle`): `POST` or `PUT /-/reload` reloads the
//! configuration (the [`Reload`] hook: the exporter's `reload` module); without the flag it
//! answers `403`, and `GET` answers `405`, as in Prometheus.
//!
//! **Registration API** (`--web.enable-targets-api`): `GET`, `POST` and `DELETE
//! /api/v1/targets`; a bad body answers `400` with its problems (the first 100), one over the
//! size or count limits `413` (see [`crate::targets::api`]); without the flag `404`.

pub mod accept;
mod api;
mod app;
mod body;
mod connection;
pub mod pages;
mod routes;
mod stats;
pub mod web_config;

pub use app::{
    ApiRefusal, App, Callbacks, LandingInfo, Options, Registered, Reload, Reloading, Render,
    Targets, Unregistered, DEFAULT_MAX_REQUESTS, MAX_UPLOADS, PER_CONNECTION_REQUESTS,
};
pub use body::Body;
pub use routes::accepts_gzip;
pub use stats::HttpStats;

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use app::Shared;
use connection::{CloseReason, Connection, Timeouts};
use routes::handle;

/// How long in-flight requests may run on after shutdown begins; then connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// The most HTTP/2 streams a client may open at once on one connection.
pub const MAX_STREAMS: u32 = 16;
/// How long a connection closed for idling may finish what it is doing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

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
    accept::serve(listener, connection, shutdown, SHUTDOWN_GRACE, "exporter").await;
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
