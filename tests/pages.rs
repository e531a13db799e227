//! The HTML of `/targets` and `/` as text: grouping, counts, row content, the filter, the row
//! limit, the landing page's summary and its links into `/targets`, escaping of hostile
//! strings, and render time for 10,000 targets.

mod pages_common;

use std::time::Duration;

use tokio::time::Instant;

use volc_rtc_exporter::http::pages::{
    landing_page, targets_page, PageInfo, TargetRow, TargetsQuery,
};
use volc_rtc_exporter::model::{status, stop_reason, Kind};
use volc_rtc_exporter::scheduler::Phase;

use pages_common::{ended, failing, fixture, info, row, EVIL_APP, HOUR_MS, NOW_MS};

fn targets(query: &str) -> String {
    targets_page(&info(), &fixture(), &TargetsQuery::from_query(Some(query)))
}

/// The text from `start` up to (not including) the next `end` after it.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in the page:\n{html}"));
    let rest = &html[from..];
    let to = rest[start.len()..]
        .find(end)
        .map_or(rest.len(), |i| i + start.len());
    &rest[..to]
}

/// The `<tr>` of one target.
fn row_html<'a>(html: &'a str, r: &TargetRow) -> &'a str {
    between(html, &format!("<tr id=\"{}\"", r.anchor()), "</tr>")
}

/// One app's section (its phases included).
fn app_section<'a>(html: &'a str, escaped_app: &str) -> &'a str {
    between(
        html,
        &format!("<details class=\"app\" open data-app=\"{escaped_app}\">"),
        "</details>\n</details>\n",
    )
}

