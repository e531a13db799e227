//! The walk between the positioned YAML tree and the raw serde structs: checks every key of
//! the whole document against the structs' own field lists (so all unknown keys are reported
//! together, each with a suggestion), checks each value's shape (mapping, list, single value),
//! flags duplicate keys, and cleans the tree in place so that only what fits is left for serde.
//! [`PosIndex`] answers later where a path (`targets[3].app_id`) sits in the file.

use std::collections::HashSet;

use super::raw::{
    field_names, RawApi, RawBudget, RawConfig, RawCredentials, RawSchedule, RawTarget,
};
use super::yaml::{self, Node, Pos, Value};

/// Where one path sits: its key (for mapping entries) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// Which paths held a value of the wrong shape (already reported, so the conversion does not
/// report them again as missing), and, asked for them, where paths (`api.timeout`,
/// `targets[3].labels.team`) sit in the file.
///
/// Places are only needed for findings, so none is stored up front: [`PosIndex::places`]
/// loads the text again (it loaded fine once, so it loads the same) keeping only the paths
/// asked for (see [`yaml::load_places`]). A config without problems or warnings never pays
/// for it.
#[derive(Debug)]
pub struct PosIndex<'t> {
    text: &'t str,
    refused: HashSet<String>,
}

impl<'t> PosIndex<'t> {
    /// The index of `text`, with the paths the walk refused.
    pub fn new(text: &'t str, refused: HashSet<String>) -> Self {
        PosIndex { text, refused }
    }

    /// Whether the file has a value at `path` that was refused for its shape.
    pub fn refused(&self, path: &str) -> bool {
        self.refused.contains(path)
    }

    /// The places of the `wanted` paths (others may be missing).
    pub fn places<'a>(&self, wanted: impl IntoIterator<Item = &'a str>) -> Places {
        Places {
            root: yaml::load_places(self.text, wanted).ok().flatten(),
        }
    }
}

/// Where some paths sit, from [`PosIndex::places`].
#[derive(Debug)]
pub struct Places {
    root: Option<Node>,
}

impl Places {
    fn place(&self, path: &str) -> Option<Place> {
        match &self.root {
            Some(root) if !path.is_empty() => find(root, path, true),
            _ => None,
        }
    }

    /// Where the value at `path` starts, if the file has it.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.place(path).map(|p| p.value)
    }

    /// Where the key of `path` starts (its value's place for list items).
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.place(path).map(|p| p.key.unwrap_or(p.value))
    }
}

/// The place of what `rest` names below `node`: `[3]...` for a list item, `.key...` for a
/// mapping entry (`key...` at the top). The first entry with a key wins, as duplicates are
/// reported at their second occurrence; a key may itself hold `.` or `[`, so each key that
/// fits the start of `rest` is tried in turn.
fn find(node: &Node, rest: &str, top: bool) -> Option<Place> {
    match &node.value {
        Value::Seq(items) => {
            let (index, after) = rest.strip_prefix('[')?.split_once(']')?;
            let item = items.get(index.parse::<usize>().ok()?)?;
            if after.is_empty() {
                return Some(Place {
                    key: None,
                    value: item.pos,
                });
            }
            find(item, after, false)
        }
        Value::Map(entries) => {
            let rest = if top { rest } else { rest.strip_prefix('.')? };
            entries.iter().find_map(|(k, v)| {
                let Value::Scalar(name) = &k.value else {
                    return None;
                };
                let after = rest.strip_prefix(&**name)?;
                if after.is_empty() {
                    Some(Place {
                        key: Some(k.pos),
                        value: value_pos(k, v),
                    })
                } else if after.starts_with(['.', '[']) {
                    find(v, after, false)
                } else {
                    None
                }
            })
        }
        Value::Null | Value::Scalar(_) => None,
    }
}

/// Where a mapping entry's value is shown: an empty value is marked where the next token
/// starts, so its key is the better place then.
fn value_pos(key: &Node, value: &Node) -> Pos {
    match value.value {
        Value::Null if value.pos.line != key.pos.line => key.pos,
        _ => value.pos,
    }
}

type Fields = fn() -> &'static [&'static str];

/// What a value must look like.
#[derive(Clone, Copy)]
enum Shape {
    Scalar,
    /// Free names to single values (`labels`).
    ScalarMap,
    Struct {
        fields: Fields,
        child: fn(&str) -> Shape,
    },
    ListOf {
        fields: Fields,
        child: fn(&str) -> Shape,
    },
}

