//! `volcengine_rtc_callbacks_total{event_type,outcome}`: every delivery counted once.
//!
//! The `event_type` label is bounded: deliveries refused before their signature was checked
//! (too large, malformed, bad signature) are counted under `unverified`, since their type is
//! whatever a stranger wrote; verified types are counted under their own name while it looks
//! like a name (at most [`MAX_TYPE_LEN`] of `A-Z a-z 0-9 _ . -`) and fewer than
//! [`MAX_EVENT_TYPES`] distinct names were seen; every other one under `other`.

use std::collections::HashSet;
use std::sync::Mutex;

use prometheus::{IntCounterVec, Opts, Registry};

use super::event::{RECORD_STARTED, RECORD_STOPPED};
use super::Outcome;

/// The `event_type` of deliveries whose signature was not (or could not be) checked.
pub const UNVERIFIED: &str = "unverified";
/// The `event_type` of types past the cap, or that do not look like names.
pub const OTHER: &str = "other";
/// Distinct `event_type` values counted under their own name, besides the fixed ones.
pub const MAX_EVENT_TYPES: usize = 32;
/// Longest type name counted under its own name.
pub const MAX_TYPE_LEN: usize = 64;

/// The counter and the type names seen.
#[derive(Debug)]
pub struct CallbackMetrics {
    pub(super) total: IntCounterVec,
    pub(super) key_reloads: IntCounterVec,
    seen: Mutex<HashSet<String>>,
}

impl Default for CallbackMetrics {
    fn default() -> Self {
        CallbackMetrics::new()
    }
}

impl CallbackMetrics {
    /// The counter, with the documented types and outcomes at zero.
    pub fn new() -> CallbackMetrics {
        let total = IntCounterVec::new(
            Opts::new(
                "callbacks_total",
                "RTC callback deliveries received, by event type and outcome.",
            )
            .namespace("volcengine_rtc"),
            &["event_type", "outcome"],
        )
        .expect("static metric definition");
        for t in [RECORD_STARTED, RECORD_STOPPED] {
            for o in [Outcome::Accepted, Outcome::Duplicate, Outcome::UnknownApp] {
                total.with_label_values(&[t, o.as_str()]);
            }
        }
        for o in [Outcome::BadSignature, Outcome::TooLarge, Outcome::Malformed] {
            total.with_label_values(&[UNVERIFIED, o.as_str()]);
        }
        let key_reloads = IntCounterVec::new(
            Opts::new(
                "callback_key_reloads_total",
                "Re-reads of callbacks.secret_key_file after a change: success (the new key in use) or failure (unreadable or empty; the old key kept).",
            )
            .namespace("volcengine_rtc"),
            &["outcome"],
        )
        .expect("static metric definition");
        for outcome in ["success", "failure"] {
            key_reloads.with_label_values(&[outcome]);
        }
        CallbackMetrics {
            total,
            key_reloads,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Adds the counter to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.total.clone()))?;
        registry.register(Box::new(self.key_reloads.clone()))
    }

    /// Counts a re-read of the key file that changed the key (`success`) or found it broken.
    pub fn count_key_reload(&self, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.key_reloads.with_label_values(&[outcome]).inc();
    }

    /// The label for a verified event type, and whether this is the first time an
    /// undocumented type is seen (to log it once).
    pub fn event_type_label(&self, event_type: &str) -> (String, bool) {
        if event_type == RECORD_STARTED || event_type == RECORD_STOPPED {
            return (event_type.to_owned(), false);
        }
        let looks_like_a_name = !event_type.is_empty()
            && event_type.len() <= MAX_TYPE_LEN
            && event_type
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !looks_like_a_name {
            return (OTHER.to_owned(), false);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(event_type) {
            return (event_type.to_owned(), false);
        }
        if seen.len() >= MAX_EVENT_TYPES {
            return (OTHER.to_owned(), false);
        }
        seen.insert(event_type.to_owned());
        (event_type.to_owned(), true)
    }

    /// Counts one delivery under an already bounded label.
    pub fn count(&self, label: &str, outcome: Outcome) {
        self.total
            .with_label_values(&[label, outcome.as_str()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_series_exist_at_zero_and_encode() {
        let m = CallbackMetrics::new();
        let registry = Registry::new();
        assert!(m.register(&registry).is_ok());
        m.count("RecordStarted", Outcome::Accepted);
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        assert!(prometheus::Encoder::encode(&encoder, &registry.gather(), &mut out).is_ok());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(
            "volcengine_rtc_callbacks_total{event_type=\"RecordStarted\",outcome=\"accepted\"} 1"
        ));
        assert!(text.contains(
            "volcengine_rtc_callbacks_total{event_type=\"unverified\",outcome=\"bad_signature\"} 0"
        ));
    }

    #[test]
    fn unknown_types_are_capped_and_reported_once() {
        let m = CallbackMetrics::new();
        assert_eq!(
            m.event_type_label("UserJoinRoom"),
            ("UserJoinRoom".into(), true)
        );
        assert_eq!(
            m.event_type_label("UserJoinRoom"),
            ("UserJoinRoom".into(), false)
        );
        assert_eq!(
            m.event_type_label("RecordStopped"),
            ("RecordStopped".into(), false)
        );
        assert_eq!(m.event_type_label("bad name{}"), (OTHER.into(), false));
        assert_eq!(m.event_type_label(&"x".repeat(65)), (OTHER.into(), false));
        for i in 1..MAX_EVENT_TYPES {
            assert!(m.event_type_label(&format!("Type{i}")).1);
        }
        assert_eq!(m.event_type_label("OneTooMany"), (OTHER.into(), false));
        assert_eq!(m.event_type_label("Type1"), ("Type1".into(), false));
    }
}
