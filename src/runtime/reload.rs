//! A reload applied live ([`Apply`]): a diff of the settings — credentials (and which `*_file`
//! keys are re-read), the `api:` section (a new client), budgets, intervals, labels, the
//! config's targets (unchanged ones keep their state and schedule, new ones start as `new`,
//! removed ones leave at once) and the callbacks; the web config is swapped by
//! [`crate::reload`] itself, and new `target_files` patterns are followed from then on.

use std::sync::Arc;

use super::Exporter;
use crate::callbacks::CallbackSettings;
use crate::config::Settings;
use crate::model::{Action, Source};
use crate::reload::{Apply, ApplySummary};
use crate::volc::client::Client;

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
        let change = self.set_targets(Source::Config, &new.targets);
        if change.added + change.removed + change.relabelled > 0 {
            lines.push(format!(
                "targets: {} added, {} removed, {} relabelled",
                change.added, change.removed, change.relabelled
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
    pub(super) fn apply_callbacks(&self, new: Option<&CallbackSettings>) -> Vec<String> {
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
