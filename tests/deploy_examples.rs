//! The deployment examples hold together: `examples/prometheus.yml` passes `promtool check
//! config`, the compose Alertmanager config passes `amtool check-config`, the Kubernetes
//! sidecar's config passes the exporter's own `check`, probes/ports/security settings and the
//! secret mount agree with it, `kubectl apply -k` never applies a Secret with data nor needs the
//! Prometheus Operator (the PodMonitor is an overlay), the key files have one path everywhere,
//! the store has a volume in every example, the compose file mounts files that exist, and the
//! Dockerfile builds a static binary onto a non-root image exposing the default port.
//! (`tests/validate_examples.rs` runs the ecosystems' own validators; `scripts/test-image`
//! builds and runs the image.)

mod tools;

use serde::Deserialize;
use serde_yaml::Value;

use tools::{output_text, promtool, read_repo_file, repo_path, repo_yaml, run_in_repo, tool};

const PORT: u64 = 19966;
const EXPORTER: &str = "volcengine-rtc-exporter";
/// Where the key files are mounted, in every example and the README.
const SECRET_DIR: &str = "/run/secrets/volcengine";
/// The store's folder (`--storage.path`) in the image and every example.
const STORAGE: &str = "/var/lib/volcengine-rtc-exporter";

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The strings of a YAML list (none when it is not a list).
fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence().into_iter().flatten().map(str_of).collect()
}

#[test]
fn prometheus_config_is_valid_and_scrapes_the_exporter() {
    let out = promtool(&["check", "config", "examples/prometheus.yml"]);
    assert!(out.status.success(), "{}", output_text(&out));

    let cfg = repo_yaml("examples/prometheus.yml");
    let rule_files: Vec<&str> = strings(&cfg["rule_files"]);
    assert_eq!(rule_files, ["alerts.yml"]);
    assert_eq!(str_of(&cfg["global"]["scrape_interval"]), "15s");
    let job = cfg["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|j| str_of(&j["job_name"]) == EXPORTER)
        .expect("a scrape job for the exporter");
    // No rule keys on the job name: VolcRtcExporterDown finds the exporter by its own series.
    let rules = read_repo_file("examples/alerts.yml");
    assert!(
        !rules.contains("job=~"),
        "a rule selects a job-name pattern"
    );
    let target = str_of(&job["static_configs"][0]["targets"][0]);
    assert!(target.ends_with(&format!(":{PORT}")), "{target}");
    assert!(cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0].is_string());
}

#[test]
fn compose_alertmanager_config_is_valid() {
    let out = run_in_repo(
        &tool("AMTOOL", &["/usr/bin/amtool"]),
        &["check-config", "examples/compose/alertmanager.yml"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
}

fn exporter_container(deployment: &Value) -> Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == EXPORTER)
        .cloned()
        .expect("the exporter container")
}

#[test]
fn kubernetes_sidecar_is_probed_locked_down_and_scraped() {
    let deployment = repo_yaml("examples/kubernetes/deployment.yaml");
    assert_eq!(deployment["kind"], "Deployment");
    let pod = &deployment["spec"]["template"];
    let containers = pod["spec"]["containers"].as_sequence().expect("containers");
    assert!(
        containers.len() >= 2,
        "the exporter is a sidecar next to an app"
    );
    let c = exporter_container(&deployment);

    let port = &c["ports"][0];
    assert_eq!(port["containerPort"].as_u64(), Some(PORT));
    let port_name = str_of(&port["name"]);
    assert_eq!(str_of(&c["livenessProbe"]["httpGet"]["path"]), "/-/healthy");
    assert_eq!(str_of(&c["readinessProbe"]["httpGet"]["path"]), "/-/ready");
    assert_eq!(str_of(&c["livenessProbe"]["httpGet"]["port"]), port_name);
    assert_eq!(str_of(&c["readinessProbe"]["httpGet"]["port"]), port_name);

    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res}"
            );
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert!(sc["runAsUser"].as_u64().is_some_and(|u| u > 0));

    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(str_of(&annotations["prometheus.io/scrape"]), "true");
    assert_eq!(str_of(&annotations["prometheus.io/port"]), PORT.to_string());
    assert_eq!(str_of(&annotations["prometheus.io/path"]), "/metrics");

    // The PodMonitor (an optional overlay) selects this pod and scrapes the named port.
    let monitor = repo_yaml("examples/kubernetes/podmonitor/podmonitor.yaml");
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_eq!(str_of(&monitor["apiVersion"]), "monitoring.coreos.com/v1");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels");
    for (k, v) in selector {
        assert_eq!(
            &pod["metadata"]["labels"][k], v,
            "PodMonitor selector {k:?}"
        );
    }
    assert_eq!(
        str_of(&monitor["spec"]["podMetricsEndpoints"][0]["port"]),
        port_name
    );
}

