//! # volcengine-rtc-exporter
//!
//! A Prometheus exporter for Volcengine RTC (and BytePlus RTC) cloud recording and web-page
//! capture tasks. The modules, from the ground up: each imports only those above it in this
//! list (`tests/architecture.rs` checks that no two import each other in a loop), and data
//! flows from the config and the sources of targets, through the target table and the
//! scheduler, to the API and back into the table, out to `/metrics` and the durable state.
//!
//! **Shared ground.**
//! - [`model`] — the domain: [`model::Target`] and its key, [`model::Source`] (where a target
//!   came from), [`model::TargetId`], [`model::TaskSnapshot`], [`model::Phase`],
//!   [`model::Outcome`], [`model::PerAction`], the API's 72-hour window, the reserved label
//!   names and the one located problem ([`model::Problem`]) of the config, web config and
//!   callbacks. [`clock`] — the one clock (tokio's `Instant`, wall time derived from it, so
//!   paused test time holds everywhere); [`duration`] — Prometheus durations (`15s`, `1h30m`).
//! - [`credentials`] — the credential chain, the [`credentials::Secret`] wrapper that keeps
//!   secrets out of every output, and the handle whose `*_file` keys are re-read for rotations.
//! - [`budget`] — one limiter per action: no sliding one-second window over budget, rate cut on
//!   throttling and restored gradually.
//! - [`exposition`] — the formats (text 0.0.4, OpenMetrics 1.0) and their text helpers, and the
//!   [`exposition::Page`] of shared, separately compressed chunks a scrape is served from.
//!
//! **What to follow.**
//! - [`state`] — the durable state (redb): the stored rows and their load, a group-committing
//!   writer, and retention, one file each.
//! - [`callbacks`] — RTC's signed event callbacks: each delivery verified, de-duplicated and
//!   judged by a pure function into an answer and an action (register a discovered task, apply
//!   its files, poll it); `volcengine_rtc_callbacks_total`; the `callbacks:` settings.
//! - [`config`] — the YAML file parsed, then converted in one step into checked
//!   [`config::Settings`]; every problem reported at once with file, line and column.
//! - [`targets`] — every target in one home: the one table ([`targets::table`]) of each
//!   target's key, labels, sources (each with its labels), when it was added, last answer and
//!   poll, phase, the tasks whose stop is counted, and its series kept ready; the lifecycle an
//!   answer decides ([`targets::lifecycle`]); where targets come from besides the config
//!   (watched target files, the registration API) and the one merge ([`targets::merge`]) by
//!   which any source changes the set.
//!
//! **When to poll, and what is sent.**
//! - [`scheduler`] — per action, which target to poll next and when (even spread, per-target
//!   backoff, the lanes of each phase), and the auth hold that pauses an action while its
//!   credentials are refused.
//! - [`volc`] — exactly what the exporter sends: [`volc::sign`] (pure V4 signer),
//!   [`volc::parse`] (answers into snapshots or classified errors), [`volc::client`] (signed
//!   GETs with retries in budget).
//! - [`metrics`] — the `/metrics` page: the table's task families and [`metrics::own`], the
//!   exporter's own metrics.
//!
//! **Serving and running.**
//! - [`http`] — HTTP on hyper, in one folder whose module doc says what is where: `/metrics`
//!   (gzip), `/`, `/targets`, `/-/healthy`, `/-/ready`, `/-/reload`, `/api/v1/targets`, behind
//!   the web config and the `--web.max-requests` cap (a few places per connection), each
//!   connection watched for stalls (header, idle and write timeouts), bodies read against a
//!   deadline and drained before a refusal, its own counters (refused logins, closed
//!   connections); [`http::accept`] — the accept loop (shared with the simulator) with its
//!   graceful drain and rate-limited "out of open files" log; [`http::web_config`] —
//!   `--web.config.file` (exporter-toolkit format): TLS and mTLS with certificates re-read when
//!   they change, basic auth against bcrypt hashes (verdicts cached, bcrypt a few at a time
//!   behind a bounded, fair queue); [`http::pages`] — the HTML of `/` and `/targets`, rendered
//!   purely from a snapshot of the targets.
//! - [`reload`] — SIGHUP and `POST /-/reload`: the config and web config files read and checked
//!   again, then handed to an [`reload::Apply`] hook; a broken file keeps the running config.
//! - `sim` (cargo feature `sim`, on by default) — a simulated OpenAPI for tests, benchmarks
//!   and `demo`, with the server-side signature check.
//! - [`runtime`] — wires the parts together and runs them, deciding nothing itself: the poll
//!   loops, housekeeping, the one way any source changes the target set, a reload applied
//!   live, what a callback does, the link to the durable state (what a restart restores, what
//!   each answer writes), the HTTP side, and the log of state changes (each logged once).
//! - [`cli`] — the command line, parsed by clap; [`commands`] — what each command does
//!   (run the exporter, `check`, `once`, `demo`); [`logging`] — `tracing` to stderr as logfmt or
//!   JSON. The binary (`main.rs`) only turns their result into an exit code.

pub mod budget;
pub mod callbacks;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod duration;
pub mod exposition;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod reload;
pub mod runtime;
pub mod scheduler;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod state;
pub mod targets;
pub mod volc;

/// The git revision this binary was built from (`VOLC_EXPORTER_REVISION` at build time), or
/// `unknown`.
pub const REVISION: &str = match option_env!("VOLC_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};
