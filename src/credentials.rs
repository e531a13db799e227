//! Credentials: the access key pair (plus optional STS session token) and the chain that finds
//! them — config `*_file` keys, inline keys, `VOLC_ACCESSKEY`/`VOLC_SECRETKEY`, then
//! `~/.volc/credentials`. Secrets are wrapped in [`Secret`], whose `Debug` never shows them.
//!
//! The chain reads the environment only through [`Environment`], so tests pass a made-up one
//! (`sim::MapEnv`) instead of touching the process. The first source that is configured at
//! all wins: a configured but broken source (half a pair, an unreadable file) is an error,
//! never a silent fall-through to the next one. No message ever contains a secret or a token.
//!
//! **Rotation.** The credentials in use live in a [`CredentialsHandle`], which the client asks
//! for the current values on every request (an `Arc` swapped under a lock that is never held
//! across an `await`). [`CredentialsHandle::watch`] re-reads the `*_file` keys every few
//! seconds ([`DEFAULT_RELOAD_INTERVAL`]) with the same checks as at start-up and swaps in new
//! values when they differ from the ones in use: STS tokens rotate hourly, and Kubernetes
//! replaces a mounted Secret by pointing its `..data` symlink at a new directory. A change is
//! taken only when two reads a moment apart agree, so a writer that updates the files one at a
//! time, or truncates before writing, is not caught half-way. Files that become unreadable,
//! empty or malformed leave the old credentials in use; that is logged once per broken state
//! (with the file and the fix, never a value) and counted in
//! [`CredentialsHandle::reload_failures`]; a rotation is logged at info and counted in
//! [`CredentialsHandle::reloads`].
//!
//! The running exporter starts the watcher whenever the config names a `*_file` key, and a
//! reload that adds, changes or removes them starts, restarts or stops it
//! (`Exporter::watch_credentials`). A request the API refuses as `auth_error` re-reads the
//! files at once ([`CredentialsHandle::reload_now`]) and, if they hold new credentials, is
//! sent once more with them: a token swapped right as the old one is refused costs no failed
//! poll (see [`crate::volc::client`]).
//!
//! *Why polling, not file events.* Three files of a few bytes cost microseconds to read, and
//! comparing what they hold is immune to how they were replaced. Events are not: an inotify
//! watch on `token -> ..data/token` follows the old target, which Kubernetes deletes after the
//! swap, so later rotations go unseen; a watch on the directory must make sense of renames of
//! `..data` and of hidden timestamped directories; network and FUSE mounts send no events at
//! all. A delay of seconds is nothing against tokens that are valid for an hour and are
//! renewed well before they expire.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// STS token, sent (and signed) as `X-Security-Token`.
    pub session_token: Option<Secret>,
}

impl Credentials {
    /// The access key id with its middle hidden, e.g. `AKLT****1234`: at most a third of it
    /// (and at most 4 characters at each end) stays visible.
    pub fn masked_access_key_id(&self) -> String {
        let chars: Vec<char> = self.access_key_id.chars().collect();
        let keep = (chars.len() / 6).min(4);
        let head: String = chars.iter().take(keep).collect();
        let tail: String = chars[chars.len() - keep..].iter().collect();
        format!("{head}****{tail}")
    }
}

/// Where the credentials came from (for `check`; never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The config's `access_key_id_file` / `secret_access_key_file`.
    Files,
    /// The config's inline `access_key_id` / `secret_access_key`.
    Inline,
    /// `VOLC_ACCESSKEY` / `VOLC_SECRETKEY`.
    Environment,
    /// The shared credentials file at this path.
    SharedFile(PathBuf),
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Files => {
                f.write_str("files named by credentials.access_key_id_file/secret_access_key_file")
            }
            CredentialSource::Inline => f.write_str("inline credentials in the config file"),
            CredentialSource::Environment => {
                write!(f, "environment variables {ENV_ACCESS_KEY}/{ENV_SECRET_KEY}")
            }
            CredentialSource::SharedFile(p) => write!(f, "shared file {}", p.display()),
        }
    }
}

/// The access key id variable the vendor's SDKs read.
pub const ENV_ACCESS_KEY: &str = "VOLC_ACCESSKEY";
/// The secret access key variable the vendor's SDKs read.
pub const ENV_SECRET_KEY: &str = "VOLC_SECRETKEY";
/// Optional STS session token, read along with the pair from the environment.
pub const ENV_SESSION_TOKEN: &str = "VOLC_SESSIONTOKEN";
/// The shared credentials file, relative to the home directory.
pub const SHARED_FILE: &str = ".volc/credentials";

