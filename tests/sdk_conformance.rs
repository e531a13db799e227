//! Conformance of our V4 signer with the vendor's own SDK: generates requests deterministically
//! (seeded RNG), has `tests/py/sdk_sign.py` sign each one with volc-sdk-python's `SignerV4`, and
//! compares `Authorization`, `X-Date`, `X-Content-Sha256` and the canonical query byte for byte.
//!
//! Needs `python3` with the `volcengine` package (`scripts/install-test-deps`); fails, never
//! skips, when either is missing.

mod tools;

use std::process::Command;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use volc_rtc_exporter::credentials::{Credentials, Secret};
use volc_rtc_exporter::volc::sign::{sign, SignRequest, Signed};

/// The whole alphabet the vendor allows in AppId, RoomId, TaskId.
const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@.-";

const HOSTS: &[&str] = &[
    "rtc.volcengineapi.com",
    "open.volcengineapi.com",
    "open.byteplusapi.com",
    "127.0.0.1:18080",
    "localhost:9",
    "rtc.volcengineapi.com:443",
    "open.byteplusapi.com:80",
];

const REGIONS: &[&str] = &["cn-north-1", "ap-singapore-1"];

struct Case {
    host: String,
    path: String,
    query: Vec<(String, String)>,
    ak: String,
    sk: String,
    token: Option<String>,
    region: String,
    at: SystemTime,
}

