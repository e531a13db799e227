//! How the target set changes while running: every source (the config, each target file, the
//! registration API, callbacks) adds, replaces or drops its targets here, and the table, the
//! scheduler and the durable state change together. Also the target files' follower.

use super::*;

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
    /// again): targets already known keep their state and schedule (no new poll, no second
    /// count), new ones start as `new` spread over one `active_interval`, and those `source`
    /// no longer lists lose it; a target left without sources is removed at once (its series
    /// and its row). The same target from two sources is one target.
    pub fn set_targets(&self, source: Source, targets: &[Target]) -> TargetChange {
        let keep: HashSet<&TargetKey> = targets.iter().map(|t| &t.key).collect();
        let gone: Vec<TargetKey> = self
            .durable
            .ids_of(&source)
            .into_iter()
            .filter_map(|id| self.store.target(id))
            .filter(|t| !keep.contains(&t.key))
            .map(|t| t.key.clone())
            .collect();
        let mut change = self.remove_targets(&source, &gone);
        let added = self.add_targets(source, targets);
        change.added = added.added;
        change
    }

    /// Adds `targets` from `source` (the registration API, a callback): new ones start as
    /// `new`, spread over one `active_interval` (a single one is due at once); known ones
    /// gain the source and keep their state.
    pub fn add_targets(&self, source: Source, targets: &[Target]) -> TargetChange {
        let now = Instant::now();
        let now_ms = crate::clock::system_time_to_ms(crate::clock::wall_at(now));
        let mut fresh = Vec::new();
        for t in targets {
            let (id, new) = self.store.insert(t.clone());
            if new {
                self.durable.added(id, source.clone(), now_ms);
                fresh.push((id, t));
            } else if !self.durable.add_source(id, source.clone()) {
                continue;
            }
            let phase = self.scheduler().phase(id);
            self.durable.put(&self.store, id, phase, None);
        }
        if !fresh.is_empty() {
            self.scheduler().insert(&fresh, now);
            for action in Action::ALL {
                self.wake[action].notify_one();
            }
        }
        TargetChange {
            added: fresh.len(),
            removed: 0,
        }
    }

    /// Drops `source` from the targets with these keys; a target left without sources is
    /// removed at once: its series leave `/metrics` and its row the store.
    pub fn remove_targets(&self, source: &Source, keys: &[TargetKey]) -> TargetChange {
        let mut removed = 0;
        for key in keys {
            let Some(id) = self.store.id_of(key) else {
                continue;
            };
            match self.durable.drop_source(id, source) {
                None => {}
                Some(0) => {
                    self.scheduler().remove(id);
                    self.store.remove(id);
                    self.log.forget(id);
                    self.durable.remove(id, key);
                    removed += 1;
                }
                Some(_) => {
                    let phase = self.scheduler().phase(id);
                    self.durable.put(&self.store, id, phase, None);
                }
            }
        }
        TargetChange { added: 0, removed }
    }

    /// Target `id`'s sources (`config`, `file:<path>`, `api`, `callback`).
    pub fn sources_of(&self, id: TargetId) -> Vec<String> {
        self.durable.sources_of(id)
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
        .durable
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
