//! Fuzz run on stable Rust: every parser of untrusted bytes fed generated inputs, reporting
//! panics (there must be none) and peak heap memory.
//!
//! Run with `cargo bench --bench fuzz` (1,000,000 inputs per parser; `FUZZ_CASES=N` to change,
//! `FUZZ_SEED=N` for another sequence, `FUZZ_ONLY=name` for one parser). Without the `--bench`
//! argument that `cargo bench` passes (so under `cargo test --all-targets`) it runs 2,000
//! inputs per parser as a smoke test.
//!
//! Inputs are mutations of a seed corpus (the repository's answer and web config fixtures, the
//! example config, signed callback bodies, target lists): bit flips, random bytes, insertions
//! and deletions, repeated slices, words from the formats' dictionaries, splices of two seeds,
//! truncations, and one input in sixteen of pure random bytes. One parser, `callback-signed`,
//! mutates only `EventData` and signs each input, so the event parser behind the signature
//! check is reached too. Each input runs under `catch_unwind`; a panic is counted and the first
//! input of each parser is written to `target/fuzz-panic-<parser>.bin`. Peak memory is the
//! heap's high-water mark while the parser ran (a counting global allocator) and the process's
//! `VmHWM`.
//!
//! Exits non-zero when any parser panicked.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use peak_alloc::PeakAlloc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use volc_rtc_exporter::callbacks::{self, verify, Dedup, Policy};
use volc_rtc_exporter::config;
use volc_rtc_exporter::credentials::Secret;
use volc_rtc_exporter::http::web_config::{LoadOptions, WebConfig};
use volc_rtc_exporter::model::Kind;
use volc_rtc_exporter::sim::MapEnv;
use volc_rtc_exporter::state::EventRetention;
use volc_rtc_exporter::targets::api;
use volc_rtc_exporter::volc::parse;

#[global_allocator]
static PEAK: PeakAlloc = PeakAlloc;

const FULL_CASES: u64 = 1_000_000;
const SMOKE_CASES: u64 = 2_000;
const MAX_INPUT: usize = 64 * 1024 + 64;
const KEY: &str = "fuzz-callback-key";

const DICT: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"",
    "\\",
    "\\u0000",
    "\\ud800",
    "null",
    "true",
    "false",
    "-",
    "0",
    "1",
    "-1",
    "1e999",
    "-0.0",
    "9223372036854775807",
    "18446744073709551616",
    "\n",
    "  ",
    "\t",
    "- ",
    ": ",
    "#",
    "&a",
    "*a",
    "!!str",
    "|",
    ">",
    "---",
    "...",
    "'",
    "?",
    "%YAML 1.2",
    "EventType",
    "EventData",
    "EventId",
    "AppId",
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
    "Size",
    "Duration",
    "StartTime",
    "Status",
    "Reason",
    "Result",
    "RecordTask",
    "WebCastTask",
    "ResponseMetadata",
    "Error",
    "StopReason",
    "EndTime",
    "kind",
    "record",
    "webcast",
    "app_id",
    "room_id",
    "task_id",
    "labels",
    "targets",
    "credentials",
    "budget",
    "schedule",
    "api",
    "tls_server_config",
    "http_server_config",
    "basic_auth_users",
    "headers",
    "cert_file",
    "$2y$04$",
    "15s",
    "1m",
    "\u{feff}",
    "\u{fffd}",
    "é",
    "😀",
];

type Parser = Box<dyn Fn(&[u8])>;
/// Turns a generated input into the bytes parsed.
type Wrap = fn(&[u8]) -> Vec<u8>;

struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: Parser,
    /// When set, the input is wrapped by this before parsing (the signed-callback target).
    wrap: Option<Wrap>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e != "md") {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.push(bytes);
                }
            }
        }
    }
    out
}

fn policy() -> Policy {
    Policy {
        key: Secret::new(KEY),
        app_ids: None,
        labels: Default::default(),
    }
}

fn signed(event_type: &str, data: &str, nonce_name: &str) -> Vec<u8> {
    let values = verify::Signed {
        event_type,
        event_data: data,
        event_time: "2026-01-01T00:00:00Z",
        event_id: "evt-1",
        app_id: "app1",
        version: "2020-12-01",
        nonce: "1234",
    };
    let sig = verify::signature(&values, &Secret::new(KEY));
    serde_json::json!({
        "EventType": event_type, "EventData": data, "EventTime": "2026-01-01T00:00:00Z",
        "EventId": "evt-1", "AppId": "app1", "Version": "2020-12-01", nonce_name: "1234",
        "Signature": sig,
    })
    .to_string()
    .into_bytes()
}

