//! Rotating credentials on real files: a plain file rewritten in place, a Kubernetes Secret
//! volume whose `..data` symlink is swapped, files that break (empty, unreadable, deleted) and
//! are fixed again, and a change caught half-way that must not be taken. The watcher runs in
//! paused tokio time. End to end, the client polls the simulator, which accepts only the
//! current token, and keeps working across rotations without a restart; and the real binary,
//! started as a user starts it, follows `..data` swaps (and reloads that add or remove the
//! `*_file` keys) with no failed poll.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use volc_rtc_exporter::credentials::{
    resolve, CredentialConfig, CredentialsHandle, DEFAULT_RELOAD_INTERVAL,
};
use volc_rtc_exporter::sim::MapEnv;

const AK: &str = "AKLTrotating0000key0001";
const SK: &str = "c2VjcmV0LXJvdGF0aW5nLTE=";
const TOKEN_1: &str = "STS.token.one.0123456789";
const TOKEN_2: &str = "STS.token.two.9876543210";

// ---------------------------------------------------------------------------------------------
// Files laid out as a plain directory or as a Kubernetes Secret volume.

/// The three files, by their names in the directory.
const FILES: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];

fn config_for(dir: &Path) -> CredentialConfig {
    CredentialConfig {
        access_key_id_file: Some(dir.join(FILES[0])),
        secret_access_key_file: Some(dir.join(FILES[1])),
        session_token_file: Some(dir.join(FILES[2])),
        ..Default::default()
    }
}

fn write_all(dir: &Path, values: [&str; 3]) {
    for (name, value) in FILES.iter().zip(values) {
        std::fs::write(dir.join(name), format!("{value}\n")).expect("write a credential file");
    }
}

/// A Secret volume as the kubelet writes it: `name -> ..data/name`, `..data -> ..<timestamp>`,
/// and on update a new timestamped directory, a `..data_tmp` symlink to it renamed over
/// `..data` (atomic), then the old directory removed.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn create(dir: &Path, values: [&str; 3]) -> SecretVolume {
        let volume = SecretVolume {
            dir: dir.to_owned(),
            version: 0,
        };
        let data = volume.timestamped();
        std::fs::create_dir(dir.join(&data)).expect("create the data directory");
        write_all(&dir.join(&data), values);
        std::os::unix::fs::symlink(&data, dir.join("..data")).expect("link ..data");
        for name in FILES {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
                .expect("link a key to ..data");
        }
        volume
    }

    fn timestamped(&self) -> String {
        format!("..2026_12_01_10_{:02}_00.123456789", self.version)
    }

    fn swap(&mut self, values: [&str; 3]) {
        let old = self.timestamped();
        self.version += 1;
        let new = self.timestamped();
        std::fs::create_dir(self.dir.join(&new)).expect("create the new data directory");
        write_all(&self.dir.join(&new), values);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&new, &tmp).expect("link ..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        std::fs::remove_dir_all(self.dir.join(old)).expect("remove the old data directory");
    }
}

/// A handle on the files in `dir`, resolved as at start-up.
fn handle_on(dir: &Path) -> CredentialsHandle {
    let config = config_for(dir);
    let (credentials, _) = resolve(&config, &MapEnv::new()).expect("the files are usable");
    CredentialsHandle::new(credentials, config)
}

fn token(h: &CredentialsHandle) -> String {
    let c = h.current();
    c.session_token
        .as_ref()
        .map(|t| t.expose().to_owned())
        .unwrap_or_default()
}

/// Starts the watcher at the default interval; cancel the token to stop it.
fn watch(h: &CredentialsHandle) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(h.clone().watch(DEFAULT_RELOAD_INTERVAL, stop.clone()));
    stop
}

/// Polls `cond` (see [`common::wait_until`]; in tokio time) until it holds; panics after
/// `within`.
async fn until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    common::wait_until(within, what, || std::future::ready(cond())).await
}

