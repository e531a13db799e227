//! Configuration: the YAML file (SPEC §3) parsed into raw serde structs, then converted in one
//! step into typed, validated [`Settings`], reporting every problem at once with its place.
//!
//! The pipeline, one submodule per step:
//!
//! 1. [`yaml`] loads the text into a compact tree whose nodes know their line and column (a
//!    syntax error stops here, with its position);
//! 2. `schema` walks that tree against the raw structs' own key lists: every unknown key (with
//!    the closest valid one), every wrongly shaped value and every duplicate key is a finding,
//!    removed from the tree so only what fits is left;
//! 3. [`raw`] holds the serde structs (`deny_unknown_fields`) that `de` deserializes straight
//!    from the cleaned tree, consuming it;
//! 4. `check` converts them into [`Settings`], collecting every semantic problem
//!    (IDs, durations, budgets, labels, endpoint, duplicates, credentials via
//!    [`crate::credentials::resolve`]); the places of the paths it reports
//!    (`targets[3].app_id`) are looked up once all are in, by one more load of the text that
//!    keeps only those paths.
//!
//! All findings come back together in one [`ConfigError`], sorted by position.
//!
//! The text is thus held as one tree at a time, never as a second YAML value beside it, and no
//! table of places is built: loading 10,000 targets takes under 6 MiB of heap at its peak,
//! with or without findings, most of it the targets kept (`tests/config_memory.rs`).

mod check;
mod de;
pub mod duration;
pub mod raw;
mod schema;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::credentials::Credentials;
pub use crate::credentials::{CredentialSource, Environment, MapEnv, ProcessEnv};
use crate::model::{Action, Kind, Target};
pub use check::is_valid_id;
pub use yaml::Pos;

/// The default endpoint (Volcengine, China).
pub const DEFAULT_ENDPOINT: &str = "https://rtc.volcengineapi.com";
/// The default region.
pub const DEFAULT_REGION: &str = "cn-north-1";
pub use crate::model::{RECORD_VERSIONS, SERVICE, WEBCAST_VERSIONS};
/// The vendor's per-action quota; a budget above it draws a warning.
pub const VENDOR_QUOTA: f64 = 60.0;
/// Label names the exporter sets itself; a target's own labels may not use them.
pub const RESERVED_LABELS: [&str; 14] = [
    "kind", "app_id", "room_id", "task_id", "file", "reason", "action", "outcome", "phase", "le",
    "instance", "job", "version", "revision",
];

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

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub endpoint: Endpoint,
    pub region: String,
    /// Always `rtc`.
    pub service: String,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub record_version: String,
    pub webcast_version: String,
}

impl ApiSettings {
    pub fn version_for(&self, action: Action) -> &str {
        match action {
            Action::GetRecordTask => &self.record_version,
            Action::GetWebCastTask => &self.webcast_version,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    pub active_interval: Duration,
    pub settle_interval: Duration,
    pub retention: Duration,
}

/// Everything the exporter runs on, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub credentials: Credentials,
    pub credential_source: CredentialSource,
    /// Requests per second per action, indexed by [`Action::index`].
    pub budget: [f64; 2],
    pub schedule: ScheduleSettings,
    pub targets: Vec<Target>,
    /// Non-fatal findings (e.g. a budget above 60/s).
    pub warnings: Vec<String>,
}

impl Settings {
    pub fn budget_for(&self, action: Action) -> f64 {
        self.budget[action.index()]
    }
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
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
        }
    }
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            active_interval: Duration::from_secs(15),
            settle_interval: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