fn scalars(_: &str) -> Shape {
    Shape::Scalar
}

fn target_child(key: &str) -> Shape {
    match key {
        "labels" => Shape::ScalarMap,
        _ => Shape::Scalar,
    }
}

fn root_child(key: &str) -> Shape {
    let s = |fields: Fields| Shape::Struct {
        fields,
        child: scalars,
    };
    match key {
        "api" => s(field_names::<RawApi>),
        "credentials" => s(field_names::<RawCredentials>),
        "budget" => s(field_names::<RawBudget>),
        "schedule" => s(field_names::<RawSchedule>),
        "targets" => Shape::ListOf {
            fields: field_names::<RawTarget>,
            child: target_child,
        },
        _ => Shape::Scalar,
    }
}

/// Which top-level section a misplaced key belongs in, for the "did you mean" hint.
fn home_of(key: &str) -> Option<&'static str> {
    for section in ["api", "credentials", "budget", "schedule"] {
        if let Shape::Struct { fields, .. } = root_child(section) {
            if fields().contains(&key) {
                return Some(section);
            }
        }
    }
    None
}

/// The outcome of the walk: findings (position, message), the paths refused for their shape,
/// and whether the root itself was usable (a mapping).
pub struct Walked {
    pub findings: Vec<(Option<Pos>, String)>,
    pub refused: HashSet<String>,
    pub root_ok: bool,
}

/// Walks the document root and cleans it in place: what does not fit (unknown and duplicate
/// keys, wrongly shaped values, labels without a value) is reported and removed, an empty
/// `targets:` becomes an empty list, and a list item of the wrong shape an empty mapping (so
/// item numbers stay as written). What is left deserializes into [`RawConfig`].
pub fn walk(root: &mut Node) -> Walked {
    let mut w = Walker {
        findings: Vec::new(),
        refused: HashSet::new(),
    };
    let shape = Shape::Struct {
        fields: field_names::<RawConfig>,
        child: root_child,
    };
    let root_ok = match &root.value {
        Value::Map(_) => w.walk(root, "", shape),
        other => {
            w.refused.insert(String::new());
            w.findings.push((
                Some(root.pos),
                format!(
                    "the config must be a mapping with keys such as `api:` and `targets:`, \
                     found {}",
                    other.describe()
                ),
            ));
            false
        }
    };
    Walked {
        findings: w.findings,
        refused: w.refused,
        root_ok,
    }
}

struct Walker {
    findings: Vec<(Option<Pos>, String)>,
    refused: HashSet<String>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

impl Walker {
    fn problem(&mut self, pos: Pos, message: String) {
        self.findings.push((Some(pos), message));
    }

    /// A value of the wrong shape at `path`: reported here, left out of the cleaned tree.
    fn refuse(&mut self, path: &str, pos: Pos, message: String) {
        self.refused.insert(path.to_owned());
        self.problem(pos, message);
    }

    /// Keeps, of a mapping's entries, those with a plain key seen for the first time for
    /// which `keep` (given the walker, the key, its place and the value) says yes.
    fn retain_entries(
        &mut self,
        node: &mut Node,
        path: &str,
        mut keep: impl FnMut(&mut Walker, &str, Pos, &mut Node) -> bool,
    ) {
        let Value::Map(entries) = &mut node.value else {
            return;
        };
        // First the keys: which are plain and new (the rest reported).
        let mut plain = Vec::with_capacity(entries.len());
        {
            let mut seen: std::collections::HashMap<&str, Pos> = Default::default();
            for (k, _) in entries.iter() {
                let name = match &k.value {
                    Value::Scalar(s) => &**s,
                    other => {
                        self.problem(
                            k.pos,
                            format!(
                                "a key in {} is {}; keys must be plain names",
                                shown(path),
                                other.describe()
                            ),
                        );
                        plain.push(false);
                        continue;
                    }
                };
                if let Some(first) = seen.get(name) {
                    self.problem(
                        k.pos,
                        format!(
                            "duplicate key `{name}` in {} (first given at line {}); remove one of them",
                            shown(path),
                            first.line
                        ),
                    );
                    plain.push(false);
                    continue;
                }
                seen.insert(name, k.pos);
                plain.push(true);
            }
        }
        // Then the values, in order.
        let mut flags = plain.into_iter();
        let mut kept = std::mem::take(entries).into_vec();
        kept.retain_mut(|(k, v)| {
            let (true, Value::Scalar(name)) = (flags.next().unwrap_or(false), &k.value) else {
                return false;
            };
            keep(self, name, k.pos, v)
        });
        *entries = kept.into_boxed_slice();
    }

