//! `volc::parse`: answers classified into snapshots or errors.

use volc_rtc_exporter::model::{Kind, Outcome, RecordFile, TaskSnapshot};
use volc_rtc_exporter::volc::parse::*;

fn err(kind: Kind, status: u16, body: &str) -> ApiError {
    match classify(kind, status, body.as_bytes()) {
        Err(e) => e,
        Ok(s) => panic!("expected an error, got {s:?}"),
    }
}

fn envelope_error(code: &str) -> String {
    format!(
        r#"{{"ResponseMetadata":{{"RequestId":"r1","Action":"GetRecordTask","Version":"2022-06-01","Service":"rtc","Region":"cn-north-1","Error":{{"CodeN":1,"Code":"{code}","Message":"m"}}}}}}"#
    )
}

#[test]
fn codes_map_to_outcomes() {
    let cases = [
        ("FlowLimitExceeded", Outcome::Throttled),
        ("AccountFlowLimitExceeded", Outcome::Throttled),
        ("FlowLimitExceeded.QPSOverLimit", Outcome::Throttled),
        ("SignatureDoesNotMatch", Outcome::AuthError),
        ("InvalidAccessKey", Outcome::AuthError),
        ("InvalidTimestamp", Outcome::AuthError),
        ("InvalidSecretToken", Outcome::AuthError),
        ("MissingSignature", Outcome::AuthError),
        ("MissingAuthenticationToken", Outcome::AuthError),
        ("InvalidAuthorization", Outcome::AuthError),
        ("InvalidCredential", Outcome::AuthError),
        ("AccessDenied", Outcome::AuthError),
        ("AccessDenied.RecordNotEnabled", Outcome::AuthError),
        ("AccessDenied.NoPermissionForApp", Outcome::AuthError),
        ("LackPolicy", Outcome::AuthError),
        (
            "InvalidParameter.ErrorActiveTaskNotFound",
            Outcome::NotFound,
        ),
        ("InvalidParameter.NotExistAppId", Outcome::ClientError),
        ("InvalidParameter.IllegalRoomID", Outcome::ClientError),
        ("MissingParameter", Outcome::ClientError),
        ("InvalidActionOrVersion", Outcome::ClientError),
        ("ServiceNotFound", Outcome::ClientError),
        ("InternalError", Outcome::ServerError),
        ("UndefinedError", Outcome::ServerError),
        ("InternalServiceTimeout", Outcome::ServerError),
        ("FailToConnect", Outcome::ServerError),
        ("InternalServiceError", Outcome::ServerError),
        ("ServiceUnavailableTemp", Outcome::ServerError),
    ];
    for (code, outcome) in cases {
        // The code decides whatever the status, even with HTTP 200.
        for status in [200, 400, 500] {
            let e = err(Kind::Record, status, &envelope_error(code));
            assert_eq!(e.outcome, outcome, "{code} with HTTP {status}");
            assert_eq!(e.code.as_deref(), Some(code));
            assert_eq!(e.request_id.as_deref(), Some("r1"));
        }
    }
}

#[test]
fn unknown_code_falls_back_to_status() {
    let body = envelope_error("SomethingNew");
    assert_eq!(err(Kind::Record, 200, &body).outcome, Outcome::ClientError);
    assert_eq!(err(Kind::Record, 503, &body).outcome, Outcome::ServerError);
    assert_eq!(err(Kind::Record, 403, &body).outcome, Outcome::AuthError);
    assert_eq!(err(Kind::Record, 429, &body).outcome, Outcome::Throttled);
    // 429 wins over any code.
    let body = envelope_error("InternalError");
    assert_eq!(err(Kind::Record, 429, &body).outcome, Outcome::Throttled);
}

