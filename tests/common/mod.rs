//! Shared helpers for the integration tests: the simulator and the exporter on loopback ports,
//! `/metrics` scraped over HTTP and parsed into a map of series → value, and poll-until loops
//! with deadlines (no fixed sleeps where a condition can be waited for); the real binary as a
//! child process ([`start_binary`], [`start_demo`], [`ChildProcess::scrape_until`]) with its
//! config file, reloads and targets API; and, in [`tls`], certificates made for a test. Each
//! test file uses only part of this module, hence `allow(dead_code)`.
#![allow(dead_code)]

pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use volc_rtc_exporter::config::{CredentialSource, Endpoint, ScheduleSettings, Settings};
use volc_rtc_exporter::credentials::Credentials;
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::model::{Kind, Outcome, Target, TargetKey};
use volc_rtc_exporter::runtime::{self, Exporter};
use volc_rtc_exporter::sim::{self, Simulator};

/// Series → value. A series is `name{label="value",...}` with its labels sorted by name (no
/// braces when it has none), so keys do not depend on the order the exporter writes them in.
pub type Metrics = BTreeMap<String, f64>;

/// The canonical key of a series.
pub fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    sorted.sort();
    canonical(name, &sorted)
}

fn canonical(name: &str, sorted: &[(String, String)]) -> String {
    if sorted.is_empty() {
        return name.to_string();
    }
    let mut s = format!("{name}{{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s.push('}');
    s
}

/// Parses the text exposition format (0.0.4). Fails on any line that is not a comment, blank,
/// or a well-formed sample, and on a series that appears twice.
pub fn parse_exposition(text: &str) -> Result<Metrics, String> {
    let mut out = Metrics::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        let name_end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() {
            return Err(bad("no metric name"));
        }
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let mut consumed = None;
            loop {
                // label name
                let mut lname = String::new();
                let mut closed = false;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    if c == '}' && lname.is_empty() {
                        consumed = Some(i + 1);
                        closed = true;
                        break;
                    }
                    lname.push(c);
                }
                if closed {
                    break;
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("label value not quoted"));
                }
                let mut value = String::new();
                let mut ended = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(bad("bad escape")),
                        },
                        '"' => {
                            ended = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !ended {
                    return Err(bad("unterminated label value"));
                }
                labels.push((lname, value));
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        consumed = Some(i + 1);
                        break;
                    }
                    _ => return Err(bad("expected , or }")),
                }
            }
            let consumed = consumed.ok_or_else(|| bad("unterminated label set"))?;
            rest = &after[consumed..];
        }
        let value_text = rest
            .strip_prefix(' ')
            .ok_or_else(|| bad("no space before the value"))?;
        // An optional timestamp may follow the value.
        let value_text = value_text.split(' ').next().unwrap_or("");
        let value: f64 = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| bad("value is not a number"))?,
        };
        labels.sort();
        let k = canonical(name, &labels);
        if out.insert(k, value).is_some() {
            return Err(bad("series appears twice"));
        }
    }
    Ok(out)
}

/// The labels every per-target series carries (no extra labels).
pub fn target_labels(key: &TargetKey) -> Vec<(&str, &str)> {
    vec![
        ("kind", key.kind.as_str()),
        ("app_id", key.app_id.as_str()),
        ("room_id", key.room_id.as_str()),
        ("task_id", key.task_id.as_deref().unwrap_or("")),
    ]
}

/// A per-target series key, with extra labels (`file`, `reason`) appended.
pub fn tkey(name: &str, target: &TargetKey, extra: &[(&str, &str)]) -> String {
    let mut labels = target_labels(target);
    labels.extend_from_slice(extra);
    key(&format!("volcengine_rtc_{name}"), &labels)
}

/// A target without extra labels.
pub fn target(kind: Kind, app: &str, room: &str, task: &str) -> Target {
    Target {
        key: TargetKey {
            kind,
            app_id: app.into(),
            room_id: room.into(),
            task_id: Some(task.into()),
        },
        labels: Default::default(),
    }
}

