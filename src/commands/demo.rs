//! `demo`: the exporter polling a simulated RTC OpenAPI on a loopback port (needs the `sim`
//! feature).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{CredentialSource, Endpoint, ScheduleSettings, Settings};
use crate::exporter::{self, Exporter};
use crate::sim;
use crate::telemetry::Telemetry;

/// How `demo` schedules: short intervals, because the simulated tasks live for seconds; a
/// retention as long as the API's 72-hour horizon, so the scenario's tasks that finished hours
/// before the demo started are shown rather than dropped right after their first poll.
pub fn demo_schedule() -> ScheduleSettings {
    ScheduleSettings {
        active_interval: Duration::from_secs(3),
        settle_interval: Duration::from_secs(5),
        retention: Duration::from_secs(72 * 3600),
        ..ScheduleSettings::default()
    }
}

/// `demo`: the simulated RTC OpenAPI on an ephemeral loopback port, with the demo scenario's
/// tasks, and the exporter polling it and serving on `listen`.
pub async fn demo(
    listen: SocketAddr,
    web: super::WebFlags,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let web_config = crate::web_config::SharedWebConfig::new(web.load()?);
    let scenario = sim::demo_scenario(crate::clock::now());
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
    let sim_server = tokio::spawn(sim::serve(sim_listener, simulator, shutdown.clone()));

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
    println!("demo: press Ctrl-C to stop");
    // A fresh temporary store each run: restarts are shown with the real binary, not here.
    let storage = std::env::temp_dir().join(format!(
        "volcengine-rtc-exporter-demo-{}",
        std::process::id()
    ));
    let (opened, open_failed) = super::open_store(&storage)?;
    let telemetry = Arc::new(Telemetry::new());
    let exporter = Exporter::with_store(settings, telemetry.clone(), opened)?;
    telemetry.register_storage(exporter.storage_stats().clone(), open_failed);
    let setup = exporter::WebSetup {
        options: web.options,
        web: web_config,
        reloader: None,
    };
    let served = exporter::run_with(exporter, listener, setup, shutdown).await;
    let _ = sim_server.await;
    let _ = std::fs::remove_dir_all(&storage);
    Ok(served?)
}
