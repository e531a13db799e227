//! Step two: the raw structs converted into checked [`Settings`]. Every value is checked,
//! every problem collected with the position the [`PosIndex`] gives for its path (looked up
//! only when there is a problem), and the messages say what to write instead. Warnings
//! (allowed but suspicious) go to [`Settings::warnings`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::de;
use super::raw::{RawConfig, RawCredentials, RawTarget, Scalar};
use super::schema::{self, PosIndex};
use super::{
    default_budget, duration, yaml, ApiSettings, ConfigError, Endpoint, Pos, Problem,
    ScheduleSettings, Settings, RECORD_VERSIONS, RESERVED_LABELS, VENDOR_QUOTA, WEBCAST_VERSIONS,
};
use crate::credentials::{self, CredentialConfig, Environment, Secret};
use crate::model::{Action, Kind, Target, TargetKey};

/// The whole pipeline: YAML, schema walk, serde, conversion.
pub(super) fn parse_in(
    text: &str,
    origin: &str,
    base_dir: Option<&Path>,
    env: &dyn Environment,
) -> Result<Settings, ConfigError> {
    let mut root = match yaml::load(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Err(ConfigError::single(
            origin,
            None,
            "the config is empty; it needs at least a `targets:` list (see examples/config.yaml)"
                .into(),
        )),
        Err(e) => return Err(ConfigError::single(origin, Some(e.pos), e.message)),
    };
    let walked = schema::walk(&mut root);
    let mut findings: Vec<Finding> = walked
        .findings
        .into_iter()
        .map(|(pos, message)| (Where::At(pos), Text::Plain(message)))
        .collect();
    // The walk leaves only known keys with the right shapes, so this cannot fail in practice;
    // the tree is consumed, its text moving into the raw structs.
    let raw: RawConfig = if walked.root_ok {
        de::from_node(root).unwrap_or_else(|_| {
            findings.push((
                Where::At(None),
                Text::Plain("the config could not be read into its settings; check the keys' shapes against examples/config.yaml".into()),
            ));
            RawConfig::default()
        })
    } else {
        RawConfig::default()
    };
    let index = PosIndex::new(text, walked.refused);
    let mut conv = Converter {
        index: &index,
        findings,
        warnings: Vec::new(),
    };
    let settings = conv.convert(raw, base_dir, env);
    let Converter {
        findings, warnings, ..
    } = conv;

    if !findings.is_empty() {
        // The settings are not needed any more, so their memory can go to the places.
        drop(settings);
        let mut findings = resolve(&index, findings);
        // File order; findings without a place last. The sort is stable.
        findings.sort_by_key(|(pos, _)| (pos.is_none(), *pos));
        return Err(ConfigError {
            problems: findings
                .into_iter()
                .map(|(pos, message)| Problem {
                    file: origin.to_owned(),
                    pos,
                    message,
                })
                .collect(),
        });
    }
    let mut warnings = resolve(&index, warnings);
    warnings.sort_by_key(|(pos, _)| (pos.is_none(), *pos));
    let warnings = warnings
        .into_iter()
        .map(|(pos, message)| {
            Problem {
                file: origin.to_owned(),
                pos,
                message,
            }
            .to_string()
        })
        .collect();
    match settings {
        Some(mut s) => {
            s.warnings = warnings;
            Ok(s)
        }
        None => Err(ConfigError::single(
            origin,
            None,
            "no usable settings could be built".into(),
        )),
    }
}

/// The longest duration accepted anywhere in the config, so that no later arithmetic on
/// instants or nanoseconds can overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most concurrent requests accepted.
const MAX_IN_FLIGHT: usize = 10_000;
/// The highest budget accepted, requests per second per action.
const MAX_BUDGET: f64 = 10_000.0;

/// Where a finding is shown: known already, or the place of a path, looked up once all
/// findings are in (see [`resolve`]).
enum Where {
    At(Option<Pos>),
    /// Where the value at this path starts.
    Value(String),
    /// Where the key of this path starts.
    Key(String),
}