/// The simulator on a loopback port.
pub struct SimServer {
    pub sim: Arc<Simulator>,
    pub addr: SocketAddr,
    shutdown: CancellationToken,
    handle: JoinHandle<std::io::Result<()>>,
}

impl SimServer {
    pub async fn start(sim: Simulator) -> SimServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the simulator on loopback");
        let addr = listener.local_addr().expect("simulator address");
        let sim = Arc::new(sim);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(sim::serve(listener, sim.clone(), shutdown.clone()));
        SimServer {
            sim,
            addr,
            shutdown,
            handle,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: Some(self.addr.port()),
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

/// Settings polling `sim` for `targets` with `credentials`, short intervals, given budget.
pub fn settings(
    sim: &SimServer,
    credentials: Credentials,
    targets: Vec<Target>,
    active: Duration,
    settle: Duration,
    budget: f64,
) -> Settings {
    let mut s = Settings::new(credentials, CredentialSource::Inline, targets);
    s.api.endpoint = sim.endpoint();
    s.schedule = ScheduleSettings {
        active_interval: active,
        settle_interval: settle,
        retention: Duration::from_secs(24 * 3600),
        ..ScheduleSettings::default()
    };
    s.budget = [budget, budget];
    s
}

/// The exporter (polling and HTTP) on a loopback port.
pub struct ExporterServer {
    pub base: String,
    pub exporter: Arc<Exporter>,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), volc_rtc_exporter::runtime::ExporterError>>,
    http: reqwest::Client,
}

impl ExporterServer {
    pub async fn start(settings: Settings) -> ExporterServer {
        let exporter =
            Exporter::new(settings, Arc::new(Telemetry::new())).expect("build the exporter");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the exporter on loopback");
        let addr = listener.local_addr().expect("exporter address");
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(runtime::run_with(
            exporter.clone(),
            listener,
            runtime::WebSetup::default(),
            shutdown.clone(),
        ));
        ExporterServer {
            base: format!("http://{addr}"),
            exporter,
            shutdown,
            handle,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client"),
        }
    }

    /// `/metrics` over HTTP, parsed. Panics if it does not answer 200 with valid text.
    pub async fn scrape(&self) -> Metrics {
        let text = self.scrape_text().await;
        parse_exposition(&text).unwrap_or_else(|e| panic!("bad exposition: {e}"))
    }

    pub async fn scrape_text(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(resp.status().as_u16(), 200, "/metrics status");
        resp.text().await.expect("/metrics body")
    }

    /// Stops polling and HTTP; fails if that takes over 10 s or `run` failed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("exporter stops within 10 s")
            .expect("exporter task did not panic")
            .expect("exporter run succeeded");
    }
}

