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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listen_address_forms() {
        assert_eq!(
            parse_listen_address(":19966").ok(),
            Some("0.0.0.0:19966".parse().unwrap())
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:0").ok(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_listen_address("localhost:80").ok(),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert!(parse_listen_address("19966").is_err());
        assert!(parse_listen_address(":99999").is_err());
        assert!(parse_listen_address("[::1]:9").is_ok());
    }

    #[test]
    fn prometheus_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "x",
            "check",
            "--config.file=/tmp/c.yaml",
            "--log.format=json",
        ])
        .unwrap();
        let Some(Command::Check { config, .. }) = &cli.command else {
            panic!("not check: {cli:?}");
        };
        assert_eq!(config.config_file, Some(PathBuf::from("/tmp/c.yaml")));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(cli.web.listen_address, ":19966");
        assert!(Cli::try_parse_from(["x", "--web.listen-address=nope"]).is_err());
        assert_eq!(cli.web.options(false), crate::http::Options::default());
        let cli = Cli::try_parse_from([
            "x",
            "--web.config.file=web.yml",
            "--web.max-requests=3",
            "--web.enable-lifecycle",
            "--web.enable-targets-api",
            "--storage.path=",
        ])
        .unwrap();
        assert_eq!(
            cli.web.web_config.web_config_file,
            Some(PathBuf::from("web.yml"))
        );
        assert_eq!(cli.storage.storage_path, PathBuf::new());
        let options = cli.web.options(cli.enable_lifecycle);
        assert_eq!(options.max_requests, 3);
        assert!(options.enable_lifecycle && options.enable_targets_api);
        assert!(Cli::try_parse_from(["x", "--web.max-requests=-1"]).is_err());
        // Each command takes only its own flags.
        assert!(Cli::try_parse_from(["x", "demo", "--storage.path=/tmp/x"]).is_ok());
        assert!(Cli::try_parse_from(["x", "demo", "--config.file=c.yaml"]).is_err());
        assert!(Cli::try_parse_from(["x", "once", "--web.listen-address=:1"]).is_err());
        assert!(Cli::try_parse_from(["x", "demo", "--log.level=debug"]).is_ok());
        assert!(Cli::try_parse_from(["x", "demo", "--web.enable-lifecycle"]).is_err());
        let cli = Cli::try_parse_from([
            "x",
            "--web.read-header-timeout=2s",
            "--web.read-timeout=1m",
            "--web.write-timeout=500ms",
        ])
        .unwrap();
        let options = cli.web.options(false);
        assert_eq!(options.read_header_timeout, Duration::from_secs(2));
        assert_eq!(options.read_timeout, Duration::from_secs(60));
        assert_eq!(options.write_timeout, Duration::from_millis(500));
        for bad in [
            "--web.read-timeout=0",
            "--web.write-timeout=10",
            "--web.read-header-timeout=x",
        ] {
            assert!(Cli::try_parse_from(["x", bad]).is_err(), "{bad}");
        }
    }
}
