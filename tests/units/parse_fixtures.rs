//! Every fixture under `tests/fixtures/api/`, with the exact values it must give.

use volc_rtc_exporter::model::{status, Kind, Outcome, RecordFile, TaskSnapshot};
use volc_rtc_exporter::volc::parse::*;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/api/",
            $name
        ))
        .as_slice()
    };
}

fn ok(kind: Kind, body: &[u8]) -> TaskSnapshot {
    match classify(kind, 200, body) {
        Ok(s) => s,
        Err(e) => panic!("expected a snapshot, got {e}"),
    }
}

fn failed(kind: Kind, http_status: u16, body: &[u8]) -> ApiError {
    match classify(kind, http_status, body) {
        Err(e) => e,
        Ok(s) => panic!("expected an error, got {s:?}"),
    }
}

#[test]
fn record_running() {
    let s = ok(Kind::Record, fixture!("record_running.json"));
    assert_eq!(
        s,
        TaskSnapshot {
            status: status::RUNNING,
            start_time_ms: 1_717_243_200_000,
            end_time_ms: 0,
            stop_reason: String::new(),
            files: vec![],
            max_running_time_s: None,
            user_id: None,
        }
    );
    assert!(!s.is_terminal());
}

#[test]
fn record_ended_with_vod_and_object_storage_files() {
    let s = ok(Kind::Record, fixture!("record_ended_files.json"));
    assert_eq!(
        s,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_717_243_200_000,
            end_time_ms: 1_717_248_600_000,
            stop_reason: "StopByAPI".into(),
            files: vec![
                RecordFile {
                    vid: Some("v0d399g10004cfu2ho3c77u4dr5b3d1g".into()),
                    object_key: None,
                    duration_ms: Some(5_400_000),
                    size_bytes: Some(3_221_225_472),
                    start_time_ms: Some(1_717_243_201_000),
                },
                RecordFile {
                    vid: Some("v0d399g10004cfu2ho3c77u4dr5b3d2h".into()),
                    object_key: None,
                    duration_ms: Some(1_800_500),
                    size_bytes: Some(734_003_200),
                    start_time_ms: Some(1_717_246_800_500),
                },
                RecordFile {
                    vid: None,
                    object_key: Some(
                        "record/661e8f0d1ab2c3d4e5f60718/Room1/Task1/audio.m4a".into()
                    ),
                    duration_ms: Some(5_399_000),
                    size_bytes: Some(86_384_000),
                    start_time_ms: Some(1_717_243_201_000),
                },
            ],
            max_running_time_s: None,
            user_id: None,
        }
    );
    assert!(s.is_terminal());
    assert_eq!(
        s.files[2].label(2),
        "record/661e8f0d1ab2c3d4e5f60718/Room1/Task1/audio.m4a"
    );
}

#[test]
fn record_failed_to_start() {
    let s = ok(Kind::Record, fixture!("record_failed.json"));
    assert_eq!(s.status, status::FAILED);
    assert_eq!(s.start_time_ms, 1_717_243_260_000);
    assert_eq!(s.end_time_ms, 1_717_243_263_000);
    assert_eq!(s.stop_reason, "StartTaskFailed");
    assert!(s.files.is_empty());
}

#[test]
fn webcast_both_spellings() {
    let running = ok(Kind::Webcast, fixture!("webcast_running_WebCastTask.json"));
    assert_eq!(
        running,
        TaskSnapshot {
            status: status::RUNNING,
            start_time_ms: 1_717_243_500_000,
            end_time_ms: 0,
            stop_reason: String::new(),
            files: vec![],
            max_running_time_s: Some(86_400),
            user_id: Some("webcast_bot_1".into()),
        }
    );
    let ended = ok(Kind::Webcast, fixture!("webcast_ended_WebcastTask.json"));
    assert_eq!(
        ended,
        TaskSnapshot {
            status: status::ENDED,
            start_time_ms: 1_717_243_560_000,
            end_time_ms: 1_717_250_760_000,
            stop_reason: "ExceedMaxRunningTime".into(),
            files: vec![],
            max_running_time_s: Some(7_200),
            user_id: Some("webcast_bot_2".into()),
        }
    );
}