/// The kinds of the documents of one manifest file.
fn kinds(path: &str) -> Vec<(String, Value)> {
    let text = read_repo_file(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let doc = Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}"));
            (str_of(&doc["kind"]).to_string(), doc)
        })
        .collect()
}

#[test]
fn kustomization_applies_without_secret_data_or_the_operator() {
    let base = repo_yaml("examples/kubernetes/kustomization.yaml");
    let listed: Vec<&str> = strings(&base["resources"]);
    assert!(!listed.is_empty());
    let mut all_kinds = Vec::new();
    for name in &listed {
        let path = format!("examples/kubernetes/{name}");
        for (kind, doc) in kinds(&path) {
            // A Secret here would overwrite the one the README creates with real keys.
            assert!(
                kind != "Secret" || (doc["data"].is_null() && doc["stringData"].is_null()),
                "{path} holds a Secret with data"
            );
            // Without the Prometheus Operator its kinds do not exist.
            assert_ne!(
                kind, "PodMonitor",
                "{path}: the PodMonitor must stay optional"
            );
            all_kinds.push(kind);
        }
    }
    assert!(
        all_kinds.contains(&"Deployment".to_string()),
        "{all_kinds:?}"
    );
    assert!(
        all_kinds.contains(&"ConfigMap".to_string()),
        "{all_kinds:?}"
    );
    // Every manifest file of the folder is used by the base or the overlay.
    for entry in std::fs::read_dir(repo_path("examples/kubernetes")).expect("dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_file() && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name.as_str()),
                "{name} not in kustomization.yaml"
            );
        }
    }
    // The image is set in one place, the kustomization, for the name the Deployment uses.
    let deployment = repo_yaml("examples/kubernetes/deployment.yaml");
    let image = str_of(&exporter_container(&deployment)["image"]).to_string();
    assert!(
        base["images"]
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|i| str_of(&i["name"]) == image && i["newName"].is_string()),
        "kustomization.yaml sets no image for {image}"
    );

    // The overlay: the base plus the PodMonitor, with the scrape annotation turned off.
    let overlay = repo_yaml("examples/kubernetes/podmonitor/kustomization.yaml");
    let resources: Vec<&str> = strings(&overlay["resources"]);
    assert!(resources.contains(&"../"), "{resources:?}");
    assert!(resources.contains(&"podmonitor.yaml"), "{resources:?}");
    let patch = str_of(&overlay["patches"][0]["patch"]);
    assert!(
        patch.contains("prometheus.io~1scrape") && patch.contains("\"false\""),
        "{patch}"
    );
}

/// The README's `kubectl create secret generic NAME --from-file=KEY=…` command: the name and
/// the keys.
fn readme_secret() -> (String, Vec<String>) {
    let readme = read_repo_file("README.md");
    let command = readme
        .split("kubectl create secret generic ")
        .nth(1)
        .expect("the README creates the Secret with kubectl create secret generic");
    let command = command
        .split("\n```")
        .next()
        .unwrap_or_default()
        .replace("\\\n", " ");
    let first_line = command.lines().next().unwrap_or_default().to_string();
    let name = first_line
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let keys = first_line
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("--from-file="))
        .map(|w| w.split('=').next().unwrap_or_default().to_string())
        .collect();
    (name, keys)
}

