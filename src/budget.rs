//! Per-action request budget: a limiter that never lets a sliding one-second window hold more
//! request starts than the rate in force, and cuts/restores that rate on throttling.
//!
//! TEMPORARY STUB in wip/client (no limiting) so the client compiles before wip/budget is
//! merged; it has the real module's public shape. Replaced by `git merge main`.

use std::sync::Mutex;

/// One action's limiter.
pub struct Limiter {
    budget: f64,
    rate: Mutex<f64>,
}

impl Limiter {
    pub fn new(budget: f64) -> Self {
        Limiter {
            budget,
            rate: Mutex::new(budget),
        }
    }

    /// The configured budget (requests per second).
    pub fn budget(&self) -> f64 {
        self.budget
    }

    pub fn rate(&self) -> f64 {
        self.rate.lock().map(|r| *r).unwrap_or(self.budget)
    }

    pub async fn acquire(&self) {}

    pub fn on_throttled(&self) {
        if let Ok(mut r) = self.rate.lock() {
            *r /= 2.0;
        }
    }
}
