//! `/`: what this exporter is, where its endpoints are, and a summary worth opening the page
//! for: targets by phase per kind, the failing targets, and the tasks that failed in the last
//! 24 hours. Each listed target links to its row on the targets page.

use std::fmt::Write as _;

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::html::{close_page, escape_into, open_page, status_name, write_ago, write_utc};
use super::row::{PageInfo, TargetRow};
use crate::model::Kind;
use crate::scheduler::Phase;

/// How many failing targets the landing page lists by name.
pub const FAILING_LISTED: usize = 10;
/// How many failed tasks the landing page lists by name.
pub const FAILED_TASKS_LISTED: usize = 20;
/// How far back "tasks failed recently" looks.
const FAILED_TASK_WINDOW_MS: i64 = 24 * 3600 * 1000;
/// Longer errors are cut on the landing page (the targets page shows them whole).
const ERROR_CHARS: usize = 160;

/// The landing page `/` for these targets.
pub fn landing_page(info: &PageInfo, rows: &[TargetRow]) -> String {
    let mut out = String::with_capacity(8192);
    open_page(&mut out, info, "Home", "narrow");
    out.push_str("<h1>");
    escape_into(&mut out, &info.name);
    out.push_str(
        "</h1>\n<p>Prometheus exporter for Volcengine RTC cloud recording and web-capture \
         tasks.</p>\n<p>Version <code>",
    );
    escape_into(&mut out, &info.version);
    out.push_str("</code>, revision <code>");
    escape_into(&mut out, &info.revision);
    out.push_str("</code> · as of ");
    write_utc(&mut out, info.now_ms);
    out.push_str("</p>\n");
    if !info.facts.is_empty() {
        out.push_str("<dl class=\"facts\">");
        for (name, value) in &info.facts {
            out.push_str("<dt>");
            escape_into(&mut out, name);
            out.push_str("</dt><dd>");
            escape_into(&mut out, value);
            out.push_str("</dd>");
        }
        out.push_str("</dl>\n");
    }

    write_phase_table(&mut out, rows);
    write_failing(&mut out, info.now_ms, rows);
    write_failed_tasks(&mut out, info.now_ms, rows);
    close_page(&mut out, None);
    out
}

fn write_phase_table(out: &mut String, rows: &[TargetRow]) {
    let mut counts = [[0usize; 5]; 2];
    for row in rows {
        counts[kind_index(row.kind)][row.phase.index()] += 1;
    }
    let _ = write!(
        out,
        "<h2>Targets by phase</h2>\n<p>{} target{} · <a href=\"targets\">all targets</a></p>\n\
         <table style=\"width:auto\"><thead><tr><th>Kind</th>",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    );
    for phase in Phase::ALL {
        let _ = write!(out, "<th class=\"n\">{}</th>", phase.as_str());
    }
    out.push_str("<th class=\"n\">total</th></tr></thead><tbody>\n");
    let mut totals = [0usize; 5];
    for kind in Kind::ALL {
        let per_phase = counts[kind_index(kind)];
        let _ = write!(out, "<tr><td>{}</td>", kind.as_str());
        for (i, n) in per_phase.iter().enumerate() {
            totals[i] += n;
            let _ = write!(out, "<td class=\"n\">{n}</td>");
        }
        let _ = writeln!(
            out,
            "<td class=\"n\">{}</td></tr>",
            per_phase.iter().sum::<usize>()
        );
    }
    out.push_str("<tr><th>total</th>");
    for n in totals {
        let _ = write!(out, "<th class=\"n\">{n}</th>");
    }
    let _ = writeln!(
        out,
        "<th class=\"n\">{}</th></tr>\n</tbody></table>",
        rows.len()
    );
}

fn kind_index(kind: Kind) -> usize {
    match kind {
        Kind::Record => 0,
        Kind::Webcast => 1,
    }
}

