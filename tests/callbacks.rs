//! The simulator as the vendor's callback sender against a tiny loopback receiver built on
//! `callbacks::Receiver`: every lifecycle event of a small world arrives signed and is judged
//! into the right action; retries after a refusal and after a lost answer end as the vendor's
//! do; a resent event is a duplicate; a wrong key is 401 after three attempts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use volc_rtc_exporter::callbacks::{
    Action, Decision, Dedup, Outcome, Policy, Receiver, MAX_BODY_BYTES,
};
use volc_rtc_exporter::credentials::Secret;
use volc_rtc_exporter::model::{Kind, TargetKey};
use volc_rtc_exporter::sim::{
    run_callbacks, stop_reason, CallbackSender, Clock, NonceSpelling, SimFile, SimOptions, SimTask,
    Simulator,
};
use volc_rtc_exporter::state::EventRetention;

const KEY: &str = "callback-key-for-tests";
const APP: &str = "661e8f0d1ab2c3d4e5f60718";
const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

struct Sink {
    receiver: Receiver,
    decisions: Mutex<Vec<Decision>>,
    /// Answer 500 to this many deliveries first (before judging them).
    fail_first: Mutex<u32>,
}

async fn serve(sink: Arc<Sink>, shutdown: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            };
            let sink = sink.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let status = {
                            let mut fail = sink.fail_first.lock().expect("lock");
                            if *fail > 0 {
                                *fail -= 1;
                                Some(500)
                            } else {
                                None
                            }
                        };
                        let status = match status {
                            Some(s) => s,
                            None => match http_body_util::Limited::new(
                                req.into_body(),
                                MAX_BODY_BYTES + 1,
                            )
                            .collect()
                            .await
                            {
                                Ok(body) => {
                                    let body = body.to_bytes();
                                    let d = sink.receiver.receive(&body, T0 as i64);
                                    let s = d.status();
                                    sink.decisions.lock().expect("lock").push(d);
                                    s
                                }
                                Err(_) => 413,
                            },
                        };
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::from_u16(status).expect("status");
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn sink(fail_first: u32) -> Arc<Sink> {
    Arc::new(Sink {
        receiver: Receiver::new(
            Policy {
                key: Secret::new(KEY),
                app_ids: Some([APP.to_string()].into()),
                labels: vec![("discovered".into(), "yes".into())],
            },
            Dedup::new(EventRetention::default()),
        ),
        decisions: Mutex::new(Vec::new()),
        fail_first: Mutex::new(fail_first),
    })
}

fn key(kind: Kind, room: &str, task: &str) -> TargetKey {
    TargetKey {
        kind,
        app_id: APP.into(),
        room_id: room.into(),
        task_id: Some(task.into()),
    }
}

fn world() -> Arc<Simulator> {
    let t0 = T0 as i64;
    let file = SimFile::object("rec/room-1/a.mp4", t0 + 1_000, 4_000, "u1");
    let sim = Simulator::new(
        SimOptions::default(),
        Clock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_millis(T0)),
    );
    sim.add_tasks([
        SimTask::record(APP, "room-1", "rec-ok", t0 + 1_000)
            .ends(t0 + 5_000, stop_reason::IDLE_TIME_OUT)
            .files_at(t0 + 6_000, vec![file]),
        SimTask::record(APP, "room-2", "rec-failed", t0 + 2_000)
            .ends(t0 + 2_000, stop_reason::START_TASK_FAILED),
        SimTask::webcast(APP, "room-3", "web-1", t0 + 3_000),
        // Not yet: starts after the window the test advances through.
        SimTask::record(APP, "room-4", "rec-later", t0 + 60_000),
    ]);
    Arc::new(sim)
}

