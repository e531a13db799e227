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
