//! The `callbacks:` section of the config as written ([`CallbacksConfig`], plain serde), and its
//! one-step conversion into checked [`CallbackSettings`]: the key found (file, inline, or the
//! [`ENV_CALLBACK_KEY`] variable, the first configured winning, as for credentials), the path,
//! the allowed apps and the labels for discovered targets.
//!
//! ```yaml
//! callbacks:
//!   secret_key_file: /run/secrets/rtc-callback-key
//!   path: /callbacks/volcengine-rtc     # the default
//!   app_ids: [5f3c2a1b9e8d7c6b5a4f3e2d] # optional: only these apps
//!   labels: {source_env: prod}          # added to discovered targets
//!   active_interval: 1m                 # running recordings announced by callbacks
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::credentials::{Environment, Secret};
use crate::model::{is_label_name, is_valid_id, Problem, RESERVED_LABELS};

/// The default `callbacks.path`.
pub const DEFAULT_PATH: &str = "/callbacks/volcengine-rtc";
/// The default `callbacks.active_interval`.
pub const DEFAULT_ACTIVE_INTERVAL: Duration = Duration::from_secs(60);
/// The environment variable holding the callback key when the config names none.
pub const ENV_CALLBACK_KEY: &str = "VOLC_RTC_CALLBACK_SECRETKEY";
/// Paths the exporter serves itself, which the callback path may not take.
const TAKEN_PATHS: [&str; 6] = [
    "/",
    "/metrics",
    "/-/healthy",
    "/-/ready",
    "/targets",
    "/api",
];
/// `callbacks:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// A file holding the callback key (from the RTC console).
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// The key inline (prefer the file).
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Where deliveries are POSTed.
    #[serde(default = "default_path")]
    pub path: String,
    /// When set, only deliveries for these apps are accepted.
    #[serde(default)]
    pub app_ids: Option<Vec<String>>,
    /// Labels added to discovered targets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How often a running recording whose start a callback announced is polled (its end is
    /// announced too, and polled at once); a duration such as `1m`.
    #[serde(default)]
    pub active_interval: Option<String>,
}

fn default_path() -> String {
    DEFAULT_PATH.to_owned()
}

/// Where the key came from (never the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Inline,
    Environment,
}

/// Checked callback settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackSettings {
    /// The callback key; its `Debug` is redacted.
    pub key: Secret,
    pub key_source: KeySource,
    pub path: String,
    /// `None`: every app.
    pub app_ids: Option<BTreeSet<String>>,
    /// Sorted by name, as [`crate::model::Target::labels`].
    pub labels: Vec<(String, String)>,
    /// `active_interval`: the poll interval of running recordings announced by callbacks.
    pub active_interval: Duration,
}

/// A problem with `callbacks:` about `key` (`callbacks.path`, `callbacks.app_ids[1]`, ...):
/// the config places it at the section. Never contains the callback key.
fn problem(key: &str, message: impl std::fmt::Display) -> Problem {
    let (file, pos) = (String::new(), None);
    let message = format!("`{key}`: {message}");
    Problem { file, pos, message }
}

impl CallbacksConfig {
    /// Checks everything at once; relative `secret_key_file` paths are resolved against `base`.
    pub fn check(
        &self,
        base: Option<&Path>,
        env: &dyn Environment,
    ) -> Result<CallbackSettings, Vec<Problem>> {
        let mut problems = Vec::new();
        let key = self.key(base, env).map_err(|p| problems.push(p)).ok();
        problems.extend(self.path_problem());
        problems.extend(self.app_id_problems());
        problems.extend(self.label_problems());
        let active_interval = match self.active_interval.as_deref().map(crate::duration::parse) {
            None => DEFAULT_ACTIVE_INTERVAL,
            Some(Ok(d)) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => d,
            Some(Ok(_)) => {
                let why = "must be between 1s and 1h (the default 1m)";
                problems.push(problem("callbacks.active_interval", why));
                DEFAULT_ACTIVE_INTERVAL
            }
            Some(Err(e)) => {
                problems.push(problem("callbacks.active_interval", e));
                DEFAULT_ACTIVE_INTERVAL
            }
        };
        match key {
            Some((key, key_source)) if problems.is_empty() => Ok(CallbackSettings {
                active_interval,
                key,
                key_source,
                path: self.path.clone(),
                app_ids: self
                    .app_ids
                    .as_ref()
                    .map(|ids| ids.iter().cloned().collect()),
                labels: self.labels.clone().into_iter().collect(),
            }),
            _ => Err(problems),
        }
    }

