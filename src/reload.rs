//! Reloading the configuration while running: on SIGHUP, and on `POST /-/reload` when
//! `--web.enable-lifecycle` is set (as in Prometheus).
//!
//! A reload reads and checks the config file and the web config file (`--web.config.file`)
//! exactly as at start-up and as `check` does. If either has a problem, nothing changes: the
//! running configuration is kept, every problem is logged (one line each, `file:line:col:
//! message`, as `check` prints them) and `volcengine_rtc_config_last_reload_successful` becomes
//! 0. Otherwise the new web config is put in force for the next connection and request, the new
//! [`Settings`] are handed to an [`Apply`] hook, and the gauge becomes 1 with
//! `volcengine_rtc_config_last_reload_success_timestamp_seconds` set to now.
//!
//! What the hook does with the settings (the targets' diff, new budgets, intervals, endpoint,
//! credentials) is the exporter's business; this module only knows the trait. Reloads are
//! serialized: a SIGHUP during an HTTP-triggered reload waits for it.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::{self, ProcessEnv, Settings};
use crate::http::web_config::{SharedWebConfig, WebConfig, WebConfigError};
use crate::http::{Reload, Reloading};
use crate::metrics::own::Telemetry;

/// What applying new settings did, one human-readable line per change (logged at info, and
/// the body of a successful `POST /-/reload`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplySummary {
    pub lines: Vec<String>,
}

impl fmt::Display for ApplySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// The hook a reload hands checked settings to. Implemented by the exporter; tests implement
/// it to see what a reload applies.
pub trait Apply: Send + Sync {
    /// Puts `new` in force, as far as it can be while running, and says what changed. An
    /// `Err` marks the reload failed (`…_last_reload_successful` 0); the message is logged.
    fn apply(&self, new: Settings) -> Result<ApplySummary, String>;
}

/// Why a reload changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The config or the web config file has problems; every one, one per line, as `check`
    /// reports them.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// The apply hook refused the settings.
    #[error("applying the new configuration failed: {0}")]
    Apply(String),
    /// The reload could not run to its end (its task was lost).
    #[error("the reload did not finish: {0}")]
    Interrupted(String),
}

impl ReloadError {
    /// Every problem, one line each.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ReloadError::Invalid(problems) => problems.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// Reads, checks and applies the configuration files again; see the module documentation.
pub struct Reloader {
    config_file: PathBuf,
    web_config_file: Option<PathBuf>,
    web: SharedWebConfig,
    apply: Arc<dyn Apply>,
    telemetry: Arc<Telemetry>,
    /// `--web.enable-targets-api` is on: warn when a reloaded web config has no users.
    targets_api: bool,
    /// One reload at a time.
    turn: Mutex<()>,
}

impl fmt::Debug for Reloader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloader")
            .field("config_file", &self.config_file)
            .field("web_config_file", &self.web_config_file)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Reloads `config_file` (and `web_config_file`, put in force through `web`), hands the
    /// settings to `apply`, and records the outcome in `telemetry`. Credentials come from the
    /// process environment, as at start-up.
    pub fn new(
        config_file: PathBuf,
        web_config_file: Option<PathBuf>,
        web: SharedWebConfig,
        apply: Arc<dyn Apply>,
        telemetry: Arc<Telemetry>,
    ) -> Reloader {
        Reloader {
            config_file,
            web_config_file,
            web,
            apply,
            telemetry,
            targets_api: false,
            turn: Mutex::new(()),
        }
    }

    /// Warn, as at start-up, when a reload leaves the registration API without basic auth.
    pub fn with_targets_api(mut self, enabled: bool) -> Reloader {
        self.targets_api = enabled;
        self
    }

