//! The frame and the formatting both pages share: the document head with its inline style
//! and navigation bar, HTML escaping, task status names, and times (UTC, spans, "12s ago").

use std::fmt::Write as _;

use super::row::PageInfo;
use crate::model::status;

/// The style both pages share.
const CSS: &str = "\
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--bad:#cf222e}\
*{box-sizing:border-box}\
body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans',sans-serif;color:var(--fg);background:#fff}\
header{background:#24292f;padding:.55em 1.5em;display:flex;flex-wrap:wrap;gap:.3em 1.4em;align-items:baseline}\
header a{color:#e6edf3;text-decoration:none}header a:hover{color:#fff;text-decoration:underline}\
header .brand{font-weight:600;color:#fff;margin-right:.6em}\
main{padding:.8em 1.5em 2em;max-width:1500px}main.narrow{max-width:68em}\
h1{font-size:1.45em;margin:.4em 0 .2em}h2{font-size:1.15em;margin:1.4em 0 .5em}\
p{margin:.4em 0}a{color:#0969da}code{background:var(--soft);padding:0 .25em;border-radius:3px}\
table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid var(--line);vertical-align:top}\
th{background:var(--soft);font-weight:600;white-space:nowrap}\
table.t{table-layout:fixed}table.t td{overflow-wrap:anywhere}\
table.t th:nth-child(1){width:23%}table.t th:nth-child(2){width:7%}table.t th:nth-child(3){width:11%}\
table.t th:nth-child(4){width:20%}table.t th:nth-child(5){width:8%}table.t th:nth-child(6){width:19%}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.badge{display:inline-block;padding:0 .55em;border-radius:1em;font-size:.85em;font-weight:600;white-space:nowrap}\
.up{background:#dafbe1;color:#116329}.down{background:#ffebe9;color:#a40e26}\
.pending{background:#eaeef2;color:#59636e}.tf{background:#fff1e5;color:#953800}\
tr.fail{background:#fff8f7}tr.fail>td:first-child{box-shadow:inset 3px 0 var(--bad)}\
tr:target{outline:2px solid #0969da;outline-offset:-2px}\
.err{color:#a40e26;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em;overflow-wrap:anywhere}\
.clip{display:-webkit-box;-webkit-box-orient:vertical;-webkit-line-clamp:2;line-clamp:2;overflow:hidden}\
.muted{color:var(--muted);font-size:.85em}.bad{color:var(--bad);font-weight:600}\
.lbl{display:inline-block;background:var(--soft);border:1px solid var(--line);border-radius:3px;\
padding:0 .3em;margin:.15em .25em 0 0;font-size:.8em;color:var(--muted)}\
.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.92em;overflow-wrap:anywhere}\
details{border:1px solid var(--line);border-radius:6px;margin:.7em 0;background:#fff}\
details>summary{cursor:pointer;padding:.45em .8em;background:var(--soft);border-radius:6px}\
details[open]>summary{border-bottom:1px solid var(--line);border-radius:6px 6px 0 0}\
details details{margin:.6em .8em}details details>summary{background:#fff}\
summary .count{color:var(--muted);font-weight:400;margin-left:.5em}\
form.filter{display:flex;flex-wrap:wrap;gap:.6em 1.2em;align-items:center;margin:.6em 0;\
padding:.6em .8em;background:var(--soft);border:1px solid var(--line);border-radius:6px}\
form.filter input[type=search]{width:22em;max-width:100%;padding:.3em .5em;border:1px solid var(--line);border-radius:4px;font:inherit}\
form.filter button{padding:.3em .9em;font:inherit;border:1px solid var(--line);border-radius:4px;background:#fff;cursor:pointer}\
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1.2em;margin:.5em 0}\
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}\
ul.plain{padding-left:1.2em;margin:.3em 0}ul.plain li{margin:.35em 0}\
.more{padding:.5em .8em;color:var(--muted)}\
";

/// The document head, the navigation bar and the opening `<main>`.
pub(super) fn open_page(out: &mut String, info: &PageInfo, title: &str, main_class: &str) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
    );
    escape_into(out, title);
    out.push_str(" · ");
    escape_into(out, &info.name);
    out.push_str("</title>\n<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n<header><a class=\"brand\" href=\"./\">");
    escape_into(out, &info.name);
    out.push_str("</a>");
    let standard = [
        ("targets", "Targets"),
        ("metrics", "Metrics"),
        ("-/healthy", "Health"),
        ("-/ready", "Readiness"),
    ];
    for (href, text) in standard {
        let _ = write!(out, "<a href=\"{href}\">{text}</a>");
    }
    for link in &info.extra_links {
        out.push_str("<a href=\"");
        escape_into(out, &link.href);
        out.push_str("\">");
        escape_into(out, &link.text);
        out.push_str("</a>");
    }
    let _ = write!(out, "</header>\n<main class=\"{main_class}\">\n");
}

