//! The positioned tree converted into checked [`Settings`] (or a list of targets), in one walk:
//! every key is checked against the keys its section allows (unknown ones get the closest
//! valid key or their proper section as the fix), every value's shape and content is checked,
//! and each problem is recorded with the place of the node it is about, which the tree already
//! holds. Nothing stops the walk: all problems come back together, sorted by place. Warnings
//! (allowed but suspicious) go to [`Settings::warnings`].
//!
//! The tree is consumed as it is read, so a large `targets:` list is not held twice. The
//! target lists (a `targets:` section, or a targets file on its own) are checked by the same
//! [`Checker`], in the sibling module `targets`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use super::yaml::{self, Node, Pos, Value};
use super::{
    default_budget, duration, ApiSettings, ConfigError, CredentialSource, Endpoint, Problem,
    ScheduleSettings, Settings, RECORD_VERSIONS, VENDOR_QUOTA, WEBCAST_VERSIONS,
};
use crate::callbacks::settings::{CallbackSettings, CallbacksConfig};
use crate::credentials::{self, CredentialConfig, Credentials, Environment, Secret};
use crate::model::{Action, Labels, Target};

const ROOT_KEYS: &[&str] = &[
    "api",
    "credentials",
    "budget",
    "schedule",
    "targets",
    "target_files",
    "target_files_refresh_interval",
    "callbacks",
];
const API_KEYS: &[&str] = &[
    "endpoint",
    "region",
    "timeout",
    "max_in_flight",
    "record_version",
    "webcast_version",
];
const CREDENTIAL_KEYS: &[&str] = &[
    "access_key_id_file",
    "secret_access_key_file",
    "session_token_file",
    "access_key_id",
    "secret_access_key",
    "session_token",
];
const BUDGET_KEYS: &[&str] = &["GetRecordTask", "GetWebCastTask"];
const SCHEDULE_KEYS: &[&str] = &[
    "active_interval",
    "settle_interval",
    "settle_timeout",
    "retention",
];
const NO_TARGETS: &str = "there is no `targets:` list; add one with the tasks to follow, or \
     `target_files:` or `callbacks:` to find them (see examples/config.yaml)";
const EMPTY: &str =
    "the config is empty; it needs at least a `targets:` list (see examples/config.yaml)";
/// What a list must look like, in messages.
const LIST: &str = "a list (each entry starting with `- `)";
/// The sections a misplaced top-level key may belong in, for the "did you mean" hint.
const SECTIONS: [(&str, &[&str]); 4] = [
    ("api", API_KEYS),
    ("credentials", CREDENTIAL_KEYS),
    ("budget", BUDGET_KEYS),
    ("schedule", SCHEDULE_KEYS),
];

/// The longest duration accepted anywhere in the config, so that no later arithmetic on
/// instants or nanoseconds can overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most concurrent requests accepted.
const MAX_IN_FLIGHT: usize = 10_000;
/// The highest budget accepted, requests per second per action.
const MAX_BUDGET: f64 = 10_000.0;

