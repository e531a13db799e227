//! The unit tests of `callbacks::verify`.
use volc_rtc_exporter::callbacks::verify::*;
use volc_rtc_exporter::credentials::Secret;

fn sample() -> Signed<'static> {
    Signed {
        event_type: "RecordStarted",
        event_data: r#"{"AppId":"app1","BusinessId":"","RoomId":"room1","TaskId":"task1","Code":0,"ErrorMessage":""}"#,
        event_time: "2024-01-01T00:00:00Z",
        event_id: "evt-0001",
        app_id: "app1",
        version: "2020-12-01",
        nonce: "1234",
    }
}

/// Known answers computed outside this crate (Python `hashlib.sha256` over the sorted,
/// joined strings), so a mistake shared by signer and checker cannot hide.
#[test]
fn known_answers() {
    assert_eq!(
        signature(&sample(), &Secret::new("callback-key")),
        "703b924d5b1dabccd60fe1e79b406137a546ffc81528d4f265eb65f75bb62339"
    );
    let placeholders = Signed {
        event_type: "EventTypeVal",
        event_data: "EventDataVal",
        event_time: "EventTimeVal",
        event_id: "EventIdVal",
        app_id: "AppIDVal",
        version: "VersionVal",
        nonce: "NoceVal",
    };
    // The vendor page's worked example: sorted, the payload is
    // "AppIDValEventDataValEventIdValEventTimeValEventTypeValNoceValSecretKeyValVersionVal".
    // (The digest the page prints next to it, 14aa6814…300f, is not the SHA-256 of that
    // payload under any separator or spelling tried, so it is not used as a vector.)
    assert_eq!(
        signature(&placeholders, &Secret::new("SecretKeyVal")),
        "ac2b6d55f57f6f7f95ef1f732998a22e0c20cb36cf75098b45a3b960715c0a1c"
    );
}

#[test]
fn sorting_is_by_bytes_and_the_key_takes_part() {
    // Uppercase sorts before lowercase; a key that sorts first changes the order.
    let mut v = sample();
    v.nonce = "Zzzz";
    let a = signature(&v, &Secret::new("key"));
    let b = signature(&v, &Secret::new("0key"));
    assert_ne!(a, b);
    // Swapping two values between fields keeps the sorted multiset, hence the signature.
    let mut swapped = v;
    swapped.event_id = v.version;
    swapped.version = v.event_id;
    assert_eq!(signature(&swapped, &Secret::new("key")), a);
}

#[test]
fn verify_accepts_either_case_and_nothing_else() {
    let key = Secret::new("callback-key");
    let sig = signature(&sample(), &key);
    assert!(verify(&sample(), &key, &sig));
    assert!(verify(&sample(), &key, &sig.to_uppercase()));
    assert!(!verify(&sample(), &key, &sig[..63]));
    assert!(!verify(&sample(), &key, ""));
    assert!(!verify(&sample(), &Secret::new("other-key"), &sig));
    let mut flipped = sig.clone().into_bytes();
    flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
    assert!(!verify(
        &sample(),
        &key,
        std::str::from_utf8(&flipped).unwrap_or_default()
    ));
    let mut changed = sample();
    changed.event_data = r#"{"AppId":"app1","RoomId":"room1","TaskId":"task2"}"#;
    assert!(!verify(&changed, &key, &sig));
}
