//! Every target the exporter follows, in one home: where targets come from, how the sources
//! become one set, and the table that holds each target's state.
//!
//! - [`table`] — the one table of targets, by [`TargetId`]: key and labels, sources and when it
//!   was added, the last answer and the last poll, whether its stop was counted, with the
//!   target's series kept ready for a scrape.
//! - [`lifecycle`] — what an answer changes of a target's phase, StartTime and terminal time:
//!   one pure function, and the one rule for "a new task".
//! - [`files`] — `target_files`: files matched by globs, each a YAML (or JSON) list of targets,
//!   watched with `notify` and re-read every refresh interval as a fallback, published as a
//!   [`files::FileTargets`] snapshot on a `tokio::sync::watch` channel. A broken file keeps its
//!   previous targets; a file that disappears drops them.
//! - [`api`] — the registration API's input: a `POST`/`DELETE /api/v1/targets` body (a JSON array
//!   of targets written as under `targets:`) checked with the config's own rules, every problem
//!   listed with the target's index, the field and the fix.
//! - [`merge`] — the pure core and the one path by which the set changes: a target's sources,
//!   each with its labels, ranked ([`merge::give`], [`merge::take`]: the same target in two
//!   sources is one target that remembers both), whole sources merged into one
//!   [`merge::MergedTargets`], and the [`merge::Diff`] between a source's old and new lists.

pub mod api;
pub mod files;
pub mod lifecycle;
pub mod merge;
pub mod table;

pub use crate::model::{Source, TargetId};

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
