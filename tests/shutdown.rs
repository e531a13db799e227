//! SIGTERM and SIGINT end the real binary cleanly: the signal is logged, then `stopped`, and
//! the exit status is 0. The handlers are installed before the process prints anything, so a
//! signal sent at once after its first output line (stdout or stderr) is handled too: checked
//! 100 times on `demo` and 20 times on the exporter with a config, alternating the signals.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{scratch_dir, BIN};

/// When to send the signal.
#[derive(Debug, Clone, Copy)]
enum When {
    /// At once after the first line on stdout or stderr.
    FirstLine,
    /// After the demo says where it listens.
    Listening,
}

/// Starts the binary with `args`, sends `signal` at `when`, and checks the exit: status 0, the
/// signal logged, then `stopped`. Returns the log on failure.
fn stops_on(args: &[String], signal: &str, when: When) -> Result<(), String> {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start: {e}"))?;
    // Both pipes are read to the end on their own threads (a full pipe never blocks the
    // child), each line sent here as it comes, tagged with its stream.
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    for (is_err, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ),
    ] {
        let Some(pipe) = pipe else { continue };
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send((is_err, line));
            }
        }));
    }
    drop(tx);
    let mut stderr = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok((is_err, line)) = rx.recv_timeout(left) else {
            let _ = child.kill();
            return Err(format!("no output to signal after:\n{}", stderr.join("\n")));
        };
        let ready = match when {
            When::FirstLine => true,
            When::Listening => line.contains("exporter listening on"),
        };
        if is_err {
            stderr.push(line);
        }
        if ready {
            break;
        }
    }
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .map_err(|e| format!("run kill: {e}"))?;
    if !sent.success() {
        return Err(format!("kill -{signal} failed"));
    }
    // The child must end by itself well within the drain's grace period.
    let exit = loop {
        match child.try_wait() {
            Ok(Some(exit)) => break exit,
            Ok(None) if tokio::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => {
                let _ = child.kill();
                return Err(format!("SIG{signal}: still running after 30 s"));
            }
        }
    };
    for r in readers {
        let _ = r.join();
    }
    stderr.extend(rx.try_iter().filter(|(is_err, _)| *is_err).map(|(_, l)| l));
    let log = stderr.join("\n");
    if !exit.success() {
        return Err(format!("SIG{signal}: exit {exit:?}\n{log}"));
    }
    let shutting = stderr
        .iter()
        .position(|l| l.contains("shutting down") && l.contains(&format!("signal=SIG{signal}")))
        .ok_or_else(|| format!("no shutdown line for SIG{signal}:\n{log}"))?;
    let stopped = stderr
        .iter()
        .position(|l| l.contains("message=stopped"))
        .ok_or_else(|| format!("no `stopped` line after SIG{signal}:\n{log}"))?;
    if shutting > stopped {
        return Err(format!("`stopped` before the shutdown line:\n{log}"));
    }
    Ok(())
}

fn demo_args() -> Vec<String> {
    vec!["demo".into(), "--web.listen-address=127.0.0.1:0".into()]
}

/// Runs `runs` starts on two threads (the machine has few cores); every failure is reported.
fn many(runs: usize, args: impl Fn(usize) -> Vec<String> + Sync) {
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for lane in 0..2 {
            let (failures, args) = (&failures, &args);
            s.spawn(move || {
                for i in (lane..runs).step_by(2) {
                    let signal = if i % 4 < 2 { "TERM" } else { "INT" };
                    if let Err(e) = stops_on(&args(i), signal, When::FirstLine) {
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("run {i}: {e}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn sigterm_is_logged_then_stopped() {
    stops_on(&demo_args(), "TERM", When::Listening).unwrap();
}

#[test]
fn sigint_is_logged_then_stopped() {
    stops_on(&demo_args(), "INT", When::Listening).unwrap();
}

#[test]
fn a_signal_right_after_the_first_line_stops_demo_cleanly_100_times() {
    many(100, |_| demo_args());
}

#[test]
fn a_signal_right_after_the_first_line_stops_the_exporter_cleanly() {
    let dir = scratch_dir("shutdown-exporter");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "api:\n  endpoint: http://127.0.0.1:9\ncredentials:\n  access_key_id: AKLTdemo\n  \
         secret_access_key: c2VjcmV0\ntargets:\n  - kind: record\n    app_id: app1\n    \
         room_id: room1\n    task_id: task1\n",
    )
    .unwrap();
    many(20, |i| {
        vec![
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join(format!("data-{i}")).display()),
            "--web.listen-address=127.0.0.1:0".into(),
        ]
    });
}