/// Scrapes until `cond` holds for the scraped metrics, or panics after `within` with the last
/// scrape's relevant part (`what` says what was waited for). Returns the satisfying scrape.
pub async fn scrape_until(
    exporter: &ExporterServer,
    within: Duration,
    what: &str,
    mut cond: impl FnMut(&Metrics) -> bool,
) -> Metrics {
    let deadline = Instant::now() + within;
    loop {
        let m = exporter.scrape().await;
        if cond(&m) {
            return m;
        }
        if Instant::now() >= deadline {
            let shown: Vec<String> = m
                .iter()
                .filter(|(k, _)| k.starts_with("volcengine_rtc_") && !k.contains("_bucket"))
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            panic!(
                "timed out after {within:?} waiting for {what}; last scrape:\n{}",
                shown.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `cond` until it holds or panics after `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `volcengine_rtc_api_requests_total{action,outcome}` (0 when absent).
pub fn requests(m: &Metrics, action: &str, outcome: Outcome) -> f64 {
    m.get(&key(
        "volcengine_rtc_api_requests_total",
        &[("action", action), ("outcome", outcome.as_str())],
    ))
    .copied()
    .unwrap_or(0.0)
}

/// The key of `volcengine_rtc_task_stops_total` for tasks of `kind` (`record`, `webcast`) in
/// `app` that stopped for `reason`.
pub fn stops_key(kind: &str, app: &str, reason: &str) -> String {
    key(
        "volcengine_rtc_task_stops_total",
        &[("kind", kind), ("app_id", app), ("reason", reason)],
    )
}

/// The value of a series, if present.
pub fn get(m: &Metrics, key: &str) -> Option<f64> {
    m.get(key).copied()
}

#[test]
fn parser_handles_escapes_and_sorts_labels() {
    let m = parse_exposition(
        "# HELP x y\n# TYPE x gauge\nx{b=\"2\",a=\"q\\\"\\\\\\n,}\"} 1.5\nup 1\nh_bucket{le=\"+Inf\"} 3 1700000000000\n",
    )
    .expect("valid text");
    assert_eq!(
        m.get(&key("x", &[("a", "q\"\\\n,}"), ("b", "2")])),
        Some(&1.5)
    );
    assert_eq!(m.get("up"), Some(&1.0));
    assert_eq!(m.get(&key("h_bucket", &[("le", "+Inf")])), Some(&3.0));
    assert!(parse_exposition("x{a=\"1\"} \n").is_err());
    assert!(parse_exposition("x{a=1} 2\n").is_err());
    assert!(parse_exposition("x 1\nx 2\n").is_err());
}

/// The real binary running as a child process, its stdout and stderr collected as they come.
pub struct ChildProcess {
    pub child: std::process::Child,
    pub stdout: Arc<std::sync::Mutex<String>>,
    pub stderr: Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    pipe: impl std::io::Read + Send + 'static,
    into: Arc<std::sync::Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        let mut reader = std::io::BufReader::new(pipe);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => into
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&line),
            }
        }
    })
}

/// The exporter binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_volcengine-rtc-exporter");

/// The binary with `args`, the credential variables and `RUST_LOG` cleared, `HOME` at `home`
/// (an empty directory, so no credentials file is found there), then `env` set.
pub fn binary_command(
    args: &[&str],
    env: &[(&str, &str)],
    home: &std::path::Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args);
    // Each run of the exporter gets its own store, unless the test chose one (never ./data in
    // the repo). The commands have their own (`demo`: a temporary folder) or none.
    let command = args.first().is_some_and(|a| !a.starts_with('-'));
    if !command && !args.iter().any(|a| a.starts_with("--storage.path")) {
        cmd.arg(format!(
            "--storage.path={}",
            scratch_dir("store").join("data").display()
        ));
    }
    cmd.env_remove("VOLC_ACCESSKEY")
        .env_remove("VOLC_SECRETKEY")
        .env_remove("VOLC_SESSIONTOKEN")
        .env_remove("RUST_LOG")
        .env("HOME", home);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl ChildProcess {
    /// Starts the binary with `args` and extra environment variables (the credential
    /// variables are cleared first, and HOME points at an empty directory).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> ChildProcess {
        ChildProcess::spawn_command(binary_command(args, env, &scratch_dir("home")))
    }

    /// Starts `cmd` (e.g. [`binary_command`] wrapped in `prlimit`), its output collected.
    pub fn spawn_command(mut cmd: std::process::Command) -> ChildProcess {
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start the exporter binary");
        let stdout = Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(collect(out, stdout.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(collect(err, stderr.clone()));
        }
        ChildProcess {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits for `needle` in stderr (or stdout) and returns the text after it up to the end
    /// of that word.
    pub async fn wait_for_word_after(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            for text in [self.stderr(), self.stdout()] {
                if let Some(pos) = text.find(needle) {
                    let rest = &text[pos + needle.len()..];
                    let end = rest
                        .find(|c: char| c.is_whitespace() || c == ';')
                        .unwrap_or(rest.len());
                    return rest[..end].to_string();
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the exporter exited ({status}) before printing {needle:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {within:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Calls `attempt` every 200 ms until it gives `Some`, and returns that; panics after
    /// `within` with `what` and the process's stderr.
    pub async fn poll_until<T>(
        &self,
        within: Duration,
        what: &str,
        mut attempt: impl AsyncFnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = attempt().await {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting for {what}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Scrapes `/metrics` of this process, serving at `base`, until `cond` holds for the
    /// parsed metrics, and returns that scrape. Every scrape must answer 200 with valid text
    /// ([`scrape_at`]); panics after `within` with `what` and the process's stderr.
    pub async fn scrape_until(
        &self,
        base: &str,
        within: Duration,
        what: &str,
        mut cond: impl FnMut(&Metrics) -> bool,
    ) -> Metrics {
        self.poll_until(within, what, async || {
            let m = scrape_at(base).await;
            cond(&m).then_some(m)
        })
        .await
    }

    /// Sends the signal `name` (`TERM`, `HUP`, ...) to the process with `kill`.
    pub fn signal(&self, name: &str) {
        let sent = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits (at most `within`) for the exit; returns the exit status and
    /// how long it took.
    pub async fn terminate(&mut self, within: Duration) -> (std::process::ExitStatus, Duration) {
        let began = Instant::now();
        self.signal("TERM");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return (status, began.elapsed());
            }
            if began.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the exporter did not stop within {within:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A fresh directory under the system temp dir, unique per call.
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "volc-itest-{}-{what}-{n}-{}",
        std::process::id(),
        volc_rtc_exporter::clock::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes `text` to `config.yaml` in `dir` and returns its path.
pub fn write_config(dir: &std::path::Path, text: impl AsRef<[u8]>) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// YAML for `targets` (IDs are plain, so no quoting is needed beyond double quotes).
pub fn targets_yaml(targets: &[Target]) -> String {
    let mut s = String::from("targets:\n");
    for t in targets {
        s.push_str(&format!(
            "  - kind: {}\n    app_id: \"{}\"\n    room_id: \"{}\"\n",
            t.key.kind, t.key.app_id, t.key.room_id
        ));
        if let Some(task) = &t.key.task_id {
            s.push_str(&format!("    task_id: \"{task}\"\n"));
        }
    }
    s
}

/// Plain GET over loopback; `None` when the connection fails.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let resp = client.get(url).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// The real binary on an ephemeral loopback port with `config`, its store in `store`, the
/// simulator's credentials in its environment and `extra` flags; returns it and its base URL
/// once it listens.
pub async fn start_binary(
    config: &std::path::Path,
    store: &std::path::Path,
    extra: &[&str],
) -> (ChildProcess, String) {
    let secret = volc_rtc_exporter::sim::scenario::sim_credentials()
        .secret_access_key
        .expose()
        .to_string();
    let mut args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", store.display()),
        "--web.listen-address=127.0.0.1:0".to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = ChildProcess::spawn(
        &args,
        &[
            (
                "VOLC_ACCESSKEY",
                volc_rtc_exporter::sim::scenario::SIM_ACCESS_KEY_ID,
            ),
            ("VOLC_SECRETKEY", secret.as_str()),
        ],
    );
    let addr = child
        .wait_for_word_after("message=listening address=", Duration::from_secs(20))
        .await;
    (child, format!("http://{addr}"))
}

/// Sends `body` to the targets API at `{base}/api/v1/targets` with `method` (`POST`
/// registers, `DELETE` deregisters); panics unless it answers 2xx.
pub async fn targets_api(method: reqwest::Method, base: &str, body: String) {
    let resp = reqwest::Client::new()
        .request(method.clone(), format!("{base}/api/v1/targets"))
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} /api/v1/targets: {e}"));
    assert!(resp.status().is_success(), "{method}: {}", resp.status());
}

/// `demo` on an ephemeral loopback port with `flags`; returns it and its address (`host:port`)
/// once it listens.
pub async fn start_demo(flags: &[&str]) -> (ChildProcess, String) {
    let mut args = vec!["demo", "--web.listen-address=127.0.0.1:0"];
    args.extend_from_slice(flags);
    let mut child = ChildProcess::spawn(&args, &[]);
    let addr = child
        .wait_for_word_after("exporter listening on ", Duration::from_secs(20))
        .await;
    (child, addr)
}

/// `/metrics` of the exporter at `base`, parsed; panics unless it answers 200 with valid text.
pub async fn scrape_at(base: &str) -> Metrics {
    let (status, text) = http_get(&format!("{base}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    parse_exposition(&text).expect("valid exposition")
}

/// `POST {base}/-/reload`: the status and the body (empty when it cannot be read).
pub async fn post_reload(base: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .expect("POST /-/reload");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}
