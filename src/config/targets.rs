//! The target-list checks, as a part of [`check`](super::check)'s walk: each entry of a
//! `targets:` list, or of a targets file on its own, checked into a [`Target`] (kind, IDs and
//! labels, each problem placed at its node), duplicates reported against the first target with
//! their key, and equal label sets held once.

use std::collections::{HashMap, HashSet};

use super::check::{closest, show, Checker, Field, Fields, One, TargetList};
use super::yaml::{Node, Pos, Value};
use crate::model::{is_label_name, is_valid_id, Kind, Labels, Target, TargetKey, RESERVED_LABELS};

const TARGET_KEYS: &[&str] = &["kind", "app_id", "room_id", "task_id", "labels"];
/// Past this many label sets, new ones are no longer remembered for sharing: a file whose every
/// target has labels of its own would only grow the index.
const MAX_LABEL_SETS: usize = 4096;

impl Checker {
    /// The targets of a list, named `targets[i]`; `empty_at` is where an empty list under
    /// `targets:` draws its warning. Duplicates are reported against the first target with
    /// their key and left out.
    pub(super) fn target_list(&mut self, items: Box<[Node]>, empty_at: Option<Pos>) -> Vec<Target> {
        if let (true, Some(at)) = (items.is_empty(), empty_at) {
            let message =
                "`targets` is empty, so nothing will be polled; add targets to follow tasks, or \
                 `target_files:` or `callbacks:` to find them";
            self.warn(at, message.into());
        }
        let mut list = TargetList {
            targets: Vec::with_capacity(items.len()),
            places: Vec::with_capacity(items.len()),
            seen: 0,
        };
        for item in items.into_vec() {
            self.target_item(&mut list, item);
        }
        self.unique_targets(list)
    }

    /// Checks the next item of a target list; a good target joins `list`.
    pub(super) fn target_item(&mut self, list: &mut TargetList, item: Node) {
        let i = list.seen;
        list.seen += 1;
        let (path, pos) = (format!("targets[{i}]"), item.pos);
        let entries = match item.value {
            Value::Map(entries) => entries,
            other => {
                let expected = format!("a mapping with keys ({})", TARGET_KEYS.join(", "));
                self.shape(pos, &format!("`{path}`"), &expected, &other);
                return;
            }
        };
        let fields = self.entries(entries, &path, Some(TARGET_KEYS));
        if let Some(target) = self.target(&path, pos, fields) {
            list.targets.push(target);
            list.places.push((i, pos));
        }
    }

    /// The checked targets with duplicates reported (and dropped).
    pub(super) fn unique_targets(&mut self, list: TargetList) -> Vec<Target> {
        let TargetList {
            targets: mut out,
            places,
            ..
        } = list;
        let mut first_seen: HashMap<&TargetKey, (usize, Pos)> = HashMap::with_capacity(out.len());
        let mut duplicates = HashSet::new();
        for (target, &(i, pos)) in out.iter().zip(&places) {
            match first_seen.get(&target.key) {
                Some(&(first, first_pos)) => {
                    let message = format!(
                        "duplicate target: `targets[{i}]` has the same kind, app_id, room_id and task_id as `targets[{first}]` at line {}; remove one of them",
                        first_pos.line
                    );
                    self.problems.push((Some(pos), message));
                    duplicates.insert(i);
                }
                None => {
                    first_seen.insert(&target.key, (i, pos));
                }
            }
        }
        drop(first_seen);
        let mut list = places.iter();
        out.retain(|_| list.next().is_some_and(|(i, _)| !duplicates.contains(i)));
        out
    }

    fn id(&mut self, field: &str, one: One) -> Option<String> {
        let (s, at) = one.text()?;
        if is_valid_id(&s) {
            return Some(s.to_string());
        }
        let why = if s.is_empty() {
            "is empty".to_owned()
        } else if s.len() > 128 {
            format!("is {} characters long", s.chars().count())
        } else {
            format!("is {}", show(&s))
        };
        let message = format!(
            "`{field}` {why}; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)"
        );
        self.problem(Some(at), message);
        None
    }

