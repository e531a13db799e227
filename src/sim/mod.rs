//! A simulated RTC OpenAPI for tests and `demo`: scripted task timelines for both actions,
//! signature verification, a per-action QPS limit, and fault injection.
//!
//! SKELETON: being implemented.
