//! # volcengine-rtc-exporter
//!
//! A Prometheus exporter for Volcengine RTC (and BytePlus RTC) cloud recording and web-page
//! capture tasks. Data flows through the modules in this order:
//!
//! - [`config`] — the YAML file parsed, then converted in one step into checked [`config::Settings`];
//!   every problem reported at once with file, line and column.
//! - [`credentials`] — the credential chain and the [`credentials::Secret`] wrapper that keeps
//!   secrets out of every output.
//! - [`model`] — shared domain types: [`model::Target`], [`model::TaskSnapshot`], [`model::Outcome`].
//! - [`scheduler`] — the pure scheduling core: per action, which target to poll next and when
//!   (phases new → active → settling → done / expired, even spread, per-target backoff).
//! - [`budget`] — one limiter per action: no sliding one-second window over budget, rate cut on
//!   throttling and restored gradually.
//! - [`volc`] — the OpenAPI: [`volc::sign`] (pure V4 signer), [`volc::parse`] (answers into
//!   snapshots or classified errors), [`volc::client`] (signed GETs with retries in budget).
//! - [`exposition`] — the formats (text 0.0.4, OpenMetrics 1.0) and their text helpers, and the
//!   [`exposition::Page`] of shared, separately compressed chunks a scrape is served from; a
//!   leaf that imports nothing else of the crate.
//! - [`store`] — per-target state with its exposition chunks kept ready; stop counting.
//! - [`render`] — the `/metrics` page; [`telemetry`] — the exporter's own metrics.
//! - [`server`] — HTTP on hyper: `/metrics` (gzip, OpenMetrics), `/`, `/-/healthy`, `/-/ready`;
//!   graceful stop.
//! - [`sim`] — a simulated OpenAPI for tests and `demo`.

pub mod budget;
pub mod cli;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod exporter;
pub mod exposition;
pub mod logging;
pub mod model;
pub mod render;
pub mod scheduler;
pub mod server;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod volc;

/// The git revision this binary was built from (`VOLC_EXPORTER_REVISION` at build time), or
/// `unknown`.
pub const REVISION: &str = match option_env!("VOLC_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};
