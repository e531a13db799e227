//! HTTP basic authentication against bcrypt hashes, as `basic_auth_users` in the
//! exporter-toolkit web config, made cheap to attack:
//!
//! - An unknown user is checked against a decoy hash of the highest configured cost, so the
//!   answer takes as long as for a known user with a wrong password.
//! - Checks are cached under a SHA-256 of (user, hash, password), never the password itself:
//!   accepted ones for [`VERIFIED_TTL`] after their last use, so a scraper asking every few
//!   seconds costs one bcrypt run and never waits behind anybody; refused ones for
//!   [`REFUSED_TTL`], so a client repeating a wrong password costs no bcrypt run at all.
//! - bcrypt runs on the blocking pool, at most [`bcrypt_parallel`] at once, through a bounded
//!   queue in two classes: clients (connections, see [`Caller`]) that have not failed a login
//!   go before clients that have. A check that finds its class's queue full is answered
//!   `429 Too Many Requests` at once ([`Unauthorized::Busy`]).
//! - A client's guesses (wrong passwords bcrypt had to check) beyond [`FREE_FAILURES`]
//!   failures are each answered a little later (up to [`MAX_FAILURE_DELAY`]), which slows a
//!   password-guessing loop without holding anything. Requests without credentials are not
//!   held against a client.
//! - Neither the password nor the user name sent by a client is ever logged or put into an
//!   error: a password is sometimes typed into the user field.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{HeaderMap, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The `WWW-Authenticate` value of every 401 answer.
const WWW_AUTHENTICATE_VALUE: &str = "Basic realm=\"volcengine-rtc-exporter\"";

/// How long an accepted (user, password) stays cached after its last use.
pub const VERIFIED_TTL: Duration = Duration::from_secs(10 * 60);
/// How many accepted (user, password) pairs are remembered; when full, the least recently
/// used is forgotten (only a client with the right password can add one).
const VERIFIED_CAPACITY: usize = 1024;
/// How long a refused (user, password) stays cached.
pub const REFUSED_TTL: Duration = Duration::from_secs(5 * 60);
/// How many refused pairs are remembered; the cache is emptied when it is full (entries are
/// only a shortcut: dropping them costs one bcrypt run each).
const REFUSED_CAPACITY: usize = 4096;
/// Checks waiting for a bcrypt run, from clients without a failed login.
pub const QUEUE_CLEAN: usize = 16;
/// Checks waiting for a bcrypt run, from clients with a failed (or refused as busy) login.
pub const QUEUE_FAILED: usize = 8;
/// Failed logins a client may have before each further one is answered later.
pub const FREE_FAILURES: u32 = 3;
/// How much later each failure beyond [`FREE_FAILURES`] is answered, and the most.
const FAILURE_DELAY_STEP: Duration = Duration::from_millis(250);
/// The longest a refusal is held back.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(2);

/// How many bcrypt runs may go at once: half the cores, 1 to 4. bcrypt is slow on purpose;
/// more at once would take the cores the scrapes need.
pub fn bcrypt_parallel() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().div_ceil(2))
        .clamp(1, 4)
}

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
    /// Too many checks are waiting for bcrypt; answered `429` without checking.
    #[error("too many logins are being checked; try again shortly")]
    Busy,
}

impl Unauthorized {
    /// Every reason, in a fixed order (for metrics).
    pub const ALL: [Unauthorized; 5] = [
        Unauthorized::Missing,
        Unauthorized::Malformed,
        Unauthorized::BadCredentials,
        Unauthorized::CheckFailed,
        Unauthorized::Busy,
    ];

