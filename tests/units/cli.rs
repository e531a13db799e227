//! `cli`: the flags are consistent, Prometheus-style and each command's own.

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use volc_rtc_exporter::cli::*;
use volc_rtc_exporter::http::Options;

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
    assert_eq!(cli.web.options(false), Options::default());
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