const EVENT_DATA: &[&str] = &[
    r#"{"AppId":"app1","BusinessId":"","RoomId":"r1","TaskId":"t1","Code":0,"ErrorMessage":""}"#,
    r#"{"AppId":"app1","RoomId":"r1","TaskId":"t1","Code":"1","ErrorMessage":"failed"}"#,
    r#"{"AppId":"app1","RoomId":"r1","TaskId":"t1","Code":0,"RecordFileList":[{"Vid":"v","ObjectKey":"k/a.mp4","Duration":60000,"Size":"7500000","StartTime":1767225600000,"AudioCodec":"aac","EncryptionType":0}]}"#,
    r#"{"RoomId":"r1","TaskId":"t1","Status":5,"Reason":"PageCrash"}"#,
    r#""{\"RoomId\":\"r1\",\"TaskId\":\"t1\"}""#,
];

/// The signed-callback target's wrapper: the input is `<type>\n<EventData>`, signed.
fn wrap_signed(input: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(input);
    let (event_type, data) = text.split_once('\n').unwrap_or(("RecordStopped", &text));
    signed(
        event_type,
        data,
        if input.len() % 2 == 0 {
            "Nonce"
        } else {
            "Noce"
        },
    )
}

fn targets() -> Vec<Target> {
    let fixtures = repo().join("tests/fixtures");
    let example_config = std::fs::read(repo().join("examples/config.yaml")).unwrap_or_default();
    let mut callback_seeds: Vec<Vec<u8>> = EVENT_DATA
        .iter()
        .zip([
            "RecordStarted",
            "RecordStarted",
            "RecordStopped",
            "WebcastStatusChanged",
            "RecordStarted",
        ])
        .map(|(d, t)| signed(t, d, "Nonce"))
        .collect();
    callback_seeds.push(br#"{"EventType":"RecordStarted","Noce":"1","Signature":"00"}"#.to_vec());
    let signed_seeds: Vec<Vec<u8>> = EVENT_DATA
        .iter()
        .zip([
            "RecordStarted",
            "RecordStarted",
            "RecordStopped",
            "WebcastStatusChanged",
            "RecordUploadDone",
        ])
        .map(|(d, t)| format!("{t}\n{d}").into_bytes())
        .collect();
    let targets_seeds = vec![
        b"- {kind: record, app_id: app1, room_id: r1, task_id: t1}\n- kind: webcast\n  app_id: app1\n  room_id: r2\n  labels: {team: a}\n".to_vec(),
        br#"[{"kind":"record","app_id":"a","room_id":"r","task_id":"t","labels":{"x":"y"}}]"#.to_vec(),
        b"".to_vec(),
    ];
    // Valid bcrypt hashes would make each input cost a bcrypt run (the decoy hash); the seeds'
    // hashes are cut so the checks around them are fuzzed, not bcrypt itself.
    let web_dir = tempfile::tempdir().ok();
    let web_seeds: Vec<Vec<u8>> = files_in(&fixtures.join("web"))
        .into_iter()
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace("$2y$10$", "$2y$1x$")
                .into_bytes()
        })
        .collect();
    let api_seeds = files_in(&fixtures.join("api"));
    vec![
        Target {
            name: "callback-body",
            seeds: callback_seeds,
            run: Box::new(|b| {
                let mut dedup = Dedup::new(EventRetention::default());
                let _ = callbacks::handle(&policy(), &mut dedup, b, 0);
            }),
            wrap: None,
        },
        Target {
            name: "callback-signed",
            seeds: signed_seeds,
            run: Box::new(|b| {
                let mut dedup = Dedup::new(EventRetention::default());
                let d = callbacks::handle(&policy(), &mut dedup, b, 0);
                // Signed with the right key: never refused for its signature.
                assert!(
                    d.outcome != callbacks::Outcome::BadSignature || b.len() > MAX_INPUT,
                    "a correctly signed body was refused"
                );
            }),
            wrap: Some(wrap_signed),
        },
        Target {
            name: "api-answer",
            seeds: api_seeds,
            run: Box::new(|b| {
                for kind in Kind::ALL {
                    let _ = parse::classify(kind, 200, b);
                }
                let _ = parse::classify(Kind::Record, 400, b);
            }),
            wrap: None,
        },
        Target {
            name: "config",
            seeds: vec![
                example_config,
                b"targets:\n  - {kind: record, app_id: a, room_id: r, task_id: t}\ncredentials: {access_key_id: AK, secret_access_key: SK}\n".to_vec(),
                std::fs::read(fixtures.join("config/broken.yaml")).unwrap_or_default(),
            ],
            run: Box::new(|b| {
                let text = String::from_utf8_lossy(b);
                let _ = config::parse(&text, "fuzz.yaml", &MapEnv::new());
            }),
            wrap: None,
        },
        Target {
            name: "target-file",
            seeds: targets_seeds.clone(),
            run: Box::new(|b| {
                let text = String::from_utf8_lossy(b);
                let _ = config::parse_targets(&text, "targets.yaml");
            }),
            wrap: None,
        },
        Target {
            name: "web-config",
            seeds: web_seeds,
            // Through a file, as the exporter reads it; in a folder of its own, so the files
            // it names are not found.
            run: Box::new(move |b| {
                let file = web_dir.as_ref().map(|d| d.path().join("web.yml"));
                let text = String::from_utf8_lossy(b);
                if let Some(file) = file.filter(|f| std::fs::write(f, text.as_bytes()).is_ok()) {
                    let _ = WebConfig::load_with(&file, &LoadOptions::default());
                }
            }),
            wrap: None,
        },
        Target {
            name: "registration-api",
            seeds: targets_seeds,
            run: Box::new(|b| {
                let _ = api::parse_register(b);
                let _ = api::parse_deregister(b);
            }),
            wrap: None,
        },
    ]
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], out: &mut Vec<u8>) {
    out.clear();
    if seeds.is_empty() || rng.gen_ratio(1, 16) {
        let n = rng.gen_range(0..256);
        out.extend((0..n).map(|_| rng.gen::<u8>()));
        return;
    }
    out.extend_from_slice(&seeds[rng.gen_range(0..seeds.len())]);
    for _ in 0..rng.gen_range(1..=8) {
        let len = out.len();
        match rng.gen_range(0..9) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] = rng.gen();
            }
            2 => {
                let i = rng.gen_range(0..=len);
                out.insert(i, rng.gen());
            }
            3 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = (a + rng.gen_range(1..=16)).min(len);
                out.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = (a + rng.gen_range(1..=32)).min(len);
                let slice = out[a..b].to_vec();
                let at = rng.gen_range(0..=out.len());
                for _ in 0..rng.gen_range(1..=4) {
                    out.splice(at..at, slice.iter().copied());
                }
            }
            5 | 6 => {
                let word = DICT[rng.gen_range(0..DICT.len())].as_bytes();
                let at = rng.gen_range(0..=len);
                out.splice(at..at, word.iter().copied());
            }
            7 => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.gen_range(0..other.len());
                    let at = rng.gen_range(0..=len);
                    out.truncate(at);
                    out.extend_from_slice(&other[from..]);
                }
            }
            _ if len > 0 => {
                out.truncate(rng.gen_range(0..len));
            }
            _ => {}
        }
    }
    out.truncate(MAX_INPUT);
}

