//! End to end with the real tools: the built exporter in `demo` mode, scraped every second by
//! a real Prometheus that loads the shipped `examples/alerts.yml` and sends to a real
//! Alertmanager, whose webhook receiver is a small HTTP server in this test.
//!
//! Asserts that the StartTaskFailed alert of the task the demo fails reaches the webhook with
//! that task's app/room/task labels, one alert per task; that no alert names a healthy task;
//! and that every PromQL expression of `dashboards/*.json` evaluates without error against
//! that Prometheus, panels fed by the demo returning data.
//!
//! A second test runs the exporter with an empty `targets:` list and `callbacks:` configured,
//! the demo's world in a simulator in this process sending signed lifecycle callbacks: every
//! announced task is discovered and reaches the simulator's truth, and each StartTaskFailed
//! task's alert reaches the webhook the same way. The two tests run side by side (about 30 s).
//! Every child process is killed at the end, on failure too. Uses `/usr/bin/prometheus` and `/usr/bin/prometheus-alertmanager`
//! (or `$PROMETHEUS` / `$ALERTMANAGER`); `scripts/install-test-deps` installs them.

mod tools;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};

use tools::{repo_path, tool, EXPORTED_SERIES};

/// How long the demo may take to show its first StartTaskFailed task.
const FIRST_FAILURE_WITHIN: Duration = Duration::from_secs(120);
/// From the failed task's first appearance in `/metrics` to the webhook: one scrape, one rule
/// evaluation, Prometheus' notification queue, Alertmanager's group_wait (1 s), with slack for
/// a loaded machine.
const ALERT_WITHIN: Duration = Duration::from_secs(30);

/// The documented metrics the demo must export within its first minute (tasks start, run, end with
/// files, fail; requests are made), under exactly these names: every series of the
/// specification (the histogram by its `_bucket` series alone) and the process start time.
fn fed_by_demo() -> Vec<&'static str> {
    EXPORTED_SERIES
        .iter()
        .copied()
        .filter(|m| !m.ends_with("_sum") && !m.ends_with("_count"))
        .chain(["process_start_time_seconds"])
        .collect()
}

type Labels = BTreeMap<String, String>;

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = volc_rtc_exporter::clock::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("volc-e2e-{}-{n}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop; its output goes to a log file whose tail is
/// printed if the test is failing.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, program: &str, args: &[String], dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} ({program}): {e}; install it with scripts/install-test-deps")
            });
        Proc { name, child, log }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited early with {status}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(25)..].join("\n")
            };
            eprintln!("---- last lines of {} ----\n{tail}", self.name);
        }
    }
}

/// The client the tests reach every process with: a 10 s timeout per request.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// Waits for `url` to answer 2xx, failing as soon as `process` exits.
async fn wait_ok(client: &reqwest::Client, url: &str, within: Duration, process: &mut Proc) {
    let deadline = Instant::now() + within;
    loop {
        process.assert_running();
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} not ready within {within:?}"
        );
        sleep(Duration::from_millis(200)).await;
    }
}

/// The webhook receiver: every request body (an Alertmanager notification) with its arrival
/// time goes to the channel; each answered 200.
async fn webhook(listener: TcpListener, tx: mpsc::UnboundedSender<(Instant, Value)>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let body_start = loop {
                let Ok(n) = sock.read(&mut chunk).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < body_start + length {
                match sock.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let arrived = Instant::now();
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
            let end = buf.len().min(body_start + length);
            if let Ok(v) = serde_json::from_slice::<Value>(&buf[body_start..end]) {
                let _ = tx.send((arrived, v));
            }
        });
    }
}

