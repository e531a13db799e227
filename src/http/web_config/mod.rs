//! `--web.config.file`: TLS, mTLS and basic authentication for the HTTP endpoint, in the
//! Prometheus exporter-toolkit format, so the same file works for this exporter and for
//! node_exporter or Prometheus itself.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # relative paths are relative to this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   http2: true
//!   headers:
//!     X-Frame-Options: deny
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hash, e.g. `htpasswd -nBC 10 "" | tr -d ':\n'`
//! ```
//!
//! [`WebConfig::load`] reads and checks the whole file, reading the certificate files too,
//! and reports every problem with its line and what to write instead. The server then:
//!
//! 1. wraps each accepted connection with [`WebConfig::accept`] (TLS when configured; the
//!    certificate files are re-read when they change, see [`tls`]);
//! 2. answers each request with [`Unauthorized::response`] when
//!    [`WebConfig::authorize_async`] refuses it;
//! 3. adds [`WebConfig::response_headers`] to every answer.
//!
//! What rustls cannot do the way Go's `crypto/tls` does is accepted and said once as a
//! warning ([`WebConfig::warnings`]): TLS 1.0/1.1, CBC and RSA-key-exchange suites, P-521.

pub mod auth;
pub mod tls;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use hyper::HeaderMap;
use rustls::crypto::ring::{cipher_suite, kx_group};
use rustls::crypto::SupportedKxGroup;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use serde::Deserialize;
use tokio::net::TcpStream;

use crate::model::{Pos, Problem};
pub use auth::{BasicAuth, Caller, Unauthorized};
pub use tls::{ClientAuth, MaybeTlsStream, TlsReloader};

/// How often, at most, the certificate files are looked at for changes by default.
pub const DEFAULT_TLS_RELOAD_CHECK: Duration = Duration::from_secs(5);

/// How long a client may take to finish the TLS handshake in [`WebConfig::accept`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The headers `http_server_config.headers` may set, with their allowed values (empty: any),
/// as in the toolkit.
const CONFIGURABLE_HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Why a web config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file itself cannot be read.
    #[error("cannot read the web config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file was read; these are all its problems.
    #[error("{}", invalid_text(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, in file order where known.
        problems: Vec<Problem>,
    },
}

fn invalid_text(path: &Path, problems: &[Problem]) -> String {
    let mut text = format!(
        "the web config file {} has {} problem{}:",
        path.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for problem in problems {
        text.push_str(&format!("\n  {problem}"));
    }
    text
}

/// Options the command line does not set; tests shorten the check interval.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// See [`DEFAULT_TLS_RELOAD_CHECK`].
    pub tls_reload_check: Duration,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            tls_reload_check: DEFAULT_TLS_RELOAD_CHECK,
        }
    }
}

/// A checked web config. Cheap to clone; clones share the TLS state and the auth cache.
#[derive(Debug, Clone)]
pub struct WebConfig {
    tls: Option<Arc<TlsReloader>>,
    auth: Option<Arc<BasicAuth>>,
    http2: bool,
    headers: HeaderMap,
    warnings: Vec<String>,
}

impl Default for WebConfig {
    /// No `--web.config.file`: plain HTTP, no authentication, HTTP/2 allowed.
    fn default() -> WebConfig {
        WebConfig {
            tls: None,
            auth: None,
            http2: true,
            headers: HeaderMap::new(),
            warnings: Vec::new(),
        }
    }
}

