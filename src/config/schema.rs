//! The walk between the positioned YAML tree and the raw serde structs: checks every key of
//! the whole document against the structs' own field lists (so all unknown keys are reported
//! together, each with a suggestion), checks each value's shape (mapping, list, single value),
//! flags duplicate keys, records where every path (`targets[3].app_id`) sits in the file, and
//! hands serde a cleaned value holding only what fits.

use std::collections::{HashMap, HashSet};

use serde_yaml::{Mapping, Value as Yaml};

use super::raw::{
    field_names, RawApi, RawBudget, RawConfig, RawCredentials, RawSchedule, RawTarget,
};
use super::yaml::{Node, Pos, Value};

/// Where one path sits: its key (for mapping entries) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// Path (`api.timeout`, `targets[3].labels.team`) to place, and which paths held a value of
/// the wrong shape (already reported, so the conversion does not report them again as
/// missing).
#[derive(Debug, Default, Clone)]
pub struct PosIndex {
    places: HashMap<String, Place>,
    refused: HashSet<String>,
}

impl PosIndex {
    /// Where the value at `path` starts, if the file has it.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.places.get(path).map(|p| p.value)
    }

    /// Where the key of `path` starts (its value's place for list items).
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.places.get(path).map(|p| p.key.unwrap_or(p.value))
    }

    /// Whether the file has a value at `path` that was refused for its shape.
    pub fn refused(&self, path: &str) -> bool {
        self.refused.contains(path)
    }

    fn insert(&mut self, path: &str, key: Option<Pos>, value: Pos) {
        self.places.insert(path.to_owned(), Place { key, value });
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

/// The outcome of the walk: findings (position, message), the index, and the cleaned value.
pub struct Walked {
    pub findings: Vec<(Option<Pos>, String)>,
    pub index: PosIndex,
    pub value: Yaml,
}

/// Walks the document root.
pub fn walk(root: &Node) -> Walked {
    let mut w = Walker {
        findings: Vec::new(),
        index: PosIndex::default(),
    };
    let shape = Shape::Struct {
        fields: field_names::<RawConfig>,
        child: root_child,
    };
    let value = match &root.value {
        Value::Map(_) => w.walk(root, "", shape).unwrap_or(Yaml::Null),
        other => {
            w.index.refused.insert(String::new());
            w.findings.push((
                Some(root.pos),
                format!(
                    "the config must be a mapping with keys such as `api:` and `targets:`, \
                     found {}",
                    other.describe()
                ),
            ));
            Yaml::Null
        }
    };
    Walked {
        findings: w.findings,
        index: w.index,
        value,
    }
}

struct Walker {
    findings: Vec<(Option<Pos>, String)>,
    index: PosIndex,
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

    /// A value of the wrong shape at `path`: reported here, left out of the cleaned value.
    fn refuse(&mut self, path: &str, pos: Pos, message: String) {
        self.index.refused.insert(path.to_owned());
        self.problem(pos, message);
    }

    /// The entries of a mapping with scalar keys, first occurrence of each key only.
    fn entries<'n>(&mut self, node: &'n Node, path: &str) -> Vec<(String, Pos, &'n Node)> {
        let Value::Map(entries) = &node.value else {
            return Vec::new();
        };
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        let mut out = Vec::new();
        for (k, v) in entries {
            let name = match &k.value {
                Value::Scalar(s) => s.as_str(),
                other => {
                    self.problem(
                        k.pos,
                        format!(
                            "a key in {} is {}; keys must be plain names",
                            shown(path),
                            other.describe()
                        ),
                    );
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
                continue;
            }
            seen.insert(name, k.pos);
            // An empty value is marked where the next token starts; its key is the better place.
            let vpos = match v.value {
                Value::Null if v.pos.line != k.pos.line => k.pos,
                _ => v.pos,
            };
            self.index.insert(&join(path, name), Some(k.pos), vpos);
            out.push((name.to_owned(), k.pos, v));
        }
        out
    }

    fn walk(&mut self, node: &Node, path: &str, shape: Shape) -> Option<Yaml> {
        match shape {
            Shape::Scalar => match &node.value {
                Value::Null => Some(Yaml::Null),
                Value::Scalar(s) => Some(Yaml::String(s.clone())),
                other => {
                    self.refuse(
                        path,
                        node.pos,
                        format!(
                            "{} must be a single value, found {}",
                            shown(path),
                            other.describe()
                        ),
                    );
                    None
                }
            },
            Shape::ScalarMap => match &node.value {
                Value::Null => None,
                Value::Map(_) => {
                    let mut map = Mapping::new();
                    for (name, kpos, v) in self.entries(node, path) {
                        if let Some(value) = self.walk(v, &join(path, &name), Shape::Scalar) {
                            if value != Yaml::Null {
                                map.insert(Yaml::String(name), value);
                            } else {
                                self.problem(
                                    kpos,
                                    format!(
                                        "`{}` has no value; give it one (quote it if it looks \
                                         like a number or `null`) or remove it",
                                        join(path, &name)
                                    ),
                                );
                            }
                        }
                    }
                    Some(Yaml::Mapping(map))
                }
                other => {
                    self.refuse(
                        path,
                        node.pos,
                        format!(
                            "{} must be a mapping of `name: value` pairs, found {}",
                            shown(path),
                            other.describe()
                        ),
                    );
                    None
                }
            },
            Shape::Struct { fields, child } => match &node.value {
                Value::Null => None,
                Value::Map(_) => {
                    let valid = fields();
                    let mut map = Mapping::new();
                    for (name, kpos, v) in self.entries(node, path) {
                        if !valid.contains(&name.as_str()) {
                            let msg = unknown_key(&name, path, valid);
                            self.problem(kpos, msg);
                            continue;
                        }
                        let child_path = join(path, &name);
                        if let Some(value) = self.walk(v, &child_path, child(&name)) {
                            map.insert(Yaml::String(name), value);
                        }
                    }
                    Some(Yaml::Mapping(map))
                }
                other => {
                    self.refuse(
                        path,
                        node.pos,
                        format!(
                            "{} must be a mapping of keys ({}), found {}",
                            shown(path),
                            fields().join(", "),
                            other.describe()
                        ),
                    );
                    None
                }
            },
            Shape::ListOf { fields, child } => match &node.value {
                Value::Null => Some(Yaml::Sequence(Vec::new())),
                Value::Seq(items) => {
                    let mut out = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        self.index.insert(&item_path, None, item.pos);
                        let value = match &item.value {
                            Value::Map(_) => {
                                self.walk(item, &item_path, Shape::Struct { fields, child })
                            }
                            other => {
                                self.refuse(
                                    &item_path,
                                    item.pos,
                                    format!(
                                        "`{item_path}` must be a mapping with keys ({}), found {}",
                                        fields().join(", "),
                                        other.describe()
                                    ),
                                );
                                None
                            }
                        };
                        // Keep list positions aligned with the index even for broken items.
                        out.push(value.unwrap_or_else(|| Yaml::Mapping(Mapping::new())));
                    }
                    Some(Yaml::Sequence(out))
                }
                other => {
                    self.refuse(
                        path,
                        node.pos,
                        format!(
                            "{} must be a list (each entry starting with `- `), found {}",
                            shown(path),
                            other.describe()
                        ),
                    );
                    None
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
