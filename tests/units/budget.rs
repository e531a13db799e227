//! `budget`: the limiter keeps every one-second window within the budget, cuts on
//! throttling and restores gradually.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};
use volc_rtc_exporter::budget::{max_starts_in_window, Limiter};

/// The sliding window the guarantee is stated over: one second.
const WINDOW: Duration = Duration::from_secs(1);

/// Something done to the limiter at an offset from the start of a run.
type Event = (Duration, fn(&Limiter));

/// Runs `waiters` tasks that acquire in a loop until `run_for` has passed, applying
/// each event at its offset; returns every start, sorted.
async fn saturate(
    limiter: Arc<Limiter>,
    waiters: usize,
    run_for: Duration,
    events: Vec<Event>,
) -> Vec<Instant> {
    let t0 = Instant::now();
    let end = t0 + run_for;
    let starts = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..waiters {
        let limiter = limiter.clone();
        let starts = starts.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                limiter.acquire().await;
                let now = Instant::now();
                if now >= end {
                    return;
                }
                starts.lock().unwrap().push(now);
            }
        }));
    }
    for (at, event) in events {
        sleep_until(t0 + at).await;
        event(&limiter);
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut starts = std::mem::take(&mut *starts.lock().unwrap());
    starts.sort();
    starts
}

fn achieved(starts: &[Instant], from: Instant, to: Instant) -> f64 {
    let n = starts.iter().filter(|&&s| s >= from && s < to).count();
    n as f64 / (to - from).as_secs_f64()
}

/// The most starts in any window that ends at (contains as its newest start) a start at or
/// after `from`: what the rate in force since `from` must bound.
fn worst_window_ending_after(starts: &[Instant], from: Instant) -> usize {
    starts
        .iter()
        .enumerate()
        .filter(|(_, &s)| s >= from)
        .map(|(i, &s)| starts[..=i].iter().filter(|&&p| p + WINDOW > s).count())
        .max()
        .unwrap_or(0)
}

async fn check_saturated(budget: f64, waiters: usize) {
    let limiter = Arc::new(Limiter::new(budget));
    let t0 = Instant::now();
    let secs = 20;
    let starts = saturate(limiter, waiters, Duration::from_secs(secs), vec![]).await;
    let worst = max_starts_in_window(&starts, WINDOW);
    let rate = achieved(&starts, t0, t0 + Duration::from_secs(secs));
    println!(
        "budget {budget}/s, {waiters} waiters, {secs} s: {} starts, worst one-second window \
         {worst}, achieved {rate:.2}/s",
        starts.len()
    );
    assert!(worst as f64 <= budget, "worst window {worst} > {budget}");
    assert!(rate >= 0.95 * budget, "achieved {rate} < 95% of {budget}");
}

#[tokio::test(start_paused = true)]
async fn a_lower_budget_applies_at_once_a_higher_one_too() {
    let limiter = Limiter::new(20.0);
    let mut starts = Vec::new();
    for _ in 0..40 {
        limiter.acquire().await;
        starts.push(Instant::now());
    }
    limiter.set_budget(5.0);
    assert_eq!(limiter.budget(), 5.0);
    assert_eq!(limiter.rate(), 5.0);
    let lowered = starts.len();
    for _ in 0..20 {
        limiter.acquire().await;
        starts.push(Instant::now());
    }
    // No window touching the new budget's starts holds more than 5 of them.
    let after = &starts[lowered..];
    assert!(max_starts_in_window(after, Duration::from_secs(1)) <= 5);
    // ... nor more than 5 together with the last starts at the old budget.
    let tail = &starts[lowered - 5..];
    assert!(max_starts_in_window(tail, Duration::from_secs(1)) <= 6);
    limiter.set_budget(50.0);
    let t0 = Instant::now();
    for _ in 0..50 {
        limiter.acquire().await;
    }
    assert!(Instant::now() - t0 <= Duration::from_millis(1_100));
}

#[tokio::test(start_paused = true)]
async fn budget_60_is_never_exceeded_and_fully_used() {
    check_saturated(60.0, 200).await;
}

