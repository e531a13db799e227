//! `scheduler::auth_hold`: the auth gate trips after repeated auth errors, probes with
//! doubling pauses and lifts on any other answer.

use std::time::Duration;

use tokio::time::Instant;
use volc_rtc_exporter::scheduler::{AuthGate, Gate, MAX_BACKOFF};

#[tokio::test(start_paused = true)]
async fn auth_gate_trips_probes_with_doubling_pauses_and_lifts_on_any_other_answer() {
    let gate = AuthGate::default();
    let i = Duration::from_secs(2);
    let t0 = Instant::now();
    // Two failures in a row, then a success: never held.
    for ok in [false, false, true, false, false] {
        assert_eq!(gate.check(t0), Gate::Open);
        assert!(!gate.begin(t0));
        gate.finish(false, !ok, t0, i);
    }
    // The third in a row holds the action for one interval.
    gate.finish(false, true, t0, i);
    assert_eq!(gate.check(t0), Gate::Wait(Some(t0 + i)));
    // Requests already in flight failing too do not lengthen the hold.
    gate.finish(false, true, t0, i);
    assert_eq!(gate.check(t0 + i / 2), Gate::Wait(Some(t0 + i)));
    // Then one probe at a time; a failed probe doubles the pause.
    let t1 = t0 + i;
    assert_eq!(gate.check(t1), Gate::Open);
    assert!(gate.begin(t1));
    assert_eq!(gate.check(t1), Gate::Wait(None));
    assert!(!gate.begin(t1), "only one probe in flight");
    gate.finish(true, true, t1, i);
    assert_eq!(gate.check(t1), Gate::Wait(Some(t1 + 2 * i)));
    let t2 = t1 + 2 * i;
    assert!(gate.begin(t2));
    gate.finish(true, true, t2, i);
    assert_eq!(gate.check(t2), Gate::Wait(Some(t2 + 4 * i)));
    // Capped at the maximum backoff.
    let mut t = t2 + 4 * i;
    for _ in 0..20 {
        assert!(gate.begin(t));
        gate.finish(true, true, t, i);
        match gate.check(t) {
            Gate::Wait(Some(until)) => {
                assert!(until - t <= MAX_BACKOFF);
                t = until;
            }
            other => panic!("{other:?}"),
        }
    }
    // A probe answered with anything but an auth error lifts the hold.
    assert!(gate.begin(t));
    gate.finish(true, false, t, i);
    assert_eq!(gate.check(t), Gate::Open);
    assert!(!gate.begin(t));
}
