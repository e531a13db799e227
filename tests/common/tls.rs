//! Certificates made for a test with rcgen, the web config fixtures (tests/fixtures/web) to
//! copy next to them, and HTTPS clients that trust only the test's CA.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// The web config fixtures: good and bad `--web.config.file`s that name `server.crt`,
/// `server.key`, `client-ca.crt` and the like in their own directory.
pub const WEB_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/web");

/// A certificate with its key, as PEM, and the certificate as DER.
pub struct Pem {
    pub cert: String,
    pub key: String,
    pub der: Vec<u8>,
}

/// A self-signed CA named `name`: its parameters and key (to sign with) and its certificate.
pub fn new_ca(name: &str) -> (CertificateParams, KeyPair, Pem) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("CA certificate");
    let pem = Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    };
    (params, key, pem)
}

/// A certificate for the subject names `names`, called `common_name`, signed by `issuer`.
pub fn leaf(common_name: &str, names: &[&str], issuer: &Issuer<'_, &KeyPair>) -> Pem {
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// A self-signed certificate for `name`, trusted by nobody.
pub fn self_signed(name: &str) -> Pem {
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("self-signed certificate");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// Copies every file of [`WEB_FIXTURES`] into `dir`.
pub fn copy_web_fixtures(dir: &Path) {
    for entry in std::fs::read_dir(WEB_FIXTURES).expect("read the web fixtures") {
        let entry = entry.expect("a web fixture");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy a web fixture");
    }
}

/// An HTTPS client (rustls, 10 s timeout) trusting only `ca`, with `localhost` resolved to
/// `addr` and `identity` (certificate and key) presented when given; add to it and build.
pub fn client_builder(
    ca: &Pem,
    addr: SocketAddr,
    identity: Option<&Pem>,
) -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.as_bytes()).expect("CA PEM"))
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(10));
    if let Some(pem) = identity {
        let both = format!("{}{}", pem.cert, pem.key);
        builder =
            builder.identity(reqwest::Identity::from_pem(both.as_bytes()).expect("identity PEM"));
    }
    builder
}
