//! The human-facing HTML pages: the landing page `/` and the targets page `/targets`.
//!
//! Rendering is pure: the caller takes a snapshot of the exporter's state as plain
//! [`TargetRow`]s plus a [`PageInfo`] (which includes "now", so times like "12s ago" are
//! deterministic), and gets a complete HTML document back. No I/O, no clock, no shared state.
//!
//! The pages are self-contained: inline CSS, a few lines of optional inline JavaScript, no
//! external assets, so they render offline and behind any proxy. Every link is relative
//! (`metrics`, `targets`, `./`), so the pages keep working under a path prefix. Every value that
//! comes from configuration, target files, the registration API or the vendor's answers (app
//! and room IDs, labels, errors) is HTML-escaped.
//!
//! - [`targets_page`] — targets grouped by app, then phase, in collapsible sections with
//!   counts; health, task status, last poll, next due and last error per target. The filter
//!   (text and "failing only") is a plain GET form applied here ([`TargetsQuery`]), so it works
//!   without JavaScript; the script only makes typing filter instantly.
//! - [`landing_page`] — name, version, links, and a summary: targets by phase per kind,
//!   failing targets, and tasks that failed in the last 24 hours.
//!
//! Both render from `row.rs` (the snapshot: [`TargetRow`], [`PageInfo`]) inside the frame of
//! `html.rs` (head, style, navigation bar, escaping, status names and times).

mod html;
mod landing;
mod row;
mod targets;

pub use landing::landing_page;
pub use row::{Health, Link, PageInfo, TargetRow};
pub use targets::{targets_page, TargetsQuery};
