//! `--web.config.file`, tested the way the exporter-toolkit tests its own: good and bad
//! config files (tests/fixtures/web), users right, wrong and unknown, with and without TLS,
//! mTLS, and certificates replaced while the server runs.
//!
//! Certificates are generated for each test with rcgen into a scratch directory next to a
//! copy of the fixtures; a real TLS listener on 127.0.0.1:0 (hyper) serves through
//! `WebConfig::accept`, and reqwest (rustls) connects trusting only the generated CA.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::tls::{self, Pem};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{CertificateParams, Issuer, KeyPair};
use reqwest::header::WWW_AUTHENTICATE;
use tokio::net::TcpListener;
use volc_rtc_exporter::http::web_config::{
    Caller, LoadOptions, Unauthorized, WebConfig, WebConfigError,
};

/// A scratch directory holding the fixtures and a fresh PKI:
/// `ca.crt` signs `server.crt`/`server.key` (for localhost and 127.0.0.1); `other.key` is an
/// unrelated key; `client-ca.crt` signs `client`; `rogue` is a self-signed client.
struct Scratch {
    dir: PathBuf,
    ca: Pem,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    server: Pem,
    client: Pem,
    rogue: Pem,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "web_config-{}-{test}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        tls::copy_web_fixtures(&dir);
        let (ca_params, ca_key, ca) = tls::new_ca("test server CA");
        let server = tls::leaf(
            "localhost",
            &["localhost", "127.0.0.1"],
            &Issuer::from_params(&ca_params, &ca_key),
        );
        let other = tls::self_signed("localhost");
        let (client_ca_params, client_ca_key, client_ca) = tls::new_ca("test client CA");
        let client = tls::leaf(
            "scraper",
            &["scraper"],
            &Issuer::from_params(&client_ca_params, &client_ca_key),
        );
        let rogue = tls::self_signed("scraper");
        let scratch = Scratch {
            dir,
            ca,
            ca_params,
            ca_key,
            server,
            client,
            rogue,
        };
        scratch.write("ca.crt", &scratch.ca.cert);
        scratch.write("server.crt", &scratch.server.cert);
        scratch.write("server.key", &scratch.server.key);
        scratch.write("other.key", &other.key);
        scratch.write("client-ca.crt", &client_ca.cert);
        scratch.write("empty.pem", "");
        scratch
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).unwrap();
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A new server certificate from the same CA.
    fn reissue(&self) -> Pem {
        tls::leaf(
            "localhost",
            &["localhost", "127.0.0.1"],
            &Issuer::from_params(&self.ca_params, &self.ca_key),
        )
    }

    fn load(&self, file: &str) -> WebConfig {
        WebConfig::load(&self.path(file)).unwrap_or_else(|err| panic!("{file}: {err}"))
    }

    /// A client trusting only the generated CA; `localhost` resolves to `addr`.
    fn client(&self, addr: SocketAddr, identity: Option<&Pem>) -> reqwest::Client {
        tls::client_builder(&self.ca, addr, identity)
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves `200 ok` through the web config, as the exporter's server will: the handshake in
/// the connection's task, `authorize_async` before the handler, the configured headers on
/// every answer.
async fn serve(config: WebConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(stream) = config.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<Incoming>| {
                    let config = config.clone();
                    async move {
                        let mut answer = match config
                            .authorize_async(request.headers(), &Caller::default())
                            .await
                        {
                            Ok(()) => Response::new(Full::new(Bytes::from_static(b"ok"))),
                            Err(refused) => refused.response(),
                        };
                        for (name, value) in config.response_headers() {
                            answer.headers_mut().insert(name, value.clone());
                        }
                        Ok::<_, std::convert::Infallible>(answer)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Which of `known` the server presented, by name, so a failure reads "old" vs "new".
fn which(response: &reqwest::Response, known: &[(&'static str, &Pem)]) -> &'static str {
    let der = peer_cert(response);
    known
        .iter()
        .find(|(_, pem)| pem.der == der)
        .map_or("another certificate", |(name, _)| name)
}

fn peer_cert(response: &reqwest::Response) -> Vec<u8> {
    response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

async fn status(
    client: &reqwest::Client,
    url: &str,
    user: Option<(&str, &str)>,
) -> reqwest::Result<reqwest::Response> {
    let mut request = client.get(url);
    if let Some((user, password)) = user {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await
}

// ----- config files -----

#[test]
fn good_config_files_load() {
    let scratch = Scratch::new("good");
    let mut good: Vec<String> = std::fs::read_dir(tls::WEB_FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".good.yml"))
        .collect();
    good.sort();
    assert!(good.len() >= 10, "{good:?}");
    for file in &good {
        let config = scratch.load(file);
        assert_eq!(config.tls_enabled(), file.contains("tls"), "{file}");
        assert_eq!(config.auth_required(), file.contains("auth"), "{file}");
    }

    let all = scratch.load("tls_all_options.good.yml");
    let warnings = all.warnings().join("\n");
    assert!(
        warnings.contains("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"),
        "{warnings}"
    );
    assert!(warnings.contains("CurveP521"), "{warnings}");
    assert_eq!(all.response_headers()["x-frame-options"], "sameorigin");
    assert!(!scratch.load("tls_no_http2.good.yml").http2());

    // Debug output (what ends up in a panic or a `{:?}` log) holds no key and no hash.
    let debug = format!("{:?}", scratch.load("tls_auth.good.yml"));
    assert!(debug.contains("prometheus"), "{debug}");
    assert!(!debug.contains("814dCEJBCbP9"), "{debug}");
    let key_body = scratch.server.key.lines().nth(1).unwrap();
    assert!(!debug.contains(key_body), "{debug}");
}

#[test]
fn bad_config_files_name_the_place_and_the_fix() {
    let scratch = Scratch::new("bad");
    // (file, line of the problem, words the message must hold)
    let cases: [(&str, Option<usize>, &[&str]); 15] = [
        (
            "unknown_key.bad.yml",
            Some(4),
            &["unknown field `client_auth`", "expected one of"],
        ),
        (
            "cert_missing.bad.yml",
            Some(2),
            &["tls_server_config.cert_file", "missing.crt", "cannot read"],
        ),
        (
            "cert_path_empty.bad.yml",
            Some(2),
            &[
                "tls_server_config.cert_file",
                "is missing",
                "remove tls_server_config",
            ],
        ),
        (
            "wrong_key.bad.yml",
            Some(4),
            &[
                "tls_server_config.key_file",
                "does not belong to the certificate",
            ],
        ),
        (
            "key_is_a_cert.bad.yml",
            Some(3),
            &["tls_server_config.key_file", "holds no PEM private key"],
        ),
        (
            "client_auth_invalid.bad.yml",
            Some(4),
            &[
                "\"RequireAndVerifyClientCerts\" is not a client auth type",
                "VerifyClientCertIfGiven, RequireAndVerifyClientCert",
            ],
        ),
        (
            "client_ca_without_auth.bad.yml",
            Some(4),
            &["client_ca_file", "NoClientCert", "set client_auth_type"],
        ),
        (
            "verify_without_ca.bad.yml",
            Some(4),
            &["client_ca_file must name"],
        ),
        (
            "client_ca_nocerts.bad.yml",
            Some(5),
            &["empty.pem", "no usable CA certificate"],
        ),
        (
            "bad_hash.bad.yml",
            Some(3),
            &[
                "basic_auth_users.grafana",
                "is not a bcrypt hash",
                "htpasswd",
            ],
        ),
        (
            "wrong_tls_version.bad.yml",
            Some(4),
            &["min_version", "\"TLS111\"", "TLS12 or TLS13"],
        ),
        (
            "min_above_max.bad.yml",
            Some(4),
            &["min_version", "is above max_version"],
        ),
        (
            "invented_curve.bad.yml",
            Some(4),
            &["\"CurveP257\" is not a curve", "X25519"],
        ),
        (
            "extra_header.bad.yml",
            Some(3),
            &["headers.Server", "cannot be configured", "X-Frame-Options"],
        ),
        (
            "frame_options.bad.yml",
            Some(3),
            &["\"allow\" is not a valid value", "sameorigin"],
        ),
    ];
    for (file, line, words) in cases {
        let path = scratch.path(file);
        let err = match WebConfig::load(&path) {
            Ok(_) => panic!("{file} was accepted"),
            Err(err) => err,
        };
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{file}: {text}");
        let WebConfigError::Invalid { problems, .. } = &err else {
            panic!("{file}: {text}");
        };
        assert_eq!(problems.len(), 1, "{file}: {text}");
        let got = problems[0].pos.map(|p| p.line as usize);
        assert_eq!(got, line, "{file}: {text}");
        for word in words {
            assert!(text.contains(word), "{file}: missing {word:?} in {text}");
        }
        // No key material, no password, no hash in any message.
        let key_body = scratch.server.key.lines().nth(1).unwrap();
        assert!(!text.contains(key_body), "{file}: {text}");
        assert!(!text.contains("other-pass"), "{file}: {text}");
        assert!(!text.contains("814dCEJBCbP9"), "{file}: {text}");
    }

    let missing = WebConfig::load(&scratch.path("no-such-web.yml")).unwrap_err();
    assert!(matches!(missing, WebConfigError::Read { .. }), "{missing}");
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let scratch = Scratch::new("relative");
    // Loaded from another working directory's point of view: the path is absolute, the
    // files it names are relative to it.
    let config = scratch.load("tls.good.yml");
    assert!(config.tls_enabled());
    let nested = scratch.path("conf");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::copy(scratch.path("tls.good.yml"), nested.join("web.yml")).unwrap();
    let err = WebConfig::load(&nested.join("web.yml"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&nested.join("server.crt").display().to_string()),
        "{err}"
    );
}

// ----- basic auth -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_with_users_right_wrong_and_unknown() {
    let scratch = Scratch::new("plain-auth");
    let addr = serve(scratch.load("auth_only.good.yml")).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");

    let ok = status(&client, &url, Some(("prometheus", "scrape-me")))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "ok");
    let ok = status(&client, &url, Some(("grafana", "other-pass")))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    for user in [
        None,
        Some(("prometheus", "other-pass")),
        Some(("grafana", "scrape-me")),
        Some(("nobody", "scrape-me")),
        Some(("prometheus", "")),
    ] {
        let refused = status(&client, &url, user).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{user:?}");
        assert_eq!(
            refused.headers()[WWW_AUTHENTICATE],
            "Basic realm=\"volcengine-rtc-exporter\"",
            "{user:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_users_right_wrong_and_unknown() {
    let scratch = Scratch::new("tls-auth");
    let addr = serve(scratch.load("tls_auth.good.yml")).await;
    let client = scratch.client(addr, None);
    let url = format!("https://localhost:{}/metrics", addr.port());

    let ok = status(&client, &url, Some(("prometheus", "scrape-me")))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    for user in [
        None,
        Some(("prometheus", "nope")),
        Some(("grafana", "other-pass")),
    ] {
        let refused = status(&client, &url, user).await.unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{user:?}");
        assert!(refused.headers().contains_key(WWW_AUTHENTICATE));
    }
}

#[tokio::test]
async fn unknown_users_take_as_long_as_known_ones() {
    let scratch = Scratch::new("timing");
    let config = scratch.load("auth_only.good.yml");
    let headers = |user: &str, password: &str| {
        let mut headers = hyper::HeaderMap::new();
        let encoded = base64_encode(format!("{user}:{password}").as_bytes());
        headers.insert(
            hyper::header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        headers
    };
    // As the server checks a client with no refused logins.
    let config = &config;
    let authorize = |headers: hyper::HeaderMap| async move {
        config.authorize_async(&headers, &Caller::default()).await
    };
    let mut medians = Vec::new();
    for user in ["prometheus", "somebody-else"] {
        let mut times: Vec<Duration> = Vec::new();
        for i in 0..5 {
            let started = volc_rtc_exporter::clock::real_now();
            let result = authorize(headers(user, &format!("wrong-{i}"))).await;
            assert_eq!(result, Err(Unauthorized::BadCredentials));
            times.push(started.elapsed());
        }
        times.sort();
        medians.push(times[2]);
    }
    let (known, unknown) = (medians[0], medians[1]);
    // Both run one bcrypt of cost 10; without the decoy the unknown user would take
    // microseconds. The bound is wide so a busy machine does not fail it.
    assert!(
        unknown * 3 >= known && known * 3 >= unknown,
        "known user {known:?}, unknown user {unknown:?}"
    );
    assert!(unknown >= Duration::from_millis(1), "{unknown:?}");

    // A right password is checked once, then taken from the cache.
    let right = headers("prometheus", "scrape-me");
    assert_eq!(authorize(right.clone()).await, Ok(()));
    let started = volc_rtc_exporter::clock::real_now();
    assert_eq!(authorize(right).await, Ok(()));
    assert!(
        started.elapsed() * 10 < known,
        "cached check took {:?}",
        started.elapsed()
    );
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ----- TLS -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_configured_certificate_with_http2() {
    let scratch = Scratch::new("tls");
    let addr = serve(scratch.load("tls_all_options.good.yml")).await;
    let client = scratch.client(addr, None);
    let answer = status(
        &client,
        &format!("https://localhost:{}/", addr.port()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(peer_cert(&answer), scratch.server.der);
    assert_eq!(
        answer.headers()["strict-transport-security"],
        "max-age=31536000"
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // A client that does not trust the CA refuses the server.
    let stranger = reqwest::Client::builder()
        .use_rustls_tls()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let refused = stranger
        .get(format!("https://localhost:{}/", addr.port()))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_false_keeps_http1() {
    let scratch = Scratch::new("h1");
    let addr = serve(scratch.load("tls_no_http2.good.yml")).await;
    let answer = status(
        &scratch.client(addr, None),
        &format!("https://localhost:{}/", addr.port()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_are_enforced() {
    let scratch = Scratch::new("versions");
    let addr = serve(scratch.load("tls13_only.good.yml")).await;
    let url = format!("https://localhost:{}/", addr.port());
    let tls12_client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(scratch.ca.cert.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12_client.get(&url).send().await.is_err());
    assert!(scratch.client(addr, None).get(&url).send().await.is_ok());

    let addr = serve(scratch.load("tls12_only.good.yml")).await;
    let url = format!("https://localhost:{}/", addr.port());
    assert!(tls12_client.get(&url).send().await.is_ok());
}

// ----- mTLS -----

async fn outcomes(scratch: &Scratch, file: &str) -> [bool; 3] {
    let addr = serve(scratch.load(file)).await;
    let url = format!("https://localhost:{}/", addr.port());
    let mut results = [false; 3];
    for (slot, identity) in [None, Some(&scratch.client), Some(&scratch.rogue)]
        .into_iter()
        .enumerate()
    {
        let answer = scratch.client(addr, identity).get(&url).send().await;
        results[slot] = matches!(answer, Ok(ref a) if a.status() == StatusCode::OK);
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_types_behave_as_in_go() {
    let scratch = Scratch::new("mtls");
    // [no client cert, cert from client-ca.crt, self-signed cert]
    assert_eq!(
        outcomes(&scratch, "mtls_RequireAndVerifyClientCert.good.yml").await,
        [false, true, false]
    );
    assert_eq!(
        outcomes(&scratch, "mtls_VerifyClientCertIfGiven.good.yml").await,
        [true, true, false]
    );
    assert_eq!(
        outcomes(&scratch, "mtls_RequireAnyClientCert.good.yml").await,
        [false, true, true]
    );
    assert_eq!(
        outcomes(&scratch, "mtls_RequestClientCert.good.yml").await,
        [true, true, true]
    );
    assert_eq!(outcomes(&scratch, "tls.good.yml").await, [true, true, true]);
}

// ----- certificates replaced while running -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificates_are_served_and_broken_ones_ignored() {
    let scratch = Scratch::new("rotate");
    let options = LoadOptions {
        tls_reload_check: Duration::from_millis(100),
    };
    let config = WebConfig::load_with(&scratch.path("tls.good.yml"), &options).unwrap();
    let reloader = config.tls().unwrap().clone();
    let addr = serve(config).await;
    let url = format!("https://localhost:{}/", addr.port());
    let renewed = scratch.reissue();
    let next = scratch.reissue();
    let known = [
        ("first", &scratch.server),
        ("renewed", &renewed),
        ("next", &next),
    ];
    // The files are looked at by the first handshake after the interval, so after a pause
    // the very next connection sees the change.
    let served_after_pause = || async {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let answer = scratch.client(addr, None).get(&url).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        which(&answer, &known)
    };
    assert_eq!(served_after_pause().await, "first");

    // The way cert-manager or a deploy script does it: new files written in place.
    scratch.write("server.crt", &renewed.cert);
    scratch.write("server.key", &renewed.key);
    assert_eq!(served_after_pause().await, "renewed");
    assert_eq!(reloader.reloads(), 1);

    // Half a rotation (a new certificate, its key not yet written) and then garbage: the
    // last good pair stays in use, and each broken state is counted once.
    scratch.write("server.crt", &next.cert);
    assert_eq!(served_after_pause().await, "renewed");
    assert_eq!(served_after_pause().await, "renewed");
    assert_eq!(reloader.reload_failures(), 1);
    scratch.write("server.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n");
    assert_eq!(served_after_pause().await, "renewed");
    assert_eq!(reloader.reload_failures(), 2);

    // Completed: the key follows and the new pair is served.
    scratch.write("server.crt", &next.cert);
    scratch.write("server.key", &next.key);
    assert_eq!(served_after_pause().await, "next");
    assert_eq!(reloader.reloads(), 2);
}

/// Kubernetes updates a mounted secret by pointing the `..data` symlink at a new directory;
/// `server.crt` itself is a symlink through `..data` whose own metadata never changes.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_secret_swap_is_seen() {
    use std::os::unix::fs::symlink;

    let scratch = Scratch::new("k8s");
    let mount = scratch.path("mount");
    let publish = |version: &str, pem: &Pem| {
        let dir = mount.join(format!("..{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &pem.cert).unwrap();
        std::fs::write(dir.join("tls.key"), &pem.key).unwrap();
        let staged = mount.join("..data_tmp");
        symlink(format!("..{version}"), &staged).unwrap();
        std::fs::rename(&staged, mount.join("..data")).unwrap();
    };
    publish("v1", &scratch.server);
    symlink("..data/tls.crt", mount.join("tls.crt")).unwrap();
    symlink("..data/tls.key", mount.join("tls.key")).unwrap();
    std::fs::write(
        mount.join("web.yml"),
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n",
    )
    .unwrap();

    let options = LoadOptions {
        tls_reload_check: Duration::from_millis(100),
    };
    let addr = serve(WebConfig::load_with(&mount.join("web.yml"), &options).unwrap()).await;
    let url = format!("https://localhost:{}/", addr.port());
    let renewed = scratch.reissue();
    let known = [("v1", &scratch.server), ("v2", &renewed)];
    let answer = scratch.client(addr, None).get(&url).send().await.unwrap();
    assert_eq!(which(&answer, &known), "v1");

    publish("v2", &renewed);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let answer = scratch.client(addr, None).get(&url).send().await.unwrap();
    assert_eq!(which(&answer, &known), "v2");
}
