//! The exporter's HTTP side: [`Targets`] for the pages and `/api/v1/targets` (a snapshot of
//! every target from the table and the scheduler, and registration as the `api` source), and
//! [`run_with`]: [`super::run`] with the `--web.*` options, the web config and the reloader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Exporter, ExporterError};
use crate::http::pages::TargetRow;
use crate::http::web_config::SharedWebConfig;
use crate::http::{self, App, LandingInfo, Options, Targets};
use crate::http::{ApiRefusal, Registered, Unregistered};
use crate::model::{Target, TargetKey};
use crate::reload::Reloader;
use crate::targets::Source;

/// The HTTP side's setup: the `--web.*` switches, the web config in force, and what
/// `POST /-/reload` runs.
#[derive(Debug, Clone, Default)]
pub struct WebSetup {
    pub options: Options,
    pub web: SharedWebConfig,
    pub reloader: Option<Arc<Reloader>>,
}

impl Targets for Exporter {
    fn summary(&self) -> Option<String> {
        Some(self.landing_summary())
    }

    fn register(&self, targets: Vec<Target>, source: Source) -> Result<Registered, ApiRefusal> {
        let change = self.add_targets(source, &targets);
        Ok(Registered {
            added: change.added,
            existing: targets.len().saturating_sub(change.added),
        })
    }

    fn unregister(&self, keys: Vec<TargetKey>, source: Source) -> Result<Unregistered, ApiRefusal> {
        let mut had = 0;
        for key in &keys {
            if let Some(id) = self.store.id_of(key) {
                if self.sources_of(id).contains(&source.to_string()) {
                    had += 1;
                }
            }
        }
        let change = self.remove_targets(&source, &keys);
        Ok(Unregistered {
            removed: change.removed,
            unknown: keys.len().saturating_sub(had),
        })
    }

    fn target_rows(&self) -> Vec<TargetRow> {
        let now = Instant::now();
        let now_ms = crate::clock::now_ms();
        let targets = self.store.targets();
        let sched = self.scheduler();
        let dues: Vec<_> = targets.iter().map(|(id, _)| sched.due(*id)).collect();
        drop(sched);
        let rows = targets.iter().zip(dues).filter_map(|((id, target), due)| {
            // Everything but when it is next due comes from the table.
            let state = self.store.state(*id)?;
            let snapshot = state.snapshot.as_ref();
            let last = state.last_poll.as_ref();
            let key = &target.key;
            Some(TargetRow {
                kind: key.kind,
                app_id: key.app_id.clone(),
                room_id: key.room_id.clone(),
                task_id: key.task_id.clone(),
                labels: target.labels.to_vec(),
                sources: state.sources.iter().map(ToString::to_string).collect(),
                phase: state.phase,
                status: snapshot.map(|s| s.status),
                stop_reason: snapshot
                    .map(|s| s.stop_reason.clone())
                    .filter(|r| !r.is_empty()),
                up: state.up == Some(true),
                last_poll_ms: last.map(|l| l.at_ms),
                last_outcome: last.map(|l| l.outcome.to_string()),
                last_error: last.and_then(|l| l.error.clone()),
                next_due_ms: due.map(|due| {
                    let ahead = due.saturating_duration_since(now).as_millis();
                    now_ms.saturating_add(i64::try_from(ahead).unwrap_or(i64::MAX))
                }),
                end_time_ms: snapshot.map(|s| s.end_time_ms).filter(|&ms| ms > 0),
            })
        });
        rows.collect()
    }
}

/// Runs the exporter until `shutdown`: polling in the background, and HTTP with `setup`: the
/// web config (TLS, basic auth), the `--web.*` switches, the pages from this exporter's
/// targets, and `/-/reload` through `setup.reloader`.
pub async fn run_with(
    exporter: Arc<Exporter>,
    listener: TcpListener,
    setup: WebSetup,
    shutdown: CancellationToken,
) -> Result<(), ExporterError> {
    exporter.set_budget_gauges();
    exporter
        .telemetry
        .record_reload(true, crate::clock::now_ms() as f64 / 1000.0);
    let ready = Arc::new(AtomicBool::new(false));
    let render_from = exporter.clone();
    let mut app = App::new(
        Box::new(move |format| {
            crate::metrics::page(&render_from.store, &render_from.telemetry, format)
        }),
        ready.clone(),
        LandingInfo::new(exporter.landing_summary()),
    )
    .with_targets(exporter.clone())
    .with_web_config(setup.web)
    .with_options(setup.options);
    if let Some(reloader) = setup.reloader {
        app = app.with_reloader(reloader);
    }
    let callbacks = exporter.settings().callbacks.clone();
    if let Some(settings) = callbacks {
        tracing::info!(path = %settings.path, "receiving RTC callbacks");
        let endpoint = super::CallbackEndpoint::new(exporter.clone(), &settings);
        app = app.with_callbacks(settings.path.clone(), Arc::new(endpoint));
    }
    exporter.telemetry.register_collector(app.stats.collector());
    let http = tokio::spawn(http::serve(listener, Arc::new(app), shutdown.clone()));
    exporter.refresh_gauges();
    let files = exporter.follow_files(&shutdown).await;
    exporter.watch_credentials(&shutdown);
    let polling = {
        let exporter = exporter.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { exporter.poll(stop).await })
    };
    ready.store(true, Ordering::SeqCst);
    tracing::info!(targets = exporter.store.len(), "polling started");
    let served = http.await;
    let _ = polling.await;
    if let Some(files) = files {
        let _ = files.await;
    }
    // Polls are over: write what is queued, then stop the writer.
    let closing = exporter.clone();
    let closed = tokio::task::spawn_blocking(move || closing.close_store())
        .await
        .unwrap_or(false);
    if !closed {
        tracing::warn!(
            "the store did not finish writing within {:?}; the last answers will be polled again",
            super::STORE_CLOSE_WAIT
        );
    }
    match served {
        Ok(r) => r.map_err(ExporterError::Http),
        Err(e) => Err(ExporterError::HttpTask(e)),
    }
}