/// Checks a whole config: `text` named `origin`, relative `*_file` paths against `base_dir`.
pub(super) fn settings(
    text: &str,
    origin: &str,
    base_dir: Option<&Path>,
    env: &dyn Environment,
) -> Result<Settings, ConfigError> {
    let root = match yaml::load(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Err(ConfigError::single(origin, None, EMPTY.into())),
        Err(e) => return Err(ConfigError::single(origin, Some(e.pos), e.message)),
    };
    let mut c = Checker::default();
    let root_ok = matches!(root.value, Value::Map(_));
    let mut top = match root.value {
        Value::Map(entries) => c.entries(entries, "", Some(ROOT_KEYS)),
        other => {
            let expected = "a mapping with keys such as `api:` and `targets:`";
            c.shape(root.pos, "the config", expected, &other);
            Fields::default()
        }
    };
    let mut section = |c: &mut Checker, name: &str, keys| {
        let field = top.take(name)?;
        c.mapping(field.node, name, keys)
    };
    let mut api = section(&mut c, "api", API_KEYS).unwrap_or_default();
    let mut creds = section(&mut c, "credentials", CREDENTIAL_KEYS).unwrap_or_default();
    let mut budget = section(&mut c, "budget", BUDGET_KEYS).unwrap_or_default();
    let mut schedule = section(&mut c, "schedule", SCHEDULE_KEYS).unwrap_or_default();

    let api = c.api(&mut api);
    let budget = [Action::GetRecordTask, Action::GetWebCastTask]
        .map(|action| c.budget(action, budget.take(&action.to_string())));
    let schedule = c.schedule(&mut schedule);
    let target_files = c.target_files(top.take("target_files"), base_dir);
    let target_files_refresh_interval = c.duration(
        &mut top,
        "target_files_refresh_interval",
        Duration::from_secs(60),
    );
    let callbacks_field = top.take("callbacks");
    // Target files and callbacks are sources of targets too: with either, an empty or missing
    // `targets:` list is no mistake.
    let other_sources = !target_files.is_empty() || callbacks_field.is_some();
    let targets = match top.take("targets") {
        Some(field) => {
            let empty_at = (!other_sources).then_some(field.at);
            match field.node.value {
                Value::Null => c.target_list(Box::default(), empty_at),
                Value::Seq(items) => c.target_list(items, empty_at),
                other => {
                    c.shape(field.at, "`targets`", LIST, &other);
                    Vec::new()
                }
            }
        }
        None if !root_ok || other_sources => Vec::new(),
        None => {
            c.problem(None, NO_TARGETS.into());
            Vec::new()
        }
    };
    let callbacks = callbacks_field.and_then(|f| c.callbacks(f, base_dir, env));
    let creds = c.credentials(&mut creds, base_dir, env);
    let warnings = c.finish(origin)?;
    let (credentials, credential_source, credential_config) = creds.ok_or_else(|| {
        ConfigError::single(origin, None, "no usable credentials were found".into())
    })?;
    Ok(Settings {
        api,
        credentials,
        credential_source,
        credential_config,
        budget,
        schedule,
        targets,
        target_files,
        target_files_refresh_interval,
        callbacks,
        warnings,
    })
}

/// A node as JSON for serde: scalars as strings (every `callbacks:` value is text).
fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Scalar(text) => J::String(text.to_string()),
        Value::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
    }
}

fn key_text(node: &Node) -> String {
    match &node.value {
        Value::Scalar(text) => text.to_string(),
        _ => String::new(),
    }
}

/// Checks a list of targets on its own (a targets file): each item as under `targets:`.
///
/// The file is read one entry at a time ([`yaml::load_list`]): a file of 100,000 targets is
/// never held as a whole positioned tree, only as the targets it yields.
pub(super) fn targets(text: &str, origin: &str) -> Result<Vec<Target>, ConfigError> {
    let mut c = Checker::default();
    let mut list = TargetList::default();
    let root = yaml::load_list(text, &mut |item| c.target_item(&mut list, item))
        .map_err(|e| ConfigError::single(origin, Some(e.pos), e.message))?;
    let targets = match root.map(|r| (r.pos, r.value)) {
        None | Some((_, Value::Null)) => Vec::new(),
        Some((_, Value::Seq(_))) => c.unique_targets(list),
        Some((pos, other)) => {
            c.shape(pos, "a targets file", LIST, &other);
            Vec::new()
        }
    };
    c.finish(origin)?;
    Ok(targets)
}

/// Targets checked so far, each with its index in the list and its place.
#[derive(Default)]
pub(super) struct TargetList {
    pub(super) targets: Vec<Target>,
    pub(super) places: Vec<(usize, Pos)>,
    pub(super) seen: usize,
}

