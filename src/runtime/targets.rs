//! How the target set changes while running: every source (the config, each target file, the
//! registration API, callbacks) adds, replaces or drops its targets here, and the table, the
//! scheduler and the durable state change together. Also the target files' follower.

use super::*;
use crate::targets::merge::{Changed, MergedTargets};

impl Exporter {
    /// Follows the target files of the settings in force until `shutdown` (or until a
    /// reload changes the patterns, which stops this and starts anew). Returns the task
    /// applying the changes.
    pub async fn follow_files(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let current = shutdown.child_token();
        {
            let mut followers = self.followers();
            followers.run = Some(shutdown.clone());
            followers.target_files = Some(current.clone());
        }
        follow_target_files(self, current).await
    }

    /// After a reload changed `target_files`: stops following the old patterns and follows
    /// the new ones (in the background).
    pub(super) fn refollow_files(&self) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        let mut followers = self.followers();
        let (Some(parent), Some(old)) = (followers.run.clone(), followers.target_files.take())
        else {
            return;
        };
        drop(followers);
        old.cancel();
        tokio::spawn(async move {
            if let Some(task) = me.follow_files(&parent).await {
                let _ = task.await;
            }
        });
    }

    /// Replaces every target of `source` by `targets` (a config reload, a target file read
    /// again): the source's old and new lists are diffed ([`MergedTargets::diff`]); targets
    /// already known keep their state and schedule (no new poll, no second count), new ones
    /// start as `new` spread over one `active_interval`, those whose labels from `source`
    /// changed take them if `source` ranks first, and those `source` no longer lists lose it;
    /// a target left without sources is removed at once (its series and its row). The same
    /// target from two sources is one target.
    pub fn set_targets(&self, source: Source, targets: &[Target]) -> TargetChange {
        let listed: Vec<Target> = self
            .store
            .listed_by(&source)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let old = MergedTargets::merge([(source.clone(), &listed)]);
        let diff = old.diff(&MergedTargets::merge([(source.clone(), targets)]));
        let mut change = self.remove_targets(&source, &diff.removed);
        let given = self.add_targets(source, diff.added.iter().chain(&diff.labels_changed));
        change.added = given.added;
        change.relabelled += given.relabelled;
        change
    }

    /// `source` lists `targets` too (the registration API, a callback, or a source's changed
    /// entries): new ones start as `new`, spread over one `active_interval` (a single one is
    /// due at once); known ones gain the source (or its new labels) and keep their state.
    pub fn add_targets<'t>(
        &self,
        source: Source,
        targets: impl IntoIterator<Item = &'t Target>,
    ) -> TargetChange {
        let now = Instant::now();
        let now_ms = crate::clock::system_time_to_ms(crate::clock::wall_at(now));
        let mut fresh = Vec::new();
        let mut change = TargetChange::default();
        for t in targets {
            let (id, new, changed) = self.store.give(t, &source, now_ms);
            if new {
                fresh.push((id, t));
            } else if changed == Changed::default() {
                continue;
            }
            change.relabelled += usize::from(changed.labels);
            self.durable.put(&self.store, id, None);
        }
        change.added = fresh.len();
        if !fresh.is_empty() {
            self.scheduler().insert(&fresh, now);
            for action in Action::ALL {
                self.wake[action].notify_one();
            }
        }
        change
    }

    /// Drops `source` from the targets with these keys; a target left without sources is
    /// removed at once: its series leave `/metrics` and its row the store.
    pub fn remove_targets(&self, source: &Source, keys: &[TargetKey]) -> TargetChange {
        let mut change = TargetChange::default();
        for key in keys {
            let Some(id) = self.store.id_of(key) else {
                continue;
            };
            match self.store.take(id, source) {
                None => {}
                Some((_, 0)) => {
                    self.scheduler().remove(id);
                    self.store.remove(id);
                    self.log.forget(id);
                    self.durable.remove(key);
                    change.removed += 1;
                }
                Some((changed, _)) if changed.sources => {
                    change.relabelled += usize::from(changed.labels);
                    self.durable.put(&self.store, id, None);
                }
                Some(_) => {}
            }
        }
        change
    }

    /// Target `id`'s sources (`config`, `file:<path>`, `api`, `callback`).
    pub fn sources_of(&self, id: TargetId) -> Vec<String> {
        self.store
            .sources(id)
            .iter()
            .map(ToString::to_string)
            .collect()
    }
    /// Applies one snapshot of the target files; returns the file sources it holds.
    pub(super) fn apply_target_files(
        &self,
        files: &crate::targets::files::FileTargets,
        previous: Vec<Source>,
    ) -> Vec<Source> {
        let mut now = Vec::new();
        for (path, entry) in files.files() {
            let source = Source::file(path);
            let name = path.display().to_string();
            self.telemetry
                .target_file_ok
                .with_label_values(&[name.as_str()])
                .set(i64::from(entry.last_load_successful));
            let change = self.set_targets(source.clone(), &entry.targets);
            if change.added > 0 || change.removed > 0 {
                tracing::info!(
                    file = %name,
                    added = change.added,
                    removed = change.removed,
                    "target file applied"
                );
            }
            now.push(source);
        }
        for gone in previous.into_iter().filter(|s| !now.contains(s)) {
            if let Source::File(path) = &gone {
                let name = path.display().to_string();
                let _ = self.telemetry.target_file_ok.remove_label_values(&[&name]);
                tracing::info!(file = %name, "target file gone; its targets leave");
            }
            self.set_targets(gone, &[]);
        }
        now
    }
}

/// Follows `target_files` (if any): loads them before polling starts, then applies every
/// change: each file is a source of its own, a broken file keeps its previous targets (and
/// reports 0 in `volcengine_rtc_target_file_last_load_successful{file}`), a file gone drops its
/// targets. Returns the task applying the changes.
pub(super) async fn follow_target_files(
    exporter: &Arc<Exporter>,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let patterns = exporter.settings().target_files.clone();
    let known: Vec<Source> = exporter
        .store
        .sources_in_use()
        .into_iter()
        .filter(|s| matches!(s, Source::File(_)))
        .collect();
    if patterns.is_empty() {
        // No target files any more: what they listed leaves.
        for source in known {
            exporter.set_targets(source, &[]);
        }
        return None;
    }
    let mut config = crate::targets::files::TargetFilesConfig::new(patterns);
    config.refresh_interval = exporter.settings().target_files_refresh_interval;
    let watcher = match crate::targets::files::watch(config, shutdown).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot follow the target files; fix `target_files`");
            return None;
        }
    };
    let mut rx = watcher.targets;
    let me = exporter.clone();
    let mut previous: Vec<Source> = known;
    let first = rx.borrow_and_update().clone();
    previous = me.apply_target_files(&first, previous);
    Some(tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let snapshot = rx.borrow_and_update().clone();
            previous = me.apply_target_files(&snapshot, previous);
        }
        let _ = watcher.task.await;
    }))
}
