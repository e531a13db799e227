//! `sim::verify`: the simulator checks a request's signature as the vendor does — what `sign`
//! produces passes, tampering, skew, unknown keys and malformed headers do not.

use std::time::{Duration, SystemTime};

use volc_rtc_exporter::credentials::{Credentials, Secret};
use volc_rtc_exporter::sim::verify::*;
use volc_rtc_exporter::volc::sign::{sha256_hex, sign, x_date, SignRequest, Signed};

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

#[test]
fn x_date_format_and_parse_roundtrip() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
    assert_eq!(x_date(t), "20240229T123456Z");
    assert_eq!(parse_x_date("20240229T123456Z"), Some(t));
    for bad in [
        "",
        "20240229123456Z",
        "20240229T123456",
        "20230229T123456Z",
        "20240229T246000Z",
        "2024022XT123456Z",
        "+0240229T123456Z",
    ] {
        assert_eq!(parse_x_date(bad), None, "{bad}");
    }
}

/// A received request built from what `sign` produced, as a server would see it.
struct Wire {
    query: String,
    headers: Vec<(String, String)>,
}

impl Wire {
    fn new(host: &str, s: &Signed, token: Option<&str>) -> Wire {
        let mut headers = vec![
            ("Host".to_string(), host.to_string()),
            ("X-Date".to_string(), s.x_date.clone()),
            ("X-Content-Sha256".to_string(), s.content_sha256.clone()),
            ("Authorization".to_string(), s.authorization.clone()),
            ("User-Agent".to_string(), "test".to_string()),
        ];
        if let Some(t) = token {
            headers.push(("X-Security-Token".to_string(), t.to_string()));
        }
        Wire {
            query: s.query.clone(),
            headers,
        }
    }

    fn set(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    fn verify(&self, known: &Credentials, now: SystemTime) -> Result<String, VerifyError> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let req = VerifyRequest {
            method: "GET",
            path: "/",
            raw_query: &self.query,
            headers: &headers,
            body: b"",
            region: Some("cn-north-1"),
            service: "rtc",
        };
        verify(
            &req,
            |ak| (ak == known.access_key_id).then(|| known.clone()),
            now,
            MAX_SKEW,
        )
    }
}

fn signed_wire(token: Option<&str>) -> (Wire, Credentials) {
    let q = record_query("2023-06-01", "user@example.com", "a b*c/d~e");
    let c = creds(token);
    let s = sign(&request("127.0.0.1:18080", &q), &c, jan1());
    (Wire::new("127.0.0.1:18080", &s, token), c)
}

#[test]
fn verify_accepts_what_sign_produced() {
    for token in [None, Some("sts-token")] {
        let (w, c) = signed_wire(token);
        assert_eq!(w.verify(&c, jan1()), Ok("AKLTtest".to_string()));
        // Within the skew on either side.
        let late = jan1() + Duration::from_secs(899);
        assert_eq!(w.verify(&c, late), Ok("AKLTtest".to_string()));
        let early = jan1() - Duration::from_secs(899);
        assert_eq!(w.verify(&c, early), Ok("AKLTtest".to_string()));
    }
}

#[test]
fn verify_accepts_a_default_port_in_the_host_header() {
    let q = record_query("2022-06-01", "room1", "task1");
    let c = creds(None);
    let s = sign(&request("rtc.volcengineapi.com", &q), &c, jan1());
    let w = Wire::new("rtc.volcengineapi.com:443", &s, None);
    assert!(w.verify(&c, jan1()).is_ok());
}

#[test]
fn verify_decodes_the_received_path() {
    let q = [("Action", "GetWebCastTask")];
    let c = creds(None);
    let req = SignRequest {
        path: "/a b@c",
        ..request("h", &q)
    };
    let s = sign(&req, &c, jan1());
    let w = Wire::new("h", &s, None);
    let headers: Vec<(&str, &str)> = w
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let check = |path: &str| {
        let vr = VerifyRequest {
            method: "GET",
            path,
            raw_query: &w.query,
            headers: &headers,
            body: b"",
            region: None,
            service: "rtc",
        };
        verify(&vr, |_| Some(c.clone()), jan1(), MAX_SKEW)
    };
    assert!(check("/a%20b%40c").is_ok());
    assert_eq!(check("/a%20b%40d"), Err(VerifyError::SignatureDoesNotMatch));
}

