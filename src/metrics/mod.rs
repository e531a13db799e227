//! The `/metrics` body: task families from the [`crate::targets::table::Store`] plus the self-metrics of
//! [`own::Telemetry`], as a [`Page`] in the format the scraper asked for.
//!
//! Text format 0.0.4 is the default; OpenMetrics 1.0.0 differs only in the counters (named
//! without `_total` in `# HELP`/`# TYPE`, with `_created`) and the closing `# EOF`, so both
//! formats share the store's per-target chunks.

pub mod own;

use crate::exposition::{Format, Page};
use crate::targets::table::Store;
use own::Telemetry;

/// The whole `/metrics` body in `format`: the store's per-target families and stop counter,
/// then the self-metrics (and `# EOF` in OpenMetrics).
///
/// Never waits on the API: the store's chunks are kept ready, so this only rebuilds the
/// chunks whose targets changed since the last page and encodes the few self-metrics.
pub fn page(store: &Store, telemetry: &Telemetry, format: Format) -> Page {
    let own = telemetry.gather();
    let mut page = Page::new();
    store.page(format, own.start_time_seconds(), &mut page);
    let mut text = Vec::with_capacity(16 * 1024);
    own.encode(format, &mut text);
    if format == Format::OpenMetrics {
        text.extend_from_slice(b"# EOF\n");
    }
    page.push_text(text);
    page
}

/// Append the whole `/metrics` body in text format 0.0.4 (a copy of [`page`]'s chunks).
pub fn render(store: &Store, telemetry: &Telemetry, out: &mut Vec<u8>) {
    let page = page(store, telemetry, Format::Text);
    if let Err(err) = page.write_to(out) {
        tracing::error!(error = %err, "reading a compressed chunk back failed");
    }
}