fn random_from(rng: &mut StdRng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

/// Lengths 1 and 128 appear for sure; the rest spread over 1..=128.
fn id(rng: &mut StdRng, i: usize, which: usize) -> String {
    let len = match (i + which) % 8 {
        0 => 1,
        1 => 128,
        2 => rng.gen_range(1..=4),
        _ => rng.gen_range(1..=128),
    };
    random_from(rng, ID_ALPHABET, len)
}

fn generate(n: usize) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(0x5eed_0004);
    let mut cases = Vec::with_capacity(n);
    for i in 0..n {
        let app = id(&mut rng, i, 0);
        let room = id(&mut rng, i, 1);
        let task = id(&mut rng, i, 2);
        let mut query: Vec<(String, String)> = match i % 4 {
            0 | 1 => vec![
                ("Action".into(), "GetRecordTask".into()),
                (
                    "Version".into(),
                    if i % 4 == 0 {
                        "2022-06-01"
                    } else {
                        "2023-06-01"
                    }
                    .into(),
                ),
                ("AppId".into(), app),
                ("RoomId".into(), room),
                ("TaskId".into(), task),
            ],
            2 => vec![
                ("Action".into(), "GetWebCastTask".into()),
                ("Version".into(), "2020-12-01".into()),
                ("AppId".into(), app),
                ("RoomId".into(), room),
                ("TaskId".into(), task),
            ],
            _ => vec![
                ("Action".into(), "GetWebCastTask".into()),
                ("Version".into(), "2020-12-01".into()),
                ("AppId".into(), app),
                ("RoomId".into(), room),
            ],
        };
        // Any order in, sorted out.
        let rot = rng.gen_range(0..query.len());
        query.rotate_left(rot);
        let token = (i % 3 == 0).then(|| {
            let len = rng.gen_range(16..400);
            random_from(
                &mut rng,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                len,
            )
        });
        let secs = rng.gen_range(946_684_800u64..4_102_444_800); // 2000..2100
        cases.push(Case {
            host: HOSTS[i % HOSTS.len()].to_string(),
            path: "/".into(),
            query,
            ak: format!(
                "AKLT{}",
                random_from(&mut rng, b"ABCDEFGHIJKLMNOPabcdefgh0123456789", 32)
            ),
            sk: random_from(
                &mut rng,
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
                56,
            ),
            token,
            region: REGIONS[(i / 2) % REGIONS.len()].to_string(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        });
    }
    // Characters outside the ID alphabet, to pin the percent-encoding to the SDK's.
    let odd = [
        "a b",
        "a*b",
        "a/b",
        "a~b",
        "a+b",
        "a=b&c",
        "%41",
        "é中",
        "!'()",
        "#?[]",
        "\"<>\\^`{|}",
    ];
    for (j, v) in odd.iter().enumerate() {
        cases.push(Case {
            host: "rtc.volcengineapi.com".into(),
            path: ["/", "", "/api/v1", "/a b/c@d~e"][j % 4].into(),
            query: vec![
                ("Action".into(), "GetRecordTask".into()),
                ("Version".into(), "2023-06-01".into()),
                ("AppId".into(), "app".into()),
                ("RoomId".into(), (*v).to_string()),
                ("TaskId".into(), format!("t{j}{v}")),
            ],
            ak: "AKLTtest".into(),
            sk: "c2VjcmV0".into(),
            token: None,
            region: "cn-north-1".into(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200 + j as u64),
        });
    }
    cases
}

fn ours(c: &Case) -> Signed {
    let query: Vec<(&str, &str)> = c
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let creds = Credentials {
        access_key_id: c.ak.clone(),
        secret_access_key: Secret::new(c.sk.clone()),
        session_token: c.token.clone().map(Secret::new),
    };
    let req = SignRequest {
        method: "GET",
        host: &c.host,
        path: &c.path,
        query: &query,
        body: b"",
        region: &c.region,
        service: "rtc",
    };
    sign(&req, &creds, c.at)
}

fn sdk(cases: &[Case], xdates: &[String]) -> Vec<Value> {
    let input: Vec<Value> = cases
        .iter()
        .zip(xdates)
        .map(|(c, x)| {
            json!({
                "method": "GET",
                "host": c.host,
                "path": c.path,
                "query": c.query,
                "body": "",
                "ak": c.ak,
                "sk": c.sk,
                "token": c.token,
                "region": c.region,
                "service": "rtc",
                "x_date": x,
            })
        })
        .collect();
    let script = tools::repo_path("tests/py/sdk_sign.py");
    let python = tools::python();
    let body = serde_json::to_vec(&input).expect("serialize cases");
    let out = tools::run_with_input(
        Command::new(&python).arg(&script),
        &body,
        &format!("cannot run {python} (needed for the SDK conformance test; see scripts/install-test-deps)"),
    );
    assert!(
        out.status.success(),
        "sdk_sign.py failed ({}); is the vendor SDK installed (pip install volcengine)?\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> =
        serde_json::from_slice(&out.stdout).expect("sdk_sign.py output is JSON");
    assert_eq!(answers.len(), cases.len(), "one SDK answer per case");
    answers
}

#[test]
fn authorization_is_identical_to_the_vendor_sdk() {
    let cases = generate(72);
    let signed: Vec<Signed> = cases.iter().map(ours).collect();
    let xdates: Vec<String> = signed.iter().map(|s| s.x_date.clone()).collect();
    let answers = sdk(&cases, &xdates);

    // The generator really covers what it claims.
    let ids: Vec<&str> = cases
        .iter()
        .flat_map(|c| c.query.iter())
        .filter(|(k, _)| k.ends_with("Id"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(ids.iter().any(|v| v.len() == 1));
    assert!(ids.iter().any(|v| v.len() == 128));
    for ch in ID_ALPHABET {
        assert!(
            ids.iter().any(|v| v.as_bytes().contains(ch)),
            "no ID contains {:?}",
            char::from(*ch)
        );
    }
    assert!(cases.iter().any(|c| c.token.is_some()));
    assert!(cases.iter().any(|c| c.token.is_none()));

    let mut identical = 0;
    let mut mismatches = Vec::new();
    for (i, ((c, s), a)) in cases.iter().zip(&signed).zip(&answers).enumerate() {
        let field = |k: &str| {
            a.get(k)
                .and_then(Value::as_str)
                .unwrap_or("<missing>")
                .to_string()
        };
        let same = field("authorization") == s.authorization
            && field("x_date") == s.x_date
            && field("content_sha256") == s.content_sha256
            && field("signed_query") == s.query;
        if same {
            identical += 1;
        } else {
            mismatches.push(format!(
                "case {i} host={} query={:?} token={}:\n  ours: {} | {}\n  sdk:  {} | {}",
                c.host,
                c.query,
                c.token.is_some(),
                s.query,
                s.authorization,
                field("signed_query"),
                field("authorization"),
            ));
        }
    }
    println!("sdk conformance: {identical}/{} identical", cases.len());
    assert!(
        mismatches.is_empty(),
        "{} of {} differ from the SDK:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    assert!(identical >= 60);
}
