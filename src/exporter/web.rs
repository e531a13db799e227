//! The exporter's side of the HTTP features, kept apart from the polling core:
//!
//! - [`Apply`] for the reload: puts what can change while running in force (new credentials,
//!   and the web config, which [`crate::reload`] swaps itself) and logs the targets' diff
//!   computed with [`crate::sources::merge`]. Targets, budgets, intervals and the endpoint are
//!   not changed yet: the summary says they take effect at the next restart.
//! - [`Targets`] for the pages and `GET /api/v1/targets`: a snapshot of every target from the
//!   store and the scheduler. Registration through the API is not available yet (the trait's
//!   default answers 501).
//! - [`run_with`]: [`super::run`] with the `--web.*` options, the web config and the reloader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Exporter, ExporterError};
use crate::config::Settings;
use crate::pages::TargetRow;
use crate::reload::{Apply, ApplySummary, Reloader};
use crate::server::{self, App, LandingInfo, Options, Targets};
use crate::sources::merge::MergedTargets;
use crate::sources::Source;
use crate::web_config::SharedWebConfig;

/// The HTTP side's setup: the `--web.*` switches, the web config in force, and what
/// `POST /-/reload` runs.
#[derive(Debug, Clone, Default)]
pub struct WebSetup {
    pub options: Options,
    pub web: SharedWebConfig,
    pub reloader: Option<Arc<Reloader>>,
}

impl Apply for Exporter {
    fn apply(&self, new: Settings) -> Result<ApplySummary, String> {
        let mut lines = Vec::new();
        let handle = self.client.credentials();
        let before = handle.current();
        handle.reconfigure(new.credentials.clone(), new.credential_config.clone());
        if *before != new.credentials {
            lines.push(format!(
                "credentials: now access key {} ({})",
                new.credentials.masked_access_key_id(),
                new.credential_source
            ));
        }

        let running = MergedTargets::merge([(Source::Config, self.store.targets())]);
        let wanted = MergedTargets::merge([(Source::Config, new.targets.iter())]);
        let diff = running.diff(&wanted);
        if !diff.is_empty() {
            lines.push(format!(
                "targets: {} to add, {} to remove, {} relabelled, {} unchanged; \
                 target changes take effect at the next restart",
                diff.added.len(),
                diff.removed.len(),
                diff.labels_changed.len(),
                diff.unchanged
            ));
            let added = diff.added.iter().map(|t| (&t.key, "reload: target to add"));
            let removed = diff.removed.iter().map(|k| (k, "reload: target to remove"));
            for (key, what) in added.chain(removed) {
                tracing::info!(
                    kind = key.kind.as_str(),
                    app_id = %key.app_id,
                    room_id = %key.room_id,
                    task_id = key.task_id.as_deref().unwrap_or(""),
                    "{what}"
                );
            }
        }

        let old = &self.settings;
        let mut waiting = Vec::new();
        if old.budget != new.budget {
            waiting.push("budget");
        }
        if old.api.endpoint != new.api.endpoint
            || old.api.region != new.api.region
            || old.api.timeout != new.api.timeout
            || old.api.max_in_flight != new.api.max_in_flight
            || old.api.record_version != new.api.record_version
            || old.api.webcast_version != new.api.webcast_version
        {
            waiting.push("api");
        }
        if old.schedule.active_interval != new.schedule.active_interval
            || old.schedule.settle_interval != new.schedule.settle_interval
            || old.schedule.settle_timeout != new.schedule.settle_timeout
            || old.schedule.retention != new.schedule.retention
        {
            waiting.push("schedule");
        }
        if !waiting.is_empty() {
            lines.push(format!(
                "changed sections {} take effect at the next restart",
                waiting.join(", ")
            ));
        }
        if lines.is_empty() {
            lines.push("no changes".to_string());
        }
        Ok(ApplySummary { lines })
    }
}

impl Targets for Exporter {
    fn target_rows(&self) -> Vec<TargetRow> {
        let now = Instant::now();
        let now_ms = crate::clock::now_ms();
        let sched = self.scheduler();
        let (phases, dues): (Vec<_>, Vec<_>) = (0..self.store.targets().len())
            .map(|id| (sched.phase(id), sched.due(id)))
            .unzip();
        drop(sched);
        self.store
            .targets()
            .iter()
            .enumerate()
            .map(|(id, target)| {
                let snapshot = self.store.snapshot(id);
                let (up, last_success_ms) = self.store.poll_status(id).unwrap_or((None, None));
                let key = &target.key;
                TargetRow {
                    kind: key.kind,
                    app_id: key.app_id.clone(),
                    room_id: key.room_id.clone(),
                    task_id: key.task_id.clone(),
                    labels: target.labels.clone(),
                    sources: vec![Source::Config.to_string()],
                    phase: phases[id].unwrap_or(crate::scheduler::Phase::New),
                    status: snapshot.as_ref().map(|s| s.status),
                    stop_reason: snapshot
                        .as_ref()
                        .map(|s| s.stop_reason.clone())
                        .filter(|r| !r.is_empty()),
                    up: up == Some(true),
                    // The store keeps the time of the last success only; a failed poll is
                    // shown as "now" until the store records failure times.
                    last_poll_ms: match up {
                        Some(true) => last_success_ms,
                        Some(false) => last_success_ms.or(Some(now_ms)),
                        None => None,
                    },
                    last_outcome: up.map(|ok| if ok { "success" } else { "failure" }.to_string()),
                    last_error: None,
                    next_due_ms: dues[id].map(|due| {
                        let ahead = due.saturating_duration_since(now).as_millis();
                        now_ms.saturating_add(i64::try_from(ahead).unwrap_or(i64::MAX))
                    }),
                    end_time_ms: snapshot
                        .as_ref()
                        .map(|s| s.end_time_ms)
                        .filter(|&ms| ms > 0),
                }
            })
            .collect()
    }
}

/// Runs the exporter until `shutdown`, as [`super::run`], serving HTTP with `setup`: the
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
            crate::render::page(&render_from.store, &render_from.telemetry, format)
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
    let http = tokio::spawn(server::serve(listener, Arc::new(app), shutdown.clone()));
    exporter.refresh_gauges();
    let polling = {
        let exporter = exporter.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { exporter.poll(stop).await })
    };
    ready.store(true, Ordering::SeqCst);
    tracing::info!(targets = exporter.settings.targets.len(), "polling started");
    let served = http.await;
    let _ = polling.await;
    match served {
        Ok(r) => r.map_err(ExporterError::Http),
        Err(e) => Err(ExporterError::HttpTask(e)),
    }
}