/// Long enough for the watcher to see a change and confirm it.
const SEEN: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Logs, captured.

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The lines logged about files in `dir` (each test has its own directory).
    fn about(&self, dir: &Path) -> String {
        let all = String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned();
        let dir = dir.display().to_string();
        all.lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The process's logs, captured from the first call on. A global subscriber, not a
/// thread-local one: tracing caches per call site whether anyone listens, which a test
/// running in parallel without a subscriber would spoil.
fn capture_logs() -> Captured {
    static LOGS: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        logs
    })
    .clone()
}

fn assert_no_secret(text: &str) {
    for secret in [SK, TOKEN_1, TOKEN_2, "c2VjcmV0LXJvdGF0aW5nLTI="] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_plain_file_rewritten_in_place_is_picked_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_all(dir.path(), [AK, SK, TOKEN_1]);
    let h = handle_on(dir.path());
    let logs = capture_logs();
    let stop = watch(&h);

    // Unchanged files: nothing happens, however long.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!((h.reloads(), h.reload_failures()), (0, 0));

    std::fs::write(dir.path().join("session_token"), TOKEN_2).expect("rotate");
    until(SEEN, "new token", || token(&h) == TOKEN_2).await;
    assert_eq!(h.current().access_key_id, AK);
    assert_eq!(h.current().secret_access_key.expose(), SK);
    assert_eq!((h.reloads(), h.reload_failures()), (1, 0));

    let text = logs.about(dir.path());
    assert!(text.contains(" INFO "), "{text}");
    assert!(text.contains("credentials reloaded"), "{text}");
    assert!(text.contains("AKL****001"), "masked key id: {text}");
    assert_no_secret(&text);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn session_token_file_is_re_read_after_a_data_symlink_swap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut volume = SecretVolume::create(dir.path(), [AK, SK, TOKEN_1]);
    let h = handle_on(dir.path());
    assert_eq!(token(&h), TOKEN_1);
    let stop = watch(&h);

    volume.swap([AK, SK, TOKEN_2]);
    until(SEEN, "the token after the swap", || token(&h) == TOKEN_2).await;
    assert_eq!(h.reloads(), 1);

    // STS rotates all three; the next swap brings a new pair along with a third token.
    volume.swap([
        "AKLTrotating0000key0002",
        "c2VjcmV0LXJvdGF0aW5nLTI=",
        "STS.third",
    ]);
    until(SEEN, "the second swap", || token(&h) == "STS.third").await;
    let c = h.current();
    assert_eq!(c.access_key_id, "AKLTrotating0000key0002");
    assert_eq!(c.secret_access_key.expose(), "c2VjcmV0LXJvdGF0aW5nLTI=");
    assert_eq!((h.reloads(), h.reload_failures()), (2, 0));

    // A swap to the same content is no rotation.
    volume.swap([
        "AKLTrotating0000key0002",
        "c2VjcmV0LXJvdGF0aW5nLTI=",
        "STS.third",
    ]);
    tokio::time::sleep(SEEN).await;
    assert_eq!((h.reloads(), h.reload_failures()), (2, 0));
    stop.cancel();
}

/// A way to break a file.
type Break = fn(&Path);

