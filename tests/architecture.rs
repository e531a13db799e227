//! The crate's shape, checked from its source: `src/lib.rs`'s map names every top-level module,
//! and the top-level modules import one another without a cycle, so the tree shows the data
//! flow (config → scheduler → budget → client → store → metrics → HTTP).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `pub mod NAME;` lines of `src/lib.rs`.
fn top_level_modules(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .collect()
}

/// The `.rs` files of module `name`: `src/NAME.rs` and everything under `src/NAME/`.
fn files_of(name: &str) -> Vec<PathBuf> {
    let src = repo().join("src");
    let mut files = Vec::new();
    let single = src.join(format!("{name}.rs"));
    if single.exists() {
        files.push(single);
    }
    let mut dirs = vec![src.join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// Source without `#[cfg(test)]` modules (which may reach anywhere) and without comments.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    code.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module names that `code` refers to as `crate::NAME` or inside `crate::{…}`.
fn crate_references(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b, c::{Y, Z}}`: the first path segment of each top-level item.
            let mut depth = 1;
            let mut item_start = true;
            let mut word = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => word.push(c),
                    _ if item_start && !word.is_empty() => {
                        found.insert(std::mem::take(&mut word));
                        item_start = false;
                    }
                    _ => {}
                }
            }
            if !word.is_empty() {
                found.insert(word);
            }
        } else {
            let word: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.insert(word);
        }
    }
    found.retain(|m| modules.contains(m));
    found
}

fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).expect("src/lib.rs");
    let modules: BTreeSet<String> = top_level_modules(&lib).into_iter().collect();
    modules
        .iter()
        .map(|m| {
            let mut deps = BTreeSet::new();
            for file in files_of(m) {
                deps.extend(crate_references(&non_test_code(&file), &modules));
            }
            deps.remove(m);
            (m.clone(), deps)
        })
        .collect()
}

#[test]
fn the_map_names_every_module() {
    let lib = std::fs::read_to_string(repo().join("src/lib.rs")).expect("src/lib.rs");
    let map: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules = top_level_modules(&lib);
    assert!(modules.len() > 10, "found only {modules:?}");
    let missing: Vec<_> = modules
        .iter()
        .filter(|m| !map.contains(&format!("[`{m}`]")) && !map.contains(&format!("`{m}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "src/lib.rs's map does not name {missing:?}"
    );
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = dependency_graph();
    // Depth-first search for a back edge; report the cycle it closes.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for d in graph.get(m).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let start = path.iter().position(|p| p == d).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(d.clone());
                    cycles.push(cycle.join(" -> "));
                }
                Some(_) => {}
                None => visit(d, graph, state, path, cycles),
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for m in graph.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_reference_finder_sees_both_forms() {
    let modules: BTreeSet<String> = ["model", "store", "clock", "render"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let code = "use crate::model::Kind;\nuse crate::{store::Store, clock};\nlet x = crate::render::page();";
    let found = crate_references(code, &modules);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["clock", "model", "render", "store"]
    );
}

#[test]
fn exposition_is_a_leaf() {
    let graph = dependency_graph();
    assert_eq!(
        graph.get("exposition").map(BTreeSet::len),
        Some(0),
        "exposition imports {:?}",
        graph.get("exposition")
    );
    let volc = graph.get("volc").cloned().unwrap_or_default();
    assert!(
        !volc.contains("sim"),
        "volc must not reach into the simulator"
    );
}

/// Every `.rs` file under `src/`.
fn source_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A file's lines before its `#[cfg(test)] mod tests`.
fn non_test_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text,
    };
    code.lines().map(str::to_string).collect()
}

#[test]
fn no_file_has_over_1000_lines_of_code_besides_its_tests() {
    let long: Vec<String> = source_files()
        .iter()
        .map(|p| (p, non_test_lines(p).len()))
        .filter(|(_, n)| *n > 1000)
        .map(|(p, n)| format!("{} ({n} lines)", p.display()))
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

/// The functions of `lines` (rustfmt's layout: a function's closing brace stands at the
/// indentation of its `fn` line) as (name, first line, length in lines).
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let after_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "async fn ",
        ]
        .iter()
        .chain(&[
            "pub async fn ",
            "pub(crate) async fn ",
            "pub(super) async fn ",
        ])
        .find_map(|p| trimmed.strip_prefix(p));
        let Some(rest) = after_fn else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let end = lines[i..].iter().position(|l| {
            let t = l.trim_start();
            l.len() - t.len() == indent && (t == "}" || (t.ends_with(';') && !t.contains('{')))
        });
        if let Some(end) = end {
            found.push((name, i + 1, end + 1));
        }
    }
    found
}

#[test]
fn no_function_is_over_100_lines_but_the_demo_scenario_table() {
    // Data tables may be long: the demo's scenario is one list of simulated tasks.
    let tables = ["demo_scenario"];
    let mut long = Vec::new();
    for path in source_files() {
        for (name, line, len) in functions(&non_test_lines(&path)) {
            if len > 100 && !tables.contains(&name.as_str()) {
                long.push(format!("{}:{line} {name} ({len} lines)", path.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these functions: {long:?}");
}

#[test]
fn the_function_finder_measures_what_rustfmt_lays_out() {
    let code: Vec<String> = "fn a() {\n    x();\n}\n\n    pub(crate) async fn b(\n        y: u8,\n    ) -> u8 {\n        y\n    }\nfn c();\n"
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        functions(&code),
        [("a".into(), 1, 3), ("b".into(), 5, 5), ("c".into(), 10, 1)]
    );
}

#[test]
fn src_stays_smaller_than_before_the_redesign_of_issue_18() {
    // 27,333 lines when the redesign began (the simulator included): a ratchet, not a target.
    let lines: usize = source_files()
        .iter()
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum();
    assert!(lines < 27_333, "src/ has {lines} lines");
}
