//! The exporter's HTTP side on loopback, following the exporter-toolkit's own web config tests
//! (good and bad config files; users right, wrong and unknown; with and without TLS; client
//! certificates), through the real server (`http::serve`) and the real binary:
//!
//! - basic auth on every path but the probes, `401` with `WWW-Authenticate`;
//! - TLS and mTLS with certificates made here with rcgen, reqwest (rustls) trusting only them;
//! - `--web.max-requests`: the request above the cap gets `503`;
//! - `/-/reload` (`403` without `--web.enable-lifecycle`, a good and a broken config, the web
//!   config swapped), and SIGHUP on the real binary with the reload metrics;
//! - `/api/v1/targets`: off (`404`), listing, every problem of a bad body (`400`), auth;
//! - `/` and `/targets` rendered from the rows the server is given;
//! - `check --web.config.file`.

mod common;
mod pages_common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tls::{self, Pem};
use common::{get, parse_exposition, ChildProcess};
use rcgen::Issuer;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, StatusCode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::config::Settings;
use volc_rtc_exporter::exposition::{Format, Page};
use volc_rtc_exporter::http::pages::TargetRow;
use volc_rtc_exporter::http::web_config::{SharedWebConfig, WebConfig};
use volc_rtc_exporter::http::{
    serve, ApiRefusal, App, LandingInfo, Options, Registered, Targets, Unregistered,
};
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::model::{Kind, Target, TargetKey};
use volc_rtc_exporter::reload::{Apply, ApplySummary, Reloader};
use volc_rtc_exporter::sim::MapEnv;
use volc_rtc_exporter::targets::Source;

const APP: &str = "661e8f0d1ab2c3d4e5f60718";
const SECRET: &str = "c2VjcmV0LWZvci1jbGktdGVzdHMtb25seQ==";
const REALM: &str = "Basic realm=\"volcengine-rtc-exporter\"";
/// Users of the fixtures: `prometheus` → `scrape-me`, `grafana` → `other-pass`.
const PROMETHEUS: (&str, &str) = ("prometheus", "scrape-me");
const GRAFANA: (&str, &str) = ("grafana", "other-pass");

// ----- certificates and files -----

/// A scratch directory with the web fixtures, a server certificate for localhost and
/// 127.0.0.1 from a test CA, and a client certificate from `client-ca.crt`.
struct Scratch {
    dir: PathBuf,
    ca: Pem,
    client: Pem,
    rogue: Pem,
}

