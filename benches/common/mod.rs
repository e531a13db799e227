//! What the benches share: record targets built by number, a process's resident memory read
//! from `/proc`, the exporter binary run as a child process, figures in milliseconds and
//! MiB and their quantiles, and ([`records`]) the record-target workload of the `exporter` and
//! `scrape_soak` benches. Each bench uses only part of this module, hence `allow(dead_code)`.
#![allow(dead_code)]

pub mod records;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use tokio_util::sync::CancellationToken;
use volc_rtc_exporter::config::Endpoint;
use volc_rtc_exporter::model::{status, Kind, RecordFile, Target, TargetKey, TaskSnapshot};
use volc_rtc_exporter::sim::{self, Simulator};

/// A record target of `app` for `room` and `task`, with `labels`.
pub fn record_target(
    app: &str,
    room: String,
    task: String,
    labels: Vec<(String, String)>,
) -> Target {
    Target {
        key: TargetKey {
            kind: Kind::Record,
            app_id: app.into(),
            room_id: room,
            task_id: Some(task),
        },
        labels: labels.into(),
    }
}

/// How many files each record task of [`ended_record`] has.
pub const FILES: usize = 3;

/// Record task `i`, started at `t0` + `i` seconds and stopped by API `run_ms` later, with
/// [`FILES`] files whose durations and sizes grow with `generation`.
pub fn ended_record(i: usize, t0: i64, run_ms: i64, generation: i64) -> TaskSnapshot {
    let start = t0 + i as i64 * 1_000;
    TaskSnapshot {
        status: status::ENDED,
        start_time_ms: start,
        end_time_ms: start + run_ms,
        stop_reason: "StopByAPI".into(),
        files: (0..FILES)
            .map(|f| RecordFile {
                vid: Some(format!("Task{i:05}_video_{f}_main")),
                object_key: Some(format!("record/Room{i:05}/Task{i:05}/{f}.mp4")),
                duration_ms: Some(3_599_123 + f as i64 + generation),
                size_bytes: Some(734_003_200 + (i * 7 + f) as i64 + generation),
                start_time_ms: Some(start),
            })
            .collect(),
        ..Default::default()
    }
}

/// Serves `simulator` on an ephemeral 127.0.0.1 port until `stop`; returns its endpoint.
pub async fn serve_simulator(
    simulator: Arc<Simulator>,
    stop: &CancellationToken,
) -> anyhow::Result<Endpoint> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the simulator on 127.0.0.1")?;
    let port = listener.local_addr()?.port();
    tokio::spawn(sim::serve(listener, simulator, stop.clone()));
    Ok(Endpoint {
        scheme: "http".into(),
        host: "127.0.0.1".into(),
        port: Some(port),
    })
}

/// How a bench binary starts: whether this is the full run (`cargo bench` passes `--bench`;
/// without it, under `cargo test --all-targets`, a smoke run), announced on stdout with the
/// core count, and the multi-threaded runtime it runs on (`None`, reported, if it cannot start).
pub fn start(name: &str) -> (bool, Option<tokio::runtime::Runtime>) {
    let full = std::env::args().any(|a| a == "--bench");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if full {
        println!("{name} bench: {cores} cores (available_parallelism)");
    } else {
        println!("{name} bench: smoke run (no --bench argument), figures are not measurements");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("{name} bench: cannot start the runtime: {e}"))
        .ok();
    (full, runtime)
}

/// `VmRSS` and `VmHWM` of process `pid`, KiB; `None` when `/proc` does not say.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    status_kib(&format!("/proc/{pid}/status"))
}

/// `VmRSS` and `VmHWM` of this process, KiB; `None` when `/proc` does not say.
pub fn own_rss_kib() -> Option<(u64, u64)> {
    status_kib("/proc/self/status")
}

fn status_kib(path: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The exporter binary cargo built alongside this bench.
pub fn exporter_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_volcengine-rtc-exporter") {
        return Ok(PathBuf::from(p));
    }
    // target/<profile>/deps/exporter-<hash> -> target/<profile>/volcengine-rtc-exporter
    let me = std::env::current_exe().context("finding this bench's executable")?;
    let bin = me
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("volcengine-rtc-exporter"))
        .ok_or_else(|| anyhow!("no target directory above {}", me.display()))?;
    Ok(bin)
}

/// The child exporter; killed (by its own pid) when dropped.
pub struct ChildExporter {
    child: Child,
    /// The last lines it logged, for error messages.
    log_tail: Arc<Mutex<VecDeque<String>>>,
}

impl Drop for ChildExporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildExporter {
    /// Starts the binary on `config` listening on an ephemeral loopback port; returns once it
    /// logged the address it listens on.
    pub fn start(bin: &Path, config: &Path) -> anyhow::Result<(ChildExporter, SocketAddr)> {
        // Its store beside the config (a fresh folder per row).
        let storage = config.with_file_name("data");
        ChildExporter::start_with_store(bin, config, &storage)
    }

    /// Like [`ChildExporter::start`], with the store in `storage`.
    pub fn start_with_store(
        bin: &Path,
        config: &Path,
        storage: &Path,
    ) -> anyhow::Result<(ChildExporter, SocketAddr)> {
        ChildExporter::start_with_args(bin, config, storage, &[])
    }

    /// Like [`ChildExporter::start_with_store`], with more arguments.
    pub fn start_with_args(
        bin: &Path,
        config: &Path,
        storage: &Path,
        args: &[&str],
    ) -> anyhow::Result<(ChildExporter, SocketAddr)> {
        let mut child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .args(args)
            .arg("--log.format=json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let log_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let tail = log_tail.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_address(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                if t.len() >= 20 {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        let me = ChildExporter { child, log_tail };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok((me, addr)),
            Err(_) => bail!(
                "the exporter did not report its address; its last lines:\n{}",
                me.tail()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the child to stop with SIGTERM (the `kill` command, by its pid) and waits up to
    /// `grace` for it to exit, then kills it; returns its exit status and how long it took.
    pub async fn terminate(
        &mut self,
        grace: Duration,
    ) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
        let began = tokio::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", self.pid());
        }
        loop {
            if let Some(status) = self.exited() {
                return Ok((status, began.elapsed()));
            }
            if began.elapsed() > grace {
                let _ = self.child.kill();
                bail!(
                    "the exporter did not exit within {grace:?} of SIGTERM; its last lines:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn tail(&self) -> String {
        let t = self.log_tail.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// The address in the exporter's JSON `listening` log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let message = v.get("message").or_else(|| v.pointer("/fields/message"))?;
    if message.as_str()? != "listening" {
        return None;
    }
    let addr = v.get("address").or_else(|| v.pointer("/fields/address"))?;
    addr.as_str()?.parse().ok()
}

/// `d` in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// KiB in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The value at quantile `q` of sorted `v` (nearest rank), or the default when empty.
pub fn quantile<T: Copy + Default>(v: &[T], q: f64) -> T {
    if v.is_empty() {
        return T::default();
    }
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v.get(i.min(v.len() - 1)).copied().unwrap_or_default()
}
