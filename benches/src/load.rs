//! Load generation, independent of the protocol.
//!
//! Two shapes of load: the closed loop ([`Load::closed`], perf_analyzer's concurrency mode)
//! keeps N requests outstanding; the open loop ([`Load::open`], its request-rate mode) sends on
//! a [`Schedule`] whatever the server does. Either way each worker records what completes into
//! its own [`Recorder`], by measurement window of a [`Timeline`], and the controller takes each
//! window's tallies once it has closed, merging the workers' histograms.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::schedule::Schedule;

/// Largest latency the histograms resolve, in µs (an hour); longer ones saturate.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InferOutcome {
    /// A successful response, read to its end.
    Success,
    /// Any failure.
    Failed {
        /// How errors are counted: the HTTP status (`"503"`), `"transport"` or `"timeout"`.
        kind: String,
        /// What the server or the transport said.
        message: String,
    },
}

impl InferOutcome {
    /// A failure of `kind` with `message`.
    pub fn failed(kind: impl Into<String>, message: impl Into<String>) -> InferOutcome {
        InferOutcome::Failed { kind: kind.into(), message: message.into() }
    }
}

/// Something that sends one infer request at a time: a connection and a prepared request.
pub trait InferClient: Send + 'static {
    /// Sends the request and waits for the whole response.
    fn infer(&mut self) -> impl Future<Output = InferOutcome> + Send;
}

/// What the workers saw in one window (or several, merged).
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of each successful request, in µs.
    pub latency_us: Histogram<u64>,
    /// Successful requests.
    pub successes: u64,
    /// Failed requests by kind (HTTP status, `transport`, `timeout`).
    pub errors: BTreeMap<String, u64>,
    /// The first message of each error kind.
    pub first_errors: BTreeMap<String, String>,
    /// Open loop: requests that had to wait for a free client (every connection was busy).
    pub delayed: u64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            successes: 0,
            errors: BTreeMap::new(),
            first_errors: BTreeMap::new(),
            delayed: 0,
        }
    }
}

impl Tally {
    /// Records one request that completed in the window.
    pub fn record(&mut self, outcome: InferOutcome, latency: Duration) {
        match outcome {
            InferOutcome::Success => {
                self.successes += 1;
                self.latency_us.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            InferOutcome::Failed { kind, message } => {
                *self.errors.entry(kind.clone()).or_default() += 1;
                self.first_errors.entry(kind).or_insert(message);
            }
        }
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.latency_us.add(&other.latency_us).expect("histograms share bounds");
        self.successes += other.successes;
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, message) in other.first_errors {
            self.first_errors.entry(kind).or_insert(message);
        }
        self.delayed += other.delayed;
    }

    /// Failed requests of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Consecutive measurement windows of one length, the first opening after a warmup.
///
/// A request belongs to the window in which it *completes*; load runs before, through and
/// (for its last requests) just past the windows, so the load is steady across their edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// When the first window opens (the warmup ends here).
    pub start: Instant,
    /// Length of every window.
    pub interval: Duration,
}

impl Timeline {
    /// Windows of `interval` (which must not be zero) opening `warmup` from now.
    pub fn after(warmup: Duration, interval: Duration) -> Timeline {
        Timeline { start: Instant::now() + warmup, interval }
    }

    /// The index of the window containing `t`, or `None` during the warmup.
    pub fn window_of(&self, t: Instant) -> Option<u64> {
        let since = t.checked_duration_since(self.start)?;
        Some((since.as_nanos() / self.interval.as_nanos().max(1)) as u64)
    }

    /// When window `k` opens.
    pub fn window_start(&self, k: u64) -> Instant {
        self.start + self.interval.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX))
    }

    /// When window `k` closes.
    pub fn window_end(&self, k: u64) -> Instant {
        self.window_start(k.saturating_add(1))
    }
}

/// One worker's tallies by window. Shared between the worker, which records as its requests
/// complete, and the controller, which takes each window once it has closed; the lock is held
/// for a few instructions and is contended only at a window's edge.
#[derive(Debug, Clone, Default)]
pub struct Recorder(Arc<Mutex<BTreeMap<u64, Tally>>>);

