//! One connection's bookkeeping and its watchdog, which closes the connection when the client
//! stalls where no other timer reaches:
//!
//! - **header timeout** — no request head completed within `--web.read-header-timeout` of
//!   the accept (TLS handshake and HTTP/2 preface included): silence, a byte, half a preface;
//! - **idle** — no request open for that long after the last one (an HTTP/2 connection with
//!   no open stream; HTTP/1.1 keep-alive is closed by hyper's own header timer first);
//! - **write stalled** — an answer whose body made no progress for `--web.write-timeout`
//!   (a client that stopped reading, or an HTTP/2 window of 0): the connection is dropped, which
//!   frees the `--web.max-requests` places its requests held.
//!
//! The connection also owns its share of places (a few of `--web.max-requests`) and its
//! [`Caller`] record of failed logins.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::web_config::Caller;

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No complete request head within the header timeout of the accept.
    HeaderTimeout,
    /// No open request for the header timeout after the last one.
    Idle,
    /// An answer made no progress for the write timeout.
    WriteStalled,
}

impl CloseReason {
    pub const ALL: [CloseReason; 3] = [
        CloseReason::HeaderTimeout,
        CloseReason::Idle,
        CloseReason::WriteStalled,
    ];

    /// The metric label: `header_timeout`, `idle`, `write_stalled`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Idle => "idle",
            CloseReason::WriteStalled => "write_stalled",
        }
    }
}

/// The timers a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Accept to first request head; also the longest idle time between requests.
    pub header: Duration,
    /// The longest an answer may make no progress.
    pub write: Duration,
}

/// One connection's state, shared by its requests and its watchdog.
pub struct Connection {
    /// Failed logins on this connection.
    pub caller: Caller,
    /// This connection's share of `--web.max-requests`; `None`: no cap.
    places: Option<Arc<Semaphore>>,
    /// Requests from their head until their answer's body is dropped.
    open: AtomicUsize,
    inner: Mutex<Inner>,
    changed: Notify,
}

struct Inner {
    /// When `open` last became 0 (or the accept).
    idle_since: Instant,
    /// Whether any request head arrived.
    served: bool,
    /// The answers being sent.
    answers: Vec<Weak<Progress>>,
}

impl Connection {
    /// A new connection that may hold `places` of `--web.max-requests` (`None`: no cap).
    pub fn new(places: Option<usize>) -> Arc<Connection> {
        Arc::new(Connection {
            caller: Caller::default(),
            places: places.map(|n| Arc::new(Semaphore::new(n))),
            open: AtomicUsize::new(0),
            inner: Mutex::new(Inner {
                idle_since: Instant::now(),
                served: false,
                answers: Vec::new(),
            }),
            changed: Notify::new(),
        })
    }

    /// One of this connection's places, or `None` when all are taken; `Some(None)` when there
    /// is no cap.
    pub fn try_place(&self) -> Option<Option<OwnedSemaphorePermit>> {
        match &self.places {
            None => Some(None),
            Some(places) => places.clone().try_acquire_owned().ok().map(Some),
        }
    }

