//! Sets `VOLC_EXPORTER_REVISION` (shown in `volcengine_rtc_exporter_build_info` and on the
//! landing page) from the environment if given (container builds), else from `git`, else
//! leaves it unset (`unknown`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VOLC_EXPORTER_REVISION");
    let revision = std::env::var("VOLC_EXPORTER_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision);
    if let Some(rev) = &revision {
        println!("cargo:rustc-env=VOLC_EXPORTER_REVISION={rev}");
    }
    // `--version`: "0.1.0 (revision 0123456789ab)".
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let revision = revision.as_deref().unwrap_or("unknown");
    println!("cargo:rustc-env=VOLC_EXPORTER_LONG_VERSION={version} (revision {revision})");
}

fn git_revision() -> Option<String> {
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()))
}