#[test]
fn verify_reads_plus_and_lower_case_escapes() {
    let q = [("Action", "GetWebCastTask"), ("RoomId", "a b@c*")];
    let c = creds(None);
    let s = sign(&request("h", &q), &c, jan1());
    let mut w = Wire::new("h", &s, None);
    w.query = "RoomId=a+b%40c%2a&Action=GetWebCastTask".into();
    assert!(w.verify(&c, jan1()).is_ok());
    w.query = "RoomId=a%20b%40d%2A&Action=GetWebCastTask".into();
    assert_eq!(
        w.verify(&c, jan1()),
        Err(VerifyError::SignatureDoesNotMatch)
    );
}

#[test]
fn verify_rejects_tampering() {
    let (w, c) = signed_wire(None);
    let now = jan1();

    let mut t = Wire {
        query: w.query.replace("user%40", "usex%40"),
        headers: w.headers.clone(),
    };
    assert_eq!(t.verify(&c, now), Err(VerifyError::SignatureDoesNotMatch));

    t = Wire {
        query: w.query.clone(),
        headers: w.headers.clone(),
    };
    t.set("Host", "127.0.0.1:18081");
    assert_eq!(t.verify(&c, now), Err(VerifyError::SignatureDoesNotMatch));

    t = Wire {
        query: w.query.clone(),
        headers: w.headers.clone(),
    };
    t.set("X-Date", "20240101T000001Z");
    assert_eq!(t.verify(&c, now), Err(VerifyError::SignatureDoesNotMatch));

    t = Wire {
        query: w.query.clone(),
        headers: w.headers.clone(),
    };
    t.set("X-Content-Sha256", &sha256_hex(b"x"));
    assert_eq!(t.verify(&c, now), Err(VerifyError::SignatureDoesNotMatch));

    let wrong_secret = Credentials {
        secret_access_key: Secret::new("other"),
        ..c.clone()
    };
    assert_eq!(
        w.verify(&wrong_secret, now),
        Err(VerifyError::SignatureDoesNotMatch)
    );

    let auth = w
        .headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut flipped = auth.clone();
    let last = flipped.pop();
    flipped.push(if last == Some('0') { '1' } else { '0' });
    t = Wire {
        query: w.query.clone(),
        headers: w.headers.clone(),
    };
    t.set("Authorization", &flipped);
    assert_eq!(t.verify(&c, now), Err(VerifyError::SignatureDoesNotMatch));
}

#[test]
fn verify_rejects_skew_beyond_900_s() {
    let (w, c) = signed_wire(None);
    let err = w.verify(&c, jan1() + Duration::from_secs(901));
    assert_eq!(err, Err(VerifyError::InvalidTimestamp));
    let err = w.verify(&c, jan1() - Duration::from_secs(901));
    assert_eq!(err, Err(VerifyError::InvalidTimestamp));
    assert_eq!(VerifyError::InvalidTimestamp.code(), "InvalidTimestamp");

    let mut t = Wire {
        query: w.query.clone(),
        headers: w.headers.clone(),
    };
    t.set("X-Date", "2024-01-01T00:00:00Z");
    assert_eq!(t.verify(&c, jan1()), Err(VerifyError::InvalidTimestamp));
    t.remove("X-Date");
    assert_eq!(t.verify(&c, jan1()), Err(VerifyError::InvalidTimestamp));
}

