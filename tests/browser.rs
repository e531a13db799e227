//! `/` and `/targets` in a real headless browser (Debian's `chromium`): the pages are served
//! from a small HTTP server on 127.0.0.1 inside the test, chromium renders them, and the test
//! asserts the DOM after rendering (`--dump-dom`) and keeps screenshots under
//! `target/screenshots/` to look at.
//!
//! Chromium is required: without it these tests fail and say how to install it
//! (`scripts/install-test-deps`). `CHROMIUM` names another binary.

mod pages_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use tokio::time::Instant;

use volc_rtc_exporter::http::pages::{landing_page, targets_page, TargetRow, TargetsQuery};

use pages_common::{fixture, info};

/// Longest a chromium run may take before the test fails.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// One chromium at a time: the machine is shared and each instance is heavy.
static CHROMIUM_LOCK: Mutex<()> = Mutex::new(());

/// The fixture's pages on 127.0.0.1, for the whole test binary.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let rows = Arc::new(fixture());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let rows = Arc::clone(&rows);
                thread::spawn(move || serve(stream, &rows));
            }
        });
        addr
    })
}

/// Answers one request: `/`, `/targets?…`, or `/typing?text=…` (the targets page plus a
/// script that types `text` into the filter box, to test the as-you-type filter).
fn serve(mut stream: TcpStream, rows: &[TargetRow]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let page = match path {
        "/" => Some(landing_page(&info(), rows)),
        "/targets" => Some(targets_page(
            &info(),
            rows,
            &TargetsQuery::from_query(query),
        )),
        "/typing" | "/submit" => {
            // Types `text` into the filter box; on /submit also submits the form.
            let text = query.and_then(|q| q.strip_prefix("text=")).unwrap_or("");
            let submit = if path == "/submit" {
                "q.form.submit();"
            } else {
                ""
            };
            let page = targets_page(&info(), rows, &TargetsQuery::default());
            let typing = format!(
                "<script>var q=document.querySelector('input[name=q]');q.value='{text}';\
                 q.dispatchEvent(new Event('input'));{submit}</script>\n</body>"
            );
            Some(page.replace("</body>", &typing))
        }
        "/no-script/targets" => {
            // The targets page with its script removed: what a browser without JavaScript has.
            let page = targets_page(&info(), rows, &TargetsQuery::from_query(query));
            let start = page.find("<script>").unwrap_or(page.len());
            let end = page
                .find("</script>")
                .map_or(start, |i| i + "</script>".len());
            Some(format!("{}{}", &page[..start], &page[end..]))
        }
        _ => None,
    };
    let (status, body) = match page {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", "not found\n".to_string()),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn chromium_path() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "these tests need Debian's chromium and it is not at {}: run scripts/install-test-deps \
         (or `apt-get install chromium`), or set CHROMIUM to its path",
        path.display()
    );
    path
}

