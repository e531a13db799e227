//! The commands behind the binary: run the exporter, `check`, `once`, `demo`. Each returns
//! whether it succeeded; `main` turns that into an exit code.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::budget::Limiter;
use crate::config::{self, Settings};
use crate::credentials::ProcessEnv;
use crate::exporter::{self, Exporter};
use crate::model::{Action, Target};
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::volc::client::Client;

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
    let limiters = Action::ALL.map(|a| Arc::new(Limiter::new(settings.budget_for(a))));
    let client = Arc::new(Client::new(
        &settings.api,
        settings.credentials.clone(),
        limiters,
        telemetry.clone(),
    )?);
    let store = Store::new(settings.targets.clone());
    let in_flight = Arc::new(Semaphore::new(settings.api.max_in_flight.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (id, target) in settings.targets.iter().enumerate() {
        let client = client.clone();
        let in_flight = in_flight.clone();
        let key = target.key.clone();
        tasks.spawn(async move {
            let _permit = in_flight.acquire_owned().await;
            (id, client.fetch(&key).await)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, result) = joined.context("a poll task failed")?;
        match result {
            Ok(snapshot) => {
                store.record_success(id, snapshot, crate::clock::now());
            }
            Err(err) => {
                store.record_failure(id);
                failed.push((id, err));
            }
        }
    }
    failed.sort_by_key(|(id, _)| *id);
    for (id, err) in &failed {
        eprintln!(
            "poll failed: {}: {}: {err}",
            describe(&settings.targets[*id]),
            err.outcome
        );
    }
    let mut out = Vec::with_capacity(64 * 1024);
    crate::render::render(&store, &telemetry, &mut out);
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
    exporter::run(exporter, listener, shutdown).await
}