/// The process environment as the credential chain sees it.
pub trait Environment {
    /// A variable's value; `None` when unset or not Unicode.
    fn var(&self, name: &str) -> Option<String>;
    /// The user's home directory, where `.volc/credentials` lives.
    fn home_dir(&self) -> Option<PathBuf>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn home_dir(&self) -> Option<PathBuf> {
        let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
        std::env::var_os(var)
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
    }
}

/// The `credentials:` section of the config, file paths already resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialConfig {
    pub access_key_id_file: Option<PathBuf>,
    pub secret_access_key_file: Option<PathBuf>,
    pub session_token_file: Option<PathBuf>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
}

/// Why the chain found no usable credentials. Messages name the key, variable or file
/// concerned and the fix; they never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("`credentials.{given}` is set but `credentials.{missing}` is not; set both, or remove `{given}`")]
    HalfConfigured {
        given: &'static str,
        missing: &'static str,
    },
    #[error(
        "environment variable {given} is set but {missing} is not; export both, or unset {given}"
    )]
    HalfEnvironment {
        given: &'static str,
        missing: &'static str,
    },
    #[error("cannot read the file {} named by `credentials.{key}`: {error}", path.display())]
    Unreadable {
        key: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("{what} is empty; put the value there")]
    Empty {
        key: Option<&'static str>,
        what: String,
    },
    #[error("{what} contains spaces or control characters; it must be a single token")]
    Malformed {
        key: Option<&'static str>,
        what: String,
    },
    #[error("`credentials.{key}` is set but the config names no access key pair (`access_key_id_file`/`secret_access_key_file` or `access_key_id`/`secret_access_key`); a session token is only used with them")]
    TokenWithoutPair { key: &'static str },
    #[error("cannot read the shared credentials file {}: {error}", path.display())]
    SharedUnreadable { path: PathBuf, error: io::Error },
    #[error("the shared credentials file {} {problem}", path.display())]
    SharedInvalid { path: PathBuf, problem: String },
    #[error("no credentials found; searched: {}. Fix: set `credentials.access_key_id_file` and `credentials.secret_access_key_file` in the config, or export {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}, or write `access_key_id` and `secret_access_key` under `[default]` in ~/{SHARED_FILE}", searched.join("; "))]
    NotFound { searched: Vec<String> },
}

impl CredentialError {
    /// The `credentials.` key this error is about, to point at its line in the config.
    pub fn config_key(&self) -> Option<&'static str> {
        match self {
            CredentialError::HalfConfigured { given, .. } => Some(given),
            CredentialError::Unreadable { key, .. } => Some(key),
            CredentialError::Empty { key, .. } | CredentialError::Malformed { key, .. } => *key,
            CredentialError::TokenWithoutPair { key } => Some(key),
            _ => None,
        }
    }
}

/// A value as found, with how to name it in messages and the config key it came from.
struct Found {
    value: String,
    what: String,
    key: Option<&'static str>,
}

fn read_file(key: &'static str, path: &Path) -> Result<Found, CredentialError> {
    let value = std::fs::read_to_string(path).map_err(|error| CredentialError::Unreadable {
        key,
        path: path.to_owned(),
        error,
    })?;
    Ok(Found {
        value,
        what: format!("the file {} (`credentials.{key}`)", path.display()),
        key: Some(key),
    })
}

fn inline(key: &'static str, value: &str) -> Found {
    Found {
        value: value.to_owned(),
        what: format!("`credentials.{key}`"),
        key: Some(key),
    }
}

fn from_env(name: &'static str, value: String) -> Found {
    Found {
        value,
        what: format!("environment variable {name}"),
        key: None,
    }
}

/// Trims the value and checks it is one non-empty token.
fn token(found: Found) -> Result<String, CredentialError> {
    let value = found.value.trim();
    if value.is_empty() {
        return Err(CredentialError::Empty {
            key: found.key,
            what: found.what,
        });
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CredentialError::Malformed {
            key: found.key,
            what: found.what,
        });
    }
    Ok(value.to_owned())
}