async fn wait_for(sink: &Sink, n: usize) -> Vec<Decision> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = sink.decisions.lock().expect("lock").clone();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_lifecycle_event_arrives_signed_and_becomes_its_action() {
    let shutdown = CancellationToken::new();
    let sink = sink(0);
    let addr = serve(sink.clone(), shutdown.clone()).await;
    let sim = world();
    let mut sender = CallbackSender::new(
        &format!("http://{addr}/callbacks/volcengine-rtc"),
        Secret::new(KEY),
    )
    .expect("loopback url");
    sender.spelling = NonceSpelling::Noce;
    let driver = tokio::spawn(run_callbacks(
        sim.clone(),
        sender,
        T0 as i64 - 1,
        Duration::from_millis(5),
        shutdown.clone(),
    ));
    // The world moves on 10 s; events come due as it does.
    for _ in 0..10 {
        sim.clock().advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decisions = wait_for(&sink, 4).await;
    shutdown.cancel();
    let _ = driver.await;

    assert_eq!(decisions.len(), 4, "{decisions:#?}");
    assert!(decisions.iter().all(|d| d.outcome == Outcome::Accepted));
    let types: Vec<&str> = decisions
        .iter()
        .filter_map(|d| d.event_type.as_deref())
        .collect();
    assert_eq!(
        types,
        [
            "RecordStarted",
            "RecordStarted",
            "WebcastStatusChanged",
            "RecordStopped"
        ]
    );
    assert!(matches!(
        &decisions[0].action,
        Action::RegisterAndPoll { target, start_failed: false }
            if target.key == key(Kind::Record, "room-1", "rec-ok")
                && *target.labels == [("discovered".to_string(), "yes".to_string())]
    ));
    assert!(matches!(
        &decisions[1].action,
        Action::RegisterAndPoll { target, start_failed: true }
            if target.key == key(Kind::Record, "room-2", "rec-failed")
    ));
    assert!(matches!(
        &decisions[2].action,
        Action::RegisterAndPoll { target, start_failed: false }
            if target.key == key(Kind::Webcast, "room-3", "web-1")
    ));
    let Action::ApplyFilesAndPoll { target, files } = &decisions[3].action else {
        panic!("{:?}", decisions[3].action);
    };
    assert_eq!(target.key, key(Kind::Record, "room-1", "rec-ok"));
    // The files are the simulator's truth for the task at the end.
    let truth = sim
        .task(Kind::Record, APP, "room-1", "rec-ok")
        .and_then(|t| t.result_json(sim.clock().now_ms()))
        .expect("task visible");
    let list = truth["RecordTask"]["RecordFileList"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(files.len(), list.len());
    assert_eq!(
        files[0].object_key.as_deref(),
        list[0]["ObjectKey"].as_str()
    );
    assert_eq!(files[0].size_bytes, list[0]["Size"].as_i64());
    assert_eq!(files[0].duration_ms, list[0]["Duration"].as_i64());
    assert_eq!(files[0].start_time_ms, list[0]["StartTime"].as_i64());
    assert_eq!(count(&sink.receiver, "RecordStarted", Outcome::Accepted), 2);
    assert_eq!(count(&sink.receiver, "RecordStopped", Outcome::Accepted), 1);
}

#[tokio::test]
async fn retries_duplicates_and_refusals_end_as_the_vendor_expects() {
    let shutdown = CancellationToken::new();
    // The first two attempts are answered 500: the third gets through.
    let sink = sink(2);
    let addr = serve(sink.clone(), shutdown.clone()).await;
    let sim = world();
    let url = format!("http://{addr}/cb");
    let sender = CallbackSender::new(&url, Secret::new(KEY)).expect("loopback url");
    let events = sim.callbacks_between(T0 as i64, T0 as i64 + 10_000);
    assert_eq!(events.len(), 4);
    let first = sender.send(&events[0]).await;
    assert_eq!((first.status, first.attempts), (Some(200), 3));
    // Sent again (the vendor's retry after a slow answer): a duplicate, still 200.
    let again = sender.send(&events[0]).await;
    assert_eq!((again.status, again.attempts), (Some(200), 1));
    // A sender with another key: 401 on every attempt.
    let wrong = CallbackSender::new(&url, Secret::new("not-the-key")).expect("loopback url");
    let refused = wrong.send(&events[1]).await;
    assert_eq!((refused.status, refused.attempts), (Some(401), 3));
    // A body past 64 KiB: 413.
    let big = reqwest::Client::new()
        .post(&url)
        .body(vec![b' '; MAX_BODY_BYTES + 10])
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert_eq!(big.ok(), Some(413));
    // Nobody listening: three attempts, no answer.
    shutdown.cancel();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead = format!("http://{}/cb", closed.local_addr().expect("addr"));
    drop(closed);
    let lost = CallbackSender::new(&dead, Secret::new(KEY))
        .expect("loopback url")
        .send(&events[2])
        .await;
    assert_eq!((lost.status, lost.attempts), (None, 3));

    assert_eq!(count(&sink.receiver, "RecordStarted", Outcome::Accepted), 1);
    assert_eq!(
        count(&sink.receiver, "RecordStarted", Outcome::Duplicate),
        1
    );
    assert_eq!(
        count(&sink.receiver, "unverified", Outcome::BadSignature),
        3
    );
}

/// `volcengine_rtc_callbacks_total{event_type,outcome}` as the exporter's registry shows it.
fn count(receiver: &Receiver, event_type: &str, outcome: Outcome) -> u64 {
    let registry = prometheus::Registry::new();
    receiver.metrics().register(&registry).unwrap();
    let is = |p: &prometheus::proto::LabelPair, name: &str, value: &str| {
        p.name() == name && p.value() == value
    };
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "volcengine_rtc_callbacks_total")
        .flat_map(|f| f.get_metric())
        .find(|m| {
            let l = m.get_label();
            l.iter().any(|p| is(p, "event_type", event_type))
                && l.iter().any(|p| is(p, "outcome", outcome.as_str()))
        })
        .map_or(0, |m| m.get_counter().get_value() as u64)
}