    /// A request head arrived; the request is open until the returned guard is dropped.
    pub fn begin(self: &Arc<Connection>) -> Open {
        self.open.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut inner) = self.inner.lock() {
            inner.served = true;
        }
        self.changed.notify_one();
        Open(self.clone())
    }

    /// An answer starts being sent: its progress is watched from now on.
    pub fn sending(&self) -> Arc<Progress> {
        let progress = Arc::new(Progress(Mutex::new(Instant::now())));
        if let Ok(mut inner) = self.inner.lock() {
            inner.answers.retain(|a| a.strong_count() > 0);
            inner.answers.push(Arc::downgrade(&progress));
        }
        self.changed.notify_one();
        progress
    }

    /// What a timeout before or between requests means for this connection now.
    pub fn stall(&self) -> CloseReason {
        match self.inner.lock() {
            Ok(inner) if inner.served => CloseReason::Idle,
            _ => CloseReason::HeaderTimeout,
        }
    }

    /// Waits until the connection should be closed, and says why.
    pub async fn watch(self: Arc<Connection>, timeouts: Timeouts) -> CloseReason {
        loop {
            let changed = self.changed.notified();
            let next = self.next_deadline(timeouts);
            match next {
                Some((at, reason)) if at <= Instant::now() => {
                    // A stalled answer may have moved since the deadline was computed.
                    if self
                        .next_deadline(timeouts)
                        .is_some_and(|(at, _)| at <= Instant::now())
                    {
                        return reason;
                    }
                }
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The earliest deadline now in force, and what passing it means.
    fn next_deadline(&self, timeouts: Timeouts) -> Option<(Instant, CloseReason)> {
        let Ok(mut inner) = self.inner.lock() else {
            return None;
        };
        let mut next: Option<(Instant, CloseReason)> = None;
        if self.open.load(Ordering::Acquire) == 0 {
            let reason = if inner.served {
                CloseReason::Idle
            } else {
                CloseReason::HeaderTimeout
            };
            next = Some((inner.idle_since + timeouts.header, reason));
        }
        inner.answers.retain(|a| a.strong_count() > 0);
        let stalled = inner
            .answers
            .iter()
            .filter_map(Weak::upgrade)
            .map(|p| p.last())
            .min();
        if let Some(last) = stalled {
            let at = last + timeouts.write;
            if next.is_none_or(|(n, _)| at < n) {
                next = Some((at, CloseReason::WriteStalled));
            }
        }
        next
    }

    fn end(&self) {
        if self.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Ok(mut inner) = self.inner.lock() {
                inner.idle_since = Instant::now();
            }
        }
        self.changed.notify_one();
    }
}

/// An open request; dropped with its answer's body (sent, or the client went away).
pub struct Open(Arc<Connection>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// When an answer's body last moved.
#[derive(Debug)]
pub struct Progress(Mutex<Instant>);

impl Progress {
    /// The body handed a frame to the connection.
    pub fn moved(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.0.lock().map_or_else(|_| Instant::now(), |last| *last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        write: Duration::from_secs(30),
    };

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_header_timeout() {
        let conn = Connection::new(None);
        let started = Instant::now();
        assert_eq!(conn.watch(T).await, CloseReason::HeaderTimeout);
        assert_eq!(started.elapsed(), T.header);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let conn = Connection::new(None);
        let watch = tokio::spawn(conn.clone().watch(T));
        tokio::time::advance(Duration::from_secs(5)).await;
        let open = conn.begin();
        // A long request is not idle.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!watch.is_finished());
        let ended = Instant::now();
        drop(open);
        let reason = watch.await.unwrap();
        assert_eq!(reason, CloseReason::Idle);
        assert_eq!(ended.elapsed(), T.header);
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_does_not_move_is_stalled_and_one_that_moves_is_not() {
        let conn = Connection::new(None);
        let open = conn.begin();
        let moving = conn.sending();
        let watch = tokio::spawn(conn.clone().watch(T));
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(20)).await;
            moving.moved();
        }
        assert!(!watch.is_finished());
        let stuck = conn.sending();
        let since = Instant::now();
        let reason = watch.await.unwrap();
        assert_eq!(reason, CloseReason::WriteStalled);
        assert!(since.elapsed() >= T.write);
        drop((open, moving, stuck));
    }

    #[test]
    fn places_are_capped_per_connection() {
        let conn = Connection::new(Some(2));
        let a = conn.try_place().unwrap();
        let b = conn.try_place().unwrap();
        assert!(a.is_some() && b.is_some());
        assert!(conn.try_place().is_none());
        drop(a);
        assert!(conn.try_place().is_some());
        assert!(matches!(Connection::new(None).try_place(), Some(None)));
    }
}
