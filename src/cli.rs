//! Command-line flags, Prometheus style (`--config.file`, `--web.listen-address`, `--log.level`,
//! `--log.format`), converted once into checked values.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default port: outside the 9100–9999 exporter range, which is fully allocated.
pub const DEFAULT_PORT: u16 = 19966;

#[derive(Debug, Parser)]
#[command(
    name = "volcengine-rtc-exporter",
    version = env!("VOLC_EXPORTER_LONG_VERSION"),
    // Each command lists only the flags it uses; flags go after the command.
    args_conflicts_with_subcommands = true,
    about = "Prometheus exporter for Volcengine / BytePlus RTC cloud recording and web-capture tasks.",
    long_about = "Prometheus exporter for Volcengine / BytePlus RTC cloud recording (GetRecordTask) \
and web-page capture (GetWebCastTask) tasks.\n\n\
Without a command it runs the exporter: polls the configured targets inside the per-action \
request budget and serves /metrics, a landing page and /targets. SIGHUP reloads the \
configuration (a broken one is refused and the running one kept). `check` validates a config \
(and --web.config.file), `once` polls every target once and prints the metrics, `demo` runs \
against a built-in simulated API (no account needed)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: ConfigArgs,

    #[command(flatten)]
    pub web: WebArgs,

    #[command(flatten)]
    pub storage: StorageArgs,

    /// Reload the configuration on POST or PUT /-/reload (SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    pub enable_lifecycle: bool,

    /// Only log messages at or above this level.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    pub log_level: LogLevel,

    /// Log line format (logs go to stderr).
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt, global = true)]
    pub log_format: LogFormat,
}

/// `--config.file`: the exporter, `check` and `once`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Path to the YAML configuration file (see examples/config.yaml).
    #[arg(long = "config.file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

/// `--web.config.file`: the exporter, `demo` and `check` (which validates it).
#[derive(Debug, Clone, Default, Args)]
pub struct WebConfigArgs {
    /// Web configuration file (exporter-toolkit format) for TLS, mutual TLS and basic
    /// authentication of every endpoint but /-/healthy and /-/ready; `check` validates it too,
    /// and a reload re-reads it.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
}

/// The HTTP server's flags: the exporter and `demo`.
#[derive(Debug, Clone, Args)]
pub struct WebArgs {
    /// Address to serve /metrics, /, /targets, /-/healthy, /-/ready (and /-/reload,
    /// /api/v1/targets and the RTC callbacks path when enabled) on, as HOST:PORT or :PORT.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value_t = format!(":{DEFAULT_PORT}"),
        value_parser = parse_listen_address_str,
    )]
    pub listen_address: String,

    #[command(flatten)]
    pub web_config: WebConfigArgs,

    /// Most HTTP requests served at once; more get 503. 0 means no limit.
    #[arg(
        long = "web.max-requests",
        value_name = "N",
        default_value_t = crate::http::DEFAULT_MAX_REQUESTS
    )]
    pub max_requests: usize,

    /// Serve the registration API: GET, POST and DELETE /api/v1/targets. Protect it with
    /// basic_auth_users in --web.config.file.
    #[arg(long = "web.enable-targets-api")]
    pub enable_targets_api: bool,

    /// How long a client has, from connecting (TLS handshake included), to send a whole
    /// request head; also how long a connection may stay without a request before it is
    /// closed.
    #[arg(
        long = "web.read-header-timeout",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_timeout
    )]
    pub read_header_timeout: Duration,

    /// How long a request's body may take to arrive, from its head; a late one gets 408.
    #[arg(
        long = "web.read-timeout",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_timeout
    )]
    pub read_timeout: Duration,

    /// How long an answer may make no progress (a client that stopped reading, or an HTTP/2
    /// flow-control window of 0) before its connection is dropped.
    #[arg(
        long = "web.write-timeout",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_timeout
    )]
    pub write_timeout: Duration,
}

/// `--storage.path` of the exporter (`demo` has its own, with a temporary folder by default).
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Folder of the durable store: every target's last answer, phase and the stop counters,
    /// kept across restarts. Empty (`--storage.path=`) keeps state in memory only. Only one
    /// process may use a folder at a time.
    #[arg(
        long = "storage.path",
        value_name = "DIR",
        default_value = "./data",
        value_parser = parse_storage_path
    )]
    pub storage_path: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config (no network), print a summary; exit 1 on any problem.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        web_config: WebConfigArgs,
    },
    /// Poll every target once inside the budget, print the metrics on stdout; exit 1 if any poll failed.
    Once {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Run the exporter against a built-in simulated RTC API with a few dozen tasks (no account
    /// needed).
    #[cfg(feature = "sim")]
    Demo {
        #[command(flatten)]
        web: WebArgs,
        /// Folder of the durable store, kept across restarts of the demo. By default a
        /// temporary folder, new at each start and removed at the end; empty
        /// (`--storage.path=`) keeps state in memory only.
        #[arg(long = "storage.path", value_name = "DIR", value_parser = parse_storage_path)]
        storage_path: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl WebArgs {
    /// The `--web.*` switches for the server; `enable_lifecycle` is the exporter's own flag
    /// (`demo` has no config file to reload).
    pub fn options(&self, enable_lifecycle: bool) -> crate::http::Options {
        crate::http::Options {
            max_requests: self.max_requests,
            enable_lifecycle,
            enable_targets_api: self.enable_targets_api,
            read_header_timeout: self.read_header_timeout,
            read_timeout: self.read_timeout,
            write_timeout: self.write_timeout,
        }
    }
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Any text, the empty one included (clap's own path parser refuses it): empty means in memory.
fn parse_storage_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// A Prometheus duration (`10s`, `1m`) above zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match crate::duration::parse(s) {
        Ok(d) if d.is_zero() => Err(format!(
            "{s:?} is not valid: a timeout must be above 0, e.g. 10s"
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_listen_address_str(s: &str) -> Result<String, String> {
    parse_listen_address(s).map(|_| s.to_string())
}

/// `:9966` means every interface; `host:port` otherwise. Names other than `localhost` are not
/// resolved: give an IP address.
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let fix = "give HOST:PORT or :PORT, e.g. :19966 or 127.0.0.1:19966";
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?} is not a valid listen address: bad port; {fix}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{s:?} is not a valid listen address: bad port; {fix}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not a valid listen address; {fix}"))
}
