//! Issue 17 through the real binary (`demo` on a loopback port): one client cannot deny
//! service to the rest, and refusals reach HTTP/2 clients.
//!
//! - curl (HTTP/2 over TLS, and HTTP/1.1) POSTing bodies gets every refusal's status: 401, 403,
//!   404, 405, 413, 503;
//! - a flood of wrong passwords (bcrypt cost 10) does not hold up a good login, cached or new;
//! - connections that stall before or between requests are closed: silence, a byte, half an
//!   HTTP/2 preface, a finished TLS handshake, an idle HTTP/2 or HTTP/1.1 connection;
//! - one h2c connection with a window of 0 (or with request bodies stalled one byte short)
//!   holds a few `--web.max-requests` places, not all, and is dropped once its answers stall
//!   for `--web.write-timeout`;
//! - request bodies stalled one byte short get `408` and their connections close;
//! - a 1 MiB registration body of `{}` entries costs little memory and gets a short answer;
//! - running out of open files is logged once, with the fix, and the server recovers.
//!
//! HTTP/2 frames are written by hand (`h2raw`), so the test controls windows and stalls.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::tls;
use common::{parse_exposition, ChildProcess};
use rcgen::Issuer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);

// ----- the binary -----

/// A client for plain HTTP/1.1 on loopback.
fn http1() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(10 * SEC)
        .build()
        .expect("reqwest client")
}

/// `name{reason=…}` from the exporter's `/metrics` (0 when absent).
async fn counter(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    reason: &str,
    auth: Option<(&str, &str)>,
) -> f64 {
    let mut request = client.get(format!("{base}/metrics"));
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("/metrics answers");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("/metrics body");
    let metrics = parse_exposition(&text).expect("valid exposition");
    metrics
        .get(&common::key(name, &[("reason", reason)]))
        .copied()
        .unwrap_or(0.0)
}

/// The peak resident memory of process `pid` so far (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kib * 1024
}

// ----- certificates -----