    /// Reads and checks both files, then applies them; blocks (file reads, one bcrypt run
    /// when users are configured). `trigger` (`SIGHUP`, `HTTP`) is logged. On error nothing
    /// changed, and every problem was logged.
    pub fn reload(&self, trigger: &str) -> Result<ApplySummary, ReloadError> {
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        tracing::info!(trigger, file = %self.config_file.display(), "reloading the configuration");
        let result = self.load_and_apply();
        match &result {
            Ok(summary) => {
                self.telemetry
                    .record_reload(true, crate::clock::now_ms() as f64 / 1000.0);
                for line in &summary.lines {
                    tracing::info!(trigger, "reload: {line}");
                }
                tracing::info!(trigger, "configuration reloaded");
            }
            Err(err) => {
                self.telemetry.record_reload(false, 0.0);
                let problems = err.problems();
                for problem in &problems {
                    tracing::error!(trigger, "reload: {problem}");
                }
                tracing::error!(
                    trigger,
                    problems = problems.len(),
                    "reloading the configuration failed; the running configuration is kept"
                );
            }
        }
        result
    }

    /// [`Reloader::reload`] on the blocking pool.
    pub async fn reload_async(
        self: &Arc<Self>,
        trigger: &'static str,
    ) -> Result<ApplySummary, ReloadError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.reload(trigger))
            .await
            .unwrap_or_else(|e| Err(ReloadError::Interrupted(e.to_string())))
    }

    fn load_and_apply(&self) -> Result<ApplySummary, ReloadError> {
        let mut problems = Vec::new();
        let settings = match config::load(&self.config_file, &ProcessEnv) {
            Ok(settings) => Some(settings),
            Err(err) => {
                problems.extend(err.problems().iter().map(ToString::to_string));
                None
            }
        };
        let web = match &self.web_config_file {
            None => Some(WebConfig::default()),
            Some(path) => match WebConfig::load(path) {
                Ok(web) => Some(web),
                Err(err) => {
                    problems.extend(web_config_problems(&err));
                    None
                }
            },
        };
        let (Some(settings), Some(web)) = (settings, web) else {
            return Err(ReloadError::Invalid(problems));
        };
        for warning in &settings.warnings {
            tracing::warn!("{warning}");
        }
        let mut summary = self.apply.apply(settings).map_err(ReloadError::Apply)?;
        if let Some(path) = &self.web_config_file {
            summary.lines.push(format!(
                "web config {} in force: {}",
                path.display(),
                describe_web_config(&web)
            ));
        }
        if self.targets_api && !web.auth_required() {
            tracing::warn!(
                "the targets API (--web.enable-targets-api) is on without basic auth: anyone who \
                 can reach the exporter can add and remove targets; set basic_auth_users in \
                 --web.config.file"
            );
        }
        self.web.set(web);
        Ok(summary)
    }

    /// Reloads on every SIGHUP until `shutdown`. The handler is installed before this
    /// returns, so a SIGHUP sent right after can no longer end the process.
    #[cfg(unix)]
    pub fn reload_on_sighup(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup())?;
        let me = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    got = hangups.recv() => if got.is_none() { return },
                }
                let _ = me.reload_async("SIGHUP").await;
            }
        }))
    }
}

/// `POST /-/reload`: [`Reloader::reload_async`], answered with the summary or the error.
impl Reload for Reloader {
    fn run(self: Arc<Self>, trigger: &'static str) -> Reloading {
        Box::pin(async move {
            self.reload_async(trigger)
                .await
                .map(|summary| summary.to_string())
                .map_err(|err| err.to_string())
        })
    }
}

/// A web config error as lines in `check`'s form: `file:line:col: key: message`.
pub fn web_config_problems(err: &WebConfigError) -> Vec<String> {
    match err {
        WebConfigError::Read { .. } => vec![err.to_string()],
        WebConfigError::Invalid { problems, .. } => {
            problems.iter().map(ToString::to_string).collect()
        }
    }
}

/// One line about a web config: TLS or not, client certificates, users.
pub fn describe_web_config(web: &WebConfig) -> String {
    let tls = if web.tls_enabled() {
        "TLS"
    } else {
        "plain HTTP"
    };
    match web.basic_auth() {
        Some(auth) => {
            let users = auth.users().count();
            format!(
                "{tls}, basic auth with {users} user{}",
                if users == 1 { "" } else { "s" }
            )
        }
        None => format!("{tls}, no basic auth"),
    }
}
