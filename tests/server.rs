//! The HTTP server on a loopback port: every route and status, gzip and OpenMetrics
//! negotiation, readiness, graceful shutdown that returns in bounded time, and scrapes that
//! share the page instead of copying it.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use flate2::read::GzDecoder;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::exposition::{Chunk, Format, Page, TEXT_CONTENT_TYPE};
use volc_rtc_exporter::http::{serve, App, LandingInfo};
use volc_rtc_exporter::metrics;
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::model::{status, Kind, RecordFile, Target, TargetKey, TaskSnapshot};
use volc_rtc_exporter::targets::table::{Store, BLOCK};

struct Running {
    base: String,
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `method` for `path` (appended to the base URL) with `client`.
    async fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::Response {
        client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> reqwest::Response {
        self.request(client, reqwest::Method::GET, path).await
    }

    /// Cancels and returns how long `serve` took to return.
    async fn stop(self) -> Duration {
        let began = Instant::now();
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("serve did not return within 10 s")
            .expect("serve panicked")
            .expect("serve failed");
        began.elapsed()
    }
}

/// A page of `lines` metric lines, the same every time.
fn page(lines: usize) -> Vec<u8> {
    let mut text = String::from("# HELP demo_value A demo gauge.\n# TYPE demo_value gauge\n");
    for i in 0..lines {
        text.push_str(&format!(
            "demo_value{{target=\"t{i}\",room=\"Room{}\"}} {i}\n",
            i % 97
        ));
    }
    text.into_bytes()
}

async fn start_with(render: impl Fn(&mut Vec<u8>) + Send + Sync + 'static) -> Running {
    start_pages(move |_format| {
        let mut out = Vec::new();
        render(&mut out);
        let mut page = Page::new();
        page.push_text(out);
        page
    })
    .await
}

async fn start_pages(page: impl Fn(Format) -> Page + Send + Sync + 'static) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let app = Arc::new(App::new(
        Box::new(page),
        ready.clone(),
        LandingInfo::new("3 targets, budget 50/s per action"),
    ));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, app, shutdown.clone()));
    Running {
        base: format!("http://{addr}"),
        addr,
        ready,
        shutdown,
        server,
    }
}

