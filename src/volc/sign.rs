//! V4 (HMAC-SHA256) request signing, as the vendor's SDKs do it: a pure function of the
//! request, the credentials and the time.
//!
//! [`sign`] is what the client calls for every attempt. It follows the steps of the vendor's
//! signer (volc-sdk-python's `SignerV4.sign`) so that `tests/sdk_conformance.rs` can compare
//! our `Authorization` header with the SDK's byte for byte (the server-side check, for the
//! simulator, is `sim::verify`, built from the same steps):
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
//! [`Signed`]'s `Debug` shows a secret, a token or a signature.

use std::fmt;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

use crate::credentials::{Credentials, Secret};

type HmacSha256 = Hmac<Sha256>;

/// The algorithm name at the head of the string to sign and of `Authorization`.
pub const ALGORITHM: &str = "HMAC-SHA256";

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

/// The first 8 characters of an `X-Date` (`YYYYMMDD`).
pub fn short_date(x_date: &str) -> &str {
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

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}
