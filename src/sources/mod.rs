//! Where targets come from besides the config's `targets:` list, and how the sources become one
//! set the exporter follows.
//!
//! - [`files`] — `target_files`: files matched by globs, each a YAML (or JSON) list of targets,
//!   watched with `notify` and re-read every refresh interval as a fallback, published as a
//!   [`files::FileTargets`] snapshot on a `tokio::sync::watch` channel. A broken file keeps its
//!   previous targets; a file that disappears drops them.
//! - [`api`] — the registration API's input: a `POST`/`DELETE /api/v1/targets` body (a JSON array
//!   of targets written as under `targets:`) checked with the config's own rules, every problem
//!   listed with the target's index, the field and the fix.
//! - [`merge`] — the pure core: several sources merged into one [`merge::MergedTargets`] (the same
//!   target in two sources is one target that remembers both), and the [`merge::Diff`] between two
//!   merged sets that a reload applies.

pub mod api;
pub mod files;
pub mod merge;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One source of targets. The order of the variants is the precedence used when the same target
/// comes from several sources: the config first, then target files in path order, then the
/// registration API, then callbacks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// The config file's `targets:` list.
    Config,
    /// A file matched by `target_files`.
    File(Arc<Path>),
    /// Registered with `POST /api/v1/targets`.
    Api,
    /// Learned from a vendor callback.
    Callback,
}

impl Source {
    /// A file source for `path`.
    pub fn file(path: impl Into<PathBuf>) -> Source {
        Source::File(Arc::from(path.into()))
    }
}

impl fmt::Display for Source {
    /// `config`, `file:<path>`, `api` or `callback`: the value of a `source` label or column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Config => f.write_str("config"),
            Source::File(path) => write!(f, "file:{}", path.display()),
            Source::Api => f.write_str("api"),
            Source::Callback => f.write_str("callback"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_precedence() {
        let (a, b) = (Source::file("/t/a.yaml"), Source::file("/t/b.yaml"));
        assert_eq!(a.to_string(), "file:/t/a.yaml");
        let mut all = vec![
            Source::Callback,
            b.clone(),
            Source::Api,
            a.clone(),
            Source::Config,
        ];
        all.sort();
        assert_eq!(all, [Source::Config, a, b, Source::Api, Source::Callback]);
        let shown: Vec<String> = [Source::Config, Source::Api, Source::Callback]
            .iter()
            .map(Source::to_string)
            .collect();
        assert_eq!(shown, ["config", "api", "callback"]);
    }
}
