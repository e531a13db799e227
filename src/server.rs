//! The HTTP endpoint: `/metrics`, the landing page `/`, `/-/healthy` and `/-/ready`, served with
//! hyper on an already-bound listener until a cancellation token fires, then shut down
//! gracefully within a bounded time.
//!
//! The server knows nothing about targets or the scheduler: it is handed an [`App`] with a
//! closure that makes the exposition [`Page`] in the negotiated [`Format`] (OpenMetrics when
//! the scraper's `Accept` asks for it, else text 0.0.4), a readiness flag, and what the landing
//! page says. The closure runs on tokio's blocking pool. The answer is gzip-compressed when
//! `Accept-Encoding` allows it, and its body is streamed from the page's shared chunks, so
//! concurrent or slow scrapes hold references to one page rather than copies of it.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY,
};
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::exposition::{Format, Page};

/// `Content-Type` of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = crate::exposition::TEXT_CONTENT_TYPE;
/// How long in-flight requests may run on after shutdown begins; then connections are dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// A client that has not sent a whole request head within this time is disconnected.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes the whole exposition in the given format; runs on tokio's blocking pool.
pub type Render = Box<dyn Fn(Format) -> Page + Send + Sync>;

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
    /// Threads a gzip scrape may compress changed chunks on.
    threads: usize,
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
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
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
        }
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
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

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
            let mut answer = Response::new(Body::from(shared.landing_html.clone()));
            answer.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            answer
        }
    })
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