impl WebConfig {
    /// Reads and checks `path` and the files it names, with default options. Warnings are
    /// logged and kept in [`WebConfig::warnings`].
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        WebConfig::load_with(path, &LoadOptions::default())
    }

    /// [`WebConfig::load`] with explicit options.
    pub fn load_with(path: &Path, options: &LoadOptions) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = Checker::new(&text, path)
            .check(base, options)
            .map_err(|problems| {
                let path = path.to_path_buf();
                WebConfigError::Invalid { path, problems }
            })?;
        for warning in &config.warnings {
            tracing::warn!(file = %path.display(), "{warning}");
        }
        Ok(config)
    }

    /// Whether connections are TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls.is_some()
    }

    /// The reloading TLS state, when TLS is on (for its reload counters).
    pub fn tls(&self) -> Option<&Arc<TlsReloader>> {
        self.tls.as_ref()
    }

    /// Wraps an accepted connection: the TLS handshake (bounded by [`HANDSHAKE_TIMEOUT`]) when
    /// TLS is on, the stream as it is otherwise. Call it in the connection's own task, so a
    /// slow client does not hold up accepting others.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<MaybeTlsStream> {
        let Some(tls) = &self.tls else {
            return Ok(MaybeTlsStream::Plain(stream));
        };
        let acceptor = tls.acceptor();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Ok(MaybeTlsStream::Tls(Box::new(stream))),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake did not finish in time",
            )),
        }
    }

    /// `http_server_config.http2` (default true): whether `h2` is offered by ALPN.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// `http_server_config.headers`, to add to every answer.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Whether `basic_auth_users` is set (every request then needs credentials).
    pub fn auth_required(&self) -> bool {
        self.auth.is_some()
    }

    /// The configured users, when basic auth is on.
    pub fn basic_auth(&self) -> Option<&Arc<BasicAuth>> {
        self.auth.as_ref()
    }

    /// Checks a request's `Authorization` header (`Ok` when no users are configured): bcrypt
    /// runs on the blocking pool, a few at a time, `caller` (one per connection) queued behind clients that have not failed a login
    /// when it has, and its repeated failures answered later; see [`auth`].
    pub async fn authorize_async(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
    ) -> Result<(), Unauthorized> {
        match &self.auth {
            None => Ok(()),
            Some(auth) => auth.check_async(headers, caller).await,
        }
    }

    /// Things the file asks for that rustls does not do, and what happens instead.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// The web config in force, shared by the server (read for every connection and request) and
/// the reload (which swaps in a newly loaded one). Cloning gives another handle to the same cell.
#[derive(Debug, Clone, Default)]
pub struct SharedWebConfig {
    current: Arc<std::sync::RwLock<WebConfig>>,
}

impl SharedWebConfig {
    /// A cell holding `config`.
    pub fn new(config: WebConfig) -> SharedWebConfig {
        SharedWebConfig {
            current: Arc::new(std::sync::RwLock::new(config)),
        }
    }

    /// The config in force now (a cheap clone: TLS state and users are shared).
    pub fn get(&self) -> WebConfig {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `config` in force for the next connection and the next request.
    pub fn set(&self, config: WebConfig) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }
}

// ----- step one: the file as written -----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// The toolkit's rate limiter: refused with a pointer to `--web.max-requests`.
    rate_limit: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    // Toolkit keys this exporter refuses with a reason rather than "unknown field". The
    // values are never shown (`key` is a private key).
    cert: Option<serde_yaml::Value>,
    key: Option<serde_yaml::Value>,
    client_ca: Option<serde_yaml::Value>,
    client_allowed_sans: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

// ----- step two: checks and conversion -----

struct Checker<'a> {
    text: &'a str,
    /// The file, as problems name it.
    file: String,
    problems: Vec<Problem>,
    warnings: Vec<String>,
}

