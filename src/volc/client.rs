//! The HTTP client (reqwest, rustls): one signed GET per attempt, per-request timeout, body cap,
//! retries with jittered exponential backoff, every attempt inside the action's budget.
//!
//! SKELETON: being implemented.