fn write_failing(out: &mut String, now_ms: i64, rows: &[TargetRow]) {
    let mut failing: Vec<&TargetRow> = rows.iter().filter(|r| r.is_failing()).collect();
    failing.sort_by(|a, b| {
        (&a.app_id, a.phase, a.kind, &a.room_id, &a.task_id)
            .cmp(&(&b.app_id, b.phase, b.kind, &b.room_id, &b.task_id))
    });
    let _ = write!(out, "<h2>Targets down (their polls fail): ");
    if failing.is_empty() {
        out.push_str("0</h2>\n<p>Every polled target answered its last poll.</p>\n");
        return;
    }
    let _ = writeln!(out, "<span class=\"bad\">{}</span></h2>", failing.len());
    out.push_str("<ul class=\"plain\">\n");
    for row in failing.iter().take(FAILING_LISTED) {
        out.push_str("<li>");
        write_target_link(out, row);
        let _ = write!(out, " <span class=\"muted\">{}", row.kind.as_str());
        if let Some(at) = row.last_poll_ms {
            out.push_str(" · last poll ");
            write_ago(out, now_ms, at);
        }
        out.push_str("</span>");
        if let Some(error) = &row.last_error {
            out.push_str("<br><span class=\"err\">");
            escape_into(out, &shorten(error, ERROR_CHARS));
            out.push_str("</span>");
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
    if failing.len() > FAILING_LISTED {
        let _ = writeln!(
            out,
            "<p>… and {} more: <a href=\"targets?failing=1\">all targets down</a></p>",
            failing.len() - FAILING_LISTED
        );
    } else {
        out.push_str("<p><a href=\"targets?failing=1\">Targets down on the targets page</a></p>\n");
    }
}

fn write_failed_tasks(out: &mut String, now_ms: i64, rows: &[TargetRow]) {
    let since = now_ms.saturating_sub(FAILED_TASK_WINDOW_MS);
    let mut failed: Vec<(&TargetRow, i64)> = rows
        .iter()
        .filter(|r| r.task_failed())
        .filter_map(|r| {
            r.end_time_ms
                .filter(|&end| end >= since)
                .map(|end| (r, end))
        })
        .collect();
    failed.sort_by(|(a, a_end), (b, b_end)| {
        b_end.cmp(a_end).then_with(|| {
            (&a.app_id, &a.room_id, &a.task_id).cmp(&(&b.app_id, &b.room_id, &b.task_id))
        })
    });
    let _ = write!(out, "<h2>Tasks failed in the last 24 h: ");
    if failed.is_empty() {
        out.push_str(
            "0</h2>\n<p>No task ended with Status 4 (failed) or StopReason \
             <code>StartTaskFailed</code>.</p>\n",
        );
        return;
    }
    let _ = writeln!(out, "<span class=\"bad\">{}</span></h2>", failed.len());
    out.push_str(
        "<table><thead><tr><th>Ended</th><th>Target</th><th>Kind</th><th>Status</th>\
         <th>Stop reason</th></tr></thead><tbody>\n",
    );
    for (row, end) in failed.iter().take(FAILED_TASKS_LISTED) {
        out.push_str("<tr><td>");
        write_ago(out, now_ms, *end);
        out.push_str("<br><span class=\"muted\">");
        write_utc(out, *end);
        out.push_str("</span></td><td>");
        write_target_link(out, row);
        let _ = write!(out, "</td><td>{}</td><td>", row.kind.as_str());
        match row.status {
            Some(s) => {
                let _ = write!(out, "<span class=\"badge tf\">{}</span>", status_name(s));
            }
            None => out.push('—'),
        }
        out.push_str("</td><td>");
        escape_into(out, row.stop_reason.as_deref().unwrap_or("—"));
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n");
    if failed.len() > FAILED_TASKS_LISTED {
        let _ = writeln!(
            out,
            "<p class=\"muted\">… and {} more.</p>",
            failed.len() - FAILED_TASKS_LISTED
        );
    }
}

/// `app / room / task`, linking to the target's row on a targets page filtered down to it (so
/// the row is shown and its section open however many targets there are).
fn write_target_link(out: &mut String, row: &TargetRow) {
    let mut search = format!("{} {}", row.app_id, row.room_id);
    if let Some(task) = &row.task_id {
        search.push(' ');
        search.push_str(task);
    }
    let href = format!(
        "targets?q={}#{}",
        utf8_percent_encode(&search, NON_ALPHANUMERIC),
        row.anchor()
    );
    out.push_str("<a href=\"");
    escape_into(out, &href);
    out.push_str("\"><span class=\"id\">");
    escape_into(out, &row.app_id);
    out.push_str("</span> / <span class=\"id\">");
    escape_into(out, &row.room_id);
    out.push_str("</span> / ");
    match &row.task_id {
        Some(task) => {
            out.push_str("<span class=\"id\">");
            escape_into(out, task);
            out.push_str("</span>");
        }
        None => out.push_str("<i>newest task</i>"),
    }
    out.push_str("</a>");
}

/// At most `max` characters of `text`, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
        assert_eq!(shorten("会议录制", 2), "会议…");
    }
}