impl<'a> Checker<'a> {
    fn new(text: &'a str, file: &Path) -> Checker<'a> {
        Checker {
            text,
            file: file.display().to_string(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn problem(&mut self, path: &[&str], message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.clone(),
            pos: locate(self.text, path).map(|(line, col)| Pos::new(line, col)),
            message: format!("{}: {}", path.join("."), message.into()),
        });
    }

    fn check(mut self, base: &Path, options: &LoadOptions) -> Result<WebConfig, Vec<Problem>> {
        let raw = match parse(self.text) {
            Ok(raw) => raw,
            Err(problem) => {
                return Err(vec![Problem {
                    file: self.file,
                    ..problem
                }])
            }
        };
        let mut config = WebConfig::default();

        if raw.rate_limit.is_some() {
            self.problem(
                &["rate_limit"],
                "is not supported by this exporter; remove it and cap concurrent requests with --web.max-requests",
            );
        }
        if let Some(http) = raw.http_server_config {
            config.http2 = http.http2.unwrap_or(true);
            config.headers = self.headers(http.headers.unwrap_or_default());
        }
        if let Some(users) = raw.basic_auth_users {
            config.auth = self.users(users).map(Arc::new);
        }
        let settings = raw
            .tls_server_config
            .and_then(|tls| self.tls(tls, base, config.http2));

        if !self.problems.is_empty() {
            return Err(self.sorted_problems());
        }
        if let Some(settings) = settings {
            match TlsReloader::new(settings, options.tls_reload_check) {
                Ok(reloader) => config.tls = Some(Arc::new(reloader)),
                Err(problems) => {
                    for (key, message) in problems {
                        self.problem(&["tls_server_config", key], message);
                    }
                    return Err(self.sorted_problems());
                }
            }
        }
        config.warnings = self.warnings;
        Ok(config)
    }

    fn sorted_problems(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| (p.pos.is_none(), p.pos));
        self.problems
    }

    fn headers(&mut self, headers: BTreeMap<String, String>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let path = ["http_server_config", "headers", name.as_str()];
            let Some((canonical, allowed)) = CONFIGURABLE_HEADERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = CONFIGURABLE_HEADERS.iter().map(|(n, _)| *n).collect();
                self.problem(
                    &path,
                    format!(
                        "this header cannot be configured; the ones that can are {}",
                        names.join(", ")
                    ),
                );
                continue;
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                self.problem(
                    &path,
                    format!("{value:?} is not a valid value; write one of {allowed:?}"),
                );
                continue;
            }
            match HeaderValue::from_str(&value) {
                Ok(header_value) => {
                    map.insert(HeaderName::from_static(lowercase(canonical)), header_value);
                }
                Err(_) => self.problem(
                    &path,
                    "the value contains characters a header cannot carry (control characters or line breaks)",
                ),
            }
        }
        map
    }

    fn users(&mut self, users: BTreeMap<String, String>) -> Option<BasicAuth> {
        if users.is_empty() {
            return None;
        }
        let before = self.problems.len();
        for (user, hash) in &users {
            let path = ["basic_auth_users", user.as_str()];
            if user.contains(':') {
                self.problem(
                    &path,
                    "a user name cannot contain `:` (basic authentication splits user and password there); rename the user",
                );
            }
            // The hash is not shown: it is not secret, but it is not useful in a log either.
            if auth::hash_cost(hash).is_err() {
                self.problem(
                    &path,
                    "is not a bcrypt hash (`$2a$`, `$2b$` or `$2y$`, a cost and 53 characters); write the hash of the password, e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`, never the password itself",
                );
            }
        }
        if self.problems.len() > before {
            return None;
        }
        match BasicAuth::new(users) {
            Ok(auth) => Some(auth),
            Err(err) => {
                self.problem(
                    &["basic_auth_users"],
                    format!("the users cannot be set up: {err}"),
                );
                None
            }
        }
    }

    fn tls(&mut self, raw: RawTls, base: &Path, http2: bool) -> Option<tls::TlsSettings> {
        let section = "tls_server_config";
        self.inline_tls_material(&raw);

        let path_of = |value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| base.join(v))
        };
        let cert_file = path_of(&raw.cert_file);
        let key_file = path_of(&raw.key_file);
        let client_ca_file = path_of(&raw.client_ca_file);
        let auth_name = raw.client_auth_type.clone().unwrap_or_default();
        // As in the toolkit: a section that names no file and no client auth means plain HTTP.
        if cert_file.is_none()
            && key_file.is_none()
            && client_ca_file.is_none()
            && auth_name.is_empty()
        {
            return None;
        }
        if cert_file.is_none() {
            self.problem(
                &[section, "cert_file"],
                "is missing: name the PEM file with the server certificate (and its chain), or remove tls_server_config to serve plain HTTP",
            );
        }
        if key_file.is_none() {
            self.problem(
                &[section, "key_file"],
                "is missing: name the PEM file with the server certificate's private key, or remove tls_server_config to serve plain HTTP",
            );
        }
        let client_auth = self.client_auth(&auth_name, client_ca_file.is_some());

        let versions = self.versions(raw.min_version.as_deref(), raw.max_version.as_deref());
        let offers_tls12 = versions
            .iter()
            .any(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
        let tls12_suites = raw
            .cipher_suites
            .filter(|names| !names.is_empty())
            .and_then(|names| self.cipher_suites(&names, offers_tls12));
        let kx_groups = raw
            .curve_preferences
            .filter(|names| !names.is_empty())
            .and_then(|names| self.curves(&names));
        let alpn = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Some(tls::TlsSettings {
            cert_file: cert_file?,
            key_file: key_file?,
            client_ca_file,
            client_auth: client_auth?,
            versions,
            tls12_suites,
            kx_groups,
            prefer_server_order: raw.prefer_server_cipher_suites.unwrap_or(true),
            alpn,
        })
    }

    /// Certificates, keys and CAs written inline, which the toolkit accepts and this exporter
    /// does not.
    fn inline_tls_material(&mut self, raw: &RawTls) {
        let section = "tls_server_config";
        for (present, key, why) in [
            (
                raw.cert.is_some(),
                "cert",
                "write the certificate to a file and name it in cert_file",
            ),
            (
                raw.key.is_some(),
                "key",
                "write the key to a file (mode 0600) and name it in key_file",
            ),
            (
                raw.client_ca.is_some(),
                "client_ca",
                "write the CA certificates to a file and name it in client_ca_file",
            ),
            (
                raw.client_allowed_sans.is_some(),
                "client_allowed_sans",
                "remove it and sign the allowed clients' certificates with a dedicated client CA",
            ),
        ] {
            if present {
                self.problem(
                    &[section, key],
                    format!("is not supported by this exporter; {why}"),
                );
            }
        }
    }

    /// `client_auth_type`, checked against whether `client_ca_file` is set.
    fn client_auth(&mut self, auth_name: &str, has_client_ca: bool) -> Option<ClientAuth> {
        let section = "tls_server_config";
        let client_auth = ClientAuth::parse(auth_name);
        match client_auth {
            None => self.problem(
                &[section, "client_auth_type"],
                format!("{auth_name:?} is not a client auth type; write one of {}", ClientAuth::NAMES.join(", ")),
            ),
            Some(ClientAuth::NoClientCert) if has_client_ca => self.problem(
                &[section, "client_ca_file"],
                "is set but client_auth_type is NoClientCert, so it would not be used; set client_auth_type to RequireAndVerifyClientCert (or VerifyClientCertIfGiven), or remove client_ca_file",
            ),
            Some(auth) if auth.verifies() && !has_client_ca => self.problem(
                &[section, "client_auth_type"],
                format!("{auth_name} verifies client certificates against a CA, so client_ca_file must name the CA's PEM file"),
            ),
            Some(_) => {}
        }
        client_auth
    }

    fn versions(
        &mut self,
        min: Option<&str>,
        max: Option<&str>,
    ) -> Vec<&'static SupportedProtocolVersion> {
        const VALID: &str = "TLS10, TLS11, TLS12 or TLS13";
        let rank = |name: &str| match name {
            "TLS10" => Some(10),
            "TLS11" => Some(11),
            "TLS12" => Some(12),
            "TLS13" => Some(13),
            _ => None,
        };
        let section = "tls_server_config";
        let min_rank = match min.map(|m| (m, rank(m))) {
            None => 12,
            Some((_, Some(r))) => r,
            Some((name, None)) => {
                self.problem(
                    &[section, "min_version"],
                    format!("{name:?} is not a TLS version; write {VALID}"),
                );
                12
            }
        };
        let max_rank = match max.map(|m| (m, rank(m))) {
            None => 13,
            Some((_, Some(r))) => r,
            Some((name, None)) => {
                self.problem(
                    &[section, "max_version"],
                    format!("{name:?} is not a TLS version; write {VALID}"),
                );
                13
            }
        };
        if min_rank < 12 {
            self.warnings.push(format!(
                "tls_server_config.min_version TLS{min_rank}: rustls implements only TLS 1.2 and 1.3, so the minimum is TLS12"
            ));
        }
        if max_rank < 12 {
            self.problem(
                &[section, "max_version"],
                "rustls implements only TLS 1.2 and 1.3; write TLS12 or TLS13",
            );
        } else if min_rank > max_rank {
            self.problem(
                &[section, "min_version"],
                "is above max_version; lower min_version or raise max_version",
            );
        }
        let mut versions = Vec::new();
        if min_rank <= 12 && max_rank >= 12 {
            versions.push(&rustls::version::TLS12);
        }
        if max_rank >= 13 {
            versions.push(&rustls::version::TLS13);
        }
        versions
    }

    fn cipher_suites(
        &mut self,
        names: &[String],
        offers_tls12: bool,
    ) -> Option<Vec<SupportedCipherSuite>> {
        let path = ["tls_server_config", "cipher_suites"];
        let mut chosen = Vec::new();
        let mut unsupported = Vec::new();
        for name in names {
            match go_cipher_suite(name) {
                GoSuite::Rustls(suite) => {
                    if !chosen.contains(&suite) {
                        chosen.push(suite);
                    }
                }
                GoSuite::Tls13 => self.warnings.push(format!(
                    "tls_server_config.cipher_suites: {name} is a TLS 1.3 suite; TLS 1.3 suites are not configurable (as in Go), all are offered"
                )),
                GoSuite::NotInRustls => unsupported.push(name.as_str()),
                GoSuite::Unknown => self.problem(
                    &path,
                    format!("{name:?} is not a cipher suite name; use Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
                ),
            }
        }
        if !unsupported.is_empty() {
            self.warnings.push(format!(
                "tls_server_config.cipher_suites: rustls does not implement {} (only ECDHE with AES-GCM or ChaCha20-Poly1305); not offered",
                unsupported.join(", ")
            ));
        }
        if chosen.is_empty() && offers_tls12 && !unsupported.is_empty() {
            self.problem(
                &path,
                "none of these TLS 1.2 suites is implemented by rustls; add one of the ECDHE AES-GCM or ChaCha20-Poly1305 suites, or set min_version: TLS13",
            );
        }
        if !offers_tls12 && !chosen.is_empty() {
            self.warnings.push(
                "tls_server_config.cipher_suites apply to TLS 1.2 only, which min_version excludes; ignored".into(),
            );
        }
        (!chosen.is_empty()).then_some(chosen)
    }

    fn curves(&mut self, names: &[String]) -> Option<Vec<&'static dyn SupportedKxGroup>> {
        let path = ["tls_server_config", "curve_preferences"];
        let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
        for name in names {
            let group = match name.as_str() {
                "X25519" => kx_group::X25519,
                "CurveP256" => kx_group::SECP256R1,
                "CurveP384" => kx_group::SECP384R1,
                "CurveP521" => {
                    self.warnings.push(
                        "tls_server_config.curve_preferences: rustls does not implement CurveP521; not offered".into(),
                    );
                    continue;
                }
                _ => {
                    self.problem(
                        &path,
                        format!("{name:?} is not a curve; write X25519, CurveP256, CurveP384 or CurveP521"),
                    );
                    continue;
                }
            };
            if !chosen.iter().any(|g| g.name() == group.name()) {
                chosen.push(group);
            }
        }
        if chosen.is_empty() && names.iter().all(|n| n == "CurveP521") {
            self.problem(
                &path,
                "rustls implements none of these curves; add X25519, CurveP256 or CurveP384",
            );
        }
        (!chosen.is_empty()).then_some(chosen)
    }
}

