//! A request's body, read against a deadline (`--web.read-timeout` from the head) and a size
//! limit, and what is left of it read and dropped before a refusal is answered.
//!
//! Why drop it rather than leave it: an answer sent while the client is still uploading makes
//! hyper end the HTTP/2 stream with `RST_STREAM(NO_ERROR)`, and common clients (curl 7.88 with
//! nghttp2) then throw the answer away and report no status at all. Reading the rest first,
//! as Go's net/http does for small bodies, lets a `401`, `404` or `413` reach them. The drain is
//! bounded by the read deadline and in bytes, [`DRAIN_LIMIT`] (or the route's limit when
//! larger), so a body over a route's limit still sees its `413`. Memory stays flat: drained
//! data is dropped frame by frame. An HTTP/1.1 client waiting for `100 Continue` has sent nothing, so nothing
//! is drained (hyper then closes the connection after the answer).

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Incoming};
use hyper::header::EXPECT;
use hyper::http::request::Parts;
use hyper::Version;
use tokio::time::Instant;

use crate::sources::api::BodyError;

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