/// What one chromium run printed.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs headless chromium on `path` (e.g. `/targets?failing=1`) of the test server with the
/// extra arguments, in a fresh profile, and fails the test if it does not finish cleanly.
fn chromium(path: &str, extra: &[&str]) -> Run {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let url = format!("http://{}{path}", server());
    let _one_at_a_time = CHROMIUM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let profile = std::env::temp_dir().join(format!(
        "pages-browser-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&profile).expect("create a profile directory");
    let mut child = Command::new(chromium_path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let stderr = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish {url} within {CHROMIUM_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        status.success(),
        "chromium failed on {url}: {status}\n{}",
        run.stderr
    );
    // Console errors, e.g. an exception in the page's script, are logged as `CONSOLE` lines.
    assert!(
        !run.stderr.contains("Uncaught"),
        "a script error on {url}:\n{}",
        run.stderr
    );
    run
}

fn dump_dom(path: &str, extra: &[&str]) -> String {
    let mut args = vec!["--dump-dom"];
    args.extend_from_slice(extra);
    let dom = chromium(path, &args).stdout;
    assert!(dom.contains("</html>"), "no document for {path}: {dom}");
    dom
}

/// Takes a 1280×900 screenshot of `path` into `target/screenshots/<name>` and checks it is a
/// PNG of that size.
fn screenshot(path: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    chromium(
        path,
        &[
            &format!("--screenshot={}", file.display()),
            "--window-size=1280,900",
        ],
    );
    let png = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((be(16), be(20)), (1280, 900), "IHDR width × height");
    assert!(
        png.len() > 20_000,
        "a nearly empty screenshot: {} bytes",
        png.len()
    );
    file
}

/// The ids of the rows in a dumped DOM, with whether each is hidden.
fn rows(dom: &str) -> Vec<(&str, bool)> {
    dom.split("<tr id=\"")
        .skip(1)
        .map(|s| {
            let id = &s[..s.find('"').unwrap_or(0)];
            let tag = &s[..s.find('>').unwrap_or(0)];
            (id, tag.contains(" hidden"))
        })
        .collect()
}

#[test]
fn targets_page_renders_in_chromium() {
    let dom = dump_dom("/targets", &[]);
    assert!(dom.contains("<h1>Targets</h1>"));
    assert!(dom.contains("14 targets in 3 apps · <span class=\"bad\">4 down</span>"));
    assert!(dom.contains("<span class=\"id\">app-live</span>"));
    assert!(dom.contains("timeout after 5s: GET GetRecordTask"));
    assert!(dom.contains("12s ago"));
    assert!(dom.contains("2026-12-01 10:59:48 UTC"));
    assert!(dom.contains("in 40s"));
    assert_eq!(rows(&dom).len(), 14);
    assert!(rows(&dom).iter().all(|(_, hidden)| !hidden));
    // The hostile strings are text in the DOM, not elements.
    assert!(dom.contains("&lt;script&gt;alert(\"app\")&lt;/script&gt;"));
    assert!(dom.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!dom.contains("<img"));
    assert_eq!(dom.matches("<script").count(), 1);
    assert!(
        dom.contains("<details class=\"phase\" data-phase=\"done\">"),
        "done folded"
    );

    let shot = screenshot("/targets", "targets.png");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn filter_works_without_javascript() {
    // Submitting the form is a plain GET of `targets?q=…&failing=…`, filtered by the server.
    let dom = dump_dom("/submit?text=class-10", &["--virtual-time-budget=5000"]);
    assert!(dom.contains("Showing 1 of 14 targets."), "{dom}");
    assert!(dom.contains("value=\"class-10\""));
    assert_eq!(rows(&dom).len(), 1);

    // Without the page's script, every row and count is there.
    let dom = dump_dom("/no-script/targets?failing=1", &[]);
    assert_eq!(dom.matches("<script").count(), 0);
    assert!(dom.contains("Showing 4 of 14 targets."));
    assert!(dom.contains("name=\"failing\" value=\"1\" checked"));
    let shown = rows(&dom);
    assert_eq!(shown.len(), 4);
    assert!(shown.iter().all(|(_, hidden)| !hidden));
    assert_eq!(dom.matches("class=\"fail\"").count(), 4);
    let dom = dump_dom("/no-script/targets", &[]);
    assert_eq!(rows(&dom).len(), 14);

    let shot = screenshot("/no-script/targets?failing=1", "targets-failing.png");
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn typing_filters_rows_at_once_with_javascript() {
    // The page's filter waits 150 ms after the last key; virtual time runs that timer.
    let dom = dump_dom("/typing?text=class-10", &["--virtual-time-budget=3000"]);
    let visible: Vec<&str> = rows(&dom)
        .into_iter()
        .filter(|(_, hidden)| !hidden)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(visible, ["t-webcast__app-edu__class-10___"]);
    assert_eq!(rows(&dom).len(), 14, "rows are hidden, not removed");
    assert!(dom.contains("<details class=\"app\" open=\"\" data-app=\"app-live\" hidden=\"\">"));

    // The app ID is not in a row's text but matches through its section.
    let dom = dump_dom("/typing?text=app-live", &["--virtual-time-budget=3000"]);
    let visible = rows(&dom).iter().filter(|(_, hidden)| !hidden).count();
    assert_eq!(visible, 7);
}

#[test]
fn landing_page_renders_in_chromium_and_links_to_rows() {
    let dom = dump_dom("/", &[]);
    assert!(dom.contains(&format!("<h1>{}</h1>", env!("CARGO_PKG_NAME"))));
    assert!(dom.contains("revision <code>3f9c2ab</code>"));
    assert!(dom.contains("<h2>Targets by phase</h2>"));
    assert!(dom.contains("<h2>Targets down (their polls fail): <span class=\"bad\">4</span></h2>"));
    assert!(dom.contains("<h2>Tasks failed in the last 24 h: <span class=\"bad\">2</span></h2>"));
    assert!(dom.contains("<a href=\"api/v1/targets\">Targets API</a>"));
    assert!(dom.contains("&lt;script&gt;alert(\"app\")&lt;/script&gt;"));
    assert_eq!(dom.matches("<script").count(), 0);

    // The first failing target's link opens the targets page at its row.
    let href = dom
        .split("<a href=\"targets?q=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a link to a failing target")
        .replace("&amp;", "&");
    let (_, anchor) = href.split_once('#').expect("an anchor");
    let linked = dump_dom(&format!("/targets?q={href}"), &[]);
    assert!(linked.contains(&format!("<tr id=\"{anchor}\" class=\"fail\">")));

    let shot = screenshot("/", "landing.png");
    eprintln!("screenshot: {}", shot.display());
    let shot = screenshot(&format!("/targets?q={href}"), "targets-linked.png");
    eprintln!("screenshot: {}", shot.display());
}
