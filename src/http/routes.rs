//! What each request gets: [`handle`] finds its [`Route`], checks its credentials (probes
//! excepted), takes its places under `--web.max-requests`, answers it, and has what is left of
//! its body drained before the answer goes out. The read-only endpoints (`/metrics` with its
//! format and gzip negotiation, the pages, the probes), `/-/reload` and the callback path are
//! answered here; `/api/v1/targets` in [`api`](super::api).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::http::request::Parts;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::api::{api_error, read_upload, targets_list, targets_write, ApiCall};
use super::app::{Callbacks, Shared, CONFIGURATION, PER_CONNECTION_REQUESTS};
use super::body::{json, not_allowed, plain, text, Answer, Body, RequestBody};
use super::connection::Connection;
use super::pages::{self, TargetsQuery};
use super::web_config::{Unauthorized, WebConfig};
use crate::exposition::Format;
use crate::targets::api;

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

pub(super) async fn handle(
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
            html(shared, query).await
        }
        Route::Reload | Route::TargetsApi => plain(StatusCode::NOT_FOUND, "Not found\n"),
    }
}

/// `/` (no query) or `/targets`, rendered on the blocking pool from a snapshot of the rows.
async fn html(shared: &Arc<Shared>, query: Option<TargetsQuery>) -> Answer {
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
    match reloader.clone().run("HTTP").await {
        Ok(summary) => text(StatusCode::OK, summary),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {err}\n"),
        ),
    }
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
