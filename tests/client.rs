//! The API client against tiny scripted HTTP servers on 127.0.0.1: what goes on the wire
//! (query, headers), how each kind of answer or failure is classified, which ones are retried,
//! and that every attempt is counted in the self-metrics.

mod tools;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use volc_rtc_exporter::budget::Limiter;
use volc_rtc_exporter::config::{ApiSettings, Endpoint, RetryPolicy};
use volc_rtc_exporter::credentials::{CredentialConfig, Credentials, CredentialsHandle, Secret};
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::model::{Action, Kind, Outcome, PerAction, TargetKey};
use volc_rtc_exporter::sim::verify::{self, VerifyError, VerifyRequest, MAX_SKEW};
use volc_rtc_exporter::volc::client::{Client, MAX_BODY_BYTES};
use volc_rtc_exporter::volc::parse::ApiError;

const APP: &str = "661e8f0d1ab2c3d4e5f60718";
const SECRET: &str = "c2VjcmV0-very-secret";
const TOKEN: &str = "STS-token-0123456789";

// ---------------------------------------------------------------------------------------------
// A scripted server: connection n gets reply n (the last one repeats).

#[derive(Clone)]
enum Reply {
    /// A complete answer with Content-Length.
    Http { status: u16, body: Vec<u8> },
    /// A chunked answer of `size` bytes (no Content-Length), sent in 16 KiB chunks.
    Chunked { size: usize },
    /// Headers promising `declared` bytes, then `body` (shorter), then the connection closes.
    ShortBody { declared: usize, body: Vec<u8> },
    /// Wait, then reply.
    Delay(Duration, Box<Reply>),
    /// Headers at once, then the body only after the delay.
    SlowBody(Duration),
    /// Read the request, then close without a word.
    Close,
    /// Read the request, then reset the connection (RST).
    Reset,
}

fn json(status: u16, body: &str) -> Reply {
    Reply::Http {
        status,
        body: body.as_bytes().to_vec(),
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/api/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_reply(status: u16, name: &str) -> Reply {
    Reply::Http {
        status,
        body: fixture(name),
    }
}

#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    headers: Vec<(String, String)>,
}

impl Received {
    /// Check the request's V4 signature with the signer's server side, as the vendor would.
    fn verify(&self, creds: Credentials) -> Result<String, VerifyError> {
        let target = self.request_line.split(' ').nth(1).unwrap_or_default();
        let (path, raw_query) = target.split_once('?').unwrap_or((target, ""));
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        verify::verify(
            &VerifyRequest {
                method: "GET",
                path,
                raw_query,
                headers: &headers,
                body: b"",
                region: Some("cn-north-1"),
                service: "rtc",
            },
            |ak| (ak == creds.access_key_id).then(|| creds.clone()),
            volc_rtc_exporter::clock::now(),
            MAX_SKEW,
        )
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
}

impl Server {
    async fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (rec, conns) = (received.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = conns.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)].clone();
                let rec = rec.clone();
                tokio::spawn(async move { serve(stream, reply, rec).await });
            }
        });
        Server {
            port,
            received,
            connections,
        }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, reply: Reply, received: Arc<Mutex<Vec<Received>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    received.lock().expect("lock").push(Received {
        request_line,
        headers,
    });
    answer(&mut stream, reply).await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