pub(super) fn close_page(out: &mut String, script: Option<&str>) {
    out.push_str("</main>\n");
    if let Some(script) = script {
        out.push_str("<script>");
        out.push_str(script);
        out.push_str("</script>\n");
    }
    out.push_str("</body>\n</html>\n");
}

/// Appends `text` escaped for HTML element content and double-quoted attribute values.
pub(super) fn escape_into(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// The API's task `Status` in words.
pub(super) fn status_name(status: i64) -> String {
    match status {
        status::UNKNOWN => "Unknown".to_string(),
        status::NOT_STARTED => "Not started".to_string(),
        status::RUNNING => "Running".to_string(),
        status::ENDED => "Ended".to_string(),
        status::FAILED => "Failed".to_string(),
        other => format!("Status {other}"),
    }
}

/// Appends a wall-clock time as `2026-12-01 11:18:27 UTC`; out-of-range values as raw ms.
pub(super) fn write_utc(out: &mut String, ms: i64) {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => {
            let _ = write!(
                out,
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
        }
        Err(_) => {
            let _ = write!(out, "{ms} ms");
        }
    }
}

/// Appends a span of time in at most two units: `12s`, `3m 5s`, `2h 4m`, `3d 7h`.
pub(super) fn write_span(out: &mut String, ms: i64) {
    let s = ms.unsigned_abs() / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let _ = if d > 0 {
        write!(out, "{d}d {h}h")
    } else if h > 0 {
        write!(out, "{h}h {m}m")
    } else if m > 0 {
        write!(out, "{m}m {sec}s")
    } else {
        write!(out, "{sec}s")
    };
}

/// Appends how long ago `at_ms` was: `12s ago`, or `just now` within a second; a time in the
/// future (clocks disagree) reads `in 3s`.
pub(super) fn write_ago(out: &mut String, now_ms: i64, at_ms: i64) {
    let delta = now_ms.saturating_sub(at_ms);
    if delta.abs() < 1000 {
        out.push_str("just now");
    } else if delta > 0 {
        write_span(out, delta);
        out.push_str(" ago");
    } else {
        out.push_str("in ");
        write_span(out, delta);
    }
}

/// Appends when `due_ms` is: `in 3s`, `now` within a second, `overdue 5s` past it.
pub(super) fn write_due(out: &mut String, now_ms: i64, due_ms: i64) {
    let delta = due_ms.saturating_sub(now_ms);
    if delta.abs() < 1000 {
        out.push_str("now");
    } else if delta > 0 {
        out.push_str("in ");
        write_span(out, delta);
    } else {
        out.push_str("overdue ");
        write_span(out, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut String)) -> String {
        let mut out = String::new();
        f(&mut out);
        out
    }

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            s(|o| escape_into(o, "<script>alert(\"x\" & 'y')</script>")),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(s(|o| escape_into(o, "plain ünïcode")), "plain ünïcode");
        assert_eq!(s(|o| escape_into(o, "")), "");
    }

    #[test]
    fn utc_times() {
        // 2023-11-14 22:13:20.123 UTC
        assert_eq!(
            s(|o| write_utc(o, 1_700_000_000_123)),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(s(|o| write_utc(o, 0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(s(|o| write_utc(o, -1)), "1969-12-31 23:59:59 UTC");
        assert_eq!(s(|o| write_utc(o, i64::MAX)), format!("{} ms", i64::MAX));
    }

    #[test]
    fn relative_times() {
        let now = 1_700_000_000_000;
        assert_eq!(s(|o| write_ago(o, now, now - 12_400)), "12s ago");
        assert_eq!(s(|o| write_ago(o, now, now - 999)), "just now");
        assert_eq!(s(|o| write_ago(o, now, now - 185_000)), "3m 5s ago");
        assert_eq!(s(|o| write_ago(o, now, now - 7_440_000)), "2h 4m ago");
        assert_eq!(s(|o| write_ago(o, now, now - 284_400_000)), "3d 7h ago");
        assert_eq!(s(|o| write_ago(o, now, now + 3_000)), "in 3s");
        assert_eq!(s(|o| write_due(o, now, now + 3_200)), "in 3s");
        assert_eq!(s(|o| write_due(o, now, now + 500)), "now");
        assert_eq!(s(|o| write_due(o, now, now - 5_000)), "overdue 5s");
        assert_eq!(s(|o| write_due(o, now, now + 3_600_000)), "in 1h 0m");
        assert_eq!(
            s(|o| write_ago(o, i64::MAX, i64::MIN)),
            "106751991167d 7h ago"
        );
    }

    #[test]
    fn status_names() {
        assert_eq!(status_name(status::RUNNING), "Running");
        assert_eq!(status_name(status::FAILED), "Failed");
        assert_eq!(status_name(9), "Status 9");
    }
}
