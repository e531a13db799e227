//! Repository files and the external tools (promtool, amtool, Prometheus, Alertmanager) for the
//! tests that check the shipped examples, rules and dashboards: every file finds and runs them
//! the same way. A missing tool is a failure, never a skip. Kept apart from `common` (the
//! exporter and simulator harness, with its own parser test) so these files neither build that
//! harness nor run that test again. Each test file uses only part of this module, hence
//! `allow(dead_code)`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A file or folder of the repository, by its path from the root.
pub fn repo_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A text file of the repository; panics naming the file when it cannot be read.
pub fn read_repo_file(path: &str) -> String {
    std::fs::read_to_string(repo_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file of the repository, parsed; panics naming the file when it is not valid YAML.
pub fn repo_yaml(path: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read_repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The program to run for an external tool: `$env` when set, else the first of `candidates`
/// that exists, else the last candidate's file name, left to the PATH. A missing tool is not
/// skipped: running it fails (`scripts/install-test-deps` installs them).
pub fn tool(env: &str, candidates: &[&str]) -> String {
    if let Ok(p) = std::env::var(env) {
        return p;
    }
    for c in candidates {
        if Path::new(c).exists() {
            return c.to_string();
        }
    }
    candidates
        .last()
        .and_then(|c| Path::new(c).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string()
}

/// promtool: `$PROMTOOL`, else `/usr/bin/promtool`, else `promtool` on the PATH.
pub fn promtool_program() -> String {
    tool("PROMTOOL", &["/usr/bin/promtool"])
}

/// Runs `program` with `args` in the repository root and waits for it; panics when it cannot
/// be started.
pub fn run_in_repo(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); install it with scripts/install-test-deps")
        })
}

/// `promtool` with `args`, run in the repository root.
pub fn promtool(args: &[&str]) -> Output {
    run_in_repo(&promtool_program(), args)
}

/// What a finished command printed: its stdout, then its stderr.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
