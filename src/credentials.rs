//! Credentials: the access key pair (plus optional STS session token) and the chain that finds
//! them — config `*_file` keys, inline keys, `VOLC_ACCESSKEY`/`VOLC_SECRETKEY`, then
//! `~/.volc/credentials`. Secrets are wrapped in [`Secret`], whose `Debug` never shows them.

use std::fmt;

/// A secret string: readable only through [`Secret::expose`]; `Debug` and `Display` redact.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used (signing, the security-token header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the signer needs.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// STS token, sent (and signed) as `X-Security-Token`.
    pub session_token: Option<Secret>,
}