/// Builds credentials from found values, collecting every problem.
fn assemble(
    ak: Result<Found, CredentialError>,
    sk: Result<Found, CredentialError>,
    session: Option<Result<Found, CredentialError>>,
) -> Result<Credentials, Vec<CredentialError>> {
    let mut errors = Vec::new();
    let mut check = |r: Result<Found, CredentialError>| match r.and_then(token) {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let ak = check(ak);
    let sk = check(sk);
    let session = session.map(&mut check);
    match (ak, sk, session) {
        (Some(access_key_id), Some(sk), None) => Ok(Credentials {
            access_key_id,
            secret_access_key: Secret::new(sk),
            session_token: None,
        }),
        (Some(access_key_id), Some(sk), Some(Some(t))) => Ok(Credentials {
            access_key_id,
            secret_access_key: Secret::new(sk),
            session_token: Some(Secret::new(t)),
        }),
        _ => Err(errors),
    }
}

/// Both halves of a pair of keys (`names`), `None` when neither is given, or the error `half`
/// makes of the one given without the other.
fn both<A, B>(
    (a, b): (Option<A>, Option<B>),
    names: [&'static str; 2],
    half: fn(&'static str, &'static str) -> CredentialError,
) -> Result<Option<(A, B)>, Vec<CredentialError>> {
    match (a, b) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (Some(_), None) => Err(vec![half(names[0], names[1])]),
        (None, Some(_)) => Err(vec![half(names[1], names[0])]),
        (None, None) => Ok(None),
    }
}

/// Finds the credentials: the first configured source wins (see the module doc).
pub fn resolve(
    cfg: &CredentialConfig,
    env: &dyn Environment,
) -> Result<(Credentials, CredentialSource), Vec<CredentialError>> {
    let in_config = |given, missing| CredentialError::HalfConfigured { given, missing };
    // The session token configured in the file goes with a pair configured in the file.
    let config_token = match (&cfg.session_token_file, &cfg.session_token) {
        (Some(path), _) => Some(("session_token_file", read_file("session_token_file", path))),
        (None, Some(t)) => Some(("session_token", Ok(inline("session_token", t.expose())))),
        (None, None) => None,
    };
    let token = |config_token: Option<(&str, _)>| config_token.map(|(_, t)| t);

    // 1. Files named in the config.
    let files = (&cfg.access_key_id_file, &cfg.secret_access_key_file);
    let names = ["access_key_id_file", "secret_access_key_file"];
    if let Some((ak, sk)) = both((files.0.as_ref(), files.1.as_ref()), names, in_config)? {
        let (ak, sk) = (read_file(names[0], ak), read_file(names[1], sk));
        return assemble(ak, sk, token(config_token)).map(|c| (c, CredentialSource::Files));
    }

    // 2. Inline keys.
    let keys = (cfg.access_key_id.as_ref(), cfg.secret_access_key.as_ref());
    let names = ["access_key_id", "secret_access_key"];
    if let Some((ak, sk)) = both(keys, names, in_config)? {
        let (ak, sk) = (Ok(inline(names[0], ak)), Ok(inline(names[1], sk.expose())));
        return assemble(ak, sk, token(config_token)).map(|c| (c, CredentialSource::Inline));
    }
    if let Some((key, _)) = config_token {
        return Err(vec![CredentialError::TokenWithoutPair { key }]);
    }

    let mut searched = vec![
        "config keys credentials.access_key_id_file/secret_access_key_file (not set)".to_owned(),
        "config keys credentials.access_key_id/secret_access_key (not set)".to_owned(),
    ];

    // 3. The environment (empty counts as unset).
    let var = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
    let names = [ENV_ACCESS_KEY, ENV_SECRET_KEY];
    let in_env = |given, missing| CredentialError::HalfEnvironment { given, missing };
    if let Some((ak, sk)) = both((var(names[0]), var(names[1])), names, in_env)? {
        let session = var(ENV_SESSION_TOKEN).map(|t| Ok(from_env(ENV_SESSION_TOKEN, t)));
        let (ak, sk) = (Ok(from_env(names[0], ak)), Ok(from_env(names[1], sk)));
        return assemble(ak, sk, session).map(|c| (c, CredentialSource::Environment));
    }
    searched.push(format!(
        "environment variables {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} (not set)"
    ));

    // 4. The shared file.
    match env.home_dir() {
        None => searched.push(format!("~/{SHARED_FILE} (home directory unknown)")),
        Some(home) => {
            let path = home.join(SHARED_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    return shared_file(&path, &bytes)
                        .map(|c| (c, CredentialSource::SharedFile(path)))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    searched.push(format!("{} (not found)", path.display()))
                }
                Err(error) => return Err(vec![CredentialError::SharedUnreadable { path, error }]),
            }
        }
    }
    Err(vec![CredentialError::NotFound { searched }])
}

