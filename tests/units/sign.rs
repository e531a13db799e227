//! `volc::sign`: the V4 signer against published vectors.

use std::time::{Duration, SystemTime};

use volc_rtc_exporter::credentials::{Credentials, Secret};
use volc_rtc_exporter::volc::sign::*;

/// Hex SHA-256 of an empty body (every GET).
const EMPTY_BODY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const APP: &str = "661e8f0d1ab2c3d4e5f60718";

fn creds(token: Option<&str>) -> Credentials {
    Credentials {
        access_key_id: "AKLTtest".into(),
        secret_access_key: Secret::new("c2VjcmV0"),
        session_token: token.map(Secret::new),
    }
}

/// 2024-01-01T00:00:00Z.
fn jan1() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200)
}

fn record_query<'a>(version: &'a str, room: &'a str, task: &'a str) -> [(&'a str, &'a str); 5] {
    [
        ("Action", "GetRecordTask"),
        ("Version", version),
        ("AppId", APP),
        ("RoomId", room),
        ("TaskId", task),
    ]
}

fn request<'a>(host: &'a str, query: &'a [(&'a str, &'a str)]) -> SignRequest<'a> {
    SignRequest {
        method: "GET",
        host,
        path: "/",
        query,
        body: b"",
        region: "cn-north-1",
        service: "rtc",
    }
}

fn signature_of(authorization: &str) -> &str {
    authorization
        .rsplit_once("Signature=")
        .map(|(_, s)| s)
        .unwrap_or_default()
}

#[test]
fn published_vector_v1() {
    let q = record_query("2022-06-01", "room1", "task1");
    let s = sign(&request("rtc.volcengineapi.com", &q), &creds(None), jan1());
    assert_eq!(s.x_date, "20240101T000000Z");
    assert_eq!(s.content_sha256, EMPTY_BODY_SHA256);
    assert_eq!(s.signed_headers, "host;x-content-sha256;x-date");
    assert_eq!(
        s.query,
        "Action=GetRecordTask&AppId=661e8f0d1ab2c3d4e5f60718&RoomId=room1&TaskId=task1&Version=2022-06-01"
    );
    assert_eq!(
        s.authorization,
        "HMAC-SHA256 Credential=AKLTtest/20240101/cn-north-1/rtc/request, \
         SignedHeaders=host;x-content-sha256;x-date, \
         Signature=d6ea56033c214aeae9ac7596100c6e7e7b99cc844dbc4d4b5748969ce194ca3f"
    );
    assert!(!s.signs_security_token());
}

#[test]
fn published_vector_v1_canonical_request_hash() {
    let q = record_query("2022-06-01", "room1", "task1");
    let query = encode_query(&q);
    let headers = [
        ("Host", "rtc.volcengineapi.com"),
        ("X-Date", "20240101T000000Z"),
        ("X-Content-Sha256", EMPTY_BODY_SHA256),
    ];
    let (creq, signed) = canonical_request("GET", "/", &query, &headers, EMPTY_BODY_SHA256);
    assert_eq!(signed, "host;x-content-sha256;x-date");
    assert!(
        creq.contains("\nx-date:20240101T000000Z\n\nhost;"),
        "{creq}"
    );
    assert_eq!(
        sha256_hex(creq.as_bytes()),
        "1dd1146dea3b841c505549daafa34a7a32a7c6f150deea45be6688ba85a6c8dc"
    );
}

#[test]
fn published_vector_v2() {
    let q = record_query("2023-06-01", "user@example.com", "rec.task-01");
    let s = sign(&request("rtc.volcengineapi.com", &q), &creds(None), jan1());
    assert_eq!(
        signature_of(&s.authorization),
        "437dc736f2809731895f2c88e2e48a37dbdccb4b550c69a113f0f7d8eb609ff3"
    );
    assert!(s
        .query
        .contains("RoomId=user%40example.com&TaskId=rec.task-01"));
}

#[test]
fn encoding_is_rfc3986_with_upper_case_hex() {
    assert_eq!(encode("a@b.c-d_e~f g*h/i"), "a%40b.c-d_e~f%20g%2Ah%2Fi");
    assert_eq!(encode("AZaz09"), "AZaz09");
    assert_eq!(encode("+=&%"), "%2B%3D%26%25");
    assert_eq!(encode("é"), "%C3%A9");
    assert_eq!(
        encode_query(&[("b", "2 2"), ("a", "1"), ("a", "0")]),
        "a=0&a=1&b=2%202"
    );
    assert_eq!(encode_query(&[]), "");
}

#[test]
fn path_is_encoded_like_the_sdk() {
    assert_eq!(canonical_path(""), "/");
    assert_eq!(canonical_path("/"), "/");
    assert_eq!(canonical_path("/a b/c@d~e"), "/a%20b/c%40d~e");
}

#[test]
fn x_date_format() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
    assert_eq!(x_date(t), "20240229T123456Z");
}

#[test]
fn default_ports_are_stripped_other_ports_kept() {
    assert_eq!(canonical_host("h.example:80"), "h.example");
    assert_eq!(canonical_host("h.example:443"), "h.example");
    assert_eq!(canonical_host("127.0.0.1:18080"), "127.0.0.1:18080");
    assert_eq!(canonical_host(" h.example "), "h.example");

    let q = record_query("2022-06-01", "room1", "task1");
    let plain = sign(&request("rtc.volcengineapi.com", &q), &creds(None), jan1());
    let tls = sign(
        &request("rtc.volcengineapi.com:443", &q),
        &creds(None),
        jan1(),
    );
    let port = sign(
        &request("rtc.volcengineapi.com:8443", &q),
        &creds(None),
        jan1(),
    );
    assert_eq!(plain.authorization, tls.authorization);
    assert_ne!(plain.authorization, port.authorization);
}

#[test]
fn session_token_is_signed() {
    let q = record_query("2022-06-01", "room1", "task1");
    let with = sign(
        &request("rtc.volcengineapi.com", &q),
        &creds(Some("tok")),
        jan1(),
    );
    assert_eq!(
        with.signed_headers,
        "host;x-content-sha256;x-date;x-security-token"
    );
    assert!(with.signs_security_token());
    assert!(with
        .authorization
        .contains("SignedHeaders=host;x-content-sha256;x-date;x-security-token, "));
    let other = sign(
        &request("rtc.volcengineapi.com", &q),
        &creds(Some("tok2")),
        jan1(),
    );
    assert_ne!(
        signature_of(&with.authorization),
        signature_of(&other.authorization)
    );
    // An empty token is no token, as in the SDK.
    let empty = sign(
        &request("rtc.volcengineapi.com", &q),
        &creds(Some("")),
        jan1(),
    );
    let none = sign(&request("rtc.volcengineapi.com", &q), &creds(None), jan1());
    assert_eq!(empty, none);
}

#[test]
fn debug_hides_the_authorization() {
    let q = record_query("2022-06-01", "room1", "task1");
    let s = sign(
        &request("rtc.volcengineapi.com", &q),
        &creds(Some("tok")),
        jan1(),
    );
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(signature_of(&s.authorization)), "{dbg}");
    assert!(!dbg.contains("Credential"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}
