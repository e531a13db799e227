//! The unit tests of `callbacks::event`.
use serde_json::json;
use serde_json::Value;
use volc_rtc_exporter::callbacks::event::*;
use volc_rtc_exporter::model::RecordFile;

fn envelope(event_type: &str, data: Value) -> Envelope {
    let body = json!({
        "EventType": event_type,
        "EventData": data.to_string(),
        "EventTime": "2024-01-01T00:00:00Z",
        "EventId": "e1",
        "AppId": "app1",
        "Version": "2020-12-01",
        "Nonce": "1234",
        "Signature": "00",
    });
    parse_envelope(body.to_string().as_bytes()).unwrap_or_default()
}

fn ids() -> TaskIds {
    TaskIds {
        app_id: "app1".into(),
        business_id: None,
        room_id: "r1".into(),
        task_id: "t1".into(),
    }
}

#[test]
fn envelope_reads_both_nonce_spellings_any_case_and_numbers() {
    let body = br#"{"eventtype":"RecordStarted","EventData":"{}","EventTime":"t","EVENTID":42,
        "AppId":"a","Version":"2020-12-01","Noce":"0042","Nonce":7,"Signature":"ab","Extra":[1]}"#;
    let env = parse_envelope(body).unwrap_or_default();
    assert_eq!(env.event_type, "RecordStarted");
    assert_eq!(env.event_id, "42");
    assert_eq!(env.nonces, vec!["7".to_string(), "0042".to_string()]);
    assert_eq!(env.signature.as_deref(), Some("ab"));
    let only_noce = br#"{"Noce":"1111"}"#;
    assert_eq!(
        parse_envelope(only_noce).map(|e| e.nonces),
        Ok(vec!["1111".to_string()])
    );
}

#[test]
fn envelope_refusals_name_the_problem_not_the_body() {
    let e = parse_envelope(b"{\"EventType\": \"RecordSt").err();
    assert!(e.is_some_and(|e| e.0.contains("not JSON") && !e.0.contains("RecordSt")));
    assert_eq!(
        parse_envelope(b"[1,2]"),
        Err(Malformed("the body is not a JSON object".into()))
    );
    let e = parse_envelope(br#"{"EventId":{"a":1}}"#).err();
    assert_eq!(e, Some(Malformed("`EventId` should be a string".into())));
}

#[test]
fn record_started_ok_and_failed() {
    let ev = envelope(
        "RecordStarted",
        json!({"AppId":"app1","BusinessId":"","RoomId":"r1","TaskId":"t1","Code":0,"ErrorMessage":""}),
    );
    assert_eq!(
        parse_event(&ev),
        Ok(Event::RecordStarted {
            task: ids(),
            code: 0,
            error_message: None
        })
    );
    let failed = envelope(
        "RecordStarted",
        json!({"RoomId":"r1","TaskId":"t1","Code":"1","ErrorMessage":"no stream","BusinessId":"b"}),
    );
    assert_eq!(
        parse_event(&failed),
        Ok(Event::RecordStarted {
            task: TaskIds {
                business_id: Some("b".into()),
                ..ids()
            },
            code: 1,
            error_message: Some("no stream".into())
        })
    );
}

#[test]
fn record_stopped_carries_its_files_leniently() {
    let ev = envelope(
        "RecordStopped",
        json!({"AppId":"app1","RoomId":"r1","TaskId":"t1","Code":0,"RecordFileList":[
            {"Vid":"v1","ObjectKey":"","Duration":"60000","Size":7500000,"StartTime":1_704_067_200_000_i64,
             "AudioCodec":"aac","EncryptionType":0},
            "junk",
            {"ObjectKey":"k/2.mp4","Duration":1.5e3,"Size":"big","StartTime":null}
        ]}),
    );
    let Ok(Event::RecordStopped { files, code, task }) = parse_event(&ev) else {
        panic!("not a RecordStopped: {:?}", parse_event(&ev));
    };
    assert_eq!((code, task), (0, ids()));
    assert_eq!(
        files,
        vec![
            RecordFile {
                vid: Some("v1".into()),
                object_key: None,
                duration_ms: Some(60_000),
                size_bytes: Some(7_500_000),
                start_time_ms: Some(1_704_067_200_000),
            },
            RecordFile {
                vid: None,
                object_key: Some("k/2.mp4".into()),
                duration_ms: Some(1_500),
                size_bytes: None,
                start_time_ms: None,
            },
        ]
    );
}

#[test]
fn event_data_may_be_an_object_or_doubly_encoded() {
    let data = json!({"RoomId":"r1","TaskId":"t1"});
    let body = json!({"EventType":"RecordStarted","EventData":data,"AppId":"app1"});
    let env = parse_envelope(body.to_string().as_bytes()).unwrap_or_default();
    assert!(matches!(parse_event(&env), Ok(Event::RecordStarted { .. })));
    let twice = json!(data.to_string()).to_string();
    let body = json!({"EventType":"RecordStarted","EventData":twice,"AppId":"app1"});
    let env = parse_envelope(body.to_string().as_bytes()).unwrap_or_default();
    assert!(matches!(parse_event(&env), Ok(Event::RecordStarted { .. })));
}

#[test]
fn known_types_without_a_valid_task_are_malformed() {
    let cases = [
        ("RecordStarted", json!({"RoomId":"r1"}), "no `TaskId`"),
        (
            "RecordStopped",
            json!({"RoomId":"r 1","TaskId":"t"}),
            "`RoomId`",
        ),
        (
            "RecordStarted",
            json!({"AppId":"other","RoomId":"r","TaskId":"t"}),
            "differs",
        ),
    ];
    for (t, data, needle) in cases {
        let e = parse_event(&envelope(t, data)).err();
        assert!(e.as_ref().is_some_and(|e| e.0.contains(needle)), "{e:?}");
    }
    let mut not_json = envelope("RecordStopped", json!({}));
    not_json.event_data = "{oops".into();
    assert!(parse_event(&not_json).is_err());
}

#[test]
fn unconfirmed_names_are_recognised_by_shape() {
    let task = json!({"AppId":"app1","RoomId":"r1","TaskId":"t1","Code":0,"ErrorMessage":""});
    assert_eq!(
        parse_event(&envelope("RecordUploadDone", task.clone())),
        Ok(Event::RecordUpload {
            task: ids(),
            code: Some(0),
            error_message: None
        })
    );
    assert_eq!(
        parse_event(&envelope(
            "WebcastStatusChanged",
            json!({"RoomId":"r1","TaskId":"t1","Status":1})
        )),
        Ok(Event::WebCapture {
            task: ids(),
            status: Some(1),
            reason: None
        })
    );
    assert_eq!(
        parse_event(&envelope(
            "SomethingNew",
            json!({"RoomId":"r1","TaskId":"t1","Status":"5","Reason":"PageCrash"})
        )),
        Ok(Event::WebCapture {
            task: ids(),
            status: Some(5),
            reason: Some("PageCrash".into())
        })
    );
    // Unknown names, or guesses that do not fit, are data, not errors.
    for (t, data) in [
        ("UserJoinRoom", task.clone()),
        ("RecordUploadDone", json!({"RoomId":"r1"})),
        ("WebcastSomething", json!("not an object")),
        ("", json!({})),
    ] {
        assert_eq!(parse_event(&envelope(t, data)), Ok(Event::Unknown), "{t}");
    }
}
