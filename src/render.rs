//! The `/metrics` body: task families from the [`crate::store::Store`] plus the self-metrics of
//! [`crate::telemetry::Telemetry`]; the text-format helpers both use (label-value escaping and
//! exact millisecond-to-second numbers).
//!
//! The output is Prometheus text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`).

use std::fmt::Write as _;

use crate::store::Store;
use crate::telemetry::Telemetry;

/// The `Content-Type` of the body [`render`] produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Append the whole `/metrics` body: the store's per-target families, then the self-metrics.
///
/// Never waits on the API: the store's text is kept ready by the pollers, so this only copies.
/// The output buffer is grown once, to its final size, before anything is copied: a 24 MB
/// body that had to be re-allocated half-way would cost a copy and fresh page faults.
pub fn render(store: &Store, telemetry: &Telemetry, out: &mut Vec<u8>) {
    let mut own = Vec::new();
    telemetry.encode(&mut own);
    out.reserve(store.render_size_hint() + own.len());
    store.render(out);
    out.extend_from_slice(&own);
}

/// Append `value` escaped as a label value of the text format: `\` → `\\`, `"` → `\"`,
/// newline → `\n`; everything else (any UTF-8) is kept as is.
pub fn push_label_value(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Append `name="value"` with the value escaped.
pub fn push_label(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_label_value(out, value);
    out.push('"');
}

/// Append a millisecond count as seconds, exactly and as short as possible:
/// `1700000000123` → `1700000000.123`, `1500` → `1.5`, `2000` → `2`, `-1` → `-0.001`.
///
/// Integer arithmetic only, so no binary floating-point artefacts (`…0.1230001`) can appear.
pub fn push_millis_as_seconds(out: &mut String, ms: i64) {
    let abs = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    let secs = abs / 1000;
    let mut frac = abs % 1000;
    let _ = write!(out, "{secs}");
    if frac == 0 {
        return;
    }
    let mut digits = 3;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    let _ = write!(out, ".{frac:0digits$}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(ms: i64) -> String {
        let mut s = String::new();
        push_millis_as_seconds(&mut s, ms);
        s
    }

    fn esc(v: &str) -> String {
        let mut s = String::new();
        push_label_value(&mut s, v);
        s
    }

    #[test]
    fn millis_are_exact_and_short() {
        assert_eq!(secs(1_700_000_000_123), "1700000000.123");
        assert_eq!(secs(1_700_000_000_120), "1700000000.12");
        assert_eq!(secs(1_700_000_000_100), "1700000000.1");
        assert_eq!(secs(1_700_000_000_000), "1700000000");
        assert_eq!(secs(1_700_000_000_001), "1700000000.001");
        assert_eq!(secs(1_700_000_000_010), "1700000000.01");
        assert_eq!(secs(0), "0");
        assert_eq!(secs(5), "0.005");
        assert_eq!(secs(-1), "-0.001");
        assert_eq!(secs(-1500), "-1.5");
        assert_eq!(secs(i64::MIN), "-9223372036854775.808");
        assert_eq!(secs(i64::MAX), "9223372036854775.807");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("plain"), "plain");
        assert_eq!(esc(""), "");
        assert_eq!(esc(r#"a"b"#), r#"a\"b"#);
        assert_eq!(esc(r"a\b"), r"a\\b");
        assert_eq!(esc("a\nb"), r"a\nb");
        assert_eq!(esc("\\n"), r"\\n");
        assert_eq!(esc("}{#, ="), "}{#, =");
        assert_eq!(esc("录制🎥\t"), "录制🎥\t");
        let mut s = String::new();
        push_label(&mut s, "file", "x\"\\\ny");
        assert_eq!(s, r#"file="x\"\\\ny""#);
    }
}