#[test]
fn non_envelope_bodies_follow_the_status() {
    let html = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let e = err(Kind::Record, 502, html);
    assert_eq!(e.outcome, Outcome::ServerError);
    assert_eq!(e.message, "HTTP 502 with an HTML page");
    assert_eq!(err(Kind::Record, 200, html).outcome, Outcome::DecodeError);
    assert_eq!(err(Kind::Record, 429, "").outcome, Outcome::Throttled);
    assert_eq!(err(Kind::Record, 401, "nope").outcome, Outcome::AuthError);
    assert_eq!(err(Kind::Record, 404, "{}").outcome, Outcome::ClientError);
    assert_eq!(err(Kind::Record, 301, "").outcome, Outcome::ClientError);
    let e = err(Kind::Record, 200, r#"{"ResponseMetadata":{"Req"#);
    assert_eq!(e.outcome, Outcome::DecodeError);
    assert_eq!(e.message, "HTTP 200 with truncated JSON (25 bytes)");
    assert_eq!(
        err(Kind::Record, 200, "[1,2]").outcome,
        Outcome::DecodeError
    );
    assert_eq!(
        err(Kind::Record, 200, r#"{"ResponseMetadata":"x"}"#).outcome,
        Outcome::DecodeError
    );
}

#[test]
fn success_status_without_error_but_bad_status_code() {
    let body = r#"{"ResponseMetadata":{"RequestId":"r9"},"Result":{}}"#;
    let e = err(Kind::Record, 500, body);
    assert_eq!(e.outcome, Outcome::ServerError);
    assert_eq!(e.request_id.as_deref(), Some("r9"));
}

#[test]
fn empty_error_object_is_no_error() {
    let body = r#"{"ResponseMetadata":{"RequestId":"r","Error":{"Code":"","Message":""}},
        "Result":{"RecordTask":{"Status":2,"StartTime":5}}}"#;
    let s = classify(Kind::Record, 200, body.as_bytes()).map_err(|e| e.to_string());
    assert_eq!(s.map(|s| s.status), Ok(2));
}

#[test]
fn absent_empty_or_zero_task_is_not_found() {
    for body in [
        r#"{"ResponseMetadata":{"RequestId":"r"}}"#,
        r#"{"ResponseMetadata":{"RequestId":"r"},"Result":null}"#,
        r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{}}"#,
        r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{"RecordTask":null}}"#,
        r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{"RecordTask":{}}}"#,
        r#"{"ResponseMetadata":{"RequestId":"r"},"Result":{"RecordTask":{"StartTime":0,"EndTime":0,"Status":0,"StopReason":"","RecordFileList":null}}}"#,
    ] {
        let e = err(Kind::Record, 200, body);
        assert_eq!(e.outcome, Outcome::NotFound, "{body}");
        assert_eq!(e.request_id.as_deref(), Some("r"));
    }
    let body = r#"{"ResponseMetadata":{},"Result":{"WebcastTask":{"StartTime":0,"EndTime":0,
        "Status":0,"StopReason":"","UserId":"","SourceURL":"","MaxRunningTime":0}}}"#;
    assert_eq!(err(Kind::Webcast, 200, body).outcome, Outcome::NotFound);
    // Status 0 with a start time is a real task in an abnormal state.
    let body = r#"{"ResponseMetadata":{},"Result":{"RecordTask":{"Status":0,"StartTime":5}}}"#;
    let s = classify(Kind::Record, 200, body.as_bytes()).map_err(|e| e.to_string());
    assert_eq!(s.map(|s| s.start_time_ms), Ok(5));
    // A record answer is not a webcast answer.
    let body = r#"{"ResponseMetadata":{},"Result":{"RecordTask":{"Status":2}}}"#;
    assert_eq!(err(Kind::Webcast, 200, body).outcome, Outcome::NotFound);
}

#[test]
fn numbers_are_64_bit_and_may_be_strings() {
    let body = r#"{"ResponseMetadata":{},"Result":{"RecordTask":{
        "Status":"3","StartTime":1.7e12,"EndTime":"1700000003600000",
        "RecordFileList":[{"Size":9007199254740993,"Duration":" 42 "}]}}}"#;
    let s = classify(Kind::Record, 200, body.as_bytes()).map_err(|e| e.to_string());
    let s = match s {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(s.status, 3);
    assert_eq!(s.start_time_ms, 1_700_000_000_000);
    assert_eq!(s.end_time_ms, 1_700_000_003_600_000);
    assert_eq!(s.files[0].size_bytes, Some(9_007_199_254_740_993));
    assert_eq!(s.files[0].duration_ms, Some(42));
}

