//! The HTTP server on a loopback port: every route and status, gzip negotiation, readiness,
//! and graceful shutdown that returns in bounded time.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flate2::read::GzDecoder;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::exposition::Page;
use volc_rtc_exporter::server::{serve, App, LandingInfo, METRICS_CONTENT_TYPE};

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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let app = Arc::new(App {
        render: Box::new(move |_format| {
            let mut out = Vec::new();
            render(&mut out);
            Page::from_text(out)
        }),
        ready: ready.clone(),
        landing: LandingInfo::new("3 targets, budget 50/s per action"),
    });
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
    assert_eq!(
        header(&response, "content-type"),
        Some(METRICS_CONTENT_TYPE)
    );
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
        assert_eq!(
            header(&response, "content-type"),
            Some(METRICS_CONTENT_TYPE)
        );
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