/// `VmHWM` of this process, KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let cases: u64 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { FULL_CASES } else { SMOKE_CASES });
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let only = std::env::var("FUZZ_ONLY").ok();
    // Panics are counted, not printed per input.
    std::panic::set_hook(Box::new(|_| {}));
    println!(
        "{:<18} {:>10} {:>7} {:>10} {:>14} {:>14}",
        "parser", "inputs", "panics", "inputs/s", "peak heap MiB", "VmHWM MiB"
    );
    let mut total_panics = 0u64;
    for target in targets() {
        if only.as_deref().is_some_and(|o| o != target.name) {
            continue;
        }
        let mut rng = StdRng::seed_from_u64(seed ^ target.name.len() as u64);
        let mut input = Vec::with_capacity(MAX_INPUT);
        let mut panics = 0u64;
        let mut first_panic: Option<Vec<u8>> = None;
        PEAK.reset_peak_usage();
        let base_heap = PEAK.current_usage();
        let started = Instant::now();
        for _ in 0..cases {
            mutate(&mut rng, &target.seeds, &mut input);
            let wrapped;
            let bytes: &[u8] = match target.wrap {
                Some(wrap) => {
                    wrapped = wrap(&input);
                    &wrapped
                }
                None => &input,
            };
            if catch_unwind(AssertUnwindSafe(|| (target.run)(bytes))).is_err() {
                panics += 1;
                first_panic.get_or_insert_with(|| bytes.to_vec());
            }
        }
        let elapsed = started.elapsed().max(Duration::from_micros(1));
        let peak_mib = (PEAK.peak_usage().saturating_sub(base_heap)) as f64 / (1024.0 * 1024.0);
        let hwm = vm_hwm_kib().map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0));
        println!(
            "{:<18} {:>10} {:>7} {:>10.0} {:>14.2} {:>14}",
            target.name,
            cases,
            panics,
            cases as f64 / elapsed.as_secs_f64(),
            peak_mib,
            hwm
        );
        if let Some(bytes) = first_panic {
            let path = repo().join(format!("target/fuzz-panic-{}.bin", target.name));
            let _ = std::fs::write(&path, &bytes);
            println!("  first panicking input written to {}", path.display());
        }
        total_panics += panics;
    }
    if total_panics > 0 {
        eprintln!("{total_panics} input(s) made a parser panic");
        std::process::exit(1);
    }
}