/// Parses `name{a="x",b="y"} value` lines of the exposition text for one metric name.
fn series(text: &str, name: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            let mut labels = Labels::new();
            let chars: Vec<char> = rest.chars().collect();
            let mut i = 0;
            loop {
                while i < chars.len() && (chars[i] == ',' || chars[i] == ' ') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    i += 1;
                    break;
                }
                let start = i;
                while i < chars.len() && chars[i] != '=' {
                    i += 1;
                }
                let key: String = chars[start..i].iter().collect();
                i += 2; // `="`
                let mut val = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                        val.push(match chars[i] {
                            'n' => '\n',
                            c => c,
                        });
                    } else {
                        val.push(chars[i]);
                    }
                    i += 1;
                }
                i += 1;
                labels.insert(key, val);
            }
            let rest: String = chars[i.min(chars.len())..].iter().collect();
            (labels, rest)
        } else if rest.starts_with(' ') {
            (Labels::new(), rest.to_string())
        } else {
            continue; // another metric whose name starts with `name`
        };
        if let Some(v) = value.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.push((labels, v));
        }
    }
    out
}

/// `(kind, app_id, room_id, task_id)` of a label set.
fn task_of(labels: &Labels) -> Option<(String, String, String, String)> {
    Some((
        labels.get("kind")?.clone(),
        labels.get("app_id")?.clone(),
        labels.get("room_id")?.clone(),
        labels.get("task_id")?.clone(),
    ))
}

type TaskKey = (String, String, String, String);

/// What the exporter says about each task right now.
#[derive(Default)]
struct Tasks {
    status: BTreeMap<TaskKey, f64>,
    reason: BTreeMap<TaskKey, String>,
    /// Record tasks: how many files, and their total size.
    files: BTreeMap<TaskKey, (f64, f64)>,
}

impl Tasks {
    fn from_metrics(text: &str) -> Tasks {
        let mut t = Tasks::default();
        for (l, v) in series(text, "volcengine_rtc_task_status") {
            if let Some(k) = task_of(&l) {
                t.status.insert(k, v);
            }
        }
        for (l, v) in series(text, "volcengine_rtc_task_stop_reason") {
            if let (Some(k), true) = (task_of(&l), v == 1.0) {
                t.reason
                    .insert(k, l.get("reason").cloned().unwrap_or_default());
            }
        }
        for (l, v) in series(text, "volcengine_rtc_record_files") {
            if let Some(k) = task_of(&l) {
                t.files.entry(k).or_default().0 = v;
            }
        }
        for (l, v) in series(text, "volcengine_rtc_record_size_bytes") {
            if let Some(k) = task_of(&l) {
                t.files.entry(k).or_default().1 = v;
            }
        }
        t
    }