/// Step one: YAML into the raw structs, an empty file being the defaults.
fn parse(text: &str) -> Result<RawWebConfig, Problem> {
    let fail = |err: serde_yaml::Error| {
        Problem {
        file: String::new(),
        pos: err.location().map(|l| Pos::new(l.line(), l.column())),
        message: format!(
            "{}; the keys are those of the exporter-toolkit web configuration: tls_server_config, http_server_config, basic_auth_users",
            strip_location(&err.to_string())
        ),
    }
    };
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(fail)?;
    if value.is_null() {
        return Ok(RawWebConfig::default());
    }
    serde_yaml::from_str(text).map_err(fail)
}

/// serde_yaml ends its messages with " at line L column C", which [`Problem`] already shows.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// Where `path` is written in a block-style YAML text: 1-based line and column of its last
/// key. Only used to point at a problem, so a miss just leaves the place out.
fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    let mut lines = text.lines().enumerate();
    for key in path {
        found = None;
        for (index, line) in lines.by_ref() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if parent_indent.is_some_and(|parent| indent <= parent) {
                return None;
            }
            let written = trimmed
                .strip_prefix('"')
                .and_then(|rest| rest.strip_prefix(*key))
                .and_then(|rest| rest.strip_prefix('"'))
                .or_else(|| trimmed.strip_prefix(*key));
            if written.is_some_and(|rest| rest.trim_start().starts_with(':')) {
                found = Some((index + 1, indent + 1));
                parent_indent = Some(indent);
                break;
            }
        }
        found?;
    }
    found
}

