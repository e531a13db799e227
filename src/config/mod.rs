//! Configuration: the YAML file (the `api`, `credentials`, `budget`, `schedule` and `targets`
//! sections shown in `examples/config.yaml`) checked and converted into typed [`Settings`], every
//! problem reported at once with its `file:line:column` and the fix.
//!
//! Two steps, one submodule each:
//!
//! 1. [`yaml`] loads the text into a compact tree whose every node knows its line and column
//!    (a syntax error stops here, with its position);
//! 2. `check` walks that tree once, section by section: unknown keys (with the closest valid
//!    key, or the section a misplaced key belongs in), duplicate keys, values of the wrong
//!    shape and values that do not hold (IDs, durations, budgets, labels, endpoint, duplicate
//!    targets, credentials via [`crate::credentials::resolve`]) are all findings, placed at
//!    the node they are about; `targets` holds the part of that walk that checks target lists.
//!    [`duration`] reads Prometheus durations.
//!
//! [`load_targets`] reads a file that holds only a list of targets (YAML, or JSON, which is
//! YAML), each written as under `targets:`, with the same checks and messages.
//!
//! **Why `yaml-rust2`.** Its parser yields events marked with line and column, so one parse places
//! every key and every value. A serde route cannot: deserializing stops at the first error, and
//! `serde_yaml` (0.9, deprecated upstream) and its forks `serde_yaml_ng` and `serde_norway` give a
//! position for that error only, never for a value that is read fine but checked wrong later, so
//! "every problem at once, each with its place" would need a second parse. `saphyr`, the maintained
//! successor with spans, keeps a mapping's keys in a hash map, where a duplicate key silently
//! replaces the first; the config must report it. Building the tree from the events here keeps
//! duplicate keys, caps alias expansion and nesting, and shares equal texts, so 10,000 targets load
//! in under 6 MiB (`tests/config_memory.rs`). `serde_yaml` reads the small web config file
//! (`web_config`), where serde's first-error position is enough, and the tests' YAML files.

mod check;
pub use crate::duration;
mod targets;
pub mod yaml;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng as _;

use crate::callbacks::settings::{CallbackSettings, KeySource, ENV_CALLBACK_KEY};
use crate::credentials::{CredentialConfig, Credentials};
pub use crate::credentials::{CredentialSource, Environment, ProcessEnv};
use crate::model::{Action, Kind, Target};
pub use crate::model::{Pos, Problem};

/// The default region.
pub const DEFAULT_REGION: &str = "cn-north-1";
pub use crate::model::{RECORD_VERSIONS, SERVICE, WEBCAST_VERSIONS};
/// The vendor's per-action quota; a budget above it draws a warning.
pub const VENDOR_QUOTA: f64 = 60.0;
/// The default request budget of each action, requests per second: below the vendor's 60/s
/// so other callers on the account keep some room.
pub const fn default_budget() -> f64 {
    50.0
}

/// The API endpoint split into parts: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl Endpoint {
    /// The `Host` header value as sent and signed: the port is kept unless it is the scheme's
    /// default (`:80` for http, `:443` for https).
    pub fn host_header(&self) -> String {
        match (self.scheme.as_str(), self.port) {
            (_, None) | ("http", Some(80)) | ("https", Some(443)) => self.host.clone(),
            (_, Some(p)) => format!("{}:{}", self.host, p),
        }
    }

    /// `scheme://host[:port]` with no trailing slash.
    pub fn base_url(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{}", self.scheme, self.host, p),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiSettings {
    pub endpoint: Endpoint,
    pub region: String,
    /// Always `rtc`.
    pub service: String,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub record_version: String,
    pub webcast_version: String,
    /// How a request is retried: not a config key, always [`RetryPolicy::default`] there.
    pub retry: RetryPolicy,
}

impl ApiSettings {
    pub fn version_for(&self, action: Action) -> &str {
        match action {
            Action::GetRecordTask => &self.record_version,
            Action::GetWebCastTask => &self.webcast_version,
        }
    }
}