    fn start_failed(&self) -> BTreeSet<TaskKey> {
        self.reason
            .iter()
            .filter(|(_, r)| *r == "StartTaskFailed")
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Grafana variables replaced so an expression runs as plain PromQL.
fn substitute(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__range", "5m")
        .replace("$__interval", "15s");
    // `${name}`, `${name:format}` and `$name` -> `.*` (all variables are regex matchers here).
    let mut out = String::new();
    let chars: Vec<char> = e.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' && i + 1 < chars.len() && chars[i + 1] == '{' {
            while i < chars.len() && chars[i] != '}' {
                i += 1;
            }
            out.push_str(".*");
            i += 1;
        } else if chars[i] == '$'
            && i + 1 < chars.len()
            && (chars[i + 1].is_ascii_alphabetic() || chars[i + 1] == '_')
        {
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push_str(".*");
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// True if the expression filters on current state (a comparison outside label matchers and
/// strings), so that an empty answer is legitimate.
fn filters_on_state(expr: &str) -> bool {
    let mut depth = 0;
    let mut in_str: Option<char> = None;
    let chars: Vec<char> = expr.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        match (in_str, c) {
            (Some(q), c) if c == q => in_str = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => in_str = Some(c),
            (None, '{') => depth += 1,
            (None, '}') => depth -= 1,
            (None, '<' | '>') if depth == 0 => return true,
            (None, '=') if depth == 0 && chars.get(i + 1) == Some(&'=') => return true,
            (None, '!') if depth == 0 && chars.get(i + 1) == Some(&'=') => return true,
            _ => {}
        }
    }
    false
}

/// GET and parse a JSON body, whatever the HTTP status (Prometheus explains errors in JSON).
async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{status}: not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

async fn prom_query(client: &reqwest::Client, base: &str, expr: &str) -> Result<usize, String> {
    let url = format!(
        "{base}/api/v1/query?query={}",
        utf8_percent_encode(expr, NON_ALPHANUMERIC)
    );
    let body = get_json(client, &url).await?;
    if body["status"] != "success" {
        return Err(format!("{}: {}", body["errorType"], body["error"]));
    }
    Ok(match &body["data"]["result"] {
        Value::Array(a) => a.len(),
        Value::Null => 0,
        _ => 1, // scalar or string
    })
}

async fn metric_names(client: &reqwest::Client, base: &str) -> BTreeSet<String> {
    let body = get_json(client, &format!("{base}/api/v1/label/__name__/values"))
        .await
        .expect("metric names");
    body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// Metric-looking identifiers of an expression (for deciding whether the demo feeds a panel).
fn referenced_metrics(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("volcengine_rtc_") || w.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

fn write(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// How long each process may take to answer `/-/ready`.
const BOOT_WITHIN: Duration = Duration::from_secs(60);

/// The real tools around an exporter on `127.0.0.1:<exporter_port>`: Prometheus scraping it and
/// evaluating the shipped `examples/alerts.yml` every second, Alertmanager (group_wait 1 s, one
/// group per task) sending to this test's webhook receiver. Both processes are killed on drop.
struct Stack {
    prometheus: Proc,
    alertmanager: Proc,
    prom_base: String,
    notifications: mpsc::UnboundedReceiver<(Instant, Value)>,
    hook: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// Starts the webhook, Alertmanager and Prometheus (configs written into `dir`) and waits
    /// until both tools are ready.
    async fn start(dir: &Path, exporter_port: u16, client: &reqwest::Client) -> Stack {
        let hook = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind webhook");
        let hook_port = hook.local_addr().expect("addr").port();
        let (tx, notifications) = mpsc::unbounded_channel();
        let hook = tokio::spawn(webhook(hook, tx));
        let (prom_port, am_port) = (free_port(), free_port());
        let prom_base = format!("http://127.0.0.1:{prom_port}");
        let am_base = format!("http://127.0.0.1:{am_port}");

        write(
            &dir.join("alertmanager.yml"),
            &format!(
                "route:\n  receiver: hook\n  group_by: [alertname, app_id, room_id, task_id, action]\n  \
                 group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: hook\n    webhook_configs:\n      \
                 - url: http://127.0.0.1:{hook_port}/hook\n        send_resolved: false\n"
            ),
        );
        let mut alertmanager = Proc::spawn(
            "alertmanager",
            &tool(
                "ALERTMANAGER",
                &[
                    "/usr/bin/prometheus-alertmanager",
                    "/usr/bin/alertmanager",
                    "alertmanager",
                ],
            ),
            &[
                format!("--config.file={}", dir.join("alertmanager.yml").display()),
                format!("--storage.path={}", dir.join("am-data").display()),
                format!("--web.listen-address=127.0.0.1:{am_port}"),
                "--cluster.listen-address=".into(),
            ],
            dir,
        );

        let rules = repo_path("examples/alerts.yml");
        write(
            &dir.join("prometheus.yml"),
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
                 scrape_configs:\n  - job_name: volcengine-rtc-exporter\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{exporter_port}']\n",
                rules.display()
            ),
        );
        let mut prometheus = Proc::spawn(
            "prometheus",
            &tool("PROMETHEUS", &["/usr/bin/prometheus", "prometheus"]),
            &[
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
                format!("--web.listen-address=127.0.0.1:{prom_port}"),
            ],
            dir,
        );
        wait_ok(
            client,
            &format!("{am_base}/-/ready"),
            BOOT_WITHIN,
            &mut alertmanager,
        )
        .await;
        wait_ok(
            client,
            &format!("{prom_base}/-/ready"),
            BOOT_WITHIN,
            &mut prometheus,
        )
        .await;
        Stack {
            prometheus,
            alertmanager,
            prom_base,
            notifications,
            hook,
        }
    }

    fn assert_running(&mut self) {
        self.prometheus.assert_running();
        self.alertmanager.assert_running();
    }

    /// Moves the notifications received so far into `into`.
    fn drain(&mut self, into: &mut Vec<(Instant, Value)>) {
        while let Ok(n) = self.notifications.try_recv() {
            into.push(n);
        }
    }
}

/// The exporter binary with `args`, listening on a free loopback port, and the [`Stack`]
/// around it, all ready; returns the exporter, its base URL and the stack.
async fn start_with_stack(
    dir: &Path,
    args: &[String],
    client: &reqwest::Client,
) -> (Proc, String, Stack) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut args = args.to_vec();
    args.push(format!("--web.listen-address=127.0.0.1:{port}"));
    let mut exporter = Proc::spawn(
        "exporter",
        env!("CARGO_BIN_EXE_volcengine-rtc-exporter"),
        &args,
        dir,
    );
    let stack = Stack::start(dir, port, client).await;
    wait_ok(
        client,
        &format!("{base}/-/ready"),
        BOOT_WITHIN,
        &mut exporter,
    )
    .await;
    (exporter, base, stack)
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.hook.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_task_failed_reaches_alertmanager_and_dashboards_evaluate() {
    let tmp = TempDir::new();
    let dir = tmp.0.clone();
    let client = http_client();

    let (mut exporter, exporter_base, mut stack) =
        start_with_stack(&dir, &["demo".into()], &client).await;
    let prom_base = stack.prom_base.clone();

    // Watch the exporter until a StartTaskFailed task shows up, then until its alert arrives.
    let started = Instant::now();
    let mut first_seen: BTreeMap<TaskKey, Instant> = BTreeMap::new();
    let mut notifications: Vec<(Instant, Value)> = Vec::new();
    let mut latency: Option<(TaskKey, Duration)> = None;
    let mut last_metrics = String::new();
    while latency.is_none() {
        exporter.assert_running();
        stack.assert_running();
        if let Ok(r) = client.get(format!("{exporter_base}/metrics")).send().await {
            if let Ok(text) = r.text().await {
                let now = Instant::now();
                for k in Tasks::from_metrics(&text).start_failed() {
                    first_seen.entry(k).or_insert(now);
                }
                last_metrics = text;
            }
        }
        stack.drain(&mut notifications);
        for (at, n) in &notifications {
            for a in n["alerts"].as_array().into_iter().flatten() {
                if a["labels"]["alertname"] != "VolcRtcTaskStartFailed" {
                    continue;
                }
                let labels: Labels =
                    serde_json::from_value(a["labels"].clone()).unwrap_or_default();
                if let Some(k) = task_of(&labels) {
                    if let Some(seen) = first_seen.get(&k) {
                        latency.get_or_insert((k.clone(), at.saturating_duration_since(*seen)));
                    }
                }
            }
        }
        if first_seen.is_empty() {
            assert!(
                started.elapsed() < FIRST_FAILURE_WITHIN,
                "the demo showed no StartTaskFailed task within {FIRST_FAILURE_WITHIN:?}"
            );
        } else {
            let earliest = first_seen.values().min().copied().unwrap_or(started);
            assert!(
                earliest.elapsed() < ALERT_WITHIN,
                "no VolcRtcTaskStartFailed alert for {:?} reached the webhook within {ALERT_WITHIN:?}; \
                 got {} notifications",
                first_seen.keys().collect::<Vec<_>>(),
                notifications.len()
            );
        }
        sleep(Duration::from_millis(200)).await;
    }
    let (alerted_task, alert_latency) = latency.clone().expect("loop ends with a latency");

    // Let a few more evaluation and notification rounds happen, then take stock.
    sleep(Duration::from_secs(5)).await;
    stack.drain(&mut notifications);
    if let Ok(r) = client.get(format!("{exporter_base}/metrics")).send().await {
        if let Ok(text) = r.text().await {
            last_metrics = text;
        }
    }
    let tasks = Tasks::from_metrics(&last_metrics);
    assert!(!tasks.status.is_empty(), "the demo exports task statuses");

    // Every alert must be about an unhealthy task, one alert per task.
    let mut per_task: BTreeMap<(String, TaskKey), BTreeSet<Labels>> = BTreeMap::new();
    for (_, n) in &notifications {
        for a in n["alerts"].as_array().into_iter().flatten() {
            if a["status"] != "firing" {
                continue;
            }
            let labels: Labels = serde_json::from_value(a["labels"].clone()).unwrap_or_default();
            let name = labels.get("alertname").cloned().unwrap_or_default();
            let task = task_of(&labels);
            match (name.as_str(), &task) {
                ("VolcRtcTaskStartFailed", Some(k)) => {
                    assert_eq!(
                        tasks.reason.get(k).map(String::as_str),
                        Some("StartTaskFailed"),
                        "StartTaskFailed alert for {k:?}, which did not fail to start"
                    );
                    assert_eq!(labels.get("severity").map(String::as_str), Some("critical"));
                    let summary = a["annotations"]["description"].as_str().unwrap_or_default();
                    for part in [&k.1, &k.2, &k.3] {
                        assert!(summary.contains(part.as_str()), "{summary:?} names {part}");
                    }
                }
                ("VolcRtcTaskFailed", Some(k)) => {
                    assert_eq!(
                        tasks.status.get(k),
                        Some(&4.0),
                        "TaskFailed alert for {k:?}"
                    );
                    assert_ne!(
                        tasks.reason.get(k).map(String::as_str),
                        Some("StartTaskFailed")
                    );
                }
                ("VolcRtcWebcastNearMaxRunningTime", Some(k)) => {
                    assert_eq!(k.0, "webcast", "{k:?}");
                }
                _ => panic!("unexpected alert for a demo run: {labels:?}"),
            }
            if let Some(k) = task {
                per_task.entry((name, k)).or_default().insert(labels);
            }
        }
    }
    for ((name, k), sets) in &per_task {
        assert_eq!(
            sets.len(),
            1,
            "{name} for {k:?} came as {} different alerts",
            sets.len()
        );
    }
    // The healthy endings never alert.
    for (k, reason) in &tasks.reason {
        if matches!(reason.as_str(), "StopByAPI" | "IdleTimeOut")
            && tasks.status.get(k) != Some(&4.0)
        {
            assert!(
                !per_task.keys().any(|(_, t)| t == k),
                "an alert fired for the healthy task {k:?} ({reason})"
            );
        }
    }
    let failed = tasks.start_failed();
    let alerted: BTreeSet<TaskKey> = per_task
        .keys()
        .filter(|(n, _)| n == "VolcRtcTaskStartFailed")
        .map(|(_, k)| k.clone())
        .collect();
    assert!(alerted.contains(&alerted_task));

    // The demo feeds every metric of the specification that the rules and dashboards use.
    let known = metric_names(&client, &prom_base).await;
    let missing: Vec<&str> = fed_by_demo()
        .into_iter()
        .filter(|m| !known.contains(*m))
        .collect();
    assert!(missing.is_empty(), "the demo never exported {missing:?}");

    // Every dashboard expression evaluates; panels the demo feeds return data.
    let mut checked = 0;
    let mut with_data = 0;
    let mut problems = Vec::new();
    let mut empty = Vec::new();
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(repo_path("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    dashboards.sort();
    for path in &dashboards {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read"))
            .expect("dashboard JSON");
        let mut panels: Vec<Value> = Vec::new();
        for p in d["panels"].as_array().into_iter().flatten() {
            panels.extend(p["panels"].as_array().into_iter().flatten().cloned());
            panels.push(p.clone());
        }
        for p in &panels {
            let title = p["title"].as_str().unwrap_or("?");
            let mut panel_has_data = false;
            let mut panel_fed = true;
            let mut all_state_filters = true;
            let mut any_query = false;
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(raw) = t["expr"].as_str() else {
                    continue;
                };
                any_query = true;
                let expr = substitute(raw);
                checked += 1;
                match prom_query(&client, &prom_base, &expr).await {
                    Ok(n) => {
                        if n > 0 {
                            with_data += 1;
                            panel_has_data = true;
                        } else {
                            empty.push(format!("{title} ({})", t["refId"].as_str().unwrap_or("?")));
                        }
                    }
                    Err(e) => problems.push(format!("{}: {title}: {e}\n  {expr}", path.display())),
                }
                panel_fed &= referenced_metrics(&expr).iter().all(|m| known.contains(m));
                all_state_filters &= filters_on_state(&expr);
            }
            if any_query && panel_fed && !all_state_filters && !panel_has_data {
                problems.push(format!(
                    "{}: {title}: no data though the demo feeds its metrics",
                    path.display()
                ));
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let Some(q) = v["query"]["query"].as_str() else {
                continue;
            };
            let Some(inner) = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
            else {
                continue;
            };
            let (series_expr, _) = inner.rsplit_once(',').unwrap_or((inner, ""));
            let url = format!(
                "{prom_base}/api/v1/series?match[]={}",
                utf8_percent_encode(&substitute(series_expr), NON_ALPHANUMERIC)
            );
            checked += 1;
            let body = get_json(&client, &url).await.unwrap_or_else(|e| {
                problems.push(format!("variable {}: {e}", v["name"]));
                Value::Null
            });
            if body.is_null() {
                continue;
            } else if body["status"] != "success" {
                problems.push(format!("variable {}: {}", v["name"], body["error"]));
            } else if body["data"].as_array().is_some_and(|a| a.is_empty()) {
                problems.push(format!("variable {}: no values", v["name"]));
            } else {
                with_data += 1;
            }
        }
    }

    println!(
        "alert latency: {:.1} s from first StartTaskFailed in /metrics to the webhook (task {:?})",
        alert_latency.as_secs_f64(),
        alerted_task
    );
    println!(
        "StartTaskFailed tasks: {} in /metrics, {} alerted; notifications received: {}",
        failed.len(),
        alerted.len(),
        notifications.len()
    );
    println!(
        "dashboard queries checked: {checked} ({with_data} returned data; empty now: {empty:?})"
    );
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (_, n) in &notifications {
        for a in n["alerts"].as_array().into_iter().flatten() {
            let name = a["labels"]["alertname"].as_str().unwrap_or("?").to_string();
            *names.entry(name).or_default() += 1;
        }
    }
    println!("alerts received by name: {names:?}");
    assert!(
        problems.is_empty(),
        "dashboard queries:\n{}",
        problems.join("\n")
    );
    assert!(checked > 20, "only {checked} dashboard queries found");
    assert!(alert_latency < ALERT_WITHIN);

    drop(stack);
    drop(exporter);
}

/// The callback key of [`callbacks_alone_discover_every_task_and_start_task_failed_pages`].
const CALLBACK_KEY: &str = "e2e-callback-key-0123456789abcdef";
/// How long after the demo world's start every task it has begun by then is expected to
/// match the simulator (its first 30 s hold most transitions; 26–40 s is quiet).
const TRUTH_FROM: Duration = Duration::from_secs(30);
/// The longest the callback run may take in all.
const CALLBACK_RUN_WITHIN: Duration = Duration::from_secs(90);

/// The exporter with an empty `targets:` list and `callbacks:` configured; the demo's world in
/// a simulator in this process, which POSTs its tasks' signed lifecycle events to the exporter
/// (those of the last 72 hours at once, as a world already running, then each as it comes
/// due). Every task so announced is discovered and reaches the simulator's truth (status,
/// stop reason, file count and total size), and every one that failed to start pages: its
/// `VolcRtcTaskStartFailed` (the shipped rules) reaches the webhook through the real
/// Prometheus and Alertmanager. No alert names a task that did not fail to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_alone_discover_every_task_and_start_task_failed_pages() {
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;
    use volc_rtc_exporter::clock::{now_ms, system_time_to_ms};
    use volc_rtc_exporter::credentials::Secret;
    use volc_rtc_exporter::sim::{self, Clock, SimOptions, SimTask, Simulator};

    let tmp = TempDir::new();
    let dir = tmp.0.clone();
    let client = http_client();

    let began = Instant::now();
    let world_start = volc_rtc_exporter::clock::now();
    let t0 = system_time_to_ms(world_start);
    let scenario = sim::demo_scenario(world_start);
    let simulator = Arc::new(Simulator::from_scenario(
        &scenario,
        SimOptions::default(),
        Clock::system(),
    ));
    let sim_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the simulator");
    let sim_port = sim_listener.local_addr().expect("addr").port();
    let stop = CancellationToken::new();
    let sim_server = tokio::spawn(sim::serve(sim_listener, simulator.clone(), stop.clone()));

    let c = &scenario.credentials;
    write(
        &dir.join("config.yaml"),
        &format!(
            "api:\n  endpoint: http://127.0.0.1:{sim_port}\n\
             credentials:\n  access_key_id: \"{}\"\n  secret_access_key: \"{}\"\n\
             budget:\n  GetRecordTask: 20\n  GetWebCastTask: 20\n\
             schedule:\n  active_interval: 1s\n  settle_interval: 1s\n  retention: 80h\n\
             callbacks:\n  secret_key: \"{CALLBACK_KEY}\"\n  labels:\n    env: e2e\n\
             targets: []\n",
            c.access_key_id,
            c.secret_access_key.expose()
        ),
    );
    let (mut exporter, exporter_base, mut stack) = start_with_stack(
        &dir,
        &[
            format!("--config.file={}", dir.join("config.yaml").display()),
            format!("--storage.path={}", dir.join("data").display()),
        ],
        &client,
    )
    .await;

    // The vendor's deliveries: the last 72 hours' events at once, then each as it comes due.
    let since = t0 - 72 * 3600 * 1000;
    let sender = sim::CallbackSender::new(
        &format!("{exporter_base}/callbacks/volcengine-rtc"),
        Secret::new(CALLBACK_KEY),
    )
    .expect("a loopback URL");
    let driver = tokio::spawn(sim::run_callbacks(
        simulator.clone(),
        sender,
        since,
        Duration::from_millis(100),
        stop.clone(),
    ));

    let key_of = |t: &SimTask| -> TaskKey {
        (
            t.kind().as_str().to_string(),
            t.app_id.clone(),
            t.room_id.clone(),
            t.task_id.clone(),
        )
    };
    // What the exporter should show for a task at `at_ms`: status, stop reason (terminal
    // tasks), files and their total size (record tasks). Past the 72-hour horizon the API
    // no longer answers and the exporter keeps the last values, which are the same.
    let truth = |t: &SimTask, at_ms: i64| {
        let s = t.state_ignoring_horizon(at_ms);
        let reason = (s.status >= 3).then(|| s.stop_reason.to_string());
        let files = (t.kind().as_str() == "record").then(|| {
            (
                s.files.len() as f64,
                s.files.iter().map(|f| f.size_bytes as f64).sum::<f64>(),
            )
        });
        (s.status as f64, reason, files)
    };

    let mut notifications: Vec<(Instant, Value)> = Vec::new();
    let mut last_metrics = String::new();
    let (announced, failed_to_start, alerted) = loop {
        exporter.assert_running();
        stack.assert_running();
        let at_ms = now_ms();
        if let Ok(r) = client.get(format!("{exporter_base}/metrics")).send().await {
            if let Ok(text) = r.text().await {
                last_metrics = text;
            }
        }
        let shown = Tasks::from_metrics(&last_metrics);
        // Tasks with an event due at least a second ago: delivered by now.
        let announced: Vec<&SimTask> = scenario
            .tasks
            .iter()
            .filter(|t| {
                t.callbacks()
                    .iter()
                    .any(|e| e.at_ms > since && e.at_ms <= at_ms - 1_000)
            })
            .collect();
        let mut wrong = Vec::new();
        for t in &announced {
            let k = key_of(t);
            let (status, reason, files) = truth(t, at_ms);
            let got = (
                shown.status.get(&k).copied(),
                shown.reason.get(&k).cloned(),
                shown.files.get(&k).copied(),
            );
            if got != (Some(status), reason.clone(), files) {
                wrong.push(format!(
                    "{k:?}: shown {got:?}, true {:?}",
                    (status, reason, files)
                ));
            }
        }
        stack.drain(&mut notifications);
        let alerted: BTreeSet<TaskKey> = firing(&notifications)
            .filter(|(name, _)| name == "VolcRtcTaskStartFailed")
            .filter_map(|(_, labels)| task_of(&labels))
            .collect();
        let failed_to_start: BTreeSet<TaskKey> = announced
            .iter()
            .filter(|t| truth(t, at_ms).1.as_deref() == Some("StartTaskFailed"))
            .map(|t| key_of(t))
            .collect();
        let paged = failed_to_start.is_subset(&alerted);
        if began.elapsed() >= TRUTH_FROM && wrong.is_empty() && paged {
            break (announced.len(), failed_to_start, alerted);
        }
        assert!(
            began.elapsed() < CALLBACK_RUN_WITHIN,
            "after {CALLBACK_RUN_WITHIN:?}: {} of {} announced tasks differ from the simulator:\n{}\n\
             StartTaskFailed tasks {failed_to_start:?}, alerted {alerted:?}",
            wrong.len(),
            announced.len(),
            wrong.join("\n")
        );
        sleep(Duration::from_millis(500)).await;
    };
    stop.cancel();
    let _ = driver.await;
    let _ = sim_server.await;

    // Nothing but the announced tasks is shown: no target list, nothing invented.
    let shown = Tasks::from_metrics(&last_metrics);
    let known: BTreeSet<TaskKey> = scenario.tasks.iter().map(key_of).collect();
    let stray: Vec<&TaskKey> = shown
        .status
        .keys()
        .filter(|k| !known.contains(*k))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // Every StartTaskFailed alert names a task that failed to start (no healthy task pages).
    for (name, labels) in firing(&notifications) {
        if name == "VolcRtcTaskStartFailed" {
            let k = task_of(&labels).expect("task labels");
            assert_eq!(
                shown.reason.get(&k).map(String::as_str),
                Some("StartTaskFailed"),
                "{labels:?}"
            );
            assert_eq!(labels.get("env").map(String::as_str), Some("e2e"));
        }
    }
    let deliveries = |outcome: &str| -> f64 {
        series(&last_metrics, "volcengine_rtc_callbacks_total")
            .into_iter()
            .filter(|(l, _)| l.get("outcome").map(String::as_str) == Some(outcome))
            .map(|(_, v)| v)
            .sum()
    };
    assert!(deliveries("accepted") >= announced as f64);
    assert_eq!(deliveries("bad_signature"), 0.0);
    assert!(
        failed_to_start.len() >= 3,
        "record and webcast StartTaskFailed tasks: {failed_to_start:?}"
    );
    println!(
        "callbacks only: {announced} tasks discovered and matching the simulator after {:.1} s \
         ({} deliveries accepted); StartTaskFailed alerts at the webhook for {} of {} tasks",
        began.elapsed().as_secs_f64(),
        deliveries("accepted"),
        alerted.intersection(&failed_to_start).count(),
        failed_to_start.len()
    );
    drop(stack);
    drop(exporter);
}

/// `(alertname, labels)` of every firing alert in the notifications.
fn firing(notifications: &[(Instant, Value)]) -> impl Iterator<Item = (String, Labels)> + '_ {
    notifications
        .iter()
        .flat_map(|(_, n)| n["alerts"].as_array().into_iter().flatten())
        .filter(|a| a["status"] == "firing")
        .filter_map(|a| {
            let labels: Labels = serde_json::from_value(a["labels"].clone()).ok()?;
            Some((labels.get("alertname")?.clone(), labels))
        })
}