impl Recorder {
    /// Records a request that completed at `done`, in whichever window holds that instant.
    pub fn record(&self, timeline: &Timeline, done: Instant, outcome: InferOutcome, latency: Duration, delayed: bool) {
        let Some(k) = timeline.window_of(done) else { return };
        let mut windows = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tally = windows.entry(k).or_default();
        tally.record(outcome, latency);
        tally.delayed += u64::from(delayed);
    }

    /// Takes window `k`'s tally, dropping anything recorded for earlier windows (requests that
    /// completed in a window already taken, after it was taken: a thread stalled past the
    /// grace period; there are none in practice).
    pub fn take(&self, k: u64) -> Tally {
        let mut windows = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tally = windows.remove(&k).unwrap_or_default();
        windows.retain(|&w, _| w > k);
        tally
    }
}

/// How long after a window closes the controller waits before taking its tallies, so a
/// request that completed just inside it has been recorded.
pub const WINDOW_GRACE: Duration = Duration::from_millis(10);

/// Load in progress, closed or open loop: the workers, their recorders and the stop signal.
#[derive(Debug)]
pub struct Load<C> {
    timeline: Timeline,
    recorders: Vec<Recorder>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<C>>,
}

impl<C: InferClient> Load<C> {
    /// Closed loop: one worker per client, each sending its next request as soon as the last
    /// one is answered, so `clients.len()` requests are always outstanding. Latency runs from
    /// the send.
    pub fn closed(clients: Vec<C>, timeline: Timeline) -> Load<C> {
        let (stop, stopped) = watch::channel(false);
        let recorders: Vec<Recorder> = clients.iter().map(|_| Recorder::default()).collect();
        let workers: Vec<JoinHandle<C>> = clients
            .into_iter()
            .zip(recorders.clone())
            .map(|(client, recorder)| tokio::spawn(closed_loop_worker(client, recorder, timeline, stopped.clone())))
            .collect();
        let task = tokio::spawn(async move {
            let mut clients = Vec::with_capacity(workers.len());
            for worker in workers {
                match worker.await {
                    Ok(client) => clients.push(client),
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
            clients
        });
        Load { timeline, recorders, stop, task }
    }

    /// Open loop: requests leave at the times `schedule` gives (offsets from now), each on
    /// whichever client is free; with none free, the request waits for one and counts as
    /// delayed. Latency runs from the intended send time, so waiting is charged to the server.
    pub fn open(clients: Vec<C>, schedule: Schedule, timeline: Timeline) -> Load<C> {
        let (stop, stopped) = watch::channel(false);
        let recorders: Vec<Recorder> = clients.iter().map(|_| Recorder::default()).collect();
        let task = tokio::spawn(open_loop_dispatcher(clients, recorders.clone(), schedule, timeline, stopped));
        Load { timeline, recorders, stop, task }
    }

    /// The measurement windows.
    pub fn timeline(&self) -> Timeline {
        self.timeline
    }

    /// Every worker's tally of window `k`, merged; call once the window has closed (plus
    /// [`WINDOW_GRACE`]).
    pub fn take_window(&self, k: u64) -> Tally {
        let mut total = Tally::default();
        for recorder in &self.recorders {
            total.merge(recorder.take(k));
        }
        total
    }

    /// Stops sending, waits for the requests in flight, and gives back the clients (to reuse
    /// their connections).
    pub async fn stop(self) -> Vec<C> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(clients) => clients,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

async fn closed_loop_worker<C: InferClient>(mut client: C, recorder: Recorder, timeline: Timeline, stop: watch::Receiver<bool>) -> C {
    while !*stop.borrow() {
        let sent = Instant::now();
        let outcome = client.infer().await;
        let done = Instant::now();
        recorder.record(&timeline, done, outcome, done - sent, false);
    }
    client
}

/// Most tickets (due requests) the pacing thread runs ahead of the dispatcher.
const MAX_PENDING_TICKETS: usize = 1 << 16;

/// Longest single sleep of the pacing thread, so it notices a stop promptly.
const PACING_SLICE: Duration = Duration::from_millis(20);

/// Paces the schedule on its own OS thread: `std::thread::sleep` wakes within tens of µs of
/// the due time, where tokio's timer wheel rounds every sleep up to the next millisecond —
/// lateness a latency measured from the intended send time would charge to the server. Each
/// due request becomes a ticket carrying its intended time.
fn pace(schedule: Schedule, tickets: mpsc::Sender<Instant>, stop: Arc<AtomicBool>) {
    let start = std::time::Instant::now();
    for offset in schedule {
        // An offset too large to be an instant is never due.
        let Some(due) = start.checked_add(offset) else { return };
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = std::time::Instant::now();
            if now >= due {
                break;
            }
            std::thread::sleep((due - now).min(PACING_SLICE));
        }
        // Blocks only when the dispatcher is far behind; the ticket keeps its intended time.
        if tickets.blocking_send(Instant::from_std(due)).is_err() {
            return;
        }
    }
}

async fn open_loop_dispatcher<C: InferClient>(
    clients: Vec<C>,
    recorders: Vec<Recorder>,
    schedule: Schedule,
    timeline: Timeline,
    mut stop: watch::Receiver<bool>,
) -> Vec<C> {
    let count = clients.len();
    let (idle_tx, mut idle_rx) = mpsc::channel::<(C, Recorder)>(count.max(1));
    for pair in clients.into_iter().zip(recorders) {
        // Cannot fail: the channel has room for every client and its receiver is here.
        let _ = idle_tx.try_send(pair);
    }
    let (ticket_tx, mut tickets) = mpsc::channel(MAX_PENDING_TICKETS);
    let pacing_stop = Arc::new(AtomicBool::new(false));
    let pacer = {
        let stop = pacing_stop.clone();
        std::thread::Builder::new().name("bench-pacer".into()).spawn(move || pace(schedule, ticket_tx, stop))
    };
    if let Err(e) = &pacer {
        eprintln!("quiver bench: cannot start the pacing thread: {e}; nothing is sent");
    } else {
        loop {
            let intended = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                ticket = tickets.recv() => match ticket {
                    Some(t) => t,
                    None => break,
                },
            };
            // A free client sends at once; with none free the request waits for one, is
            // delayed, and its wait shows in its latency.
            let (delayed, (mut client, recorder)) = match idle_rx.try_recv() {
                Ok(pair) => (false, pair),
                Err(_) => tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    idle = idle_rx.recv() => match idle {
                        Some(pair) => (true, pair),
                        None => break,
                    },
                },
            };
            let idle_tx = idle_tx.clone();
            tokio::spawn(async move {
                let outcome = client.infer().await;
                let done = Instant::now();
                recorder.record(&timeline, done, outcome, done - intended, delayed);
                let _ = idle_tx.send((client, recorder)).await;
            });
        }
    }
    pacing_stop.store(true, Ordering::Relaxed);
    drop(tickets); // a pacer blocked on a full channel sees it closed
                   // Gather every client back as its last request completes.
    let mut clients = Vec::with_capacity(count);
    while clients.len() < count {
        match idle_rx.recv().await {
            Some((client, _)) => clients.push(client),
            None => break,
        }
    }
    clients
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::schedule::Distribution;