/// How [`crate::volc::client::Client::fetch`] retries: at most `attempts` requests in all; before retry `n` (1, 2,
/// ...) it waits a random time in `[0, min(cap, base * 2^(n-1))]` ("full jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests in all, first try included; 0 counts as 1.
    pub attempts: u32,
    /// The first retry's backoff ceiling.
    pub base: Duration,
    /// No backoff is longer than this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 250 ms base, doubling, capped at 2 s.
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the backoff before retry `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// A random backoff before retry `retry` (1-based), uniform in `[0, ceiling(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.ceiling(retry)
            .mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSettings {
    /// How often a task that is not yet terminal is polled.
    pub active_interval: Duration,
    /// How often a terminal task is re-polled until its answer stops changing.
    pub settle_interval: Duration,
    /// How long after its EndTime a terminal task is re-polled at most, if its answer keeps
    /// changing (or a record task never shows a file).
    pub settle_timeout: Duration,
    /// How long a finished task's series stay after it ended.
    pub retention: Duration,
}

/// Everything the exporter runs on, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub credentials: Credentials,
    pub credential_source: CredentialSource,
    /// The `credentials:` section as read, for re-reading its `*_file` keys when they change.
    pub credential_config: CredentialConfig,
    /// Requests per second per action, indexed by [`Action::index`].
    pub budget: [f64; 2],
    pub schedule: ScheduleSettings,
    pub targets: Vec<Target>,
    /// `target_files`: glob patterns of files that each hold a list of targets.
    pub target_files: Vec<PathBuf>,
    /// `target_files_refresh_interval`: how often target files are read again besides
    /// watching them (default 1m).
    pub target_files_refresh_interval: Duration,
    /// `callbacks:`: RTC's event notifications, when configured.
    pub callbacks: Option<CallbackSettings>,
    /// Non-fatal findings (e.g. a budget above 60/s).
    pub warnings: Vec<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            // Volcengine, China.
            endpoint: Endpoint {
                scheme: "https".into(),
                host: "rtc.volcengineapi.com".into(),
                port: None,
            },
            region: DEFAULT_REGION.into(),
            service: SERVICE.into(),
            timeout: Duration::from_secs(5),
            max_in_flight: 16,
            record_version: RECORD_VERSIONS[0].into(),
            webcast_version: WEBCAST_VERSIONS[0].into(),
            retry: RetryPolicy::default(),
        }
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            active_interval: Duration::from_secs(15),
            settle_interval: Duration::from_secs(60),
            settle_timeout: Duration::from_secs(3600),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

impl Settings {
    pub fn budget_for(&self, action: Action) -> f64 {
        self.budget[action.index()]
    }

    /// Settings with every default, for these credentials and targets (the simulator, `demo`,
    /// tests); no warnings.
    pub fn new(
        credentials: Credentials,
        credential_source: CredentialSource,
        targets: Vec<Target>,
    ) -> Settings {
        Settings {
            api: ApiSettings::default(),
            credentials,
            credential_source,
            credential_config: CredentialConfig::default(),
            budget: [default_budget(); 2],
            schedule: ScheduleSettings::default(),
            targets,
            target_files: Vec::new(),
            target_files_refresh_interval: Duration::from_secs(60),
            callbacks: None,
            warnings: Vec::new(),
        }
    }

    /// What `check` prints: targets per kind and per app, budgets, intervals, API settings,
    /// where the credentials came from (access key id masked), warnings. Never a secret.
    pub fn summary(&self) -> String {
        const MAX_APPS: usize = 20;
        let (api, s, d) = (&self.api, &self.schedule, duration::format);
        let count = |kind: Kind, app: Option<&str>| {
            let of = |t: &&Target| t.key.kind == kind && app.is_none_or(|a| t.key.app_id == a);
            self.targets.iter().filter(of).count()
        };
        let token = match self.credentials.session_token {
            Some(_) => ", with a session token",
            None => "",
        };
        let mut out = format!(
            "api:         {} (region {}, service {}), timeout {}, at most {} requests in flight\n\
             versions:    GetRecordTask {}, GetWebCastTask {}\n\
             budget:      GetRecordTask {}/s, GetWebCastTask {}/s\n\
             schedule:    active tasks every {}, settling tasks every {}, retention {}, settle timeout {}\n\
             credentials: access key {} from {}{token}\n\
             targets:     {} (record {}, webcast {})\n",
            api.endpoint.base_url(),
            api.region,
            api.service,
            d(api.timeout),
            api.max_in_flight,
            api.record_version,
            api.webcast_version,
            self.budget_for(Action::GetRecordTask),
            self.budget_for(Action::GetWebCastTask),
            d(s.active_interval),
            d(s.settle_interval),
            d(s.retention),
            d(s.settle_timeout),
            self.credentials.masked_access_key_id(),
            self.credential_source,
            self.targets.len(),
            count(Kind::Record, None),
            count(Kind::Webcast, None),
        );
        let apps: BTreeSet<&str> = self.targets.iter().map(|t| &*t.key.app_id).collect();
        for app in apps.iter().take(MAX_APPS) {
            let (record, webcast) = (
                count(Kind::Record, Some(app)),
                count(Kind::Webcast, Some(app)),
            );
            out.push_str(&format!(
                "  app {app}: record {record}, webcast {webcast}\n"
            ));
        }
        if apps.len() > MAX_APPS {
            out.push_str(&format!("  ... and {} more apps\n", apps.len() - MAX_APPS));
        }
        if !self.target_files.is_empty() {
            let patterns: Vec<String> = self
                .target_files
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            out.push_str(&format!(
                "target files: {} (read again every {}, and when they change)\n",
                patterns.join(", "),
                d(self.target_files_refresh_interval),
            ));
        }
        if let Some(cb) = &self.callbacks {
            let apps = match &cb.app_ids {
                None => "any app".to_owned(),
                Some(ids) => format!(
                    "apps {}",
                    ids.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            };
            let key = match &cb.key_source {
                KeySource::File(p) => format!("file {}", p.display()),
                KeySource::Inline => "the config".to_owned(),
                KeySource::Environment => ENV_CALLBACK_KEY.to_owned(),
            };
            out.push_str(&format!(
                "callbacks:   on {} for {apps}, key from {key}; announced recordings every {}\n",
                cb.path,
                d(cb.active_interval),
            ));
        }
        match self.warnings.len() {
            0 => out.push_str("warnings:    none\n"),
            n => out.push_str(&format!("warnings:    {n}\n")),
        }
        for w in &self.warnings {
            out.push_str(&format!("  {w}\n"));
        }
        out
    }
}

/// Everything wrong with a config file, one [`Problem`] per line in `Display`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl ConfigError {
    /// The problems, in file order (those without a position last).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    fn single(file: &str, pos: Option<Pos>, message: String) -> Self {
        ConfigError {
            problems: vec![Problem {
                file: file.to_owned(),
                pos,
                message,
            }],
        }
    }
}