fn lowercase(canonical: &'static str) -> &'static str {
    match canonical {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

enum GoSuite {
    Rustls(SupportedCipherSuite),
    Tls13,
    NotInRustls,
    Unknown,
}

/// A Go `crypto/tls` cipher suite name, as the toolkit takes them.
fn go_cipher_suite(name: &str) -> GoSuite {
    match name {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
            GoSuite::Rustls(cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
            GoSuite::Rustls(cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            GoSuite::Rustls(cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => {
            GoSuite::Rustls(cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        }
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => {
            GoSuite::Rustls(cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            GoSuite::Rustls(cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
        }
        "TLS_AES_128_GCM_SHA256" | "TLS_AES_256_GCM_SHA384" | "TLS_CHACHA20_POLY1305_SHA256" => {
            GoSuite::Tls13
        }
        "TLS_RSA_WITH_RC4_128_SHA"
        | "TLS_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_RSA_WITH_AES_128_CBC_SHA256"
        | "TLS_RSA_WITH_AES_128_GCM_SHA256"
        | "TLS_RSA_WITH_AES_256_GCM_SHA384"
        | "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_RC4_128_SHA"
        | "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"
        | "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
        | "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"
        | "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256" => GoSuite::NotInRustls,
        _ => GoSuite::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<WebConfig, Vec<Problem>> {
        let base = Path::new("/nonexistent");
        Checker::new(text, Path::new("")).check(base, &LoadOptions::default())
    }

    fn messages(text: &str) -> Vec<String> {
        match check(text) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn empty_file_and_empty_tls_section_mean_plain_http_without_auth() {
        for text in [
            "",
            "# nothing\n",
            "tls_server_config: {}\n",
            "http_server_config:\n  http2: false\n",
        ] {
            let config = check(text).unwrap();
            assert!(!config.tls_enabled(), "{text}");
            assert!(!config.auth_required(), "{text}");
        }
        assert!(!check("http_server_config:\n  http2: false\n")
            .unwrap()
            .http2());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let problems = check("tls_server_config:\n  cert_file: a\n  kee_file: b\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].pos.map(|p| p.line), Some(3));
        assert!(
            problems[0].message.contains("unknown field `kee_file`"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn every_tls_problem_is_reported_at_once() {
        let text = "tls_server_config:\n  client_auth_type: RequireAndVerify\n  min_version: TLS14\n  curve_preferences: [CurveP999]\n";
        let all = messages(text);
        let joined = all.join("\n");
        assert_eq!(all.len(), 5, "{joined}");
        assert!(
            joined.contains("tls_server_config.cert_file: is missing"),
            "{joined}"
        );
        assert!(
            joined.contains("tls_server_config.key_file: is missing"),
            "{joined}"
        );
        assert!(joined.contains("2:3: tls_server_config.client_auth_type: \"RequireAndVerify\" is not a client auth type; write one of NoClientCert, RequestClientCert"), "{joined}");
        assert!(
            joined.contains("3:3: tls_server_config.min_version: \"TLS14\""),
            "{joined}"
        );
        assert!(
            joined.contains("4:3: tls_server_config.curve_preferences: \"CurveP999\""),
            "{joined}"
        );
    }

    #[test]
    fn client_ca_rules_follow_the_toolkit() {
        let joined =
            messages("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_ca_file: ca\n")
                .join("\n");
        assert!(
            joined.contains("client_ca_file: is set but client_auth_type is NoClientCert"),
            "{joined}"
        );
        let joined = messages("tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: RequireAndVerifyClientCert\n").join("\n");
        assert!(joined.contains("client_ca_file must name"), "{joined}");
    }

    #[test]
    fn versions_map_to_what_rustls_offers() {
        let mut checker = Checker::new("", Path::new(""));
        assert_eq!(checker.versions(None, None).len(), 2);
        assert_eq!(
            checker.versions(Some("TLS13"), None),
            vec![&rustls::version::TLS13]
        );
        assert_eq!(
            checker.versions(Some("TLS10"), Some("TLS12")),
            vec![&rustls::version::TLS12]
        );
        assert!(checker.problems.is_empty());
        assert_eq!(
            checker.warnings.len(),
            1,
            "TLS10 is raised to TLS12 with a warning"
        );
        checker.versions(Some("TLS13"), Some("TLS12"));
        checker.versions(None, Some("TLS11"));
        assert_eq!(checker.problems.len(), 2);
    }

    #[test]
    fn cipher_suites_unsupported_by_rustls_are_warned_and_dropped() {
        let mut checker = Checker::new("", Path::new(""));
        let names: Vec<String> = [
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
        ]
        .map(String::from)
        .to_vec();
        let chosen = checker.cipher_suites(&names, true).unwrap();
        assert_eq!(
            chosen,
            vec![cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]
        );
        assert!(checker.problems.is_empty());
        assert_eq!(checker.warnings.len(), 2, "{:?}", checker.warnings);

        let only_cbc = vec!["TLS_RSA_WITH_AES_128_CBC_SHA".to_string()];
        checker.cipher_suites(&only_cbc, true);
        assert_eq!(checker.problems.len(), 1);
        checker.cipher_suites(&["TLS_MADE_UP".to_string()], true);
        assert_eq!(checker.problems.len(), 2);
    }

    #[test]
    fn headers_follow_the_toolkit_list() {
        let config = check("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Content-Security-Policy: default-src 'self'\n").unwrap();
        assert_eq!(config.response_headers()["x-frame-options"], "deny");
        assert_eq!(config.response_headers().len(), 2);
        let joined = messages("http_server_config:\n  headers:\n    Server: mine\n    X-Content-Type-Options: sniff\n").join("\n");
        assert!(
            joined.contains(
                "3:5: http_server_config.headers.Server: this header cannot be configured"
            ),
            "{joined}"
        );
        assert!(joined.contains("4:5: http_server_config.headers.X-Content-Type-Options: \"sniff\" is not a valid value"), "{joined}");
    }

    #[test]
    fn bad_hashes_are_named_without_showing_them() {
        let joined = messages("basic_auth_users:\n  alice: hunter2\n  \"b:ob\": $2b$04$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n").join("\n");
        assert!(
            joined.contains("2:3: basic_auth_users.alice: is not a bcrypt hash"),
            "{joined}"
        );
        assert!(
            joined.contains("basic_auth_users.b:ob: a user name cannot contain"),
            "{joined}"
        );
        assert!(!joined.contains("hunter2"), "{joined}");
    }

    #[test]
    fn inline_key_is_refused_without_echoing_it() {
        let joined = messages("tls_server_config:\n  cert_file: c\n  key: \"-----BEGIN PRIVATE KEY-----SECRETMATERIAL\"\n").join("\n");
        assert!(
            joined.contains("tls_server_config.key: is not supported"),
            "{joined}"
        );
        assert!(!joined.contains("SECRETMATERIAL"), "{joined}");
    }

    #[test]
    fn locate_finds_nested_keys_and_misses_gracefully() {
        let text = "a:\n  b: 1\nc:\n  # note\n  b: 2\n  d:\n    e: 3\n";
        assert_eq!(locate(text, &["c", "b"]), Some((5, 3)));
        assert_eq!(locate(text, &["c", "d", "e"]), Some((7, 5)));
        assert_eq!(locate(text, &["a", "d"]), None);
        assert_eq!(locate(text, &["x"]), None);
    }
}
