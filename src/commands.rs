//! The commands behind the binary: run the exporter, `check`, `once`, `demo`. Each returns
//! whether it succeeded; `main` turns that into an exit code.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Settings};
use crate::credentials::ProcessEnv;
use crate::http::web_config::{SharedWebConfig, WebConfig};
use crate::http::Options;
use crate::metrics::own::Telemetry;
use crate::model::Target;
use crate::reload::{self, Reloader};
use crate::runtime::{self, Exporter, WebSetup};
use crate::state;

#[cfg(feature = "sim")]
mod demo;
#[cfg(feature = "sim")]
pub use demo::{demo, DEMO_CALLBACK_KEY};

/// Loads and checks the config; the error lists every problem.
pub fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    let settings = config::load(path, &ProcessEnv)?;
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    Ok(settings)
}

/// `check`: validate the config and the web config file (when given), print the summary; the
/// error lists every problem of both.
pub fn check(path: &Path, web_config: Option<&Path>) -> anyhow::Result<()> {
    let settings = config::load(path, &ProcessEnv);
    let web = web_config.map(|p| (p, WebConfig::load(p)));
    let mut problems = Vec::new();
    if let Err(err) = &settings {
        problems.extend(err.problems().iter().map(ToString::to_string));
    }
    if let Some((_, Err(err))) = &web {
        problems.extend(reload::web_config_problems(err));
    }
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("\n"));
    }
    if let Ok(settings) = &settings {
        let files = target_files_summary(&settings.target_files)?;
        println!("{}: OK", path.display());
        print!("{}{files}", settings.summary());
    }
    if let Some((path, Ok(web))) = web {
        println!(
            "{}: OK ({})",
            path.display(),
            reload::describe_web_config(&web)
        );
    }
    Ok(())
}

/// The targets the target files hold now, and how many files matched. A file that does not
/// load is an error, with every problem at its place.
fn target_file_targets(patterns: &[PathBuf]) -> anyhow::Result<(usize, Vec<Target>)> {
    let files = crate::targets::files::matching_files(patterns);
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        match config::load_targets(file) {
            Ok(mut loaded) => targets.append(&mut loaded),
            Err(e) => problems.extend(e.problems().iter().map(ToString::to_string)),
        }
    }
    if !problems.is_empty() {
        anyhow::bail!("{}", problems.join("\n"));
    }
    Ok((files.len(), targets))
}

/// What `check` says of the target files: how many match and how many targets they hold now.
fn target_files_summary(patterns: &[PathBuf]) -> anyhow::Result<String> {
    if patterns.is_empty() {
        return Ok(String::new());
    }
    let (files, targets) = target_file_targets(patterns)?;
    Ok(format!(
        "  {files} files matched now, with {} targets\n",
        targets.len()
    ))
}

/// The HTTP flags: `--web.config.file` and the `--web.*` switches.
#[derive(Debug, Clone, Default)]
pub struct WebFlags {
    pub config_file: Option<PathBuf>,
    pub options: Options,
}

impl WebFlags {
    /// Loads the web config file (the error lists every problem), warns when the targets API
    /// is on without basic auth.
    pub fn load(&self) -> anyhow::Result<WebConfig> {
        let web = match &self.config_file {
            None => WebConfig::default(),
            Some(path) => WebConfig::load(path).map_err(|err| {
                anyhow::anyhow!("{}", reload::web_config_problems(&err).join("\n"))
            })?,
        };
        if self.options.enable_targets_api && !web.auth_required() {
            tracing::warn!(
                "the targets API (--web.enable-targets-api) is on without basic auth: anyone who \
                 can reach the exporter can add and remove targets; set basic_auth_users in \
                 --web.config.file"
            );
        }
        Ok(web)
    }
}

/// Describes a target for messages: `record app_id=… room_id=… task_id=…`.
pub fn describe(target: &Target) -> String {
    let k = &target.key;
    let mut s = format!("{} app_id={} room_id={}", k.kind, k.app_id, k.room_id);
    match &k.task_id {
        Some(t) => {
            let _ = write!(s, " task_id={t}");
        }
        None => s.push_str(" (room's newest task)"),
    }
    s
}

