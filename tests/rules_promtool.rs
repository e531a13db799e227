//! Checks the shipped alert rules and dashboards without a running exporter:
//! `promtool check rules` and `promtool test rules` on `examples/`, coverage of the unit tests
//! (every alert shown firing and not firing), and every PromQL expression in
//! `examples/alerts.yml` and `dashboards/*.json` restricted to the metric and label names of
//! the README's metrics tables (plus `process_*` and `up`).

mod tools;

use std::collections::{BTreeMap, BTreeSet};

use tools::{output_text, promtool, repo_path, repo_yaml, EXPORTED_SERIES, FEATURE_SERIES};

/// Label names the exporter's series carry (see the README's metrics tables) plus the ones Prometheus adds.
const LABELS: &[&str] = &[
    "kind",
    "app_id",
    "room_id",
    "task_id",
    "reason",
    "file",
    "phase",
    "action",
    "outcome",
    "version",
    "revision",
    "le",
    "job",
    "instance",
    "op",
    "event_type",
];

/// The alerts the shipped rules promise (docs/OPERATIONS.md lists them).
const ALERTS: &[&str] = &[
    "VolcRtcTaskStartFailed",
    "VolcRtcTaskFailed",
    "VolcRtcRecordingWithoutFiles",
    "VolcRtcWebcastNearMaxRunningTime",
    "VolcRtcApiThrottled",
    "VolcRtcApiAuthErrors",
    "VolcRtcSchedulerLagging",
    "VolcRtcTargetNotUpdated",
    "VolcRtcExporterDown",
    "VolcRtcApiUnreachable",
    "VolcRtcStorageErrors",
    "VolcRtcCallbackBadSignatures",
    "VolcRtcConfigReloadFailed",
    "VolcRtcTargetFileLoadFailed",
];

/// `(group, rule)` pairs of a rules file, in file order.
fn rules(doc: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    let groups = doc["groups"].as_sequence().expect("`groups` is a list");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_counts_every_rule() {
    let out = promtool(&["check", "rules", "examples/alerts.yml"]);
    let report = output_text(&out);
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{report}"
    );

    let declared = rules(&repo_yaml("examples/alerts.yml")).len();
    let found: usize = report
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix("SUCCESS: ")?
                .strip_suffix(" rules found")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no `SUCCESS: N rules found` line in:\n{report}"));
    assert_eq!(
        found, declared,
        "promtool saw {found} rules, the file declares {declared}"
    );
    assert_eq!(declared, ALERTS.len());
}

