//! The callback signature: the seven signed values of a delivery and the callback key, sorted
//! as strings (byte order, as Go's `sort.Strings`), concatenated with no separator, hashed with
//! plain SHA-256 (not HMAC) and hex-encoded. The vendor's page stops before the encoding step;
//! lowercase hex is assumed, and the comparison ignores case. The comparison takes the same
//! time wherever the first difference is.

use sha2::{Digest, Sha256};

use crate::credentials::Secret;

/// The values a delivery signs, as found in its body (a field that is absent is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed<'a> {
    pub event_type: &'a str,
    pub event_data: &'a str,
    pub event_time: &'a str,
    pub event_id: &'a str,
    pub app_id: &'a str,
    pub version: &'a str,
    /// `Nonce` (2024 pages) or `Noce` (BytePlus and 2023 pages), whichever the body has.
    pub nonce: &'a str,
}

/// The signature of `values` under `key`: 64 lowercase hex digits.
pub fn signature(values: &Signed<'_>, key: &Secret) -> String {
    let mut parts = [
        values.event_type,
        values.event_data,
        values.event_time,
        values.event_id,
        values.app_id,
        values.version,
        values.nonce,
        key.expose(),
    ];
    parts.sort_unstable();
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Whether `given` is the signature of `values` under `key` (hex, either case).
pub fn verify(values: &Signed<'_>, key: &Secret, given: &str) -> bool {
    constant_time_eq_ignore_ascii_case(signature(values, key).as_bytes(), given.as_bytes())
}

/// `a == b` ignoring ASCII case, in time that depends only on the lengths.
fn constant_time_eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x.to_ascii_lowercase() ^ y.to_ascii_lowercase();
    }
    diff == 0
}
