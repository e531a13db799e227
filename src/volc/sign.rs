//! V4 (HMAC-SHA256) request signing, as the vendor's SDKs do it: a pure function of the
//! request, the credentials and the time.
//!
//! [`sign`] is what the client calls for every attempt; [`verify`] is the server-side check the
//! simulator uses. Both follow the steps of the vendor's signer (volc-sdk-python's
//! `SignerV4.sign`) so that `tests/sdk_conformance.rs` can compare our `Authorization` header
//! with the SDK's byte for byte:
//!
//! 1. [`x_date`]: `YYYYMMDD'T'HHMMSS'Z'` in UTC; the short date is its first 8 characters.
//! 2. The body hash, lower-case hex SHA-256, sent as `X-Content-Sha256`.
//! 3. Signed headers `host`, `x-content-sha256`, `x-date` (+ `x-security-token` with an STS
//!    token), lower-case and sorted. The host is the `Host` header as sent, with a `:80` or
//!    `:443` suffix stripped ([`canonical_host`]), exactly as the SDK does; other ports are kept.
//! 4. [`encode_query`]: pairs sorted by key, RFC 3986 encoding with upper-case hex.
//! 5. [`canonical_request`], 6. [`credential_scope`], 7. [`string_to_sign`],
//! 8. [`signing_key`] and [`signature`], 9. the `Authorization` header.
//!
//! Secrets are read only through [`Secret::expose`]; nothing here logs, and neither
//! [`Signed`]'s `Debug` nor [`VerifyError`] shows a secret, a token or a signature.

use std::fmt;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::credentials::{Credentials, Secret};

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name at the head of the string to sign and of `Authorization`.
pub const ALGORITHM: &str = "HMAC-SHA256";

/// Hex SHA-256 of an empty body (every GET).
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How far `X-Date` may be from the server's clock before the vendor refuses it.
pub const MAX_SKEW: Duration = Duration::from_secs(900);

/// Everything except `A–Z a–z 0–9 - _ . ~` is percent-encoded (RFC 3986 unreserved).
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// As [`QUERY_ENCODE`], with `/` kept: for the path.
const PATH_ENCODE: &AsciiSet = &QUERY_ENCODE.remove(b'/');

/// One request to sign.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// `GET` for both actions.
    pub method: &'a str,
    /// The `Host` header as sent (e.g. `rtc.volcengineapi.com`, `127.0.0.1:18080`). A `:80` or
    /// `:443` suffix is stripped before signing, as the SDK does; callers should not send one
    /// (reqwest doesn't for the scheme's default port).
    pub host: &'a str,
    /// The URL path, unencoded: `/` for the OpenAPI; empty means `/`. It is signed as
    /// [`canonical_path`] gives it, which is also what to send.
    pub path: &'a str,
    /// The query parameters, unencoded, in any order.
    pub query: &'a [(&'a str, &'a str)],
    /// The body (empty for GET).
    pub body: &'a [u8],
    /// `cn-north-1`, `ap-singapore-1`, …
    pub region: &'a str,
    /// `rtc`.
    pub service: &'a str,
}

/// What the caller puts on the wire: `?{query}`, headers `X-Date`, `X-Content-Sha256`,
/// `Authorization`, plus `X-Security-Token: {creds.session_token}` when
/// [`Signed::signs_security_token`] is true.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    /// `X-Date` header value.
    pub x_date: String,
    /// `X-Content-Sha256` header value.
    pub content_sha256: String,
    /// `Authorization` header value (a credential: never log it).
    pub authorization: String,
    /// The canonical encoded query; send it as-is after `?`.
    pub query: String,
    /// The `;`-joined signed header names.
    pub signed_headers: String,
}

impl Signed {
    /// Whether `x-security-token` was signed, i.e. the caller must send `X-Security-Token`.
    pub fn signs_security_token(&self) -> bool {
        self.signed_headers
            .split(';')
            .any(|h| h == "x-security-token")
    }
}

impl fmt::Debug for Signed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signed")
            .field("x_date", &self.x_date)
            .field("content_sha256", &self.content_sha256)
            .field("authorization", &"<redacted>")
            .field("query", &self.query)
            .field("signed_headers", &self.signed_headers)
            .finish()
    }
}

