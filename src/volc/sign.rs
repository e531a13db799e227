//! V4 (HMAC-SHA256) request signing, as the vendor's SDKs do it: a pure function of the
//! request, the credentials and the time.
//!
//! TEMPORARY STUB in wip/client so the client compiles before wip/sign is merged; it has the
//! real module's public shape but does not compute a signature. Replaced by `git merge main`.

use std::time::SystemTime;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::credentials::Credentials;

const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Signed {
    pub x_date: String,
    pub content_sha256: String,
    pub authorization: String,
    pub query: String,
    pub signed_headers: String,
}

impl Signed {
    pub fn signs_security_token(&self) -> bool {
        self.signed_headers
            .split(';')
            .any(|h| h == "x-security-token")
    }
}

pub fn sign(req: &SignRequest<'_>, creds: &Credentials, _at: SystemTime) -> Signed {
    let mut pairs: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, QUERY_ENCODE).to_string(),
                utf8_percent_encode(v, QUERY_ENCODE).to_string(),
            )
        })
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let token = creds
        .session_token
        .as_ref()
        .is_some_and(|t| !t.expose().is_empty());
    let signed_headers = if token {
        "host;x-content-sha256;x-date;x-security-token"
    } else {
        "host;x-content-sha256;x-date"
    }
    .to_string();
    Signed {
        x_date: "20240101T000000Z".into(),
        content_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        authorization: format!(
            "HMAC-SHA256 Credential={}/20240101/{}/{}/request, SignedHeaders={signed_headers}, Signature=stub",
            creds.access_key_id, req.region, req.service
        ),
        query,
        signed_headers,
    }
}