#[test]
fn kubernetes_config_passes_check_with_the_mounted_secret() {
    let deployment = repo_yaml("examples/kubernetes/deployment.yaml");
    let c = exporter_container(&deployment);
    let mounts = c["volumeMounts"].as_sequence().cloned().unwrap_or_default();
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    let mount_of = |pred: &dyn Fn(&Value) -> bool| -> String {
        let volume = volumes.iter().find(|v| pred(v)).expect("volume");
        let mount = mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .expect("volume mounted in the exporter");
        assert_eq!(mount["readOnly"].as_bool(), Some(true));
        str_of(&mount["mountPath"]).to_string()
    };
    let (secret_name, secret_keys) = readme_secret();
    let configmap = repo_yaml("examples/kubernetes/configmap.yaml");
    let secret_dir = mount_of(&|v| str_of(&v["secret"]["secretName"]) == secret_name);
    assert_eq!(secret_dir, SECRET_DIR);
    let config_dir = mount_of(&|v| v["configMap"]["name"] == configmap["metadata"]["name"]);
    let args: Vec<&str> = strings(&c["args"]);
    assert!(
        args.contains(&format!("--config.file={config_dir}/config.yaml").as_str()),
        "{args:?}"
    );

    // The config names the secret's keys as files under its mount.
    let config = str_of(&configmap["data"]["config.yaml"]).to_string();
    let parsed: Value = serde_yaml::from_str(&config).expect("config.yaml");
    for (key, file) in [
        ("access_key_id_file", "access_key_id"),
        ("secret_access_key_file", "secret_access_key"),
    ] {
        assert_eq!(
            str_of(&parsed["credentials"][key]),
            format!("{secret_dir}/{file}")
        );
        assert!(
            secret_keys.contains(&file.to_string()),
            "the README's Secret lacks {file}"
        );
    }

    // The exporter's own validation accepts it, with the secret files present.
    let dir = std::env::temp_dir().join(format!("volc-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("access_key_id"), "AKLTexample\n").expect("write");
    std::fs::write(dir.join("secret_access_key"), "c2VjcmV0\n").expect("write");
    let local = config.replace(&format!("{secret_dir}/"), &format!("{}/", dir.display()));
    std::fs::write(dir.join("config.yaml"), local).expect("write");
    let out = run_in_repo(
        env!("CARGO_BIN_EXE_volcengine-rtc-exporter"),
        &[
            "check",
            &format!("--config.file={}", dir.join("config.yaml").display()),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "check failed:\n{}", output_text(&out));
}

#[test]
fn compose_stack_mounts_existing_files_and_runs_the_demo() {
    let compose = repo_yaml("examples/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    for name in [EXPORTER, "prometheus", "alertmanager", "grafana"] {
        assert!(services.contains_key(name), "service {name}");
    }
    let exporter = &compose["services"][EXPORTER];
    assert_eq!(str_of(&exporter["command"][0]), "demo");
    assert_eq!(str_of(&exporter["build"]["context"]), "..");
    let ports: Vec<&str> = strings(&exporter["ports"]);
    assert!(ports.contains(&"19966:19966"), "{ports:?}");

    let mut mounted = Vec::new();
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = str_of(volume);
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                let path = repo_path("examples").join(host);
                assert!(
                    path.exists(),
                    "{name:?} mounts {host}, which does not exist"
                );
                mounted.push(spec.to_string());
            }
        }
    }
    for needed in [
        "./prometheus.yml:",
        "./alerts.yml:",
        "./compose/alertmanager.yml:",
        "../dashboards:",
        "./compose/grafana/provisioning:",
    ] {
        assert!(
            mounted.iter().any(|m| m.starts_with(needed)),
            "{needed} not mounted"
        );
    }
    // Prometheus reaches the exporter and Alertmanager by their service names.
    let prom = repo_yaml("examples/prometheus.yml");
    let target = str_of(&prom["scrape_configs"][0]["static_configs"][0]["targets"][0]);
    assert_eq!(target, format!("{EXPORTER}:{PORT}"));
    let am = str_of(&prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]);
    assert!(
        services.contains_key(am.split(':').next().unwrap_or_default()),
        "{am}"
    );

    let datasource = repo_yaml("examples/compose/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(datasource["datasources"][0]["type"], "prometheus");
    assert_eq!(
        str_of(&datasource["datasources"][0]["url"]),
        "http://prometheus:9090"
    );
    let provider = repo_yaml("examples/compose/grafana/provisioning/dashboards/volcengine-rtc.yml");
    assert_eq!(
        str_of(&provider["providers"][0]["options"]["path"]),
        "/var/lib/grafana/dashboards"
    );
}

