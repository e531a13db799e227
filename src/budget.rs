//! Per-action request budget: a limiter that never lets a sliding one-second window hold more
//! request starts than the rate in force, and cuts/restores that rate on throttling.
//!
//! SKELETON: interface only; being implemented.

/// One action's limiter.
pub struct Limiter {
    budget: f64,
}

impl Limiter {
    pub fn new(budget: f64) -> Self {
        Limiter { budget }
    }

    /// The configured budget (requests per second).
    pub fn budget(&self) -> f64 {
        self.budget
    }
}
