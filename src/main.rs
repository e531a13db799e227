//! The `volcengine-rtc-exporter` binary: parse flags, run the command, turn its result into an
//! exit code (0 ok, 1 failed, 2 bad usage).

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::cli::{parse_listen_address, Cli, Command, ConfigArgs, WebArgs};
use volc_rtc_exporter::commands::WebFlags;
use volc_rtc_exporter::{commands, logging};

/// The log target of the binary's own events: under the library's crate name, which is what
/// the log filter enables (the binary's crate name is another).
const LOG_TARGET: &str = "volc_rtc_exporter::main";

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Some(Command::Check { config, web_config }) => commands::check(
            &needs_config(config)?,
            web_config.web_config_file.as_deref(),
        )
        .map(|()| true),
        Some(Command::Once { config }) => {
            commands::once(commands::load_settings(&needs_config(config)?)?).await
        }
        #[cfg(feature = "sim")]
        Some(Command::Demo { web, storage_path }) => {
            // Before anything is printed: a signal from then on stops the demo cleanly.
            let shutdown = shutdown_on_signal()?;
            let listen = parse_listen_address(&web.listen_address).map_err(anyhow::Error::msg)?;
            commands::demo(listen, web_flags(&web, false), storage_path, shutdown).await?;
            tracing::info!(target: LOG_TARGET, "stopped");
            Ok(true)
        }
        None => {
            let shutdown = shutdown_on_signal()?;
            // SIGHUP reloads once the exporter runs; one that comes before is ignored (the
            // config is being read anyway) rather than ending the process.
            #[cfg(unix)]
            drop(
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                    .map_err(|e| anyhow::anyhow!("cannot install the SIGHUP handler: {e}"))?,
            );
            let listen =
                parse_listen_address(&cli.web.listen_address).map_err(anyhow::Error::msg)?;
            let config_file = needs_config(cli.config)?;
            let settings = commands::load_settings(&config_file)?;
            commands::serve(
                settings,
                &config_file,
                web_flags(&cli.web, cli.enable_lifecycle),
                listen,
                &cli.storage.storage_path,
                shutdown,
            )
            .await?;
            tracing::info!(target: LOG_TARGET, "stopped");
            Ok(true)
        }
    }
}

fn needs_config(config: ConfigArgs) -> anyhow::Result<std::path::PathBuf> {
    config.config_file.ok_or_else(|| {
        anyhow::anyhow!(
            "--config.file is required (try examples/config.yaml, or `demo` to run without an account)"
        )
    })
}

fn web_flags(web: &WebArgs, enable_lifecycle: bool) -> WebFlags {
    WebFlags {
        config_file: web.web_config.web_config_file.clone(),
        options: web.options(enable_lifecycle),
    }
}

/// A token cancelled on SIGINT or SIGTERM; the signal is logged, and `stopped` once the
/// command has drained. The handlers are installed here, before the command announces
/// anything, so a signal sent at once after the first output line is handled, never the
/// default action that ends the process unclean.
fn shutdown_on_signal() -> anyhow::Result<CancellationToken> {
    let signals = Signals::install()?;
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let name = signals.recv().await;
        tracing::info!(
            target: LOG_TARGET,
            signal = name,
            "shutting down: polling stops, the HTTP server drains open requests"
        );
        t.cancel();
    });
    Ok(token)
}

/// SIGINT and SIGTERM, listened to from the moment they are installed.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let install = |kind: SignalKind, name: &str| {
            signal(kind).map_err(|e| anyhow::anyhow!("cannot install the {name} handler: {e}"))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt(), "SIGINT")?,
            terminate: install(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// Waits for SIGINT or SIGTERM and names it.
    async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> anyhow::Result<Signals> {
        Ok(Signals)
    }

    async fn recv(self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