    /// Answers after `delay`; every third request fails.
    struct Fake {
        sent: Arc<AtomicU64>,
        delay: Duration,
    }

    impl InferClient for Fake {
        async fn infer(&mut self) -> InferOutcome {
            if self.delay.is_zero() {
                tokio::task::yield_now().await; // a zero sleep would still wait for a timer tick
            } else {
                tokio::time::sleep(self.delay).await;
            }
            if self.sent.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
                InferOutcome::failed("503", "busy")
            } else {
                InferOutcome::Success
            }
        }
    }

    fn fakes(n: usize, delay: Duration) -> (Vec<Fake>, Arc<AtomicU64>) {
        let sent = Arc::new(AtomicU64::new(0));
        ((0..n).map(|_| Fake { sent: sent.clone(), delay }).collect(), sent)
    }

    async fn take_after_close(load: &Load<Fake>, k: u64) -> Tally {
        tokio::time::sleep_until(load.timeline().window_end(k) + WINDOW_GRACE).await;
        load.take_window(k)
    }

    #[test]
    fn timeline_assigns_instants_to_windows() {
        let t = Timeline::after(Duration::from_millis(100), Duration::from_millis(50));
        assert_eq!(t.window_of(t.start - Duration::from_millis(1)), None);
        assert_eq!(t.window_of(t.start), Some(0));
        assert_eq!(t.window_of(t.start + Duration::from_millis(49)), Some(0));
        assert_eq!(t.window_of(t.start + Duration::from_millis(50)), Some(1));
        assert_eq!(t.window_of(t.start + Duration::from_millis(175)), Some(3));
        assert_eq!(t.window_start(2), t.start + Duration::from_millis(100));
        assert_eq!(t.window_end(2), t.start + Duration::from_millis(150));
    }

    #[test]
    fn recorder_files_by_window_and_forgets_taken_ones() {
        let t = Timeline::after(Duration::ZERO, Duration::from_millis(10));
        let r = Recorder::default();
        r.record(&t, t.start + Duration::from_millis(1), InferOutcome::Success, Duration::from_micros(5), false);
        r.record(&t, t.start + Duration::from_millis(12), InferOutcome::Success, Duration::from_micros(7), true);
        r.record(&t, t.start + Duration::from_millis(13), InferOutcome::failed("500", "x"), Duration::ZERO, false);
        r.record(&t, t.start - Duration::from_millis(1), InferOutcome::Success, Duration::ZERO, false); // warmup
        let w1 = r.take(1);
        assert_eq!((w1.successes, w1.error_count(), w1.delayed), (1, 1, 1));
        // Taking window 1 dropped window 0, which was never taken.
        assert_eq!(r.take(0).successes, 0);
        assert_eq!(r.take(1).successes, 0, "taken once");
    }

    #[tokio::test]
    async fn closed_loop_counts_only_what_completes_in_each_window() {
        let (clients, sent) = fakes(4, Duration::from_millis(1));
        let load = Load::closed(clients, Timeline::after(Duration::from_millis(30), Duration::from_millis(100)));
        let w0 = take_after_close(&load, 0).await;
        let w1 = take_after_close(&load, 1).await;
        let clients = load.stop().await;
        assert_eq!(clients.len(), 4);
        let sent = sent.load(Ordering::Relaxed);
        for w in [&w0, &w1] {
            let counted = w.successes + w.error_count();
            // 4 workers, each request ≥ 1 ms: at most ~100 per worker land in a window.
            assert!((20..=4 * 100).contains(&counted), "{counted} of {sent}");
            assert_eq!(w.latency_us.len(), w.successes);
            assert!(w.latency_us.value_at_quantile(0.5) >= 1000);
            assert_eq!(w.delayed, 0);
        }
        let mut both = w0.clone();
        both.merge(w1.clone());
        let counted = both.successes + both.error_count();
        // The warmup's requests were sent but not counted.
        assert!(sent > counted + 4);
        assert_eq!(both.errors.keys().collect::<Vec<_>>(), ["503"]);
        assert_eq!(both.first_errors["503"], "busy");
        assert!((both.error_count() as f64 / counted as f64 - 1.0 / 3.0).abs() < 0.1);
    }

    #[tokio::test]
    async fn open_loop_keeps_its_rate_whatever_the_latency() {
        // 500 req/s against a 20 ms server: a closed loop of 4 would manage 200 req/s, the open
        // loop keeps ~10 in flight and holds the rate.
        let (clients, _) = fakes(32, Duration::from_millis(20));
        let schedule = Schedule::new(500.0, Distribution::Constant, 1).unwrap();
        let load = Load::open(clients, schedule, Timeline::after(Duration::from_millis(100), Duration::from_millis(400)));
        let w = take_after_close(&load, 0).await;
        assert_eq!(load.stop().await.len(), 32);
        let counted = (w.successes + w.error_count()) as f64;
        assert!((160.0..=220.0).contains(&counted), "{counted} in 0.4 s at 500/s");
        assert!(w.latency_us.value_at_quantile(0.5) >= 20_000);
        assert!(w.latency_us.value_at_quantile(0.5) < 60_000, "{}", w.latency_us.value_at_quantile(0.5));
        assert!(w.delayed < 10, "{} delayed with clients to spare", w.delayed);
    }

    #[tokio::test]
    async fn open_loop_sends_on_time() {
        // An instant server at 1000 req/s: latency from the intended send time is only the
        // pacing's own lateness, well under tokio's millisecond timer tick.
        let (clients, _) = fakes(8, Duration::ZERO);
        let schedule = Schedule::new(1000.0, Distribution::Constant, 1).unwrap();
        let load = Load::open(clients, schedule, Timeline::after(Duration::from_millis(50), Duration::from_millis(300)));
        let w = take_after_close(&load, 0).await;
        load.stop().await;
        assert!((250..=350).contains(&(w.successes + w.error_count())), "{}", w.successes + w.error_count());
        assert!(w.latency_us.value_at_quantile(0.5) < 800, "p50 {} µs", w.latency_us.value_at_quantile(0.5));
    }

    #[tokio::test]
    async fn open_loop_charges_waiting_to_latency() {
        // 200 req/s against a 20 ms server with 2 clients: at most 100 req/s get through, so
        // requests wait for a client ever longer. Their latency, from the intended send time,
        // grows well past the 20 ms service time, and they count as delayed.
        let (clients, _) = fakes(2, Duration::from_millis(20));
        let schedule = Schedule::new(200.0, Distribution::Constant, 1).unwrap();
        let load = Load::open(clients, schedule, Timeline::after(Duration::from_millis(50), Duration::from_millis(300)));
        let w = take_after_close(&load, 0).await;
        assert_eq!(load.stop().await.len(), 2);
        let counted = w.successes + w.error_count();
        assert!(counted <= 35, "{counted}: two clients of 20 ms finish at most ~30 in 0.3 s");
        assert!(w.delayed >= counted / 2, "{} of {counted} delayed", w.delayed);
        assert!(w.latency_us.max() > 100_000, "queueing shows in latency: max {} µs", w.latency_us.max());
    }

    #[tokio::test]
    async fn stop_ends_a_schedule_that_is_far_away() {
        let (clients, sent) = fakes(1, Duration::ZERO);
        let schedule = Schedule::new(1e-9, Distribution::Constant, 1).unwrap();
        let load = Load::open(clients, schedule, Timeline::after(Duration::ZERO, Duration::from_millis(10)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let clients = tokio::time::timeout(Duration::from_secs(5), load.stop()).await.expect("stops promptly");
        assert_eq!(clients.len(), 1);
        assert_eq!(sent.load(Ordering::Relaxed), 1, "only the request due at once");
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::default();
        a.record(InferOutcome::Success, Duration::from_micros(100));
        a.record(InferOutcome::failed("500", "first"), Duration::ZERO);
        a.delayed = 2;
        let mut b = Tally::default();
        b.record(InferOutcome::Success, Duration::from_micros(300));
        b.record(InferOutcome::failed("500", "second"), Duration::ZERO);
        b.record(InferOutcome::failed("transport", "reset"), Duration::ZERO);
        b.delayed = 1;
        a.merge(b);
        assert_eq!(a.successes, 2);
        assert_eq!(a.errors, BTreeMap::from([("500".to_string(), 2), ("transport".to_string(), 1)]));
        assert_eq!(a.first_errors["500"], "first");
        assert_eq!(a.latency_us.max(), 300);
        assert_eq!(a.delayed, 3);
    }
}
