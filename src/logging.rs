//! Logging setup: `tracing` events to stderr as logfmt or JSON, filtered by `--log.level`.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::cli::{LogFormat, LogLevel};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `--log.level`.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{}={}", crate_target(), level.as_str())))
        // Dependencies only speak up for warnings.
        .add_directive(
            "warn"
                .parse()
                .unwrap_or_else(|_| tracing::Level::WARN.into()),
        );
    let layer = match format {
        LogFormat::Logfmt => tracing_logfmt::builder()
            .with_span_name(false)
            .with_span_path(false)
            .layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    // A second init (tests) is harmless.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

fn crate_target() -> &'static str {
    "volc_rtc_exporter"
}
