//! `target_files`: targets kept in files matched by globs, in the manner of Prometheus'
//! `file_sd`.
//!
//! Each file holds a YAML (or JSON) list of targets, each written as under `targets:` in the
//! config, read with [`config::load_targets`]. A wildcard may stand only in the file name, and the
//! name must end in `.yaml`, `.yml` or `.json` ([`check_pattern`]), so the directories to watch
//! are known and an editor's swap files or Kubernetes' `..data` entries never match.
//!
//! [`watch`] loads every matching file, then keeps the set current:
//!
//! - the directory of every pattern (and, for a file that is a symlink, the directory it points
//!   into) is watched with `notify`, so a file written in place, created, deleted, or replaced by
//!   a rename (editors, config-management tools, Kubernetes' `..data` symlink swap) is seen. Any
//!   event other than a read starts a re-scan once events stop for [`DEFAULT_DEBOUNCE`] (at most
//!   [`MAX_DEBOUNCE_WAIT`] after the first), and a re-scan re-reads the files whose identity,
//!   size or times changed;
//! - every refresh interval, every file is re-read whatever the events said, in case some were
//!   missed (a network filesystem, a full event queue, a directory that did not exist yet).
//!
//! A file that fails to load keeps the targets it last loaded, its
//! [`FileEntry::last_load_successful`] turns false and each problem is logged at its
//! `file:line:col`; a file that no longer exists (or no longer matches) drops its targets. The
//! current set is published as an [`Arc<FileTargets>`] on a `tokio::sync::watch` channel, only
//! when something changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{watch as channel, Notify};
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::model::Target;

/// `target_files_refresh_interval` when not set.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(60);
/// Quiet time after the last file event before a re-scan.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest wait from the first event of a burst to its re-scan.
pub const MAX_DEBOUNCE_WAIT: Duration = Duration::from_secs(2);
/// A file changed this recently may change again within the filesystem's time granularity
/// without its size or times showing it, so it is re-read on the next event whatever its times.
const RACY: Duration = Duration::from_secs(2);
/// At most this many problems of one file are logged.
const MAX_LOGGED_PROBLEMS: usize = 20;

/// What to watch and how.
#[derive(Debug, Clone)]
pub struct TargetFilesConfig {
    /// Glob patterns (see [`check_pattern`]); relative ones are taken from the current
    /// directory, so the config should join them to its own directory first.
    pub patterns: Vec<PathBuf>,
    /// Every file is re-read this often whatever the events said.
    pub refresh_interval: Duration,
    /// Watch the directories with `notify`; `false` relies on the refresh alone.
    pub watch: bool,
    /// Quiet time after a file event before the re-scan.
    pub debounce: Duration,
}

impl TargetFilesConfig {
    /// These patterns with the default refresh interval, watching, and the default debounce.
    pub fn new(patterns: Vec<PathBuf>) -> TargetFilesConfig {
        TargetFilesConfig {
            patterns,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            watch: true,
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Why a pattern is refused: the text for a config problem, to follow the pattern's place.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("the pattern is empty; give a path such as `targets/*.yaml`".into());
    }
    if let Err(e) = glob::Pattern::new(pattern) {
        return Err(format!("`{pattern}` is not a valid glob: {e}"));
    }
    let path = Path::new(pattern);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let lower = name.to_ascii_lowercase();
    if ![".yaml", ".yml", ".json"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        return Err(format!(
            "`{pattern}` must name files ending in .yaml, .yml or .json, e.g. `{}`",
            path.with_file_name("*.yaml").display()
        ));
    }
    let dir = path
        .parent()
        .map(|d| d.to_string_lossy())
        .unwrap_or_default();
    if dir.contains(['*', '?', '[']) {
        return Err(format!(
            "`{pattern}`: a wildcard may stand only in the file name, not in a directory (`{dir}`), so the directory can be watched; list one pattern per directory"
        ));
    }
    Ok(())
}

/// One matched file's targets and how its last load went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The targets of the last successful load (empty if it never loaded).
    pub targets: Arc<Vec<Target>>,
    /// Whether the last load succeeded: `volcengine_rtc_target_file_last_load_successful{file}`.
    pub last_load_successful: bool,
    /// The problems of the last load, one per line (`file:line:col: message`), if it failed.
    pub last_error: Option<String>,
}

