//! `/targets`: every target, grouped by app and then phase, in collapsible sections with counts.
//!
//! The filter is a GET form (`?q=…&failing=1`) applied while rendering, so the page works
//! without JavaScript; a short inline script only filters as you type. A phase section shows at
//! most [`TargetsQuery::rows_per_group`] rows (failing ones first), with a link to show all.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};

use super::html::{
    close_page, escape_into, open_page, status_name, write_ago, write_due, write_utc,
};
use super::row::{Health, PageInfo, TargetRow};
use crate::model::status;
use crate::scheduler::Phase;

/// How many rows a phase section shows unless the query says otherwise.
const DEFAULT_ROWS_PER_GROUP: usize = 1000;

/// What the targets page shows: its query string, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetsQuery {
    /// `q`: words that must all appear (case-insensitively) in a target's app, room, task,
    /// labels, sources, phase, kind, health, status, stop reason, outcome or error.
    pub search: String,
    /// `failing=1`: only targets whose last poll failed.
    pub failing_only: bool,
    /// `limit`: rows shown per phase section; 0 shows all.
    pub rows_per_group: usize,
}

impl Default for TargetsQuery {
    fn default() -> TargetsQuery {
        TargetsQuery {
            search: String::new(),
            failing_only: false,
            rows_per_group: DEFAULT_ROWS_PER_GROUP,
        }
    }
}

impl TargetsQuery {
    /// Parses a request's query string (without the `?`). Unknown parameters are ignored and a
    /// `limit` that is not a number keeps the default: a bad link still shows the page.
    pub fn from_query(query: Option<&str>) -> TargetsQuery {
        let mut parsed = TargetsQuery::default();
        for pair in query.unwrap_or("").split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = value.replace('+', " ");
            let value = percent_decode_str(&value).decode_utf8_lossy();
            match name {
                "q" => parsed.search = value.trim().to_string(),
                "failing" => parsed.failing_only = !matches!(&*value, "" | "0" | "false"),
                "limit" => {
                    if let Ok(limit) = value.trim().parse() {
                        parsed.rows_per_group = limit;
                    }
                }
                _ => {}
            }
        }
        parsed
    }

    fn is_filtering(&self) -> bool {
        self.failing_only || !self.search.is_empty()
    }

    /// This query as a relative link to the targets page, with another row limit.
    fn href_with_limit(&self, limit: usize) -> String {
        let mut href = String::from("targets?");
        if !self.search.is_empty() {
            let _ = write!(
                href,
                "q={}&",
                utf8_percent_encode(&self.search, NON_ALPHANUMERIC)
            );
        }
        if self.failing_only {
            href.push_str("failing=1&");
        }
        let _ = write!(href, "limit={limit}");
        href
    }
}

/// Lower-cased words of the search, all of which a target must contain.
struct Matcher {
    terms: Vec<String>,
    failing_only: bool,
}

impl Matcher {
    fn new(query: &TargetsQuery) -> Matcher {
        Matcher {
            terms: query
                .search
                .split_whitespace()
                .map(str::to_lowercase)
                .collect(),
            failing_only: query.failing_only,
        }
    }

    fn matches(&self, row: &TargetRow) -> bool {
        if self.failing_only && !row.is_failing() {
            return false;
        }
        if self.terms.is_empty() {
            return true;
        }
        let mut text = String::with_capacity(128);
        for part in [
            row.kind.as_str(),
            &row.app_id,
            &row.room_id,
            row.task_id.as_deref().unwrap_or(""),
            row.phase.as_str(),
            row.health().as_str(),
            row.stop_reason.as_deref().unwrap_or(""),
            row.last_outcome.as_deref().unwrap_or(""),
            row.last_error.as_deref().unwrap_or(""),
        ] {
            text.push_str(part);
            text.push(' ');
        }
        if let Some(s) = row.status {
            text.push_str(&status_name(s));
            text.push(' ');
        }
        for (name, value) in &row.labels {
            let _ = write!(text, "{name}={value} ");
        }
        for source in &row.sources {
            text.push_str(source);
            text.push(' ');
        }
        let text = text.to_lowercase();
        self.terms.iter().all(|term| text.contains(term.as_str()))
    }
}

