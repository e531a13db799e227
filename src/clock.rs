//! The one clock: tokio's. Monotonic time is [`tokio::time::Instant`]; wall-clock time is
//! [`now`], derived from it, so a test that pauses tokio's clock (`start_paused`,
//! `tokio::time::advance`) moves both, and nothing in the crate reads the system clock
//! elsewhere (`clippy.toml` bans `std::time::Instant` and `SystemTime::now` outside this
//! module).
//!
//! `now() = wall time captured once + (tokio's Instant now − the std Instant captured with it)`.
//! In a normal run tokio's clock follows real time, so this is the wall clock (without its
//! steps: a clock adjustment made while the process runs is not seen). Also the conversions
//! between `SystemTime` and the API's unit, milliseconds since the Unix epoch.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// The wall time and the std `Instant` read together, once per process.
fn base() -> &'static (SystemTime, std::time::Instant) {
    static BASE: OnceLock<(SystemTime, std::time::Instant)> = OnceLock::new();
    BASE.get_or_init(|| (SystemTime::now(), std::time::Instant::now()))
}

/// Wall-clock time now, advancing with tokio's clock (paused and advanced in tests).
pub fn now() -> SystemTime {
    wall_at(Instant::now())
}

/// The wall-clock time that corresponds to the tokio instant `at`.
pub fn wall_at(at: Instant) -> SystemTime {
    let (wall, origin) = *base();
    let at = at.into_std();
    match at.checked_duration_since(origin) {
        Some(later) => wall + later,
        None => wall - origin.duration_since(at),
    }
}

/// The real monotonic time now, whatever tokio's clock does: for deadlines of OS threads that
/// block in the kernel (the store's writer thread), where tokio's clock does not apply.
pub fn real_now() -> std::time::Instant {
    std::time::Instant::now()
}

/// Milliseconds since the Unix epoch now, by [`now`].
pub fn now_ms() -> i64 {
    system_time_to_ms(now())
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

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds); empty when out of range.
pub fn rfc3339_ms(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
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

    #[test]
    fn follows_the_system_clock_in_real_time() {
        let system = SystemTime::now();
        let ours = now();
        let apart = match ours.duration_since(system) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(apart < Duration::from_secs(5), "{apart:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn paused_tokio_time_moves_wall_time() {
        let before = now();
        assert_eq!(now(), before, "paused: the wall clock stands still");
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(now(), before + Duration::from_millis(1_500));
        let at = Instant::now() - Duration::from_secs(10);
        assert_eq!(
            wall_at(at),
            now() - Duration::from_secs(10),
            "instants before the base map back too"
        );
    }
}