    /// `path`: absolute, and none the exporter serves itself.
    fn path_problem(&self) -> Option<Problem> {
        let path = &self.path;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            let why = "must be an absolute URL path such as /callbacks/volcengine-rtc";
            return Some(problem("callbacks.path", why));
        }
        let taken = TAKEN_PATHS.contains(&path.trim_end_matches('/'))
            || path.starts_with("/api/")
            || path.starts_with("/-/")
            || path == "/";
        let why = format!("{path} is served by the exporter itself; use e.g. {DEFAULT_PATH}");
        taken.then(|| problem("callbacks.path", why))
    }

    /// `app_ids`: not empty, each a valid ID.
    fn app_id_problems(&self) -> Vec<Problem> {
        let Some(ids) = &self.app_ids else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        if ids.is_empty() {
            problems.push(problem(
                "callbacks.app_ids",
                "is empty, which would refuse every delivery; list the apps, or remove the key to accept any app",
            ));
        }
        for (i, _) in ids.iter().enumerate().filter(|(_, id)| !is_valid_id(id)) {
            problems.push(problem(
                &format!("callbacks.app_ids[{i}]"),
                "must be 1 to 128 of a-z A-Z 0-9 _ @ . - (the AppId from the RTC console)",
            ));
        }
        problems
    }

    /// `labels`: Prometheus label names, none of [`RESERVED_LABELS`].
    fn label_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for name in self.labels.keys() {
            let valid = is_label_name(name) && !name.starts_with("__");
            let key = format!("callbacks.labels.{name}");
            if !valid {
                problems.push(problem(
                    &key,
                    "is not a Prometheus label name; use letters, digits and _ (not first a digit, not __ first)",
                ));
            } else if RESERVED_LABELS.contains(&name.as_str()) {
                let why = "is set by the exporter itself; choose another name";
                problems.push(problem(&key, why));
            }
        }
        problems
    }

    /// The key: the file, else the inline value, else the environment.
    fn key(
        &self,
        base: Option<&Path>,
        env: &dyn Environment,
    ) -> Result<(Secret, KeySource), Problem> {
        const FILE: &str = "callbacks.secret_key_file";
        if let Some(path) = &self.secret_key_file {
            let path = match base {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.clone(),
            };
            let secret = read_key_file(&path).map_err(|why| problem(FILE, why))?;
            return Ok((secret, KeySource::File(path)));
        }
        if let Some(inline) = &self.secret_key {
            let secret = checked_key(inline, "the value");
            let secret = secret.map_err(|why| problem("callbacks.secret_key", why))?;
            return Ok((secret, KeySource::Inline));
        }
        let Some(value) = env.var(ENV_CALLBACK_KEY).filter(|v| !v.trim().is_empty()) else {
            return Err(problem(
                FILE,
                format!("no callback key: set `callbacks.secret_key_file` to a file holding the key from the RTC console, or export {ENV_CALLBACK_KEY}"),
            ));
        };
        let what = format!("environment variable {ENV_CALLBACK_KEY}");
        let secret = checked_key(&value, &what).map_err(|why| problem(FILE, why))?;
        Ok((secret, KeySource::Environment))
    }
}

/// The key that `value` (read from `what`) holds, trimmed; the error says what is wrong with
/// it, never what it holds.
fn checked_key(value: &str, what: &str) -> Result<Secret, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(format!("{what} is empty; put the callback key there"));
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{what} contains spaces or control characters; it must hold the key alone"
        ));
    }
    Ok(Secret::new(trimmed))
}

/// Reads the key from `secret_key_file` again, with the checks of start-up (for rotation).
pub fn read_key_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    checked_key(&text, &format!("the file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::MapEnv;

    fn parse(yaml: &str) -> CallbacksConfig {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_and_the_file_form() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("key"), "k3y-value\n").unwrap_or_else(|e| panic!("{e}"));
        let c = parse("secret_key_file: key\n");
        assert_eq!(c.path, DEFAULT_PATH);
        let s = c.check(Some(dir.path()), &MapEnv::new());
        let s = s.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.key.expose(), "k3y-value");
        assert_eq!(s.key_source, KeySource::File(dir.path().join("key")));
        assert_eq!(s.app_ids, None);
        assert!(!format!("{s:?}").contains("k3y-value"));
    }

    #[test]
    fn inline_then_environment() {
        let env = MapEnv::new().with_var(ENV_CALLBACK_KEY, "from-env");
        let s = parse("secret_key: inline-key\n").check(None, &env);
        assert_eq!(s.map(|s| s.key_source), Ok(KeySource::Inline));
        let s = parse("app_ids: [a1]\nlabels: {team: rtc}\n").check(None, &env);
        let s = s.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.key.expose(), "from-env");
        assert_eq!(s.key_source, KeySource::Environment);
        assert_eq!(s.app_ids, Some(["a1".to_string()].into()));
        assert_eq!(s.labels, vec![("team".to_string(), "rtc".to_string())]);
    }

    #[test]
    fn every_problem_at_once_without_the_key() {
        let c = parse(
            "secret_key: 'two words'\npath: metrics\napp_ids: ['ok', 'bad id']\nlabels: {kind: x, 9a: y}\n",
        );
        let problems = c.check(None, &MapEnv::new()).err().unwrap_or_default();
        let key = |p: &Problem| p.message.split('`').nth(1).unwrap_or_default().to_owned();
        let keys: Vec<String> = problems.iter().map(key).collect();
        assert_eq!(
            keys,
            [
                "callbacks.secret_key",
                "callbacks.path",
                "callbacks.app_ids[1]",
                "callbacks.labels.9a",
                "callbacks.labels.kind"
            ]
        );
        assert!(problems
            .iter()
            .all(|p| !p.to_string().contains("two words")));
        let none = parse("{}")
            .check(None, &MapEnv::new())
            .err()
            .unwrap_or_default();
        assert!(none[0].message.contains(ENV_CALLBACK_KEY));
        let taken = parse("secret_key: k\npath: /metrics\n").check(None, &MapEnv::new());
        assert!(taken.is_err());
        let empty = parse("secret_key: k\napp_ids: []\n").check(None, &MapEnv::new());
        assert!(empty.is_err());
        assert!(serde_yaml::from_str::<CallbacksConfig>("secret: k\n").is_err());
    }
}
