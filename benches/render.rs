//! `/metrics` benchmark: 10,000 record targets × 3 files (~150,000 series).
//!
//! Run with `cargo bench --bench render`. Prints the median and p90 render time over 31
//! renders (each into a fresh buffer, and into one reused buffer), the body size, the process
//! resident memory, and the same figures after 10 % of the targets changed.
//!
//! Then it serves the page with the real HTTP server on a loopback port and scrapes it side by
//! side in one run: identity, gzip, OpenMetrics and OpenMetrics with gzip, 31 scrapes each over
//! one keep-alive connection, as Prometheus does. The scraper is this bench binary run again as
//! a child process (`--scrape-client`), so the server's CPU time per scrape is this process's
//! own (`/proc/self/stat` utime + stime) over the scrapes. It also times the first gzip scrape
//! after 10 % of the targets changed, and the resident memory that 30 concurrent clients add
//! when they send a request and never read the answer.
//!
//! Without the `--bench` argument that `cargo bench` passes (so under `cargo test
//! --all-targets`, in a debug build) it runs with 200 targets and 3 renders, as a smoke test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::exposition::Format;
use volc_rtc_exporter::http::{serve, App, LandingInfo, Options};
use volc_rtc_exporter::metrics::own::Telemetry;
use volc_rtc_exporter::metrics::{page, render};
use volc_rtc_exporter::model::{Target, TaskSnapshot};
use volc_rtc_exporter::targets::table::Store;

use common::{ended_record, ms, own_rss_kib, record_target, FILES};

const FULL_TARGETS: usize = 10_000;
const FULL_RENDERS: usize = 31;
/// Sizes when run without `--bench`.
const SMOKE_TARGETS: usize = 200;
const SMOKE_RENDERS: usize = 3;
const T0: i64 = 1_700_000_000_123;

fn snapshot(i: usize, generation: i64) -> TaskSnapshot {
    ended_record(i, T0, 3_600_456, generation)
}

/// This process's `VmRSS` and `VmHWM`, KiB (0 when `/proc` does not say).
fn rss_kib() -> (u64, u64) {
    own_rss_kib().unwrap_or_default()
}

fn time_renders(store: &Store, telemetry: &Telemetry, renders: usize) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(renders);
    let mut size = 0;
    for _ in 0..renders {
        let started = Instant::now();
        let mut out = Vec::new();
        render(store, telemetry, &mut out);
        times.push(started.elapsed());
        size = out.len();
        std::hint::black_box(&out);
    }
    times.sort();
    (times, size)
}

/// The same, rendering into one buffer reused across renders (no allocation, no page faults).
fn time_renders_reused(
    store: &Store,
    telemetry: &Telemetry,
    renders: usize,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(renders);
    let mut out = Vec::new();
    for _ in 0..renders {
        out.clear();
        let started = Instant::now();
        render(store, telemetry, &mut out);
        times.push(started.elapsed());
        std::hint::black_box(&out);
    }
    times.sort();
    (times, out.len())
}

