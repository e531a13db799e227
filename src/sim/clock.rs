//! The simulator's clock: real wall-clock milliseconds (so the `StartTime`/`EndTime` it answers
//! with, and the Prometheus timestamps derived from them, are sane) that advance with tokio's
//! clock, plus a manual offset.
//!
//! `now = wall time at creation + (tokio Instant now − Instant at creation) + offset`.
//! In a normal run tokio's clock follows real time, so this is simply the wall clock. In a
//! test with paused tokio time, `tokio::time::advance` moves the simulator's clock too, and
//! [`Clock::advance`] moves it without touching tokio at all (useful to jump days ahead to
//! see a task pass the 72-hour horizon).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A controllable wall clock, in milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct Clock {
    origin_ms: i64,
    origin: Instant,
    offset_ms: AtomicI64,
}

impl Clock {
    /// The real wall clock (moved along by tokio's clock from now on).
    pub fn system() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock that reads `wall` now and advances with tokio's clock from here.
    pub fn starting_at(wall: SystemTime) -> Self {
        Clock {
            origin_ms: system_time_to_ms(wall),
            origin: Instant::now(),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.origin.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.origin_ms
            .saturating_add(elapsed)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Now, as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        ms_to_system_time(self.now_ms())
    }

    /// Moves the clock forward by `by` (tokio's clock is not touched).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Sets the clock so that it reads `wall` now.
    pub fn set_now(&self, wall: SystemTime) {
        let delta = system_time_to_ms(wall).saturating_sub(self.now_ms());
        self.offset_ms.fetch_add(delta, Ordering::Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn system_time_to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The `SystemTime` `ms` milliseconds after the Unix epoch (before it if negative).
pub fn ms_to_system_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ms_roundtrip() {
        for ms in [0, 1, 1_700_000_000_123, -5_000] {
            assert_eq!(system_time_to_ms(ms_to_system_time(ms)), ms);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time_and_manual_offset() {
        let start = ms_to_system_time(1_700_000_000_000);
        let clock = Clock::starting_at(start);
        assert_eq!(clock.now_ms(), 1_700_000_000_000);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now_ms(), 1_700_000_001_500);
        clock.advance(Duration::from_secs(3600));
        assert_eq!(clock.now_ms(), 1_700_003_601_500);
        clock.set_now(start);
        assert_eq!(clock.now(), start);
    }
}
