//! TLS for the web endpoint: the rustls server config built from `tls_server_config`, rebuilt
//! when the certificate, key or client CA files change, and the stream type the HTTP server
//! reads from (plain TCP or TLS).
//!
//! The files are looked at during a handshake, at most once per check interval: when their
//! content changed, a new config is built and used from the next handshake on. A change that
//! leaves them broken (half-written, a key that does not match, a missing file) keeps the
//! config in use, and is logged once per distinct problem. Key material is never logged.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// `client_auth_type`: the Go `crypto/tls` client authentication policies the toolkit names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (the default).
    NoClientCert,
    /// A certificate is asked for; none is required and none is verified.
    RequestClientCert,
    /// A certificate is required but not verified against a CA.
    RequireAnyClientCert,
    /// A certificate is optional; one that is sent must chain to `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate chaining to `client_ca_file` is required (mTLS).
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Every accepted spelling, for error messages.
    pub const NAMES: [&'static str; 5] = [
        "NoClientCert",
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ];

    /// The policy named `name` (`RequireClientCert` is the toolkit's old name for
    /// `RequireAnyClientCert`; empty means `NoClientCert`).
    pub fn parse(name: &str) -> Option<ClientAuth> {
        Some(match name {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    /// Whether certificates are verified against `client_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// Checked TLS settings: absolute paths and the rustls choices the YAML maps to.
#[derive(Debug, Clone)]
pub(super) struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub versions: Vec<&'static SupportedProtocolVersion>,
    /// TLS 1.2 suites in preference order; `None` keeps the provider's default.
    pub tls12_suites: Option<Vec<SupportedCipherSuite>>,
    /// Key exchange groups in preference order; `None` keeps the provider's default.
    pub kx_groups: Option<Vec<&'static dyn SupportedKxGroup>>,
    pub prefer_server_order: bool,
    pub alpn: Vec<Vec<u8>>,
}

/// A problem with one of the files, named by its key (`cert_file`, `key_file`,
/// `client_ca_file`, or `tls_server_config` for the combination).
pub(super) type FileProblem = (&'static str, String);

/// The bytes of the three files, as read at one moment.
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl Material {
    fn read(settings: &TlsSettings) -> Result<Material, Vec<FileProblem>> {
        let mut problems = Vec::new();
        let mut read = |key: &'static str, path: &PathBuf| match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                problems.push((key, format!("cannot read {}: {err}", path.display())));
                None
            }
        };
        let cert = read("cert_file", &settings.cert_file);
        let key = read("key_file", &settings.key_file);
        let ca = settings
            .client_ca_file
            .as_ref()
            .map(|path| read("client_ca_file", path));
        match (cert, key, ca) {
            (Some(cert), Some(key), None) if problems.is_empty() => Ok(Material {
                cert,
                key,
                ca: None,
            }),
            (Some(cert), Some(key), Some(Some(ca))) if problems.is_empty() => Ok(Material {
                cert,
                key,
                ca: Some(ca),
            }),
            _ => Err(problems),
        }
    }

    /// Identifies the content, so an unchanged set of files is not rebuilt.
    fn fingerprint(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        for part in [
            &self.cert[..],
            &self.key[..],
            self.ca.as_deref().unwrap_or(b""),
        ] {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part);
        }
        digest.finalize().into()
    }
}

/// Builds the rustls config from the settings and the files' bytes.
fn build(settings: &TlsSettings, material: &Material) -> Result<ServerConfig, Vec<FileProblem>> {
    let mut problems = Vec::new();
    let chain: Vec<CertificateDer<'static>> =
        match CertificateDer::pem_slice_iter(&material.cert).collect::<Result<Vec<_>, _>>() {
            Ok(chain) if !chain.is_empty() => chain,
            Ok(_) => {
                problems.push((
                    "cert_file",
                    format!(
                        "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                        settings.cert_file.display()
                    ),
                ));
                Vec::new()
            }
            Err(err) => {
                problems.push((
                    "cert_file",
                    format!("{} is not valid PEM: {err}", settings.cert_file.display()),
                ));
                Vec::new()
            }
        };
    // The key's own parse error is not shown: it may quote part of the file.
    let key = PrivateKeyDer::from_pem_slice(&material.key).ok();
    if key.is_none() {
        problems.push((
            "key_file",
            format!(
                "{} holds no PEM private key (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)",
                settings.key_file.display()
            ),
        ));
    }
    let verifier = match client_verifier(settings, material.ca.as_deref()) {
        Ok(verifier) => Some(verifier),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let (Some(key), Some(verifier), true) = (key, verifier, problems.is_empty()) else {
        return Err(problems);
    };

    let provider = Arc::new(provider(settings));
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&settings.versions)
        .map_err(|err| {
            vec![(
                "tls_server_config",
                format!("the TLS versions and cipher suites leave nothing to offer: {err}"),
            )]
        })?;
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|err| vec![key_problem(settings, &err)])?;
    config.ignore_client_order = settings.prefer_server_order;
    config.alpn_protocols = settings.alpn.clone();
    Ok(config)
}

fn key_problem(settings: &TlsSettings, err: &rustls::Error) -> FileProblem {
    match err {
        rustls::Error::InconsistentKeys(_) => (
            "key_file",
            format!(
                "the private key in {} does not belong to the certificate in {}; point key_file at the certificate's own key",
                settings.key_file.display(),
                settings.cert_file.display()
            ),
        ),
        rustls::Error::General(_) => (
            "key_file",
            format!(
                "the private key in {} is of a type rustls cannot use (RSA, ECDSA P-256/P-384 and Ed25519 are supported)",
                settings.key_file.display()
            ),
        ),
        other => (
            "cert_file",
            format!(
                "the certificate in {} cannot be used: {other}",
                settings.cert_file.display()
            ),
        ),
    }
}

