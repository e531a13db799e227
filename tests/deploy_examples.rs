//! The deployment examples hold together: `examples/prometheus.yml` passes `promtool check
//! config`, the compose Alertmanager config passes `amtool check-config`, the Kubernetes
//! sidecar's config passes the exporter's own `check`, probes/ports/security settings and the
//! secret mount agree with it, the compose file mounts files that exist, and the Dockerfile
//! builds a static binary onto a non-root image exposing the default port.

mod tools;

use serde_yaml::Value;

use tools::{output_text, promtool, read_repo_file, repo_path, repo_yaml, run_in_repo, tool};

const PORT: u64 = 19966;
const EXPORTER: &str = "volcengine-rtc-exporter";

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

    // The PodMonitor selects this pod and scrapes the named port.
    let monitor = repo_yaml("examples/kubernetes/podmonitor.yaml");
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

    // Every manifest is in the kustomization.
    let kustomization = repo_yaml("examples/kubernetes/kustomization.yaml");
    let listed: Vec<&str> = strings(&kustomization["resources"]);
    for entry in std::fs::read_dir(repo_path("examples/kubernetes")).expect("dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .to_string();
        if name != "kustomization.yaml" {
            assert!(
                listed.contains(&name.as_str()),
                "{name} not in kustomization.yaml"
            );
        }
    }
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
    let secret = repo_yaml("examples/kubernetes/secret.yaml");
    let configmap = repo_yaml("examples/kubernetes/configmap.yaml");
    let secret_dir = mount_of(&|v| v["secret"]["secretName"] == secret["metadata"]["name"]);
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
        assert!(secret["stringData"][file].is_string(), "secret key {file}");
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
        Some(r#"["--config.file=/etc/volcengine-rtc-exporter/config.yaml"]"#)
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
