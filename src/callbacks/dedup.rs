//! Bounded de-duplication of callback deliveries on `EventId`: an id seen within the window
//! (default 24 h) is a duplicate; at most `max_count` ids are remembered (default 100,000), the
//! oldest forgotten first. The bounds are [`EventRetention`], the same that prune the stored
//! ids, so what survives a restart ([`Dedup::seeded`] from `state::Loaded::events`) is
//! exactly what was remembered before it.
//!
//! Memory is bounded by the count and by the id length: an id longer than [`MAX_ID_BYTES`] is
//! remembered by its SHA-256 instead ([`Dedup::key`]), which is also the key to persist.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::state::EventRetention;

/// Ids up to this length are kept as they are; longer ones as `sha256:<hex>`.
pub const MAX_ID_BYTES: usize = 128;

/// The remembered event ids.
#[derive(Debug, Clone)]
pub struct Dedup {
    window_ms: i64,
    max_count: usize,
    /// id -> when it was (last) received, ms.
    seen: HashMap<String, i64>,
    /// Ids in the order they were received; entries whose time no longer matches `seen` are
    /// stale and skipped.
    order: VecDeque<(String, i64)>,
}

impl Dedup {
    /// Empty, with these bounds.
    pub fn new(bounds: EventRetention) -> Dedup {
        Dedup {
            window_ms: i64::try_from(bounds.max_age.as_millis()).unwrap_or(i64::MAX),
            max_count: bounds.max_count,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Filled with persisted ids (`id -> received ms`), keeping the newest that fit the bounds
    /// at `now_ms`.
    pub fn seeded(bounds: EventRetention, events: &HashMap<String, i64>, now_ms: i64) -> Dedup {
        let mut dedup = Dedup::new(bounds);
        let mut sorted: Vec<(&String, &i64)> = events.iter().collect();
        sorted.sort_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)));
        for (id, at) in sorted {
            dedup.insert(Dedup::key(id), *at);
        }
        dedup.expire(now_ms);
        dedup
    }

    /// The form an id is remembered (and persisted) under.
    pub fn key(event_id: &str) -> String {
        if event_id.len() <= MAX_ID_BYTES {
            event_id.to_owned()
        } else {
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest(event_id.as_bytes()))
            )
        }
    }

    /// Whether `event_id` was seen within the window before `now_ms`.
    pub fn contains(&self, event_id: &str, now_ms: i64) -> bool {
        self.seen
            .get(&Dedup::key(event_id))
            .is_some_and(|&at| self.fresh(at, now_ms))
    }

    /// Records `event_id` as received at `now_ms`: `true` if it is new, `false` if it is a
    /// duplicate (then nothing changes).
    pub fn check_and_insert(&mut self, event_id: &str, now_ms: i64) -> bool {
        if self.contains(event_id, now_ms) {
            return false;
        }
        self.insert(Dedup::key(event_id), now_ms);
        self.expire(now_ms);
        true
    }

    fn fresh(&self, at: i64, now_ms: i64) -> bool {
        now_ms.saturating_sub(at) < self.window_ms
    }

    fn insert(&mut self, key: String, at: i64) {
        self.seen.insert(key.clone(), at);
        self.order.push_back((key, at));
        while self.seen.len() > self.max_count {
            self.pop_oldest();
        }
        // Stale entries (ids received again) are dropped once they outnumber the live ones.
        if self.order.len() > 2 * self.seen.len().max(16) {
            let seen = &self.seen;
            self.order.retain(|(k, t)| seen.get(k) == Some(t));
        }
    }

    fn pop_oldest(&mut self) {
        while let Some((key, at)) = self.order.pop_front() {
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
                return;
            }
        }
    }

    /// Forgets ids older than the window.
    fn expire(&mut self, now_ms: i64) {
        while let Some((key, at)) = self.order.front() {
            if self.fresh(*at, now_ms) {
                break;
            }
            if self.seen.get(key) == Some(at) {
                self.seen.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bounds(max_age_ms: u64, max_count: usize) -> EventRetention {
        EventRetention {
            max_age: Duration::from_millis(max_age_ms),
            max_count,
        }
    }

    #[test]
    fn repeats_are_duplicates_within_the_window_only() {
        let mut d = Dedup::new(bounds(1_000, 10));
        assert!(d.check_and_insert("a", 0));
        assert!(!d.check_and_insert("a", 999));
        assert!(d.contains("a", 999));
        assert!(!d.contains("a", 1_000));
        assert!(d.check_and_insert("a", 1_000));
        assert_eq!(d.seen.len(), 1);
    }

    #[test]
    fn the_oldest_is_forgotten_beyond_the_count() {
        let mut d = Dedup::new(bounds(1_000_000, 3));
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(d.check_and_insert(id, i as i64));
        }
        assert_eq!(d.seen.len(), 3);
        assert!(!d.contains("a", 10));
        assert!(d.contains("b", 10) && d.contains("d", 10));
        // Memory stays bounded under a stream of distinct ids.
        for i in 0..10_000 {
            d.check_and_insert(&format!("id{i}"), 100 + i);
        }
        assert_eq!(d.seen.len(), 3);
        assert!(d.order.len() <= 32);
    }

    #[test]
    fn seeding_keeps_the_newest_within_bounds() {
        let events: HashMap<String, i64> = [("old", 0), ("x", 5_000), ("y", 6_000), ("z", 7_000)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let d = Dedup::seeded(bounds(4_000, 2), &events, 8_000);
        assert_eq!(d.seen.len(), 2);
        assert!(d.contains("y", 8_000) && d.contains("z", 8_000));
        assert!(!d.contains("x", 8_000) && !d.contains("old", 8_000));
        let d = Dedup::seeded(bounds(2_500, 10), &events, 8_000);
        assert!(!d.contains("x", 8_000) && d.contains("y", 8_000));
    }

    #[test]
    fn long_ids_are_kept_by_their_hash() {
        let long = "x".repeat(10_000);
        assert!(Dedup::key(&long).starts_with("sha256:"));
        assert_eq!(Dedup::key(&long).len(), 7 + 64);
        assert_eq!(Dedup::key("short"), "short");
        let mut d = Dedup::new(EventRetention::default());
        assert!(d.check_and_insert(&long, 0));
        assert!(!d.check_and_insert(&long, 1));
        let persisted: HashMap<String, i64> = [(Dedup::key(&long), 0)].into_iter().collect();
        assert!(Dedup::seeded(EventRetention::default(), &persisted, 1).contains(&long, 1));
    }
}
