//! The pure core of many sources: merging them into one set of targets, and the difference
//! between two such sets.
//!
//! **One target, several sources.** Targets are the same when their [`TargetKey`] (kind, app_id,
//! room_id, task_id) is. Such a target is followed once and remembers every source it came from.
//! **Labels** are taken whole from the source that ranks first by [`Source`]'s order: the config,
//! then target files in path order, then the registration API, then callbacks. They are never
//! mixed label by label, so a target's labels are always exactly as one source wrote them.
//!
//! The rule is written once, per target, in [`give`] and [`take`] (a target's sources, each with
//! the labels it gave): [`MergedTargets::merge`] folds whole sources with them, and the target
//! table applies each change of a running source with them (`crate::runtime`'s `targets`: a
//! source's old and new lists are diffed with [`MergedTargets::diff`], then each target gains or
//! loses that source).

use std::collections::BTreeMap;

use crate::model::{Labels, Target, TargetKey};

use super::Source;

/// A target of the merged set: its labels from the first-ranked source, and all its sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedTarget {
    pub target: Target,
    /// Every source that lists the target, sorted by rank (the first gave the labels), no
    /// repeats; never empty.
    pub sources: Vec<Source>,
}

/// The targets of every source, one per key, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergedTargets {
    targets: BTreeMap<TargetKey, MergedTarget>,
}

/// What changed from one merged set to the next, as a reload applies it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Keys only in the new set, with their labels (start them as new).
    pub added: Vec<Target>,
    /// Keys only in the old set (drop their series and state).
    pub removed: Vec<TargetKey>,
    /// Keys in both whose labels changed; the new labels (keep state, relabel).
    pub labels_changed: Vec<Target>,
    /// Keys in both with the same labels whose list of sources changed (keep everything; show
    /// the new sources).
    pub sources_changed: Vec<MergedTarget>,
}

/// A target's sources, each with the labels it gave, sorted by rank, each once; the first gives
/// the target its labels.
pub type Given = Vec<(Source, Labels)>;

/// What [`give`] or [`take`] changed for one target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    /// The list of sources changed (one was added or removed).
    pub sources: bool,
    /// The target's labels (the first-ranked source's) changed.
    pub labels: bool,
}

/// `source` lists the target with `labels` (again, or for the first time).
pub fn give(given: &mut Given, source: &Source, labels: &Labels) -> Changed {
    match given.binary_search_by(|(s, _)| s.cmp(source)) {
        Ok(at) => {
            let same = given[at].1 == *labels;
            given[at].1 = labels.clone();
            Changed {
                sources: false,
                labels: at == 0 && !same,
            }
        }
        Err(at) => {
            let labels_changed = at == 0 && given.first().is_none_or(|(_, l)| l != labels);
            given.insert(at, (source.clone(), labels.clone()));
            Changed {
                sources: true,
                labels: labels_changed && given.len() > 1,
            }
        }
    }
}

/// `source` no longer lists the target; the next-ranked source's labels take over.
pub fn take(given: &mut Given, source: &Source) -> Changed {
    let Ok(at) = given.binary_search_by(|(s, _)| s.cmp(source)) else {
        return Changed::default();
    };
    let (_, old) = given.remove(at);
    Changed {
        sources: true,
        labels: at == 0 && given.first().is_some_and(|(_, l)| *l != old),
    }
}

impl MergedTargets {
    /// Merges `sources`, each a source and its targets, given in any order; see the module doc
    /// for the rule on labels.
    pub fn merge<'a, I, T>(sources: I) -> MergedTargets
    where
        I: IntoIterator<Item = (Source, T)>,
        T: IntoIterator<Item = &'a Target>,
    {
        let mut given: BTreeMap<TargetKey, Given> = BTreeMap::new();
        for (source, list) in sources {
            for target in list {
                let g = given.entry(target.key.clone()).or_default();
                give(g, &source, &target.labels);
            }
        }
        let targets = given
            .into_iter()
            .map(|(key, g)| {
                let labels = g.first().map(|(_, l)| l.clone()).unwrap_or_default();
                let sources = g.into_iter().map(|(s, _)| s).collect();
                let target = Target {
                    key: key.clone(),
                    labels,
                };
                (key, MergedTarget { target, sources })
            })
            .collect();
        MergedTargets { targets }
    }

    /// What changed from `self` (the running set) to `new`.
    pub fn diff(&self, new: &MergedTargets) -> Diff {
        let mut diff = Diff::default();
        for (key, old) in &self.targets {
            match new.targets.get(key) {
                None => diff.removed.push(key.clone()),
                Some(n) if n.target.labels != old.target.labels => {
                    diff.labels_changed.push(n.target.clone());
                }
                Some(n) if n.sources != old.sources => diff.sources_changed.push(n.clone()),
                Some(_) => {}
            }
        }
        let added = new
            .targets
            .iter()
            .filter(|(k, _)| !self.targets.contains_key(k));
        diff.added = added.map(|(_, n)| n.target.clone()).collect();
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    fn t(room: &str, labels: &[(&str, &str)]) -> Target {
        Target {
            key: TargetKey {
                kind: Kind::Webcast,
                app_id: "app".into(),
                room_id: room.into(),
                task_id: None,
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn first_ranked_source_gives_the_labels_whatever_the_input_order() {
        let api = [t("r1", &[("team", "api")])];
        let config = [t("r1", &[("team", "config")]), t("r2", &[])];
        let file = [t("r1", &[("zone", "b")])];
        let f = Source::file("/t/a.yaml");
        let m = MergedTargets::merge([
            (Source::Api, &api[..]),
            (f.clone(), &file[..]),
            (Source::Config, &config[..]),
        ]);
        assert_eq!(m.targets.len(), 2);
        let r1 = m.targets.get(&api[0].key).unwrap();
        assert_eq!(*r1.target.labels, [("team".into(), "config".into())]);
        assert_eq!(r1.sources, [Source::Config, f.clone(), Source::Api]);
        // Without the config, the file ranks first.
        let m = MergedTargets::merge([(Source::Api, &api[..]), (f, &file[..])]);
        assert_eq!(
            *m.targets.get(&api[0].key).unwrap().target.labels,
            [("zone".into(), "b".into())]
        );
    }

    #[test]
    fn taking_the_first_source_hands_the_labels_to_the_next() {
        let labels = |v: &str| -> Labels { vec![("team".to_string(), v.to_string())].into() };
        let mut given = Given::new();
        let f = Source::file("/t/a.yaml");
        assert!(!give(&mut given, &Source::Api, &labels("api")).labels);
        let c = give(&mut given, &Source::Config, &labels("config"));
        assert!(c.sources && c.labels);
        // A lower-ranked source's labels change nothing the target shows.
        assert_eq!(
            give(&mut given, &f, &labels("file")),
            Changed {
                sources: true,
                labels: false
            }
        );
        assert_eq!(given[0].1, labels("config"));
        let c = take(&mut given, &Source::Config);
        assert!(c.sources && c.labels);
        assert_eq!(given[0], (f.clone(), labels("file")));
        assert_eq!(take(&mut given, &Source::Config), Changed::default());
        assert_eq!(
            take(&mut given, &Source::Api),
            Changed {
                sources: true,
                labels: false
            }
        );
        assert_eq!(given.len(), 1);
    }

    #[test]
    fn a_source_given_twice_is_listed_once() {
        let a = [t("r1", &[])];
        let m = MergedTargets::merge([(Source::Api, &a[..]), (Source::Api, &a[..])]);
        assert_eq!(m.targets.get(&a[0].key).unwrap().sources, [Source::Api]);
    }
}