impl Scratch {
    fn new(what: &str) -> Scratch {
        let dir = common::scratch_dir(what);
        tls::copy_web_fixtures(&dir);
        let (ca_params, ca_key, ca_pem) = tls::new_ca("test server CA");
        let server = tls::leaf(
            "localhost",
            &["localhost", "127.0.0.1"],
            &Issuer::from_params(&ca_params, &ca_key),
        );
        let (client_params, client_key, client_ca) = tls::new_ca("test client CA");
        let client = tls::leaf(
            "scraper",
            &["scraper"],
            &Issuer::from_params(&client_params, &client_key),
        );
        let (rogue_params, rogue_key, _) = tls::new_ca("someone else");
        let rogue = tls::leaf(
            "scraper",
            &["scraper"],
            &Issuer::from_params(&rogue_params, &rogue_key),
        );
        std::fs::write(dir.join("server.crt"), &server.cert).unwrap();
        std::fs::write(dir.join("server.key"), &server.key).unwrap();
        std::fs::write(dir.join("client-ca.crt"), &client_ca.cert).unwrap();
        Scratch {
            dir,
            ca: ca_pem,
            client,
            rogue,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn load(&self, name: &str) -> WebConfig {
        WebConfig::load(&self.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// An HTTPS client trusting only the test CA; `localhost` resolves to `addr`.
    fn tls_client(&self, addr: SocketAddr, identity: Option<&Pem>) -> reqwest::Client {
        self.tls_builder(addr, identity).build().unwrap()
    }

    /// The builder of [`Scratch::tls_client`], for a client with more settings.
    fn tls_builder(&self, addr: SocketAddr, identity: Option<&Pem>) -> reqwest::ClientBuilder {
        tls::client_builder(&self.ca, addr, identity).no_proxy()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

// ----- a server with fake targets -----

/// Rows to show, and what the registration API was asked to do.
#[derive(Default)]
struct FakeTargets {
    rows: Vec<TargetRow>,
    registered: Mutex<Vec<(Vec<Target>, Source)>>,
    unregistered: Mutex<Vec<TargetKey>>,
}

impl Targets for FakeTargets {
    fn target_rows(&self) -> Vec<TargetRow> {
        self.rows.clone()
    }

    fn register(&self, targets: Vec<Target>, source: Source) -> Result<Registered, ApiRefusal> {
        let added = targets.len();
        self.registered.lock().unwrap().push((targets, source));
        Ok(Registered { added, existing: 0 })
    }

    fn unregister(&self, keys: Vec<TargetKey>, _: Source) -> Result<Unregistered, ApiRefusal> {
        let removed = keys.len();
        self.unregistered.lock().unwrap().extend(keys);
        Ok(Unregistered {
            removed,
            unknown: 0,
        })
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(app: App) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(listener, Arc::new(app), shutdown.clone()));
    Running { addr, shutdown }
}

fn app() -> App {
    App::new(
        Box::new(|_| {
            let mut page = Page::new();
            page.push_text(b"demo_value 1\n".to_vec());
            page
        }),
        Arc::new(AtomicBool::new(true)),
        LandingInfo::new("2 record targets"),
    )
}

async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    user: Option<(&str, &str)>,
    body: Option<&str>,
) -> reqwest::Response {
    let mut request = client.request(method, url);
    if let Some((user, password)) = user {
        request = request.basic_auth(user, Some(password));
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.unwrap()
}

async fn status_of(client: &reqwest::Client, url: &str, user: Option<(&str, &str)>) -> StatusCode {
    send(client, Method::GET, url, user, None).await.status()
}

// ----- basic auth and TLS -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_users_right_wrong_and_unknown_on_every_path_but_the_probes() {
    let scratch = Scratch::new("http-plain-auth");
    let web = SharedWebConfig::new(scratch.load("auth_only.good.yml"));
    let running = start(app().with_web_config(web)).await;
    let client = plain_client();
    let base = format!("http://{}", running.addr);
    for path in ["/metrics", "/", "/targets", "/-/reload", "/nope"] {
        let url = format!("{base}{path}");
        for user in [
            None,
            Some(("prometheus", "other-pass")),
            Some(("grafana", "scrape-me")),
            Some(("nobody", "scrape-me")),
            Some(("prometheus", "")),
        ] {
            let refused = send(&client, Method::GET, &url, user, None).await;
            assert_eq!(refused.status(), 401, "{path} {user:?}");
            assert_eq!(
                refused.headers()[WWW_AUTHENTICATE],
                REALM,
                "{path} {user:?}"
            );
        }
        // A malformed header is refused the same way.
        let refused = client
            .get(&url)
            .header("Authorization", "Basic !!!")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401, "{path}");
    }
    for user in [PROMETHEUS, GRAFANA] {
        let ok = send(
            &client,
            Method::GET,
            &format!("{base}/metrics"),
            Some(user),
            None,
        )
        .await;
        assert_eq!(ok.status(), 200, "{user:?}");
        assert_eq!(ok.text().await.unwrap(), "demo_value 1\n");
        assert_eq!(
            status_of(&client, &format!("{base}/targets"), Some(user)).await,
            200
        );
        // Known paths answer as usual once authenticated, unknown ones 404.
        assert_eq!(
            status_of(&client, &format!("{base}/nope"), Some(user)).await,
            404
        );
    }
    // The probes need no credentials.
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(
            status_of(&client, &format!("{base}{path}"), None).await,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_users_right_wrong_and_unknown() {
    let scratch = Scratch::new("http-tls-auth");
    let web = SharedWebConfig::new(scratch.load("tls_auth.good.yml"));
    let running = start(app().with_web_config(web)).await;
    let client = scratch.tls_client(running.addr, None);
    let url = format!("https://localhost:{}/metrics", running.addr.port());
    assert_eq!(status_of(&client, &url, Some(PROMETHEUS)).await, 200);
    for user in [None, Some(("prometheus", "nope")), Some(GRAFANA)] {
        let refused = send(&client, Method::GET, &url, user, None).await;
        assert_eq!(refused.status(), 401, "{user:?}");
        assert_eq!(refused.headers()[WWW_AUTHENTICATE], REALM);
    }
    let healthy = format!("https://localhost:{}/-/healthy", running.addr.port());
    assert_eq!(status_of(&client, &healthy, None).await, 200);
    // Plain HTTP to the TLS port gets no answer.
    let plain = plain_client()
        .get(format!("http://{}/metrics", running.addr))
        .basic_auth(PROMETHEUS.0, Some(PROMETHEUS.1))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_auth_and_mtls() {
    let scratch = Scratch::new("http-mtls");
    let running =
        start(app().with_web_config(SharedWebConfig::new(scratch.load("tls.good.yml")))).await;
    let url = |r: &Running| format!("https://localhost:{}/metrics", r.addr.port());
    let client = scratch.tls_client(running.addr, None);
    assert_eq!(status_of(&client, &url(&running), None).await, 200);
    drop(running);

    let web = scratch.load("mtls_RequireAndVerifyClientCert.good.yml");
    let running = start(app().with_web_config(SharedWebConfig::new(web))).await;
    let with_cert = scratch.tls_client(running.addr, Some(&scratch.client));
    assert_eq!(status_of(&with_cert, &url(&running), None).await, 200);
    for (what, client) in [
        (
            "no client certificate",
            scratch.tls_client(running.addr, None),
        ),
        (
            "a certificate from another CA",
            scratch.tls_client(running.addr, Some(&scratch.rogue)),
        ),
    ] {
        let refused = client.get(url(&running)).send().await;
        assert!(refused.is_err(), "{what} was answered: {refused:?}");
    }
}

// ----- --web.max-requests -----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_above_max_requests_get_503_and_probes_still_answer() {
    let in_render = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(AtomicBool::new(false));
    let (entered, gate) = (in_render.clone(), release.clone());
    let app = App::new(
        Box::new(move |_| {
            entered.fetch_add(1, Ordering::SeqCst);
            while !gate.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut page = Page::new();
            page.push_text(b"slow 1\n".to_vec());
            page
        }),
        Arc::new(AtomicBool::new(true)),
        LandingInfo::new(""),
    )
    .with_options(Options {
        max_requests: 2,
        ..Options::default()
    });
    let running = start(app).await;
    let base = format!("http://{}", running.addr);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = format!("{base}/metrics");
            tokio::spawn(async move { status_of(&plain_client(), &url, None).await })
        })
        .collect();
    common::wait_until(Duration::from_secs(10), "the scrapes to start", || async {
        in_render.load(Ordering::SeqCst) >= 2
    })
    .await;
    let client = plain_client();
    for path in ["/metrics", "/"] {
        let refused = send(&client, Method::GET, &format!("{base}{path}"), None, None).await;
        assert_eq!(refused.status(), 503, "{path}");
        assert_eq!(
            refused.text().await.unwrap(),
            "Limit of concurrent requests reached (2), try again later.\n"
        );
    }
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(
            status_of(&client, &format!("{base}{path}"), None).await,
            200
        );
    }
    release.store(true, Ordering::SeqCst);
    for scrape in slow {
        assert_eq!(scrape.await.unwrap(), 200);
    }
    // Places are given back once the answers are sent.
    assert_eq!(
        status_of(&client, &format!("{base}/metrics"), None).await,
        200
    );
    assert_eq!(status_of(&client, &format!("{base}/"), None).await, 200);
}

// ----- /-/reload -----

/// Records what a reload applies: the number of targets of each new config.
#[derive(Default)]
struct Recorder {
    applied: Mutex<Vec<usize>>,
}

impl Apply for Recorder {
    fn apply(&self, new: Settings) -> Result<ApplySummary, String> {
        self.applied.lock().unwrap().push(new.targets.len());
        Ok(ApplySummary {
            lines: vec![format!("{} targets", new.targets.len())],
        })
    }
}

fn config_yaml(rooms: &[&str]) -> String {
    let targets: Vec<Target> = rooms
        .iter()
        .map(|room| common::target(Kind::Record, APP, room, &format!("task-{room}")))
        .collect();
    format!(
        "api:\n  endpoint: http://127.0.0.1:9\n  timeout: 1s\n{}",
        common::targets_yaml(&targets)
    )
}

fn gauge(telemetry: &Telemetry, name: &str) -> Option<f64> {
    let mut out = Vec::new();
    telemetry.gather().encode(Format::Text, &mut out);
    let m = parse_exposition(&String::from_utf8(out).unwrap()).unwrap();
    get(&m, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_endpoint_applies_a_good_config_and_keeps_the_running_one_when_broken() {
    let scratch = Scratch::new("http-reload");
    let config = scratch.path("config.yaml");
    let credentials = format!(
        "credentials:\n  access_key_id: AKLTexampleAccessKey0001\n  secret_access_key: {SECRET}\n"
    );
    let with_credentials = |yaml: &str| format!("{yaml}{credentials}");
    std::fs::write(&config, with_credentials(&config_yaml(&["room-1"]))).unwrap();
    let web_file = scratch.path("web.yml");
    std::fs::copy(scratch.path("auth_only.good.yml"), &web_file).unwrap();
    let web = SharedWebConfig::new(WebConfig::load(&web_file).unwrap());
    let recorder = Arc::new(Recorder::default());
    let telemetry = Arc::new(Telemetry::new());
    let reloader = Arc::new(Reloader::new(
        config.clone(),
        Some(web_file.clone()),
        web.clone(),
        recorder.clone(),
        telemetry.clone(),
    ));
    let client = plain_client();

    // Without --web.enable-lifecycle: 403, as Prometheus answers.
    let off = start(
        app()
            .with_web_config(web.clone())
            .with_reloader(reloader.clone()),
    )
    .await;
    let url = format!("http://{}/-/reload", off.addr);
    let answer = send(&client, Method::POST, &url, Some(PROMETHEUS), None).await;
    assert_eq!(answer.status(), 403);
    assert_eq!(
        answer.text().await.unwrap(),
        "Lifecycle API is not enabled.\n"
    );
    drop(off);

    let running = start(
        app()
            .with_web_config(web.clone())
            .with_reloader(reloader.clone())
            .with_options(Options {
                enable_lifecycle: true,
                ..Options::default()
            }),
    )
    .await;
    let url = format!("http://{}/-/reload", running.addr);
    let metrics = format!("http://{}/metrics", running.addr);
    let answer = send(&client, Method::GET, &url, Some(PROMETHEUS), None).await;
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.headers()["allow"], "POST, PUT");
    assert_eq!(
        send(&client, Method::POST, &url, None, None).await.status(),
        401,
        "reload needs credentials"
    );

    // A good config with two targets, and a web config with one user left.
    std::fs::write(
        &config,
        with_credentials(&config_yaml(&["room-1", "room-2"])),
    )
    .unwrap();
    let only_prometheus = std::fs::read_to_string(&web_file)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("grafana:"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&web_file, only_prometheus).unwrap();
    assert_eq!(status_of(&client, &metrics, Some(GRAFANA)).await, 200);
    let answer = send(&client, Method::POST, &url, Some(PROMETHEUS), None).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(text.contains("2 targets"), "{text}");
    assert!(text.contains("basic auth with 1 user"), "{text}");
    assert_eq!(*recorder.applied.lock().unwrap(), [2]);
    assert_eq!(
        gauge(&telemetry, "volcengine_rtc_config_last_reload_successful"),
        Some(1.0)
    );
    let stamp = gauge(
        &telemetry,
        "volcengine_rtc_config_last_reload_success_timestamp_seconds",
    )
    .unwrap();
    let now = volc_rtc_exporter::clock::now_ms() as f64 / 1000.0;
    assert!((now - stamp).abs() < 30.0, "timestamp {stamp}, now {now}");
    assert_eq!(
        status_of(&client, &metrics, Some(GRAFANA)).await,
        401,
        "the reloaded web config is in force"
    );

    // A broken config and a broken web config: both listed, nothing applied, old ones kept.
    let broken = with_credentials("api:\n  timeout: 5s\n  bogus_key: 1\ntargets: []\n");
    std::fs::write(&config, broken).unwrap();
    std::fs::copy(scratch.path("bad_hash.bad.yml"), &web_file).unwrap();
    let answer = send(&client, Method::PUT, &url, Some(PROMETHEUS), None).await;
    assert_eq!(answer.status(), 500);
    let text = answer.text().await.unwrap();
    assert!(text.starts_with("failed to reload config: "), "{text}");
    let (c, w) = (config.display(), web_file.display());
    assert!(
        text.contains(&format!("{c}:3:3: unknown key `bogus_key`")),
        "{text}"
    );
    assert!(text.contains(&format!("{w}:")), "{text}");
    assert_eq!(*recorder.applied.lock().unwrap(), [2], "nothing applied");
    assert_eq!(
        gauge(&telemetry, "volcengine_rtc_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        gauge(
            &telemetry,
            "volcengine_rtc_config_last_reload_success_timestamp_seconds"
        ),
        Some(stamp),
        "the last success stays"
    );
    assert_eq!(status_of(&client, &metrics, Some(PROMETHEUS)).await, 200);
    assert_eq!(status_of(&client, &metrics, Some(GRAFANA)).await, 401);
}

// ----- /api/v1/targets -----

fn fake_rows() -> Vec<TargetRow> {
    pages_common::fixture()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_api_is_off_unless_enabled_and_lists_registers_and_refuses_bad_bodies() {
    let client = plain_client();
    let off = start(app()).await;
    let answer = send(
        &client,
        Method::GET,
        &format!("http://{}/api/v1/targets", off.addr),
        None,
        None,
    )
    .await;
    assert_eq!(answer.status(), 404);
    assert!(answer
        .text()
        .await
        .unwrap()
        .contains("--web.enable-targets-api"));
    // Without an implementation, registering answers 501.
    let unsupported = start(app().with_options(Options {
        enable_targets_api: true,
        ..Options::default()
    }))
    .await;
    let body = format!(r#"[{{"kind":"record","app_id":"{APP}","room_id":"r1","task_id":"t1"}}]"#);
    let answer = send(
        &client,
        Method::POST,
        &format!("http://{}/api/v1/targets", unsupported.addr),
        None,
        Some(&body),
    )
    .await;
    assert_eq!(answer.status(), 501);

    let scratch = Scratch::new("http-api");
    let fake = Arc::new(FakeTargets {
        rows: fake_rows(),
        ..FakeTargets::default()
    });
    let running = start(
        app()
            .with_targets(fake.clone())
            .with_web_config(SharedWebConfig::new(scratch.load("auth_only.good.yml")))
            .with_options(Options {
                enable_targets_api: true,
                ..Options::default()
            }),
    )
    .await;
    let url = format!("http://{}/api/v1/targets", running.addr);
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let refused = send(&client, method.clone(), &url, None, Some(&body)).await;
        assert_eq!(refused.status(), 401, "{method}");
        assert_eq!(refused.headers()[WWW_AUTHENTICATE], REALM);
    }

    // GET: every target with its source, phase, last poll, outcome, next due and error.
    let answer = send(&client, Method::GET, &url, Some(PROMETHEUS), None).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let listed: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(listed["status"], "success");
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), fake.rows.len());
    let failing = data
        .iter()
        .find(|t| t["room_id"] == "room-1044")
        .expect("room-1044 listed");
    assert_eq!(failing["kind"], "record");
    assert_eq!(failing["app_id"], "app-live");
    assert_eq!(failing["task_id"], "rec-1044-a");
    assert_eq!(failing["sources"], serde_json::json!(["config"]));
    assert_eq!(failing["phase"], "active");
    assert_eq!(failing["health"], "down");
    assert_eq!(failing["last_outcome"], "timeout");
    assert_eq!(failing["last_error"], "timeout after 5s: GET GetRecordTask");
    // 2026-12-01 11:00:00 UTC, less 12 s; due 3 s after it.
    assert_eq!(failing["last_poll"], "2026-12-01T10:59:48.000Z");
    assert_eq!(failing["next_due"], "2026-12-01T11:00:03.000Z");
    let webcast = data.iter().find(|t| t["room_id"] == "class-10").unwrap();
    assert_eq!(webcast["task_id"], serde_json::Value::Null);
    assert_eq!(webcast["labels"], serde_json::json!({"team": "edu"}));

    // POST with every problem listed, nothing registered.
    let bad = format!(
        r#"[{{"kind":"record","app_id":"bad id!","room_id":"r1","task_id":"t1"}},
           {{"kind":"recording","app_id":"{APP}","room_id":"r2","task_id":"t2"}},
           {{"kind":"record","app_id":"{APP}","room_id":"r3","task_id":"t3","colour":"red"}}]"#
    );
    let answer = send(&client, Method::POST, &url, Some(PROMETHEUS), Some(&bad)).await;
    assert_eq!(answer.status(), 400);
    let refused: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(refused["status"], "error");
    assert_eq!(refused["errorType"], "bad_data");
    let indexes: Vec<u64> = refused["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["index"].as_u64())
        .collect();
    for i in 0..3 {
        assert!(indexes.contains(&i), "no problem for target {i}: {refused}");
    }
    let answer = send(
        &client,
        Method::POST,
        &url,
        Some(PROMETHEUS),
        Some("{not json"),
    )
    .await;
    assert_eq!(answer.status(), 400);
    assert!(fake.registered.lock().unwrap().is_empty());

    // POST and DELETE of good bodies reach the exporter's side.
    let answer = send(&client, Method::POST, &url, Some(PROMETHEUS), Some(&body)).await;
    assert_eq!(answer.status(), 200);
    let done: serde_json::Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
    assert_eq!(done["data"]["added"], 1);
    {
        let registered = fake.registered.lock().unwrap();
        assert_eq!(registered.len(), 1);
        assert_eq!(registered[0].1, Source::Api);
        assert_eq!(registered[0].0[0].key.room_id, "r1");
    }
    let answer = send(&client, Method::DELETE, &url, Some(GRAFANA), Some(&body)).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        fake.unregistered.lock().unwrap()[0].task_id.as_deref(),
        Some("t1")
    );
    let answer = send(&client, Method::PUT, &url, Some(PROMETHEUS), Some(&body)).await;
    assert_eq!(answer.status(), 405);
    assert_eq!(answer.headers()["allow"], "GET, HEAD, POST, DELETE");
}

// ----- pages -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_and_targets_pages_show_the_rows() {
    let fake = Arc::new(FakeTargets {
        rows: fake_rows(),
        ..FakeTargets::default()
    });
    let running = start(app().with_targets(fake).with_options(Options {
        enable_targets_api: true,
        ..Options::default()
    }))
    .await;
    let client = plain_client();
    let base = format!("http://{}", running.addr);
    let landing = send(&client, Method::GET, &format!("{base}/"), None, None).await;
    assert_eq!(landing.status(), 200);
    assert_eq!(
        landing.headers()["content-type"],
        "text/html; charset=utf-8"
    );
    let html = landing.text().await.unwrap();
    assert!(html.contains("2 record targets"), "the summary");
    assert!(html.contains("Targets by phase"));
    assert!(html.contains("href=\"targets\""));
    assert!(html.contains("href=\"api/v1/targets\""), "API link when on");
    assert!(html.contains("room-1044"), "a failing target is listed");

    let page = send(&client, Method::GET, &format!("{base}/targets"), None, None)
        .await
        .text()
        .await
        .unwrap();
    for room in ["room-1042", "room-1044", "class-10"] {
        assert!(page.contains(room), "{room} not on /targets");
    }
    let failing = send(
        &client,
        Method::GET,
        &format!("{base}/targets?failing=1"),
        None,
        None,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(failing.contains("room-1044"));
    assert!(!failing.contains("room-1042"), "healthy rows filtered out");
}

// ----- the real binary -----

fn run_binary(args: &[&str]) -> std::process::Output {
    let home = common::scratch_dir("home");
    let out = common::binary_command(
        args,
        &[
            ("VOLC_ACCESSKEY", "AKLTexampleAccessKey0001"),
            ("VOLC_SECRETKEY", SECRET),
        ],
        &home,
    )
    .output()
    .expect("run the binary");
    let _ = std::fs::remove_dir_all(home);
    out
}

#[test]
fn check_validates_the_web_config_file_too() {
    let scratch = Scratch::new("http-check");
    let config = scratch.path("config.yaml");
    std::fs::write(&config, config_yaml(&["room-1"])).unwrap();
    let config_arg = format!("--config.file={}", config.display());
    for (file, says) in [
        ("tls_auth.good.yml", "OK (TLS, basic auth with 1 user)"),
        (
            "auth_only.good.yml",
            "OK (plain HTTP, basic auth with 2 users)",
        ),
        (
            "mtls_RequireAndVerifyClientCert.good.yml",
            "OK (TLS, no basic auth)",
        ),
    ] {
        let web_arg = format!("--web.config.file={}", scratch.path(file).display());
        let out = run_binary(&["check", &config_arg, &web_arg]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("{}: OK", config.display())),
            "{stdout}"
        );
        assert!(stdout.contains(says), "{file}: {stdout}");
    }
    for (file, problem) in [
        ("bad_hash.bad.yml", "basic_auth_users"),
        ("cert_missing.bad.yml", "cert_file"),
        ("unknown_key.bad.yml", "unknown"),
        ("client_auth_invalid.bad.yml", "client_auth_type"),
        ("no_such_file.yml", "cannot read the web config file"),
    ] {
        let web_arg = format!("--web.config.file={}", scratch.path(file).display());
        let out = run_binary(&["check", &config_arg, &web_arg]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(stderr.contains(problem), "{file}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("OK"));
    }
    // Both files broken: every problem of both.
    std::fs::write(&config, "api:\n  bogus_key: 1\n").unwrap();
    let web_arg = format!(
        "--web.config.file={}",
        scratch.path("bad_hash.bad.yml").display()
    );
    let out = run_binary(&["check", &config_arg, &web_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("{}:2:3:", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("bad_hash.bad.yml:"), "{stderr}");
}

/// Scrapes until `gauge` has a value for which `cond` holds.
async fn wait_for_gauge(
    child: &ChildProcess,
    client: &reqwest::Client,
    url: &str,
    name: &str,
    cond: impl Fn(f64) -> bool,
) -> f64 {
    child
        .poll_until(Duration::from_secs(15), name, async || {
            let text = client.get(url).send().await.ok()?.text().await.ok()?;
            let v = get(&parse_exposition(&text).ok()?, name)?;
            cond(v).then_some(v)
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_good_config_and_keeps_the_running_one_when_broken() {
    let scratch = Scratch::new("http-sighup");
    let config = scratch.path("config.yaml");
    std::fs::write(&config, config_yaml(&["room-1"])).unwrap();
    let config_arg = format!("--config.file={}", config.display());
    let web_arg = format!(
        "--web.config.file={}",
        scratch.path("tls_auth.good.yml").display()
    );
    let mut child = ChildProcess::spawn(
        &[
            &config_arg,
            &web_arg,
            "--web.listen-address=127.0.0.1:0",
            "--web.enable-lifecycle",
        ],
        &[
            ("VOLC_ACCESSKEY", "AKLTexampleAccessKey0001"),
            ("VOLC_SECRETKEY", SECRET),
        ],
    );
    let addr: SocketAddr = child
        .wait_for_word_after("address=", Duration::from_secs(20))
        .await
        .parse()
        .unwrap();
    let client = scratch.tls_client(addr, None);
    let base = format!("https://localhost:{}", addr.port());
    let metrics = format!("{base}/metrics");
    let scrape_client = {
        // A client whose every request carries the credentials.
        let mut headers = reqwest::header::HeaderMap::new();
        let token = "cHJvbWV0aGV1czpzY3JhcGUtbWU="; // prometheus:scrape-me
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Basic {token}").parse().unwrap(),
        );
        scratch
            .tls_builder(addr, None)
            .default_headers(headers)
            .build()
            .unwrap()
    };
    assert_eq!(
        scrape_client.get(&metrics).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        client.get(&metrics).send().await.unwrap().status(),
        401,
        "the web config is in force"
    );
    const OK: &str = "volcengine_rtc_config_last_reload_successful";
    const STAMP: &str = "volcengine_rtc_config_last_reload_success_timestamp_seconds";
    let first = wait_for_gauge(&child, &scrape_client, &metrics, STAMP, |v| v > 0.0).await;
    wait_for_gauge(&child, &scrape_client, &metrics, OK, |v| v == 1.0).await;

    // A good config: reloaded, the timestamp moves on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&config, config_yaml(&["room-1", "room-2"])).unwrap();
    child.signal("HUP");
    let second = wait_for_gauge(&child, &scrape_client, &metrics, STAMP, |v| v > first).await;
    wait_for_gauge(&child, &scrape_client, &metrics, OK, |v| v == 1.0).await;
    let stderr = child.stderr();
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    assert!(
        stderr.contains("targets: 1 added, 0 removed"),
        "the target diff is applied and logged: {stderr}"
    );

    // A broken config: 0, the timestamp stays, every problem logged, the process lives on.
    std::fs::write(
        &config,
        "api:\n  timeout: 5s\n  bogus_key: 1\nbudget:\n  GetRecordTask: -1\n",
    )
    .unwrap();
    child.signal("HUP");
    wait_for_gauge(&child, &scrape_client, &metrics, OK, |v| v == 0.0).await;
    let stamp = wait_for_gauge(&child, &scrape_client, &metrics, STAMP, |_| true).await;
    assert_eq!(stamp, second, "the last success stays");
    let stderr = child.stderr();
    let c = config.display();
    for problem in [
        format!("{c}:3:3: unknown key `bogus_key`"),
        format!("{c}:5:18: `budget.GetRecordTask`"),
    ] {
        assert!(stderr.contains(&problem), "not logged: {problem}\n{stderr}");
    }
    assert!(
        stderr.contains("the running configuration is kept"),
        "{stderr}"
    );
    let healthy = client
        .get(format!("{base}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200, "alive, probes open without auth");
    assert!(child.child.try_wait().unwrap().is_none(), "still running");

    // Fixed again, through POST /-/reload.
    std::fs::write(&config, config_yaml(&["room-1"])).unwrap();
    let answer = scrape_client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    wait_for_gauge(&child, &scrape_client, &metrics, OK, |v| v == 1.0).await;

    let (status, _) = child.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}

// ----- the exporter's hooks (interim: before targets can change while running) -----

fn parsed(yaml: &str, access_key: &str) -> Settings {
    volc_rtc_exporter::config::parse(
        yaml,
        "config.yaml",
        &MapEnv::new()
            .with_var("VOLC_ACCESSKEY", access_key)
            .with_var("VOLC_SECRETKEY", SECRET),
    )
    .unwrap()
}

#[tokio::test]
async fn the_exporter_applies_credentials_reports_the_target_diff_and_shows_its_rows() {
    use volc_rtc_exporter::model::{status, TaskSnapshot};
    use volc_rtc_exporter::runtime::Exporter;
    use volc_rtc_exporter::scheduler::Phase;

    let settings = parsed(
        &config_yaml(&["room-1", "room-2"]),
        "AKLTexampleAccessKey0001",
    );
    let exporter = Exporter::new(settings, Arc::new(Telemetry::new())).unwrap();

    let same = exporter
        .apply(parsed(
            &config_yaml(&["room-1", "room-2"]),
            "AKLTexampleAccessKey0001",
        ))
        .unwrap();
    assert_eq!(same.lines, ["no changes"]);
    let mut budget = config_yaml(&["room-2", "room-3"]);
    budget.push_str("budget:\n  GetRecordTask: 10\n");
    let changed = exporter
        .apply(parsed(&budget, "AKLTanotherAccessKey0002"))
        .unwrap()
        .to_string();
    assert!(
        changed.contains("credentials: now access key AKLT****0002"),
        "{changed}"
    );
    assert!(!changed.contains(SECRET), "no secret in the summary");
    assert!(
        changed.contains("targets: 1 added, 1 removed, 0 relabelled"),
        "{changed}"
    );
    assert!(changed.contains("budget"), "{changed}");

    // Rows: one target answered, one never polled.
    let at = volc_rtc_exporter::clock::now();
    let room2 = exporter
        .store
        .targets()
        .into_iter()
        .find(|(_, t)| t.key.room_id == "room-2")
        .map(|(id, _)| id)
        .expect("room-2 kept by the reload");
    exporter.store.record_success(
        room2,
        TaskSnapshot {
            status: status::RUNNING,
            start_time_ms: volc_rtc_exporter::clock::system_time_to_ms(at) - 60_000,
            ..TaskSnapshot::default()
        },
        at,
    );
    let rows = exporter.target_rows();
    assert_eq!(rows.len(), 2);
    let find = |room: &str| rows.iter().find(|r| r.room_id == room).expect(room);
    let (polled, fresh) = (find("room-2"), find("room-3"));
    assert_eq!(polled.app_id, APP);
    assert_eq!(polled.sources, ["config"]);
    assert!(polled.up);
    assert_eq!(polled.status, Some(status::RUNNING));
    assert_eq!(
        polled.last_poll_ms,
        Some(volc_rtc_exporter::clock::system_time_to_ms(at))
    );
    assert_eq!(polled.last_outcome.as_deref(), Some("success"));
    assert_eq!(fresh.phase, Phase::New);
    assert_eq!(fresh.last_poll_ms, None);
    assert!(fresh.next_due_ms.is_some(), "new targets are queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_targets_api_without_auth_is_warned_about() {
    let dir = common::scratch_dir("http-warn");
    let config = common::write_config(&dir, config_yaml(&["room-1"]));
    let config_arg = format!("--config.file={}", config.display());
    let mut child = ChildProcess::spawn(
        &[
            &config_arg,
            "--web.listen-address=127.0.0.1:0",
            "--web.enable-targets-api",
        ],
        &[
            ("VOLC_ACCESSKEY", "AKLTexampleAccessKey0001"),
            ("VOLC_SECRETKEY", SECRET),
        ],
    );
    let addr = child
        .wait_for_word_after("address=", Duration::from_secs(20))
        .await;
    let stderr = child.stderr();
    assert!(stderr.contains("without basic auth"), "{stderr}");
    assert!(stderr.contains("level=warn"), "{stderr}");
    // The API answers: the configured target is listed.
    let (status, body) = common::http_get(&format!("http://{addr}/api/v1/targets"))
        .await
        .expect("the API answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"room_id\":\"room-1\""), "{body}");
    // A reload that leaves the API without users says so again.
    child.signal("HUP");
    child
        .wait_for_word_after("configuration reloaded", Duration::from_secs(15))
        .await;
    let stderr = child.stderr();
    assert_eq!(stderr.matches("without basic auth").count(), 2, "{stderr}");
    let (status, _) = child.terminate(Duration::from_secs(10)).await;
    assert!(status.success());
    let _ = std::fs::remove_dir_all(dir);
}