/// Filters as you type: the same rule as the server's, on each row's text plus its app and
/// phase. Without JavaScript the form's GET does the same.
const SCRIPT: &str = "(function(){\
var f=document.getElementById('filter');if(!f)return;var q=f.elements.q,c=f.elements.failing,t;\
function apply(){var w=q.value.toLowerCase().split(/\\s+/).filter(Boolean),only=c.checked;\
document.querySelectorAll('details.phase').forEach(function(d){var n=0,\
p=(d.parentNode.getAttribute('data-app')+' '+d.getAttribute('data-phase')+' ').toLowerCase();\
d.querySelectorAll('tbody tr').forEach(function(r){var s=p+r.textContent.toLowerCase(),\
ok=(!only||r.classList.contains('fail'))&&w.every(function(x){return s.indexOf(x)>=0});\
r.hidden=!ok;if(ok)n++});d.hidden=n===0;if(n&&(w.length||only))d.open=true});\
document.querySelectorAll('details.app').forEach(function(a){\
a.hidden=!a.querySelector('details.phase:not([hidden])')})}\
q.addEventListener('input',function(){clearTimeout(t);t=setTimeout(apply,150)});\
c.addEventListener('change',apply)})();";

/// The `/targets` page for these targets.
pub fn targets_page(info: &PageInfo, rows: &[TargetRow], query: &TargetsQuery) -> String {
    let matcher = Matcher::new(query);
    let mut apps: BTreeMap<&str, [Vec<&TargetRow>; 5]> = BTreeMap::new();
    let mut failing_total = 0;
    let mut shown = 0;
    for row in rows {
        failing_total += usize::from(row.is_failing());
        if matcher.matches(row) {
            shown += 1;
            apps.entry(&row.app_id).or_default()[row.phase.index()].push(row);
        }
    }

    let mut out = String::with_capacity(4096 + shown * 700);
    open_page(&mut out, info, "Targets", "wide");
    out.push_str("<h1>Targets</h1>\n<p class=\"muted\">");
    let app_total = {
        let mut ids: Vec<&str> = rows.iter().map(|r| r.app_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let _ = write!(
        out,
        "{} in {} · ",
        plural(rows.len(), "target"),
        plural(app_total, "app")
    );
    if failing_total > 0 {
        let _ = write!(out, "<span class=\"bad\">{failing_total} down</span>");
    } else {
        out.push_str("0 down");
    }
    out.push_str(" · as of ");
    write_utc(&mut out, info.now_ms);
    out.push_str("</p>\n");

    write_filter_form(&mut out, query);
    if query.is_filtering() {
        let _ = writeln!(
            out,
            "<p>Showing {shown} of {}.</p>",
            plural(rows.len(), "target")
        );
    }
    if rows.is_empty() {
        out.push_str("<p>No targets yet.</p>\n");
    } else if shown == 0 {
        out.push_str("<p>No target matches the filter.</p>\n");
    }

    for (app, phases) in &mut apps {
        let app_count: usize = phases.iter().map(Vec::len).sum();
        let app_failing: usize = phases.iter().flatten().filter(|r| r.is_failing()).count();
        out.push_str("<details class=\"app\" open data-app=\"");
        escape_into(&mut out, app);
        out.push_str("\"><summary><b>App <span class=\"id\">");
        escape_into(&mut out, app);
        out.push_str("</span></b>");
        write_counts(&mut out, app_count, app_failing);
        out.push_str("</summary>\n");
        for phase in Phase::ALL {
            let group = &mut phases[phase.index()];
            if group.is_empty() {
                continue;
            }
            group.sort_by(|a, b| {
                (!a.is_failing(), a.kind, &a.room_id, &a.task_id).cmp(&(
                    !b.is_failing(),
                    b.kind,
                    &b.room_id,
                    &b.task_id,
                ))
            });
            write_group(&mut out, info.now_ms, query, phase, group);
        }
        out.push_str("</details>\n");
    }
    close_page(&mut out, Some(SCRIPT));
    out
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn write_counts(out: &mut String, count: usize, failing: usize) {
    let _ = write!(out, "<span class=\"count\">{}", plural(count, "target"));
    if failing > 0 {
        let _ = write!(out, " · <span class=\"bad\">{failing} down</span>");
    }
    out.push_str("</span>");
}

fn write_filter_form(out: &mut String, query: &TargetsQuery) {
    out.push_str(
        "<form class=\"filter\" id=\"filter\" method=\"get\" action=\"targets\">\
         <input type=\"search\" name=\"q\" aria-label=\"Filter\" \
         placeholder=\"Filter: app, room, task, label, error…\" value=\"",
    );
    escape_into(out, &query.search);
    out.push_str("\"><label><input type=\"checkbox\" name=\"failing\" value=\"1\"");
    if query.failing_only {
        out.push_str(" checked");
    }
    out.push_str("> Down only (polls failing)</label>");
    if query.rows_per_group != DEFAULT_ROWS_PER_GROUP {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"limit\" value=\"{}\">",
            query.rows_per_group
        );
    }
    out.push_str("<button type=\"submit\">Apply</button>");
    if query.is_filtering() {
        out.push_str("<a href=\"targets\">Clear</a>");
    }
    out.push_str("</form>\n");
}

/// One phase of one app: a collapsible table, open unless it holds only finished targets
/// that are all well (done and expired ones can be thousands).
fn write_group(
    out: &mut String,
    now_ms: i64,
    query: &TargetsQuery,
    phase: Phase,
    group: &[&TargetRow],
) {
    let failing = group.iter().filter(|r| r.is_failing()).count();
    let open =
        failing > 0 || query.is_filtering() || !matches!(phase, Phase::Done | Phase::Expired);
    let _ = write!(
        out,
        "<details class=\"phase\" data-phase=\"{0}\"{1}><summary>Phase <b>{0}</b>",
        phase.as_str(),
        if open { " open" } else { "" }
    );
    write_counts(out, group.len(), failing);
    out.push_str(
        "</summary>\n<table class=\"t\"><thead><tr><th>Target</th><th>Health</th><th>Task</th>\
         <th>Last poll</th><th>Next due</th><th>Last error</th><th>Source</th></tr></thead>\
         <tbody>\n",
    );
    let limit = if query.rows_per_group == 0 {
        group.len()
    } else {
        query.rows_per_group.min(group.len())
    };
    for row in &group[..limit] {
        write_row(out, now_ms, row);
    }
    out.push_str("</tbody></table>\n");
    if limit < group.len() {
        let _ = write!(
            out,
            "<div class=\"more\">Showing {limit} of {} (down first). \
             <a href=\"",
            group.len()
        );
        escape_into(out, &query.href_with_limit(0));
        out.push_str("\">Show all</a> or narrow the filter.</div>\n");
    }
    out.push_str("</details>\n");
}

fn write_row(out: &mut String, now_ms: i64, row: &TargetRow) {
    let health = row.health();
    let _ = write!(out, "<tr id=\"{}\"", row.anchor());
    if health == Health::Down {
        out.push_str(" class=\"fail\"");
    }
    out.push_str("><td>");
    write_target_cell(out, row);

    let _ = write!(
        out,
        "</td><td><span class=\"badge {0}\">{0}</span></td><td>",
        health.as_str()
    );
    write_task_cell(out, now_ms, row);

    out.push_str("</td><td>");
    match row.last_poll_ms {
        Some(at) => {
            write_ago(out, now_ms, at);
            out.push_str("<br><span class=\"muted\">");
            write_utc(out, at);
            if let Some(outcome) = &row.last_outcome {
                out.push_str(" · ");
                escape_into(out, outcome);
            }
            out.push_str("</span>");
        }
        None => out.push_str("<span class=\"muted\">never</span>"),
    }

    out.push_str("</td><td>");
    match row.next_due_ms {
        Some(due) => write_due(out, now_ms, due),
        None => out.push_str("<span class=\"muted\">not polled</span>"),
    }

    out.push_str("</td><td class=\"err\">");
    if let Some(error) = &row.last_error {
        // At most two lines in the table; the whole error on hover (and in the API).
        out.push_str("<div class=\"clip\" title=\"");
        escape_into(out, error);
        out.push_str("\">");
        escape_into(out, error);
        out.push_str("</div>");
    }
    out.push_str("</td><td class=\"muted\">");
    for (i, source) in row.sources.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        escape_into(out, source);
    }
    out.push_str("</td></tr>\n");
}

/// The first cell of a row: room, task, kind and labels.
fn write_target_cell(out: &mut String, row: &TargetRow) {
    out.push_str("<span class=\"id\">");
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
    let _ = write!(out, " <span class=\"muted\">{}</span>", row.kind.as_str());
    if !row.labels.is_empty() {
        out.push_str("<br>");
        for (name, value) in &row.labels {
            out.push_str("<span class=\"lbl\">");
            escape_into(out, name);
            out.push('=');
            escape_into(out, value);
            out.push_str("</span>");
        }
    }
}

/// The task cell of a row: its status, stop reason and end.
fn write_task_cell(out: &mut String, now_ms: i64, row: &TargetRow) {
    match row.status {
        Some(s) => {
            let class = if row.task_failed() {
                "tf"
            } else if s == status::RUNNING {
                "up"
            } else {
                "pending"
            };
            let _ = write!(
                out,
                "<span class=\"badge {class}\">{}</span>",
                status_name(s)
            );
        }
        None if row.task_failed() => out.push_str("<span class=\"badge tf\">Failed</span>"),
        None => out.push_str("<span class=\"muted\">—</span>"),
    }
    if let Some(reason) = &row.stop_reason {
        out.push_str("<br><span class=\"muted\">");
        escape_into(out, reason);
        out.push_str("</span>");
    }
    if let Some(end) = row.end_time_ms.filter(|&t| t > 0) {
        out.push_str("<br><span class=\"muted\">ended ");
        write_ago(out, now_ms, end);
        out.push_str("</span>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(TargetsQuery::from_query(None), TargetsQuery::default());
        assert_eq!(TargetsQuery::from_query(Some("")), TargetsQuery::default());
        let q = TargetsQuery::from_query(Some("q=team%3Da+room+1&failing=1&limit=50&x=y"));
        assert_eq!(q.search, "team=a room 1");
        assert!(q.failing_only);
        assert_eq!(q.rows_per_group, 50);
        let q = TargetsQuery::from_query(Some("failing=0&limit=lots&q=%E4%BC%9A%ZZ"));
        assert!(!q.failing_only);
        assert_eq!(q.rows_per_group, DEFAULT_ROWS_PER_GROUP);
        assert_eq!(q.search, "会%ZZ");
        assert!(TargetsQuery::from_query(Some("failing=on")).failing_only);
        assert!(!TargetsQuery::from_query(Some("failing")).failing_only);
    }

    #[test]
    fn show_all_link_keeps_the_filter() {
        let q = TargetsQuery {
            search: "a&b <c>".into(),
            failing_only: true,
            rows_per_group: 10,
        };
        assert_eq!(
            q.href_with_limit(0),
            "targets?q=a%26b%20%3Cc%3E&failing=1&limit=0"
        );
        assert_eq!(
            TargetsQuery::from_query(q.href_with_limit(0).strip_prefix("targets?")),
            TargetsQuery {
                rows_per_group: 0,
                ..q
            }
        );
    }
}