fn report(label: &str, times: &[Duration], size: usize) {
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let (rss, hwm) = rss_kib();
    println!(
        "{label}: median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms over {} renders; \
         body {} bytes ({:.1} MB); VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len(),
        size,
        size as f64 / 1e6,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--scrape-client") {
        scrape_client(args.get(i + 1..).unwrap_or_default());
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let (targets_n, renders) = if full {
        (FULL_TARGETS, FULL_RENDERS)
    } else {
        (SMOKE_TARGETS, SMOKE_RENDERS)
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("render bench: {targets_n} record targets x {FILES} files, {cores} cores");
    if !full {
        println!("(smoke run without --bench: figures are not measurements)");
    }
    let (rss0, _) = rss_kib();
    let targets: Vec<Target> = (0..targets_n)
        .map(|i| {
            record_target(
                "661e8f0d1ab2c3d4e5f60718",
                format!("Room{i:05}"),
                format!("Task{i:05}"),
                vec![("team".into(), "live".into())],
            )
        })
        .collect();
    let store = Arc::new(Store::new(targets));
    let telemetry = Arc::new(Telemetry::new());
    let polled = UNIX_EPOCH + Duration::from_millis(T0 as u64 + 86_400_000);
    let started = Instant::now();
    for i in 0..targets_n {
        store.record_success(i, snapshot(i, 0), polled);
    }
    let fill = started.elapsed();
    let (rss1, _) = rss_kib();
    println!(
        "recorded {targets_n} successes in {:.1} ms; VmRSS {:.1} MiB before the store, {:.1} MiB after",
        ms(fill),
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );

    let (times, size) = time_renders(&store, &telemetry, renders);
    report("render", &times, size);
    let (times, size) = time_renders_reused(&store, &telemetry, renders);
    report("render into a reused buffer", &times, size);

    let changed_at = polled + Duration::from_secs(60);
    let started = Instant::now();
    for i in (0..targets_n).step_by(10) {
        let u = store.record_success(i, snapshot(i, 1), changed_at);
        assert!(u.changed);
    }
    println!(
        "changed {} targets (10 %) in {:.1} ms",
        targets_n / 10,
        ms(started.elapsed())
    );
    let (times, size) = time_renders(&store, &telemetry, renders);
    report("render after 10 % changed", &times, size);

    scrapes(&store, &telemetry, renders, targets_n, changed_at);
}

/// The scrapes a row makes.
#[derive(Clone, Copy)]
struct Mode {
    label: &'static str,
    accept: &'static str,
    encoding: &'static str,
}

const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

const MODES: [Mode; 4] = [
    Mode {
        label: "identity",
        accept: "text/plain",
        encoding: "identity",
    },
    Mode {
        label: "gzip",
        accept: "text/plain",
        encoding: "gzip",
    },
    Mode {
        label: "OpenMetrics",
        accept: PROMETHEUS_ACCEPT,
        encoding: "identity",
    },
    Mode {
        label: "OpenMetrics gzip",
        accept: PROMETHEUS_ACCEPT,
        encoding: "gzip",
    },
];

/// This process's user + system CPU time so far (from `/proc/self/stat`, in clock ticks of
/// 10 ms), or zero when `/proc` does not say.
fn own_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the state.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Runs `n` scrapes in `mode` from a child process; their times, sorted, and the last body's
/// size on the wire.
fn child_scrapes(addr: SocketAddr, mode: Mode, n: usize) -> (Vec<Duration>, usize) {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let out = Command::new(exe)
        .args([
            "--scrape-client",
            &addr.to_string(),
            mode.accept,
            mode.encoding,
            &n.to_string(),
        ])
        .output()
        .expect("run the scrape client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scrape client failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut times = Vec::new();
    let mut size = 0;
    for line in stdout.lines() {
        if let Some(us) = line.strip_prefix("scrape_us ") {
            times.push(Duration::from_micros(us.parse().unwrap_or(0)));
        } else if let Some(bytes) = line.strip_prefix("bytes ") {
            size = bytes.parse().unwrap_or(0);
        }
    }
    times.sort();
    (times, size)
}

/// The scrape client: `ADDR ACCEPT ENCODING N`. Makes N scrapes on one keep-alive
/// connection, prints each one's time and the last body's size; a gzip body is decompressed
/// once and its size printed too.
fn scrape_client(args: &[String]) {
    let [addr, accept, encoding, n] = args else {
        panic!("usage: --scrape-client ADDR ACCEPT ENCODING N");
    };
    let n: usize = n.parse().expect("N is a number");
    let stream = TcpStream::connect(addr.as_str()).expect("connect to the server");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept: {accept}\r\nAccept-Encoding: {encoding}\r\n\r\n"
    );
    let mut body = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        writer
            .write_all(request.as_bytes())
            .expect("send the request");
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("read the answer head");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.expect("a Content-Length");
        body.resize(length, 0);
        reader.read_exact(&mut body).expect("read the body");
        println!("scrape_us {}", started.elapsed().as_micros());
        if i == 0 && encoding == "gzip" {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut plain)
                .expect("a valid gzip body");
            println!("decompressed {}", plain.len());
        }
    }
    println!("bytes {}", body.len());
}