impl Settings {
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
            budget: [default_budget(); 2],
            schedule: ScheduleSettings::default(),
            targets,
            warnings: Vec::new(),
        }
    }

    /// What `check` prints: targets per kind and per app, budgets, intervals, API settings,
    /// where the credentials came from (access key id masked), warnings. Never a secret.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let api = &self.api;
        let _ = writeln!(
            out,
            "api:         {} (region {}, service {}), timeout {}, at most {} requests in flight",
            api.endpoint.base_url(),
            api.region,
            api.service,
            duration::format(api.timeout),
            api.max_in_flight
        );
        let _ = writeln!(
            out,
            "versions:    GetRecordTask {}, GetWebCastTask {}",
            api.record_version, api.webcast_version
        );
        let _ = writeln!(
            out,
            "budget:      GetRecordTask {}/s, GetWebCastTask {}/s",
            self.budget_for(Action::GetRecordTask),
            self.budget_for(Action::GetWebCastTask)
        );
        let s = &self.schedule;
        let _ = writeln!(
            out,
            "schedule:    active tasks every {}, settling tasks every {}, retention {}",
            duration::format(s.active_interval),
            duration::format(s.settle_interval),
            duration::format(s.retention)
        );
        let _ = writeln!(
            out,
            "credentials: access key {} from {}{}",
            self.credentials.masked_access_key_id(),
            self.credential_source,
            if self.credentials.session_token.is_some() {
                ", with a session token"
            } else {
                ""
            }
        );
        let count =
            |kind: Kind, targets: &[&Target]| targets.iter().filter(|t| t.key.kind == kind).count();
        let all: Vec<&Target> = self.targets.iter().collect();
        let _ = writeln!(
            out,
            "targets:     {} (record {}, webcast {})",
            all.len(),
            count(Kind::Record, &all),
            count(Kind::Webcast, &all)
        );
        let mut apps: BTreeMap<&str, Vec<&Target>> = BTreeMap::new();
        for t in &self.targets {
            apps.entry(t.key.app_id.as_str()).or_default().push(t);
        }
        const MAX_APPS: usize = 20;
        for (app, targets) in apps.iter().take(MAX_APPS) {
            let _ = writeln!(
                out,
                "  app {app}: record {}, webcast {}",
                count(Kind::Record, targets),
                count(Kind::Webcast, targets)
            );
        }
        if apps.len() > MAX_APPS {
            let _ = writeln!(out, "  ... and {} more apps", apps.len() - MAX_APPS);
        }
        if self.warnings.is_empty() {
            let _ = writeln!(out, "warnings:    none");
        } else {
            let _ = writeln!(out, "warnings:    {}", self.warnings.len());
            for w in &self.warnings {
                let _ = writeln!(out, "  {w}");
            }
        }
        out
    }
}

/// One finding: the file, where in it (when YAML gives a place), and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub pos: Option<Pos>,
    pub message: String,
}

/// Text with control characters (newlines above all) escaped, so one problem stays one line.
struct OneLine<'a>(&'a str);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_debug())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (file, message) = (OneLine(&self.file), OneLine(&self.message));
        match self.pos {
            Some(p) => write!(f, "{file}:{}:{}: {message}", p.line, p.col),
            None => write!(f, "{file}: {message}"),
        }
    }
}

/// Everything wrong with a config file, one [`Problem`] per line in `Display`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct ConfigError {
    problems: Vec<Problem>,
}

fn lines(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
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
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigError::single(&file, None, format!("cannot read the config file: {e}"))
    })?;
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or_default();
            let good = String::from_utf8_lossy(good);
            let line = good.matches('\n').count() + 1;
            let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            return Err(ConfigError::single(
                &file,
                Some(Pos::new(line, col)),
                "the file is not valid UTF-8 text; save it as UTF-8".into(),
            ));
        }
    };
    check::parse_in(text, &file, path.parent(), env)
}

/// Checks config `text`; `origin` names it in messages. Relative `*_file` paths are resolved
/// against the current directory.
pub fn parse(text: &str, origin: &str, env: &dyn Environment) -> Result<Settings, ConfigError> {
    check::parse_in(text, origin, None, env)
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
            labels: Vec::new(),
        };
        let s = Settings::new(creds, CredentialSource::Inline, vec![target]);
        assert_eq!(s.budget_for(Action::GetWebCastTask), default_budget());
        assert_eq!(s.api.endpoint.base_url(), DEFAULT_ENDPOINT);
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