/// A scratch directory with a CA (`ca.crt`) and a server certificate for 127.0.0.1.
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(what: &str) -> Pki {
        let dir = common::scratch_dir(what);
        let (ca_params, ca_key, ca) = tls::new_ca("test CA");
        let server = tls::leaf(
            "localhost",
            &["127.0.0.1", "localhost"],
            &Issuer::from_params(&ca_params, &ca_key),
        );
        std::fs::write(dir.join("ca.crt"), &ca.cert).expect("write ca.crt");
        std::fs::write(dir.join("server.crt"), &server.cert).expect("write server.crt");
        std::fs::write(dir.join("server.key"), &server.key).expect("write server.key");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes a web config with TLS and `users` (name, bcrypt hash); returns its path.
    fn web_config(&self, users: &[(&str, &str)]) -> PathBuf {
        let mut text =
            String::from("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
        if !users.is_empty() {
            text.push_str("basic_auth_users:\n");
            for (user, hash) in users {
                text.push_str(&format!("  {user}: {hash}\n"));
            }
        }
        let path = self.path("web.yml");
        std::fs::write(&path, text).expect("write web.yml");
        path
    }

    /// A TLS client config trusting only the test CA, offering `alpn`.
    fn tls_client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let pem = std::fs::read(self.path("ca.crt")).expect("ca.crt");
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject as _;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.expect("CA PEM")).expect("add CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- curl -----

/// curl's `%{http_version} %{http_code}` for one request.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .expect("run curl (scripts/install-test-deps installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn curl_has_http2() {
    let out = Command::new("curl")
        .arg("--version")
        .output()
        .expect("run curl (scripts/install-test-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("HTTP2"), "curl without HTTP/2:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reaches_curl_over_http2_and_http1_with_a_body() {
    curl_has_http2();
    let pki = Pki::new("refusals");
    let hash = bcrypt::hash("scrape-me", 4).expect("bcrypt");
    let web = pki.web_config(&[("prometheus", &hash)]);
    let web_flag = format!("--web.config.file={}", web.display());
    let (child, addr) = common::start_demo(&[
        &web_flag,
        "--web.enable-targets-api",
        "--web.max-requests=1",
    ])
    .await;
    let base = format!("https://{addr}");
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().expect("UTF-8 path");
    let small = pki.path("small.json");
    std::fs::write(&small, format!("[{}]", "{}, ".repeat(500) + "{}")).expect("write body");
    let large = pki.path("large.json");
    std::fs::write(&large, vec![b' '; (1 << 20) + 64 * 1024]).expect("write body");
    let small = format!("@{}", small.display());
    let large = format!("@{}", large.display());

    let cases: [(&str, &[&str], &str, &str); 6] = [
        ("401", &[], "/api/v1/targets", &small),
        ("403", &["-u", "prometheus:scrape-me"], "/-/reload", &small),
        (
            "404",
            &["-u", "prometheus:scrape-me"],
            "/no-such-page",
            &small,
        ),
        ("405", &["-u", "prometheus:scrape-me"], "/metrics", &small),
        (
            "413",
            &["-u", "prometheus:scrape-me"],
            "/api/v1/targets",
            &large,
        ),
        ("401", &[], "/api/v1/targets", &large),
    ];
    for (expected, auth, path, body) in cases {
        for (version, shown) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let mut args = vec![version, "--cacert", ca, "-X", "POST", "--data-binary", body];
            args.extend_from_slice(auth);
            let url = format!("{base}{path}");
            args.push(&url);
            assert_eq!(
                curl(&args),
                format!("{shown} {expected}"),
                "POST {path} with {body} over {version}"
            );
        }
    }

    // 503: the only place is held by a scrape whose answer cannot move (HTTP/2 over TLS with a
    // window of 0).
    let tcp = TcpStream::connect(&addr).await.expect("connect");
    let server_name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    let tls = pki
        .tls_client(&[b"h2"])
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake");
    let mut frozen = h2raw::Conn::open_on(tls, &[(h2raw::INITIAL_WINDOW_SIZE, 0)]).await;
    let auth = basic("prometheus", "scrape-me");
    frozen
        .request(1, "GET", "/metrics", &[("authorization", &auth)], true)
        .await;
    frozen
        .wait_for_headers(1, 10 * SEC, "the frozen scrape's answer")
        .await;
    let url = format!("{base}/api/v1/targets");
    for (version, shown) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let args = [
            version,
            "--cacert",
            ca,
            "-u",
            "prometheus:scrape-me",
            "-X",
            "POST",
            "--data-binary",
            &small,
            &url,
        ];
        assert_eq!(curl(&args), format!("{shown} 503"), "{version}");
    }
    // The probes still answer.
    let url = format!("{base}/-/healthy");
    assert_eq!(curl(&["--http2", "--cacert", ca, &url]), "2 200");
    drop(frozen);
    let stderr = child.stderr();
    assert!(
        !stderr.contains("scrape-me"),
        "a password in the log:\n{stderr}"
    );
}

// ----- logins -----

/// `Authorization: Basic …` for `user:password`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_flood_does_not_hold_up_good_logins() {
    // Cost 10, as `htpasswd -B` makes them: tens of milliseconds per check.
    let alice = bcrypt::hash("alice-password", 10).expect("bcrypt");
    let bob = bcrypt::hash("bob-password", 10).expect("bcrypt");
    let dir = common::scratch_dir("flood");
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!("basic_auth_users:\n  alice: {alice}\n  bob: {bob}\n"),
    )
    .expect("write web.yml");
    let web_flag = format!("--web.config.file={}", web.display());
    let (child, addr) = common::start_demo(&[&web_flag]).await;
    let base = format!("http://{addr}");
    let client = http1();
    let scrape = |user: &'static str, password: &'static str| {
        let client = client.clone();
        let url = format!("{base}/metrics");
        async move {
            let started = Instant::now();
            let response = client
                .get(url)
                .basic_auth(user, Some(password))
                .send()
                .await
                .expect("/metrics answers");
            assert_eq!(response.status(), 200, "{user}");
            response.bytes().await.expect("/metrics body");
            started.elapsed()
        }
    };
    // Alice is verified (and cached) before the flood.
    scrape("alice", "alice-password").await;

    // 300 keep-alive connections looping wrong passwords: half repeat one, half make up a new
    // one each time (each of those needs a bcrypt run).
    let stop = tokio_util::sync::CancellationToken::new();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..300 {
        let url = format!("{base}/metrics");
        let stop = stop.clone();
        let sent = sent.clone();
        flood.spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .http1_only()
                .pool_max_idle_per_host(1)
                .timeout(30 * SEC)
                .build()
                .expect("reqwest client");
            let mut n = 0u64;
            while !stop.is_cancelled() {
                n += 1;
                let password = if i % 2 == 0 {
                    "wrong".to_string()
                } else {
                    format!("wrong-{i}-{n}")
                };
                let request = client
                    .get(&url)
                    .header("Authorization", basic("alice", &password))
                    .send();
                tokio::select! {
                    () = stop.cancelled() => break,
                    answer = request => {
                        if let Ok(answer) = answer {
                            let _ = answer.bytes().await;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        });
    }
    // Let the flood get going.
    tokio::time::sleep(2 * SEC).await;
    let cached = scrape("alice", "alice-password").await;
    let new = scrape("bob", "bob-password").await;
    let cached_again = scrape("alice", "alice-password").await;
    let during = sent.load(std::sync::atomic::Ordering::Relaxed);
    stop.cancel();
    while flood.join_next().await.is_some() {}
    println!("during the flood ({during} wrong logins): cached user {cached:?} and {cached_again:?}, new user {new:?}");
    assert!(during >= 300, "the flood sent only {during} requests");
    assert!(cached < 2 * SEC, "a cached user waited {cached:?}");
    assert!(
        cached_again < 2 * SEC,
        "a cached user waited {cached_again:?}"
    );
    assert!(new < 5 * SEC, "a new user waited {new:?}");

    // Right after the flood, a scrape answers at once.
    let after = scrape("alice", "alice-password").await;
    assert!(after < 2 * SEC, "after the flood: {after:?}");
    let failures = counter(
        &client,
        &base,
        "volcengine_rtc_http_auth_failures_total",
        "bad_credentials",
        Some(("alice", "alice-password")),
    )
    .await;
    assert!(failures >= 100.0, "counted {failures} failed logins");
    // Logged, but once a minute, and never with a password.
    let stderr = child.stderr();
    let lines = stderr.matches("failed logins").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} log lines about failed logins:\n{stderr}"
    );
    for secret in ["alice-password", "wrong-", "Basic "] {
        assert!(!stderr.contains(secret), "{secret:?} in the log:\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- stalled connections -----

/// Reads until the peer closes (or the connection fails); returns when.
async fn closed_at<S: tokio::io::AsyncRead + Unpin>(mut stream: S) -> Instant {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return Instant::now(),
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_stall_before_or_between_requests_are_closed() {
    let (_child, addr) = common::start_demo(&["--web.read-header-timeout=2s"]).await;
    let base = format!("http://{addr}");
    let started = Instant::now();
    let mut waits = tokio::task::JoinSet::new();
    // 400 connections that never send a byte.
    for _ in 0..400 {
        let stream = TcpStream::connect(&addr).await.expect("connect");
        waits.spawn(async move { ("silent", closed_at(stream).await) });
    }
    // One byte; half an HTTP/2 preface.
    for (what, bytes) in [
        ("a byte", &b"G"[..]),
        ("half a preface", &h2raw::PREFACE[..12]),
    ] {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        waits.spawn(async move { (what, closed_at(stream).await) });
    }
    // HTTP/2 (h2c) and HTTP/1.1 connections idle after one request.
    let mut h2 = h2raw::Conn::open(&addr, &[]).await;
    h2.request(1, "GET", "/-/healthy", &[], true).await;
    let h1 = {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        stream
            .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        stream
    };
    waits.spawn(async move { ("idle HTTP/1.1", closed_at(h1).await) });

    // Meanwhile the server answers others.
    let (status, _) = common::http_get(&format!("{base}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);

    let deadline = started + 10 * SEC;
    while let Some(done) = tokio::time::timeout_at(deadline, waits.join_next())
        .await
        .expect("every stalled connection is closed within 10 s")
    {
        let (what, at) = done.expect("reader task");
        let after = at - started;
        assert!(after >= SEC, "{what} closed too early, after {after:?}");
    }
    let h2_closed = h2.wait_closed(10 * SEC).await;
    assert!(h2.seen().headers >= 1, "the h2c request was answered");
    assert!(h2.seen().goaway, "an idle h2c connection gets GOAWAY");
    assert!(h2_closed - started >= SEC);

    let client = http1();
    let timeouts = counter(
        &client,
        &base,
        "volcengine_rtc_http_connections_closed_total",
        "header_timeout",
        None,
    )
    .await;
    assert!(
        timeouts >= 402.0,
        "{timeouts} closed for the header timeout"
    );
    let idle = counter(
        &client,
        &base,
        "volcengine_rtc_http_connections_closed_total",
        "idle",
        None,
    )
    .await;
    assert!(idle >= 1.0, "{idle} closed for idling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_that_stall_before_a_request_are_closed() {
    let pki = Pki::new("tls-stall");
    let web = pki.web_config(&[]);
    let web_flag = format!("--web.config.file={}", web.display());
    let (_child, addr) = common::start_demo(&[&web_flag, "--web.read-header-timeout=2s"]).await;
    let started = Instant::now();
    let mut waits = tokio::task::JoinSet::new();
    let server_name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    for (what, alpn, send) in [
        ("TLS, then nothing", &[&b"http/1.1"[..]][..], &b""[..]),
        (
            "TLS h2, half a preface",
            &[&b"h2"[..]][..],
            &h2raw::PREFACE[..10],
        ),
        (
            "TLS h2, preface, no request",
            &[&b"h2"[..]][..],
            &h2raw::PREFACE[..],
        ),
    ] {
        let tcp = TcpStream::connect(&addr).await.expect("connect");
        let mut tls = pki
            .tls_client(alpn)
            .connect(server_name.clone(), tcp)
            .await
            .expect("TLS handshake");
        tls.write_all(send).await.expect("write");
        tls.flush().await.expect("flush");
        waits.spawn(async move { (what, closed_at(tls).await) });
    }
    while let Some(done) = tokio::time::timeout_at(started + 10 * SEC, waits.join_next())
        .await
        .expect("every stalled TLS connection is closed within 10 s")
    {
        let (what, at) = done.expect("reader task");
        assert!(at - started >= SEC, "{what} closed too early");
    }
}

// ----- places -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_or_stalled_uploads_on_one_connection_do_not_hold_every_place() {
    let (_child, addr) = common::start_demo(&[
        "--web.enable-targets-api",
        "--web.write-timeout=3s",
        "--web.read-timeout=3s",
    ])
    .await;
    let base = format!("http://{addr}");
    let client = http1();

    // One h2c connection with SETTINGS_INITIAL_WINDOW_SIZE=0 and 40 scrapes: no answer body
    // can move.
    let mut frozen = h2raw::Conn::open(&addr, &[(h2raw::INITIAL_WINDOW_SIZE, 0)]).await;
    for i in 0..40 {
        frozen
            .request(1 + 2 * i, "GET", "/metrics", &[], true)
            .await;
    }
    // Another with 40 uploads stalled one byte short of their length.
    let mut uploads = h2raw::Conn::open(&addr, &[]).await;
    for i in 0..40 {
        let stream = 1 + 2 * i;
        uploads
            .request(
                stream,
                "POST",
                "/api/v1/targets",
                &[("content-length", "10")],
                false,
            )
            .await;
        uploads.data(stream, b"[        ", false).await;
    }
    // Both are being answered (or refused) before the HTTP/1.1 scrape is measured.
    let began = Instant::now();
    frozen
        .wait_for_headers(4, 5 * SEC, "answers on the frozen connection")
        .await;
    assert_eq!(frozen.seen().data_bytes, 0, "DATA sent into a window of 0");
    assert!(
        frozen.seen().refused >= 1,
        "more than {} streams were opened",
        16
    );

    let started = Instant::now();
    let response = client
        .get(format!("{base}/metrics"))
        .timeout(5 * SEC)
        .send()
        .await
        .expect("/metrics answers within 5 s");
    assert_eq!(response.status(), 200);
    response.bytes().await.expect("/metrics body");
    let took = started.elapsed();
    println!("HTTP/1.1 /metrics beside the frozen connection: {took:?}");
    assert!(took < 5 * SEC, "{took:?}");
    assert!(
        frozen.seen().closed.is_none(),
        "closed before the write timeout"
    );

    // The frozen answers stall for --web.write-timeout: the connection is dropped. The
    // uploads time out (--web.read-timeout) and are answered 408.
    let closed = frozen.wait_closed(10 * SEC).await;
    assert!(
        closed - began >= 2 * SEC,
        "dropped after {:?}",
        closed - began
    );
    // Streams past 16 were refused; the 16 taken were answered (4 with 408, the rest 503
    // once their bodies stopped coming).
    uploads
        .wait_for_headers(16, 10 * SEC, "an answer to every stalled upload")
        .await;
    let stalled = counter(
        &client,
        &base,
        "volcengine_rtc_http_connections_closed_total",
        "write_stalled",
        None,
    )
    .await;
    assert_eq!(stalled, 1.0);
}

// ----- bodies -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_bodies_sent_one_byte_short_get_408_and_their_connections_close() {
    let (child, addr) = common::start_demo(&["--web.read-timeout=2s"]).await;
    let pid = child.child.id();
    let before = peak_rss(pid);
    let started = Instant::now();
    let mut stalled = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(&addr).await.expect("connect");
        let body = vec![b'{'; 10_000];
        let head = format!(
            "POST /callbacks/volcengine-rtc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len() + 1
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&body).await.expect("write");
        stalled.spawn(async move {
            let mut answer = Vec::new();
            let read = tokio::time::timeout(10 * SEC, stream.read_to_end(&mut answer)).await;
            (read.is_ok(), String::from_utf8_lossy(&answer).into_owned())
        });
    }
    while let Some(done) = stalled.join_next().await {
        let (closed, answer) = done.expect("reader task");
        assert!(closed, "a stalled upload's connection stayed open");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let took = started.elapsed();
    assert!(took >= SEC && took < 8 * SEC, "{took:?}");
    let grown = peak_rss(pid).saturating_sub(before);
    println!(
        "300 callback bodies stalled one byte short: 408 after {took:?}, peak memory +{} MiB",
        grown >> 20
    );
    assert!(grown < 50 << 20, "peak memory grew by {} MiB", grown >> 20);
}

// ----- the registration API -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bad_registration_body_costs_little_and_gets_a_short_answer() {
    /// POSTs `body` to `url`: the status and the answer's body.
    async fn post(client: &reqwest::Client, url: &str, body: String) -> (u16, bytes::Bytes) {
        let response = client
            .post(url)
            .body(body)
            .send()
            .await
            .expect("POST answers");
        let status = response.status().as_u16();
        (status, response.bytes().await.expect("answer body"))
    }

    let (child, addr) = common::start_demo(&["--web.enable-targets-api"]).await;
    let url = format!("http://{addr}/api/v1/targets");
    let client = http1();
    // Warm up: the first answers allocate what every later one reuses.
    let _ = client
        .get(&url)
        .send()
        .await
        .expect("GET answers")
        .bytes()
        .await;
    let pid = child.child.id();
    let before = peak_rss(pid);

    // 1 MiB of `{}` entries, three at once.
    let mut body = String::from("[");
    while body.len() < (1 << 20) - 4 {
        body.push_str("{},");
    }
    body.pop();
    body.push(']');
    let posts = (0..3).map(|_| {
        let client = client.clone();
        let url = url.clone();
        let body = body.clone();
        async move { post(&client, &url, body).await }
    });
    for (status, answer) in futures_join(posts).await {
        assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
        assert!(answer.len() < 1 << 20, "answer of {} bytes", answer.len());
        assert!(String::from_utf8_lossy(&answer).contains("at most 10000"));
    }

    // Under the entry cap, every entry wrong in several ways: the answer lists 100 problems.
    let entry = r#"{"kind":"nope","app_id":"","room_id":"","task_id":"","labels":{"bad-name":"x","__reserved":"y"},"extra":1}"#;
    let mut body = String::from("[");
    for i in 0..9_000 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(entry);
    }
    body.push(']');
    assert!(body.len() <= 1 << 20);
    let (status, answer) = post(&client, &url, body).await;
    assert_eq!(status, 400);
    assert!(answer.len() < 1 << 20, "answer of {} bytes", answer.len());
    let json: serde_json::Value = serde_json::from_slice(&answer).expect("JSON answer");
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(100));
    assert!(
        json["more_problems"].as_u64().unwrap_or(0) > 9_000,
        "{}",
        json["error"]
    );

    let grown = peak_rss(pid).saturating_sub(before);
    println!("peak memory grew by {} MiB", grown >> 20);
    assert!(
        grown <= 200 << 20,
        "peak memory grew by {} MiB",
        grown >> 20
    );
}

/// Runs futures at once and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

// ----- open files -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_open_files_is_logged_once_and_the_server_recovers() {
    let home = common::scratch_dir("nofile-home");
    let inner = common::binary_command(
        &[
            "demo",
            "--web.listen-address=127.0.0.1:0",
            "--web.read-header-timeout=2s",
        ],
        &[],
        &home,
    );
    // `prlimit` (util-linux) runs the binary with a low open-file limit.
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=64:64").arg("--").arg(inner.get_program());
    cmd.args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let mut child = ChildProcess::spawn_command(cmd);
    let addr = child
        .wait_for_word_after("exporter listening on ", 20 * SEC)
        .await;
    let base = format!("http://{addr}");

    // More silent connections than the process may have files.
    let mut silent = Vec::new();
    for _ in 0..150 {
        silent.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let began = Instant::now();
    child
        .poll_until(10 * SEC, "a log about open files", async || {
            child.stderr().contains("ulimit -n").then_some(())
        })
        .await;
    // The silent ones are closed after the header timeout, and the server answers again
    // (while they stay connected on this side).
    let answered = child
        .poll_until(
            (20 * SEC).saturating_sub(began.elapsed()),
            "/-/healthy to answer again within 20 s",
            async || {
                let answer = common::http_get(&format!("{base}/-/healthy")).await;
                matches!(answer, Some((200, _))).then(|| began.elapsed())
            },
        )
        .await;
    println!("answering again {answered:?} after running out of files");
    let (status, _) = common::http_get(&format!("{base}/metrics"))
        .await
        .expect("/metrics answers");
    assert_eq!(status, 200);
    // Once per accept loop: the demo's simulator has its own.
    let stderr = child.stderr();
    let lines = stderr
        .lines()
        .filter(|l| l.contains("ulimit -n") && l.contains("server=exporter"))
        .count();
    assert_eq!(lines, 1, "logged {lines} times:\n{stderr}");
    drop(silent);
    let _ = std::fs::remove_dir_all(&home);
}

/// HTTP/2 frames written by hand (RFC 9113), enough to open streams with chosen settings and
/// watch what the server sends back; HPACK fields are sent as literals without indexing.
mod h2raw {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    type Writer = Box<dyn AsyncWrite + Send + Unpin>;

    pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;

    const DATA: u8 = 0x0;
    const HEADERS: u8 = 0x1;
    const RST_STREAM: u8 = 0x3;
    const SETTINGS: u8 = 0x4;
    const PING: u8 = 0x6;
    const GOAWAY: u8 = 0x7;
    const END_STREAM: u8 = 0x1;
    const ACK: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    const REFUSED_STREAM: u32 = 0x7;

    /// What the server sent.
    #[derive(Debug, Default, Clone)]
    pub struct Seen {
        pub headers: usize,
        pub data_bytes: usize,
        /// Streams reset with REFUSED_STREAM.
        pub refused: usize,
        pub goaway: bool,
        pub closed: Option<Instant>,
    }

    pub struct Conn {
        writer: Arc<tokio::sync::Mutex<Writer>>,
        seen: Arc<Mutex<Seen>>,
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// An HPACK integer with an `n`-bit prefix.
    fn integer(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
        let max = (1usize << n) - 1;
        if value < max {
            out.push(first | value as u8);
            return;
        }
        out.push(first | max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128 + 128) as u8);
            value /= 128;
        }
        out.push(value as u8);
    }

    fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
        out.push(0x00);
        integer(out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        integer(out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }

    impl Conn {
        /// Connects to `addr`, sends the preface and SETTINGS with `settings`, and reads what
        /// the server sends from then on (acknowledging its SETTINGS and PINGs).
        pub async fn open(addr: &str, settings: &[(u16, u32)]) -> Conn {
            let stream = TcpStream::connect(addr).await.expect("connect");
            Conn::open_on(stream, settings).await
        }

        /// [`Conn::open`] on a connected stream (TLS with ALPN `h2`, say).
        pub async fn open_on<S>(stream: S, settings: &[(u16, u32)]) -> Conn
        where
            S: AsyncRead + AsyncWrite + Send + 'static,
        {
            let (mut reader, writer) = tokio::io::split(stream);
            let writer: WriteHalf<S> = writer;
            let writer = Arc::new(tokio::sync::Mutex::new(Box::new(writer) as Writer));
            let mut payload = Vec::new();
            for (id, value) in settings {
                payload.extend_from_slice(&id.to_be_bytes());
                payload.extend_from_slice(&value.to_be_bytes());
            }
            {
                let mut w = writer.lock().await;
                w.write_all(PREFACE).await.expect("write the preface");
                w.write_all(&frame(SETTINGS, 0, 0, &payload))
                    .await
                    .expect("write SETTINGS");
                w.flush().await.expect("flush");
            }
            let seen = Arc::new(Mutex::new(Seen::default()));
            let (acks, seen_by_reader) = (writer.clone(), seen.clone());
            tokio::spawn(async move {
                let mut head = [0u8; 9];
                loop {
                    if reader.read_exact(&mut head).await.is_err() {
                        break;
                    }
                    let len = (usize::from(head[0]) << 16)
                        | (usize::from(head[1]) << 8)
                        | usize::from(head[2]);
                    let (kind, flags) = (head[3], head[4]);
                    let mut payload = vec![0u8; len];
                    if reader.read_exact(&mut payload).await.is_err() {
                        break;
                    }
                    let reply = {
                        let mut seen = seen_by_reader.lock().unwrap_or_else(|e| e.into_inner());
                        match kind {
                            HEADERS => {
                                seen.headers += 1;
                                None
                            }
                            DATA => {
                                seen.data_bytes += len;
                                None
                            }
                            RST_STREAM if payload.len() == 4 => {
                                let code = u32::from_be_bytes([
                                    payload[0], payload[1], payload[2], payload[3],
                                ]);
                                if code == REFUSED_STREAM {
                                    seen.refused += 1;
                                }
                                None
                            }
                            GOAWAY => {
                                seen.goaway = true;
                                None
                            }
                            SETTINGS if flags & ACK == 0 => Some(frame(SETTINGS, ACK, 0, &[])),
                            PING if flags & ACK == 0 => Some(frame(PING, ACK, 0, &payload)),
                            _ => None,
                        }
                    };
                    if let Some(reply) = reply {
                        let mut w = acks.lock().await;
                        let _ = w.write_all(&reply).await;
                        let _ = w.flush().await;
                    }
                }
                seen_by_reader
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .closed = Some(Instant::now());
            });
            Conn { writer, seen }
        }

        /// Opens stream `id` with a request.
        pub async fn request(
            &mut self,
            id: u32,
            method: &str,
            path: &str,
            extra: &[(&str, &str)],
            end_stream: bool,
        ) {
            let mut block = Vec::new();
            literal(&mut block, ":method", method);
            literal(&mut block, ":scheme", "http");
            literal(&mut block, ":path", path);
            literal(&mut block, ":authority", "127.0.0.1");
            for (name, value) in extra {
                literal(&mut block, name, value);
            }
            let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
            self.send(frame(HEADERS, flags, id, &block)).await;
        }

        /// Sends DATA on stream `id`.
        pub async fn data(&mut self, id: u32, bytes: &[u8], end_stream: bool) {
            let flags = if end_stream { END_STREAM } else { 0 };
            self.send(frame(DATA, flags, id, bytes)).await;
        }

        async fn send(&mut self, bytes: Vec<u8>) {
            let mut w = self.writer.lock().await;
            w.write_all(&bytes).await.expect("write a frame");
            w.flush().await.expect("flush");
        }

        /// What the server has sent so far.
        pub fn seen(&self) -> Seen {
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
        }

        /// Waits (at most `within`) for the server to close the connection; returns when.
        /// Waits until `n` HEADERS frames have come; panics after `within` with `what`.
        pub async fn wait_for_headers(&self, n: usize, within: Duration, what: &str) {
            let began = Instant::now();
            while self.seen().headers < n {
                assert!(
                    began.elapsed() < within,
                    "no {what} within {within:?}: {:?}",
                    self.seen()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        pub async fn wait_closed(&self, within: Duration) -> Instant {
            let began = Instant::now();
            loop {
                if let Some(at) = self.seen().closed {
                    return at;
                }
                assert!(
                    began.elapsed() < within,
                    "the server did not close the connection within {within:?}: {:?}",
                    self.seen()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
