//! HTTP basic authentication against bcrypt hashes, as `basic_auth_users` in the
//! exporter-toolkit web config.
//!
//! - An unknown user is checked against a decoy hash of the highest configured cost, so the
//!   answer takes as long as for a known user with a wrong password.
//! - Successful checks are cached under a SHA-256 of (user, hash, password), so a scraper
//!   asking every few seconds costs one bcrypt run, not one per scrape.
//! - bcrypt runs one at a time (it is CPU-bound on purpose); [`BasicAuth::check`] blocks for
//!   as long as a bcrypt run takes, so async callers use
//!   [`WebConfig::authorize_async`](super::WebConfig::authorize_async).
//! - Neither the password nor the user name sent by a client is ever logged or put into an
//!   error: a password is sometimes typed into the user field.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Response, StatusCode};
use sha2::{Digest, Sha256};

/// The `WWW-Authenticate` value of every 401 answer.
pub const WWW_AUTHENTICATE_VALUE: &str = "Basic realm=\"volcengine-rtc-exporter\"";

/// How many successful (user, password) checks are remembered; the cache is emptied when it
/// is full (entries are only a shortcut, dropping them costs one bcrypt run each).
const CACHE_CAPACITY: usize = 1024;

/// Why a request was refused. Carries no user name and no password, so it can be logged and
/// counted as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthorized {
    /// No `Authorization` header.
    #[error("no credentials were sent")]
    Missing,
    /// An `Authorization` header that is not `Basic <base64 of user:password>`.
    #[error("the Authorization header is not valid basic authentication")]
    Malformed,
    /// Unknown user or wrong password (deliberately not told apart).
    #[error("wrong user name or password")]
    BadCredentials,
    /// The check could not run (the blocking task was lost).
    #[error("the credentials could not be checked")]
    CheckFailed,
}

impl Unauthorized {
    /// A short label for a metric or log field: `missing`, `malformed`, `bad_credentials`,
    /// `check_failed`.
    pub fn label(self) -> &'static str {
        match self {
            Unauthorized::Missing => "missing",
            Unauthorized::Malformed => "malformed",
            Unauthorized::BadCredentials => "bad_credentials",
            Unauthorized::CheckFailed => "check_failed",
        }
    }

    /// The answer to send: `401 Unauthorized` with
    /// `WWW-Authenticate: Basic realm="volcengine-rtc-exporter"` and a short text body.
    pub fn response(self) -> Response<Full<Bytes>> {
        let mut answer = Response::new(Full::new(Bytes::from_static(b"Unauthorized\n")));
        *answer.status_mut() = StatusCode::UNAUTHORIZED;
        let headers = answer.headers_mut();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE_VALUE),
        );
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        answer
    }
}

/// The configured users and the verification cache. Build with [`BasicAuth::new`].
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of the highest configured cost that no password is known for.
    decoy: String,
    cache: Mutex<HashSet<[u8; 32]>>,
    /// One bcrypt run at a time: several scrapers with a cold cache must not take every core.
    bcrypt_turn: Mutex<()>,
}

impl BasicAuth {
    /// `users` maps user names to bcrypt hashes already checked with [`hash_cost`]. Computes
    /// the decoy hash, which takes one bcrypt run of the highest cost.
    pub fn new(users: BTreeMap<String, String>) -> Result<BasicAuth, bcrypt::BcryptError> {
        let cost = users
            .values()
            .filter_map(|hash| hash_cost(hash).ok())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let mut decoy_password = [0u8; 32];
        rand::Rng::fill(&mut rand::thread_rng(), &mut decoy_password[..]);
        let decoy = bcrypt::hash(decoy_password, cost)?;
        Ok(BasicAuth {
            users,
            decoy,
            cache: Mutex::new(HashSet::new()),
            bcrypt_turn: Mutex::new(()),
        })
    }

    /// The configured user names, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Checks the `Authorization` header of a request. Blocks for one bcrypt run unless the
    /// same credentials were accepted before.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Unauthorized> {
        let (user, password) = credentials(headers)?;
        self.check_credentials(&user, &password)
    }

    /// The cache lookup alone: `Some(Ok(()))` when these credentials were accepted before,
    /// `None` when bcrypt has to run (also for malformed or absent headers, which
    /// [`BasicAuth::check`] then refuses at once).
    pub fn check_cached(&self, headers: &HeaderMap) -> Option<Result<(), Unauthorized>> {
        let (user, password) = match credentials(headers) {
            Ok(pair) => pair,
            Err(refused) => return Some(Err(refused)),
        };
        let hash = self.hash_for(&user)?;
        self.cached(&cache_key(&user, hash, &password))
            .then_some(Ok(()))
    }

    fn hash_for(&self, user: &[u8]) -> Option<&String> {
        std::str::from_utf8(user)
            .ok()
            .and_then(|name| self.users.get(name))
    }

    fn cached(&self, key: &[u8; 32]) -> bool {
        self.cache
            .lock()
            .map(|cache| cache.contains(key))
            .unwrap_or(false)
    }

    fn check_credentials(&self, user: &[u8], password: &[u8]) -> Result<(), Unauthorized> {
        let known = self.hash_for(user);
        let hash = known.unwrap_or(&self.decoy);
        let key = cache_key(user, hash, password);
        if known.is_some() && self.cached(&key) {
            return Ok(());
        }
        let matches = {
            let _turn = self.bcrypt_turn.lock();
            bcrypt::verify(password, hash).unwrap_or(false)
        };
        if known.is_some() && matches {
            if let Ok(mut cache) = self.cache.lock() {
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
                cache.insert(key);
            }
            Ok(())
        } else {
            Err(Unauthorized::BadCredentials)
        }
    }
}

