//! The `volcengine-rtc-exporter` binary: parse flags, run, turn the result into an exit code.

fn main() {
    println!("volcengine-rtc-exporter {}", env!("CARGO_PKG_VERSION"));
}
