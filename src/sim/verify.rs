//! The server side of V4 signing, for the simulator: [`verify`] checks a received request's
//! signature the way the vendor does, recomputing it with the same steps as
//! [`crate::volc::sign`] (the exporter only signs; it never verifies). [`VerifyError`] maps a
//! refusal to the vendor's code and status; no message shows a secret, a token or a signature.

use std::time::{Duration, SystemTime};

use percent_encoding::percent_decode_str;

use crate::credentials::{Credentials, Secret};
use crate::volc::sign::{
    canonical_host, canonical_request, credential_scope, encode_query, hmac, sha256_hex,
    short_date, signing_key, string_to_sign, ALGORITHM,
};

/// How far `X-Date` may be from the server's clock before the vendor refuses it.
pub const MAX_SKEW: Duration = Duration::from_secs(900);

/// Parses an `X-Date` value back into a time; `None` if it is not exactly
/// `YYYYMMDD'T'HHMMSS'Z'` with a valid date and time.
pub fn parse_x_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(4..6)?).ok()?).ok()?;
    let day = u8::try_from(num(6..8)?).ok()?;
    let hour = u8::try_from(num(9..11)?).ok()?;
    let minute = u8::try_from(num(11..13)?).ok()?;
    let second = u8::try_from(num(13..15)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let tod = time::Time::from_hms(hour, minute, second).ok()?;
    let odt = time::PrimitiveDateTime::new(date, tod).assume_utc();
    Some(SystemTime::from(odt))
}

/// Why a request's signature was refused; [`VerifyError::code`] is the vendor's error code and
/// [`VerifyError::http_status`] the status it answers with. Messages never contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `Authorization` header.
    #[error("the request has no Authorization header")]
    MissingAuthenticationToken,
    /// `Authorization` has no (or an empty) `Signature=`.
    #[error("the Authorization header carries no signature")]
    MissingSignature,
    /// `Authorization` is malformed: wrong algorithm, missing parts, a required header unsigned.
    #[error("the Authorization header is malformed: {0}")]
    InvalidAuthorization(&'static str),
    /// The credential scope doesn't match the request (date, region, service or terminator).
    #[error("the credential scope is not valid: {0}")]
    InvalidCredential(&'static str),
    /// `X-Date` missing, malformed, or too far from the server's clock.
    #[error("X-Date is missing, malformed or outside the allowed clock skew")]
    InvalidTimestamp,
    /// The access key id is not known.
    #[error("the access key id is not known")]
    InvalidAccessKey,
    /// The security token is missing, unexpected or wrong for this access key.
    #[error("the security token is missing or not valid for this access key")]
    InvalidSecretToken,
    /// The signature (or the body hash) doesn't match.
    #[error("the request signature does not match")]
    SignatureDoesNotMatch,
}

impl VerifyError {
    /// The vendor's `ResponseMetadata.Error.Code`.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingAuthenticationToken => "MissingAuthenticationToken",
            VerifyError::MissingSignature => "MissingSignature",
            VerifyError::InvalidAuthorization(_) => "InvalidAuthorization",
            VerifyError::InvalidCredential(_) => "InvalidCredential",
            VerifyError::InvalidTimestamp => "InvalidTimestamp",
            VerifyError::InvalidAccessKey => "InvalidAccessKey",
            VerifyError::InvalidSecretToken => "InvalidSecretToken",
            VerifyError::SignatureDoesNotMatch => "SignatureDoesNotMatch",
        }
    }

    /// The HTTP status the vendor answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::InvalidAuthorization(_) | VerifyError::InvalidCredential(_) => 400,
            VerifyError::InvalidTimestamp => 403,
            _ => 401,
        }
    }
}

/// A request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    pub method: &'a str,
    /// The URL path as received (percent-encoded).
    pub path: &'a str,
    /// The query string exactly as received (after `?`, still percent-encoded). `+` is read as
    /// a space, like Go's `url.ParseQuery`.
    pub raw_query: &'a str,
    /// Every request header (name in any case, value as received), `Host` included.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The region this server serves; `None` accepts the region named in the scope.
    pub region: Option<&'a str>,
    /// The service this server serves (`rtc`).
    pub service: &'a str,
}

impl VerifyRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