/// The targets of every matched file, by path: one snapshot of the watcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTargets {
    files: BTreeMap<Arc<Path>, FileEntry>,
}

impl FileTargets {
    /// Every matched file in path order.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &FileEntry)> {
        self.files.iter().map(|(p, e)| (&**p, e))
    }
}

/// What tells whether a file changed without reading it: its identity, size and times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    id: (u64, u64, i64, i64),
}

impl Fingerprint {
    /// The fingerprint of the file `path` leads to (through symlinks); `None` when there is
    /// none to trust: the file is missing, or changed too recently to tell a second change.
    fn of(path: &Path) -> Option<Fingerprint> {
        let m = std::fs::metadata(path).ok()?;
        let modified = m.modified().ok();
        let age = modified.and_then(|t| crate::clock::now().duration_since(t).ok());
        if age.is_none_or(|age| age < RACY) {
            return None;
        }
        Some(Fingerprint {
            len: m.len(),
            modified,
            #[cfg(unix)]
            id: {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino(), m.ctime(), m.ctime_nsec())
            },
        })
    }
}

/// The files the patterns match now (hidden files only by a literal leading dot), in path
/// order; what the watcher loads, and what `check` and `once` read.
pub fn matching_files(patterns: &[PathBuf]) -> BTreeSet<PathBuf> {
    let options = glob::MatchOptions {
        require_literal_leading_dot: true,
        ..Default::default()
    };
    let mut found = BTreeSet::new();
    for pattern in patterns {
        let Some(text) = pattern.to_str() else {
            continue;
        };
        let Ok(paths) = glob::glob_with(text, options) else {
            continue;
        };
        for path in paths.flatten() {
            if path.is_file() {
                found.insert(path);
            }
        }
    }
    found
}

/// The synchronous core: matches the patterns, loads what changed, keeps the current set.
/// [`watch`] runs it on a blocking thread; `check` and benchmarks can call it directly.
#[derive(Debug)]
pub struct Loader {
    patterns: Vec<PathBuf>,
    current: FileTargets,
    prints: HashMap<Arc<Path>, Fingerprint>,
}

impl Loader {
    pub fn new(patterns: Vec<PathBuf>) -> Loader {
        Loader {
            patterns,
            current: FileTargets::default(),
            prints: HashMap::new(),
        }
    }

    /// The current set.
    pub fn current(&self) -> &FileTargets {
        &self.current
    }

    /// Matches the patterns again and loads the files that are new or changed (every file when
    /// `force`). Returns whether the set changed.
    pub fn scan(&mut self, force: bool) -> bool {
        let mut files = BTreeMap::new();
        for path in self.matches() {
            let path: Arc<Path> = Arc::from(path);
            let print = Fingerprint::of(&path);
            let old = self.current.files.get(&path);
            let unchanged = print.is_some() && self.prints.get(&path) == print.as_ref();
            if let (false, true, Some(old)) = (force, unchanged, old) {
                files.insert(path, old.clone());
                continue;
            }
            let Some(entry) = load(&path, old) else {
                continue;
            };
            match print {
                Some(p) => self.prints.insert(Arc::clone(&path), p),
                None => self.prints.remove(&path),
            };
            files.insert(path, entry);
        }
        for (path, old) in &self.current.files {
            if !files.contains_key(path) {
                tracing::info!(
                    file = %path.display(),
                    "target file is gone; dropping its {} targets",
                    old.targets.len()
                );
                self.prints.remove(path);
            }
        }
        let changed = files != self.current.files;
        self.current.files = files;
        changed
    }

    /// The regular files (or symlinks to them) the patterns match now, in path order.
    fn matches(&self) -> BTreeSet<PathBuf> {
        matching_files(&self.patterns)
    }