    /// Checks `node` against `shape` and cleans it; `false` when it is to be left out.
    fn walk(&mut self, node: &mut Node, path: &str, shape: Shape) -> bool {
        match shape {
            Shape::Scalar => match &node.value {
                Value::Null | Value::Scalar(_) => true,
                other => {
                    let message = format!(
                        "{} must be a single value, found {}",
                        shown(path),
                        other.describe()
                    );
                    self.refuse(path, node.pos, message);
                    false
                }
            },
            Shape::ScalarMap => match &node.value {
                Value::Null => false,
                Value::Map(_) => {
                    self.retain_entries(node, path, |w, name, kpos, v| {
                        let child = join(path, name);
                        if !w.walk(v, &child, Shape::Scalar) {
                            return false;
                        }
                        if matches!(v.value, Value::Null) {
                            w.problem(
                                kpos,
                                format!(
                                    "`{child}` has no value; give it one (quote it if it looks \
                                     like a number or `null`) or remove it"
                                ),
                            );
                            return false;
                        }
                        true
                    });
                    true
                }
                other => {
                    let message = format!(
                        "{} must be a mapping of `name: value` pairs, found {}",
                        shown(path),
                        other.describe()
                    );
                    self.refuse(path, node.pos, message);
                    false
                }
            },
            Shape::Struct { fields, child } => match &node.value {
                Value::Null => false,
                Value::Map(_) => {
                    let valid = fields();
                    self.retain_entries(node, path, |w, name, kpos, v| {
                        if !valid.contains(&name) {
                            let msg = unknown_key(name, path, valid);
                            w.problem(kpos, msg);
                            return false;
                        }
                        w.walk(v, &join(path, name), child(name))
                    });
                    true
                }
                other => {
                    let message = format!(
                        "{} must be a mapping of keys ({}), found {}",
                        shown(path),
                        fields().join(", "),
                        other.describe()
                    );
                    self.refuse(path, node.pos, message);
                    false
                }
            },
            Shape::ListOf { fields, child } => match &mut node.value {
                Value::Null => {
                    node.value = Value::Seq(Box::default());
                    true
                }
                Value::Seq(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        match &item.value {
                            Value::Map(_) => {
                                self.walk(item, &item_path, Shape::Struct { fields, child });
                            }
                            other => {
                                let message = format!(
                                    "`{item_path}` must be a mapping with keys ({}), found {}",
                                    fields().join(", "),
                                    other.describe()
                                );
                                self.refuse(&item_path, item.pos, message);
                                // Keep item numbers as written even for broken items.
                                item.value = Value::Map(Box::default());
                            }
                        }
                    }
                    true
                }
                other => {
                    let message = format!(
                        "{} must be a list (each entry starting with `- `), found {}",
                        shown(path),
                        other.describe()
                    );
                    self.refuse(path, node.pos, message);
                    false
                }
            },
        }
    }
}

/// "unknown key" with the closest valid key, or the key's proper section, as the fix.
fn unknown_key(name: &str, path: &str, valid: &[&str]) -> String {
    let mut msg = if path.is_empty() {
        format!("unknown top-level key `{name}`")
    } else {
        format!("unknown key `{name}` in `{path}`")
    };
    if let Some(best) = closest(name, valid) {
        msg.push_str(&format!("; did you mean `{best}`?"));
    } else if let (true, Some(section)) = (path.is_empty(), home_of(name)) {
        msg.push_str(&format!(
            "; it belongs under `{section}:` (indent it there)"
        ));
    } else {
        msg.push_str(&format!("; valid keys are: {}", valid.join(", ")));
    }
    msg
}