/// What a finding says; `LineOf` names the line where another path's value starts, between
/// its two parts (as in `... as `targets[0]` at line 7; remove one of them`).
enum Text {
    Plain(String),
    LineOf {
        before: String,
        path: String,
        after: String,
    },
}

type Finding = (Where, Text);

/// The findings with their places and final text: the places of all the paths they name are
/// looked up together, in one more load of the text, and only if some path is named.
fn resolve(index: &PosIndex<'_>, found: Vec<Finding>) -> Vec<(Option<Pos>, String)> {
    let places = {
        let mut wanted = Vec::new();
        for (at, text) in &found {
            if let Where::Value(path) | Where::Key(path) = at {
                wanted.push(path.as_str());
            }
            if let Text::LineOf { path, .. } = text {
                wanted.push(path.as_str());
            }
        }
        (!wanted.is_empty()).then(|| index.places(wanted))
    };
    let value = |path: &str| places.as_ref().and_then(|p| p.value(path));
    found
        .into_iter()
        .map(|(at, text)| {
            let pos = match at {
                Where::At(pos) => pos,
                Where::Value(path) => value(&path),
                Where::Key(path) => places.as_ref().and_then(|p| p.key(&path)),
            };
            let message = match text {
                Text::Plain(message) => message,
                Text::LineOf {
                    before,
                    path,
                    after,
                } => match value(&path) {
                    Some(p) => format!("{before} at line {}{after}", p.line),
                    None => format!("{before}{after}"),
                },
            };
            (pos, message)
        })
        .collect()
}

struct Converter<'a> {
    index: &'a PosIndex<'a>,
    findings: Vec<Finding>,
    warnings: Vec<Finding>,
}

/// A value as shown in a message: escaped, and cut when long.
fn show(value: &str) -> String {
    let escaped: String = value.escape_debug().collect();
    if escaped.chars().count() > 80 {
        let cut: String = escaped.chars().take(77).collect();
        format!("`{cut}...`")
    } else {
        format!("`{escaped}`")
    }
}

pub use crate::model::is_valid_id;