/// Reads and checks the config file at `path`. Relative `*_file` paths in it are resolved
/// against the file's directory.
pub fn load(path: &Path, env: &dyn Environment) -> Result<Settings, ConfigError> {
    let (file, text) = read(path, "config")?;
    check::settings(&text, &file, path.parent(), env)
}

/// Checks config `text`; `origin` names it in messages. Relative `*_file` paths are resolved
/// against the current directory.
pub fn parse(text: &str, origin: &str, env: &dyn Environment) -> Result<Settings, ConfigError> {
    check::settings(text, origin, None, env)
}

/// Reads and checks a targets file: a YAML (or JSON) list of targets, each written as under
/// `targets:` in the config, duplicates refused. An empty file is an empty list. Problems
/// name the targets as `targets[0]`, `targets[1]`, ... in file order.
pub fn load_targets(path: &Path) -> Result<Vec<Target>, ConfigError> {
    let (file, text) = read(path, "targets")?;
    check::targets(&text, &file)
}

/// Checks targets file `text` (see [`load_targets`]); `origin` names it in messages.
pub fn parse_targets(text: &str, origin: &str) -> Result<Vec<Target>, ConfigError> {
    check::targets(text, origin)
}

/// The file at `path` as text, with its name for messages; `what` names the kind of file.
fn read(path: &Path, what: &str) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::single(&file, None, format!("cannot read the {what} file: {e}"))
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok((file, text)),
        Err(e) => {
            let good = e.as_bytes().get(..e.utf8_error().valid_up_to());
            let good = String::from_utf8_lossy(good.unwrap_or_default());
            let line = good.matches('\n').count() + 1;
            let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            let message = "the file is not valid UTF-8 text; save it as UTF-8".into();
            Err(ConfigError::single(
                &file,
                Some(Pos::new(line, col)),
                message,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use crate::model::TargetKey;

    #[test]
    fn problem_display_with_and_without_position() {
        let err = ConfigError {
            problems: vec![
                Problem {
                    file: "a.yaml".into(),
                    pos: Some(Pos { line: 3, col: 7 }),
                    message: "bad".into(),
                },
                Problem {
                    file: "a.yaml".into(),
                    pos: None,
                    message: "worse".into(),
                },
            ],
        };
        assert_eq!(err.to_string(), "a.yaml:3:7: bad\na.yaml: worse");
        let p = Problem {
            file: "a.yaml".into(),
            pos: None,
            message: "unknown key `a\nb`".into(),
        };
        assert_eq!(p.to_string(), "a.yaml: unknown key `a\\nb`");
        assert_eq!(err.problems().len(), 2);
    }

    #[test]
    fn settings_new_uses_defaults() {
        let creds = Credentials {
            access_key_id: "AKLT0000000000001234".into(),
            secret_access_key: Secret::new("s3cr3t-value"),
            session_token: None,
        };
        let target = Target {
            key: TargetKey {
                kind: Kind::Webcast,
                app_id: "a".into(),
                room_id: "r".into(),
                task_id: None,
            },
            labels: Default::default(),
        };
        let s = Settings::new(creds, CredentialSource::Inline, vec![target]);
        assert_eq!(s.budget_for(Action::GetWebCastTask), default_budget());
        assert_eq!(s.api.endpoint.base_url(), "https://rtc.volcengineapi.com");
        assert_eq!(s.schedule.active_interval, Duration::from_secs(15));
        let summary = s.summary();
        assert!(
            summary.contains("targets:     1 (record 0, webcast 1)"),
            "{summary}"
        );
        assert!(summary.contains("AKL****234"), "{summary}");
        assert!(!summary.contains("s3cr3t") && !format!("{s:?}").contains("s3cr3t"));
    }
}