#[tokio::test(start_paused = true)]
async fn broken_files_keep_the_old_credentials_are_logged_and_counted_once_each() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_all(dir.path(), [AK, SK, TOKEN_1]);
    let token_file = dir.path().join("session_token");
    let h = handle_on(dir.path());
    let logs = capture_logs();
    let stop = watch(&h);

    // Each way of breaking it, then the fix. `failures` is the count expected after it.
    let breaks: [(&str, Break); 4] = [
        ("empty", |p| std::fs::write(p, "  \n").expect("empty")),
        ("deleted", |p| std::fs::remove_file(p).expect("delete")),
        ("not UTF-8", |p| {
            std::fs::write(p, [0xff, 0xfe, 0x00]).expect("garbage")
        }),
        ("a directory", |p| {
            std::fs::remove_file(p).expect("delete");
            std::fs::create_dir(p).expect("a directory in its place");
        }),
    ];
    let mut expected_failures = 0;
    for (n, (how, break_it)) in breaks.iter().enumerate() {
        break_it(&token_file);
        expected_failures += 1;
        until(SEEN, &format!("the failure ({how})"), || {
            h.reload_failures() == expected_failures
        })
        .await;
        // Kept, and not counted again while it stays broken.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(h.reload_failures(), expected_failures, "{how}");
        let expected = if n == 0 { TOKEN_1 } else { TOKEN_2 };
        assert_eq!(token(&h), expected, "{how}: the old token stays");

        // Fixed, alternately with the token in use and with a new one.
        if token_file.is_dir() {
            std::fs::remove_dir(&token_file).expect("remove the directory");
        }
        std::fs::write(&token_file, TOKEN_2).expect("fix");
        tokio::time::sleep(SEEN).await;
        assert_eq!(token(&h), TOKEN_2, "{how}: fixed");
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!((h.reloads(), h.reload_failures()), (1, 4));

    let text = logs.about(dir.path());
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 4, "one warning per broken state: {text}");
    let path = token_file.display().to_string();
    for (warning, needle) in
        warnings
            .iter()
            .zip(["is empty", "No such file", "valid UTF-8", "Is a directory"])
    {
        assert!(warning.contains(&path), "names the file: {warning}");
        assert!(warning.contains(needle), "says why: {warning}");
        assert!(
            warning.contains("previous credentials stay in use") && warning.contains("Fix:"),
            "says what happens and the fix: {warning}"
        );
    }
    assert!(
        text.contains("usable again"),
        "a fix with the values in use is logged: {text}"
    );
    assert_no_secret(&text);
    assert_no_secret(&format!("{h:?}"));
    // The same counts on /metrics.
    let telemetry = volc_rtc_exporter::metrics::own::Telemetry::new();
    telemetry.register_credentials(h.clone());
    let mut out = Vec::new();
    telemetry
        .gather()
        .encode(volc_rtc_exporter::exposition::Format::Text, &mut out);
    let metrics = String::from_utf8(out).expect("utf-8");
    for (outcome, n) in [("failure", h.reload_failures()), ("success", h.reloads())] {
        let line = format!("volcengine_rtc_credentials_reloads_total{{outcome=\"{outcome}\"}} {n}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
    assert!(h.reload_failures() >= 4);
    assert_no_secret(&metrics);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_change_caught_half_way_is_taken_only_once_it_settles() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_all(dir.path(), [AK, SK, TOKEN_1]);
    let token_file = dir.path().join("session_token");
    let h = handle_on(dir.path());
    let stop = watch(&h);

    // A writer truncates the file at 4.9 s and writes the new token at 5.5 s: the watcher's
    // read at 5 s sees it empty, its confirming read (1 s later) sees the token, so neither
    // is taken; the next round reads the token twice and takes it.
    tokio::time::sleep(Duration::from_millis(4_900)).await;
    std::fs::write(&token_file, "").expect("truncate");
    tokio::time::sleep(Duration::from_millis(600)).await;
    std::fs::write(&token_file, TOKEN_2).expect("write");
    tokio::time::sleep(Duration::from_millis(4_400)).await;
    assert_eq!(token(&h), TOKEN_1, "not taken before it was read twice");
    until(SEEN, "the settled token", || token(&h) == TOKEN_2).await;
    assert_eq!(
        (h.reloads(), h.reload_failures()),
        (1, 0),
        "the half-written state is no failure"
    );
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_watcher_stops_on_shutdown_and_fixed_credentials_need_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_all(dir.path(), [AK, SK, TOKEN_1]);
    let h = handle_on(dir.path());
    let stop = CancellationToken::new();
    let task = tokio::spawn(h.clone().watch(DEFAULT_RELOAD_INTERVAL, stop.clone()));
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("the watcher ends on shutdown")
        .expect("no panic");

    let fixed = CredentialsHandle::from((*h.current()).clone());
    tokio::time::timeout(
        Duration::from_secs(1),
        fixed.watch(DEFAULT_RELOAD_INTERVAL, CancellationToken::new()),
    )
    .await
    .expect("nothing to watch: returns at once");
}

// ---------------------------------------------------------------------------------------------
// End to end: the client against the simulator, which checks signatures and tokens.

#[cfg(feature = "sim")]
mod end_to_end {
    use super::*;

    use volc_rtc_exporter::budget::Limiter;
    use volc_rtc_exporter::config::ApiSettings;
    use volc_rtc_exporter::credentials::{Credentials, Secret};
    use volc_rtc_exporter::metrics::own::Telemetry;
    use volc_rtc_exporter::model::{Kind, Outcome, PerAction, TargetKey};
    use volc_rtc_exporter::sim::{Clock, SimOptions, SimTask, Simulator};
    use volc_rtc_exporter::volc::client::Client;

    const APP: &str = "661e8f0d1ab2c3d4e5f60718";

    fn accepted(ak: &str, sk: &str, token: &str) -> Credentials {
        Credentials {
            access_key_id: ak.into(),
            secret_access_key: Secret::new(sk),
            session_token: Some(Secret::new(token)),
        }
    }

    /// The simulator on loopback, where `task-1` of `room-1` runs and `AK`, `SK` and `TOKEN_1`
    /// are accepted, and API settings that point at it.
    async fn simulator() -> (common::SimServer, ApiSettings) {
        let sim = Simulator::new(SimOptions::default(), Clock::system());
        let started = volc_rtc_exporter::clock::now_ms() - 60_000;
        sim.add_task(SimTask::record(APP, "room-1", "task-1", started));
        sim.add_credentials(&accepted(AK, SK, TOKEN_1));
        let server = common::SimServer::start(sim).await;
        let api = ApiSettings {
            endpoint: server.endpoint(),
            ..ApiSettings::default()
        };
        (server, api)
    }

    /// The simulator's task: `task-1` of `room-1`.
    fn task_1() -> TargetKey {
        TargetKey {
            kind: Kind::Record,
            app_id: APP.into(),
            room_id: "room-1".into(),
            task_id: Some("task-1".into()),
        }
    }

    /// Real time here (the client and simulator talk over real sockets): the watcher re-reads
    /// every 100 ms and waits are polled against deadlines.
    #[tokio::test]
    async fn the_client_signs_with_the_new_token_after_the_swap_without_a_restart() {
        let (server, api) = simulator().await;
        let sim = server.sim.clone();

        let dir = tempfile::tempdir().expect("temp dir");
        let mut volume = SecretVolume::create(dir.path(), [AK, SK, TOKEN_1]);
        let h = handle_on(dir.path());
        let stop = CancellationToken::new();
        tokio::spawn(h.clone().watch(Duration::from_millis(100), stop.clone()));
        let limiters = PerAction::new(|_| Arc::new(Limiter::new(1000.0)));
        let client =
            Client::new(&api, h.clone(), limiters, Arc::new(Telemetry::new())).expect("client");
        let key = task_1();
        let outcome = |r: Result<_, volc_rtc_exporter::volc::parse::ApiError>| match r {
            Ok(_) => Outcome::Success,
            Err(e) => e.outcome,
        };

        assert_eq!(outcome(client.fetch(&key).await), Outcome::Success);

        // The token rotates: the API now takes only the new one, and the old one is refused.
        sim.add_credentials(&accepted(AK, SK, TOKEN_2));
        assert_eq!(outcome(client.fetch(&key).await), Outcome::AuthError);

        // The kubelet swaps the Secret; the same client, unrestarted, follows.
        volume.swap([AK, SK, TOKEN_2]);
        until(Duration::from_secs(10), "the swapped token", || {
            token(&h) == TOKEN_2
        })
        .await;
        assert_eq!(outcome(client.fetch(&key).await), Outcome::Success);

        // A full STS rotation: new pair and token; the old key is withdrawn.
        let (ak3, sk3, token3) = ("AKLTrotating0000key0003", "c2VjcmV0LTM=", "STS.three");
        sim.remove_credentials(AK);
        sim.add_credentials(&accepted(ak3, sk3, token3));
        assert_eq!(outcome(client.fetch(&key).await), Outcome::AuthError);
        volume.swap([ak3, sk3, token3]);
        until(Duration::from_secs(10), "the new pair", || {
            h.current().access_key_id == ak3
        })
        .await;
        assert_eq!(outcome(client.fetch(&key).await), Outcome::Success);
        assert_eq!((h.reloads(), h.reload_failures()), (2, 0));
        assert_eq!(
            sim.request_count(
                volc_rtc_exporter::model::Action::GetRecordTask,
                Outcome::Success
            ),
            3
        );
        stop.cancel();
        server.stop().await;
    }

    /// `fetch` refused with a token swapped just before: the files are re-read at once and the
    /// request sent once more with the new token, after waiting for the budget like any
    /// retry. Refused with files that hold nothing new: no second request.
    #[tokio::test]
    async fn fetch_refused_right_after_a_swap_re_reads_and_retries_once_in_the_budget() {
        let (server, api) = simulator().await;
        let sim = server.sim.clone();

        let dir = tempfile::tempdir().expect("temp dir");
        let mut volume = SecretVolume::create(dir.path(), [AK, SK, TOKEN_1]);
        // No watcher: only the refusal makes the client look at the files.
        let h = handle_on(dir.path());
        // One request per second: the retry must wait for its slot.
        let limiters = PerAction::new(|_| Arc::new(Limiter::new(1.0)));
        let telemetry = Arc::new(Telemetry::new());
        let client = Client::new(&api, h.clone(), limiters, telemetry.clone()).expect("client");
        let key = task_1();
        let count =
            |outcome| sim.request_count(volc_rtc_exporter::model::Action::GetRecordTask, outcome);
        client.fetch(&key).await.expect("the first token works");

        volume.swap([AK, SK, TOKEN_2]);
        sim.add_credentials(&accepted(AK, SK, TOKEN_2));
        let began = Instant::now();
        client
            .fetch(&key)
            .await
            .expect("refused, re-read, sent again: the poll succeeds");
        assert!(
            began.elapsed() >= Duration::from_millis(900),
            "the retry waited for the budget: {:?}",
            began.elapsed()
        );
        assert_eq!((count(Outcome::AuthError), count(Outcome::Success)), (1, 2));
        assert_eq!((h.reloads(), h.reload_failures()), (1, 0));
        assert_eq!(token(&h), TOKEN_2);

        // The API withdraws the token, the files hold nothing newer: one request, an error.
        sim.add_credentials(&accepted(AK, SK, "STS.revoked"));
        let err = client.fetch(&key).await.expect_err("refused");
        assert_eq!(err.outcome, Outcome::AuthError);
        assert_eq!((count(Outcome::AuthError), count(Outcome::Success)), (2, 2));
        assert_eq!(h.reloads(), 1);
        // Every request, the refused ones too, is counted.
        let mut out = Vec::new();
        telemetry
            .gather()
            .encode(volc_rtc_exporter::exposition::Format::Text, &mut out);
        let metrics = String::from_utf8(out).expect("utf-8");
        for (outcome, n) in [("auth_error", 2), ("success", 2)] {
            let line = format!(
                "volcengine_rtc_api_requests_total{{action=\"GetRecordTask\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
        }
        assert_no_secret(&metrics);
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary: `..data` swaps while it polls the simulator, which accepts only the current
// credentials.

mod binary {
    use super::*;

    use common::{get, key, Metrics, SimServer};
    use volc_rtc_exporter::credentials::{Credentials, Secret};
    use volc_rtc_exporter::model::{Action, Kind, Outcome, Target};
    use volc_rtc_exporter::sim::{Clock, SimOptions, SimTask, Simulator};

    const APP: &str = "rotating-app";
    const SEC: Duration = Duration::from_secs(1);
    /// The STS-style second and third sets: a new pair with each token.
    const AK2: &str = "AKLTrotating0000key0002";
    const SK2: &str = "c2VjcmV0LXJvdGF0aW5nLTI=";
    const TOKEN_3: &str = "STS.token.three.55555";
    const AK3: &str = "AKLTrotating0000key0003";
    const SK3: &str = "c2VjcmV0LXJvdGF0aW5nLTM=";
    const TOKEN_4: &str = "STS.token.four.777777";

    fn accepted(values: [&str; 3]) -> Credentials {
        Credentials {
            access_key_id: values[0].into(),
            secret_access_key: Secret::new(values[1]),
            session_token: Some(Secret::new(values[2])),
        }
    }

    /// The config: the simulator, 1 s polls, and `credentials` as given.
    fn write_config(path: &Path, sim: &SimServer, credentials: &str, targets: &[Target]) {
        let text = format!(
            "api:\n  endpoint: http://127.0.0.1:{}\n  timeout: 2s\n{credentials}budget:\n  \
             GetRecordTask: 20\n  GetWebCastTask: 20\nschedule:\n  active_interval: 1s\n  \
             settle_interval: 1s\n{}",
            sim.addr.port(),
            common::targets_yaml(targets)
        );
        std::fs::write(path, text).expect("write the config");
    }

    fn file_keys(secrets: &Path) -> String {
        let mut s = String::from("credentials:\n");
        for (k, name) in [
            "access_key_id_file",
            "secret_access_key_file",
            "session_token_file",
        ]
        .iter()
        .zip(FILES)
        {
            s.push_str(&format!("  {k}: {}\n", secrets.join(name).display()));
        }
        s
    }

    fn inline_keys(values: [&str; 3]) -> String {
        format!(
            "credentials:\n  access_key_id: {}\n  secret_access_key: {}\n  session_token: {}\n",
            values[0], values[1], values[2]
        )
    }

    fn reloads(m: &Metrics, outcome: &str) -> f64 {
        get(
            m,
            &key(
                "volcengine_rtc_credentials_reloads_total",
                &[("outcome", outcome)],
            ),
        )
        .unwrap_or(-1.0)
    }

    /// Scrapes until `cond`, checking on every scrape that each target is up (its last poll
    /// succeeded); panics after `within`.
    async fn scrape_until(
        base: &str,
        child: &common::ChildProcess,
        targets: &[Target],
        within: Duration,
        what: &str,
        cond: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        child
            .scrape_until(base, within, what, |m| {
                for t in targets {
                    assert_eq!(
                        get(m, &common::tkey("target_up", &t.key, &[])),
                        Some(1.0),
                        "{:?} is down while waiting for {what}; stderr:\n{}",
                        t.key,
                        child.stderr()
                    );
                }
                cond(m)
            })
            .await
    }

    async fn reload(base: &str) {
        let (status, text) = common::post_reload(base).await;
        assert_eq!(status, 200, "{text}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_data_swap_of_the_credential_files_is_used_without_a_restart_with_no_failed_poll() {
        let started = volc_rtc_exporter::clock::now_ms() - 60_000;
        let targets: Vec<Target> = (1..=4)
            .map(|i| {
                common::target(
                    Kind::Record,
                    APP,
                    &format!("room-{i}"),
                    &format!("task-{i}"),
                )
            })
            .collect();
        let sim = Simulator::new(SimOptions::default(), Clock::system());
        for t in &targets {
            let k = &t.key;
            let task = k.task_id.as_deref().unwrap_or_default();
            sim.add_task(SimTask::record(APP, &k.room_id, task, started));
        }
        let first = [AK, SK, TOKEN_1];
        sim.add_credentials(&accepted(first));
        let sim = SimServer::start(sim).await;

        let dir = common::scratch_dir("credential-rotation");
        let secrets = dir.join("secrets");
        std::fs::create_dir_all(&secrets).expect("mkdir");
        let mut volume = SecretVolume::create(&secrets, first);
        let cfg = dir.join("config.yaml");
        write_config(&cfg, &sim, &file_keys(&secrets), &targets);
        let args = [
            format!("--config.file={}", cfg.display()),
            "--web.listen-address=127.0.0.1:0".to_string(),
            "--web.enable-lifecycle".to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = common::ChildProcess::spawn(&args, &[]);
        let addr = child
            .wait_for_word_after("message=listening address=", 20 * SEC)
            .await;
        let base = format!("http://{addr}");
        let ok = |m: &Metrics| common::requests(m, "GetRecordTask", Outcome::Success);
        let m = scrape_until(&base, &child, &[], 20 * SEC, "first answers", |m| {
            ok(m) >= 8.0
        })
        .await;
        assert_eq!((reloads(&m, "success"), reloads(&m, "failure")), (0.0, 0.0));

        // 1. The token rotates (STS style: the API takes only the new one from now on). The
        // kubelet swaps the Secret first; the API refuses the old token right after.
        let rotations: [(&str, [&str; 3]); 2] = [
            ("the new token", [AK, SK, TOKEN_2]),
            // 2. A whole new set: the old key is withdrawn.
            ("the new key pair", [AK2, SK2, TOKEN_3]),
        ];
        let mut previous = first;
        for (n, (what, values)) in rotations.iter().enumerate() {
            volume.swap(*values);
            if values[0] != previous[0] {
                sim.sim.remove_credentials(previous[0]);
            }
            sim.sim.add_credentials(&accepted(*values));
            let before = ok(&common::scrape_at(&base).await);
            let want = (n + 1) as f64;
            scrape_until(&base, &child, &targets, 20 * SEC, what, |m| {
                reloads(m, "success") == want && ok(m) >= before + 8.0
            })
            .await;
            previous = *values;
        }

        // A reload that drops the `*_file` keys (inline keys, the same values): the files are
        // no longer re-read, so breaking them changes nothing.
        write_config(&cfg, &sim, &inline_keys(previous), &targets);
        reload(&base).await;
        volume.swap([AK2, SK2, ""]);
        let before = ok(&common::scrape_at(&base).await);
        // Longer than a re-read and its confirming read.
        tokio::time::sleep(DEFAULT_RELOAD_INTERVAL + 2 * SEC).await;
        let m = scrape_until(
            &base,
            &child,
            &targets,
            10 * SEC,
            "polls on inline keys",
            |m| ok(m) >= before + 8.0,
        )
        .await;
        assert_eq!(
            (reloads(&m, "success"), reloads(&m, "failure")),
            (2.0, 0.0),
            "files no longer named are not re-read"
        );

        // A reload that names them again (holding the keys in use), then a rotation: followed.
        volume.swap(previous);
        write_config(&cfg, &sim, &file_keys(&secrets), &targets);
        reload(&base).await;
        let fourth = [AK3, SK3, TOKEN_4];
        volume.swap(fourth);
        sim.sim.remove_credentials(previous[0]);
        sim.sim.add_credentials(&accepted(fourth));
        let before = ok(&common::scrape_at(&base).await);
        let m = scrape_until(
            &base,
            &child,
            &targets,
            20 * SEC,
            "the rotation after the reload",
            |m| reloads(m, "success") == 3.0 && ok(m) >= before + 8.0,
        )
        .await;
        assert_eq!(reloads(&m, "failure"), 0.0);

        // No poll failed: every refused request was sent again with the new credentials. The
        // refused ones are still counted as requests, exactly as the API saw them.
        let refused = sim
            .sim
            .request_count(Action::GetRecordTask, Outcome::AuthError);
        assert_eq!(
            common::requests(&m, "GetRecordTask", Outcome::AuthError),
            refused as f64,
            "every refused request is counted"
        );
        assert!(
            refused >= 1,
            "the API refused no old credentials: the retry after a re-read was not exercised"
        );
        let (status, _) = child.terminate(10 * SEC).await;
        assert!(status.success(), "exit: {status}");
        let stderr = child.stderr();
        assert!(
            !stderr.contains("authentication failed") && !stderr.contains("poll failed"),
            "a poll failed:\n{stderr}"
        );
        assert!(
            stderr.contains("re-reading the credential files")
                && stderr.contains("none are re-read")
                && stderr.contains("credentials reloaded from their files"),
            "{stderr}"
        );
        for secret in [SK, SK2, SK3, TOKEN_1, TOKEN_2, TOKEN_3, TOKEN_4] {
            assert!(!stderr.contains(secret), "a secret in the log:\n{stderr}");
        }
        sim.stop().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
