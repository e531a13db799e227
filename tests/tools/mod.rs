//! Repository files and the external tools (promtool, amtool, Prometheus, Alertmanager, the
//! vendor SDK's Python server) for the tests that check the shipped examples, rules, dashboards
//! and signatures: every file finds and runs them the same way. Also the series names of
//! the documented metrics and the query of one OpenAPI call, as those servers and the simulator read it. A missing tool is a failure, never a skip. Kept apart from `common` (the
//! exporter and simulator harness, with its own parser test) so these files neither build that
//! harness nor run that test again. Each test file uses only part of this module, hence
//! `allow(dead_code)`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Every series name of the exporter's own metric families (as documented in the README), the request-duration
/// histogram as its `_bucket`, `_sum` and `_count` series.
pub const EXPORTED_SERIES: &[&str] = &[
    "volcengine_rtc_task_status",
    "volcengine_rtc_task_start_timestamp_seconds",
    "volcengine_rtc_task_end_timestamp_seconds",
    "volcengine_rtc_task_duration_seconds",
    "volcengine_rtc_task_stop_reason",
    "volcengine_rtc_record_files",
    "volcengine_rtc_record_size_bytes",
    "volcengine_rtc_record_file_size_bytes",
    "volcengine_rtc_record_file_duration_seconds",
    "volcengine_rtc_webcast_max_running_time_seconds",
    "volcengine_rtc_target_up",
    "volcengine_rtc_target_last_success_timestamp_seconds",
    "volcengine_rtc_task_stops_total",
    "volcengine_rtc_targets",
    "volcengine_rtc_api_requests_total",
    "volcengine_rtc_api_request_duration_seconds_bucket",
    "volcengine_rtc_api_request_duration_seconds_sum",
    "volcengine_rtc_api_request_duration_seconds_count",
    "volcengine_rtc_api_budget_requests_per_second",
    "volcengine_rtc_api_rate_limit_requests_per_second",
    "volcengine_rtc_scheduler_lag_seconds",
    "volcengine_rtc_exporter_build_info",
    "volcengine_rtc_config_last_reload_successful",
    "volcengine_rtc_config_last_reload_success_timestamp_seconds",
];

/// Series of the exporter's own metrics that appear only when the feature behind them is in
/// use (the store, callbacks, config reloads, target files), so `demo` need not export them.
pub const FEATURE_SERIES: &[&str] = &[
    "volcengine_rtc_storage_errors_total",
    "volcengine_rtc_callbacks_total",
    "volcengine_rtc_config_last_reload_successful",
    "volcengine_rtc_target_file_last_load_successful",
];

/// A file or folder of the repository, by its path from the root.
pub fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A text file of the repository; panics naming the file when it cannot be read.
pub fn read_repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file of the repository, parsed; panics naming the file when it is not valid YAML.
pub fn repo_yaml(path: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read_repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `cmd` with `input` on its stdin, its stdout and stderr collected; panics with
/// `cannot_start` (what to install) and the error when it does not start.
pub fn run_with_input(cmd: &mut Command, input: &[u8], cannot_start: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cannot_start}: {e}"));
    let program = cmd.get_program().to_string_lossy().into_owned();
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input)
        .unwrap_or_else(|e| panic!("write to {program}: {e}"));
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {program}: {e}"))
}

/// The program to run for an external tool: `$env` when set, else the first of `candidates`
/// that exists, else the last candidate's file name, left to the PATH. A missing tool is not
/// skipped: running it fails (`scripts/install-test-deps` installs them).
pub fn tool(env: &str, candidates: &[&str]) -> String {
    if let Ok(p) = std::env::var(env) {
        return p;
    }
    for c in candidates {
        if Path::new(c).exists() {
            return c.to_string();
        }
    }
    candidates
        .last()
        .and_then(|c| Path::new(c).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// promtool: `$PROMTOOL`, else `/usr/bin/promtool`, else `promtool` on the PATH.
pub fn promtool_program() -> String {
    tool("PROMTOOL", &["/usr/bin/promtool"])
}

/// Runs `program` with `args` in the repository root and waits for it; panics when it cannot
/// be started.
pub fn run_in_repo(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install it with scripts/install-test-deps")
        })
}

/// `promtool` with `args`, run in the repository root.
pub fn promtool(args: &[&str]) -> Output {
    run_in_repo(&promtool_program(), args)
}

/// What a finished command printed: its stdout, then its stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The query of one OpenAPI call: action, version, IDs (`TaskId` only when given).
pub fn api_query<'a>(
    action: &'a str,
    version: &'a str,
    app: &'a str,
    room: &'a str,
    task: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut q = vec![
        ("Action", action),
        ("Version", version),
        ("AppId", app),
        ("RoomId", room),
    ];
    if let Some(task) = task {
        q.push(("TaskId", task));
    }
    q
}

/// The Python interpreter with the vendor SDK: `$PYTHON`, else `python3` on the PATH.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `tests/py/sdk_server.py`, a fake OpenAPI that checks every signature with the vendor's own
/// Python SDK, on a loopback port; killed when dropped. Fails, never skips, when `python3` or
/// the `volcengine` package is missing.
pub struct SdkServer {
    child: Child,
    pub port: u16,
}

impl SdkServer {
    /// Starts it with `args` after `--port 0` (`--credential AK:SK[:TOKEN]`, ...) and waits
    /// for the port it prints.
    pub fn start(args: &[&str]) -> SdkServer {
        let script = repo_path("tests/py/sdk_server.py");
        let python = python();
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {python} (needed for sdk_server.py; see scripts/install-test-deps): {e}")
            });
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout piped");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read sdk_server.py's first line");
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => SdkServer { child, port },
            None => {
                let _ = child.kill();
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("sdk_server.py did not start (is the vendor SDK installed? pip install volcengine): {line:?}\n{err}");
            }
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SdkServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