/// A value found under a key: where the key is, where the value is shown, and the value.
pub(super) struct Field {
    pub(super) key: Pos,
    pub(super) at: Pos,
    pub(super) node: Node,
}

/// A mapping's entries that passed the key checks, in file order.
#[derive(Default)]
pub(super) struct Fields(pub(super) Vec<(Rc<str>, Field)>);

impl Fields {
    pub(super) fn take(&mut self, name: &str) -> Option<Field> {
        let i = self.0.iter().position(|(k, _)| &**k == name)?;
        Some(self.0.remove(i).1)
    }
}

/// A single value as written: absent or empty, of another shape (already reported), or its
/// text and place.
pub(super) enum One {
    Absent,
    Refused,
    Text(Rc<str>, Pos),
}

impl One {
    pub(super) fn text(self) -> Option<(Rc<str>, Pos)> {
        match self {
            One::Text(text, pos) => Some((text, pos)),
            One::Absent | One::Refused => None,
        }
    }
}

/// A path as shown in messages.
fn shown(path: &str) -> String {
    if path.is_empty() {
        "the top level".to_owned()
    } else {
        format!("`{path}`")
    }
}

/// A value as shown in a message: escaped, and cut when long.
pub(super) fn show(value: &str) -> String {
    let escaped: String = value.escape_debug().collect();
    if escaped.chars().count() > 80 {
        let cut: String = escaped.chars().take(77).collect();
        format!("`{cut}...`")
    } else {
        format!("`{escaped}`")
    }
}

/// The valid name nearest to `name` by edit distance (ignoring case), if near enough to be a
/// plausible typo; else one that `name` merely extends or shortens (`recording`, `record`).
pub(super) fn closest<'a>(name: &str, valid: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let near = valid
        .iter()
        .map(|v| (strsim::levenshtein(&lower, &v.to_ascii_lowercase()), *v))
        .filter(|(d, v)| *d <= (v.chars().count() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v);
    near.or_else(|| {
        valid.iter().copied().find(|v| {
            let v = v.to_ascii_lowercase();
            v.len() >= 4 && (lower.starts_with(&v) || (lower.len() >= 4 && v.starts_with(&lower)))
        })
    })
}

/// "unknown key" with the closest valid key, or the key's proper section, as the fix.
fn unknown_key(name: &str, path: &str, valid: &[&str]) -> String {
    let what = if path.is_empty() {
        format!("unknown top-level key `{name}`")
    } else {
        format!("unknown key `{name}` in `{path}`")
    };
    let home = SECTIONS.iter().find(|(_, keys)| keys.contains(&name));
    match (closest(name, valid), home) {
        (Some(best), _) => format!("{what}; did you mean `{best}`?"),
        (None, Some((section, _))) if path.is_empty() => {
            format!("{what}; it belongs under `{section}:` (indent it there)")
        }
        // At the top level the sections and `targets` are named; the optional keys
        // (`target_files`, `callbacks`, ...) are found by the suggestion above.
        _ if path.is_empty() => {
            let main = valid
                .iter()
                .filter(|k| **k == "targets" || SECTIONS.iter().any(|(section, _)| section == *k));
            format!(
                "{what}; valid keys are: {}",
                main.copied().collect::<Vec<_>>().join(", ")
            )
        }
        _ => format!("{what}; valid keys are: {}", valid.join(", ")),
    }
}

/// The findings so far: problems and warnings, each with its place when it has one.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<(Option<Pos>, String)>,
    warnings: Vec<(Option<Pos>, String)>,
    /// The label sets seen so far, each held once ([`Checker::shared_labels`]).
    pub(super) label_sets: HashSet<Labels>,
    pub(super) no_labels: Labels,
}

/// Findings as [`Problem`]s of `origin`, in file order (those without a place last).
fn sorted(origin: &str, mut found: Vec<(Option<Pos>, String)>) -> Vec<Problem> {
    found.sort_by_key(|(pos, _)| (pos.is_none(), *pos));
    let file = || origin.to_owned();
    let problem = |(pos, message)| Problem {
        file: file(),
        pos,
        message,
    };
    found.into_iter().map(problem).collect()
}