/// Serves the page over loopback and measures the scrapes, the first gzip scrape after 10 %
/// changed, and 30 clients that do not read.
fn scrapes(
    store: &Arc<Store>,
    telemetry: &Arc<Telemetry>,
    n: usize,
    targets_n: usize,
    changed_at: std::time::SystemTime,
) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let pages = Arc::new(AtomicUsize::new(0));
    let app = {
        let (store, telemetry, pages) = (store.clone(), telemetry.clone(), pages.clone());
        // No cap on requests in flight: the bench measures many scrapers at once.
        Arc::new(
            App::new(
                Box::new(move |format: Format| {
                    pages.fetch_add(1, Ordering::SeqCst);
                    page(&store, &telemetry, format)
                }),
                Arc::new(AtomicBool::new(true)),
                LandingInfo::new("bench"),
            )
            .with_options(Options {
                max_requests: 0,
                ..Options::default()
            }),
        )
    };
    let shutdown = CancellationToken::new();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    let server = runtime.spawn(serve(listener, app, shutdown.clone()));

    // One scrape of each kind first: the first gzip scrape compresses every chunk.
    for mode in MODES {
        let cpu = own_cpu();
        let (times, size) = child_scrapes(addr, mode, 1);
        println!(
            "first {} scrape: {:.1} ms, server CPU {:.0} ms, {} bytes",
            mode.label,
            ms(times[0]),
            ms(own_cpu().saturating_sub(cpu)),
            size
        );
    }
    println!(
        "| scrape ({n} per row, one run) | median | min–max | server CPU per scrape | bytes |"
    );
    println!("|---|---|---|---|---|");
    for mode in MODES {
        let cpu = own_cpu();
        let (times, size) = child_scrapes(addr, mode, n);
        let cpu = own_cpu().saturating_sub(cpu);
        println!(
            "| {} | {:.1} ms | {:.1}–{:.1} ms | {:.1} ms | {} ({:.1} MB) |",
            mode.label,
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
            ms(cpu) / times.len() as f64,
            size,
            size as f64 / 1e6
        );
    }

    // 10 % of the targets change: the next gzip scrape compresses the chunks they touched.
    for i in (5..targets_n).step_by(10) {
        store.record_success(i, snapshot(i, 2), changed_at + Duration::from_secs(60));
    }
    let cpu = own_cpu();
    let (times, _) = child_scrapes(addr, MODES[1], 1);
    println!(
        "first gzip scrape after 10 % of the targets changed: {:.1} ms, server CPU {:.0} ms",
        ms(times[0]),
        ms(own_cpu().saturating_sub(cpu))
    );
    // One target changes: only its block's chunks are compressed again.
    store.record_success(7, snapshot(7, 3), changed_at + Duration::from_secs(120));
    let (times, _) = child_scrapes(addr, MODES[1], 1);
    println!(
        "first gzip scrape after 1 target changed: {:.1} ms",
        ms(times[0])
    );

    // 30 clients send a scrape and never read the answer.
    const CLIENTS: usize = 30;
    let (rss_before, _) = rss_kib();
    let rendered = pages.load(Ordering::SeqCst);
    let mut streams = Vec::new();
    for i in 0..CLIENTS {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let encoding = if i % 2 == 0 { "identity" } else { "gzip" };
        let request =
            format!("GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: {encoding}\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        streams.push(stream);
    }
    let deadline = std::time::Duration::from_secs(60);
    let waited = Instant::now();
    while pages.load(Ordering::SeqCst) < rendered + CLIENTS && waited.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (rss_after, hwm) = rss_kib();
    println!(
        "{CLIENTS} clients that do not read (15 identity, 15 gzip): VmRSS {:.1} -> {:.1} MiB \
         (+{:.1} MiB), VmHWM {:.1} MiB",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    drop(streams);
    shutdown.cancel();
    let _ = runtime.block_on(server);
}
