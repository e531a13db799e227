//! SIGTERM and SIGINT are logged: the real binary's `demo` is started, signalled with `kill`,
//! and must log the signal, then `stopped`, and exit 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

fn stops_on(signal: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_volcengine-rtc-exporter"))
        .args(["demo", "--web.listen-address=127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("exporter listening on"));
    assert!(listening, "demo did not start");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(exit.success(), "{exit:?}\n{stderr}");
    let shutting = stderr
        .lines()
        .position(|l| l.contains("shutting down") && l.contains(&format!("signal=SIG{signal}")))
        .unwrap_or_else(|| panic!("no shutdown line for SIG{signal}:\n{stderr}"));
    let stopped = stderr
        .lines()
        .position(|l| l.contains("message=stopped"))
        .unwrap_or_else(|| panic!("no `stopped` line:\n{stderr}"));
    assert!(shutting < stopped, "{stderr}");
}

#[test]
fn sigterm_is_logged_then_stopped() {
    stops_on("TERM");
}

#[test]
fn sigint_is_logged_then_stopped() {
    stops_on("INT");
}