/// Reads `[default]` from the INI text of the shared credentials file.
fn shared_file(path: &Path, bytes: &[u8]) -> Result<Credentials, Vec<CredentialError>> {
    let invalid = |problem: String| {
        vec![CredentialError::SharedInvalid {
            path: path.to_owned(),
            problem,
        }]
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(invalid("is not valid UTF-8 text".into()));
    };
    let mut section: Option<&str> = None;
    let mut seen_default = false;
    let mut keys: BTreeMap<&str, &str> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim());
            seen_default |= section == Some("default");
            continue;
        }
        if section != Some("default") {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            keys.entry(k.trim()).or_insert(v.trim());
        }
    }
    if !seen_default {
        return Err(invalid(
            "has no [default] section; add one with `access_key_id = ...` and `secret_access_key = ...`".into(),
        ));
    }
    let what = |key: &str| format!("`{key}` in [default] of {}", path.display());
    let get = |key: &'static str| match keys.get(key) {
        Some(v) => Ok(Found {
            value: (*v).to_owned(),
            what: what(key),
            key: None,
        }),
        None => Err(CredentialError::SharedInvalid {
            path: path.to_owned(),
            problem: format!("has no `{key}` in its [default] section; add `{key} = ...`"),
        }),
    };
    let session = keys
        .contains_key("session_token")
        .then(|| get("session_token"));
    assemble(get("access_key_id"), get("secret_access_key"), session)
}

impl CredentialConfig {
    /// The files named by the `*_file` keys, in key order: what [`CredentialsHandle::watch`]
    /// re-reads. Empty when none is set.
    pub fn files(&self) -> Vec<&Path> {
        [
            &self.access_key_id_file,
            &self.secret_access_key_file,
            &self.session_token_file,
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect()
    }
}

/// How often [`CredentialsHandle::watch`] re-reads the `*_file` credentials unless told
/// otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// What one re-read of the credential files found (see [`CredentialsHandle::reload_now`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// No `*_file` key is configured: there is nothing to re-read.
    NotWatched,
    /// The files hold the credentials in use.
    Unchanged,
    /// The files hold new credentials; requests are signed with them from now on.
    Reloaded,
    /// The files cannot be used; the previous credentials stay. Logged and counted.
    Failed,
    /// The same problem as at the last re-read: not logged or counted again.
    StillFailing,
}

/// What the files hold at one moment: credentials, or why they cannot be used (a message
/// without any secret). Two reads are compared to see a change settle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Observation {
    NotWatched,
    Usable(Credentials),
    Broken(String),
}

/// Where the files are and what went wrong last; the lock serialises re-reads.
#[derive(Debug)]
struct WatchState {
    config: CredentialConfig,
    /// Bumped by [`CredentialsHandle::reconfigure`], so a read of old paths is not applied.
    generation: u64,
    /// The problem last logged, until the files are usable again.
    failing: Option<String>,
}

#[derive(Debug)]
struct Shared {
    current: watch::Sender<Arc<Credentials>>,
    state: Mutex<WatchState>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

/// The credentials in use, shared between the client (which reads them for every request)
/// and the watcher that re-reads the `*_file` keys. Cloning gives another handle to the same
/// credentials. `Debug` shows the masked access key id and the counters, never a secret.
#[derive(Clone)]
pub struct CredentialsHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for CredentialsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsHandle")
            .field("access_key_id", &self.current().masked_access_key_id())
            .field("reloads", &self.reloads())
            .field("reload_failures", &self.reload_failures())
            .finish_non_exhaustive()
    }
}

impl From<Credentials> for CredentialsHandle {
    /// Fixed credentials: nothing to re-read.
    fn from(credentials: Credentials) -> Self {
        CredentialsHandle::new(credentials, CredentialConfig::default())
    }
}

impl CredentialsHandle {
    /// `credentials` as resolved from `config` at start-up; [`CredentialsHandle::watch`] and
    /// [`CredentialsHandle::reload_now`] re-read the files `config` names.
    pub fn new(credentials: Credentials, config: CredentialConfig) -> Self {
        CredentialsHandle {
            shared: Arc::new(Shared {
                current: watch::Sender::new(Arc::new(credentials)),
                state: Mutex::new(WatchState {
                    config,
                    generation: 0,
                    failing: None,
                }),
                reloads: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            }),
        }
    }

    /// The credentials to sign with now. Cheap (an `Arc` clone); take it once per request
    /// and use that for the signature and the token header alike.
    pub fn current(&self) -> Arc<Credentials> {
        self.shared.current.borrow().clone()
    }

    /// Whether the config names any `*_file` key (else [`CredentialsHandle::watch`] returns at
    /// once).
    pub fn watches_files(&self) -> bool {
        !self.state().config.files().is_empty()
    }

