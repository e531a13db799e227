//! The pure core of many sources: merging them into one set of targets, and the difference
//! between two such sets.
//!
//! **One target, several sources.** Targets are the same when their [`TargetKey`] (kind, app_id,
//! room_id, task_id) is. Such a target is followed once and remembers every source it came from.
//! **Labels** are taken whole from the source that ranks first by [`Source`]'s order: the config,
//! then target files in path order, then the registration API, then callbacks. They are never
//! mixed label by label, so a target's labels are always exactly as one source wrote them.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use crate::model::{Target, TargetKey};

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
    /// How many keys are in both with the same labels and sources (nothing to do).
    pub unchanged: usize,
}

impl Diff {
    /// Nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.labels_changed.is_empty()
            && self.sources_changed.is_empty()
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
        let mut targets: BTreeMap<TargetKey, MergedTarget> = BTreeMap::new();
        for (source, list) in sources {
            for target in list {
                match targets.entry(target.key.clone()) {
                    Entry::Vacant(e) => {
                        e.insert(MergedTarget {
                            target: target.clone(),
                            sources: vec![source.clone()],
                        });
                    }
                    Entry::Occupied(mut e) => {
                        let merged = e.get_mut();
                        let Err(at) = merged.sources.binary_search(&source) else {
                            continue;
                        };
                        if at == 0 {
                            merged.target.labels.clone_from(&target.labels);
                        }
                        merged.sources.insert(at, source.clone());
                    }
                }
            }
        }
        MergedTargets { targets }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn get(&self, key: &TargetKey) -> Option<&MergedTarget> {
        self.targets.get(key)
    }

    /// Every target in key order.
    pub fn iter(&self) -> impl Iterator<Item = &MergedTarget> {
        self.targets.values()
    }

    /// The targets alone (labels as merged), in key order.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.values().map(|m| &m.target)
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
                Some(_) => diff.unchanged += 1,
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
        assert_eq!(m.len(), 2);
        let r1 = m.get(&api[0].key).unwrap();
        assert_eq!(*r1.target.labels, [("team".into(), "config".into())]);
        assert_eq!(r1.sources, [Source::Config, f.clone(), Source::Api]);
        // Without the config, the file ranks first.
        let m = MergedTargets::merge([(Source::Api, &api[..]), (f, &file[..])]);
        assert_eq!(
            *m.get(&api[0].key).unwrap().target.labels,
            [("zone".into(), "b".into())]
        );
    }

    #[test]
    fn a_source_given_twice_is_listed_once() {
        let a = [t("r1", &[])];
        let m = MergedTargets::merge([(Source::Api, &a[..]), (Source::Api, &a[..])]);
        assert_eq!(m.get(&a[0].key).unwrap().sources, [Source::Api]);
    }
}
