//! Against `tests/py/sdk_server.py`, a fake OpenAPI that checks each signature with the vendor's
//! own Python SDK (not with our code): requests signed by [`volc::sign`] and sent by reqwest
//! (which sets `Host` itself) are accepted, for both actions, with and without a session token,
//! for IDs containing `@ . - _`; a tampered one is refused with the vendor's error envelope.
//!
//! Needs `python3` with the `volcengine` package (`scripts/install-test-deps`); fails, never
//! skips, when either is missing.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use serde_json::Value;
use volc_rtc_exporter::credentials::{Credentials, Secret};
use volc_rtc_exporter::volc::sign::{sign, SignRequest};

/// The Python server, killed when dropped.
struct SdkServer {
    child: Child,
    port: u16,
}

impl SdkServer {
    fn start(args: &[&str]) -> SdkServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/sdk_server.py");
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
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

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SdkServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn creds(ak: &str, sk: &str, token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: ak.into(),
        secret_access_key: Secret::new(sk),
        session_token: token.map(Secret::new),
    }
}

/// Signs and sends one GET; returns (status, body).
async fn get(
    client: &reqwest::Client,
    host: &str,
    query: &[(&str, &str)],
    creds: &Credentials,
    tamper: Option<(&str, &str)>,
) -> (u16, Value) {
    let req = SignRequest {
        method: "GET",
        host,
        path: "/",
        query,
        body: b"",
        region: "cn-north-1",
        service: "rtc",
    };
    let signed = sign(&req, creds, SystemTime::now());
    let mut wire_query = signed.query.clone();
    if let Some((from, to)) = tamper {
        wire_query = wire_query.replace(from, to);
    }
    let mut rb = client
        .get(format!("http://{host}/?{wire_query}"))
        .header("X-Date", &signed.x_date)
        .header("X-Content-Sha256", &signed.content_sha256)
        .header("Authorization", &signed.authorization);
    if signed.signs_security_token() {
        if let Some(t) = &creds.session_token {
            rb = rb.header("X-Security-Token", t.expose());
        }
    }
    let resp = rb.send().await.expect("request to sdk_server.py");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "sdk_server.py answered non-JSON ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, json)
}

fn error_code(v: &Value) -> Option<&str> {
    v.pointer("/ResponseMetadata/Error/Code")
        .and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_signatures_pass_the_vendor_sdk_check() {
    let server = SdkServer::start(&[
        "--credential",
        "AKLTplain:c2VjcmV0",
        "--credential",
        "AKLTsts:c3RzLXNlY3JldA==:sts-token/with+odd=chars",
    ]);
    let host = server.host();
    let client = reqwest::Client::new();
    let plain = creds("AKLTplain", "c2VjcmV0", None);
    let sts = creds(
        "AKLTsts",
        "c3RzLXNlY3JldA==",
        Some("sts-token/with+odd=chars"),
    );

    let ids = [
        ("661e8f0d1ab2c3d4e5f60718", "room1", "task1"),
        ("app.id-1_x", "user@example.com", "rec.task-01"),
        ("A", "@", "-"),
        ("app_@.-", "._-@room", "t@s.k_-1"),
    ];
    let mut accepted = 0;
    for creds in [&plain, &sts] {
        for (app, room, task) in ids {
            let queries: [Vec<(&str, &str)>; 4] = [
                vec![
                    ("Action", "GetRecordTask"),
                    ("Version", "2022-06-01"),
                    ("AppId", app),
                    ("RoomId", room),
                    ("TaskId", task),
                ],
                vec![
                    ("Action", "GetRecordTask"),
                    ("Version", "2023-06-01"),
                    ("AppId", app),
                    ("RoomId", room),
                    ("TaskId", task),
                ],
                vec![
                    ("Action", "GetWebCastTask"),
                    ("Version", "2020-12-01"),
                    ("AppId", app),
                    ("RoomId", room),
                    ("TaskId", task),
                ],
                vec![
                    ("Action", "GetWebCastTask"),
                    ("Version", "2020-12-01"),
                    ("AppId", app),
                    ("RoomId", room),
                ],
            ];
            for q in &queries {
                let (status, body) = get(&client, &host, q, creds, None).await;
                assert_eq!(
                    status,
                    200,
                    "{q:?} token={}: {body}",
                    creds.session_token.is_some()
                );
                assert_eq!(error_code(&body), None, "{body}");
                let key = if q[0].1 == "GetRecordTask" {
                    "/Result/RecordTask/Status"
                } else {
                    "/Result/WebCastTask/Status"
                };
                assert!(body.pointer(key).is_some(), "{body}");
                accepted += 1;
            }
        }
    }
    assert_eq!(accepted, 32);

    // The server really checks: a changed RoomId, an unknown key, a missing token.
    let q = [
        ("Action", "GetRecordTask"),
        ("Version", "2022-06-01"),
        ("AppId", "app"),
        ("RoomId", "user@example.com"),
        ("TaskId", "t"),
    ];
    let (status, body) = get(&client, &host, &q, &plain, Some(("user%40", "usex%40"))).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, Some("SignatureDoesNotMatch")),
        "{body}"
    );
    let stranger = creds("AKLTnobody", "c2VjcmV0", None);
    let (status, body) = get(&client, &host, &q, &stranger, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, Some("InvalidAccessKey")),
        "{body}"
    );
    let no_token = creds("AKLTsts", "c3RzLXNlY3JldA==", None);
    let (status, body) = get(&client, &host, &q, &no_token, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, Some("InvalidSecretToken")),
        "{body}"
    );
    let wrong_secret = creds("AKLTplain", "d3Jvbmc=", None);
    let (status, body) = get(&client, &host, &q, &wrong_secret, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, Some("SignatureDoesNotMatch")),
        "{body}"
    );
    println!("sdk server: {accepted} signed requests accepted, 4 bad ones refused");
}