#[test]
fn dockerfile_builds_static_and_runs_as_non_root() {
    let dockerfile = read_repo_file("Dockerfile");
    let instructions: Vec<(String, String)> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (word, rest) = l.split_once(' ')?;
            word.chars()
                .all(|c| c.is_ascii_uppercase())
                .then(|| (word.to_string(), rest.trim().to_string()))
        })
        .collect();
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(w, _)| w == "FROM")
        .map(|(_, r)| r.as_str())
        .collect();
    assert!(froms.len() >= 2, "multi-stage");
    let last = froms.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("gcr.io/distroless/static") || last.starts_with("scratch"),
        "{last}"
    );
    assert!(dockerfile.contains("x86_64-unknown-linux-musl"));
    assert!(dockerfile.contains("--release"));
    assert!(dockerfile.contains("musl-tools"));
    let after_last_from = instructions
        .iter()
        .rposition(|(w, _)| w == "FROM")
        .map(|i| &instructions[i..])
        .unwrap_or_default();
    let get = |word: &str| -> Option<&str> {
        after_last_from
            .iter()
            .find(|(w, _)| w == word)
            .map(|(_, r)| r.as_str())
    };
    let user = get("USER").expect("USER in the final stage");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    assert_eq!(get("EXPOSE"), Some("19966"));
    assert!(get("ENTRYPOINT").is_some_and(|e| e.contains(EXPORTER)));
    assert_eq!(
        get("CMD"),
        Some(
            r#"["--config.file=/etc/volcengine-rtc-exporter/config.yaml", "--storage.path=/var/lib/volcengine-rtc-exporter"]"#
        )
    );
    assert_eq!(get("VOLUME"), Some(STORAGE));
    // `# syntax=` makes BuildKit fetch a frontend image from a registry.
    assert!(
        !dockerfile
            .lines()
            .any(|l| l.trim_start().starts_with("# syntax=")),
        "the Dockerfile needs a registry for its # syntax= line"
    );

    let ignore = read_repo_file(".dockerignore");
    for entry in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
    // Cargo loads every target the manifest declares: none of their files may be ignored.
    let ignored: Vec<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in manifest_files() {
        let top = needed.split('/').next().unwrap_or_default();
        assert!(
            repo_path(&needed).exists(),
            "Cargo.toml names {needed}, which does not exist"
        );
        assert!(!ignored.contains(&top), ".dockerignore hides {needed}");
    }
}

