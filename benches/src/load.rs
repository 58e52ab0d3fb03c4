//! Load generation, independent of the protocol: closed-loop workers that send requests
//! back to back and tally the ones that complete inside the measurement window.
//!
//! A request counts when it *completes* inside the window; workers run before, through and
//! (for their last request) just past it, so the concurrency is steady across the window's
//! edges. Each worker keeps its own histogram; they are merged when the level ends.

use std::{collections::BTreeMap, future::Future, time::Duration};

use hdrhistogram::Histogram;
use tokio::{task::JoinHandle, time::Instant};

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

/// When measurement starts and stops; load runs from when it is created until `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start of the measurement (the warmup ends here).
    pub start: Instant,
    /// End of the measurement.
    pub end: Instant,
}

impl Window {
    /// A window opening `warmup` from now and lasting `duration`.
    pub fn after(warmup: Duration, duration: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window { start, end: start + duration }
    }

    /// Its length.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }

    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// What the workers saw inside the window.
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
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds"),
            successes: 0,
            errors: BTreeMap::new(),
            first_errors: BTreeMap::new(),
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
    }

    /// Failed requests of every kind.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

async fn closed_loop_worker<C: InferClient>(mut client: C, window: Window) -> (C, Tally) {
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let outcome = client.infer().await;
        let done = Instant::now();
        if window.contains(done) {
            tally.record(outcome, done - sent);
        }
    }
    (client, tally)
}

/// Closed-loop load in progress: one worker per client, each with one request outstanding.
#[derive(Debug)]
pub struct ClosedLoop<C> {
    window: Window,
    workers: Vec<JoinHandle<(C, Tally)>>,
}

impl<C: InferClient> ClosedLoop<C> {
    /// Starts one worker per client; they stop sending at `window.end`.
    pub fn start(clients: Vec<C>, window: Window) -> ClosedLoop<C> {
        let workers = clients.into_iter().map(|c| tokio::spawn(closed_loop_worker(c, window))).collect();
        ClosedLoop { window, workers }
    }

    /// The measurement window.
    pub fn window(&self) -> Window {
        self.window
    }

    /// Waits for every worker to finish its last request; gives back the clients (to reuse
    /// their connections) and the merged tally.
    pub async fn finish(self) -> (Vec<C>, Tally) {
        let mut clients = Vec::with_capacity(self.workers.len());
        let mut total = Tally::default();
        for worker in self.workers {
            match worker.await {
                Ok((client, tally)) => {
                    clients.push(client);
                    total.merge(tally);
                }
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        (clients, total)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    use super::*;

    /// Answers after 1 ms; every third request fails.
    struct Fake {
        sent: Arc<AtomicU64>,
    }

    impl InferClient for Fake {
        async fn infer(&mut self) -> InferOutcome {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if self.sent.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
                InferOutcome::failed("503", "busy")
            } else {
                InferOutcome::Success
            }
        }
    }

    #[tokio::test]
    async fn counts_only_what_completes_in_the_window() {
        let sent = Arc::new(AtomicU64::new(0));
        let clients = (0..4).map(|_| Fake { sent: sent.clone() }).collect();
        let window = Window::after(Duration::from_millis(30), Duration::from_millis(200));
        let (clients, tally) = ClosedLoop::start(clients, window).finish().await;
        assert_eq!(clients.len(), 4);
        let sent = sent.load(Ordering::Relaxed);
        let counted = tally.successes + tally.error_count();
        // 4 workers, each request ≥ 1 ms: at most ~200 per worker land inside the window, and
        // the warmup's requests are sent but not counted.
        assert!((40..=4 * 200).contains(&counted), "{counted} of {sent}");
        assert!(sent > counted + 4);
        assert_eq!(tally.errors.keys().collect::<Vec<_>>(), ["503"]);
        assert_eq!(tally.first_errors["503"], "busy");
        assert!((tally.error_count() as f64 / counted as f64 - 1.0 / 3.0).abs() < 0.1);
        assert_eq!(tally.latency_us.len(), tally.successes);
        assert!(tally.latency_us.value_at_quantile(0.5) >= 1000);
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::default();
        a.record(InferOutcome::Success, Duration::from_micros(100));
        a.record(InferOutcome::failed("500", "first"), Duration::ZERO);
        let mut b = Tally::default();
        b.record(InferOutcome::Success, Duration::from_micros(300));
        b.record(InferOutcome::failed("500", "second"), Duration::ZERO);
        b.record(InferOutcome::failed("transport", "reset"), Duration::ZERO);
        a.merge(b);
        assert_eq!(a.successes, 2);
        assert_eq!(a.errors, BTreeMap::from([("500".to_string(), 2), ("transport".to_string(), 1)]));
        assert_eq!(a.first_errors["500"], "first");
        assert_eq!(a.latency_us.max(), 300);
    }
}