/// Signs `req` with `creds` at time `at`. Pure: same inputs, same output.
///
/// An empty session token counts as none (as in the SDK).
pub fn sign(req: &SignRequest<'_>, creds: &Credentials, at: SystemTime) -> Signed {
    let x_date = x_date(at);
    let content_sha256 = sha256_hex(req.body);
    let query = encode_query(req.query);
    let token = creds
        .session_token
        .as_ref()
        .map(Secret::expose)
        .filter(|t| !t.is_empty());

    let host = canonical_host(req.host);
    let mut headers: Vec<(&str, &str)> = vec![
        ("host", host),
        ("x-content-sha256", &content_sha256),
        ("x-date", &x_date),
    ];
    if let Some(t) = token {
        headers.push(("x-security-token", t));
    }
    let (creq, signed_headers) =
        canonical_request(req.method, req.path, &query, &headers, &content_sha256);
    let date = short_date(&x_date);
    let scope = credential_scope(date, req.region, req.service);
    let sts = string_to_sign(&x_date, &scope, &sha256_hex(creq.as_bytes()));
    let key = signing_key(&creds.secret_access_key, date, req.region, req.service);
    let sig = signature(&key, &sts);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={sig}",
        creds.access_key_id
    );
    Signed {
        x_date,
        content_sha256,
        authorization,
        query,
        signed_headers,
    }
}

/// `X-Date` for `at`: UTC `YYYYMMDD'T'HHMMSS'Z'`.
pub fn x_date(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

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

/// The first 8 characters of an `X-Date` (`YYYYMMDD`).
fn short_date(x_date: &str) -> &str {
    x_date.get(..8).unwrap_or(x_date)
}

/// Percent-encodes one key or value: RFC 3986, upper-case hex, only `A–Z a–z 0–9 - _ . ~`
/// kept. Space becomes `%20`, never `+`.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_ENCODE).to_string()
}

/// The canonical query: pairs sorted by key (byte order, the SDK's `sorted(keys)`), then by
/// value, each side encoded with [`encode`], joined with `&`. This is also the query to send.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    sorted.sort();
    let mut out = String::new();
    for (k, v) in sorted {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// The `Host` value that is signed: trimmed, with a `:80` or `:443` suffix removed (the SDK
/// does this whatever the scheme). Other ports stay.
pub fn canonical_host(host: &str) -> &str {
    let h = host.trim();
    h.strip_suffix(":80")
        .or_else(|| h.strip_suffix(":443"))
        .unwrap_or(h)
}

/// The path as signed (and sent): each byte but `/` and the unreserved ones percent-encoded,
/// like the SDK's `quote(path)`; empty becomes `/`.
pub fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    utf8_percent_encode(path, PATH_ENCODE).to_string()
}

/// Builds the canonical request from the method, path, canonical query, the headers to sign
/// and the body hash. Header names are lower-cased, values trimmed, and sorted by name. Returns the canonical request and the `;`-joined signed header list.
pub fn canonical_request(
    method: &str,
    path: &str,
    canonical_query: &str,
    headers: &[(&str, &str)],
    body_sha256: &str,
) -> (String, String) {
    let mut lowered: Vec<(String, &str)> = headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim()))
        .collect();
    lowered.sort();
    let mut canonical_headers = String::new();
    for (n, v) in &lowered {
        canonical_headers.push_str(n);
        canonical_headers.push(':');
        canonical_headers.push_str(v);
        canonical_headers.push('\n');
    }
    let signed_headers = lowered
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let path = canonical_path(path);
    let creq = [
        method,
        &path,
        canonical_query,
        &canonical_headers,
        &signed_headers,
        body_sha256,
    ]
    .join("\n");
    (creq, signed_headers)
}

/// `YYYYMMDD/region/service/request`.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/request")
}

/// `HMAC-SHA256\n{x_date}\n{scope}\n{hex sha256 of the canonical request}`.
pub fn string_to_sign(x_date: &str, scope: &str, canonical_request_sha256: &str) -> String {
    format!("{ALGORITHM}\n{x_date}\n{scope}\n{canonical_request_sha256}")
}

/// kSigning = HMAC(HMAC(HMAC(HMAC(SK, date), region), service), "request").
pub fn signing_key(secret: &Secret, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(secret.expose().as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"request")
}

/// Lower-case hex HMAC-SHA256 of the string to sign under the signing key.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(signing_key, string_to_sign.as_bytes()))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` never fails for it.
    match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

// ---------------------------------------------------------------------------------------------
// Server side

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
    let mut mac = new_mac(&key);
    mac.update(sts.as_bytes());
    mac.verify_slice(&provided)
        .map_err(|_| VerifyError::SignatureDoesNotMatch)?;
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