    fn target(&mut self, path: &str, pos: Pos, mut f: Fields) -> Option<Target> {
        let mut get = |c: &mut Checker, key: &str| {
            let field = f.take(key);
            c.one(field, &format!("{path}.{key}"))
        };
        let (kind, app_id, room_id, task_id) = (
            get(self, "kind"),
            get(self, "app_id"),
            get(self, "room_id"),
            get(self, "task_id"),
        );
        let labels = f.take("labels");
        let kind = match kind {
            One::Absent => {
                let message =
                    format!("`{path}` has no `kind`; add `kind: record` or `kind: webcast`");
                self.problem(Some(pos), message);
                None
            }
            One::Refused => None,
            One::Text(s, _) if &*s == "record" => Some(Kind::Record),
            One::Text(s, _) if &*s == "webcast" => Some(Kind::Webcast),
            One::Text(s, at) => {
                let hint = closest(&s, &["record", "webcast"])
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                let message = format!(
                    "`{path}.kind` is {}; {hint}use `record` (GetRecordTask) or `webcast` (GetWebCastTask)",
                    show(&s)
                );
                self.problem(Some(at), message);
                None
            }
        };
        for (key, one, what) in [
            ("app_id", &app_id, "the RTC AppId"),
            ("room_id", &room_id, "the RoomId the task records"),
        ] {
            if matches!(one, One::Absent) {
                let message = format!("`{path}` has no `{key}`; add `{key}: ...` ({what})");
                self.problem(Some(pos), message);
            }
        }
        let app_id = self.id(&format!("{path}.app_id"), app_id);
        let room_id = self.id(&format!("{path}.room_id"), room_id);
        let had_task = !matches!(task_id, One::Absent);
        let task_id = self.id(&format!("{path}.task_id"), task_id);
        if kind == Some(Kind::Record) && !had_task {
            let message = format!(
                "`{path}` is a record target without `task_id`; GetRecordTask needs one: add `task_id: ...` (only webcast targets may leave it out, meaning the room's newest task)"
            );
            self.problem(Some(pos), message);
        }
        let labels = self.labels(&format!("{path}.labels"), labels);
        let key = TargetKey {
            kind: kind?,
            app_id: app_id?,
            room_id: room_id?,
            task_id,
        };
        if had_task && key.task_id.is_none() {
            return None;
        }
        Some(Target {
            key,
            labels: self.shared_labels(labels?),
        })
    }

    /// The one shared copy of `labels`: targets with equal label sets hold the same [`Labels`].
    fn shared_labels(&mut self, labels: Vec<(String, String)>) -> Labels {
        if labels.is_empty() {
            return self.no_labels.clone();
        }
        if let Some(shared) = self.label_sets.get(labels.as_slice()) {
            return shared.clone();
        }
        let shared: Labels = labels.into();
        if self.label_sets.len() < MAX_LABEL_SETS {
            self.label_sets.insert(shared.clone());
        }
        shared
    }

    /// A target's `labels:`, sorted by name; `None` when any is wrong.
    fn labels(&mut self, path: &str, field: Option<Field>) -> Option<Vec<(String, String)>> {
        let Some(field) = field else {
            return Some(Vec::new());
        };
        let entries = match field.node.value {
            Value::Null => return Some(Vec::new()),
            Value::Map(entries) => self.entries(entries, path, None),
            other => {
                let expected = "a mapping of `name: value` pairs";
                self.shape(field.at, &format!("`{path}`"), expected, &other);
                return None;
            }
        };
        let mut ok = true;
        let mut labels = Vec::with_capacity(entries.0.len());
        for (name, field) in entries.0 {
            let (key, child) = (field.key, format!("{path}.{name}"));
            let why = match self.one(Some(field), &child) {
                _ if !is_label_name(&name) => format!(
                    ": label name {} is not a valid Prometheus label name; use letters, digits and `_`, not starting with a digit",
                    show(&name)
                ),
                _ if name.starts_with("__") => format!(
                    ": label name `{name}` starts with `__`, which Prometheus reserves; rename it"
                ),
                _ if RESERVED_LABELS.contains(&&*name) => format!(
                    ": label name `{name}` collides with a label the exporter sets itself ({}); rename it, e.g. `{name}_name`",
                    RESERVED_LABELS.join(", ")
                ),
                One::Text(value, _) => {
                    labels.push((name.to_string(), value.to_string()));
                    continue;
                }
                One::Refused => {
                    ok = false;
                    continue;
                }
                One::Absent => " has no value; give it one (quote it if it looks like a number or `null`) or remove it".into(),
            };
            self.problem(Some(key), format!("`{child}`{why}"));
            ok = false;
        }
        labels.sort();
        ok.then_some(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_name_rule() {
        assert!(is_label_name("team"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("1x"));
        assert!(!is_label_name("a-b"));
        assert!(!is_label_name(""));
    }
}