impl Checker {
    pub(super) fn problem(&mut self, pos: Option<Pos>, message: String) {
        self.problems.push((pos, message));
    }

    pub(super) fn warn(&mut self, pos: Pos, message: String) {
        self.warnings.push((Some(pos), message));
    }

    /// The warnings as lines, or every problem.
    pub(super) fn finish(self, origin: &str) -> Result<Vec<String>, ConfigError> {
        if !self.problems.is_empty() {
            return Err(ConfigError {
                problems: sorted(origin, self.problems),
            });
        }
        let warnings = sorted(origin, self.warnings);
        Ok(warnings.iter().map(Problem::to_string).collect())
    }

    /// `what` (at `pos`) must be `expected` but is `found`.
    pub(super) fn shape(&mut self, pos: Pos, what: &str, expected: &str, found: &Value) {
        let message = format!("{what} must be {expected}, found {}", found.describe());
        self.problem(Some(pos), message);
    }

    /// A mapping's entries with plain keys seen for the first time and, given `valid`, only
    /// known keys; the others are reported.
    pub(super) fn entries(
        &mut self,
        entries: Box<[(Node, Node)]>,
        path: &str,
        valid: Option<&[&str]>,
    ) -> Fields {
        let mut kept = Fields(Vec::with_capacity(entries.len()));
        let mut seen: HashMap<Rc<str>, Pos> = HashMap::new();
        for (k, v) in entries.into_vec() {
            let name = match k.value {
                Value::Scalar(name) => name,
                other => {
                    let message = format!(
                        "a key in {} is {}; keys must be plain names",
                        shown(path),
                        other.describe()
                    );
                    self.problem(Some(k.pos), message);
                    continue;
                }
            };
            if let Some(first) = seen.get(&name) {
                let message = format!(
                    "duplicate key `{name}` in {} (first given at line {}); remove one of them",
                    shown(path),
                    first.line
                );
                self.problem(Some(k.pos), message);
                continue;
            }
            seen.insert(Rc::clone(&name), k.pos);
            if let Some(valid) = valid.filter(|valid| !valid.contains(&&*name)) {
                self.problem(Some(k.pos), unknown_key(&name, path, valid));
                continue;
            }
            // An empty value is marked where the next token starts, so its key is the
            // better place then.
            let at = match v.value {
                Value::Null if v.pos.line != k.pos.line => k.pos,
                _ => v.pos,
            };
            let field = Field {
                key: k.pos,
                at,
                node: v,
            };
            kept.0.push((name, field));
        }
        kept
    }

    /// A section that must be a mapping of `keys`; `None` when empty or of another shape.
    fn mapping(&mut self, node: Node, path: &str, keys: &[&str]) -> Option<Fields> {
        match node.value {
            Value::Null => None,
            Value::Map(entries) => Some(self.entries(entries, path, Some(keys))),
            other => {
                let expected = format!("a mapping of keys ({})", keys.join(", "));
                self.shape(node.pos, &format!("`{path}`"), &expected, &other);
                None
            }
        }
    }

    /// The single value at `path`, if any.
    pub(super) fn one(&mut self, field: Option<Field>, path: &str) -> One {
        let Some(field) = field else {
            return One::Absent;
        };
        match field.node.value {
            Value::Null => One::Absent,
            Value::Scalar(text) => One::Text(text, field.at),
            other => {
                self.shape(field.at, &format!("`{path}`"), "a single value", &other);
                One::Refused
            }
        }
    }

    /// The text at `path` (`api.timeout`), its last key taken from section `f`, if any.
    fn text(&mut self, f: &mut Fields, path: &str) -> Option<(Rc<str>, Pos)> {
        let field = f.take(path.rsplit('.').next().unwrap_or(path));
        self.one(field, path).text()
    }

