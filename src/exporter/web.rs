//! The exporter's side of the HTTP features, kept apart from the polling core:
//!
//! - [`Apply`] for the reload: a diff, applied live — credentials (and which `*_file` keys are
//!   re-read), the `api:` section (a new client), budgets, intervals, labels, and the config's
//!   targets (unchanged ones keep their state and schedule, new ones start as `new`, removed
//!   ones leave at once); the web config is swapped by [`crate::reload`] itself, and new
//!   `target_files` patterns are followed from then on.
//! - [`Targets`] for the pages and `/api/v1/targets`: a snapshot of every target from the
//!   store and the scheduler, and registration (`POST`/`DELETE`) as the `api` source.
//! - [`run_with`]: [`super::run`] with the `--web.*` options, the web config and the reloader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Exporter, ExporterError};
use crate::callbacks::CallbackSettings;
use crate::config::Settings;
use crate::http::pages::TargetRow;
use crate::http::web_config::SharedWebConfig;
use crate::http::{self, App, LandingInfo, Options, Targets};
use crate::http::{ApiRefusal, Registered, Unregistered};
use crate::model::{Action, Target, TargetKey};
use crate::persist::Source as PersistSource;
use crate::reload::{Apply, ApplySummary, Reloader};
use crate::sources::Source;
use crate::volc::client::Client;

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
        let client = self.client();
        let handle = client.credentials();
        let before = handle.current();
        handle.reconfigure(new.credentials.clone(), new.credential_config.clone());
        if *before != new.credentials {
            lines.push(format!(
                "credentials: now access key {} ({})",
                new.credentials.masked_access_key_id(),
                new.credential_source
            ));
        }
        let old = self.settings().clone();
        if old.api != new.api {
            let rebuilt = Client::new(
                &new.api,
                handle.clone(),
                self.limiters.clone(),
                self.telemetry.clone(),
            )
            .map_err(|e| format!("api: {e}"))?;
            *self.client.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rebuilt);
            lines.push(format!("api: now {}", new.api.endpoint.base_url()));
        }
        if old.budget != new.budget {
            for action in Action::ALL {
                self.limiters[action].set_budget(new.budget_for(action));
            }
            lines.push(format!(
                "budget: now {} GetRecordTask, {} GetWebCastTask requests/s",
                new.budget_for(Action::GetRecordTask),
                new.budget_for(Action::GetWebCastTask)
            ));
        }
        if old.schedule != new.schedule {
            self.scheduler().set_schedule(&new.schedule);
            lines.push("schedule: new intervals apply from each target's next answer".into());
        }
        // Labels changed in place: the same target, its state kept.
        let mut relabelled = 0;
        for t in &new.targets {
            if let Some(id) = self.store.id_of(&t.key) {
                let same = self
                    .store
                    .target(id)
                    .is_some_and(|old| old.labels == t.labels);
                if !same && self.store.relabel(id, t.clone()) {
                    relabelled += 1;
                }
            }
        }
        let change = self.set_targets(PersistSource::Config, &new.targets);
        if change.added + change.removed + relabelled > 0 {
            lines.push(format!(
                "targets: {} added, {} removed, {relabelled} relabelled",
                change.added, change.removed
            ));
        }
        if old.callbacks != new.callbacks {
            lines.extend(self.apply_callbacks(new.callbacks.as_ref()));
            self.scheduler()
                .set_announced_interval(new.callbacks.as_ref().map(|c| c.active_interval));
        }
        let files_changed = old.target_files != new.target_files
            || old.target_files_refresh_interval != new.target_files_refresh_interval;
        let credential_files_changed =
            old.credential_config.files() != new.credential_config.files();
        *self.settings.write().unwrap_or_else(|e| e.into_inner()) = new;
        if credential_files_changed {
            // The handle re-reads the files it was just given; the watcher starts or stops.
            self.rewatch_credentials();
        }
        if files_changed {
            // Files no longer matched drop their targets once the new follower has loaded.
            self.refollow_files();
            lines.push("target_files: now following the new patterns".into());
        }
        self.set_budget_gauges();
        if lines.is_empty() {
            lines.push("no changes".to_string());
        }
        Ok(ApplySummary { lines })
    }
}

impl Exporter {
    /// A reload's `callbacks:`: key, apps and labels apply to the next delivery; what needs the
    /// listener changed (turning them on, a new path) is said to need a restart.
    fn apply_callbacks(&self, new: Option<&CallbackSettings>) -> Vec<String> {
        match (new, self.callbacks.get()) {
            (None, _) => {
                vec!["callbacks: off; deliveries are now answered 404".into()]
            }
            (Some(_), None) => {
                tracing::warn!(
                    "callbacks: turned on by a reload; restart the exporter to serve the endpoint"
                );
                vec!["callbacks: turned on, which needs a restart to serve the endpoint".into()]
            }
            (Some(new), Some((receiver, served))) => {
                receiver.set_settings(new);
                let mut lines = vec!["callbacks: key, app_ids and labels now in force".to_string()];
                if *served != new.path {
                    tracing::warn!(
                        served = %served,
                        configured = %new.path,
                        "callbacks: a new path needs a restart; still serving the old one"
                    );
                    lines.push(format!(
                        "callbacks: path {} needs a restart; still serving {served}",
                        new.path
                    ));
                }
                lines
            }
        }
    }
}

/// The exporter's source for a source of the HTTP side.
fn persist_source(source: &Source) -> PersistSource {
    match source {
        Source::Config => PersistSource::Config,
        Source::File(path) => PersistSource::File(path.display().to_string()),
        Source::Api => PersistSource::Api,
        Source::Callback => PersistSource::Callback,
    }
}

impl Targets for Exporter {
    fn summary(&self) -> Option<String> {
        Some(self.landing_summary())
    }

    fn register(&self, targets: Vec<Target>, source: Source) -> Result<Registered, ApiRefusal> {
        let change = self.add_targets(persist_source(&source), &targets);
        Ok(Registered {
            added: change.added,
            existing: targets.len().saturating_sub(change.added),
        })
    }

    fn unregister(&self, keys: Vec<TargetKey>, source: Source) -> Result<Unregistered, ApiRefusal> {
        let source = persist_source(&source);
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
        let plans: Vec<_> = targets
            .iter()
            .map(|(id, _)| (sched.phase(*id), sched.due(*id)))
            .collect();
        drop(sched);
        targets
            .iter()
            .zip(plans)
            .map(|((id, target), (phase, due))| {
                let id = *id;
                let snapshot = self.store.snapshot(id);
                let (up, _) = self.store.poll_status(id).unwrap_or((None, None));
                // Kept across restarts (see `TargetRecord::last_poll` for older rows).
                let last = self.store.last_poll(id);
                let key = &target.key;
                TargetRow {
                    kind: key.kind,
                    app_id: key.app_id.clone(),
                    room_id: key.room_id.clone(),
                    task_id: key.task_id.clone(),
                    labels: target.labels.to_vec(),
                    sources: self.sources_of(id),
                    phase: phase.unwrap_or(crate::scheduler::Phase::New),
                    status: snapshot.as_ref().map(|s| s.status),
                    stop_reason: snapshot
                        .as_ref()
                        .map(|s| s.stop_reason.clone())
                        .filter(|r| !r.is_empty()),
                    up: up == Some(true),
                    last_poll_ms: last.as_ref().map(|l| l.at_ms),
                    last_outcome: last.as_ref().map(|l| l.outcome.to_string()),
                    last_error: last.and_then(|l| l.error),
                    next_due_ms: due.map(|due| {
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