/// `[a-zA-Z_][a-zA-Z0-9_]*`, the Prometheus label name rule.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Converter<'_> {
    /// A problem with the value at `path`.
    fn problem(&mut self, path: &str, message: String) {
        self.findings
            .push((Where::Value(path.to_owned()), Text::Plain(message)));
    }

    /// A problem with no place in the file.
    fn problem_at_large(&mut self, message: String) {
        self.findings.push((Where::At(None), Text::Plain(message)));
    }

    fn warn(&mut self, path: &str, message: String) {
        self.warnings
            .push((Where::Value(path.to_owned()), Text::Plain(message)));
    }

    fn convert(
        &mut self,
        raw: RawConfig,
        base_dir: Option<&Path>,
        env: &dyn Environment,
    ) -> Option<Settings> {
        let api = self.api(&raw);
        let budget = [
            self.budget(Action::GetRecordTask, raw.budget.get_record_task.as_ref()),
            self.budget(Action::GetWebCastTask, raw.budget.get_webcast_task.as_ref()),
        ];
        let schedule = self.schedule(&raw);
        let targets = self.targets(raw.targets);
        let creds = self.credentials(&raw.credentials, base_dir, env);
        let (credentials, credential_source) = creds?;
        Some(Settings {
            api,
            credentials,
            credential_source,
            budget,
            schedule,
            targets,
            warnings: Vec::new(),
        })
    }

    fn api(&mut self, raw: &RawConfig) -> ApiSettings {
        let d = ApiSettings::default();
        let r = &raw.api;
        let endpoint = match &r.endpoint {
            Some(s) => self.endpoint(s).unwrap_or(d.endpoint),
            None => d.endpoint,
        };
        let region = match &r.region {
            Some(s) => {
                let ok = !s.0.is_empty()
                    && s.0.len() <= 64
                    && s.0
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    self.problem(
                        "api.region",
                        format!(
                            "`api.region` is {}; a region looks like `cn-north-1` (Volcengine) or `ap-singapore-1` (BytePlus)",
                            show(&s.0)
                        ),
                    );
                }
                s.0.clone()
            }
            None => d.region,
        };
        let timeout = self.duration("api.timeout", r.timeout.as_ref(), d.timeout);
        let max_in_flight = match &r.max_in_flight {
            None => d.max_in_flight,
            Some(s) => match s.0.parse::<usize>() {
                Ok(0) => {
                    self.problem(
                        "api.max_in_flight",
                        "`api.max_in_flight` is 0, so no request could ever be sent; set it to at least 1 (default 16)".into(),
                    );
                    d.max_in_flight
                }
                Ok(n) if n > MAX_IN_FLIGHT => {
                    self.problem(
                        "api.max_in_flight",
                        format!(
                            "`api.max_in_flight` is {n}; at most {MAX_IN_FLIGHT} is accepted (the budget, not concurrency, bounds the rate; default 16)"
                        ),
                    );
                    d.max_in_flight
                }
                Ok(n) => n,
                Err(_) => {
                    self.problem(
                        "api.max_in_flight",
                        format!(
                            "`api.max_in_flight` is {}; it must be a whole number of at least 1 (default 16)",
                            show(&s.0)
                        ),
                    );
                    d.max_in_flight
                }
            },
        };
        let record_version = self.version(
            "api.record_version",
            r.record_version.as_ref(),
            &RECORD_VERSIONS,
            "GetRecordTask",
        );
        let webcast_version = self.version(
            "api.webcast_version",
            r.webcast_version.as_ref(),
            &WEBCAST_VERSIONS,
            "GetWebCastTask",
        );
        ApiSettings {
            endpoint,
            region,
            service: d.service,
            timeout,
            max_in_flight,
            record_version: record_version.unwrap_or(d.record_version),
            webcast_version: webcast_version.unwrap_or(d.webcast_version),
        }
    }

    fn endpoint(&mut self, s: &Scalar) -> Option<Endpoint> {
        let text = s.as_str();
        let fix = "write it as scheme://host[:port], e.g. `https://rtc.volcengineapi.com` or `https://open.byteplusapi.com`";
        let bad = |why: &str| format!("`api.endpoint` {} {why}; {fix}", show(text));
        let url = match reqwest::Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                let why = if text.contains("://") {
                    format!("is not a valid URL ({e})")
                } else {
                    "has no scheme".to_owned()
                };
                self.problem("api.endpoint", bad(&why));
                return None;
            }
        };
        let why = if !matches!(url.scheme(), "http" | "https") {
            Some(format!(
                "has scheme `{}`: only http and https work",
                url.scheme()
            ))
        } else if !url.username().is_empty() || url.password().is_some() {
            Some("contains a user name or password; credentials go under `credentials:`".into())
        } else if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            Some("has a path, query or fragment; the API is served at the root".into())
        } else if url.host_str().is_none_or(str::is_empty) {
            Some("has no host".into())
        } else {
            None
        };
        if let Some(why) = why {
            self.problem("api.endpoint", bad(&why));
            return None;
        }
        Some(Endpoint {
            scheme: url.scheme().to_owned(),
            host: url.host_str().unwrap_or_default().to_owned(),
            port: url.port(),
        })
    }

    fn version(
        &mut self,
        path: &str,
        raw: Option<&Scalar>,
        known: &[&str],
        action: &str,
    ) -> Option<String> {
        let s = raw?;
        let text = s.as_str();
        let looks_like_date = text.len() == 10
            && text.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        if !looks_like_date {
            self.problem(
                path,
                format!(
                    "`{path}` is {}; a Version is a date like `{}` (quote it)",
                    show(text),
                    known[0]
                ),
            );
            return None;
        }
        if !known.contains(&text) {
            self.warn(
                path,
                format!(
                    "`{path}` is `{text}`, which this exporter has not been tested with; {action} is known to answer {}",
                    known.join(" and ")
                ),
            );
        }
        Some(text.to_owned())
    }

    fn duration(&mut self, path: &str, raw: Option<&Scalar>, default: Duration) -> Duration {
        let Some(s) = raw else { return default };
        match duration::parse(s.as_str()) {
            Ok(d) if d.is_zero() => {
                self.problem(
                    path,
                    format!(
                        "`{path}` is {}; it must be longer than zero (default {})",
                        show(s.as_str()),
                        duration::format(default)
                    ),
                );
                default
            }
            Ok(d) if d > MAX_DURATION => {
                self.problem(
                    path,
                    format!(
                        "`{path}` is {}, longer than the 1y this exporter accepts (default {})",
                        show(s.as_str()),
                        duration::format(default)
                    ),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                let hint = if s.as_str().starts_with('-') {
                    "; it must be positive".to_owned()
                } else {
                    String::new()
                };
                self.problem(path, format!("`{path}`: {e}{hint}"));
                default
            }
        }
    }

    fn budget(&mut self, action: Action, raw: Option<&Scalar>) -> f64 {
        let Some(s) = raw else {
            return default_budget();
        };
        let path = format!("budget.{action}");
        let fix = format!(
            "it is requests per second for {action}, above 0 (default {}; the vendor allows {VENDOR_QUOTA})",
            default_budget()
        );
        match s.as_str().parse::<f64>() {
            Ok(v) if v.is_finite() && v > MAX_BUDGET => {
                self.problem(
                    &path,
                    format!("`{path}` is {v}/s; at most {MAX_BUDGET}/s is accepted"),
                );
                default_budget()
            }
            Ok(v) if v.is_finite() && v > 0.0 => {
                if v > VENDOR_QUOTA {
                    self.warn(
                        &path,
                        format!(
                            "`{path}` is {v}/s, above the vendor's default quota of {VENDOR_QUOTA}/s; fine if your account's quota was raised, else expect throttling"
                        ),
                    );
                }
                v
            }
            Ok(_) => {
                self.problem(&path, format!("`{path}` is {}; {fix}", show(s.as_str())));
                default_budget()
            }
            Err(_) => {
                self.problem(
                    &path,
                    format!("`{path}` is {}, not a number; {fix}", show(s.as_str())),
                );
                default_budget()
            }
        }
    }

    fn schedule(&mut self, raw: &RawConfig) -> ScheduleSettings {
        let d = ScheduleSettings::default();
        let r = &raw.schedule;
        ScheduleSettings {
            active_interval: self.duration(
                "schedule.active_interval",
                r.active_interval.as_ref(),
                d.active_interval,
            ),
            settle_interval: self.duration(
                "schedule.settle_interval",
                r.settle_interval.as_ref(),
                d.settle_interval,
            ),
            retention: self.duration("schedule.retention", r.retention.as_ref(), d.retention),
        }
    }

    fn targets(&mut self, raw: Option<Vec<RawTarget>>) -> Vec<Target> {
        let Some(raw) = raw else {
            if self.index.refused("targets") || self.index.refused("") {
                return Vec::new();
            }
            self.problem_at_large(
                "there is no `targets:` list; add one with the tasks to follow (see examples/config.yaml)".into(),
            );
            return Vec::new();
        };
        if raw.is_empty() {
            self.warn(
                "targets",
                "`targets` is empty, so nothing will be polled; add targets to follow tasks".into(),
            );
        }
        // The targets that are fine on their own, with their place in the list.
        let mut out = Vec::with_capacity(raw.len());
        let mut at = Vec::with_capacity(raw.len());
        for (i, t) in raw.into_iter().enumerate() {
            let path = format!("targets[{i}]");
            if self.index.refused(&path) {
                continue;
            }
            if let Some(target) = self.target(&path, t) {
                out.push(target);
                at.push(i);
            }
        }
        // Then duplicates, each reported against the first target with its key.
        let mut first_seen: HashMap<&TargetKey, usize> = HashMap::with_capacity(out.len());
        let mut duplicates = Vec::new();
        for (target, &i) in out.iter().zip(&at) {
            match first_seen.get(&target.key) {
                Some(&first) => duplicates.push((i, first)),
                None => {
                    first_seen.insert(&target.key, i);
                }
            }
        }
        drop(first_seen);
        for &(i, first) in &duplicates {
            let path = format!("targets[{i}]");
            let first_path = format!("targets[{first}]");
            let text = Text::LineOf {
                before: format!(
                    "duplicate target: `{path}` has the same kind, app_id, room_id and task_id as `{first_path}`"
                ),
                path: first_path,
                after: "; remove one of them".into(),
            };
            self.findings.push((Where::Value(path), text));
        }
        if !duplicates.is_empty() {
            let gone: HashSet<usize> = duplicates.iter().map(|&(i, _)| i).collect();
            let mut list = at.iter();
            out.retain(|_| list.next().is_some_and(|i| !gone.contains(i)));
        }
        out
    }

    fn id(&mut self, path: &str, name: &str, raw: Option<Scalar>) -> Option<String> {
        let s = raw?;
        if !is_valid_id(&s.0) {
            let field = format!("{path}.{name}");
            let why = if s.0.is_empty() {
                "is empty".to_owned()
            } else if s.0.len() > 128 {
                format!("is {} characters long", s.0.chars().count())
            } else {
                format!("is {}", show(&s.0))
            };
            self.problem(
                &field,
                format!(
                    "`{field}` {why}; IDs are 1 to 128 characters from a-z A-Z 0-9 _ @ . - (use the exact ID given to StartRecord/StartWebcast)"
                ),
            );
            return None;
        }
        Some(s.0)
    }

    fn target(&mut self, path: &str, t: RawTarget) -> Option<Target> {
        let kind = match &t.kind {
            None if self.index.refused(&format!("{path}.kind")) => None,
            None => {
                self.problem(
                    path,
                    format!("`{path}` has no `kind`; add `kind: record` or `kind: webcast`"),
                );
                None
            }
            Some(s) => match s.as_str() {
                "record" => Some(Kind::Record),
                "webcast" => Some(Kind::Webcast),
                other => {
                    let kinds = ["record", "webcast"];
                    let hint = schema::closest(other, &kinds)
                        .map(|k| format!("did you mean `{k}`? "))
                        .unwrap_or_default();
                    self.problem(
                        &format!("{path}.kind"),
                        format!(
                            "`{path}.kind` is {}; {hint}use `record` (GetRecordTask) or `webcast` (GetWebCastTask)",
                            show(other)
                        ),
                    );
                    None
                }
            },
        };
        let mut missing = |key: &str, what: &str| {
            if !self.index.refused(&format!("{path}.{key}")) {
                self.problem(
                    path,
                    format!("`{path}` has no `{key}`; add `{key}: ...` ({what})"),
                );
            }
        };
        if t.app_id.is_none() {
            missing("app_id", "the RTC AppId");
        }
        if t.room_id.is_none() {
            missing("room_id", "the RoomId the task records");
        }
        let app_id = self.id(path, "app_id", t.app_id);
        let room_id = self.id(path, "room_id", t.room_id);
        let had_task = t.task_id.is_some();
        let task_id = self.id(path, "task_id", t.task_id);
        if kind == Some(Kind::Record) && !had_task {
            self.problem(
                path,
                format!(
                    "`{path}` is a record target without `task_id`; GetRecordTask needs one: add `task_id: ...` (only webcast targets may leave it out, meaning the room's newest task)"
                ),
            );
        }
        let mut labels = Vec::new();
        let mut labels_ok = true;
        for (name, value) in t.labels {
            let field = format!("{path}.labels.{name}");
            let pos_path = field.clone();
            let why = if !is_label_name(&name) {
                Some(format!(
                    "label name {} is not a valid Prometheus label name; use letters, digits and `_`, not starting with a digit",
                    show(&name)
                ))
            } else if name.starts_with("__") {
                Some(format!(
                    "label name `{name}` starts with `__`, which Prometheus reserves; rename it"
                ))
            } else if RESERVED_LABELS.contains(&name.as_str()) {
                Some(format!(
                    "label name `{name}` collides with a label the exporter sets itself ({}); rename it, e.g. `{name}_name`",
                    RESERVED_LABELS.join(", ")
                ))
            } else {
                None
            };
            if let Some(why) = why {
                self.findings.push((
                    Where::Key(pos_path),
                    Text::Plain(format!("`{field}`: {why}")),
                ));
                labels_ok = false;
                continue;
            }
            labels.push((name, value.0));
        }
        labels.sort();
        let key = TargetKey {
            kind: kind?,
            app_id: app_id?,
            room_id: room_id?,
            task_id,
        };
        if (key.kind == Kind::Record && key.task_id.is_none())
            || (had_task && key.task_id.is_none())
        {
            return None;
        }
        labels_ok.then_some(Target { key, labels })
    }

    fn credentials(
        &mut self,
        raw: &RawCredentials,
        base_dir: Option<&Path>,
        env: &dyn Environment,
    ) -> Option<(crate::credentials::Credentials, super::CredentialSource)> {
        let path = |s: &Option<Scalar>| {
            s.as_ref().map(|s| {
                let p = PathBuf::from(s.as_str());
                match base_dir {
                    Some(base) if p.is_relative() => base.join(p),
                    _ => p,
                }
            })
        };
        let cfg = CredentialConfig {
            access_key_id_file: path(&raw.access_key_id_file),
            secret_access_key_file: path(&raw.secret_access_key_file),
            session_token_file: path(&raw.session_token_file),
            access_key_id: raw.access_key_id.as_ref().map(|s| s.0.clone()),
            secret_access_key: raw.secret_access_key.as_ref().map(|s| Secret::new(&*s.0)),
            session_token: raw.session_token.as_ref().map(|s| Secret::new(&*s.0)),
        };
        match credentials::resolve(&cfg, env) {
            Ok(found) => {
                let shadowed: &[(&str, bool)] = match found.1 {
                    super::CredentialSource::Files => &[
                        ("access_key_id", raw.access_key_id.is_some()),
                        ("secret_access_key", raw.secret_access_key.is_some()),
                    ],
                    _ => &[],
                };
                for (key, set) in shadowed {
                    if *set {
                        self.warn(
                            &format!("credentials.{key}"),
                            format!("`credentials.{key}` is ignored: the `*_file` keys come first in the chain; remove one of the two"),
                        );
                    }
                }
                if raw.session_token_file.is_some() && raw.session_token.is_some() {
                    self.warn(
                        "credentials.session_token",
                        "`credentials.session_token` is ignored: `session_token_file` comes first; remove one of the two".into(),
                    );
                }
                Some(found)
            }
            Err(errors) => {
                for e in errors {
                    let at = match e.config_key() {
                        Some(k) => Where::Key(format!("credentials.{k}")),
                        None => Where::At(None),
                    };
                    self.findings.push((at, Text::Plain(e.to_string())));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn label_name_rule() {
        assert!(is_label_name("team"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("1x"));
        assert!(!is_label_name("a-b"));
        assert!(!is_label_name(""));
    }

    #[test]
    fn show_escapes_and_cuts() {
        assert_eq!(show("a\nb"), "`a\\nb`");
        assert_eq!(show(&"x".repeat(100)).len(), 82);
    }
}
