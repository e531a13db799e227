//! The simulator's clock: the crate's wall clock ([`crate::clock::now`], which advances with
//! tokio's clock) plus a manual offset, so the `StartTime`/`EndTime` it answers with, and the
//! Prometheus timestamps derived from them, are sane.
//!
//! In a normal run this is simply the wall clock. In a test with paused tokio time,
//! `tokio::time::advance` moves the simulator's clock too, and [`Clock::advance`] moves it
//! without touching tokio at all (useful to jump days ahead to see a task pass the 72-hour
//! horizon).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use crate::clock::{ms_to_system_time, system_time_to_ms};

/// A controllable wall clock, in milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct Clock {
    /// Added to the crate's wall clock.
    offset_ms: AtomicI64,
}

impl Clock {
    /// The crate's wall clock, with no offset.
    pub fn system() -> Self {
        Clock {
            offset_ms: AtomicI64::new(0),
        }
    }

    /// A clock that reads `wall` now and advances with tokio's clock from here.
    pub fn starting_at(wall: SystemTime) -> Self {
        let clock = Clock::system();
        clock.set_now(wall);
        clock
    }

    /// Now, in ms since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        crate::clock::now_ms().saturating_add(self.offset_ms.load(Ordering::Relaxed))
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

#[cfg(test)]
mod tests {
    use super::*;

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