    /// `callbacks:`: read with the callbacks module's own serde types and checks.
    fn callbacks(
        &mut self,
        field: Field,
        base_dir: Option<&Path>,
        env: &dyn Environment,
    ) -> Option<CallbackSettings> {
        let at = field.at;
        let parsed: CallbacksConfig = match serde_json::from_value(to_json(&field.node)) {
            Ok(c) => c,
            Err(e) => {
                // serde names the key and the valid ones.
                self.problem(Some(at), format!("`callbacks`: {e}"));
                return None;
            }
        };
        match parsed.check(base_dir, env) {
            Ok(settings) => Some(settings),
            Err(problems) => {
                for p in problems {
                    self.problem(Some(at), p.message);
                }
                None
            }
        }
    }

    /// `target_files`: a list of glob patterns, relative ones against the config's folder.
    fn target_files(&mut self, field: Option<Field>, base_dir: Option<&Path>) -> Vec<PathBuf> {
        let Some(field) = field else {
            return Vec::new();
        };
        let items = match field.node.value {
            Value::Null => return Vec::new(),
            Value::Seq(items) => items,
            other => {
                self.shape(field.at, "`target_files`", LIST, &other);
                return Vec::new();
            }
        };
        let mut patterns = Vec::new();
        for (i, item) in items.into_vec().into_iter().enumerate() {
            let path = format!("target_files[{i}]");
            let one = self.one(
                Some(Field {
                    key: item.pos,
                    at: item.pos,
                    node: item,
                }),
                &path,
            );
            let Some((text, at)) = one.text() else {
                continue;
            };
            match glob::Pattern::new(&text) {
                Ok(_) => patterns.push(match base_dir {
                    Some(dir) if Path::new(&*text).is_relative() => dir.join(&*text),
                    _ => PathBuf::from(&*text),
                }),
                Err(e) => self.problem(
                    Some(at),
                    format!(
                        "`{path}` is not a valid glob ({e}); write a path such as \
                         /etc/volcengine-rtc-exporter/targets/*.yaml"
                    ),
                ),
            }
        }
        patterns
    }

