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
    let x_date_value = check_scope(req, &auth, now, max_skew)?;
    let signed: Vec<&str> = auth.signed_headers.split(';').collect();
    let creds = check_token(req, &auth, &signed, lookup)?;
    check_signature(req, &auth, &signed, x_date_value, &creds)?;
    Ok(auth.access_key_id.to_string())
}

/// The `X-Date` within `max_skew` of `now`, and the credential scope's date, service and
/// region as the request's; returns the `X-Date` value.
fn check_scope<'r>(
    req: &'r VerifyRequest<'r>,
    auth: &ParsedAuthorization<'_>,
    now: SystemTime,
    max_skew: Duration,
) -> Result<&'r str, VerifyError> {
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

    Ok(x_date_value)
}

/// `host` and `x-date` signed (and the token, when one is sent); the access key known and the
/// session token it must come with; returns its credentials.
fn check_token<F>(
    req: &VerifyRequest<'_>,
    auth: &ParsedAuthorization<'_>,
    signed: &[&str],
    lookup: F,
) -> Result<Credentials, VerifyError>
where
    F: FnOnce(&str) -> Option<Credentials>,
{
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

    Ok(creds)
}

/// The signature recomputed from the signed headers, the re-canonicalised query and the hash
/// of the actual body.
fn check_signature(
    req: &VerifyRequest<'_>,
    auth: &ParsedAuthorization<'_>,
    signed: &[&str],
    x_date_value: &str,
    creds: &Credentials,
) -> Result<(), VerifyError> {
    let body_sha256 = sha256_hex(req.body);
    if let Some(claimed) = req.header("x-content-sha256") {
        if !claimed.trim().eq_ignore_ascii_case(&body_sha256) {
            return Err(VerifyError::SignatureDoesNotMatch);
        }
    }

    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(signed.len());
    for &name in signed {
        let value = req.header(name).ok_or(VerifyError::InvalidAuthorization(
            "a signed header is missing",
        ))?;
        let value = if name == "host" {
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
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