#[tokio::test(start_paused = true)]
async fn budget_1_is_never_exceeded_and_fully_used() {
    check_saturated(1.0, 5).await;
}

#[tokio::test(start_paused = true)]
async fn budget_500_is_never_exceeded_and_fully_used() {
    check_saturated(500.0, 50).await;
}

#[tokio::test(start_paused = true)]
async fn fractional_budget_above_one_caps_windows_at_its_floor() {
    let limiter = Arc::new(Limiter::new(7.5));
    let starts = saturate(limiter, 10, Duration::from_secs(20), vec![]).await;
    let worst = max_starts_in_window(&starts, WINDOW);
    println!("budget 7.5/s: worst one-second window {worst}");
    assert!(worst <= 7);
    assert!(starts.len() >= 133, "{} starts", starts.len()); // 95 % of 7 × 20
}

#[tokio::test(start_paused = true)]
async fn fractional_budget_below_one_spaces_starts() {
    let limiter = Arc::new(Limiter::new(0.5));
    let starts = saturate(limiter, 3, Duration::from_secs(20), vec![]).await;
    println!(
        "budget 0.5/s: worst one-second window {}, {} starts in 20 s",
        max_starts_in_window(&starts, WINDOW),
        starts.len()
    );
    assert_eq!(max_starts_in_window(&starts, Duration::from_secs(2)), 1);
    assert_eq!(starts.len(), 10);
}

#[tokio::test(start_paused = true)]
async fn idle_limiter_starts_at_once_without_a_burst_after() {
    let limiter = Limiter::new(10.0);
    let t0 = Instant::now();
    limiter.acquire().await;
    assert_eq!(Instant::now(), t0);
    tokio::time::advance(Duration::from_secs(30)).await;
    let t1 = Instant::now();
    limiter.acquire().await;
    assert_eq!(Instant::now(), t1, "idle limiter made the caller wait");
    limiter.acquire().await;
    // At most MAX_CATCH_UP of the idle time counts: the next start is ~90 ms later.
    let gap = Instant::now() - t1;
    assert!(gap >= Duration::from_millis(90), "gap {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order() {
    let limiter = Arc::new(Limiter::new(1.0));
    let order = Arc::new(Mutex::new(Vec::new()));
    limiter.acquire().await; // the next start is a second away: everyone queues
    let mut tasks = Vec::new();
    for i in 0..10 {
        let limiter = limiter.clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            limiter.acquire().await;
            order.lock().unwrap().push(i);
        }));
        // Let task i reach the queue before task i + 1 is spawned.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn throttling_halves_the_rate_at_once_even_for_queued_waiters() {
    let limiter = Arc::new(Limiter::new(60.0));
    let t0 = Instant::now();
    let cut_at = t0 + Duration::from_secs(5);
    let starts = saturate(
        limiter.clone(),
        100,
        Duration::from_secs(9),
        vec![
            (Duration::from_secs(5), |l: &Limiter| {
                l.on_throttled();
                assert_eq!(l.rate(), 30.0);
            }),
            (Duration::from_millis(8900), |l: &Limiter| {
                assert_eq!(l.rate(), 30.0, "restored before 5 s without throttling");
            }),
        ],
    )
    .await;
    let worst_all = max_starts_in_window(&starts, WINDOW);
    let worst_after = worst_window_ending_after(&starts, cut_at);
    let after = achieved(
        &starts,
        cut_at + Duration::from_secs(1),
        t0 + Duration::from_secs(9),
    );
    println!("throttled 60 -> 30: worst window {worst_all} overall, {worst_after} ending after the cut, achieved {after:.2}/s after");
    assert!(worst_all <= 60);
    assert!(
        worst_after <= 30,
        "window ending after the cut holds {worst_after}"
    );
    // The restore step at +5 s is not reached before the run ends.
    assert!(
        (28.5..=30.0).contains(&after),
        "achieved {after}/s after the cut"
    );
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_429s_cuts_once() {
    let limiter = Limiter::new(60.0);
    for _ in 0..20 {
        limiter.on_throttled();
        tokio::time::advance(Duration::from_millis(40)).await;
    }
    assert_eq!(limiter.rate(), 30.0);
    tokio::time::advance(Duration::from_secs(1)).await;
    limiter.on_throttled();
    assert_eq!(limiter.rate(), 15.0);
}