/// Files Cargo.toml needs at build time: the manifest, the lock file, and the source of every
/// declared target (explicit `path`, else the default place for `[[bench]]`, `[[test]]`,
/// `[[example]]` and `[[bin]]` names).
fn manifest_files() -> Vec<String> {
    let manifest = read_repo_file("Cargo.toml");
    let mut out = vec!["Cargo.toml".to_string(), "Cargo.lock".to_string()];
    let mut section = String::new();
    let mut name: Option<String> = None;
    let mut path: Option<String> = None;
    let mut flush = |section: &str, name: &mut Option<String>, path: &mut Option<String>| {
        let default_dir = match section {
            "[[bench]]" => Some("benches"),
            "[[test]]" => Some("tests"),
            "[[example]]" => Some("examples"),
            "[[bin]]" => Some("src/bin"),
            _ => None,
        };
        match (path.take(), name.take(), default_dir) {
            (Some(p), _, _) => out.push(p),
            (None, Some(n), Some(dir)) => out.push(format!("{dir}/{n}.rs")),
            _ => {}
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&section, &mut name, &mut path);
            section = line.to_string();
            continue;
        }
        let value = |key: &str| -> Option<String> {
            let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
            Some(rest.trim().trim_matches('"').to_string())
        };
        if section.starts_with("[[") || section == "[lib]" {
            if let Some(v) = value("name") {
                name = Some(v);
            }
            if let Some(v) = value("path") {
                path = Some(v);
            }
        }
    }
    flush(&section, &mut name, &mut path);
    out
}

/// The key files live under one folder with the same names in the README, `examples/config.yaml`,
/// the compose file, the Dockerfile's usage and the Kubernetes example.
#[test]
fn secret_paths_are_identical_everywhere() {
    let key_paths = [
        format!("{SECRET_DIR}/access_key_id"),
        format!("{SECRET_DIR}/secret_access_key"),
    ];
    for file in [
        "README.md",
        "examples/config.yaml",
        "examples/kubernetes/configmap.yaml",
    ] {
        let text = read_repo_file(file);
        for path in &key_paths {
            assert!(text.contains(path.as_str()), "{file} does not name {path}");
        }
    }
    for file in [
        "README.md",
        "Dockerfile",
        "examples/docker-compose.yml",
        "examples/kubernetes/deployment.yaml",
        "examples/kubernetes/configmap.yaml",
        "examples/config.yaml",
    ] {
        let text = read_repo_file(file);
        assert!(
            text.contains(SECRET_DIR),
            "{file} does not use {SECRET_DIR}"
        );
        for (i, _) in text.match_indices("/run/secrets/") {
            let rest = &text[i..];
            assert!(
                rest.starts_with(&format!("{SECRET_DIR}/"))
                    || rest.starts_with(&format!("{SECRET_DIR}:"))
                    || rest.starts_with(&format!("{SECRET_DIR}\n"))
                    || rest.starts_with(&format!("{SECRET_DIR}`")),
                "{file}: another secret path: {}",
                rest.lines().next().unwrap_or_default()
            );
        }
    }
}

/// The store gets a volume in the compose file (a named volume) and in Kubernetes (an
/// emptyDir), at the image's folder, and the Kubernetes exporter is told to use it.
#[test]
fn the_store_has_a_volume_in_every_example() {
    let compose = repo_yaml("examples/docker-compose.yml");
    let mounts: Vec<&str> = strings(&compose["services"][EXPORTER]["volumes"]);
    let named = mounts
        .iter()
        .find(|m| m.ends_with(&format!(":{STORAGE}")))
        .unwrap_or_else(|| panic!("no volume at {STORAGE}: {mounts:?}"));
    let volume = named.split(':').next().unwrap_or_default();
    assert!(
        compose["volumes"]
            .as_mapping()
            .is_some_and(|v| v.contains_key(volume)),
        "{volume} is not a named volume"
    );

    let deployment = repo_yaml("examples/kubernetes/deployment.yaml");
    let c = exporter_container(&deployment);
    assert!(
        strings(&c["args"]).contains(&format!("--storage.path={STORAGE}").as_str()),
        "the exporter is not given --storage.path={STORAGE}"
    );
    let mount = c["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|m| str_of(&m["mountPath"]) == STORAGE)
        .unwrap_or_else(|| panic!("nothing mounted at {STORAGE}"));
    assert_ne!(mount["readOnly"].as_bool(), Some(true));
    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the store's volume");
    assert!(volume["emptyDir"].is_mapping(), "{volume:?}");
    // The read-only, non-root pod can write it: fsGroup matches the user.
    let pod = &deployment["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(
        pod["fsGroup"].as_u64(),
        c["securityContext"]["runAsUser"].as_u64()
    );
}