#[test]
fn error_families() {
    type Case<'a> = (&'a [u8], Kind, u16, Outcome, Option<&'a str>, &'a str);
    let cases: [Case; 7] = [
        (
            fixture!("error_flow_limit_429.json"),
            Kind::Record,
            429,
            Outcome::Throttled,
            Some("AccountFlowLimitExceeded"),
            "20240601120700F60718293A4B5C6D7E8F90",
        ),
        (
            fixture!("error_signature_401.json"),
            Kind::Record,
            401,
            Outcome::AuthError,
            Some("SignatureDoesNotMatch"),
            "2024060112080007182A3B4C5D6E7F8091A2",
        ),
        (
            fixture!("error_access_denied_403.json"),
            Kind::Webcast,
            403,
            Outcome::AuthError,
            Some("AccessDenied.NoPermissionForApp"),
            "20240601120900182A3B4C5D6E7F8091A2B3",
        ),
        (
            fixture!("error_task_not_found.json"),
            Kind::Record,
            400,
            Outcome::NotFound,
            Some("InvalidParameter.ErrorActiveTaskNotFound"),
            "202406011210002A3B4C5D6E7F8091A2B3C4",
        ),
        (
            fixture!("error_illegal_app_id_400.json"),
            Kind::Record,
            400,
            Outcome::ClientError,
            Some("InvalidParameter.NotExistAppId"),
            "202406011211003B4C5D6E7F8091A2B3C4D5",
        ),
        (
            fixture!("error_internal_500.json"),
            Kind::Record,
            500,
            Outcome::ServerError,
            Some("InternalError"),
            "202406011212004C5D6E7F8091A2B3C4D5E6",
        ),
        (
            fixture!("http200_with_error.json"),
            Kind::Webcast,
            200,
            Outcome::ClientError,
            Some("InvalidParameter.IllegalRoomID"),
            "202406011213005D6E7F8091A2B3C4D5E6F7",
        ),
    ];
    for (body, kind, http_status, outcome, code, request_id) in cases {
        let e = failed(kind, http_status, body);
        assert_eq!(e.outcome, outcome, "{e}");
        assert_eq!(e.http_status, Some(http_status));
        assert_eq!(e.code.as_deref(), code);
        assert_eq!(e.request_id.as_deref(), Some(request_id));
    }
    let e = failed(Kind::Record, 401, fixture!("error_signature_401.json"));
    assert_eq!(
        e.to_string(),
        "auth_error SignatureDoesNotMatch (HTTP 401): The request signature we calculated \
         does not match the signature you provided. Check your Secret Access Key and signing \
         method. Consult the service documentation for details. \
         [RequestId 2024060112080007182A3B4C5D6E7F8091A2]"
    );
}

#[test]
fn empty_result_is_not_found() {
    let e = failed(Kind::Record, 200, fixture!("record_empty_result.json"));
    assert_eq!(e.outcome, Outcome::NotFound);
    assert_eq!(e.code, None);
    assert_eq!(e.message, "the answer holds no RecordTask");
    assert_eq!(
        e.request_id.as_deref(),
        Some("202406011214006E7F8091A2B3C4D5E6F708")
    );
}

#[test]
fn html_502_is_a_server_error_and_truncated_json_a_decode_error() {
    let e = failed(Kind::Record, 502, fixture!("bad_gateway_502.html"));
    assert_eq!(e.outcome, Outcome::ServerError);
    assert_eq!(e.message, "HTTP 502 with an HTML page");
    let e = failed(Kind::Record, 200, fixture!("truncated.json"));
    assert_eq!(e.outcome, Outcome::DecodeError);
    assert_eq!(e.message, "HTTP 200 with truncated JSON (300 bytes)");
    assert_eq!(e.request_id, None);
}

#[test]
fn webcast_fixture_is_not_a_record_answer() {
    let e = failed(
        Kind::Record,
        200,
        fixture!("webcast_running_WebCastTask.json"),
    );
    assert_eq!(e.outcome, Outcome::NotFound);
}
