//! The HTTP endpoint: `/metrics`, the landing page `/`, `/-/healthy` and `/-/ready`, served with
//! hyper on an already-bound listener until a cancellation token fires, then shut down
//! gracefully within a bounded time.
//!
//! The server knows nothing about targets or the scheduler: it is handed an [`App`] with a
//! closure that writes the exposition text, a readiness flag, and what the landing page says.
//! The closure runs on tokio's blocking pool (a 10,000-target page takes tens of milliseconds),
//! and the answer is gzip-compressed when the scraper's `Accept-Encoding` allows it.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// `Content-Type` of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long in-flight requests may run on after shutdown begins; then connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A client that has not sent a whole request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Appends the whole exposition text to the buffer; runs on tokio's blocking pool.
pub type Render = Box<dyn Fn(&mut Vec<u8>) + Send + Sync>;

/// Everything the server needs from the rest of the exporter.
pub struct App {
    /// Writes the `/metrics` body.
    pub render: Render,
    /// `/-/ready` answers 200 once this is true, 503 before.
    pub ready: Arc<AtomicBool>,
    /// What the landing page shows.
    pub landing: LandingInfo,
}

/// The landing page's content. Only public facts: never put secrets here.
#[derive(Debug, Clone)]
pub struct LandingInfo {
    pub name: String,
    pub version: String,
    pub revision: String,
    /// One line about the configuration, e.g. "120 targets, budget 50/s per action".
    pub summary: String,
    /// Links listed on the page, in order.
    pub links: Vec<Link>,
}

/// One link on the landing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub href: String,
    pub text: String,
}

impl Link {
    pub fn new(href: impl Into<String>, text: impl Into<String>) -> Link {
        Link {
            href: href.into(),
            text: text.into(),
        }
    }
}

impl LandingInfo {
    /// This crate's name, version and revision, the given summary, links to the endpoints,
    /// and to the project's repository when `Cargo.toml` names one.
    pub fn new(summary: impl Into<String>) -> LandingInfo {
        let mut links = vec![
            Link::new("metrics", "Metrics"),
            Link::new("-/healthy", "Health"),
            Link::new("-/ready", "Readiness"),
        ];
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

    /// The landing page: a small self-contained HTML document, every value escaped.
    pub fn html(&self) -> String {
        let mut page = String::with_capacity(1024);
        let name = escape_html(&self.name);
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{name}</title>\n\
             <style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;padding:0 1em}}\
             code{{background:#f4f4f4;padding:0 .2em}}</style>\n</head>\n<body>\n\
             <h1>{name}</h1>\n<p>Prometheus exporter for Volcengine RTC cloud recording and \
             web-capture tasks.</p>\n<p>Version <code>{}</code>, revision <code>{}</code></p>\n",
            escape_html(&self.version),
            escape_html(&self.revision),
        );
        if !self.summary.is_empty() {
            let _ = writeln!(page, "<p>{}</p>", escape_html(&self.summary));
        }
        page.push_str("<ul>\n");
        for link in &self.links {
            let _ = writeln!(
                page,
                "<li><a href=\"{}\">{}</a></li>",
                escape_html(&link.href),
                escape_html(&link.text)
            );
        }
        page.push_str("</ul>\n</body>\n</html>\n");
        page
    }
}

/// Escapes text for HTML element content and double-quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// State shared by every request of one `serve` call.
struct Shared {
    app: Arc<App>,
    landing_html: Bytes,
    /// Size of the previous exposition, to size the next buffer in one allocation.
    last_len: AtomicUsize,
}

/// Serves HTTP on `listener` until `shutdown` is cancelled; then stops accepting, lets
/// in-flight requests finish for up to [`SHUTDOWN_GRACE`], drops whatever connections remain,
/// and returns. Idle keep-alive connections are closed at once. Accept errors are logged and
/// retried, so this returns an error only if the listener itself is unusable.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::debug!(address = %local, "HTTP server listening");
    let shared = Arc::new(Shared {
        landing_html: Bytes::from(app.landing.html()),
        app,
        last_len: AtomicUsize::new(0),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = move |stream, peer: std::net::SocketAddr, closing: CancellationToken| {
        let shared = shared.clone();
        let service = service_fn(move |request| handle(shared.clone(), request));
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        async move {
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

type Answer = Response<Full<Bytes>>;

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let path = request.uri().path();
    let known = matches!(path, "/" | "/metrics" | "/-/healthy" | "/-/ready");
    if !known {
        return Ok(plain(StatusCode::NOT_FOUND, "Not found\n"));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed\n");
        answer
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(answer);
    }
    // For HEAD, hyper sends the headers of this answer and drops its body.
    Ok(match path {
        "/metrics" => metrics(&shared, request.headers()).await,
        "/-/healthy" => plain(StatusCode::OK, "Healthy\n"),
        "/-/ready" if shared.app.ready.load(Ordering::Acquire) => plain(StatusCode::OK, "Ready\n"),
        "/-/ready" => plain(StatusCode::SERVICE_UNAVAILABLE, "Not ready\n"),
        _ => {
            let mut answer = Response::new(Full::new(shared.landing_html.clone()));
            answer.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            answer
        }
    })
}

/// Renders the exposition on the blocking pool, compressed when the client accepts gzip.
async fn metrics(shared: &Arc<Shared>, headers: &HeaderMap) -> Answer {
    let gzip = accepts_gzip(headers);
    let job = shared.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        let mut body = Vec::with_capacity(job.last_len.load(Ordering::Relaxed));
        (job.app.render)(&mut body);
        job.last_len.store(body.len(), Ordering::Relaxed);
        if gzip {
            compress(&body)
        } else {
            Ok(body)
        }
    })
    .await;
    let body = match rendered {
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
    let mut answer = Response::new(Full::new(Bytes::from(body)));
    let headers = answer.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    answer
}

fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    // The fastest level: exposition text compresses well even so, and a scrape should cost
    // little CPU.
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

fn plain(status: StatusCode, text: &'static str) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
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
    fn landing_page_escapes_everything() {
        let mut info = LandingInfo::new("targets <b>\"x\" & 'y'</b>");
        info.links
            .push(Link::new("https://e.test/?a=1&b=\"2\"", "<Project>"));
        let page = info.html();
        assert!(page.contains("targets &lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"));
        assert!(page
            .contains("<a href=\"https://e.test/?a=1&amp;b=&quot;2&quot;\">&lt;Project&gt;</a>"));
        assert!(page.contains("<a href=\"metrics\">Metrics</a>"));
        assert!(!page.contains("<b>"));
    }
}