    fn api(&mut self, f: &mut Fields) -> ApiSettings {
        let d = ApiSettings::default();
        let endpoint = match self.text(f, "api.endpoint") {
            Some((text, at)) => self.endpoint(&text, at).unwrap_or(d.endpoint),
            None => d.endpoint,
        };
        let region = match self.text(f, "api.region") {
            Some((s, at)) => {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    let message = format!(
                        "`api.region` is {}; a region looks like `cn-north-1` (Volcengine) or `ap-singapore-1` (BytePlus)",
                        show(&s)
                    );
                    self.problem(Some(at), message);
                }
                s.to_string()
            }
            None => d.region,
        };
        let timeout = self.duration(f, "api.timeout", d.timeout);
        let max_in_flight = match self.text(f, "api.max_in_flight") {
            None => d.max_in_flight,
            Some((s, at)) => match s.parse::<usize>() {
                Ok(n @ 1..=MAX_IN_FLIGHT) => n,
                parsed => {
                    let why = match parsed {
                        Ok(0) => "is 0, so no request could ever be sent; set it to at least 1 (default 16)".into(),
                        Ok(n) => format!("is {n}; at most {MAX_IN_FLIGHT} is accepted (the budget, not concurrency, bounds the rate; default 16)"),
                        Err(_) => format!("is {}; it must be a whole number of at least 1 (default 16)", show(&s)),
                    };
                    self.problem(Some(at), format!("`api.max_in_flight` {why}"));
                    d.max_in_flight
                }
            },
        };
        let record_version = self
            .version(f, "api.record_version", &RECORD_VERSIONS, "GetRecordTask")
            .unwrap_or(d.record_version);
        let webcast_version = self
            .version(
                f,
                "api.webcast_version",
                &WEBCAST_VERSIONS,
                "GetWebCastTask",
            )
            .unwrap_or(d.webcast_version);
        ApiSettings {
            endpoint,
            region,
            service: d.service,
            timeout,
            max_in_flight,
            record_version,
            webcast_version,
            retry: d.retry,
        }
    }

    fn endpoint(&mut self, text: &str, at: Pos) -> Option<Endpoint> {
        let why = match reqwest::Url::parse(text) {
            Err(e) if text.contains("://") => Err(format!("is not a valid URL ({e})")),
            Err(_) => Err("has no scheme".to_owned()),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => Err(format!(
                "has scheme `{}`: only http and https work",
                url.scheme()
            )),
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                Err("contains a user name or password; credentials go under `credentials:`".into())
            }
            Ok(url) if url.path() != "/" || url.query().is_some() || url.fragment().is_some() => {
                Err("has a path, query or fragment; the API is served at the root".into())
            }
            Ok(url) => match url.host_str().filter(|h| !h.is_empty()) {
                None => Err("has no host".into()),
                Some(host) => Ok(Endpoint {
                    scheme: url.scheme().to_owned(),
                    host: host.to_owned(),
                    port: url.port(),
                }),
            },
        };
        why.map_err(|why| {
            let message = format!(
                "`api.endpoint` {} {why}; write it as scheme://host[:port], e.g. `https://rtc.volcengineapi.com` or `https://open.byteplusapi.com`",
                show(text)
            );
            self.problem(Some(at), message);
        })
        .ok()
    }

    fn version(
        &mut self,
        f: &mut Fields,
        path: &str,
        known: &[&str],
        action: &str,
    ) -> Option<String> {
        let (text, at) = self.text(f, path)?;
        let looks_like_date = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !looks_like_date {
            let message = format!(
                "`{path}` is {}; a Version is a date like `{}` (quote it)",
                show(&text),
                known[0]
            );
            self.problem(Some(at), message);
            return None;
        }
        if !known.contains(&&*text) {
            let message = format!(
                "`{path}` is `{text}`, which this exporter has not been tested with; {action} is known to answer {}",
                known.join(" and ")
            );
            self.warn(at, message);
        }
        Some(text.to_string())
    }

    /// The duration at `section.key`: positive and at most a year.
    fn duration(&mut self, f: &mut Fields, path: &str, default: Duration) -> Duration {
        let Some((text, at)) = self.text(f, path) else {
            return default;
        };
        let default_text = duration::format(default);
        let why = match duration::parse(&text) {
            Ok(d) if d.is_zero() => format!(
                "`{path}` is {}; it must be longer than zero (default {default_text})",
                show(&text)
            ),
            Ok(d) if d > MAX_DURATION => format!(
                "`{path}` is {}, longer than the 1y this exporter accepts (default {default_text})",
                show(&text)
            ),
            Ok(d) => return d,
            Err(e) if text.starts_with('-') => format!("`{path}`: {e}; it must be positive"),
            Err(e) => format!("`{path}`: {e}"),
        };
        self.problem(Some(at), why);
        default
    }

    fn budget(&mut self, action: Action, field: Option<Field>) -> f64 {
        let path = format!("budget.{action}");
        let Some((text, at)) = self.one(field, &path).text() else {
            return default_budget();
        };
        let fix = format!(
            "it is requests per second for {action}, above 0 (default {}; the vendor allows {VENDOR_QUOTA})",
            default_budget()
        );
        let why = match text.parse::<f64>() {
            Ok(v) if v.is_finite() && v > MAX_BUDGET => {
                format!("`{path}` is {v}/s; at most {MAX_BUDGET}/s is accepted")
            }
            Ok(v) if v.is_finite() && v > 0.0 => {
                if v > VENDOR_QUOTA {
                    let message = format!(
                        "`{path}` is {v}/s, above the vendor's default quota of {VENDOR_QUOTA}/s; fine if your account's quota was raised, else expect throttling"
                    );
                    self.warn(at, message);
                }
                return v;
            }
            Ok(_) => format!("`{path}` is {}; {fix}", show(&text)),
            Err(_) => format!("`{path}` is {}, not a number; {fix}", show(&text)),
        };
        self.problem(Some(at), why);
        default_budget()
    }

    fn schedule(&mut self, f: &mut Fields) -> ScheduleSettings {
        let d = ScheduleSettings::default();
        ScheduleSettings {
            active_interval: self.duration(f, "schedule.active_interval", d.active_interval),
            settle_interval: self.duration(f, "schedule.settle_interval", d.settle_interval),
            settle_timeout: self.duration(f, "schedule.settle_timeout", d.settle_timeout),
            retention: self.duration(f, "schedule.retention", d.retention),
        }
    }

    fn credentials(
        &mut self,
        f: &mut Fields,
        base_dir: Option<&Path>,
        env: &dyn Environment,
    ) -> Option<(Credentials, CredentialSource, CredentialConfig)> {
        // Each key given: its text, where its key and its value are.
        let mut given: Vec<(&str, Rc<str>, Pos, Pos)> = Vec::new();
        for key in CREDENTIAL_KEYS {
            let Some(field) = f.take(key) else { continue };
            let key_pos = field.key;
            if let Some((text, at)) = self.one(Some(field), &format!("credentials.{key}")).text() {
                given.push((key, text, key_pos, at));
            }
        }
        let text = |key: &str| given.iter().find(|g| g.0 == key).map(|g| &*g.1);
        let path = |key: &str| {
            text(key).map(|s| match base_dir {
                Some(base) if Path::new(s).is_relative() => base.join(s),
                _ => PathBuf::from(s),
            })
        };
        let cfg = CredentialConfig {
            access_key_id_file: path("access_key_id_file"),
            secret_access_key_file: path("secret_access_key_file"),
            session_token_file: path("session_token_file"),
            access_key_id: text("access_key_id").map(str::to_owned),
            secret_access_key: text("secret_access_key").map(Secret::new),
            session_token: text("session_token").map(Secret::new),
        };
        let place = |key: &str| given.iter().find(|g| g.0 == key).map(|g| (g.2, g.3));
        match credentials::resolve(&cfg, env) {
            Ok(found) => {
                let mut ignored = Vec::new();
                if found.1 == CredentialSource::Files {
                    for key in ["access_key_id", "secret_access_key"] {
                        ignored.push((key, "the `*_file` keys come first in the chain"));
                    }
                }
                if cfg.session_token_file.is_some() {
                    ignored.push(("session_token", "`session_token_file` comes first"));
                }
                for (key, why) in ignored {
                    if let Some((_, at)) = place(key) {
                        let message =
                            format!("`credentials.{key}` is ignored: {why}; remove one of the two");
                        self.warn(at, message);
                    }
                }
                Some((found.0, found.1, cfg))
            }
            Err(errors) => {
                for e in errors {
                    let pos = e.config_key().and_then(place).map(|(key, _)| key);
                    self.problem(pos, e.to_string());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::is_valid_id;

    #[test]
    fn id_rule() {
        assert!(is_valid_id("661e8f0d1ab2c3d4e5f60718"));
        assert!(is_valid_id("user@example.com"));
        assert!(is_valid_id("rec.task-01_x"));
        assert!(is_valid_id(&"a".repeat(128)));
        assert!(!is_valid_id(&"a".repeat(129)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("room 1"));
        assert!(!is_valid_id("room/1"));
        assert!(!is_valid_id("räum"));
    }

    #[test]
    fn equal_label_sets_are_held_once() {
        let text = "- {kind: record, app_id: a, room_id: r, task_id: t1, labels: {team: x}}\n\
                    - {kind: record, app_id: a, room_id: r, task_id: t2, labels: {team: x}}\n\
                    - {kind: record, app_id: a, room_id: r, task_id: t3, labels: {team: y}}\n\
                    - {kind: record, app_id: a, room_id: r, task_id: t4}\n";
        let t = targets(text, "t.yaml").unwrap();
        assert_eq!(t.len(), 4);
        assert!(std::sync::Arc::ptr_eq(&t[0].labels, &t[1].labels));
        assert!(!std::sync::Arc::ptr_eq(&t[0].labels, &t[2].labels));
        assert_eq!(*t[2].labels, [("team".to_string(), "y".to_string())]);
        assert!(t[3].labels.is_empty());
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show("a\nb"), "`a\\nb`");
        assert_eq!(show(&"x".repeat(100)).len(), 82);
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
    }

    fn env() -> crate::sim::MapEnv {
        crate::sim::MapEnv::new()
            .with_var("VOLC_ACCESSKEY", "AKLT0000000000001234")
            .with_var("VOLC_SECRETKEY", "c2VjcmV0")
    }

    const TARGET: &str = "targets:\n  - {kind: webcast, app_id: a, room_id: r}\n";

    #[test]
    fn settle_timeout_defaults_to_an_hour_and_must_be_positive() {
        let s = settings(TARGET, "c.yaml", None, &env()).unwrap();
        assert_eq!(s.schedule.settle_timeout, Duration::from_secs(3600));
        let text = format!("schedule:\n  settle_timeout: 90m\n{TARGET}");
        let s = settings(&text, "c.yaml", None, &env()).unwrap();
        assert_eq!(s.schedule.settle_timeout, Duration::from_secs(5400));
        assert!(
            s.summary().contains("settle timeout 1h30m"),
            "{}",
            s.summary()
        );
        for (value, want) in [
            ("0s", "c.yaml:2:19: `schedule.settle_timeout` is `0s`; it must be longer than zero (default 1h)"),
            ("-1h", "c.yaml:2:19: `schedule.settle_timeout`: `-1h` is not a duration; write it like 500ms, 15s, 5m, 1h30m or 1d (units y, w, d, h, m, s, ms, largest first, each once); it must be positive"),
        ] {
            let text = format!("schedule:\n  settle_timeout: {value}\n{TARGET}");
            let err = settings(&text, "c.yaml", None, &env()).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
        let text = format!("schedule:\n  settle_timout: 2h\n{TARGET}");
        let err = settings(&text, "c.yaml", None, &env()).unwrap_err();
        assert!(
            err.to_string().ends_with("did you mean `settle_timeout`?"),
            "{err}"
        );
    }

    #[test]
    fn targets_list_alone() {
        let ok = targets(
            "- {kind: record, app_id: a, room_id: r, task_id: t}\n",
            "t.yaml",
        );
        assert_eq!(ok.map(|t| t.len()), Ok(1));
        assert_eq!(targets("~\n", "t.yaml").map(|t| t.len()), Ok(0));
        let err = targets("- {kind: record, app_id: a, room_id: r}\n- 5\n", "t.yaml").unwrap_err();
        let lines: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("t.yaml:1:3: `targets[0]` is a record target without `task_id`")
        );
        assert!(lines[1].starts_with("t.yaml:2:3: `targets[1]` must be a mapping with keys"));
    }

    #[test]
    fn missing_pieces_are_not_reported_twice() {
        // A wrongly shaped key is reported for its shape, not again as missing.
        let text = "targets:\n  - {kind: [record], app_id: {a: 1}, room_id: r, task_id: t}\n";
        let err = settings(text, "c.yaml", None, &env()).unwrap_err();
        let lines: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            lines,
            [
                "c.yaml:2:12: `targets[0].kind` must be a single value, found a list",
                "c.yaml:2:30: `targets[0].app_id` must be a single value, found a mapping",
            ]
        );
    }
}
