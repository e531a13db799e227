//! Against `tests/py/sdk_server.py`, a fake OpenAPI that checks each signature with the vendor's
//! own Python SDK (not with our code): requests signed by [`volc::sign`] and sent by reqwest
//! (which sets `Host` itself) are accepted, for both actions, with and without a session token,
//! for IDs containing `@ . - _`; a tampered one is refused with the vendor's error envelope.
//! And the built binary's `once` against that server: exit 0 and exact metric values for
//! every target, for both actions and both record Versions, with and without a session token.
//!
//! Needs `python3` with the `volcengine` package (`scripts/install-test-deps`); fails, never
//! skips, when either is missing.

mod tools;

use std::process::Command;
use std::time::SystemTime;

use serde_json::Value;
use volc_rtc_exporter::credentials::{Credentials, Secret};
use volc_rtc_exporter::volc::sign::{sign, SignRequest};

use tools::{api_query, SdkServer};

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
    let signed = sign(&req, creds, volc_rtc_exporter::clock::now());
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
                api_query("GetRecordTask", "2022-06-01", app, room, Some(task)),
                api_query("GetRecordTask", "2023-06-01", app, room, Some(task)),
                api_query("GetWebCastTask", "2020-12-01", app, room, Some(task)),
                api_query("GetWebCastTask", "2020-12-01", app, room, None),
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

    // The server really checks: a changed RoomId, an unknown key, a missing token, a wrong
    // secret.
    let q = api_query(
        "GetRecordTask",
        "2022-06-01",
        "app",
        "user@example.com",
        Some("t"),
    );
    let stranger = creds("AKLTnobody", "c2VjcmV0", None);
    let no_token = creds("AKLTsts", "c3RzLXNlY3JldA==", None);
    let wrong_secret = creds("AKLTplain", "d3Jvbmc=", None);
    for (creds, tamper, code) in [
        (
            &plain,
            Some(("user%40", "usex%40")),
            "SignatureDoesNotMatch",
        ),
        (&stranger, None, "InvalidAccessKey"),
        (&no_token, None, "InvalidSecretToken"),
        (&wrong_secret, None, "SignatureDoesNotMatch"),
    ] {
        let (status, body) = get(&client, &host, &q, creds, tamper).await;
        assert_eq!(
            (status, error_code(&body)),
            (401, Some(code)),
            "{code}: {body}"
        );
    }
    println!("sdk server: {accepted} signed requests accepted, 4 bad ones refused");
}

// ---------------------------------------------------------------------------------------------
// `once` against the SDK-checking server

/// One sample of the exposition text.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses the text format's sample lines (comments skipped); label values unescaped.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_end, mut labels) = match line.find(['{', ' ']) {
            Some(i) => (i, Vec::new()),
            None => panic!("bad sample line {line:?}"),
        };
        let name = line[..name_end].to_string();
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut chars = r.char_indices().peekable();
            let mut end = None;
            let (mut key, mut val, mut in_val, mut esc) =
                (String::new(), String::new(), false, false);
            while let Some((i, c)) = chars.next() {
                if in_val {
                    match (esc, c) {
                        (true, 'n') => {
                            val.push('\n');
                            esc = false;
                        }
                        (true, c) => {
                            val.push(c);
                            esc = false;
                        }
                        (false, '\\') => esc = true,
                        (false, '"') => {
                            in_val = false;
                            labels.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                        }
                        (false, c) => val.push(c),
                    }
                } else {
                    match c {
                        '}' => {
                            end = Some(i);
                            break;
                        }
                        '=' => {
                            if let Some((_, '"')) = chars.next() {
                                in_val = true;
                            } else {
                                panic!("bad labels in {line:?}");
                            }
                        }
                        ',' | ' ' => {}
                        c => key.push(c),
                    }
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated labels in {line:?}"));
            rest = &r[end + 1..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value in {line:?}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line:?}: {e}")),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The value of the one sample named `name` whose labels include all of `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {want:?} matches {} samples: {found:?}",
        found.len()
    );
    found.first().map(|s| s.value)
}

struct OnceTarget {
    kind: &'static str,
    app: &'static str,
    room: &'static str,
    task: Option<&'static str>,
}

const ONCE_TARGETS: &[OnceTarget] = &[
    OnceTarget {
        kind: "record",
        app: "app.id-1_x",
        room: "user@example.com",
        task: Some("rec.task-01"),
    },
    OnceTarget {
        kind: "record",
        app: "A",
        room: "@",
        task: Some("-"),
    },
    OnceTarget {
        kind: "record",
        app: "app_@.-",
        room: "._-@room",
        task: Some("t@s.k_-1"),
    },
    OnceTarget {
        kind: "webcast",
        app: "app.id-1_x",
        room: "web@cast.room-1",
        task: Some("web_task.1"),
    },
    OnceTarget {
        kind: "webcast",
        app: "app_@.-",
        room: "web-newest@room.2",
        task: None,
    },
];