#[tokio::test(start_paused = true)]
async fn repeated_bursts_stop_at_the_floor() {
    let limiter = Limiter::new(60.0);
    for _ in 0..50 {
        for _ in 0..5 {
            limiter.on_throttled();
        }
        assert!(limiter.rate() >= 3.0);
        tokio::time::advance(Duration::from_millis(1100)).await;
    }
    assert_eq!(limiter.floor(), 3.0);
    assert_eq!(limiter.rate(), 3.0);

    let small = Limiter::new(10.0);
    let tiny = Limiter::new(0.5);
    for _ in 0..10 {
        small.on_throttled();
        tiny.on_throttled();
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    assert_eq!(small.rate(), 1.0);
    assert_eq!(tiny.rate(), 0.5);
}

#[tokio::test(start_paused = true)]
async fn rate_is_restored_gradually_to_exactly_the_budget() {
    let limiter = Limiter::new(60.0);
    limiter.on_throttled();
    assert_eq!(limiter.rate(), 30.0);
    let mut seen = vec![limiter.rate()];
    for _ in 0..10 {
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert_eq!(limiter.rate(), *seen.last().unwrap(), "restored early");
        tokio::time::advance(Duration::from_millis(1)).await;
        seen.push(limiter.rate());
    }
    assert_eq!(
        seen,
        [30.0, 36.0, 42.0, 48.0, 54.0, 60.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    );
    // From deep down too: several cuts, then back to exactly the budget.
    for _ in 0..6 {
        limiter.on_throttled();
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    assert_eq!(limiter.rate(), limiter.floor());
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(limiter.rate(), limiter.budget());
}

#[tokio::test(start_paused = true)]
async fn cut_then_restore_keeps_every_window_within_the_budget() {
    let limiter = Arc::new(Limiter::new(60.0));
    let t0 = Instant::now();
    let starts = saturate(
        limiter.clone(),
        100,
        Duration::from_secs(40),
        vec![
            (Duration::from_secs(3), |l: &Limiter| l.on_throttled()),
            (Duration::from_secs(5), |l: &Limiter| l.on_throttled()),
            (Duration::from_secs(32), |l: &Limiter| {
                assert_eq!(l.rate(), 45.0)
            }),
            (Duration::from_secs(39), |l: &Limiter| {
                assert_eq!(l.rate(), 51.0)
            }),
        ],
    )
    .await;
    let worst = max_starts_in_window(&starts, WINDOW);
    // Cut to 30 at 3 s, to 15 at 5 s; then +6 every 5 s: 45 over 30..35 s, 51 over 35..40 s.
    let late = achieved(
        &starts,
        t0 + Duration::from_secs(31),
        t0 + Duration::from_secs(35),
    );
    println!("cut and restore: worst window {worst}, achieved {late:.2}/s at 31..35 s (rate 45)");
    assert!(worst <= 60);
    assert!((0.95 * 45.0..=45.0).contains(&late), "{late}");
}

#[test]
fn max_starts_in_window_is_half_open() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert_eq!(max_starts_in_window(&[], WINDOW), 0);
    assert_eq!(max_starts_in_window(&[at(0)], WINDOW), 1);
    assert_eq!(max_starts_in_window(&[at(0), at(1000)], WINDOW), 1);
    assert_eq!(max_starts_in_window(&[at(0), at(999)], WINDOW), 2);
    assert_eq!(
        max_starts_in_window(
            &[at(0), at(500), at(900), at(1400), at(1500), at(1501)],
            WINDOW
        ),
        4
    );
    let ms = |n| t0 + Duration::from_millis(n);
    let v = [ms(0), ms(500), ms(999), ms(1000), ms(1001), ms(1500)];
    assert_eq!(max_starts_in_window(&v, WINDOW), 4);
}
