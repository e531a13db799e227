//! The commands behind the binary: run the exporter, `check`, `once`, `demo`. Each returns
//! whether it succeeded; `main` turns that into an exit code.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Settings};
use crate::credentials::ProcessEnv;
use crate::exporter::{self, Exporter};
use crate::model::Target;
use crate::telemetry::Telemetry;

#[cfg(feature = "sim")]
mod demo;
#[cfg(feature = "sim")]
pub use demo::{demo, demo_schedule};

/// Loads and checks the config; the error lists every problem.
pub fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    let settings = config::load(path, &ProcessEnv)?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    Ok(settings)
}

/// `check`: validate, print the summary.
pub fn check(path: &Path) -> anyhow::Result<()> {
    let settings = config::load(path, &ProcessEnv)?;
    println!("{}: OK", path.display());
    print!("{}", settings.summary());
    Ok(())
}

/// Describes a target for messages: `record app_id=… room_id=… task_id=…`.
pub fn describe(target: &Target) -> String {
    let k = &target.key;
    let mut s = format!("{} app_id={} room_id={}", k.kind, k.app_id, k.room_id);
    match &k.task_id {
        Some(t) => {
            let _ = write!(s, " task_id={t}");
        }
        None => s.push_str(" (room's newest task)"),
    }
    s
}

/// `once`: poll every target once inside the budget; metrics on stdout, one line per failed
/// target on stderr. Returns `false` if any poll failed.
pub async fn once(settings: Settings) -> anyhow::Result<bool> {
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::new(settings, telemetry)?;
    let failed = exporter.poll_each_once().await?;
    for (id, err) in &failed {
        eprintln!(
            "poll failed: {}: {}: {err}",
            describe(&exporter.settings.targets[*id]),
            err.outcome
        );
    }
    let mut out = Vec::with_capacity(64 * 1024);
    exporter.render(&mut out);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .context("writing metrics to stdout")?;
    stdout.flush().context("writing metrics to stdout")?;
    Ok(failed.is_empty())
}

/// Runs the exporter on `listen` until `shutdown`.
pub async fn serve(
    settings: Settings,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::new(settings, telemetry)?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--web.listen-address)"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %local, "listening");
    Ok(exporter::run(exporter, listener, shutdown).await?)
}