async fn start() -> Running {
    start_with(|out: &mut Vec<u8>| out.extend_from_slice(&page(20_000))).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn get_metrics(running: &Running, accept_encoding: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("{}/metrics", running.base));
    if let Some(value) = accept_encoding {
        request = request.header("Accept-Encoding", value);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_identity_body_is_the_rendered_page() {
    let running = start().await;
    let response = get_metrics(&running, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some(TEXT_CONTENT_TYPE));
    assert_eq!(header(&response, "content-encoding"), None);
    assert_eq!(header(&response, "vary"), Some("Accept-Encoding"));
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        page(20_000).as_slice()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_gzip_when_accepted_and_not_otherwise() {
    let running = start().await;
    let identity = page(20_000);
    for value in ["gzip", "deflate, gzip;q=0.8", "br, *", "gzip, deflate, br"] {
        let response = get_metrics(&running, Some(value)).await;
        assert_eq!(response.status(), 200, "{value}");
        assert_eq!(
            header(&response, "content-encoding"),
            Some("gzip"),
            "{value}"
        );
        assert_eq!(header(&response, "content-type"), Some(TEXT_CONTENT_TYPE));
        let compressed = response.bytes().await.unwrap();
        assert!(
            compressed.len() * 4 < identity.len(),
            "{} bytes",
            compressed.len()
        );
        let mut body = Vec::new();
        GzDecoder::new(compressed.as_ref())
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body, identity, "{value}");
    }
    for value in [
        "identity",
        "gzip;q=0",
        "gzip; q=0.000, identity",
        "*;q=0",
        "br",
    ] {
        let response = get_metrics(&running, Some(value)).await;
        assert_eq!(response.status(), 200, "{value}");
        assert_eq!(header(&response, "content-encoding"), None, "{value}");
        assert_eq!(
            response.bytes().await.unwrap().as_ref(),
            identity.as_slice(),
            "{value}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_health_and_readiness() {
    let running = start().await;
    let client = client();

    let response = running.get(&client, "").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("volcengine-rtc-exporter"));
    assert!(html.contains(env!("CARGO_PKG_VERSION")));
    assert!(html.contains("3 targets, budget 50/s per action"));
    for href in ["metrics", "-/healthy", "-/ready"] {
        assert!(
            html.contains(&format!("href=\"{href}\"")),
            "no link to {href}"
        );
    }
    assert!(!html.contains("src=\"http"), "external assets");

    let response = running.get(&client, "/-/healthy").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().trim(), "Healthy");

    let response = running.get(&client, "/-/ready").await;
    assert_eq!(response.status(), 503);
    running.ready.store(true, Ordering::Release);
    let response = running.get(&client, "/-/ready").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap().trim(), "Ready");

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_unknown_paths_and_other_methods() {
    let running = start().await;
    let client = client();

    for path in ["/", "/metrics", "/-/healthy"] {
        let response = running.request(&client, reqwest::Method::HEAD, path).await;
        assert_eq!(response.status(), 200, "HEAD {path}");
        assert!(header(&response, "content-type").is_some(), "HEAD {path}");
        assert!(
            response.bytes().await.unwrap().is_empty(),
            "HEAD {path} has a body"
        );
    }
    let response = running
        .request(&client, reqwest::Method::HEAD, "/-/ready")
        .await;
    assert_eq!(response.status(), 503);

    for path in ["/nope", "/metrics/", "/-/", "/favicon.ico"] {
        let response = running.get(&client, path).await;
        assert_eq!(response.status(), 404, "GET {path}");
    }
    for (method, path) in [("POST", "/metrics"), ("PUT", "/"), ("DELETE", "/-/ready")] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = running.request(&client, method.clone(), path).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_with_an_idle_keep_alive_connection() {
    let running = start().await;
    let client = client();
    // The client keeps this connection open in its pool afterwards.
    let response = running.get(&client, "/-/healthy").await;
    assert_eq!(header(&response, "connection"), None);
    response.text().await.unwrap();
    let addr = running.addr;

    let took = running.stop().await;
    println!("shutdown with an idle keep-alive connection took {took:?}");
    // Well under the 2 s grace period: idle connections are closed at once, not waited out.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_scrape_finish() {
    let running = start_with(|out: &mut Vec<u8>| {
        std::thread::sleep(Duration::from_millis(600));
        out.extend_from_slice(b"slow 1\n");
    })
    .await;
    let url = format!("{}/metrics", running.base);
    let scrape = tokio::spawn(async move { client().get(url).send().await?.text().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let took = running.stop().await;
    println!("shutdown during a 600 ms scrape took {took:?}");
    assert!(
        took >= Duration::from_millis(300),
        "did not wait for the scrape: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(scrape.await.unwrap().unwrap(), "slow 1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_connection_stuck_mid_request() {
    let running = start().await;
    let mut stream = TcpStream::connect(running.addr).await.unwrap();
    // A request head that never ends.
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let took = running.stop().await;
    println!("shutdown with a stuck request took {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_render_is_a_500_and_the_server_carries_on() {
    let running = start_with(|_: &mut Vec<u8>| panic!("render failed on purpose")).await;
    let response = get_metrics(&running, None).await;
    assert_eq!(response.status(), 500);
    let response = running.get(&client(), "/-/healthy").await;
    assert_eq!(response.status(), 200);
    running.stop().await;
}

/// A store of `n` record targets with three files each, all polled: several blocks of chunks.
fn store_of(n: usize) -> Store {
    let targets = (0..n)
        .map(|i| Target {
            key: TargetKey {
                kind: Kind::Record,
                app_id: "661e8f0d1ab2c3d4e5f60718".into(),
                room_id: format!("Room{i}"),
                task_id: Some(format!("Task{i}")),
            },
            labels: vec![("team".into(), "live".into())].into(),
        })
        .collect();
    let store = Store::new(targets);
    for i in 0..n {
        let t0 = 1_700_000_000_123 + i as i64;
        let snapshot = TaskSnapshot {
            status: status::ENDED,
            start_time_ms: t0,
            end_time_ms: t0 + 3_600_000,
            stop_reason: "StopByAPI".into(),
            files: (0..3)
                .map(|f| RecordFile {
                    vid: Some(format!("v{i}_{f}")),
                    size_bytes: Some(1_000_000 + f),
                    duration_ms: Some(3_599_000 + f),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        store.record_success(
            i,
            snapshot,
            UNIX_EPOCH + Duration::from_millis(t0 as u64 + 3_700_000),
        );
    }
    store
}

async fn get_with(running: &Running, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(format!("{}/metrics", running.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn gunzip(compressed: &[u8]) -> Vec<u8> {
    // A single-member decoder: the page is one gzip member, however many chunks it has.
    let mut body = Vec::new();
    GzDecoder::new(compressed).read_to_end(&mut body).unwrap();
    body
}

/// The store's part of a body (everything before the self-metrics, which move between
/// scrapes).
fn store_part(body: &[u8]) -> &str {
    let text = std::str::from_utf8(body).unwrap();
    let stops = text
        .find("# HELP volcengine_rtc_task_stops")
        .expect("the stop counter");
    let end = text[stops..]
        .find("\n# HELP ")
        .expect("self-metrics follow");
    &text[..stops + end + 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_pages_in_both_formats_identity_and_gzip() {
    let store = Arc::new(store_of(3 * BLOCK + 7));
    let telemetry = Arc::new(Telemetry::new());
    let running = {
        let (store, telemetry) = (store.clone(), telemetry.clone());
        start_pages(move |format| metrics::page(&store, &telemetry, format)).await
    };
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    let identity = get_with(&running, &[]).await;
    assert_eq!(header(&identity, "content-type"), Some(TEXT_CONTENT_TYPE));
    let vary: Vec<&str> = identity
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(vary, ["Accept-Encoding", "Accept"]);
    let length: usize = header(&identity, "content-length")
        .unwrap()
        .parse()
        .unwrap();
    let identity = identity.bytes().await.unwrap();
    assert_eq!(identity.len(), length);
    let mut expected = Vec::new();
    metrics::render(&store, &telemetry, &mut expected);
    assert!(store_part(&identity) == store_part(&expected));
    assert!(identity.len() > 500_000, "{} bytes", identity.len());

    // The store changes between scrapes: one target in the middle of a block.
    let mut changed = store.state(BLOCK + 3).and_then(|s| s.snapshot).unwrap();
    changed.files[1].size_bytes = Some(42);
    store.record_success(
        BLOCK + 3,
        changed,
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let mut expected = Vec::new();
    metrics::render(&store, &telemetry, &mut expected);
    assert!(String::from_utf8_lossy(&expected).contains("file=\"v131_1\"} 42\n"));

    for round in 0..2 {
        let gzip = get_with(&running, &[("Accept-Encoding", "gzip")]).await;
        assert_eq!(header(&gzip, "content-encoding"), Some("gzip"));
        assert_eq!(header(&gzip, "content-type"), Some(TEXT_CONTENT_TYPE));
        let compressed = gzip.bytes().await.unwrap();
        assert!(
            compressed.len() * 8 < expected.len(),
            "round {round}: {} bytes",
            compressed.len()
        );
        let body = gunzip(&compressed);
        assert!(store_part(&body) == store_part(&expected), "round {round}");
        assert!(body.ends_with(b"\n"));
    }

    for encoding in [None, Some("gzip")] {
        let mut headers = vec![("Accept", prometheus_accept)];
        headers.extend(encoding.map(|e| ("Accept-Encoding", e)));
        let response = get_with(&running, &headers).await;
        assert_eq!(
            header(&response, "content-type"),
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
        );
        let raw = response.bytes().await.unwrap();
        let body = if encoding.is_some() {
            gunzip(&raw)
        } else {
            raw.to_vec()
        };
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with("# EOF\n"), "{encoding:?}");
        assert!(text.contains("# TYPE volcengine_rtc_task_stops counter\n"));
        assert!(text.contains("volcengine_rtc_task_stops_created{"));
        // The per-target series are the same as in the text format.
        let expected = store_part(&expected);
        let until = expected.find("# HELP volcengine_rtc_task_stops").unwrap();
        assert!(text.starts_with(&expected[..until]), "{encoding:?}");
    }
    running.stop().await;
}

/// This process's resident memory, KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// Set in the child process that [`clients_that_do_not_read_share_the_page`] runs itself in.
const ALONE: &str = "VOLC_SERVER_TEST_ALONE";

#[test]
fn clients_that_do_not_read_share_the_page() {
    if std::env::var_os(ALONE).is_none() {
        // Resident memory is per process, and the other tests of this binary allocate as they
        // run; so the measurement runs in a child process of this same test, alone.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "clients_that_do_not_read_share_the_page",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ALONE, "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(non_reading_clients());
}

async fn non_reading_clients() {
    // A 16 MiB page of eight shared chunks, as the store keeps them.
    const CHUNK: usize = 2 << 20;
    const CLIENTS: usize = 12;
    let chunks: Vec<Arc<Chunk>> = (0..8u8)
        .map(|i| {
            let line = format!("demo_value{{chunk=\"{i}\",pad=\"{}\"}} 1\n", "x".repeat(64));
            Arc::new(Chunk::new(line.repeat(CHUNK / line.len()).into_bytes()))
        })
        .collect();
    let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let running = {
        let (chunks, pages) = (chunks.clone(), pages.clone());
        start_pages(move |_| {
            let mut page = Page::new();
            chunks.iter().for_each(|c| page.push(c.clone()));
            pages.fetch_add(1, Ordering::SeqCst);
            page
        })
        .await
    };
    let page_len = {
        let mut page = Page::new();
        chunks.iter().for_each(|c| page.push(c.clone()));
        page.len()
    };
    // Warm up (thread pools, buffers) with one full scrape of each encoding.
    let full = get_metrics(&running, None).await.bytes().await.unwrap();
    assert_eq!(full.len(), page_len);
    let gzip = get_metrics(&running, Some("gzip"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(gunzip(&gzip).len(), page_len);
    drop((full, gzip));

    let before = rss_kib();
    let mut streams = Vec::new();
    for i in 0..CLIENTS {
        let mut stream = TcpStream::connect(running.addr).await.unwrap();
        let encoding = if i % 2 == 0 { "identity" } else { "gzip" };
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {encoding}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        streams.push(stream);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while pages.load(Ordering::SeqCst) < CLIENTS + 2 {
        assert!(
            Instant::now() < deadline,
            "the server did not answer every client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let every connection write what its socket takes and stall.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown_mib = rss_kib().saturating_sub(before) as f64 / 1024.0;
    println!(
        "{CLIENTS} clients that do not read a {page_len}-byte page: RSS grew {grown_mib:.1} MiB"
    );
    // A copy per client would be 12 × 16 MiB = 192 MiB; shared chunks cost next to nothing.
    assert!(grown_mib < 48.0, "RSS grew {grown_mib:.1} MiB");
    drop(streams);
    running.stop().await;
}
