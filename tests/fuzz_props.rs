//! Property tests for every parser of untrusted bytes: callback bodies, API answers, the config,
//! target files, the web config and the registration API's JSON. Each gets arbitrary bytes and
//! inputs shaped like the real thing (JSON trees, YAML built from the format's own keys) and
//! must answer without panicking, with an outcome from its documented set and, where a secret
//! is involved, without echoing it. Case counts are small for CI; `benches/fuzz.rs` runs a
//! million inputs per parser.

use proptest::prelude::*;
use serde_json::Value;

use volc_rtc_exporter::callbacks::{self, verify, Dedup, Outcome, Policy};
use volc_rtc_exporter::config;
use volc_rtc_exporter::credentials::Secret;
use volc_rtc_exporter::http::web_config::{LoadOptions, WebConfig, WebConfigError};
use volc_rtc_exporter::model::Kind;
use volc_rtc_exporter::sim::MapEnv;
use volc_rtc_exporter::state::EventRetention;
use volc_rtc_exporter::targets::api;
use volc_rtc_exporter::volc::parse;

const KEY: &str = "fuzz-callback-key-7c1e";

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Words the formats use, so generated inputs reach past the first check.
const WORDS: &[&str] = &[
    "EventType",
    "EventData",
    "EventTime",
    "EventId",
    "AppId",
    "Version",
    "Nonce",
    "Noce",
    "Signature",
    "RecordStarted",
    "RecordStopped",
    "RoomId",
    "TaskId",
    "Code",
    "RecordFileList",
    "Vid",
    "ObjectKey",
    "Duration",
    "Size",
    "StartTime",
    "Status",
    "Reason",
    "PageCrash",
    "ResponseMetadata",
    "Result",
    "RecordTask",
    "WebCastTask",
    "WebcastTask",
    "Error",
    "Message",
    "RequestId",
    "EndTime",
    "StopReason",
    "MaxRunningTime",
    "UserId",
    "kind",
    "record",
    "webcast",
    "app_id",
    "room_id",
    "task_id",
    "labels",
    "targets",
    "api",
    "endpoint",
    "region",
    "credentials",
    "budget",
    "schedule",
    "active_interval",
    "settle_interval",
    "15s",
    "1m",
    "target_files",
    "tls_server_config",
    "cert_file",
    "key_file",
    "client_auth_type",
    "min_version",
    "TLS12",
    "http_server_config",
    "http2",
    "headers",
    "basic_auth_users",
    "X-Frame-Options",
    "deny",
    "true",
    "false",
    "null",
    "0",
    "1",
    "-1",
    "9223372036854775807",
    "1e400",
    "\"\"",
    "a",
    "app1",
    "r-1",
    "t_1",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(WORDS).prop_map(str::to_owned),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

/// Arbitrary JSON, leaning on the formats' own names.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(word(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// YAML-ish text: lines of keys, values, list marks and flow syntax at random indents.
fn yaml() -> impl Strategy<Value = String> {
    let line = (
        0usize..4,
        proptest::option::of(Just("- ")),
        word(),
        proptest::sample::select(
            &[
                ": ", ":", " ", ": [", ": {", "]", "}", ", ", ": '", ": \"", "",
            ][..],
        ),
        proptest::option::of(word()),
    )
        .prop_map(|(indent, dash, k, sep, v)| {
            format!(
                "{}{}{k}{sep}{}",
                "  ".repeat(indent),
                dash.unwrap_or(""),
                v.unwrap_or_default()
            )
        });
    proptest::collection::vec(line, 0..16).prop_map(|lines| lines.join("\n"))
}

fn policy() -> Policy {
    Policy {
        key: Secret::new(KEY),
        app_ids: None,
        labels: Default::default(),
    }
}

/// A body signed with `key` from arbitrary field values.
fn signed_body(fields: &[String; 7], data: &str, key: &str, nonce_name: &str) -> Vec<u8> {
    let values = verify::Signed {
        event_type: &fields[0],
        event_data: data,
        event_time: &fields[2],
        event_id: &fields[3],
        app_id: &fields[4],
        version: &fields[5],
        nonce: &fields[6],
    };
    let sig = verify::signature(&values, &Secret::new(key));
    serde_json::json!({
        "EventType": fields[0], "EventData": data, "EventTime": fields[2],
        "EventId": fields[3], "AppId": fields[4], "Version": fields[5],
        nonce_name: fields[6], "Signature": sig,
    })
    .to_string()
    .into_bytes()
}

fn fields() -> impl Strategy<Value = [String; 7]> {
    proptest::array::uniform7(word())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn callback_bodies_of_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let d = callbacks::handle(&policy(), &mut Dedup::new(EventRetention::default()), &body, 0);
        prop_assert!([200, 400, 401, 403].contains(&d.status()));
        prop_assert!(!d.reason.contains(KEY));
        // Random bytes are never signed with our key.
        prop_assert!(d.outcome != Outcome::Accepted);
    }

    #[test]
    fn callback_bodies_of_any_json(value in json()) {
        let body = value.to_string().into_bytes();
        let d = callbacks::handle(&policy(), &mut Dedup::new(EventRetention::default()), &body, 0);
        prop_assert!(matches!(d.outcome, Outcome::Malformed | Outcome::BadSignature | Outcome::TooLarge));
        if !value.is_object() {
            prop_assert_eq!(d.outcome, Outcome::Malformed);
        }
    }

    #[test]
    fn signed_callbacks_with_any_values(
        f in fields(),
        data in prop_oneof![json().prop_map(|v| v.to_string()), word()],
        noce in any::<bool>(),
        other_key in "[a-z]{1,8}",
    ) {
        let name = if noce { "Noce" } else { "Nonce" };
        let body = signed_body(&f, &data, KEY, name);
        let mut dedup = Dedup::new(EventRetention::default());
        let d = callbacks::handle(&policy(), &mut dedup, &body, 0);
        // Whatever the values, a correctly signed body passes the signature check.
        prop_assert!(matches!(d.outcome, Outcome::Accepted | Outcome::Malformed), "{:?}", d);
        prop_assert!(!d.reason.contains(KEY));
        if d.outcome == Outcome::Accepted {
            let again = callbacks::handle(&policy(), &mut dedup, &body, 1);
            prop_assert_eq!(again.outcome, Outcome::Duplicate);
        }
        let forged = signed_body(&f, &data, &other_key, name);
        let d = callbacks::handle(&policy(), &mut Dedup::new(EventRetention::default()), &forged, 0);
        prop_assert_eq!(d.outcome, Outcome::BadSignature);
    }

    #[test]
    fn api_answers_of_any_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        status in 100u16..600,
        webcast in any::<bool>(),
    ) {
        let kind = if webcast { Kind::Webcast } else { Kind::Record };
        let _ = parse::classify(kind, status, &body);
    }

    #[test]
    fn api_answers_of_any_json(value in json(), inner in json(), status in prop_oneof![Just(200u16), 100u16..600]) {
        // Also wrapped where a real answer keeps its task, to reach the field checks.
        let wrapped = serde_json::json!({
            "ResponseMetadata": {"RequestId": "r", "Action": "GetRecordTask"},
            "Result": {"RecordTask": inner.clone(), "WebCastTask": inner},
        });
        for v in [&value, &wrapped] {
            let body = v.to_string().into_bytes();
            for kind in Kind::ALL {
                if let Err(e) = parse::classify(kind, status, &body) {
                    prop_assert!(!e.to_string().contains('\n'));
                }
            }
        }
    }

    #[test]
    fn config_of_any_text(text in prop_oneof![yaml(), "\\PC{0,200}"]) {
        let env = MapEnv::new();
        if let Err(e) = config::parse(&text, "fuzz.yaml", &env) {
            prop_assert!(!e.problems().is_empty());
        }
    }

    #[test]
    fn config_with_a_secret_never_echoes_it(text in yaml()) {
        let secret = "Zq9SECRETxx";
        let full = format!("credentials:\n  access_key_id: AKLT1\n  secret_access_key: {secret}\n{text}");
        if let Err(e) = config::parse(&full, "fuzz.yaml", &MapEnv::new()) {
            prop_assert!(!e.to_string().contains(secret), "{}", e);
        }
    }

    #[test]
    fn target_files_of_any_text(text in prop_oneof![yaml(), "\\PC{0,200}"]) {
        if let Err(e) = config::parse_targets(&text, "targets.yaml") {
            prop_assert!(!e.problems().is_empty());
        }
    }

    #[test]
    fn web_config_of_any_text(text in prop_oneof![yaml(), "\\PC{0,200}"]) {
        // Through a file, as the exporter reads it, in a folder of its own (the files it names
        // are not found).
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let file = dir.path().join("web.yml");
        std::fs::write(&file, &text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Err(e) = WebConfig::load_with(&file, &LoadOptions::default()) {
            let problems = match &e {
                WebConfigError::Invalid { problems, .. } => problems.as_slice(),
                WebConfigError::Read { .. } => &[],
            };
            prop_assert!(!problems.is_empty(), "{}", e);
        }
    }

    #[test]
    fn registration_bodies_of_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        for r in [api::parse_register(&body).map(|_| ()), api::parse_deregister(&body).map(|_| ())] {
            if let Err(e) = r {
                prop_assert!([400, 413].contains(&e.status()));
            }
        }
    }

    #[test]
    fn registration_bodies_of_any_json(items in proptest::collection::vec(
        proptest::collection::btree_map(
            proptest::sample::select(&["kind", "app_id", "room_id", "task_id", "labels", "x"][..]),
            json(),
            0..6,
        ),
        0..6,
    )) {
        let value = Value::Array(
            items
                .into_iter()
                .map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
                .collect(),
        );
        let body = value.to_string().into_bytes();
        match api::parse_register(&body) {
            Ok(targets) => prop_assert!(targets.len() <= value.as_array().map_or(0, Vec::len)),
            Err(e) => {
                prop_assert_eq!(e.status(), 400);
                // The answer body is JSON whatever the input.
                prop_assert!(serde_json::from_str::<Value>(&e.to_json()).is_ok());
            }
        }
        let _ = api::parse_deregister(&body);
    }
}

#[test]
fn settings_section_of_any_yaml() {
    // Plain serde over the section: refused or accepted, never a panic; checks never echo an
    // inline key.
    let mut runner = proptest::test_runner::TestRunner::new(cases(256));
    let result = runner.run(&yaml(), |text| {
        let full = format!("secret_key: Zq9KEYxx\n{text}");
        if let Ok(c) = serde_yaml::from_str::<callbacks::settings::CallbacksConfig>(&full) {
            if let Err(problems) = c.check(None, &MapEnv::new()) {
                for p in problems {
                    prop_assert!(!p.to_string().contains("Zq9KEYxx"));
                }
            }
        }
        Ok(())
    });
    assert!(result.is_ok(), "{result:?}");
}