    /// A short label for a metric or log field: `missing`, `malformed`, `bad_credentials`,
    /// `check_failed`, `busy`.
    pub fn label(self) -> &'static str {
        match self {
            Unauthorized::Missing => "missing",
            Unauthorized::Malformed => "malformed",
            Unauthorized::BadCredentials => "bad_credentials",
            Unauthorized::CheckFailed => "check_failed",
            Unauthorized::Busy => "busy",
        }
    }

    /// The answer to send: `401 Unauthorized` with
    /// `WWW-Authenticate: Basic realm="volcengine-rtc-exporter"` and a short text body, or for
    /// [`Unauthorized::Busy`] `429 Too Many Requests` with `Retry-After: 1`.
    pub fn response(self) -> Response<Full<Bytes>> {
        if self == Unauthorized::Busy {
            let mut answer = Response::new(Full::new(Bytes::from_static(
                b"Too many logins are being checked; try again shortly\n",
            )));
            *answer.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            let headers = answer.headers_mut();
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return answer;
        }
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

/// One client's record of refused logins: the server keeps one per connection. A client that
/// has failed (or was refused as busy) since its last good login waits behind clients that
/// have not, and its failures beyond [`FREE_FAILURES`] are answered later.
#[derive(Debug, Default)]
pub struct Caller {
    failures: AtomicU32,
}

impl Caller {
    /// Refused logins so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// A good login clears the record.
    fn succeeded(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    fn failed(&self) -> u32 {
        self.failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// How long to hold back this client's refusal after `failures` in all.
    fn delay(failures: u32) -> Duration {
        let over = failures.saturating_sub(FREE_FAILURES);
        (FAILURE_DELAY_STEP * over).min(MAX_FAILURE_DELAY)
    }
}

/// The configured users, the caches and the bcrypt queue. Build with [`BasicAuth::new`].
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of the highest configured cost that no password is known for.
    decoy: String,
    /// Accepted keys and when each was last used.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    /// Refused keys and when each was refused.
    refused: Mutex<HashMap<[u8; 32], Instant>>,
    /// Turns to run bcrypt.
    gate: Arc<Gate>,
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
            verified: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            gate: Arc::new(Gate::new(bcrypt_parallel())),
        })
    }

    /// The configured user names, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Checks the `Authorization` header of a request: answered from the caches at once when
    /// possible (the same credentials were checked before), else bcrypt runs on the blocking pool when its turn comes ([`Unauthorized::Busy`] when
    /// too many wait). A refusal counts against `caller`, and from its [`FREE_FAILURES`]th on
    /// is answered later.
    pub async fn check_async(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
    ) -> Result<(), Unauthorized> {
        let (decided, guessed) = self.decide(headers, caller).await;
        match decided {
            Ok(()) => caller.succeeded(),
            // No credentials to check: nothing to hold against the client.
            Err(Unauthorized::Missing | Unauthorized::Malformed) => {}
            Err(_) => {
                let failures = caller.failed();
                // A guess is answered later; a password already known to be wrong costs
                // nothing, so it is answered at once.
                let delay = Caller::delay(failures);
                if guessed && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        }
        decided
    }

    /// The verdict, and whether it was a guess: credentials bcrypt had to check (or that were
    /// refused as busy), rather than ones the caches knew.
    async fn decide(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
    ) -> (Result<(), Unauthorized>, bool) {
        let (user, password) = match credentials(headers) {
            Ok(pair) => pair,
            Err(refused) => return (Err(refused), false),
        };
        let (key, known) = self.key(&user, &password);
        if let Some(decided) = self.cached(&key) {
            return (decided, false);
        }
        (self.verify(&user, password, key, known, caller).await, true)
    }

    /// Runs bcrypt for credentials the caches do not know, when the gate gives a turn.
    async fn verify(
        &self,
        user: &[u8],
        password: Vec<u8>,
        key: [u8; 32],
        known: bool,
        caller: &Caller,
    ) -> Result<(), Unauthorized> {
        let class = if caller.failures() == 0 {
            Class::Clean
        } else {
            Class::Failed
        };
        let _turn = self.gate.clone().turn(class).await?;
        // The same credentials may have been decided while this check waited.
        if let Some(decided) = self.cached(&key) {
            return decided;
        }
        let hash = self.hash_of(user).to_owned();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map_err(|_| Unauthorized::CheckFailed)?
            .unwrap_or(false);
        self.record(key, known && matches)
    }

    /// The cache key of these credentials, and whether the user is configured.
    fn key(&self, user: &[u8], password: &[u8]) -> ([u8; 32], bool) {
        let known = self.known_hash(user);
        let hash = known.unwrap_or(&self.decoy);
        (cache_key(user, hash, password), known.is_some())
    }

    fn known_hash(&self, user: &[u8]) -> Option<&String> {
        std::str::from_utf8(user)
            .ok()
            .and_then(|name| self.users.get(name))
    }

    /// The user's hash, or the decoy for an unknown user.
    fn hash_of(&self, user: &[u8]) -> &str {
        self.known_hash(user).unwrap_or(&self.decoy)
    }

    /// What the caches say about `key`: accepted (its last use renewed), refused, or nothing.
    fn cached(&self, key: &[u8; 32]) -> Option<Result<(), Unauthorized>> {
        let now = Instant::now();
        if let Ok(mut verified) = self.verified.lock() {
            if let Some(used) = verified.get_mut(key) {
                if now.saturating_duration_since(*used) < VERIFIED_TTL {
                    *used = now;
                    return Some(Ok(()));
                }
                verified.remove(key);
            }
        }
        if let Ok(mut refused) = self.refused.lock() {
            if let Some(at) = refused.get(key) {
                if now.saturating_duration_since(*at) < REFUSED_TTL {
                    return Some(Err(Unauthorized::BadCredentials));
                }
                refused.remove(key);
            }
        }
        None
    }

    /// Remembers a bcrypt verdict and returns it.
    fn record(&self, key: [u8; 32], accepted: bool) -> Result<(), Unauthorized> {
        let now = Instant::now();
        if accepted {
            if let Ok(mut verified) = self.verified.lock() {
                if verified.len() >= VERIFIED_CAPACITY && !verified.contains_key(&key) {
                    verified.retain(|_, used| now.saturating_duration_since(*used) < VERIFIED_TTL);
                    if verified.len() >= VERIFIED_CAPACITY {
                        let oldest = verified
                            .iter()
                            .min_by_key(|(_, used)| **used)
                            .map(|(k, _)| *k);
                        if let Some(oldest) = oldest {
                            verified.remove(&oldest);
                        }
                    }
                }
                verified.insert(key, now);
            }
            Ok(())
        } else {
            if let Ok(mut refused) = self.refused.lock() {
                if refused.len() >= REFUSED_CAPACITY {
                    refused.clear();
                }
                refused.insert(key, now);
            }
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

/// Which queue a check waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// From a client without a failed login: served first.
    Clean = 0,
    /// From a client that has failed.
    Failed = 1,
}

/// Turns to run bcrypt: at most `parallel` at once, the rest waiting in two bounded queues,
/// clean clients first. A waiter that goes away (its client disconnected) leaves its queue.
struct Gate {
    parallel: usize,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    running: usize,
    waiting: [VecDeque<oneshot::Sender<()>>; 2],
}

impl Gate {
    fn new(parallel: usize) -> Gate {
        Gate {
            parallel,
            state: Mutex::new(GateState::default()),
        }
    }

    /// Waits for a turn, or [`Unauthorized::Busy`] at once when `class`'s queue is full.
    async fn turn(self: Arc<Gate>, class: Class) -> Result<Turn, Unauthorized> {
        let waiting = {
            let mut state = self.state.lock().map_err(|_| Unauthorized::CheckFailed)?;
            if state.running < self.parallel {
                state.running += 1;
                return Ok(Turn(self.clone()));
            }
            let queue = &mut state.waiting[class as usize];
            queue.retain(|tx| !tx.is_closed());
            let cap = match class {
                Class::Clean => QUEUE_CLEAN,
                Class::Failed => QUEUE_FAILED,
            };
            if queue.len() >= cap {
                return Err(Unauthorized::Busy);
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            Waiting {
                rx,
                gate: self.clone(),
            }
        };
        waiting.wait().await
    }

    /// Hands a finished turn to the next waiter (clean ones first), or frees it.
    fn release(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        for class in [Class::Clean, Class::Failed] {
            while let Some(tx) = state.waiting[class as usize].pop_front() {
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
        state.running = state.running.saturating_sub(1);
    }
}

/// A turn to run bcrypt; handed on when dropped.
struct Turn(Arc<Gate>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// A place in a queue. Dropped after a turn was handed to it but before it was taken (the
/// client went away at that moment), it hands the turn on.
struct Waiting {
    rx: oneshot::Receiver<()>,
    gate: Arc<Gate>,
}

impl Waiting {
    async fn wait(mut self) -> Result<Turn, Unauthorized> {
        match (&mut self.rx).await {
            Ok(()) => {
                // The turn is taken: `self`'s drop must not hand it on again.
                self.rx.close();
                let gate = self.gate.clone();
                drop(self);
                Ok(Turn(gate))
            }
            Err(_) => Err(Unauthorized::CheckFailed),
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            self.gate.release();
        }
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

    /// What the server decides for a client with no refused logins.
    async fn check(auth: &BasicAuth, headers: &HeaderMap) -> Result<(), Unauthorized> {
        auth.check_async(headers, &Caller::default()).await
    }

    fn auth() -> BasicAuth {
        let hash = bcrypt::hash("s3cret:with:colons", 4).unwrap();
        BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)])).unwrap()
    }

    #[tokio::test]
    async fn right_wrong_and_unknown_users() {
        let auth = auth();
        assert_eq!(
            check(&auth, &basic("alice", "s3cret:with:colons")).await,
            Ok(())
        );
        assert_eq!(
            check(&auth, &basic("alice", "s3cret")).await,
            Err(Unauthorized::BadCredentials)
        );
        assert_eq!(
            check(&auth, &basic("bob", "s3cret:with:colons")).await,
            Err(Unauthorized::BadCredentials)
        );
        assert_eq!(
            check(&auth, &basic("Alice", "s3cret:with:colons")).await,
            Err(Unauthorized::BadCredentials)
        );
    }

    #[tokio::test]
    async fn malformed_and_missing_headers_are_refused() {
        let auth = auth();
        assert_eq!(
            check(&auth, &HeaderMap::new()).await,
            Err(Unauthorized::Missing)
        );
        for bad in [
            "Bearer abc",
            "Basic",
            "Basic !!!notbase64",
            "Basic YWxpY2U=", // "alice", no colon
        ] {
            assert_eq!(
                check(&auth, &header(bad)).await,
                Err(Unauthorized::Malformed),
                "{bad}"
            );
        }
        // The scheme is case-insensitive.
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:with:colons");
        assert_eq!(
            check(&auth, &header(&format!("bAsIc {encoded}"))).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn verdicts_are_cached_without_the_password() {
        let auth = auth();
        let good = basic("alice", "s3cret:with:colons");
        let (user, password) = credentials(&good).unwrap();
        let (key, known) = auth.key(&user, &password);
        assert!(known);
        assert_eq!(auth.cached(&key), None);
        assert_eq!(check(&auth, &good).await, Ok(()));
        assert_eq!(auth.cached(&key), Some(Ok(())));

        let wrong = basic("alice", "nope");
        let (user, password) = credentials(&wrong).unwrap();
        let (wrong_key, _) = auth.key(&user, &password);
        assert!(check(&auth, &wrong).await.is_err());
        assert_eq!(
            auth.cached(&wrong_key),
            Some(Err(Unauthorized::BadCredentials))
        );
        // An unknown user's refusal is cached under the decoy.
        let stranger = basic("mallory", "x");
        assert!(check(&auth, &stranger).await.is_err());
        let (user, password) = credentials(&stranger).unwrap();
        let (stranger_key, known) = auth.key(&user, &password);
        assert!(!known);
        assert_eq!(
            auth.cached(&stranger_key),
            Some(Err(Unauthorized::BadCredentials))
        );
        // Nothing in the caches is the password.
        let needle = b"s3cret";
        let verified = auth.verified.lock().unwrap();
        assert!(verified
            .keys()
            .all(|k| !k.windows(needle.len()).any(|w| w == needle)));
    }

    #[tokio::test(start_paused = true)]
    async fn accepted_credentials_expire_only_when_unused() {
        let auth = auth();
        let good = basic("alice", "s3cret:with:colons");
        let caller = Caller::default();
        assert_eq!(auth.check_async(&good, &caller).await, Ok(()));
        let (user, password) = credentials(&good).unwrap();
        let (key, _) = auth.key(&user, &password);
        for _ in 0..5 {
            tokio::time::advance(VERIFIED_TTL / 2).await;
            assert_eq!(auth.cached(&key), Some(Ok(())), "renewed by use");
        }
        tokio::time::advance(VERIFIED_TTL).await;
        assert_eq!(auth.cached(&key), None);
        assert_eq!(caller.failures(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_are_answered_later() {
        let auth = auth();
        let caller = Caller::default();
        for n in 1..=8u32 {
            let started = Instant::now();
            let wrong = basic("alice", &format!("guess-{n}"));
            assert_eq!(
                auth.check_async(&wrong, &caller).await,
                Err(Unauthorized::BadCredentials)
            );
            let expected = Caller::delay(n);
            assert_eq!(started.elapsed(), expected, "failure {n}");
        }
        assert_eq!(caller.failures(), 8);
        // A password already known to be wrong is no guess: answered at once, but counted.
        let started = Instant::now();
        let known_wrong = basic("alice", "guess-1");
        assert!(auth.check_async(&known_wrong, &caller).await.is_err());
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(caller.failures(), 9);
        // No credentials are not held against the client.
        assert_eq!(
            auth.check_async(&HeaderMap::new(), &caller).await,
            Err(Unauthorized::Missing)
        );
        assert_eq!(caller.failures(), 9);
        // A good login clears the record.
        let good = basic("alice", "s3cret:with:colons");
        assert_eq!(auth.check_async(&good, &caller).await, Ok(()));
        assert_eq!(caller.failures(), 0);
        assert_eq!(Caller::delay(FREE_FAILURES), Duration::ZERO);
        assert_eq!(Caller::delay(1000), MAX_FAILURE_DELAY);
    }

    #[tokio::test]
    async fn the_gate_serves_clean_callers_first_and_refuses_beyond_its_queues() {
        let gate = Arc::new(Gate::new(1));
        let running = gate.clone().turn(Class::Clean).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for (i, class) in [Class::Failed, Class::Clean, Class::Failed, Class::Clean]
            .into_iter()
            .enumerate()
        {
            let gate = gate.clone();
            let order = order.clone();
            waiters.push(tokio::spawn(async move {
                let _turn = gate.turn(class).await.unwrap();
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        // Let every waiter queue up.
        while gate
            .state
            .lock()
            .unwrap()
            .waiting
            .iter()
            .map(VecDeque::len)
            .sum::<usize>()
            < 4
        {
            tokio::task::yield_now().await;
        }
        // A full queue answers at once.
        let mut fillers = Vec::new();
        for _ in 0..QUEUE_FAILED {
            let (tx, rx) = oneshot::channel();
            fillers.push(rx);
            gate.state.lock().unwrap().waiting[1].push_back(tx);
        }
        assert!(matches!(
            gate.clone().turn(Class::Failed).await,
            Err(Unauthorized::Busy)
        ));
        // Drop the fillers again, then let the queue run.
        gate.state.lock().unwrap().waiting[1].truncate(2);
        drop(fillers);
        drop(running);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 3, 0, 2]);
        assert_eq!(gate.state.lock().unwrap().running, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_frees_its_place_and_its_turn() {
        let gate = Arc::new(Gate::new(1));
        let running = gate.clone().turn(Class::Clean).await.unwrap();
        let leaver = tokio::spawn(gate.clone().turn(Class::Clean));
        while gate.state.lock().unwrap().waiting[0].is_empty() {
            tokio::task::yield_now().await;
        }
        leaver.abort();
        let _ = leaver.await;
        drop(running);
        assert_eq!(gate.state.lock().unwrap().running, 0);
        let again = gate.clone().turn(Class::Clean).await.unwrap();
        assert_eq!(gate.state.lock().unwrap().running, 1);
        drop(again);
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
