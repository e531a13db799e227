//! `HTTPS_PROXY` / `HTTP_PROXY` are honoured by the OpenAPI client (reqwest reads them from
//! the environment), and `NO_PROXY` turns them off: the real binary's `once` is pointed at an
//! endpoint on 127.0.0.2 with a recording proxy on 127.0.0.1, and the proxy must see the
//! request (a `CONNECT` for HTTPS, an absolute-form `GET` for HTTP). Nothing leaves loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

/// A proxy on 127.0.0.1 that records the first line of each request and answers 502.
fn recording_proxy() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let Ok(reader) = stream.try_clone() else {
                continue;
            };
            let mut reader = BufReader::new(reader);
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers, then refuse: the test only needs to see the request.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let _ = stream.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            if tx.send(line.trim_end().to_string()).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

/// A config polling one record target at `endpoint` (keys are dummies: nothing answers).
fn config(endpoint: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "volc-proxy-{}-{}",
        std::process::id(),
        endpoint.len()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "api:\n  endpoint: {endpoint}\n  region: cn-north-1\n  timeout: 2s\n\
             credentials:\n  access_key_id: AKLTproxytest\n  secret_access_key: c2VjcmV0\n\
             targets:\n  - kind: record\n    app_id: 661e8f0d1ab2c3d4e5f60718\n    room_id: Room1\n    task_id: Task1\n"
        ),
    )
    .expect("write config");
    path
}

fn once(config: &std::path::Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_volcengine-rtc-exporter"));
    cmd.arg("once")
        .arg(format!("--config.file={}", config.display()));
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the exporter")
}

/// A port on 127.0.0.2 that nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// The first request line the proxy saw within 30 s; panics with the stderr of `out` (the run
/// that should have used the proxy) when there was none.
fn first_request(seen: &mpsc::Receiver<String>, out: &Output) -> String {
    seen.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "the proxy saw no request:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

#[test]
fn https_proxy_carries_the_api_requests() {
    let (proxy, seen) = recording_proxy();
    let api = closed_port();
    let cfg = config(&format!("https://127.0.0.2:{api}"));
    let out = once(
        &cfg,
        &[("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}"))],
    );
    let _ = std::fs::remove_dir_all(cfg.parent().expect("dir"));
    let first = first_request(&seen, &out);
    assert_eq!(first, format!("CONNECT 127.0.0.2:{api} HTTP/1.1"));
    assert!(
        !out.status.success(),
        "nothing answered, yet `once` succeeded"
    );
}

#[test]
fn http_proxy_and_no_proxy() {
    let (proxy, seen) = recording_proxy();
    let api = closed_port();
    let cfg = config(&format!("http://127.0.0.2:{api}"));
    let out = once(&cfg, &[("HTTP_PROXY", format!("http://127.0.0.1:{proxy}"))]);
    let first = first_request(&seen, &out);
    assert!(
        first.starts_with(&format!("GET http://127.0.0.2:{api}/?"))
            && first.contains("Action=GetRecordTask"),
        "{first}"
    );

    // The first run has ended: forget its retries.
    while seen.try_recv().is_ok() {}

    // NO_PROXY naming the endpoint's host: straight to it (refused), the proxy sees nothing.
    let out = once(
        &cfg,
        &[
            ("HTTP_PROXY", format!("http://127.0.0.1:{proxy}")),
            ("NO_PROXY", "127.0.0.2".to_string()),
        ],
    );
    let _ = std::fs::remove_dir_all(cfg.parent().expect("dir"));
    assert!(!out.status.success());
    assert!(
        seen.recv_timeout(Duration::from_millis(500)).is_err(),
        "NO_PROXY was ignored"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("network_error"), "{stderr}");
}