    /// The files named by the `*_file` keys in force (what is re-read), in key order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.state()
            .config
            .files()
            .into_iter()
            .map(Path::to_path_buf)
            .collect()
    }

    /// Rotations taken from the files since start: the `outcome="success"` count.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Changes of the files that left them unusable (the old credentials were kept), each
    /// broken state counted once: the `outcome="failure"` count.
    pub fn reload_failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// Puts credentials from a newly loaded config in use, with the files that config names
    /// (for a config reload). Not counted as a rotation.
    pub fn reconfigure(&self, credentials: Credentials, config: CredentialConfig) {
        let mut state = self.state();
        state.config = config;
        state.generation += 1;
        state.failing = None;
        self.shared.current.send_replace(Arc::new(credentials));
    }

    /// Re-reads the files now and applies what they hold (at once, without waiting for a
    /// second read to agree): for a manual trigger such as a config reload or an
    /// authentication failure.
    pub fn reload_now(&self) -> ReloadOutcome {
        let (generation, seen) = self.observe();
        self.apply(generation, seen)
    }

    /// Re-reads the files every `interval` until `shutdown`, swapping in new credentials when
    /// they change (see the module documentation). A change is applied once a second read,
    /// `interval / 5` later, agrees with the first. Returns at once when no `*_file` key is
    /// configured. The reads are synchronous: three files of a few bytes.
    pub async fn watch(self, interval: Duration, shutdown: CancellationToken) {
        if !self.watches_files() {
            return;
        }
        let settle = interval / 5;
        let pause = |d: Duration| {
            let stop = shutdown.clone();
            async move {
                tokio::select! {
                    () = stop.cancelled() => false,
                    () = tokio::time::sleep(d) => true,
                }
            }
        };
        loop {
            if !pause(interval).await {
                return;
            }
            let (generation, first) = self.observe();
            if !self.differs(&first) {
                continue;
            }
            if !pause(settle).await {
                return;
            }
            let (again, second) = self.observe();
            if again == generation && second == first {
                self.apply(generation, second);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, WatchState> {
        // A poisoned lock only means a panic elsewhere; the state is still usable.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the files (outside the lock) and says what they hold.
    fn observe(&self) -> (u64, Observation) {
        let (generation, config) = {
            let state = self.state();
            (state.generation, state.config.clone())
        };
        if config.files().is_empty() {
            return (generation, Observation::NotWatched);
        }
        // With a `*_file` key set, the chain never looks further than the config.
        let seen = match resolve(&config, &ProcessEnv) {
            Ok((credentials, _)) => Observation::Usable(credentials),
            Err(errors) => Observation::Broken(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        };
        (generation, seen)
    }

    /// Whether applying `seen` would change anything (credentials, or the failure state).
    fn differs(&self, seen: &Observation) -> bool {
        match seen {
            Observation::NotWatched => false,
            Observation::Usable(c) => *c != *self.current() || self.state().failing.is_some(),
            Observation::Broken(problem) => self.state().failing.as_ref() != Some(problem),
        }
    }

    /// Takes what the files hold: swaps, or keeps the old credentials and reports why.
    fn apply(&self, generation: u64, seen: Observation) -> ReloadOutcome {
        let mut state = self.state();
        if state.generation != generation {
            // Read from the paths of a config replaced since; the next read sees the new ones.
            return ReloadOutcome::Unchanged;
        }
        let files = state
            .config
            .files()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match seen {
            Observation::NotWatched => ReloadOutcome::NotWatched,
            Observation::Usable(credentials) if credentials == *self.current() => {
                if state.failing.take().is_some() {
                    tracing::info!(
                        files = %files,
                        "the credential files are usable again and hold the credentials in use"
                    );
                }
                ReloadOutcome::Unchanged
            }
            Observation::Usable(credentials) => {
                state.failing = None;
                tracing::info!(
                    files = %files,
                    access_key_id = %credentials.masked_access_key_id(),
                    session_token = credentials.session_token.is_some(),
                    "credentials reloaded from their files; requests are signed with the new ones from now on"
                );
                self.shared.current.send_replace(Arc::new(credentials));
                self.shared.reloads.fetch_add(1, Ordering::Relaxed);
                ReloadOutcome::Reloaded
            }
            Observation::Broken(problem) if state.failing.as_ref() == Some(&problem) => {
                ReloadOutcome::StillFailing
            }
            Observation::Broken(problem) => {
                tracing::warn!(
                    files = %files,
                    error = %problem,
                    "the credential files changed and cannot be used; the previous credentials stay in use. \
                     Fix: write one non-empty token (no spaces) to each file, e.g. by correcting the mounted Secret; \
                     the files are re-read every few seconds"
                );
                state.failing = Some(problem);
                self.shared.failures.fetch_add(1, Ordering::Relaxed);
                ReloadOutcome::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::MapEnv;

    const AK: &str = "AKLTexampleaccesskeyid1234";
    const SK: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("volc-cred-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn messages(errs: &[CredentialError]) -> String {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn masks_access_key_id() {
        let c = Credentials {
            access_key_id: AK.into(),
            secret_access_key: Secret::new(SK),
            session_token: None,
        };
        assert_eq!(c.masked_access_key_id(), "AKLT****1234");
        let short = Credentials {
            access_key_id: "AK1".into(),
            ..c.clone()
        };
        assert_eq!(short.masked_access_key_id(), "****");
        assert_eq!(format!("{:?}", c.secret_access_key), "Secret(<redacted>)");
        assert!(!format!("{c:?}").contains(SK));
    }

    #[test]
    fn chain_order_files_then_inline_then_env_then_shared_file() {
        let dir = temp_dir("order");
        std::fs::write(dir.join("ak"), "AKLTfromfile0000\n").unwrap();
        std::fs::write(dir.join("sk"), "  secretfromfile \n").unwrap();
        std::fs::create_dir_all(dir.join(".volc")).unwrap();
        std::fs::write(
            dir.join(".volc/credentials"),
            "[other]\naccess_key_id = nope\n[default]\n; comment\naccess_key_id = AKLTshared0000\nsecret_access_key = sharedsecret\n",
        )
        .unwrap();
        let env = MapEnv::new()
            .with_var(ENV_ACCESS_KEY, "AKLTenv0000")
            .with_var(ENV_SECRET_KEY, "envsecret")
            .with_home(&dir);
        let mut cfg = CredentialConfig {
            access_key_id_file: Some(dir.join("ak")),
            secret_access_key_file: Some(dir.join("sk")),
            access_key_id: Some("AKLTinline0000".into()),
            secret_access_key: Some(Secret::new("inlinesecret")),
            ..Default::default()
        };

        let (c, src) = resolve(&cfg, &env).unwrap();
        assert_eq!(src, CredentialSource::Files);
        assert_eq!(c.access_key_id, "AKLTfromfile0000");
        assert_eq!(c.secret_access_key.expose(), "secretfromfile");

        cfg.access_key_id_file = None;
        cfg.secret_access_key_file = None;
        let (c, src) = resolve(&cfg, &env).unwrap();
        assert_eq!(src, CredentialSource::Inline);
        assert_eq!(c.access_key_id, "AKLTinline0000");

        cfg.access_key_id = None;
        cfg.secret_access_key = None;
        let (c, src) = resolve(&cfg, &env).unwrap();
        assert_eq!(src, CredentialSource::Environment);
        assert_eq!(c.access_key_id, "AKLTenv0000");
        assert_eq!(c.secret_access_key.expose(), "envsecret");
        assert!(c.session_token.is_none());

        let env = MapEnv::new().with_home(&dir);
        let (c, src) = resolve(&cfg, &env).unwrap();
        assert_eq!(
            src,
            CredentialSource::SharedFile(dir.join(".volc/credentials"))
        );
        assert_eq!(c.access_key_id, "AKLTshared0000");
        assert_eq!(c.secret_access_key.expose(), "sharedsecret");

        let errs = resolve(&cfg, &MapEnv::new().with_home(dir.join("nohome"))).unwrap_err();
        let msg = messages(&errs);
        assert!(msg.starts_with("no credentials found; searched:"), "{msg}");
        assert!(
            msg.contains("nohome/.volc/credentials (not found)"),
            "{msg}"
        );
        assert!(
            msg.contains("VOLC_ACCESSKEY/VOLC_SECRETKEY (not set)"),
            "{msg}"
        );
        let errs = resolve(&cfg, &MapEnv::new()).unwrap_err();
        assert!(messages(&errs).contains("home directory unknown"));
    }

    #[test]
    fn session_tokens_from_each_source() {
        let dir = temp_dir("token");
        std::fs::write(dir.join("tok"), "tokenfromfile\n").unwrap();
        let cfg = CredentialConfig {
            access_key_id: Some(AK.into()),
            secret_access_key: Some(Secret::new(SK)),
            session_token_file: Some(dir.join("tok")),
            ..Default::default()
        };
        let (c, _) = resolve(&cfg, &MapEnv::new()).unwrap();
        assert_eq!(c.session_token.unwrap().expose(), "tokenfromfile");

        let env = MapEnv::new()
            .with_var(ENV_ACCESS_KEY, AK)
            .with_var(ENV_SECRET_KEY, SK)
            .with_var(ENV_SESSION_TOKEN, "envtoken");
        let (c, _) = resolve(&CredentialConfig::default(), &env).unwrap();
        assert_eq!(c.session_token.unwrap().expose(), "envtoken");

        let only_token = CredentialConfig {
            session_token: Some(Secret::new("t")),
            ..Default::default()
        };
        let errs = resolve(&only_token, &env).unwrap_err();
        assert_eq!(errs[0].config_key(), Some("session_token"));
    }

    #[test]
    fn half_pairs_are_problems() {
        let cfg = CredentialConfig {
            access_key_id: Some(AK.into()),
            ..Default::default()
        };
        let errs = resolve(&cfg, &MapEnv::new()).unwrap_err();
        assert_eq!(
            messages(&errs),
            "`credentials.access_key_id` is set but `credentials.secret_access_key` is not; set both, or remove `access_key_id`"
        );
        assert_eq!(errs[0].config_key(), Some("access_key_id"));

        let env = MapEnv::new().with_var(ENV_SECRET_KEY, SK);
        let errs = resolve(&CredentialConfig::default(), &env).unwrap_err();
        assert_eq!(
            messages(&errs),
            "environment variable VOLC_SECRETKEY is set but VOLC_ACCESSKEY is not; export both, or unset VOLC_SECRETKEY"
        );
    }

    #[test]
    fn unreadable_and_empty_files_are_named() {
        let dir = temp_dir("unreadable");
        std::fs::write(dir.join("sk"), format!("{SK}\n")).unwrap();
        std::fs::write(dir.join("empty"), "\n  \n").unwrap();
        let cfg = CredentialConfig {
            access_key_id_file: Some(dir.join("missing")),
            secret_access_key_file: Some(dir.join("sk")),
            ..Default::default()
        };
        let errs = resolve(&cfg, &MapEnv::new()).unwrap_err();
        let msg = messages(&errs);
        assert!(
            msg.starts_with(&format!(
                "cannot read the file {} named by `credentials.access_key_id_file`: No such file",
                dir.join("missing").display()
            )),
            "{msg}"
        );
        let cfg = CredentialConfig {
            access_key_id_file: Some(dir.join("empty")),
            secret_access_key_file: Some(dir.join("sk")),
            ..Default::default()
        };
        let errs = resolve(&cfg, &MapEnv::new()).unwrap_err();
        assert_eq!(errs[0].config_key(), Some("access_key_id_file"));
        assert!(messages(&errs).contains("is empty"));
        assert!(!messages(&errs).contains(SK));
    }

    #[test]
    fn shared_file_problems() {
        let dir = temp_dir("shared");
        std::fs::create_dir_all(dir.join(".volc")).unwrap();
        let path = dir.join(".volc/credentials");
        let env = MapEnv::new().with_home(&dir);
        std::fs::write(&path, "[prod]\naccess_key_id = x\n").unwrap();
        let msg = messages(&resolve(&CredentialConfig::default(), &env).unwrap_err());
        assert!(msg.contains("has no [default] section"), "{msg}");
        std::fs::write(&path, format!("[default]\nsecret_access_key = {SK}\n")).unwrap();
        let msg = messages(&resolve(&CredentialConfig::default(), &env).unwrap_err());
        assert!(msg.contains("has no `access_key_id`"), "{msg}");
        assert!(!msg.contains(SK));
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let msg = messages(&resolve(&CredentialConfig::default(), &env).unwrap_err());
        assert!(msg.contains("not valid UTF-8"), "{msg}");
        std::fs::write(
            &path,
            format!(
                "[default]\naccess_key_id = {AK}\nsecret_access_key = {SK}\nsession_token = tok\n"
            ),
        )
        .unwrap();
        let (c, _) = resolve(&CredentialConfig::default(), &env).unwrap();
        assert_eq!(c.session_token.unwrap().expose(), "tok");
    }

    #[test]
    fn malformed_secret_is_reported_without_its_value() {
        let cfg = CredentialConfig {
            access_key_id: Some(AK.into()),
            secret_access_key: Some(Secret::new("two words")),
            ..Default::default()
        };
        let errs = resolve(&cfg, &MapEnv::new()).unwrap_err();
        let msg = messages(&errs);
        assert_eq!(
            msg,
            "`credentials.secret_access_key` contains spaces or control characters; it must be a single token"
        );
        assert_eq!(errs[0].config_key(), Some("secret_access_key"));
    }

    /// A handle on `ak`/`sk`/`tok` files in a fresh directory holding the given values.
    fn rotating(name: &str, token: &str) -> (PathBuf, CredentialsHandle) {
        let dir = temp_dir(name);
        std::fs::write(dir.join("ak"), format!("{AK}\n")).unwrap();
        std::fs::write(dir.join("sk"), format!("{SK}\n")).unwrap();
        std::fs::write(dir.join("tok"), token).unwrap();
        let cfg = CredentialConfig {
            access_key_id_file: Some(dir.join("ak")),
            secret_access_key_file: Some(dir.join("sk")),
            session_token_file: Some(dir.join("tok")),
            ..Default::default()
        };
        let (creds, _) = resolve(&cfg, &MapEnv::new()).unwrap();
        (dir, CredentialsHandle::new(creds, cfg))
    }

    fn token_of(h: &CredentialsHandle) -> String {
        let c = h.current();
        c.session_token.as_ref().unwrap().expose().to_owned()
    }

    #[test]
    fn reload_now_takes_new_values_keeps_old_ones_when_broken_and_counts_each_state_once() {
        let (dir, h) = rotating("reload-now", "token-1\n");
        assert!(h.watches_files());
        assert_eq!(h.reload_now(), ReloadOutcome::Unchanged);
        assert_eq!(h.reload_now(), ReloadOutcome::Unchanged);
        assert_eq!((h.reloads(), h.reload_failures()), (0, 0));

        std::fs::write(dir.join("tok"), "token-2").unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Reloaded);
        assert_eq!(token_of(&h), "token-2");
        assert_eq!(h.current().access_key_id, AK);
        assert_eq!((h.reloads(), h.reload_failures()), (1, 0));

        std::fs::write(dir.join("tok"), " \n").unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Failed);
        assert_eq!(h.reload_now(), ReloadOutcome::StillFailing);
        assert_eq!(token_of(&h), "token-2", "the old token stays in use");
        assert_eq!((h.reloads(), h.reload_failures()), (1, 1));

        // Another problem is another failure.
        std::fs::remove_file(dir.join("tok")).unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Failed);
        assert_eq!((h.reloads(), h.reload_failures()), (1, 2));

        // Fixed with the value in use: nothing to swap, and no longer failing.
        std::fs::write(dir.join("tok"), "token-2\n").unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Unchanged);
        std::fs::write(dir.join("tok"), "").unwrap();
        assert_eq!(
            h.reload_now(),
            ReloadOutcome::Failed,
            "broken again: counted again"
        );
        std::fs::write(dir.join("tok"), "token-3").unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Reloaded);
        assert_eq!(token_of(&h), "token-3");
        assert_eq!((h.reloads(), h.reload_failures()), (2, 3));
    }

    #[test]
    fn a_receiver_sees_each_rotation() {
        let (dir, h) = rotating("subscribe", "token-1");
        let mut rx = h.shared.current.subscribe();
        assert!(!rx.has_changed().unwrap());
        std::fs::write(dir.join("tok"), "token-2").unwrap();
        h.reload_now();
        assert!(rx.has_changed().unwrap());
        let seen = rx.borrow_and_update().clone();
        assert_eq!(seen.session_token.as_ref().unwrap().expose(), "token-2");
    }

    #[test]
    fn fixed_credentials_are_not_watched() {
        let h = CredentialsHandle::from(Credentials {
            access_key_id: AK.into(),
            secret_access_key: Secret::new(SK),
            session_token: Some(Secret::new("tok")),
        });
        assert!(!h.watches_files());
        assert_eq!(h.reload_now(), ReloadOutcome::NotWatched);
        let debug = format!("{h:?}");
        assert!(debug.contains("AKLT****1234"), "{debug}");
        assert!(!debug.contains(SK) && !debug.contains("tok\""), "{debug}");
    }

    #[test]
    fn inline_pair_with_a_token_file_re_reads_the_token_only() {
        let dir = temp_dir("inline-pair");
        std::fs::write(dir.join("tok"), "token-1").unwrap();
        let cfg = CredentialConfig {
            access_key_id: Some(AK.into()),
            secret_access_key: Some(Secret::new(SK)),
            session_token_file: Some(dir.join("tok")),
            ..Default::default()
        };
        assert_eq!(cfg.files(), vec![dir.join("tok").as_path()]);
        let (creds, _) = resolve(&cfg, &MapEnv::new()).unwrap();
        let h = CredentialsHandle::new(creds, cfg);
        std::fs::write(dir.join("tok"), "token-2").unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Reloaded);
        assert_eq!(token_of(&h), "token-2");
        assert_eq!(h.current().secret_access_key.expose(), SK);
    }

    #[test]
    fn reconfigure_switches_files_and_values_without_counting() {
        let (_, h) = rotating("reconfigure-a", "token-a");
        let (other, fresh) = rotating("reconfigure-b", "token-b");
        let cfg = CredentialConfig {
            access_key_id_file: Some(other.join("ak")),
            secret_access_key_file: Some(other.join("sk")),
            session_token_file: Some(other.join("tok")),
            ..Default::default()
        };
        h.reconfigure((*fresh.current()).clone(), cfg);
        assert_eq!(token_of(&h), "token-b");
        std::fs::write(other.join("tok"), "token-c").unwrap();
        assert_eq!(h.reload_now(), ReloadOutcome::Reloaded);
        assert_eq!(token_of(&h), "token-c");
        assert_eq!(h.reloads(), 1);
    }
}
