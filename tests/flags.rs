//! Every flag the binary lists and every endpoint the README lists is exercised through the
//! real binary:
//!
//! - the `--help` of the exporter and of each command is read, and each flag it lists must
//!   have a row in [`FLAGS`] naming the test that passes it to the binary; the row is checked
//!   against that test's source (the test exists, runs the binary, and uses the flag and the
//!   command), so a new flag without a test fails here;
//! - the same for the endpoints in the README's endpoint table, against [`ENDPOINTS`];
//! - and the tests of the flags no other test drives: `--log.format`, `--log.level`,
//!   `--web.max-requests`, and `demo`'s `--web.config.file` and `--storage.path`.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{scratch_dir, ChildProcess, BIN};

/// (command, flag, test file, test function): the test that passes `flag` to the binary
/// running `command` ("" is the exporter itself).
const FLAGS: &[(&str, &str, &str, &str)] = &[
    (
        "",
        "--config.file",
        "tests/cli.rs",
        "empty_storage_path_keeps_state_in_memory",
    ),
    (
        "",
        "--web.listen-address",
        "tests/cli.rs",
        "empty_storage_path_keeps_state_in_memory",
    ),
    (
        "",
        "--storage.path",
        "tests/cli.rs",
        "empty_storage_path_keeps_state_in_memory",
    ),
    (
        "",
        "--web.config.file",
        "tests/http.rs",
        "sighup_reloads_a_good_config_and_keeps_the_running_one_when_broken",
    ),
    (
        "",
        "--web.max-requests",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    (
        "",
        "--web.enable-lifecycle",
        "tests/http.rs",
        "sighup_reloads_a_good_config_and_keeps_the_running_one_when_broken",
    ),
    (
        "",
        "--web.enable-targets-api",
        "tests/target_files.rs",
        "targets_registered_through_the_api_are_polled_and_survive_a_restart",
    ),
    (
        "",
        "--web.read-header-timeout",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    (
        "",
        "--web.read-timeout",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    (
        "",
        "--web.write-timeout",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    ("", "--log.level", "tests/exporter.rs", "wrong_credentials"),
    (
        "",
        "--log.format",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "",
        "--help",
        "tests/flags.rs",
        "every_flag_of_every_command_is_exercised_through_the_binary",
    ),
    (
        "",
        "--version",
        "tests/cli.rs",
        "help_lists_every_flag_and_command",
    ),
    (
        "check",
        "--config.file",
        "tests/cli.rs",
        "check_broken_config_names_every_place",
    ),
    (
        "check",
        "--web.config.file",
        "tests/http.rs",
        "check_validates_the_web_config_file_too",
    ),
    (
        "check",
        "--log.level",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "check",
        "--log.format",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "check",
        "--help",
        "tests/flags.rs",
        "every_flag_of_every_command_is_exercised_through_the_binary",
    ),
    (
        "once",
        "--config.file",
        "tests/cli.rs",
        "once_prints_exact_values_and_names_failed_targets",
    ),
    (
        "once",
        "--log.level",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "once",
        "--log.format",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "once",
        "--help",
        "tests/flags.rs",
        "every_flag_of_every_command_is_exercised_through_the_binary",
    ),
    (
        "demo",
        "--web.listen-address",
        "tests/shutdown.rs",
        "demo_args",
    ),
    (
        "demo",
        "--web.read-header-timeout",
        "tests/http_hardening.rs",
        "running_out_of_open_files_is_logged_once_and_the_server_recovers",
    ),
    (
        "demo",
        "--web.read-timeout",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    (
        "demo",
        "--web.write-timeout",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    (
        "demo",
        "--web.config.file",
        "tests/flags.rs",
        "demo_serves_behind_basic_auth_and_keeps_its_storage_path",
    ),
    (
        "demo",
        "--web.max-requests",
        "tests/flags.rs",
        "max_requests_caps_the_exporter_and_demo",
    ),
    (
        "demo",
        "--web.enable-targets-api",
        "tests/callbacks_e2e.rs",
        "demo_discovers_its_unlisted_tasks_from_its_own_callbacks",
    ),
    (
        "demo",
        "--storage.path",
        "tests/flags.rs",
        "demo_serves_behind_basic_auth_and_keeps_its_storage_path",
    ),
    (
        "demo",
        "--log.level",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "demo",
        "--log.format",
        "tests/flags.rs",
        "log_format_and_level_on_every_command",
    ),
    (
        "demo",
        "--help",
        "tests/flags.rs",
        "every_flag_of_every_command_is_exercised_through_the_binary",
    ),
];

/// (endpoint, test file, test function): the test that asks the real binary for it.
const ENDPOINTS: &[(&str, &str, &str)] = &[
    (
        "/metrics",
        "tests/cli.rs",
        "demo_serves_metrics_and_stops_on_sigterm",
    ),
    (
        "/",
        "tests/callbacks_e2e.rs",
        "demo_discovers_its_unlisted_tasks_from_its_own_callbacks",
    ),
    (
        "/targets",
        "tests/callbacks_e2e.rs",
        "demo_discovers_its_unlisted_tasks_from_its_own_callbacks",
    ),
    (
        "/-/healthy",
        "tests/cli.rs",
        "demo_serves_metrics_and_stops_on_sigterm",
    ),
    (
        "/-/ready",
        "tests/flags.rs",
        "demo_serves_behind_basic_auth_and_keeps_its_storage_path",
    ),
    (
        "/-/reload",
        "tests/http.rs",
        "sighup_reloads_a_good_config_and_keeps_the_running_one_when_broken",
    ),
    (
        "/api/v1/targets",
        "tests/target_files.rs",
        "targets_registered_through_the_api_are_polled_and_survive_a_restart",
    ),
    (
        "/callbacks/volcengine-rtc",
        "tests/callbacks_e2e.rs",
        "callbacks_discover_every_task_without_a_target_list",
    ),
];

/// The source of a test file of this crate.
fn source(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The text of function `name` in `text`: from its `fn` to the first line that closes it at
/// the function's own indentation.
fn function<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("fn {name}("))?;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let indent = &text[line_start..start];
    let indent: String = indent.chars().take_while(|c| c.is_whitespace()).collect();
    let close = format!("\n{indent}}}");
    let end = text[start..]
        .find(&close)
        .map_or(text.len(), |i| start + i + close.len());
    Some(&text[start..end])
}

/// Whether a test file runs the real binary.
fn runs_the_binary(text: &str) -> bool {
    [
        "CARGO_BIN_EXE_",
        "ChildProcess",
        "binary_command",
        "start_binary",
        "start_demo",
        "BIN)",
        "(BIN",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// The flags an option list of `--help` shows: the first `--name` of each option line.
fn listed_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("-h, ")
            .or_else(|| t.strip_prefix("-V, "))
            .unwrap_or(t);
        if let Some(rest) = t.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                .collect();
            flags.push(format!("--{name}"));
        }
    }
    flags
}

fn help_of(command: &str) -> String {
    let mut cmd = std::process::Command::new(BIN);
    if !command.is_empty() {
        cmd.arg(command);
    }
    let out = cmd.arg("--help").output().expect("run --help");
    assert!(out.status.success(), "{command} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_flag_of_every_command_is_exercised_through_the_binary() {
    let mut missing = Vec::new();
    for command in ["", "check", "once", "demo"] {
        let help = help_of(command);
        let flags = listed_flags(&help);
        assert!(
            flags.len() >= 3,
            "no flags read from {command} --help:\n{help}"
        );
        for flag in flags {
            if !FLAGS.iter().any(|(c, f, _, _)| *c == command && *f == flag) {
                missing.push(format!("`{command} {flag}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "flags without a test through the binary (add one and a row to FLAGS): {}",
        missing.join(", ")
    );
    for (command, flag, file, name) in FLAGS {
        let text = source(file);
        assert!(runs_the_binary(&text), "{file} does not run the binary");
        let body = function(&text, name).unwrap_or_else(|| panic!("no fn {name} in {file}"));
        if !["--help", "--version"].contains(flag) {
            assert!(body.contains(flag), "{file}: {name} does not pass {flag}");
        }
        if !command.is_empty() {
            // `common::start_demo` runs `demo`.
            let runs = body.contains(&format!("\"{command}\""))
                || (*command == "demo" && body.contains("start_demo("));
            assert!(runs, "{file}: {name} does not run `{command}`");
        }
    }
}

#[test]
fn every_readme_endpoint_is_exercised_through_the_binary() {
    let readme = source("README.md");
    let table = readme
        .split("| endpoint | what it serves |")
        .nth(1)
        .expect("the README's endpoint table");
    let listed: Vec<&str> = table
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .collect();
    assert!(listed.len() >= 8, "endpoints read: {listed:?}");
    for endpoint in &listed {
        let Some((_, file, name)) = ENDPOINTS.iter().find(|(e, _, _)| e == endpoint) else {
            panic!("{endpoint} is in the README but has no test row in ENDPOINTS");
        };
        let text = source(file);
        assert!(runs_the_binary(&text), "{file} does not run the binary");
        let body = function(&text, name).unwrap_or_else(|| panic!("no fn {name} in {file}"));
        let asked = if *endpoint == "/" {
            body.contains("{base}/\"")
        } else {
            body.contains(endpoint)
        };
        assert!(asked, "{file}: {name} does not ask for {endpoint}");
    }
    for (endpoint, _, _) in ENDPOINTS {
        assert!(
            listed.contains(endpoint),
            "{endpoint} has a row but is not in the README"
        );
    }
}

/// A config for the exporter with one target in the config and one in a target file, its API
/// at a closed loopback port.
fn dead_api_config(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("targets")).expect("mkdir");
    std::fs::write(
        dir.join("targets/more.yaml"),
        "- kind: record\n  app_id: app1\n  room_id: r2\n  task_id: from-file\n",
    )
    .expect("write the targets file");
    common::write_config(
        dir,
        "api:\n  endpoint: http://127.0.0.1:9\n  timeout: 1s\ncredentials:\n  \
         access_key_id: AKLTflags\n  secret_access_key: c2VjcmV0\ntarget_files: \
         [\"targets/*.yaml\"]\ntargets:\n  - kind: record\n    app_id: app1\n    \
         room_id: r1\n    task_id: from-config\n",
    )
}

/// Every stderr line of a `--log.format=json` run is a JSON object with a level and message.
fn assert_json_lines(what: &str, stderr: &str) -> usize {
    let mut n = 0;
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        if line.starts_with("poll failed: ") {
            continue; // `once`'s report, not a log line
        }
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["message"].is_string(),
            "{what}: {line}"
        );
        n += 1;
    }
    n
}

#[tokio::test]
async fn log_format_and_level_on_every_command() {
    let dir = scratch_dir("flags-log");
    let config = dead_api_config(&dir);
    let config_arg = format!("--config.file={}", config.display());

    // once: debug shows the retries as JSON; info hides them. Both targets are polled, the
    // target file's too.
    for (level, retries) in [("debug", true), ("info", false)] {
        let out = common::binary_command(
            &[
                "once",
                &config_arg,
                &format!("--log.level={level}"),
                "--log.format=json",
            ],
            &[],
            &dir,
        )
        .output()
        .expect("run once");
        assert_eq!(out.status.code(), Some(1), "the API is down");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let logged = assert_json_lines("once", &stderr);
        assert_eq!(logged > 0, retries, "--log.level={level}:\n{stderr}");
        for task in ["from-config", "from-file"] {
            assert!(
                stderr.contains(&format!("task_id={task} at http://127.0.0.1:9:")),
                "{task} not polled:\n{stderr}"
            );
        }
    }

    // check: a broken target file is logged nowhere but in the error; what it logs is JSON.
    let out = common::binary_command(
        &[
            "check",
            &config_arg,
            "--log.level=debug",
            "--log.format=json",
        ],
        &[],
        &dir,
    )
    .output()
    .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_json_lines("check", &String::from_utf8_lossy(&out.stderr));

    // demo and the exporter: JSON lines from the first; warn hides the info lines.
    for (args, level) in [
        (vec!["demo", "--web.listen-address=127.0.0.1:0"], "info"),
        (vec!["demo", "--web.listen-address=127.0.0.1:0"], "warn"),
        (
            vec![config_arg.as_str(), "--web.listen-address=127.0.0.1:0"],
            "info",
        ),
    ] {
        let level_arg = format!("--log.level={level}");
        let mut args = args.clone();
        args.extend([level_arg.as_str(), "--log.format=json"]);
        let mut child = ChildProcess::spawn(&args, &[]);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        child.terminate(Duration::from_secs(10)).await;
        let stderr = child.stderr();
        let logged = assert_json_lines("serve", &stderr);
        if level == "info" {
            assert!(stderr.contains("\"level\":\"INFO\""), "{args:?}:\n{stderr}");
        } else {
            assert!(
                !stderr.contains("\"level\":\"INFO\""),
                "{args:?}:\n{stderr}"
            );
        }
        let _ = logged;
    }
}

/// A raw HTTP/1.1 request on its own connection; returns the status.
fn raw_status(addr: &str, request: &str) -> u16 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("read the status line");
    String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0)
}

/// Holds the only place: pipelines many scrapes on one connection and reads none of the
/// answers, so one of them stalls on a full socket (until `--web.write-timeout`).
fn stall_one_answer(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let requests = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(4000);
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = s.write_all(requests.as_bytes());
    s
}

/// The HTTP server's flags on the exporter and on `demo`: `--web.max-requests` (one place:
/// a stalled answer holds it, the next scrape gets 503, the probes still answer),
/// `--web.write-timeout` (the stalled answer's connection is dropped and the place freed),
/// `--web.read-header-timeout` (a silent connection is closed), `--web.read-timeout` (a body
/// that stops coming gets 408).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_caps_the_exporter_and_demo() {
    let dir = scratch_dir("flags-max");
    let config = dead_api_config(&dir);
    let config_arg = format!("--config.file={}", config.display());
    for args in [
        vec!["demo", "--web.listen-address=127.0.0.1:0"],
        vec![config_arg.as_str(), "--web.listen-address=127.0.0.1:0"],
    ] {
        let mut args = args.clone();
        args.extend([
            "--web.max-requests=1",
            "--web.enable-targets-api",
            "--web.read-header-timeout=1s",
            "--web.read-timeout=1s",
            "--web.write-timeout=2s",
        ]);
        let mut child = ChildProcess::spawn(&args, &[]);
        let addr = if args[0] == "demo" {
            child
                .wait_for_word_after("exporter listening on ", Duration::from_secs(20))
                .await
        } else {
            child
                .wait_for_word_after("message=listening address=", Duration::from_secs(20))
                .await
        };
        let get = |path: &'static str| {
            let addr = addr.clone();
            move || raw_status(&addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
        };
        let blocking = |f: Box<dyn FnOnce() -> u16 + Send>| async move {
            tokio::task::spawn_blocking(f).await.unwrap_or(0)
        };
        assert_eq!(blocking(Box::new(get("/metrics"))).await, 200);

        // A stalled answer holds the one place: the next scrape gets 503, the probes answer.
        let stalled_addr = addr.clone();
        let stalled = std::thread::spawn(move || stall_one_answer(&stalled_addr));
        let what = format!("{args:?}: a 503 while one answer holds the only place");
        common::wait_until(Duration::from_secs(5), &what, || async {
            blocking(Box::new(get("/metrics"))).await == 503
        })
        .await;
        assert_eq!(blocking(Box::new(get("/-/healthy"))).await, 200);
        // --web.write-timeout drops the stalled connection and frees the place.
        common::wait_until(Duration::from_secs(10), "the place is free again", || {
            let get = get("/metrics");
            async move { tokio::task::spawn_blocking(get).await.unwrap_or(0) == 200 }
        })
        .await;
        drop(stalled.join());

        // --web.read-header-timeout closes a connection that says nothing.
        let mut silent = TcpStream::connect(&addr).expect("connect");
        silent
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let t = tokio::time::Instant::now();
        let mut buf = [0u8; 64];
        let _ = silent.read(&mut buf);
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "{args:?}: a silent connection was closed after {waited:?}"
        );

        // --web.read-timeout: a registration whose body stops coming gets 408.
        let mut slow = TcpStream::connect(&addr).expect("connect");
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        slow.write_all(
            b"POST /api/v1/targets HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n[",
        )
        .expect("write");
        let mut head = [0u8; 12];
        slow.read_exact(&mut head).expect("an answer");
        assert_eq!(&head[9..12], b"408", "{args:?}");
        child.terminate(Duration::from_secs(10)).await;
    }
}

#[tokio::test]
async fn demo_serves_behind_basic_auth_and_keeps_its_storage_path() {
    let dir = scratch_dir("flags-demo");
    let hash = bcrypt::hash("demo-password", 4).expect("hash");
    let web = dir.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  ops: {hash}\n")).expect("write");
    let web_arg = format!("--web.config.file={}", web.display());
    let store = dir.join("demo-store");
    let store_arg = format!("--storage.path={}", store.display());
    let client = reqwest::Client::new();
    let mut stops_before = None;
    for run in 0..2 {
        let (mut child, addr) = common::start_demo(&[&web_arg, &store_arg]).await;
        let base = format!("http://{addr}");
        let anonymous = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("GET");
        assert_eq!(anonymous.status(), 401, "the web config's basic auth holds");
        // The probes need no password; /-/ready answers 200 once polling started.
        common::wait_until(Duration::from_secs(10), "/-/ready", || {
            let request = client.get(format!("{base}/-/ready"));
            async move { request.send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        // The demo's stop counters, as the store keeps them.
        let stops = |text: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with("volcengine_rtc_task_stops_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let scrape_stops = async || {
            let answer = client
                .get(format!("{base}/metrics"))
                .basic_auth("ops", Some("demo-password"))
                .send()
                .await
                .expect("GET");
            assert_eq!(answer.status(), 200);
            stops(&answer.text().await.expect("body"))
        };
        let seen = if run == 0 {
            child
                .poll_until(
                    Duration::from_secs(20),
                    "the demo to count a stop",
                    async || Some(scrape_stops().await).filter(|&seen| seen > 0.0),
                )
                .await
        } else {
            scrape_stops().await
        };
        child.terminate(Duration::from_secs(10)).await;
        let stderr = child.stderr();
        match run {
            0 => {
                assert!(seen > 0.0, "the demo counted no stop:\n{stderr}");
                stops_before = Some(seen);
            }
            _ => {
                // The counters come back from the store at once: never fewer than before.
                assert!(
                    seen >= stops_before.unwrap_or(f64::MAX),
                    "stops went from {stops_before:?} to {seen} across a restart:\n{stderr}"
                );
                assert!(stderr.contains("store opened"), "{stderr}");
            }
        }
        assert!(
            store.join("state.redb").exists() || store.is_dir(),
            "no store in {store:?}"
        );
        assert!(!stderr.contains("demo-password"), "the password is logged");
    }
}