/// `once`: poll every target once inside the budget; metrics on stdout, one line per failed
/// target on stderr. Returns `false` if any poll failed.
pub async fn once(mut settings: Settings) -> anyhow::Result<bool> {
    // The target files' targets too (a target listed twice is polled once).
    let (_, from_files) = target_file_targets(&settings.target_files)?;
    let mut known: std::collections::HashSet<_> =
        settings.targets.iter().map(|t| t.key.clone()).collect();
    for target in from_files {
        if known.insert(target.key.clone()) {
            settings.targets.push(target);
        }
    }
    let endpoint = settings.api.endpoint.base_url();
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::new(settings, telemetry)?;
    let failed = exporter.poll_each_once().await?;
    for (id, err) in &failed {
        let target = exporter.store.target(*id);
        let what = target.as_deref().map(describe).unwrap_or_default();
        // The error's text starts with its outcome (`network_error: …`).
        eprintln!("poll failed: {what} at {endpoint}: {err}");
    }
    let mut out = Vec::with_capacity(64 * 1024);
    exporter.render(&mut out);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .context("writing metrics to stdout")?;
    stdout.flush().context("writing metrics to stdout")?;
    Ok(failed.is_empty())
}

/// Opens the durable store in `path` (empty: in memory). A store locked by another process is
/// an error; an unreadable file is moved aside (logged); any other failure is logged and the
/// state kept in memory (the returned flag is then true, for `storage_errors_total`).
pub fn open_store(path: &Path) -> anyhow::Result<(state::Opened, bool)> {
    let config = state::WriterConfig::default();
    if path.as_os_str().is_empty() {
        tracing::info!("--storage.path is empty: state is kept in memory only");
        return Ok((state::open_in_memory(config)?, false));
    }
    match state::open(path, config) {
        Ok(opened) => {
            if let Some(recovered) = &opened.recovered {
                tracing::error!("{recovered}");
            }
            tracing::info!(path = %path.display(), targets = opened.state.targets.len(), "store opened");
            Ok((opened, false))
        }
        Err(e) if e.is_locked() => Err(anyhow::anyhow!(
            "the store in {} is locked: another exporter process is using it. Stop that \
             process, or give this one its own folder with --storage.path",
            path.display()
        )),
        Err(e) => {
            tracing::error!(
                path = %path.display(),
                error = %format!("{:#}", anyhow::Error::new(e)),
                "cannot open the store; state is kept in memory only and a restart will poll \
                 every target again. Fix: make the folder writable (or free space), or choose \
                 another with --storage.path"
            );
            Ok((state::open_in_memory(config)?, true))
        }
    }
}

/// Runs the exporter on `listen` until `shutdown`, with the settings loaded from
/// `config_file`, which SIGHUP (and `POST /-/reload` with `--web.enable-lifecycle`) reloads,
/// and its store in `storage` (empty: in memory).
pub async fn serve(
    settings: Settings,
    config_file: &Path,
    web: WebFlags,
    listen: SocketAddr,
    storage: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let web_config = web.load()?;
    let tls = web_config.tls_enabled();
    let auth = web_config.auth_required();
    let shared = SharedWebConfig::new(web_config);
    let (opened, open_failed) = open_store(storage)?;
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::with_store(settings, telemetry.clone(), opened)?;
    telemetry.register_storage(exporter.storage_stats().clone(), open_failed);
    let reloader = Arc::new(
        Reloader::new(
            config_file.to_path_buf(),
            web.config_file.clone(),
            shared.clone(),
            exporter.clone(),
            telemetry,
        )
        .with_targets_api(web.options.enable_targets_api),
    );
    #[cfg(unix)]
    reloader
        .reload_on_sighup(shutdown.clone())
        .context("installing the SIGHUP handler")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--web.listen-address)"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(address = %local, tls, basic_auth = auth, "listening");
    let setup = WebSetup {
        options: web.options,
        web: shared,
        reloader: Some(reloader),
    };
    Ok(runtime::run_with(exporter, listener, setup, shutdown).await?)
}
