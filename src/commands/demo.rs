//! `demo`: the exporter polling a simulated RTC OpenAPI on a loopback port (needs the `sim`
//! feature), and receiving that simulator's RTC callbacks: a few of the demo's tasks are in no
//! target list and are discovered from their signed lifecycle events alone, POSTed over
//! loopback to the exporter's own callback endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::callbacks::settings::{CallbackSettings, KeySource, DEFAULT_PATH};
use crate::config::{CredentialSource, Endpoint, ScheduleSettings, Settings};
use crate::credentials::Secret;
use crate::metrics::own::Telemetry;
use crate::runtime::{self, Exporter};
use crate::sim;

/// How `demo` schedules: short intervals, because the simulated tasks live for seconds; a
/// retention as long as the API's 72-hour horizon, so the scenario's tasks that finished hours
/// before the demo started are shown rather than dropped right after their first poll.
fn demo_schedule() -> ScheduleSettings {
    ScheduleSettings {
        active_interval: Duration::from_secs(3),
        settle_interval: Duration::from_secs(5),
        retention: Duration::from_secs(72 * 3600),
        ..ScheduleSettings::default()
    }
}

/// The callback key of `demo`: the simulator signs with it and the exporter verifies with it.
/// Not a secret (it is in the source); a real key comes from the RTC console.
pub const DEMO_CALLBACK_KEY: &str = "demo-callback-key-not-a-real-one";

/// How often the demo's simulator looks for lifecycle events that came due.
const CALLBACK_TICK: Duration = Duration::from_millis(250);

/// `demo`'s `callbacks:` section: the default path, the demo key, any app, discovered targets
/// labelled `env="demo"` like the listed ones.
fn demo_callbacks() -> CallbackSettings {
    CallbackSettings {
        key: Secret::new(DEMO_CALLBACK_KEY),
        key_source: KeySource::Inline,
        path: DEFAULT_PATH.to_owned(),
        app_ids: None,
        labels: vec![("env".into(), "demo".into())],
        // The demo's intervals are scaled down (3 s active); announced recordings 4× that, as
        // the defaults are (15 s and 1 m).
        active_interval: Duration::from_secs(12),
    }
}

/// `demo`: the simulated RTC OpenAPI on an ephemeral loopback port, with the demo scenario's
/// tasks, and the exporter polling it and serving on `listen`. The simulator also sends every
/// task's lifecycle events from now on, signed with [`DEMO_CALLBACK_KEY`], to the exporter's
/// callback endpoint over loopback; the scenario's unlisted tasks are known from those alone.
/// (Not when the exporter serves TLS or listens on an address other than loopback or any:
/// the simulator sends plain HTTP to loopback only.)
pub async fn demo(
    listen: SocketAddr,
    web: super::WebFlags,
    storage: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let web_config = web.load()?;
    let tls = web_config.tls_enabled();
    let web_config = crate::http::web_config::SharedWebConfig::new(web_config);
    let started = crate::clock::now();
    let scenario = sim::demo_scenario(started);
    let simulator = Arc::new(sim::Simulator::from_scenario(
        &scenario,
        sim::SimOptions::default(),
        sim::Clock::system(),
    ));
    let sim_listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("starting the simulated API on 127.0.0.1")?;
    let sim_addr = sim_listener
        .local_addr()
        .context("reading the simulated API's address")?;
    let sim_server = tokio::spawn(sim::serve(
        sim_listener,
        simulator.clone(),
        shutdown.clone(),
    ));
    let settings = demo_settings(&scenario, sim_addr);

    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (--web.listen-address)"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    println!(
        "demo: {} simulated tasks ({} targets) served by a simulated RTC OpenAPI on http://{sim_addr}",
        scenario.tasks.len(),
        scenario.targets.len()
    );
    println!("demo: exporter listening on {local}; open http://{shown}/ or http://{shown}/metrics");
    // The simulator sends plain HTTP to loopback only.
    let reachable = !tls && (local.ip().is_loopback() || local.ip().is_unspecified());
    let since_ms = crate::clock::system_time_to_ms(started);
    let unlisted = scenario.unlisted_tasks().len();
    let to = reachable.then_some(shown);
    let callback_driver = send_callbacks(simulator, to, since_ms, unlisted, &shutdown);
    println!("demo: press Ctrl-C to stop");
    // `--storage.path` when given (kept); else a fresh temporary store each run (removed).
    let temporary = storage.is_none();
    let storage = storage.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "volcengine-rtc-exporter-demo-{}",
            std::process::id()
        ))
    });
    let (opened, open_failed) = super::open_store(&storage)?;
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::with_store(settings, telemetry.clone(), opened)?;
    telemetry.register_storage(exporter.storage_stats().clone(), open_failed);
    let setup = runtime::WebSetup {
        options: web.options,
        web: web_config,
        reloader: None,
    };
    let served = runtime::run_with(exporter, listener, setup, shutdown).await;
    let _ = sim_server.await;
    if let Some(driver) = callback_driver {
        driver.abort();
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&storage);
    }
    Ok(served?)
}

/// The exporter's settings for `demo`: the scenario's credentials and targets, the simulator
/// at `sim_addr` as the API, [`demo_schedule`] and [`demo_callbacks`].
fn demo_settings(scenario: &sim::Scenario, sim_addr: SocketAddr) -> Settings {
    let mut settings = Settings::new(
        scenario.credentials.clone(),
        CredentialSource::Inline,
        scenario.targets.clone(),
    );
    settings.api.endpoint = Endpoint {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port: Some(sim_addr.port()),
    };
    settings.schedule = demo_schedule();
    settings.budget = [20.0, 20.0];
    settings.callbacks = Some(demo_callbacks());
    settings
}

/// The simulator's lifecycle events (from `since_ms`) POSTed to the exporter at `to`, when it
/// can reach it; says which on stdout, with the `unlisted` tasks known from them alone.
fn send_callbacks(
    simulator: Arc<sim::Simulator>,
    to: Option<SocketAddr>,
    since_ms: i64,
    unlisted: usize,
    shutdown: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let callbacks = demo_callbacks();
    let sender = to.and_then(|to| {
        let url = format!("http://{to}{}", callbacks.path);
        let sender = sim::CallbackSender::new(&url, callbacks.key.clone()).ok()?;
        Some((to, url, sender))
    });
    let Some((shown, url, sender)) = sender else {
        println!(
            "demo: RTC callbacks not sent: the simulator sends plain HTTP to loopback only, \
             so {unlisted} tasks known only from callbacks stay unseen"
        );
        return None;
    };
    println!(
        "demo: RTC callbacks: the simulator POSTs each task's signed lifecycle events to {url}; \
         {unlisted} tasks are in no target list and are discovered from them \
         (source \"callback\" on http://{shown}/targets)"
    );
    let shutdown = shutdown.clone();
    let run = sim::run_callbacks(simulator, sender, since_ms, CALLBACK_TICK, shutdown);
    Some(tokio::spawn(run))
}
