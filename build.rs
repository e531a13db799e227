//! Sets `VOLC_EXPORTER_REVISION` (shown in `volcengine_rtc_exporter_build_info` and on the
//! landing page) from the environment if given (container builds), else from `git`, else
//! leaves it unset (`unknown`).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=VOLC_EXPORTER_REVISION");
    if std::env::var_os("VOLC_EXPORTER_REVISION").is_some() {
        return;
    }
    for path in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit()));
    if let Some(rev) = revision {
        println!("cargo:rustc-env=VOLC_EXPORTER_REVISION={rev}");
    }
}