    /// The directories to watch: each pattern's, and where each symlinked file really lives.
    fn directories(&self) -> BTreeSet<PathBuf> {
        let mut dirs = BTreeSet::new();
        for pattern in &self.patterns {
            let dir = pattern.parent().filter(|d| !d.as_os_str().is_empty());
            dirs.insert(dir.unwrap_or(Path::new(".")).to_path_buf());
        }
        for path in self.current.files.keys() {
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            let real = link.then(|| std::fs::canonicalize(path).ok()).flatten();
            if let Some(dir) = real.as_deref().and_then(Path::parent) {
                dirs.insert(dir.to_path_buf());
            }
        }
        dirs
    }
}

/// Loads `path`: its new entry, or `None` when the file vanished meanwhile.
fn load(path: &Path, old: Option<&FileEntry>) -> Option<FileEntry> {
    match config::load_targets(path) {
        Ok(targets) => {
            if old.is_some_and(|o| !o.last_load_successful) {
                tracing::info!(file = %path.display(), "target file loads again");
            }
            let targets = match old {
                Some(o) if *o.targets == *targets => Arc::clone(&o.targets),
                _ => Arc::new(targets),
            };
            Some(FileEntry {
                targets,
                last_load_successful: true,
                last_error: None,
            })
        }
        Err(_) if !path.exists() => None,
        Err(e) => {
            let error = e.to_string();
            let kept = old.map(|o| Arc::clone(&o.targets)).unwrap_or_default();
            if old.and_then(|o| o.last_error.as_ref()) != Some(&error) {
                let problems = e.problems();
                for p in problems.iter().take(MAX_LOGGED_PROBLEMS) {
                    tracing::warn!(
                        "{p} (target file not loaded; keeping its {} previous targets)",
                        kept.len()
                    );
                }
                if problems.len() > MAX_LOGGED_PROBLEMS {
                    let more = problems.len() - MAX_LOGGED_PROBLEMS;
                    tracing::warn!(file = %path.display(), "... and {more} more problems");
                }
            }
            Some(FileEntry {
                targets: kept,
                last_load_successful: false,
                last_error: Some(error),
            })
        }
    }
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A pattern [`check_pattern`] refuses.
    #[error("target_files pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
}

/// What the `notify` callback shares with the task: a wake-up and whether events were lost.
#[derive(Default)]
struct Signal {
    notify: Notify,
    lost: AtomicBool,
}

/// The `notify` watcher and the directories it watches, each with the identity it had then (a
/// directory deleted and made again needs a new watch).
struct Watches {
    watcher: RecommendedWatcher,
    watched: HashMap<PathBuf, Option<(u64, u64)>>,
}

fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(dir).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        m.is_dir().then_some((0, 0))
    }
}

impl Watches {
    fn new(signal: Arc<Signal>) -> notify::Result<Watches> {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                // Opening or reading a file (this loader's own reads among them) changes nothing.
                Ok(e) if matches!(e.kind, EventKind::Access(a) if a != AccessKind::Close(AccessMode::Write)) => {
                    return
                }
                Ok(_) => {}
                Err(_) => signal.lost.store(true, Ordering::Relaxed),
            }
            signal.notify.notify_one();
        })?;
        Ok(Watches {
            watcher,
            watched: HashMap::new(),
        })
    }

    /// Watches exactly `dirs` (those that exist).
    fn sync(&mut self, dirs: BTreeSet<PathBuf>) {
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|(d, id)| !dirs.contains(*d) || dir_identity(d) != **id)
            .map(|(d, _)| d.clone())
            .collect();
        for dir in stale {
            let _ = self.watcher.unwatch(&dir);
            self.watched.remove(&dir);
        }
        for dir in dirs {
            if self.watched.contains_key(&dir) {
                continue;
            }
            let Some(id) = dir_identity(&dir) else {
                continue;
            };
            match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir, Some(id));
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), "cannot watch target file directory: {e}")
                }
            }
        }
    }
}