#[test]
fn nulls_are_absent_values() {
    let body = r#"{"ResponseMetadata":{"RequestId":null,"Error":null},"Result":{"RecordTask":{
        "Status":3,"StartTime":7,"EndTime":null,"StopReason":null,"RecordFileList":[
        {"Vid":null,"ObjectKey":"k","Size":null,"Duration":null,"StartTime":null}]}}}"#;
    let s = classify(Kind::Record, 200, body.as_bytes()).map_err(|e| e.to_string());
    assert_eq!(
        s,
        Ok(TaskSnapshot {
            status: 3,
            start_time_ms: 7,
            files: vec![RecordFile {
                object_key: Some("k".into()),
                ..RecordFile::default()
            }],
            ..TaskSnapshot::default()
        })
    );
}

#[test]
fn wrong_types_are_decode_errors_naming_the_field() {
    let cases = [
        (
            r#"{"Status":2,"StartTime":{"x":1}}"#,
            "RecordTask.StartTime should be a 64-bit integer but is an object",
        ),
        (
            r#"{"Status":2,"StartTime":1.5}"#,
            "RecordTask.StartTime should be a 64-bit integer but is the number 1.5",
        ),
        (
            r#"{"Status":"running"}"#,
            "RecordTask.Status should be a 64-bit integer but is the string \"running\"",
        ),
        (
            r#"{"Status":2,"StopReason":7}"#,
            "RecordTask.StopReason should be a string but is the number 7",
        ),
        (
            r#"{"Status":2,"RecordFileList":{}}"#,
            "RecordTask.RecordFileList should be an array but is an object",
        ),
        (
            r#"{"Status":2,"RecordFileList":[{},3]}"#,
            "RecordTask.RecordFileList[1] should be an object but is the number 3",
        ),
        (
            r#"{"Status":2,"RecordFileList":[{"Size":true}]}"#,
            "RecordTask.RecordFileList[0].Size should be a 64-bit integer but is a boolean",
        ),
        (
            r#"{"Status":2,"StartTime":99999999999999999999}"#,
            "RecordTask.StartTime should be a 64-bit integer but is the number 1e+20",
        ),
    ];
    for (task, message) in cases {
        let body = format!(r#"{{"ResponseMetadata":{{}},"Result":{{"RecordTask":{task}}}}}"#);
        let e = err(Kind::Record, 200, &body);
        assert_eq!(e.outcome, Outcome::DecodeError, "{task}");
        assert_eq!(e.message, message);
    }
    let e = err(Kind::Record, 200, r#"{"ResponseMetadata":{},"Result":[]}"#);
    assert_eq!(e.outcome, Outcome::DecodeError);
    let e = err(
        Kind::Record,
        200,
        r#"{"ResponseMetadata":{},"Result":{"RecordTask":"x"}}"#,
    );
    assert_eq!(e.outcome, Outcome::DecodeError);
}

#[test]
fn display_is_short_and_one_line() {
    let long = "x".repeat(1000);
    let body = format!(
        r#"{{"ResponseMetadata":{{"RequestId":"req-1","Error":{{"Code":"InternalError","Message":"line1\nline2 {long}"}}}}}}"#
    );
    let e = err(Kind::Record, 500, &body);
    let text = e.to_string();
    assert!(text.starts_with("server_error InternalError (HTTP 500): line1 line2 xxx"));
    assert!(text.ends_with("… [RequestId req-1]"), "{text}");
    assert!(!text.contains('\n'));
    assert_eq!(e.message.chars().count(), MAX_MESSAGE_CHARS + 1);
}