/// The valid key nearest to `name` by edit distance (ignoring case), if near enough to be a
/// plausible typo.
pub fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let near = valid
        .iter()
        .map(|v| (levenshtein(&lower, &v.to_ascii_lowercase()), *v))
        .filter(|(d, v)| *d <= (v.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v);
    // Else a word that merely extends a valid one (`recording` for `record`).
    near.or_else(|| {
        valid.iter().copied().find(|v| {
            let v = v.to_ascii_lowercase();
            v.len() >= 4 && (lower.starts_with(&v) || (lower.len() >= 4 && v.starts_with(&lower)))
        })
    })
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_found_down_the_path() {
        let text = "api:\n  timeout:\n  region: x\n  region: y\ntargets:\n  - kind: record\n    labels: {a.b: 1, 'c[0]': 2}\n";
        let refused = HashSet::from(["targets[0].kind".to_owned()]);
        let index = PosIndex::new(text, refused);
        assert!(index.refused("targets[0].kind") && !index.refused("targets[0]"));
        let asked = [
            "api.timeout",
            "api.region",
            "targets[0]",
            "targets[0].kind",
            "targets[0].labels.a.b",
            "targets[0].labels.c[0]",
            "",
            "api.nope",
            "targets[1]",
            "api.region.deeper",
            "apix",
        ];
        let index = index.places(asked);
        let at = |line, col| Some(Pos { line, col });
        // An empty value is placed at its key; the first of two equal keys wins.
        assert_eq!(index.value("api.timeout"), at(2, 3));
        assert_eq!(index.value("api.region"), at(3, 11));
        assert_eq!(index.key("api.region"), at(3, 3));
        // A list item has no key: its value's place stands for both.
        assert_eq!(index.key("targets[0]"), at(6, 5));
        assert_eq!(index.value("targets[0].kind"), at(6, 11));
        // Keys holding `.` or `[`.
        assert_eq!(index.key("targets[0].labels.a.b"), at(7, 14));
        assert_eq!(index.key("targets[0].labels.c[0]"), at(7, 22));
        for missing in [
            "",
            "api.nope",
            "targets[1]",
            "targets[x]",
            "api.region.deeper",
            "apix",
        ] {
            assert_eq!(index.value(missing), None, "{missing}");
        }
        // Only what was asked for is kept.
        assert_eq!(index.value("api"), at(2, 3));
        assert_eq!(index.value("targets[0].labels"), at(7, 13));
        let few = PosIndex::new(text, HashSet::new()).places(["api.timeout"]);
        assert_eq!(few.value("api.timeout"), at(2, 3));
        assert_eq!(few.value("targets[0].kind"), None);
    }

    #[test]
    fn walk_cleans_the_tree_in_place() {
        let mut root = yaml::load("api: {timeot: 1s, timeout: 2s, timeout: 3s}\nbudget: [1]\ntargets:\n  - x\n  - {kind: record, labels: {a: 1, b:}}\n")
            .unwrap()
            .unwrap();
        let walked = walk(&mut root);
        assert!(walked.root_ok);
        assert_eq!(walked.findings.len(), 5, "{:?}", walked.findings);
        assert_eq!(
            walked.refused,
            HashSet::from(["budget".to_owned(), "targets[0]".to_owned()])
        );
        let clean = yaml::load(
            "api: {timeout: 2s}\ntargets:\n  - {}\n  - {kind: record, labels: {a: 1}}\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(strip(&root), strip(&clean));
    }

    /// The tree without positions, to compare shapes.
    fn strip(node: &Node) -> String {
        match &node.value {
            Value::Null => "~".into(),
            Value::Scalar(s) => s.to_string(),
            Value::Seq(items) => format!(
                "[{}]",
                items.iter().map(strip).collect::<Vec<_>>().join(",")
            ),
            Value::Map(entries) => format!(
                "{{{}}}",
                entries
                    .iter()
                    .map(|(k, v)| format!("{}:{}", strip(k), strip(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    #[test]
    fn closest_key_suggestions() {
        let valid = ["timeout", "region", "max_in_flight"];
        assert_eq!(closest("timeot", &valid), Some("timeout"));
        assert_eq!(closest("Region", &valid), Some("region"));
        assert_eq!(closest("max_inflight", &valid), Some("max_in_flight"));
        assert_eq!(closest("colour", &valid), None);
        assert_eq!(closest("recording", &["record", "webcast"]), Some("record"));
        assert_eq!(closest("web", &["record", "webcast"]), None);
        assert_eq!(closest("max_in", &valid), Some("max_in_flight"));
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