impl std::fmt::Debug for BasicAuth {
    /// User names only: hashes and cached digests stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The cost of a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`), or why it is not one.
pub fn hash_cost(hash: &str) -> Result<u32, bcrypt::BcryptError> {
    hash.parse::<bcrypt::HashParts>()
        .map(|parts| parts.get_cost())
}

/// User and password from `Authorization: Basic …`, as bytes (neither has to be UTF-8).
fn credentials(headers: &HeaderMap) -> Result<(Vec<u8>, Vec<u8>), Unauthorized> {
    let value = headers.get(AUTHORIZATION).ok_or(Unauthorized::Missing)?;
    let value = value.as_bytes();
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => return Err(Unauthorized::Malformed),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(Unauthorized::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .map_err(|_| Unauthorized::Malformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(Unauthorized::Malformed)?;
    Ok((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

/// SHA-256 over the length-prefixed user, hash and password, so no two different triples
/// share a key and a changed hash (a new password in the config) never hits an old entry.
fn cache_key(user: &[u8], hash: &str, password: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [user, hash.as_bytes(), password] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
    digest.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        header(&format!("Basic {encoded}"))
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("s3cret:with:colons", 4).unwrap();
        BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)])).unwrap()
    }

    #[test]
    fn right_wrong_and_unknown_users() {
        let auth = auth();
        assert_eq!(auth.check(&basic("alice", "s3cret:with:colons")), Ok(()));
        assert_eq!(
            auth.check(&basic("alice", "s3cret")),
            Err(Unauthorized::BadCredentials)
        );
        assert_eq!(
            auth.check(&basic("bob", "s3cret:with:colons")),
            Err(Unauthorized::BadCredentials)
        );
        assert_eq!(
            auth.check(&basic("Alice", "s3cret:with:colons")),
            Err(Unauthorized::BadCredentials)
        );
    }

    #[test]
    fn malformed_and_missing_headers_are_refused() {
        let auth = auth();
        assert_eq!(auth.check(&HeaderMap::new()), Err(Unauthorized::Missing));
        for bad in [
            "Bearer abc",
            "Basic",
            "Basic !!!notbase64",
            "Basic YWxpY2U=", // "alice", no colon
        ] {
            assert_eq!(
                auth.check(&header(bad)),
                Err(Unauthorized::Malformed),
                "{bad}"
            );
        }
        // The scheme is case-insensitive.
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        assert_eq!(auth.check(&header(&format!("bAsIc {encoded}"))), Ok(()));
    }

    #[test]
    fn only_successes_are_cached() {
        let auth = auth();
        let good = basic("alice", "s3cret:with:colons");
        assert_eq!(auth.check_cached(&good), None);
        assert_eq!(auth.check(&good), Ok(()));
        assert_eq!(auth.check_cached(&good), Some(Ok(())));

        let wrong = basic("alice", "nope");
        assert!(auth.check(&wrong).is_err());
        assert_eq!(auth.check_cached(&wrong), None);
        assert_eq!(
            auth.check_cached(&HeaderMap::new()),
            Some(Err(Unauthorized::Missing))
        );
    }

    #[test]
    fn decoy_has_the_highest_configured_cost() {
        let users = BTreeMap::from([
            ("a".to_string(), bcrypt::hash("x", 4).unwrap()),
            ("b".to_string(), bcrypt::hash("y", 6).unwrap()),
        ]);
        let auth = BasicAuth::new(users).unwrap();
        assert_eq!(hash_cost(&auth.decoy).unwrap(), 6);
    }

    #[test]
    fn cache_keys_do_not_collide_across_boundaries() {
        assert_ne!(cache_key(b"ab", "h", b"c"), cache_key(b"a", "h", b"bc"));
        assert_ne!(cache_key(b"a", "h1", b"c"), cache_key(b"a", "h2", b"c"));
    }

    #[test]
    fn the_401_answer_names_the_realm() {
        let answer = Unauthorized::BadCredentials.response();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.headers()[WWW_AUTHENTICATE],
            "Basic realm=\"volcengine-rtc-exporter\""
        );
    }

    #[test]
    fn hash_cost_rejects_non_bcrypt() {
        let hash = bcrypt::hash("x", 5).unwrap();
        assert_eq!(hash_cost(&hash).unwrap(), 5);
        // Other implementations write `$2y$`; the cost is read the same way.
        assert_eq!(hash_cost(&hash.replacen("$2b$", "$2y$", 1)).unwrap(), 5);
        assert!(hash_cost("password").is_err());
        assert!(hash_cost("$1$abc$def").is_err());
    }
}