#[test]
fn verify_rejects_unknown_key_and_bad_tokens() {
    let (w, c) = signed_wire(None);
    let stranger = Credentials {
        access_key_id: "AKLTother".into(),
        ..c.clone()
    };
    let err = w.verify(&stranger, jan1());
    assert_eq!(err, Err(VerifyError::InvalidAccessKey));
    assert_eq!(VerifyError::InvalidAccessKey.code(), "InvalidAccessKey");
    assert_eq!(VerifyError::InvalidAccessKey.http_status(), 401);

    // The key needs a token but none was sent.
    let needs_token = creds(Some("sts-token"));
    assert_eq!(
        w.verify(&needs_token, jan1()),
        Err(VerifyError::InvalidSecretToken)
    );

    // A token was signed and sent, but it is the wrong one.
    let (tw, _) = signed_wire(Some("sts-token"));
    let other_token = creds(Some("sts-other"));
    assert_eq!(
        tw.verify(&other_token, jan1()),
        Err(VerifyError::InvalidSecretToken)
    );
    // A token was sent for a key that has none.
    assert_eq!(
        tw.verify(&creds(None), jan1()),
        Err(VerifyError::InvalidSecretToken)
    );

    // A token sent but not signed.
    let mut t = Wire {
        query: w.query.clone(),
        headers: w.headers.clone(),
    };
    t.set("X-Security-Token", "sts-token");
    assert!(matches!(
        t.verify(&needs_token, jan1()),
        Err(VerifyError::InvalidAuthorization(_))
    ));
}

#[test]
fn verify_rejects_missing_or_malformed_authorization() {
    let (w, c) = signed_wire(None);
    let check = |auth: Option<&str>| {
        let mut t = Wire {
            query: w.query.clone(),
            headers: w.headers.clone(),
        };
        match auth {
            Some(a) => t.set("Authorization", a),
            None => t.remove("Authorization"),
        }
        t.verify(&c, jan1()).map_err(|e| e.code())
    };
    assert_eq!(check(None), Err("MissingAuthenticationToken"));
    let scope = "Credential=AKLTtest/20240101/cn-north-1/rtc/request";
    let sh = "SignedHeaders=host;x-content-sha256;x-date";
    assert_eq!(
        check(Some(&format!("HMAC-SHA256 {scope}, {sh}"))),
        Err("MissingSignature")
    );
    assert_eq!(
        check(Some(&format!("HMAC-SHA256 {scope}, {sh}, Signature="))),
        Err("MissingSignature")
    );
    assert_eq!(
        check(Some(&format!(
            "AWS4-HMAC-SHA256 {scope}, {sh}, Signature=00"
        ))),
        Err("InvalidAuthorization")
    );
    assert_eq!(
        check(Some(&format!(
            "HMAC-SHA256 {scope}, SignedHeaders=x-date, Signature=00"
        ))),
        Err("InvalidAuthorization")
    );
    assert_eq!(
        check(Some(&format!(
            "HMAC-SHA256 Credential=AKLTtest/20240101/cn-north-1/rtc, {sh}, Signature=00"
        ))),
        Err("InvalidCredential")
    );
    assert_eq!(
        check(Some(&format!(
            "HMAC-SHA256 Credential=AKLTtest/20240101/ap-singapore-1/rtc/request, {sh}, Signature=00"
        ))),
        Err("InvalidCredential")
    );
    assert_eq!(
        check(Some(&format!(
            "HMAC-SHA256 Credential=AKLTtest/20240102/cn-north-1/rtc/request, {sh}, Signature=00"
        ))),
        Err("InvalidCredential")
    );
}

#[test]
fn verify_errors_do_not_leak_secrets() {
    let (tw, _) = signed_wire(Some("sts-token"));
    let err = tw.verify(&creds(Some("sts-other")), jan1());
    let shown = match &err {
        Err(e) => format!("{e} {e:?}"),
        Ok(_) => String::new(),
    };
    assert!(!shown.is_empty());
    for secret in ["sts-token", "sts-other", "c2VjcmV0"] {
        assert!(!shown.contains(secret), "{shown}");
    }
}