/// The ring provider narrowed to the configured suites and groups.
fn provider(settings: &TlsSettings) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(tls12) = &settings.tls12_suites {
        let mut suites: Vec<SupportedCipherSuite> = provider
            .cipher_suites
            .iter()
            .copied()
            .filter(|suite| suite.tls13().is_some())
            .collect();
        suites.extend(tls12.iter().copied());
        provider.cipher_suites = suites;
    }
    if let Some(groups) = &settings.kx_groups {
        provider.kx_groups = groups.clone();
    }
    provider
}

fn client_verifier(
    settings: &TlsSettings,
    ca: Option<&[u8]>,
) -> Result<Arc<dyn ClientCertVerifier>, FileProblem> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match (ca, &settings.client_ca_file) {
        (Some(pem), Some(path)) => {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| {
                    (
                        "client_ca_file",
                        format!("{} is not valid PEM: {err}", path.display()),
                    )
                })?;
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err((
                    "client_ca_file",
                    format!(
                        "{} holds no usable CA certificate; it must contain the PEM certificate(s) of the CA that signs client certificates",
                        path.display()
                    ),
                ));
            }
            Some(Arc::new(roots))
        }
        _ => None,
    };
    let verified = |roots: Arc<RootCertStore>, optional: bool| {
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
        let builder = if optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|err| {
            (
                "client_ca_file",
                format!("the client CA cannot be used: {err}"),
            )
        })
    };
    match (settings.client_auth, roots) {
        (ClientAuth::NoClientCert, _) => Ok(WebPkiClientVerifier::no_client_auth()),
        (ClientAuth::RequestClientCert, _) => Ok(Arc::new(AnyClientCert {
            mandatory: false,
            provider,
        })),
        (ClientAuth::RequireAnyClientCert, _) => Ok(Arc::new(AnyClientCert {
            mandatory: true,
            provider,
        })),
        (ClientAuth::VerifyClientCertIfGiven, Some(roots)) => verified(roots, true),
        (ClientAuth::RequireAndVerifyClientCert, Some(roots)) => verified(roots, false),
        (_, None) => Err((
            "client_ca_file",
            "client_auth_type verifies client certificates, so client_ca_file must name the CA file".into(),
        )),
    }
}

/// `RequestClientCert` / `RequireAnyClientCert`: any certificate is taken without a chain
/// check, but the client still has to prove it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls config in use, rebuilt when the files change. Shared by all handshakes.
pub struct TlsReloader {
    settings: TlsSettings,
    check_every: Duration,
    state: Mutex<ReloadState>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

struct ReloadState {
    config: Arc<ServerConfig>,
    fingerprint: [u8; 32],
    checked: Instant,
    /// The last problem logged, so a file that stays broken is logged once.
    last_problem: Option<String>,
}

impl std::fmt::Debug for TlsReloader {
    /// Paths and counters only: the config holds the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("cert_file", &self.settings.cert_file)
            .field("key_file", &self.settings.key_file)
            .field("client_ca_file", &self.settings.client_ca_file)
            .field("client_auth", &self.settings.client_auth)
            .field("check_every", &self.check_every)
            .field("reloads", &self.reloads())
            .field("reload_failures", &self.reload_failures())
            .finish_non_exhaustive()
    }
}

impl TlsReloader {
    /// Reads the files and builds the first config; every problem is returned.
    pub(super) fn new(
        settings: TlsSettings,
        check_every: Duration,
    ) -> Result<TlsReloader, Vec<FileProblem>> {
        let material = Material::read(&settings)?;
        let config = build(&settings, &material)?;
        Ok(TlsReloader {
            state: Mutex::new(ReloadState {
                config: Arc::new(config),
                fingerprint: material.fingerprint(),
                checked: Instant::now(),
                last_problem: None,
            }),
            settings,
            check_every,
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// The config for the next handshake: the files are looked at if the last look is older
    /// than the check interval, and a changed, valid set replaces the config in use.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        if now.duration_since(state.checked) >= self.check_every {
            state.checked = now;
            self.refresh(&mut state);
        }
        state.config.clone()
    }

    /// A `TlsAcceptor` over [`TlsReloader::server_config`].
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config())
    }

    /// How many times a changed set of files was taken into use.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// How many times a changed set of files was refused (the previous config kept).
    pub fn reload_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn refresh(&self, state: &mut ReloadState) {
        let outcome = Material::read(&self.settings).and_then(|material| {
            let fingerprint = material.fingerprint();
            if fingerprint == state.fingerprint {
                return Ok(None);
            }
            build(&self.settings, &material).map(|config| Some((config, fingerprint)))
        });
        match outcome {
            Ok(None) => state.last_problem = None,
            Ok(Some((config, fingerprint))) => {
                state.config = Arc::new(config);
                state.fingerprint = fingerprint;
                state.last_problem = None;
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    cert_file = %self.settings.cert_file.display(),
                    "web TLS certificate files changed; new connections use them"
                );
            }
            Err(problems) => {
                let text = problems
                    .iter()
                    .map(|(key, message)| format!("{key}: {message}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                if state.last_problem.as_deref() != Some(text.as_str()) {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        problems = %text,
                        "web TLS certificate files changed but cannot be used; keeping the previous ones"
                    );
                    state.last_problem = Some(text);
                }
            }
        }
    }
}

/// An accepted connection: plain TCP, or TLS after a finished handshake.
#[derive(Debug)]
pub enum MaybeTlsStream {
    /// No `tls_server_config`: HTTP in the clear.
    Plain(TcpStream),
    /// HTTPS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTlsStream::Plain(tcp) => tcp.is_write_vectored(),
            MaybeTlsStream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTlsStream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            MaybeTlsStream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
