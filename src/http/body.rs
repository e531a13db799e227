//! Bodies, both ways.
//!
//! **Answers.** The response [`Body`] is sent frame by frame from shared buffers, and holds
//! what the request holds until it is sent: its places under `--web.max-requests` and its
//! place on the connection, whose watchdog it tells of its progress. The small answers (plain
//! text, JSON, `405`) are made here too.
//!
//! **Requests.** A request's body ([`RequestBody`]) is read against a deadline
//! (`--web.read-timeout` from the head) and a size limit, and what is left of it read and
//! dropped before a refusal is answered.
//!
//! Why drop it rather than leave it: an answer sent while the client is still uploading makes
//! hyper end the HTTP/2 stream with `RST_STREAM(NO_ERROR)`, and common clients (curl 7.88 with
//! nghttp2) then throw the answer away and report no status at all. Reading the rest first,
//! as Go's net/http does for small bodies, lets a `401`, `404` or `413` reach them. The drain is
//! bounded by the read deadline and in bytes, [`DRAIN_LIMIT`] (or the route's limit when
//! larger), so a body over a route's limit still sees its `413`. Memory stays flat: drained
//! data is dropped frame by frame. An HTTP/1.1 client waiting for `100 Continue` has sent
//! nothing, so nothing is drained (hyper then closes the connection after the answer).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, EXPECT};
use hyper::http::request::Parts;
use hyper::{Response, StatusCode, Version};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::connection::{Open, Progress};
use crate::targets::api::BodyError;

/// What a handler answers.
pub(super) type Answer = Response<Body>;

/// A response body sent frame by frame from shared buffers: hyper writes each large `Bytes`
/// as it is (vectored), so a page is not copied per request and a client that does not read
/// holds only references. Runs of small pieces (the deflate pieces of a gzip page, headers)
/// are joined into frames of up to `JOINED_FRAME` bytes as they are sent: many small writes
/// would each leave a short TCP segment that Nagle's algorithm holds back until the peer's
/// delayed ACK, 40 ms later. Its exact size is known, so the answer has a `Content-Length`.
pub struct Body {
    frames: std::iter::Peekable<Box<dyn Iterator<Item = Bytes> + Send>>,
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
        Body::streamed(remaining, frames.into_iter())
    }

    /// A body of `len` bytes whose frames `frames` makes as they are taken (the text of a
    /// chunk kept compressed, say). Frames that end short of `len` end the body early (the
    /// connection is closed).
    pub fn streamed(len: u64, frames: impl Iterator<Item = Bytes> + Send + 'static) -> Body {
        let frames: Box<dyn Iterator<Item = Bytes> + Send> = Box::new(frames);
        Body {
            frames: frames.peekable(),
            remaining: len,
            hold: Hold::default(),
        }
    }

    /// Holds `places` until the body is dropped.
    pub(super) fn hold_places(&mut self, places: Vec<OwnedSemaphorePermit>) {
        self.hold._places = places;
    }

    /// Keeps the request open on its connection until the body is dropped, and reports the
    /// body's progress to the connection's watchdog.
    pub(super) fn track(&mut self, open: Open, progress: Arc<Progress>) {
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
        self.remaining = self.remaining.saturating_sub(frame.len() as u64);
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

pub(super) fn not_allowed(allow: &'static str, body: &'static str) -> Answer {
    let mut answer = plain(StatusCode::METHOD_NOT_ALLOWED, body);
    answer
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    answer
}

pub(super) fn text(status: StatusCode, body: String) -> Answer {
    let mut answer = Response::new(Body::from(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

pub(super) fn json(status: StatusCode, body: String) -> Answer {
    let mut answer = Response::new(Body::from(Bytes::from(body)));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Answer {
    let mut answer = Response::new(Body::from(Bytes::from_static(text.as_bytes())));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// Bytes of a request's body read (in all) and dropped before a refusal, unless its route
/// takes more.
pub const DRAIN_LIMIT: usize = 8 << 20;

/// A request's body and how much of it was read.
pub struct RequestBody {
    body: Incoming,
    /// When reading must be over.
    deadline: Instant,
    /// The route's limit.
    limit: usize,
    read: usize,
    /// Whether the body was asked for (which makes hyper send `100 Continue`).
    touched: bool,
    ended: bool,
}

impl RequestBody {
    pub fn new(body: Incoming, deadline: Instant) -> RequestBody {
        let ended = body.is_end_stream();
        RequestBody {
            body,
            deadline,
            limit: 0,
            read: 0,
            touched: false,
            ended,
        }
    }

    /// The route's limit: what a refusal drains.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// The whole body, or [`BodyError::TooLarge`] once it passes `limit` bytes (the rest left
    /// unread), or [`BodyError::TimedOut`] at the deadline.
    pub async fn read(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        self.limit = limit;
        let mut out = BytesMut::new();
        while let Some(data) = self.next().await? {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(&data);
        }
        Ok(out.freeze())
    }

    /// Reads and drops what is left of the body, within the route's limit and the deadline
    /// (see the module doc). Errors end it quietly: the answer goes out either way.
    pub async fn drain(&mut self, head: &Parts) {
        let waits_for_continue = head.version < Version::HTTP_2
            && head
                .headers
                .get(EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if self.ended || (waits_for_continue && !self.touched) {
            return;
        }
        let budget = DRAIN_LIMIT.max(self.limit);
        while self.read <= budget {
            match self.next().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// The next data frame, `None` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        self.touched = true;
        while !self.ended {
            let frame = tokio::time::timeout_at(self.deadline, self.body.frame()).await;
            match frame {
                Err(_) => {
                    self.ended = true;
                    return Err(BodyError::TimedOut);
                }
                Ok(None) => self.ended = true,
                Ok(Some(Err(err))) => {
                    self.ended = true;
                    return Err(BodyError::Read(err.to_string()));
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.read = self.read.saturating_add(data.len());
                        return Ok(Some(data));
                    }
                }
            }
        }
        Ok(None)
    }
}