fn row_ids(html: &str) -> Vec<&str> {
    html.split("<tr id=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap_or(0)])
        .collect()
}

#[test]
fn targets_are_grouped_by_app_then_phase_with_counts() {
    let html = targets("");
    assert!(
        html.contains("14 targets in 3 apps · <span class=\"bad\">4 down</span> · as of 2026-12-01 11:00:00 UTC"),
        "{html}"
    );
    // Apps in ID order ('<' sorts before 'a').
    let evil = html.find("data-app=\"&lt;script").expect("hostile app");
    let edu = html.find("data-app=\"app-edu\"").expect("app-edu");
    let live = html.find("data-app=\"app-live\"").expect("app-live");
    assert!(evil < edu && edu < live);

    let live = app_section(&html, "app-live");
    assert!(live.contains(
        "<b>App <span class=\"id\">app-live</span></b><span class=\"count\">7 targets · \
         <span class=\"bad\">2 down</span></span>"
    ));
    // Phases in life order; only the phases that have targets; done and expired folded unless
    // something in them fails.
    let phases: Vec<&str> = live
        .split("<details class=\"phase\" data-phase=\"")
        .skip(1)
        .map(|s| &s[..s.find('>').unwrap_or(0)])
        .collect();
    assert_eq!(
        phases,
        ["active\" open", "settling\" open", "done\"", "expired\""]
    );
    assert!(live.contains(
        "Phase <b>active</b><span class=\"count\">3 targets · <span class=\"bad\">1 down</span></span>"
    ));
    assert!(live.contains("Phase <b>done</b><span class=\"count\">2 targets</span>"));
    assert!(live.contains("Phase <b>expired</b><span class=\"count\">1 target</span>"));

    // Failing targets first within their group, then by kind, room and task.
    let active = between(live, "data-phase=\"active\"", "</details>");
    let fx = fixture();
    let by_room = |room: &str| fx.iter().find(|r| r.room_id == room).expect(room);
    assert_eq!(
        row_ids(active),
        [
            by_room("room-1044").anchor(),
            by_room("room-1042").anchor(),
            by_room("room-1043").anchor()
        ]
    );
    let edu = app_section(&html, "app-edu");
    assert!(edu.contains("data-phase=\"new\" open"));
    assert_eq!(row_ids(edu).len(), 5);
}

#[test]
fn rows_show_health_status_times_error_and_source() {
    let html = targets("");
    let fx = fixture();
    let by_room = |room: &str| fx.iter().find(|r| r.room_id == room).expect(room);

    let down = row_html(&html, by_room("room-1044"));
    assert!(down.contains("class=\"fail\""), "{down}");
    assert!(down.contains("<span class=\"badge down\">down</span>"));
    assert!(down.contains("<span class=\"badge up\">Running</span>"));
    assert!(
        down.contains("12s ago<br><span class=\"muted\">2026-12-01 10:59:48 UTC · timeout</span>")
    );
    assert!(down.contains("<td>in 3s</td>"));
    assert!(down.contains("<td class=\"err\"><div class=\"clip\" title=\"timeout after 5s: GET GetRecordTask\">timeout after 5s: GET GetRecordTask</div></td>"));
    assert!(down.contains("<td class=\"muted\">config</td>"));

    let healthy = row_html(&html, by_room("room-1042"));
    assert!(!healthy.contains("fail"));
    assert!(healthy.contains("<span class=\"badge up\">up</span>"));
    assert!(healthy.contains("<td class=\"err\"></td>"));

    let pending = row_html(&html, by_room("class-9"));
    assert!(!pending.contains("class=\"fail\""));
    assert!(pending.contains("<span class=\"badge pending\">pending</span>"));
    assert!(pending.contains("<span class=\"muted\">never</span>"));
    assert!(pending.contains("<td>in 40s</td>"));
    assert!(pending.contains("<span class=\"muted\">—</span>"));
    assert!(pending.contains("<td class=\"muted\">api</td>"));

    let webcast = row_html(&html, by_room("class-10"));
    assert!(webcast.contains("<span class=\"id\">class-10</span> / <i>newest task</i> <span class=\"muted\">webcast</span>"));
    assert!(webcast.contains("<span class=\"lbl\">team=edu</span>"));
    assert!(webcast.contains("file:/etc/volc/targets/edu.yaml, api"));

    let failed_task = row_html(&html, by_room("room-0999"));
    assert!(failed_task.contains("<span class=\"badge tf\">Failed</span>"));
    assert!(failed_task.contains("StartTaskFailed"));
    assert!(failed_task.contains("ended 2h 0m ago"));
    assert!(failed_task.contains("not polled"));
    // StartTaskFailed with Status 3 is a failed task too.
    let start_failed = row_html(&html, by_room("class-8"));
    assert!(start_failed.contains("<span class=\"badge tf\">Ended</span>"));
    assert!(start_failed.contains("ended 20m 0s ago"));
}

#[test]
fn hostile_strings_are_escaped_on_both_pages() {
    let query = TargetsQuery::from_query(Some("q=%22%3E%3Cscript%3Ex"));
    let filtered = targets_page(&info(), &fixture(), &query);
    for html in [targets(""), landing_page(&info(), &fixture())] {
        assert!(!html.contains(EVIL_APP));
        assert!(html.contains("&lt;script&gt;alert(&quot;app&quot;)&lt;/script&gt;"));
        assert!(!html.contains("<img"));
        assert!(!html.contains("<b>bold"));
        assert!(!html.contains("room\"<x>"));
        assert!(html.contains("room&quot;&lt;x&gt;"));
        assert!(html.contains("task&#39;&amp;"));
    }
    let html = targets("");
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt; &#39;quoted&#39; &amp; &lt;b&gt;bold&lt;/b&gt;"));
    assert!(html.contains("a&quot;b&#39;c&amp;d&lt;i&gt;=a&quot;b&#39;c&amp;d&lt;i&gt;"));
    assert!(html.contains("&lt;u&gt;reason&lt;/u&gt;"));
    assert!(html.contains("file:/tmp/&lt;evil&gt;.yaml"));
    // The filter box echoes the query escaped.
    assert!(filtered.contains("value=\"&quot;&gt;&lt;script&gt;x\""));
    assert_eq!(filtered.matches("<script").count(), 1);
    let landing = landing_page(&info(), &fixture());
    assert_eq!(landing.matches("<script").count(), 0);
}

#[test]
fn filter_by_failing_and_by_words() {
    let html = targets("failing=1");
    assert!(html.contains("Showing 4 of 14 targets."));
    assert!(html.contains("name=\"failing\" value=\"1\" checked"));
    assert!(html.contains("<a href=\"targets\">Clear</a>"));
    let ids = row_ids(&html);
    assert_eq!(ids.len(), 4);
    assert_eq!(
        html.matches("<tr id=").count(),
        html.matches("class=\"fail\"").count()
    );

    // Words must all match, case-insensitively, in any field: label, source, health, app.
    assert_eq!(row_ids(&targets("q=TEAM%3Dedu+webcast")).len(), 1);
    assert_eq!(row_ids(&targets("q=edu.yaml")).len(), 1);
    assert_eq!(row_ids(&targets("q=pending")).len(), 1);
    assert_eq!(row_ids(&targets("q=ROOM-1042")).len(), 1);
    assert_eq!(row_ids(&targets("q=app-live")).len(), 7);
    assert_eq!(row_ids(&targets("q=StartTaskFailed")).len(), 2);
    assert_eq!(row_ids(&targets("q=app-live&failing=1")).len(), 2);
    let none = targets("q=class-7+app-live");
    assert!(none.contains("Showing 0 of 14 targets."));
    assert!(none.contains("No target matches the filter."));
    assert!(row_ids(&none).is_empty());
    // While filtering, every section with a match is open, done ones included.
    let done = targets("q=StopByAPI");
    assert!(done.contains("data-phase=\"done\" open"));
    // Unfiltered: no "Showing", no "Clear".
    let all = targets("");
    assert!(!all.contains("Showing"));
    assert!(!all.contains("Clear"));
    assert_eq!(row_ids(&all).len(), 14);
}

fn many(n: usize, failing_every: usize) -> Vec<TargetRow> {
    (0..n)
        .map(|i| {
            let r = row(
                "app-big",
                &format!("room-{i:05}"),
                &format!("task-{i:05}"),
                Phase::Active,
            );
            if failing_every > 0 && i % failing_every == failing_every - 1 {
                failing(r, "timeout")
            } else {
                r
            }
        })
        .collect()
}

#[test]
fn large_groups_are_cut_with_failing_first_and_a_show_all_link() {
    let rows = many(1500, 300);
    let html = targets_page(&info(), &rows, &TargetsQuery::default());
    let ids = row_ids(&html);
    assert_eq!(ids.len(), TargetsQuery::default().rows_per_group);
    // The 5 failing ones (rooms 299, 599, …) come first though they sort last by room.
    assert_eq!(html.matches("class=\"fail\"").count(), 5);
    assert_eq!(ids[0], rows[299].anchor());
    assert!(html
        .contains("Showing 1000 of 1500 (down first). <a href=\"targets?limit=0\">Show all</a>"));

    let all = targets_page(&info(), &rows, &TargetsQuery::from_query(Some("limit=0")));
    assert_eq!(row_ids(&all).len(), 1500);
    assert!(!all.contains("Show all"));
    assert!(all.contains("<input type=\"hidden\" name=\"limit\" value=\"0\">"));

    let few = targets_page(
        &info(),
        &rows,
        &TargetsQuery::from_query(Some("q=room&failing=1&limit=2")),
    );
    assert_eq!(row_ids(&few).len(), 2);
    assert!(few.contains("<a href=\"targets?q=room&amp;failing=1&amp;limit=0\">Show all</a>"));
}

#[test]
fn no_targets() {
    let html = targets_page(&info(), &[], &TargetsQuery::default());
    assert!(html.contains("0 targets in 0 apps · 0 down"));
    assert!(html.contains("No targets yet."));
    let landing = landing_page(&info(), &[]);
    assert!(landing.contains("<h2>Targets down (their polls fail): 0</h2>"));
    assert!(landing.contains("<h2>Tasks failed in the last 24 h: 0</h2>"));
    assert!(landing.contains("<tr><th>total</th><th class=\"n\">0</th>"));
}

#[test]
fn landing_page_names_the_exporter_and_links_everywhere() {
    let html = landing_page(&info(), &fixture());
    assert!(html.contains(&format!(
        "Version <code>{}</code>, revision <code>3f9c2ab</code> · as of 2026-12-01 11:00:00 UTC",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(html.contains(&format!("<h1>{}</h1>", env!("CARGO_PKG_NAME"))));
    for link in [
        "<a href=\"targets\">Targets</a>",
        "<a href=\"metrics\">Metrics</a>",
        "<a href=\"-/healthy\">Health</a>",
        "<a href=\"-/ready\">Readiness</a>",
        "<a href=\"api/v1/targets\">Targets API</a>",
    ] {
        assert!(html.contains(link), "{link}");
    }
    assert!(html.contains("<dt>Budget</dt><dd>50 requests/s per action</dd>"));
}

#[test]
fn landing_page_counts_targets_by_phase_and_kind() {
    let html = landing_page(&info(), &fixture());
    let n = |v: [usize; 6]| {
        v.iter()
            .map(|x| format!("<td class=\"n\">{x}</td>"))
            .collect::<String>()
    };
    assert!(html.contains("<th class=\"n\">new</th><th class=\"n\">active</th><th class=\"n\">settling</th><th class=\"n\">done</th><th class=\"n\">expired</th><th class=\"n\">total</th>"));
    assert!(html.contains(&format!(
        "<tr><td>record</td>{}</tr>",
        n([1, 7, 1, 3, 1, 13])
    )));
    assert!(html.contains(&format!(
        "<tr><td>webcast</td>{}</tr>",
        n([0, 1, 0, 0, 0, 1])
    )));
    assert!(html.contains("<tr><th>total</th><th class=\"n\">1</th><th class=\"n\">8</th><th class=\"n\">1</th><th class=\"n\">3</th><th class=\"n\">1</th><th class=\"n\">14</th></tr>"));
}

#[test]
fn landing_page_lists_failing_targets_and_recent_failed_tasks() {
    let html = landing_page(&info(), &fixture());
    let failing_part = between(&html, "<h2>Targets down", "<h2>");
    assert!(failing_part.contains("<span class=\"bad\">4</span></h2>"));
    let order: Vec<usize> = ["room&quot;&lt;x&gt;", "class-11", "room-1044", "room-1045"]
        .iter()
        .map(|room| failing_part.find(room).unwrap_or_else(|| panic!("{room}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{failing_part}");
    assert!(failing_part.contains("last poll 12s ago"));
    assert!(failing_part.contains("<span class=\"err\">server error 500: InternalError</span>"));
    assert!(failing_part.contains("href=\"targets?failing=1\""));

    let tasks = between(&html, "<h2>Tasks failed in the last 24 h", "</table>");
    assert!(tasks.contains("<span class=\"bad\">2</span></h2>"));
    // Most recent first; the one that ended 30 h ago and the one stopped by the API are not here.
    let recent = tasks.find("class-8").expect("class-8");
    let older = tasks.find("room-0999").expect("room-0999");
    assert!(recent < older);
    assert!(!tasks.contains("room-0900"));
    assert!(!tasks.contains("room-0998"));
    assert!(tasks.contains("20m 0s ago<br><span class=\"muted\">2026-12-01 10:40:00 UTC</span>"));
    assert!(tasks.contains("<span class=\"badge tf\">Ended</span></td><td>StartTaskFailed</td>"));
    assert!(tasks.contains("<span class=\"badge tf\">Failed</span></td><td>StartTaskFailed</td>"));
}

#[test]
fn landing_links_lead_to_the_rows_on_the_targets_page() {
    let rows = fixture();
    let html = landing_page(&info(), &rows);
    let links: Vec<String> = html
        .split("<a href=\"targets?q=")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap_or(0)].replace("&amp;", "&"))
        .collect();
    assert_eq!(links.len(), 6, "4 failing targets, 2 failed tasks");
    for link in links {
        let (query, anchor) = link.split_once('#').expect("an anchor");
        let page = targets_page(
            &info(),
            &rows,
            &TargetsQuery::from_query(Some(&format!("q={query}"))),
        );
        assert!(
            page.contains(&format!("<tr id=\"{anchor}\"")),
            "q={query} does not show #{anchor}"
        );
    }
}

#[test]
fn landing_page_cuts_long_lists() {
    let mut rows = many(25, 1);
    for (i, r) in rows.iter_mut().enumerate() {
        r.last_error = Some("x".repeat(500));
        if i < 22 {
            *r = ended(r.clone(), status::FAILED, stop_reason::UNKNOWN, HOUR_MS);
        }
    }
    let html = landing_page(&info(), &rows);
    assert!(html.contains("<span class=\"bad\">25</span></h2>"));
    assert!(html.contains("… and 15 more: <a href=\"targets?failing=1\">all targets down</a>"));
    assert!(html.contains(&format!("<span class=\"err\">{}…</span>", "x".repeat(160))));
    assert!(html.contains("<span class=\"bad\">22</span></h2>"));
    assert!(html.contains("… and 2 more."));
    assert_eq!(html.matches("<li>").count(), 10);
}

/// 10,000 targets in 20 apps across every phase, 5 % failing, each with two labels.
fn ten_thousand() -> Vec<TargetRow> {
    (0..10_000)
        .map(|i| {
            let mut r = row(
                &format!("app-{:02}", i % 20),
                &format!("room-{i:05}"),
                &format!("task-{i:05}-{}", "x".repeat(20)),
                Phase::ALL[i % 5],
            );
            r.kind = if i % 7 == 0 {
                Kind::Webcast
            } else {
                Kind::Record
            };
            r.labels = vec![
                ("team".to_string(), format!("team-{}", i % 13)),
                ("env".to_string(), "prod".to_string()),
            ];
            if i % 20 == 0 {
                r = failing(r, "timeout after 5s: GET GetRecordTask");
            }
            r
        })
        .collect()
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        best = best.min(start.elapsed());
        last = Some(out);
    }
    (best, last.expect("at least one run"))
}

#[test]
fn ten_thousand_targets_render_well_under_a_second() {
    let rows = ten_thousand();
    let info = PageInfo::new(NOW_MS);
    let all = TargetsQuery::from_query(Some("limit=0"));
    let (t_all, page) = best_of(3, || targets_page(&info, &rows, &all));
    assert_eq!(page.matches("<tr id=").count(), 10_000);
    assert!(page.contains("10000 targets in 20 apps · <span class=\"bad\">500 down</span>"));
    let (t_default, _) = best_of(3, || targets_page(&info, &rows, &TargetsQuery::default()));
    let search = TargetsQuery::from_query(Some("q=team-3+prod"));
    let (t_search, found) = best_of(3, || targets_page(&info, &rows, &search));
    let team_3 = rows.iter().filter(|r| r.labels[0].1 == "team-3").count();
    assert_eq!(found.matches("<tr id=").count(), team_3);
    let (t_landing, _) = best_of(3, || landing_page(&info, &rows));
    eprintln!(
        "10,000 targets: /targets (all rows, {} KiB) {t_all:?}; default {t_default:?}; \
         search {t_search:?}; landing {t_landing:?}",
        page.len() / 1024
    );
    for t in [t_all, t_default, t_search, t_landing] {
        assert!(t < Duration::from_millis(500), "{t:?}");
    }
}
