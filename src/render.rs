//! The `/metrics` body: task families from the [`crate::store::Store`] plus the self-metrics of
//! [`crate::telemetry::Telemetry`]; label-value escaping.
//!
//! SKELETON: being implemented.