#[test]
fn every_promised_alert_is_declared_with_severity_and_text() {
    let doc = repo_yaml("examples/alerts.yml");
    let mut names = BTreeSet::new();
    for rule in rules(&doc) {
        let name = rule["alert"]
            .as_str()
            .expect("every rule is an alert")
            .to_string();
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            severity == "critical" || severity == "warning",
            "{name}: severity {severity:?}"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: annotation {key} missing"
            );
        }
        assert!(names.insert(name.clone()), "{name} declared twice");
    }
    let promised: BTreeSet<String> = ALERTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, promised);

    let start_failed = rules(&doc)
        .into_iter()
        .find(|r| r["alert"].as_str() == Some("VolcRtcTaskStartFailed"))
        .expect("VolcRtcTaskStartFailed");
    assert_eq!(
        start_failed["labels"]["severity"].as_str(),
        Some("critical")
    );
    assert_eq!(
        start_failed["for"].as_str(),
        Some("0m"),
        "must page at once"
    );
    let expr = start_failed["expr"].as_str().unwrap_or_default();
    assert!(expr.contains(r#"volcengine_rtc_task_stop_reason{reason="StartTaskFailed"} == 1"#));
    let description = start_failed["annotations"]["description"]
        .as_str()
        .unwrap_or_default();
    for label in ["app_id", "room_id", "task_id"] {
        assert!(
            description.contains(&format!("$labels.{label}")),
            "description names {label}"
        );
    }
}

#[test]
fn promtool_unit_tests_pass() {
    let out = promtool(&["test", "rules", "examples/alerts.test.yml"]);
    assert!(
        out.status.success(),
        "promtool test rules failed:\n{}",
        output_text(&out)
    );
}

#[test]
fn promtool_unit_tests_fail_when_an_expected_label_is_wrong() {
    // The same unit tests with one expected label changed must fail: proves the harness and
    // the exact-label expectations really check something.
    let mut doc = repo_yaml("examples/alerts.test.yml");
    doc["rule_files"] = serde_yaml::Value::Sequence(vec![serde_yaml::Value::String(
        repo_path("examples/alerts.yml").display().to_string(),
    )]);
    let first = &mut doc["tests"][0]["alert_rule_test"][0]["exp_alerts"][0]["exp_labels"];
    assert!(first["task_id"].is_string(), "first unit test names a task");
    first["task_id"] = serde_yaml::Value::String("some-other-task".into());
    let dir = std::env::temp_dir().join(format!("volc-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("broken.test.yml");
    std::fs::write(&path, serde_yaml::to_string(&doc).expect("yaml")).expect("write");
    let out = promtool(&["test", "rules", &path.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success(),
        "a wrong expectation passed:\n{}",
        output_text(&out)
    );
    assert!(
        output_text(&out).contains("some-other-task"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn unit_tests_show_every_alert_firing_and_not_firing() {
    let doc = repo_yaml("examples/alerts.test.yml");
    // alert -> (seen firing, seen not firing)
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for test in doc["tests"].as_sequence().expect("`tests` is a list") {
        for case in test["alert_rule_test"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
        {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let firing = case["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty());
            if firing {
                for alert in case["exp_alerts"].as_sequence().into_iter().flatten() {
                    assert!(
                        alert["exp_annotations"].is_mapping(),
                        "{name}: firing expectations give exact annotations"
                    );
                }
            }
            let entry = seen.entry(name).or_default();
            if firing {
                entry.0 = true;
            } else {
                entry.1 = true;
            }
        }
    }
    for alert in ALERTS {
        assert_eq!(
            seen.get(*alert),
            Some(&(true, true)),
            "{alert}: the unit tests must show it both firing and not firing"
        );
    }
}

/// Metric names and label names one PromQL expression uses.
#[derive(Debug, Default, PartialEq)]
struct Names {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

/// Keywords whose parenthesised list holds label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// The other words that are not metric names (the tokenizer tries `GROUPING` first).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    // Aggregation operators, which may be followed by `by (…)` instead of `(`.
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];

/// A small PromQL tokenizer: skips strings, comments, ranges and numbers; an identifier
/// followed by `(` is a function (or a grouping keyword, whose list holds label names); inside
/// `{…}` the names before a matcher operator are labels; every other identifier is a metric.
/// Grafana variables (`$x`, `${x}`) are skipped.
fn names(expr: &str) -> Names {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Names::default();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            if chars[j] == '\\' {
                j += 1;
            }
            j += 1;
        }
        j + 1
    };
    let next_non_space = |mut j: usize| -> usize {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            if i < chars.len() && chars[i] == '{' {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
            }
        } else if c == '{' {
            i += 1;
            while i < chars.len() && chars[i] != '}' {
                if chars[i] == '"' || chars[i] == '\'' || chars[i] == '`' {
                    i = skip_string(i);
                } else if ident_start(chars[i]) {
                    let start = i;
                    while i < chars.len() && ident_char(chars[i]) {
                        i += 1;
                    }
                    let j = next_non_space(i);
                    if j < chars.len() && (chars[j] == '=' || chars[j] == '!') {
                        out.labels.insert(chars[start..i].iter().collect());
                    }
                } else {
                    i += 1;
                }
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                let exp = chars[i] == 'e' || chars[i] == 'E';
                i += 1;
                if exp && i < chars.len() && (chars[i] == '-' || chars[i] == '+') {
                    i += 1;
                }
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let j = next_non_space(i);
            let call = j < chars.len() && chars[j] == '(';
            let lower = word.to_ascii_lowercase();
            if GROUPING.contains(&lower.as_str()) {
                if call {
                    let mut k = j + 1;
                    while k < chars.len() && chars[k] != ')' {
                        if ident_start(chars[k]) {
                            let s = k;
                            while k < chars.len() && ident_char(chars[k]) {
                                k += 1;
                            }
                            out.labels.insert(chars[s..k].iter().collect());
                        } else {
                            k += 1;
                        }
                    }
                    i = k + 1;
                }
            } else if !call && !KEYWORDS.contains(&lower.as_str()) {
                out.metrics.insert(word);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Checks one expression against the specification's names; returns the problems.
fn check_names(place: &str, expr: &str) -> Vec<String> {
    let found = names(expr);
    let mut problems = Vec::new();
    if found.metrics.is_empty() && !expr.contains("time()") {
        problems.push(format!("{place}: no metric in `{expr}`"));
    }
    for m in &found.metrics {
        if !EXPORTED_SERIES.contains(&m.as_str())
            && !FEATURE_SERIES.contains(&m.as_str())
            && m != "up"
            && !m.starts_with("process_")
        {
            problems.push(format!("{place}: unknown metric {m} in `{expr}`"));
        }
    }
    for l in &found.labels {
        if !LABELS.contains(&l.as_str()) {
            problems.push(format!("{place}: unknown label {l} in `{expr}`"));
        }
    }
    problems
}

#[test]
fn tokenizer_finds_metrics_and_labels() {
    let n = names(
        r#"sum by (action, le) (rate(volcengine_rtc_api_request_duration_seconds_bucket{job=~"$job", instance=~"${instance}"}[$__rate_interval] offset 5m)) / on (action) group_left () clamp_min(up, 1e-9) or vector(0) and count_values("x", foo:bar)"#,
    );
    let metrics: Vec<&str> = n.metrics.iter().map(String::as_str).collect();
    assert_eq!(
        metrics,
        [
            "foo:bar",
            "up",
            "volcengine_rtc_api_request_duration_seconds_bucket"
        ]
    );
    let labels: Vec<&str> = n.labels.iter().map(String::as_str).collect();
    assert_eq!(labels, ["action", "instance", "job", "le"]);
    assert!(!check_names("t", "volcengine_rtc_task_statsu == 4").is_empty());
    assert!(!check_names("t", r#"volcengine_rtc_task_status{appid="x"}"#).is_empty());
    assert!(check_names("t", "process_open_fds / process_max_fds").is_empty());
}

#[test]
fn alert_expressions_use_only_specified_names() {
    let doc = repo_yaml("examples/alerts.yml");
    let mut problems = Vec::new();
    for rule in rules(&doc) {
        let name = rule["alert"].as_str().unwrap_or("?");
        let expr = rule["expr"].as_str().expect("every rule has an expr");
        problems.extend(check_names(name, expr));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let dir = repo_path("dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("dashboards/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let body = std::fs::read_to_string(&path).expect("readable dashboard");
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        out.push((path.display().to_string(), json));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 2,
        "the overview and exporter-health dashboards"
    );
    out
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().cloned().unwrap_or_default() {
        out.extend(p["panels"].as_array().cloned().unwrap_or_default());
        out.push(p);
    }
    out
}

#[test]
fn dashboards_are_importable() {
    for (path, d) in dashboards() {
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{path}: schemaVersion"
        );
        assert!(
            d["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{path}: uid"
        );
        // The Grafana version the dashboard requires is the one the README promises.
        let grafana = d["__requires"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == "grafana")
            .and_then(|r| r["version"].as_str())
            .unwrap_or_default()
            .to_owned();
        let readme = std::fs::read_to_string("README.md").expect("README.md");
        let major_minor = grafana.rsplit_once('.').map(|(mm, _)| mm).unwrap_or("");
        assert!(
            !major_minor.is_empty() && readme.contains(&format!("Grafana {major_minor} and")),
            "{path}: __requires says Grafana {grafana:?}, which the README does not name"
        );
        let inputs = d["__inputs"].as_array().cloned().unwrap_or_default();
        assert!(
            inputs
                .iter()
                .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
            "{path}: DS_PROMETHEUS input"
        );
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            vars.iter()
                .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
            "{path}: datasource variable"
        );
        let mut ids = BTreeSet::new();
        for p in panels(&d) {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{path}: panel without id"));
            assert!(ids.insert(id), "{path}: panel id {id} twice");
            for k in ["h", "w", "x", "y"] {
                assert!(p["gridPos"][k].is_u64(), "{path}: panel {id} gridPos.{k}");
            }
            let right =
                p["gridPos"]["x"].as_u64().unwrap_or(0) + p["gridPos"]["w"].as_u64().unwrap_or(0);
            assert!(right <= 24, "{path}: panel {id} wider than the grid");
            if p["type"] != "row" {
                assert_eq!(
                    p["datasource"]["uid"], "${datasource}",
                    "{path}: panel {id}"
                );
                let targets = p["targets"].as_array().cloned().unwrap_or_default();
                assert!(!targets.is_empty(), "{path}: panel {id} has no query");
            }
        }
    }
}

#[test]
fn overview_has_the_task_filters() {
    let (_, d) = dashboards()
        .into_iter()
        .find(|(_, d)| d["uid"] == "volc-rtc-overview")
        .expect("overview dashboard");
    let vars = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for name in ["kind", "app_id", "room_id"] {
        let v = vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("variable {name}"));
        let q = v["query"]["query"].as_str().unwrap_or_default();
        assert!(
            q.starts_with("label_values(") && q.contains(name),
            "{name}: {q}"
        );
    }
    // StartTaskFailed is made to stand out in the stop-reason panel.
    let stops = panels(&d)
        .into_iter()
        .find(|p| p["title"] == "Stops by reason")
        .expect("Stops by reason panel");
    let overrides = stops["fieldConfig"]["overrides"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(overrides
        .iter()
        .any(|o| o["matcher"]["options"] == "StartTaskFailed"
            && o["properties"][0]["value"]["fixedColor"] == "red"));
}

#[test]
fn dashboard_expressions_use_only_specified_names() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for (path, d) in dashboards() {
        for p in panels(&d) {
            for t in p["targets"].as_array().cloned().unwrap_or_default() {
                let expr = t["expr"].as_str().unwrap_or_default();
                let place = format!("{path}: {}", p["title"]);
                problems.extend(check_names(&place, expr));
                checked += 1;
            }
        }
        for v in d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"].as_str().unwrap_or_default();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{path}: variable query {q}"));
            let (series, label) = inner.rsplit_once(',').unwrap_or(("", inner));
            let place = format!("{path}: variable {}", v["name"]);
            problems.extend(check_names(&place, series));
            if !LABELS.contains(&label.trim()) {
                problems.push(format!("{place}: unknown label {label}"));
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} expressions found");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every alert has a runbook section in docs/OPERATIONS.md, and every file a runbook
/// annotation names exists in the repository.
#[test]
fn every_alert_has_a_runbook_in_a_file_that_exists() {
    let ops = tools::read_repo_file("docs/OPERATIONS.md");
    let headings: BTreeSet<&str> = ops
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(|h| h.split_whitespace().next().unwrap_or(""))
        .collect();
    let mut problems = Vec::new();
    for rule in rules(&repo_yaml("examples/alerts.yml")) {
        let Some(alert) = rule["alert"].as_str() else {
            continue;
        };
        if !headings.contains(alert) {
            problems.push(format!(
                "{alert}: no `### {alert}` section in docs/OPERATIONS.md"
            ));
        }
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or("");
        for word in runbook.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            let word = word.trim_end_matches('.');
            if word.ends_with(".md") && !repo_path(word).exists() {
                problems.push(format!(
                    "{alert}: runbook names {word}, which does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