struct ParsedAuthorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<ParsedAuthorization<'_>, VerifyError> {
    let rest = value
        .trim()
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(VerifyError::InvalidAuthorization(
            "expected the HMAC-SHA256 algorithm",
        ))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        } else {
            return Err(VerifyError::InvalidAuthorization("unexpected component"));
        }
    }
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::MissingSignature)?;
    let credential = credential.ok_or(VerifyError::InvalidAuthorization("missing Credential"))?;
    let signed_headers = signed_headers
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::InvalidAuthorization("missing SignedHeaders"))?;
    let mut it = credential.split('/');
    let (Some(ak), Some(date), Some(region), Some(service), Some(term), None) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) else {
        return Err(VerifyError::InvalidCredential(
            "expected AK/date/region/service/request",
        ));
    };
    if ak.is_empty() {
        return Err(VerifyError::InvalidCredential("empty access key id"));
    }
    if term != "request" {
        return Err(VerifyError::InvalidCredential("scope must end in /request"));
    }
    Ok(ParsedAuthorization {
        access_key_id: ak,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

/// Decodes a raw query string into pairs (`+` as space, `%XX` decoded; invalid UTF-8 is
/// replaced, which then fails the signature check).
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Checks a received request's V4 signature the way the vendor does. `lookup` maps an access
/// key id to its credentials (secret, and the session token it must come with, if any); `now`
/// is the server's clock and `max_skew` the tolerance around `X-Date` (vendor: [`MAX_SKEW`]).
/// Returns the access key id on success.
///
/// The signature is recomputed from the headers named in `SignedHeaders` (which must include
/// `host` and `x-date`, and `x-security-token` when one is sent), the re-canonicalised query
/// and the hash of the actual body.
pub fn verify<F>(
    req: &VerifyRequest<'_>,
    lookup: F,
    now: SystemTime,
    max_skew: Duration,
) -> Result<String, VerifyError>
where
    F: FnOnce(&str) -> Option<Credentials>,
{
    let auth = req
        .header("authorization")
        .ok_or(VerifyError::MissingAuthenticationToken)?;
    let auth = parse_authorization(auth)?;

    let x_date_value = req
        .header("x-date")
        .map(str::trim)
        .ok_or(VerifyError::InvalidTimestamp)?;
    let at = parse_x_date(x_date_value).ok_or(VerifyError::InvalidTimestamp)?;
    let skew = match now.duration_since(at) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > max_skew {
        return Err(VerifyError::InvalidTimestamp);
    }
    if auth.date != short_date(x_date_value) {
        return Err(VerifyError::InvalidCredential(
            "scope date differs from X-Date",
        ));
    }
    if auth.service != req.service {
        return Err(VerifyError::InvalidCredential("wrong service"));
    }
    if let Some(region) = req.region {
        if auth.region != region {
            return Err(VerifyError::InvalidCredential("wrong region"));
        }
    }

    let signed: Vec<&str> = auth.signed_headers.split(';').collect();
    for required in ["host", "x-date"] {
        if !signed.contains(&required) {
            return Err(VerifyError::InvalidAuthorization(
                "host and x-date must be signed",
            ));
        }
    }
    let sent_token = req.header("x-security-token");
    if sent_token.is_some() && !signed.contains(&"x-security-token") {
        return Err(VerifyError::InvalidAuthorization(
            "x-security-token must be signed",
        ));
    }

    let creds = lookup(auth.access_key_id).ok_or(VerifyError::InvalidAccessKey)?;
    let expected_token = creds
        .session_token
        .as_ref()
        .map(Secret::expose)
        .filter(|t| !t.is_empty());
    match (expected_token, sent_token.map(str::trim)) {
        (None, None) => {}
        (Some(want), Some(got)) if constant_time_eq(want.as_bytes(), got.as_bytes()) => {}
        _ => return Err(VerifyError::InvalidSecretToken),
    }

    let body_sha256 = sha256_hex(req.body);
    if let Some(claimed) = req.header("x-content-sha256") {
        if !claimed.trim().eq_ignore_ascii_case(&body_sha256) {
            return Err(VerifyError::SignatureDoesNotMatch);
        }
    }

    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(signed.len());
    for name in &signed {
        let value = req.header(name).ok_or(VerifyError::InvalidAuthorization(
            "a signed header is missing",
        ))?;
        let value = if *name == "host" {
            canonical_host(value)
        } else {
            value
        };
        headers.push((name, value));
    }
    let path = percent_decode_str(req.path).decode_utf8_lossy();
    let pairs = parse_query(req.raw_query);
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let query = encode_query(&borrowed);
    let (creq, signed_headers) =
        canonical_request(req.method, &path, &query, &headers, &body_sha256);
    if signed_headers != auth.signed_headers {
        return Err(VerifyError::InvalidAuthorization(
            "SignedHeaders must be lower-case, sorted and without duplicates",
        ));
    }
    let scope = credential_scope(auth.date, auth.region, auth.service);
    let sts = string_to_sign(x_date_value, &scope, &sha256_hex(creq.as_bytes()));
    let key = signing_key(
        &creds.secret_access_key,
        auth.date,
        auth.region,
        auth.service,
    );
    let provided = hex::decode(auth.signature).map_err(|_| VerifyError::SignatureDoesNotMatch)?;
    if !constant_time_eq(&hmac(&key, sts.as_bytes()), &provided) {
        return Err(VerifyError::SignatureDoesNotMatch);
    }
    Ok(auth.access_key_id.to_string())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volc::sign::{sign, x_date, SignRequest, Signed};

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
}