async fn answer(stream: &mut TcpStream, reply: Reply) {
    match reply {
        Reply::Http { status, body } => {
            let head = format!(
                "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reason(status),
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Chunked { size } => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let piece = vec![b' '; 16 * 1024];
            let mut sent = 0;
            while sent < size {
                let n = piece.len().min(size - sent);
                let frame = format!("{n:x}\r\n");
                if stream.write_all(frame.as_bytes()).await.is_err()
                    || stream.write_all(&piece[..n]).await.is_err()
                    || stream.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
                sent += n;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
        }
        Reply::ShortBody { declared, body } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Delay(d, inner) => {
            tokio::time::sleep(d).await;
            Box::pin(answer(stream, *inner)).await;
        }
        Reply::SlowBody(d) => {
            let body = fixture("record_running.json");
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body[..10]).await;
            tokio::time::sleep(d).await;
            let _ = stream.write_all(&body[10..]).await;
        }
        Reply::Close => {
            let _ = stream.shutdown().await;
        }
        Reply::Reset => {
            let _ = stream.set_zero_linger();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client under test.

struct Harness {
    client: Client,
    telemetry: Arc<Telemetry>,
    limiters: PerAction<Arc<Limiter>>,
}

fn settings(port: u16, timeout: Duration) -> ApiSettings {
    ApiSettings {
        endpoint: Endpoint {
            scheme: "http".into(),
            host: "127.0.0.1".into(),
            port: Some(port),
        },
        region: "cn-north-1".into(),
        service: "rtc".into(),
        timeout,
        max_in_flight: 4,
        record_version: "2023-06-01".into(),
        webcast_version: "2020-12-01".into(),
        retry: FAST_RETRY,
    }
}

fn creds(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "AKLTtest".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: token.map(Secret::new),
    }
}

const FAST_RETRY: RetryPolicy = RetryPolicy {
    attempts: 3,
    base: Duration::from_millis(2),
    cap: Duration::from_millis(10),
};

/// The client under test on `port`, with fast retries, its own telemetry, and a record limiter
/// allowing `record_rate` starts a second (web capture: 1000).
fn harness_for(
    port: u16,
    timeout: Duration,
    creds: impl Into<CredentialsHandle>,
    record_rate: f64,
) -> Harness {
    let telemetry = Arc::new(Telemetry::new());
    let limiters = PerAction::new(|a| {
        Arc::new(Limiter::new(match a {
            Action::GetRecordTask => record_rate,
            Action::GetWebCastTask => 1000.0,
        }))
    });
    let client = Client::new(
        &settings(port, timeout),
        creds,
        limiters.clone(),
        telemetry.clone(),
    )
    .expect("client");
    Harness {
        client,
        telemetry,
        limiters,
    }
}

fn harness_with(port: u16, timeout: Duration, token: Option<&str>) -> Harness {
    harness_for(port, timeout, creds(token), 1000.0)
}

fn harness(port: u16) -> Harness {
    harness_with(port, Duration::from_secs(5), None)
}

/// A scripted server and the default harness pointed at it.
async fn scripted(script: Vec<Reply>) -> (Server, Harness) {
    let server = Server::start(script).await;
    let h = harness(server.port);
    (server, h)
}

impl Harness {
    /// `volcengine_rtc_api_requests_total{action, outcome}`.
    fn count(&self, action: Action, outcome: Outcome) -> u64 {
        self.telemetry
            .requests
            .with_label_values(&[action.as_str(), outcome.as_str()])
            .get()
    }

    /// Every non-zero request counter, for exact comparisons.
    fn counts(&self) -> Vec<(Action, Outcome, u64)> {
        let mut v = Vec::new();
        for a in Action::ALL {
            for o in Outcome::ALL {
                let n = self.count(a, o);
                if n > 0 {
                    v.push((a, o, n));
                }
            }
        }
        v
    }

    fn latency_samples(&self, action: Action) -> u64 {
        self.telemetry
            .request_duration
            .with_label_values(&[action.as_str()])
            .get_sample_count()
    }
}

fn record_key(room: &str, task: &str) -> TargetKey {
    TargetKey {
        kind: Kind::Record,
        app_id: APP.into(),
        room_id: room.into(),
        task_id: Some(task.into()),
    }
}

fn webcast_key(room: &str, task: Option<&str>) -> TargetKey {
    TargetKey {
        kind: Kind::Webcast,
        app_id: APP.into(),
        room_id: room.into(),
        task_id: task.map(Into::into),
    }
}

fn key() -> TargetKey {
    record_key("Room1", "Task1")
}

/// Expected request counters: the record action's only, with these outcomes.
fn record_only(counts: &[(Outcome, u64)]) -> Vec<(Action, Outcome, u64)> {
    counts
        .iter()
        .map(|&(outcome, n)| (Action::GetRecordTask, outcome, n))
        .collect()
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ApiError {
    match r {
        Err(e) => e,
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What goes on the wire.

#[tokio::test]
async fn sends_the_exact_query_and_signed_headers() {
    let (server, h) = scripted(vec![fixture_reply(200, "record_ended_files.json")]).await;
    let snapshot = h
        .client
        .fetch(&record_key("user@example.com", "rec.task-01"))
        .await
        .expect("snapshot");
    assert_eq!(snapshot.files.len(), 3);

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        r.request_line,
        format!(
            "GET /?Action=GetRecordTask&AppId={APP}&RoomId=user%40example.com&TaskId=rec.task-01&Version=2023-06-01 HTTP/1.1"
        )
    );
    assert_eq!(
        r.header("host"),
        Some(format!("127.0.0.1:{}", server.port).as_str())
    );
    let x_date = r.header("x-date").expect("x-date");
    assert_eq!(x_date.len(), 16, "{x_date}");
    assert!(
        x_date.ends_with('Z') && x_date.as_bytes()[8] == b'T',
        "{x_date}"
    );
    assert_eq!(
        r.header("x-content-sha256"),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    let auth = r.header("authorization").expect("authorization");
    assert!(
        auth.starts_with(&format!(
            "HMAC-SHA256 Credential=AKLTtest/{}/cn-north-1/rtc/request, SignedHeaders=host;x-content-sha256;x-date, Signature=",
            &x_date[..8]
        )),
        "{auth}"
    );
    assert_eq!(r.header("x-security-token"), None);
    assert_eq!(r.verify(creds(None)), Ok("AKLTtest".to_string()));
    // The check can fail: another secret, or a token the request did not carry.
    let mut wrong = creds(None);
    wrong.secret_access_key = Secret::new("another-secret");
    assert_eq!(r.verify(wrong), Err(VerifyError::SignatureDoesNotMatch));
    assert_eq!(
        r.verify(creds(Some(TOKEN))),
        Err(VerifyError::InvalidSecretToken)
    );
    assert!(r
        .header("user-agent")
        .is_some_and(|ua| ua.starts_with("volcengine-rtc-exporter/")));
    assert_eq!(h.counts(), record_only(&[(Outcome::Success, 1)]));
    assert_eq!(h.latency_samples(Action::GetRecordTask), 1);
}

#[tokio::test]
async fn sends_the_security_token_only_when_there_is_one() {
    let server = Server::start(vec![fixture_reply(200, "webcast_running_WebCastTask.json")]).await;
    let h = harness_with(server.port, Duration::from_secs(5), Some(TOKEN));
    let key = webcast_key("Room 1/*", None);
    let s = h.client.fetch(&key).await.expect("snapshot");
    assert_eq!(s.user_id.as_deref(), Some("webcast_bot_1"));
    let r = &server.requests()[0];
    // No TaskId for a room's newest web-capture task; space, slash and star encoded.
    assert_eq!(
        r.request_line,
        format!(
            "GET /?Action=GetWebCastTask&AppId={APP}&RoomId=Room%201%2F%2A&Version=2020-12-01 HTTP/1.1"
        )
    );
    assert_eq!(r.header("x-security-token"), Some(TOKEN));
    assert_eq!(r.verify(creds(Some(TOKEN))), Ok("AKLTtest".to_string()));
    assert!(r.header("authorization").is_some_and(
        |a| a.contains("SignedHeaders=host;x-content-sha256;x-date;x-security-token,")
    ));
    assert_eq!(
        h.counts(),
        vec![(Action::GetWebCastTask, Outcome::Success, 1)]
    );

    // An empty token is no token.
    let server = Server::start(vec![fixture_reply(200, "record_running.json")]).await;
    let h = harness_with(server.port, Duration::from_secs(5), Some(""));
    h.client.fetch(&self::key()).await.expect("snapshot");
    assert_eq!(server.requests()[0].header("x-security-token"), None);
}

#[tokio::test]
async fn each_request_signs_with_the_credentials_current_at_that_moment() {
    let rotated_secret = "cm90YXRlZC1zZWNyZXQ=";
    let rotated_token = "STS-token-rotated-42";
    let echo = format!(
        r#"{{"ResponseMetadata":{{"RequestId":"r","Error":{{"Code":"InvalidSecretToken","Message":"token {rotated_token} with key {rotated_secret}"}}}}}}"#
    );
    let server = Server::start(vec![
        fixture_reply(200, "record_running.json"),
        fixture_reply(200, "record_running.json"),
        json(401, &echo),
    ])
    .await;
    let handle = CredentialsHandle::from(creds(Some(TOKEN)));
    let h = harness_for(server.port, Duration::from_secs(5), handle.clone(), 1000.0);
    h.client.fetch(&key()).await.expect("snapshot");

    // Rotated behind the client's back, as the file watcher does: the same client signs the
    // next request with the new secret and sends the new token.
    let rotated = Credentials {
        access_key_id: "AKLTtest".into(),
        secret_access_key: Secret::new(rotated_secret),
        session_token: Some(Secret::new(rotated_token)),
    };
    handle.reconfigure(rotated.clone(), CredentialConfig::default());
    h.client.fetch(&key()).await.expect("snapshot");

    let r = server.requests();
    assert_eq!(r[0].header("x-security-token"), Some(TOKEN));
    assert_eq!(r[0].verify(creds(Some(TOKEN))), Ok("AKLTtest".to_string()));
    assert_eq!(r[1].header("x-security-token"), Some(rotated_token));
    assert_eq!(r[1].verify(rotated.clone()), Ok("AKLTtest".to_string()));
    assert_eq!(
        r[1].verify(creds(Some(TOKEN))),
        Err(VerifyError::InvalidSecretToken),
        "the old token is not sent any more"
    );
    assert_eq!(
        h.client.credentials().current().session_token,
        Some(Secret::new(rotated_token))
    );

    // An echo of the rotated secrets is redacted too.
    let e = expect_err(h.client.fetch(&key()).await);
    let shown = format!("{e} {e:?} {:?}", h.client);
    assert!(!shown.contains(rotated_token), "{shown}");
    assert!(!shown.contains(rotated_secret), "{shown}");
    assert!(
        e.message.contains("token <redacted> with key <redacted>"),
        "{}",
        e.message
    );
}

// ---------------------------------------------------------------------------------------------
// Classification and retries.

#[tokio::test]
async fn http_200_with_error_is_a_failure_and_not_retried() {
    let (server, h) = scripted(vec![fixture_reply(200, "http200_with_error.json")]).await;
    let key = webcast_key("Room1", None);
    let e = expect_err(h.client.fetch(&key).await);
    assert_eq!(e.outcome, Outcome::ClientError);
    assert_eq!(e.http_status, Some(200));
    assert_eq!(e.code.as_deref(), Some("InvalidParameter.IllegalRoomID"));
    assert_eq!(
        e.request_id.as_deref(),
        Some("202406011213005D6E7F8091A2B3C4D5E6F7")
    );
    assert_eq!(server.connections(), 1);
    assert_eq!(
        h.counts(),
        vec![(Action::GetWebCastTask, Outcome::ClientError, 1)]
    );
}

#[tokio::test]
async fn throttling_is_retried_and_cuts_the_rate() {
    let (server, h) = scripted(vec![
        fixture_reply(429, "error_flow_limit_429.json"),
        json(
            200,
            r#"{"ResponseMetadata":{"RequestId":"x","Error":{"Code":"FlowLimitExceeded.QPSOverLimit","Message":"slow down"}}}"#,
        ),
        fixture_reply(200, "record_running.json"),
    ]).await;
    let before = h.limiters[Action::GetRecordTask].rate();
    let s = h
        .client
        .fetch(&key())
        .await
        .expect("third attempt succeeds");
    assert_eq!(s.status, 2);
    assert_eq!(server.connections(), 3);
    assert!(
        h.limiters[Action::GetRecordTask].rate() < before,
        "rate {} not cut from {before}",
        h.limiters[Action::GetRecordTask].rate()
    );
    assert_eq!(
        h.limiters[Action::GetWebCastTask].rate(),
        1000.0,
        "the other action is untouched"
    );
    assert_eq!(
        h.counts(),
        record_only(&[(Outcome::Success, 1), (Outcome::Throttled, 2)])
    );
    assert_eq!(h.latency_samples(Action::GetRecordTask), 3);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (server, h) = scripted(vec![
        fixture_reply(500, "error_internal_500.json"),
        fixture_reply(502, "bad_gateway_502.html"),
        fixture_reply(200, "record_failed.json"),
    ])
    .await;
    let s = h
        .client
        .fetch(&key())
        .await
        .expect("third attempt succeeds");
    assert_eq!(s.stop_reason, "StartTaskFailed");
    assert_eq!(server.connections(), 3);
    assert_eq!(
        h.counts(),
        record_only(&[(Outcome::Success, 1), (Outcome::ServerError, 2)])
    );
}

#[tokio::test]
async fn retries_stop_after_the_policy_attempts() {
    let (server, h) = scripted(vec![fixture_reply(502, "bad_gateway_502.html")]).await;
    let e = expect_err(h.client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::ServerError);
    assert_eq!(e.http_status, Some(502));
    assert_eq!(e.message, "HTTP 502 with an HTML page");
    assert_eq!(server.connections(), 3);
    assert_eq!(h.counts(), record_only(&[(Outcome::ServerError, 3)]));
}

#[tokio::test]
async fn a_single_attempt_policy_never_retries() {
    let (server, h) = scripted(vec![fixture_reply(500, "error_internal_500.json")]).await;
    let api = ApiSettings {
        retry: RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        },
        ..settings(server.port, Duration::from_secs(5))
    };
    let client = Client::new(&api, creds(None), h.limiters, h.telemetry).expect("client");
    let e = expect_err(client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::ServerError);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn auth_errors_are_not_retried() {
    let (server, h) = scripted(vec![fixture_reply(401, "error_signature_401.json")]).await;
    let e = expect_err(h.client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::AuthError);
    assert_eq!(e.code.as_deref(), Some("SignatureDoesNotMatch"));
    assert_eq!(server.connections(), 1);
    assert_eq!(h.limiters[Action::GetRecordTask].rate(), 1000.0);
    assert_eq!(h.counts(), record_only(&[(Outcome::AuthError, 1)]));
}

#[tokio::test]
async fn not_found_and_client_errors_are_not_retried() {
    let (server, h) = scripted(vec![
        fixture_reply(400, "error_task_not_found.json"),
        fixture_reply(200, "record_empty_result.json"),
        fixture_reply(400, "error_illegal_app_id_400.json"),
    ])
    .await;
    for outcome in [Outcome::NotFound, Outcome::NotFound, Outcome::ClientError] {
        assert_eq!(expect_err(h.client.fetch(&key()).await).outcome, outcome);
    }
    assert_eq!(server.connections(), 3);
    assert_eq!(
        h.counts(),
        record_only(&[(Outcome::NotFound, 2), (Outcome::ClientError, 1)])
    );
}

#[tokio::test]
async fn truncated_json_is_a_decode_error_and_not_retried() {
    let (server, h) = scripted(vec![fixture_reply(200, "truncated.json")]).await;
    let e = expect_err(h.client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::DecodeError);
    assert_eq!(e.message, "HTTP 200 with truncated JSON (300 bytes)");
    assert_eq!(server.connections(), 1);
    assert_eq!(h.counts(), record_only(&[(Outcome::DecodeError, 1)]));
}

#[tokio::test]
async fn oversized_bodies_are_decode_errors() {
    // Declared too big: refused before reading.
    let (server, h) = scripted(vec![Reply::Http {
        status: 200,
        body: vec![b' '; (1 << 20) + 1],
    }])
    .await;
    let e = expect_err(h.client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::DecodeError);
    assert_eq!(e.message, "HTTP 200 with a body over 1048576 bytes");
    assert_eq!(server.connections(), 1);

    // Chunked, no length: cut while streaming (a 64 MiB body is never read whole).
    let (_server, h) = scripted(vec![Reply::Chunked { size: 64 << 20 }]).await;
    let e = expect_err(h.client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::DecodeError);
    assert_eq!(e.message, "HTTP 200 with a body over 1048576 bytes");
    assert_eq!(h.counts(), record_only(&[(Outcome::DecodeError, 1)]));

    // Exactly at the cap is fine; a byte more is not.
    let mut body = fixture("record_running.json");
    body.resize(MAX_BODY_BYTES, b' ');
    let over = [body.clone(), b" ".to_vec()].concat();
    let replies = vec![
        Reply::Http { status: 200, body },
        Reply::Http {
            status: 200,
            body: over,
        },
    ];
    let (_server, h) = scripted(replies).await;
    assert!(h.client.fetch(&key()).await.is_ok());
    assert_eq!(
        expect_err(h.client.fetch(&key()).await).outcome,
        Outcome::DecodeError
    );
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let server = Server::start(vec![
        Reply::Delay(
            Duration::from_secs(3),
            Box::new(fixture_reply(200, "record_running.json")),
        ),
        Reply::SlowBody(Duration::from_secs(3)),
        fixture_reply(200, "record_running.json"),
    ])
    .await;
    let h = harness_with(server.port, Duration::from_millis(300), None);
    let started = tokio::time::Instant::now();
    let s = h
        .client
        .fetch(&key())
        .await
        .expect("third attempt succeeds");
    assert_eq!(s.status, 2);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "{took:?}");
    // Without the timeout the first answer alone would take 3 s.
    assert!(took < Duration::from_millis(2800), "{took:?}");
    assert_eq!(server.connections(), 3);
    assert_eq!(
        h.counts(),
        record_only(&[(Outcome::Success, 1), (Outcome::Timeout, 2)])
    );
}

#[tokio::test]
async fn a_slow_body_is_a_timeout() {
    let server = Server::start(vec![Reply::SlowBody(Duration::from_secs(3))]).await;
    // One attempt: the script has one slow answer.
    let mut api = settings(server.port, Duration::from_millis(200));
    api.retry.attempts = 1;
    let limiters = PerAction::new(|_| Arc::new(Limiter::new(1000.0)));
    let client = Client::new(&api, creds(None), limiters, Arc::new(Telemetry::new()));
    let e = expect_err(client.expect("client").fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::Timeout);
    assert_eq!(e.to_string(), "timeout: no complete answer within 200ms");
}

#[tokio::test]
async fn broken_connections_are_network_errors_and_retried() {
    for (script, says) in [
        (vec![Reply::Reset], "reset"),
        (
            vec![Reply::Close],
            "connection closed before message completed",
        ),
        (
            vec![Reply::ShortBody {
                declared: 500,
                body: fixture("truncated.json"),
            }],
            "end of file before message length reached",
        ),
    ] {
        let (server, h) = scripted(script).await;
        let e = expect_err(h.client.fetch(&key()).await);
        assert_eq!(e.outcome, Outcome::NetworkError, "{e}");
        assert!(e.message.to_lowercase().contains(says), "{e}");
        assert_eq!(server.connections(), 3, "{e}");
        assert_eq!(h.counts(), record_only(&[(Outcome::NetworkError, 3)]));
    }
}

#[tokio::test]
async fn a_reset_then_success_recovers() {
    let (_server, h) = scripted(vec![
        Reply::Reset,
        fixture_reply(200, "record_running.json"),
    ])
    .await;
    assert!(h.client.fetch(&key()).await.is_ok());
    assert_eq!(
        h.counts(),
        record_only(&[(Outcome::Success, 1), (Outcome::NetworkError, 1)])
    );
}

#[tokio::test]
async fn connection_refused_is_a_network_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let h = harness(port);
    let e = expect_err(h.client.fetch(&key()).await);
    assert_eq!(e.outcome, Outcome::NetworkError);
    assert_eq!(e.http_status, None);
    assert_eq!(h.counts(), record_only(&[(Outcome::NetworkError, 3)]));
}

#[tokio::test]
async fn fetch_acquired_makes_the_same_attempts() {
    let (server, h) = scripted(vec![
        fixture_reply(503, "error_internal_500.json"),
        fixture_reply(200, "record_running.json"),
    ])
    .await;
    assert!(h.client.fetch_acquired(&key()).await.is_ok());
    assert_eq!(server.connections(), 2);
    assert_eq!(
        h.counts(),
        record_only(&[(Outcome::Success, 1), (Outcome::ServerError, 1)])
    );
}

// ---------------------------------------------------------------------------------------------
// Budget: every attempt, retries included, takes a slot from the action's limiter.

/// A harness whose record limiter allows `rate` starts a second.
fn slow_budget_harness(port: u16, rate: f64) -> Harness {
    harness_for(port, Duration::from_secs(5), creds(None), rate)
}

#[tokio::test]
async fn retries_spend_budget() {
    let server = Server::start(vec![
        fixture_reply(500, "error_internal_500.json"),
        fixture_reply(500, "error_internal_500.json"),
        fixture_reply(200, "record_running.json"),
    ])
    .await;
    let h = slow_budget_harness(server.port, 4.0);
    let started = tokio::time::Instant::now();
    assert!(h.client.fetch(&key()).await.is_ok());
    let took = started.elapsed();
    // Starts at 0, 250 and 500 ms: the backoff alone (at most 2 + 4 ms) would be far quicker.
    assert!(took >= Duration::from_millis(480), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn fetch_acquired_skips_only_the_first_slot() {
    let server = Server::start(vec![fixture_reply(200, "record_running.json")]).await;
    // One start a second, so the timing margins are wide.
    let h = slow_budget_harness(server.port, 1.0);
    // The caller takes the first slot itself, then sends at once.
    h.limiters[Action::GetRecordTask].acquire().await;
    let started = tokio::time::Instant::now();
    assert!(h.client.fetch_acquired(&key()).await.is_ok());
    let quick = started.elapsed();
    assert!(quick < Duration::from_millis(700), "{quick:?}");
    // `fetch` takes its own slot: the next one is a second after the caller's.
    let started = tokio::time::Instant::now();
    assert!(h.client.fetch(&key()).await.is_ok());
    let waited = started.elapsed();
    assert!(
        quick + waited >= Duration::from_millis(950),
        "{quick:?} {waited:?}"
    );
    // Both actions have their own limiter: web-capture requests do not wait on it.
    let server = Server::start(vec![fixture_reply(200, "webcast_running_WebCastTask.json")]).await;
    let h2 = slow_budget_harness(server.port, 1.0);
    h2.limiters[Action::GetRecordTask].acquire().await;
    let started = tokio::time::Instant::now();
    let webcast = webcast_key("Room1", Some("t"));
    assert!(h2.client.fetch(&webcast).await.is_ok());
    assert!(started.elapsed() < Duration::from_millis(700));
}

// ---------------------------------------------------------------------------------------------
// Secrets.

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug_output() {
    let echo = format!(
        r#"{{"ResponseMetadata":{{"RequestId":"r","Error":{{"Code":"SignatureDoesNotMatch","Message":"canonical request had x-security-token:{TOKEN} and key {SECRET}"}}}}}}"#
    );
    let server = Server::start(vec![json(401, &echo)]).await;
    let h = harness_with(server.port, Duration::from_secs(5), Some(TOKEN));
    let e = expect_err(h.client.fetch(&key()).await);
    let shown = format!("{e} {e:?} {:?}", h.client);
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("Signature="), "{shown}");
    assert!(
        e.message
            .contains("x-security-token:<redacted> and key <redacted>"),
        "{}",
        e.message
    );
}

// ---------------------------------------------------------------------------------------------
// Against the vendor's own signer: `tests/py/sdk_server.py` checks each signature with
// volc-sdk-python (needs `python3` with `volcengine`; fails, never skips, without it).

use tools::SdkServer;

#[tokio::test]
async fn the_vendor_sdk_accepts_our_requests() {
    let server = SdkServer::start(&[
        "--credential",
        &format!("AKLTtest:{SECRET}"),
        "--credential",
        &format!("AKLTsts:{SECRET}:{TOKEN}"),
    ]);
    let h = harness(server.port);
    let s = h
        .client
        .fetch(&record_key("user@example.com", "rec.task-01"))
        .await
        .expect("the SDK accepts a record request");
    assert_eq!(s.status, 3);
    assert_eq!(s.stop_reason, "StopByAPI");
    assert_eq!(s.files.len(), 2);
    assert_eq!(s.files[0].size_bytes, Some(104_857_600));
    let webcast = webcast_key("Room_1.a-b~c", None);
    let s = h
        .client
        .fetch(&webcast)
        .await
        .expect("the SDK accepts a webcast request");
    assert_eq!(s.max_running_time_s, Some(7_200));
    assert_eq!(s.user_id.as_deref(), Some("webcast_bot"));

    // With an STS token.
    let sts = Credentials {
        access_key_id: "AKLTsts".into(),
        secret_access_key: Secret::new(SECRET),
        session_token: Some(Secret::new(TOKEN)),
    };
    let h = harness_for(server.port, Duration::from_secs(5), sts.clone(), 1000.0);
    assert!(h.client.fetch(&key()).await.is_ok());

    // A wrong secret or token is an auth error, tried exactly once.
    let mut wrong_secret = creds(None);
    wrong_secret.secret_access_key = Secret::new("not-the-secret");
    let mut wrong_token = sts;
    wrong_token.session_token = Some(Secret::new("not-the-token"));
    for (creds, code) in [
        (wrong_secret, "SignatureDoesNotMatch"),
        (wrong_token, "InvalidSecretToken"),
    ] {
        let h = harness_for(server.port, Duration::from_secs(5), creds, 1000.0);
        let e = expect_err(h.client.fetch(&key()).await);
        assert_eq!(e.outcome, Outcome::AuthError, "{e}");
        assert_eq!(e.code.as_deref(), Some(code));
        assert_eq!(e.http_status, Some(401));
        let attempts: u64 = Outcome::ALL
            .iter()
            .map(|o| h.count(Action::GetRecordTask, *o))
            .sum();
        assert_eq!(attempts, 1);
    }
}
