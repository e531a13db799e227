//! Per-action traffic bookkeeping: the sliding one-second QPS window that answers 429 above
//! the limit, per-outcome counters, and a bounded log of request arrivals for checking a
//! client's budget afterwards.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::{Action, Outcome, PerAction};

/// One request as the simulator saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    /// When the request arrived (tokio's clock).
    pub at: Instant,
    /// What a correct client should make of the answer (for a slow answer: of the answer it
    /// would get if it waited; for a huge body: `decode_error`, assuming its cap is smaller).
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
struct ActionTraffic {
    /// Arrivals admitted by the limiter within the last second.
    window: VecDeque<Instant>,
    /// Every request, oldest first, at most `capacity` of them.
    log: VecDeque<RequestRecord>,
}

/// Traffic state for both actions.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    actions: PerAction<Mutex<ActionTraffic>>,
    counters: PerAction<[AtomicU64; Outcome::ALL.len()]>,
}

const WINDOW: Duration = Duration::from_secs(1);

fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|o| *o == outcome)
        .unwrap_or_default()
}

impl Traffic {
    fn lock(&self, action: Action) -> std::sync::MutexGuard<'_, ActionTraffic> {
        self.actions[action]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a request arriving `at` fits in the sliding window (`limit` requests in any
    /// one second); if so it is counted in the window. Rejected requests do not count.
    pub(crate) fn admit(&self, action: Action, at: Instant, limit: Option<u32>) -> bool {
        let Some(limit) = limit else {
            return true;
        };
        let mut t = self.lock(action);
        while let Some(&front) = t.window.front() {
            if at.saturating_duration_since(front) >= WINDOW {
                t.window.pop_front();
            } else {
                break;
            }
        }
        if t.window.len() >= limit as usize {
            return false;
        }
        t.window.push_back(at);
        true
    }

    /// Counts a finished request and logs it (keeping at most `capacity` entries).
    pub(crate) fn record(&self, action: Action, record: RequestRecord, capacity: usize) {
        self.counters[action][outcome_index(record.outcome)].fetch_add(1, Ordering::Relaxed);
        if capacity == 0 {
            return;
        }
        let mut t = self.lock(action);
        while t.log.len() >= capacity {
            t.log.pop_front();
        }
        t.log.push_back(record);
    }

    pub(crate) fn count(&self, action: Action, outcome: Outcome) -> u64 {
        self.counters[action][outcome_index(outcome)].load(Ordering::Relaxed)
    }

    pub(crate) fn total(&self, action: Action) -> u64 {
        self.counters[action]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The logged requests, sorted by arrival.
    pub(crate) fn records(&self, action: Action) -> Vec<RequestRecord> {
        let mut v: Vec<RequestRecord> = self.lock(action).log.iter().copied().collect();
        v.sort_by_key(|r| r.at);
        v
    }

    pub(crate) fn clear_log(&self) {
        for action in Action::ALL {
            self.lock(action).log.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn window_admits_limit_per_second() {
        let t = Traffic::default();
        let a = Action::GetRecordTask;
        let start = Instant::now();
        for _ in 0..3 {
            assert!(t.admit(a, start, Some(3)));
        }
        assert!(!t.admit(a, start + Duration::from_millis(999), Some(3)));
        assert!(t.admit(a, start + Duration::from_millis(1000), Some(3)));
        assert!(t.admit(Action::GetWebCastTask, start, Some(3)));
        assert!(t.admit(a, start, None));
    }

    #[tokio::test(start_paused = true)]
    async fn log_is_capped_and_counters_count_everything() {
        let t = Traffic::default();
        let a = Action::GetWebCastTask;
        let now = Instant::now();
        for i in 0..10u64 {
            let outcome = if i % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::Throttled
            };
            let at = now + Duration::from_millis(i);
            t.record(a, RequestRecord { at, outcome }, 4);
        }
        assert_eq!(t.records(a).len(), 4);
        assert_eq!(t.count(a, Outcome::Success), 5);
        assert_eq!(t.total(a), 10);
        assert_eq!(t.total(Action::GetRecordTask), 0);
    }
}
