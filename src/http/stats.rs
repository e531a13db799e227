//! The HTTP server's own counters, read at scrape time through [`HttpStats::collector`]:
//!
//! - `volcengine_rtc_http_auth_failures_total{reason}` — refused logins by
//!   [`Unauthorized::label`] (`missing`, `malformed`, `bad_credentials`, `check_failed`,
//!   `busy`);
//! - `volcengine_rtc_http_connections_closed_total{reason}` — connections the server closed
//!   for a client's stall, by [`CloseReason::label`].
//!
//! Wrong passwords (and logins refused as busy) are also logged, at most once per
//! [`AUTH_LOG_EVERY`] with how many there were since the last line — never the user name or
//! the password.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, Opts};
use tokio::time::Instant;

use super::connection::CloseReason;
use super::web_config::Unauthorized;

/// The least time between two log lines about failed logins.
pub const AUTH_LOG_EVERY: Duration = Duration::from_secs(60);

/// Counters of one server.
#[derive(Debug, Default)]
pub struct HttpStats {
    auth_failures: [AtomicU64; Unauthorized::ALL.len()],
    closed: [AtomicU64; CloseReason::ALL.len()],
    auth_log: Mutex<AuthLog>,
}

#[derive(Debug, Default)]
struct AuthLog {
    last: Option<Instant>,
    /// Failures since the last line.
    unreported: u64,
}

impl HttpStats {
    /// Counts a refused login; logs wrong passwords and busy refusals, rate-limited.
    pub(super) fn auth_refused(&self, reason: Unauthorized, peer: SocketAddr) {
        if let Some(i) = Unauthorized::ALL.iter().position(|r| *r == reason) {
            self.auth_failures[i].fetch_add(1, Ordering::Relaxed);
        }
        if !matches!(reason, Unauthorized::BadCredentials | Unauthorized::Busy) {
            tracing::debug!(
                reason = reason.label(),
                "request refused: not authenticated"
            );
            return;
        }
        let Ok(mut log) = self.auth_log.lock() else {
            return;
        };
        log.unreported += 1;
        let now = Instant::now();
        if log
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < AUTH_LOG_EVERY)
        {
            return;
        }
        tracing::warn!(
            failures = log.unreported,
            last_reason = reason.label(),
            last_peer = %peer.ip(),
            "failed logins (basic auth) since the last report; if unexpected, someone may be \
             guessing passwords: see volcengine_rtc_http_auth_failures_total"
        );
        log.last = Some(now);
        log.unreported = 0;
    }

    /// Counts a connection closed by its watchdog.
    pub(super) fn closed(&self, reason: CloseReason) {
        if let Some(i) = CloseReason::ALL.iter().position(|r| *r == reason) {
            self.closed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A collector of these counters, to register with the exporter's registry.
    pub fn collector(self: &Arc<HttpStats>) -> Box<dyn Collector> {
        let mut collector = StatsCollector {
            stats: self.clone(),
            descs: Vec::new(),
        };
        if let Some((a, c)) = collector.counters() {
            collector.descs = a.desc().into_iter().chain(c.desc()).cloned().collect();
        }
        Box::new(collector)
    }
}

struct StatsCollector {
    stats: Arc<HttpStats>,
    descs: Vec<Desc>,
}

impl StatsCollector {
    fn counters(&self) -> Option<(IntCounterVec, IntCounterVec)> {
        let ns = "volcengine_rtc";
        let auth = IntCounterVec::new(
            Opts::new(
                "http_auth_failures_total",
                "Requests refused by basic auth, by reason: missing, malformed, bad_credentials, check_failed, busy (429: too many logins waiting for bcrypt).",
            )
            .namespace(ns),
            &["reason"],
        )
        .ok()?;
        for (reason, n) in Unauthorized::ALL.iter().zip(&self.stats.auth_failures) {
            auth.with_label_values(&[reason.label()])
                .inc_by(n.load(Ordering::Relaxed));
        }
        let closed = IntCounterVec::new(
            Opts::new(
                "http_connections_closed_total",
                "HTTP connections closed by the server because the client stalled: header_timeout (no request head in time), idle (no request for that long), write_stalled (an answer made no progress).",
            )
            .namespace(ns),
            &["reason"],
        )
        .ok()?;
        for (reason, n) in CloseReason::ALL.iter().zip(&self.stats.closed) {
            closed
                .with_label_values(&[reason.label()])
                .inc_by(n.load(Ordering::Relaxed));
        }
        Some((auth, closed))
    }
}

impl Collector for StatsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some((auth, closed)) = self.counters() else {
            return Vec::new();
        };
        let mut out = auth.collect();
        out.extend(closed.collect());
        out
    }
}
