//! The `volcengine-rtc-exporter` binary: parse flags, run the command, turn its result into an
//! exit code (0 ok, 1 failed, 2 bad usage).

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::cli::{parse_listen_address, Cli, Command};
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
    let listen = parse_listen_address(&cli.listen_address).map_err(anyhow::Error::msg)?;
    let needs_config = || {
        cli.config_file.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "--config.file is required (try examples/config.yaml, or `demo` to run without an account)"
            )
        })
    };
    let web = WebFlags {
        config_file: cli.web_config_file.clone(),
        options: cli.web_options(),
    };
    match cli.command {
        Some(Command::Check) => {
            commands::check(&needs_config()?, cli.web_config_file.as_deref()).map(|()| true)
        }
        Some(Command::Once) => commands::once(commands::load_settings(&needs_config()?)?).await,
        #[cfg(feature = "sim")]
        Some(Command::Demo) => {
            commands::demo(listen, web, shutdown_on_signal()).await?;
            tracing::info!(target: LOG_TARGET, "stopped");
            Ok(true)
        }
        None => {
            let config_file = needs_config()?;
            let settings = commands::load_settings(&config_file)?;
            commands::serve(
                settings,
                &config_file,
                web,
                listen,
                &cli.storage_path,
                shutdown_on_signal(),
            )
            .await?;
            tracing::info!(target: LOG_TARGET, "stopped");
            Ok(true)
        }
    }
}

/// A token cancelled on SIGINT or SIGTERM; the signal is logged, and `stopped` once the
/// command has drained. The handlers are installed before this returns, so a signal sent as
/// soon as the exporter says it listens is not the default (die at once).
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    let signals = Signals::install();
    tokio::spawn(async move {
        let name = signals.wait().await;
        tracing::info!(
            target: LOG_TARGET,
            signal = name,
            "shutting down: polling stops, the HTTP server drains open requests"
        );
        t.cancel();
    });
    token
}

/// SIGINT and SIGTERM, listened for from [`Signals::install`] on.
#[cfg(unix)]
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Waits for either and names it.
    async fn wait(mut self) -> &'static str {
        async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = next(&mut self.interrupt) => "SIGINT",
            () = next(&mut self.terminate) => "SIGTERM",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Signals {
        Signals
    }

    async fn wait(self) -> &'static str {
        wait_for_signal().await
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