/// A running watcher: the snapshot channel and the task.
pub struct FileWatcher {
    /// The current set; changes whenever a file's targets or load status do.
    pub targets: channel::Receiver<Arc<FileTargets>>,
    /// Ends when `shutdown` is cancelled.
    pub task: tokio::task::JoinHandle<()>,
}

/// Loads every file the patterns match (before returning, so the first snapshot is complete),
/// then keeps the set current until `shutdown` is cancelled. Must be called within a tokio
/// runtime.
pub async fn watch(
    config: TargetFilesConfig,
    shutdown: CancellationToken,
) -> Result<FileWatcher, FilesError> {
    for pattern in &config.patterns {
        let text = pattern.to_string_lossy();
        check_pattern(&text).map_err(|message| FilesError::Pattern {
            pattern: text.into_owned(),
            message,
        })?;
    }
    let signal = Arc::new(Signal::default());
    let mut watches = match config.watch {
        false => None,
        true => match Watches::new(Arc::clone(&signal)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch target files ({e}); re-reading them every {:?} instead",
                    config.refresh_interval
                );
                None
            }
        },
    };
    let loader = Loader::new(config.patterns.clone());
    // Watch first, so a change made while the files load is not missed.
    if let Some(w) = watches.as_mut() {
        w.sync(loader.directories());
    }
    let mut loader = scan(loader, true).await.0;
    if let Some(w) = watches.as_mut() {
        w.sync(loader.directories());
    }
    let (tx, rx) = channel::channel(Arc::new(loader.current().clone()));
    let task = tokio::spawn(async move {
        let mut refresh =
            tokio::time::interval(config.refresh_interval.max(Duration::from_millis(10)));
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.tick().await;
        loop {
            let force = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = refresh.tick() => true,
                _ = signal.notify.notified() => {
                    if !settle(&signal, config.debounce, &shutdown).await {
                        return;
                    }
                    signal.lost.swap(false, Ordering::Relaxed)
                }
            };
            let changed;
            (loader, changed) = scan(loader, force).await;
            if let Some(w) = watches.as_mut() {
                w.sync(loader.directories());
            }
            if changed {
                tx.send_replace(Arc::new(loader.current().clone()));
            }
        }
    });
    Ok(FileWatcher { targets: rx, task })
}

/// Waits until no event came for `quiet` (or [`MAX_DEBOUNCE_WAIT`] passed); `false` on shutdown.
async fn settle(signal: &Signal, quiet: Duration, shutdown: &CancellationToken) -> bool {
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE_WAIT;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(deadline) => return true,
            _ = tokio::time::sleep(quiet) => return true,
            _ = signal.notify.notified() => {}
        }
    }
}

/// [`Loader::scan`] on a blocking thread (loading a large file takes a while).
async fn scan(mut loader: Loader, force: bool) -> (Loader, bool) {
    let patterns = loader.patterns.clone();
    match tokio::task::spawn_blocking(move || {
        let changed = loader.scan(force);
        (loader, changed)
    })
    .await
    {
        Ok(done) => done,
        Err(e) => {
            // Only a panic in the loader gets here; start afresh rather than stop watching.
            tracing::error!("target file scan failed: {e}");
            let mut loader = Loader::new(patterns);
            let changed = loader.scan(true);
            (loader, changed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(check_pattern("/etc/targets/*.yaml"), Ok(()));
        assert_eq!(check_pattern("targets.JSON"), Ok(()));
        assert_eq!(check_pattern("t/[ab]*.yml"), Ok(()));
        let err = |p| check_pattern(p).unwrap_err();
        assert!(err("/etc/*/t.yaml").contains("only in the file name"));
        assert!(err("/etc/targets/*")
            .contains("ending in .yaml, .yml or .json, e.g. `/etc/targets/*.yaml`"));
        assert!(err("t/[a.yaml").contains("not a valid glob"));
        assert!(err("").contains("empty"));
    }
}