/// Runs `once` against a fresh sdk_server.py with the given record Version and token.
fn run_once(record_version: &str, token: Option<&str>) {
    let start_s = volc_rtc_exporter::clock::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
        - 3600;
    let cred = match token {
        Some(t) => format!("AKLTonce:c2VjcmV0:{t}"),
        None => "AKLTonce:c2VjcmV0".to_string(),
    };
    let start_ms = (start_s * 1000).to_string();
    let server = SdkServer::start(&["--credential", &cred, "--start-time-ms", &start_ms]);

    let dir = std::env::temp_dir().join(format!(
        "sdk-once-{}-{record_version}-{}",
        std::process::id(),
        token.is_some()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut cfg = format!(
        "api:\n  endpoint: http://127.0.0.1:{}\n  region: cn-north-1\n  record_version: \"{record_version}\"\n\
         credentials:\n  access_key_id: AKLTonce\n  secret_access_key: c2VjcmV0\n",
        server.port
    );
    if let Some(t) = token {
        let tf = dir.join("token");
        std::fs::write(&tf, t).expect("write token");
        cfg.push_str(&format!("  session_token_file: {}\n", tf.display()));
    }
    cfg.push_str("targets:\n");
    for t in ONCE_TARGETS {
        cfg.push_str(&format!(
            "  - kind: {}\n    app_id: \"{}\"\n    room_id: \"{}\"\n",
            t.kind, t.app, t.room
        ));
        if let Some(task) = t.task {
            cfg.push_str(&format!("    task_id: \"{task}\"\n"));
        }
    }
    let cfg_path = dir.join("config.yaml");
    std::fs::write(&cfg_path, &cfg).expect("write config");

    let out = Command::new(env!("CARGO_BIN_EXE_volcengine-rtc-exporter"))
        .arg("once")
        .arg(format!("--config.file={}", cfg_path.display()))
        .env_remove("VOLC_ACCESSKEY")
        .env_remove("VOLC_SECRETKEY")
        .env("HOME", &dir)
        .output()
        .expect("run volcengine-rtc-exporter once");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "once failed ({}) with Version {record_version}, token {}:\n{stderr}\n{stdout}",
        out.status,
        token.is_some()
    );
    for secret in ["c2VjcmV0", "Signature=", token.unwrap_or("c2VjcmV0")] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret leaked: {secret}"
        );
    }
    let samples = parse_exposition(&stdout);
    let start = start_s as f64;
    for t in ONCE_TARGETS {
        let mut l = vec![("kind", t.kind), ("app_id", t.app), ("room_id", t.room)];
        if let Some(task) = t.task {
            l.push(("task_id", task));
        }
        let get = |name: &str, extra: &[(&str, &str)]| {
            let mut want = l.clone();
            want.extend_from_slice(extra);
            value(&samples, name, &want)
        };
        let ctx = format!("{} {}/{}/{:?}", t.kind, t.app, t.room, t.task);
        assert_eq!(
            get("volcengine_rtc_target_up", &[]),
            Some(1.0),
            "{ctx}\n{stdout}"
        );
        assert_eq!(
            get("volcengine_rtc_task_start_timestamp_seconds", &[]),
            Some(start),
            "{ctx}"
        );
        if t.kind == "record" {
            assert_eq!(get("volcengine_rtc_task_status", &[]), Some(3.0), "{ctx}");
            assert_eq!(
                get("volcengine_rtc_task_end_timestamp_seconds", &[]),
                Some(start + 900.0),
                "{ctx}"
            );
            assert_eq!(
                get("volcengine_rtc_task_duration_seconds", &[]),
                Some(900.0),
                "{ctx}"
            );
            assert_eq!(
                get(
                    "volcengine_rtc_task_stop_reason",
                    &[("reason", "StopByAPI")]
                ),
                Some(1.0),
                "{ctx}"
            );
            assert_eq!(get("volcengine_rtc_record_files", &[]), Some(2.0), "{ctx}");
            assert_eq!(
                get("volcengine_rtc_record_size_bytes", &[]),
                Some(157_286_400.0),
                "{ctx}"
            );
            let vid = [("file", "v02b9ag10000cl4f2u3c77u0a0example")];
            let key = [("file", "record/part-2.mp4")];
            assert_eq!(
                get("volcengine_rtc_record_file_size_bytes", &vid),
                Some(104_857_600.0),
                "{ctx}"
            );
            assert_eq!(
                get("volcengine_rtc_record_file_size_bytes", &key),
                Some(52_428_800.0),
                "{ctx}"
            );
            assert_eq!(
                get("volcengine_rtc_record_file_duration_seconds", &vid),
                Some(600.0),
                "{ctx}"
            );
            assert_eq!(
                get("volcengine_rtc_record_file_duration_seconds", &key),
                Some(300.0),
                "{ctx}"
            );
        } else {
            assert_eq!(get("volcengine_rtc_task_status", &[]), Some(2.0), "{ctx}");
            assert_eq!(
                get("volcengine_rtc_task_end_timestamp_seconds", &[]),
                None,
                "{ctx}"
            );
            assert_eq!(
                get("volcengine_rtc_webcast_max_running_time_seconds", &[]),
                Some(7200.0),
                "{ctx}"
            );
        }
    }
    let requests = |action: &str, outcome: &str| {
        value(
            &samples,
            "volcengine_rtc_api_requests_total",
            &[("action", action), ("outcome", outcome)],
        )
        .unwrap_or(0.0)
    };
    assert_eq!(requests("GetRecordTask", "success"), 3.0, "{stdout}");
    assert_eq!(requests("GetWebCastTask", "success"), 2.0, "{stdout}");
    assert_eq!(
        requests("GetRecordTask", "auth_error") + requests("GetWebCastTask", "auth_error"),
        0.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn once_against_the_sdk_server_succeeds_for_every_target() {
    run_once("2022-06-01", None);
    run_once("2023-06-01", Some("sts-token/with+odd=chars"));
}
