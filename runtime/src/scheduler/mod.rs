//! The scheduler of one model version: a dynamic batcher with Triton's semantics in front of
//! the version's instances.
//!
//! One tokio task (the driver) owns the [`queue::BatchQueue`] and reacts to three things: a new
//! request, an instance finishing, and a timer (queue delay or timeout). Whenever an instance
//! is free it asks the queue for a batch and hands it to the instance threads, which stack the
//! inputs ([`batch::concat`]), execute the backend off the reactor, split the outputs back per
//! request ([`batch::split`]) and report to the driver, which answers each request (in arrival
//! order when `preserve_ordering` is set). Every queue is bounded; a request whose client went
//! away is dropped before it executes. A single-instance model whose batches take a few
//! microseconds runs them on the driver itself, skipping the thread hand-off ([`Inline`]).

pub mod batch;
pub mod policy;
#[cfg(test)]
mod prepared_tests;
pub mod queue;

use std::{
    collections::BTreeMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc as std_mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use quiver_core::{Encoded, Model, Tensor};
use tokio::sync::{mpsc, oneshot};

use crate::{metrics::VersionMetrics, ServeError};
use queue::{AdmitError, BatchQueue, Entry, Poll, QueuePolicy, RequestSize};

/// What one request's execution took and produced.
#[derive(Debug)]
pub struct Execution {
    /// Outputs in the model signature's order, holding only this request's rows.
    pub outputs: Vec<Tensor>,
    /// Time spent queued.
    pub queue: Duration,
    /// Time the batch spent executing.
    pub compute: Duration,
    /// Rows in the batch this request ran in.
    pub batch_rows: usize,
}

/// How a request is scheduled.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScheduleParams {
    /// Rows the request contributes (its batch dimension; 1 for models that do not batch).
    pub rows: usize,
    /// Tokens of the request's longest sequence, for text models (0 otherwise). A request
    /// queued with its [`Encoded`] texts counts their longest sequence instead.
    pub tokens: usize,
    /// Requested priority level (0 or `None`: the model's default).
    pub priority: Option<u64>,
    /// Requested queue timeout (honoured when the queue policy allows overrides).
    pub timeout: Option<Duration>,
}

/// Sizing and policy of a scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Number of concurrent executions (instance threads).
    pub instances: usize,
    /// The batching and queue policy.
    pub policy: QueuePolicy,
    /// Answer requests in arrival order.
    pub preserve_ordering: bool,
}

type Reply = oneshot::Sender<Result<Execution, ServeError>>;

/// A finished request: where to answer and what.
type Answer = (Reply, Result<Execution, ServeError>);

struct Pending {
    inputs: Vec<Tensor>,
    /// What the model's `prepare` made of the inputs, handed to it with the batch.
    prepared: Option<Encoded>,
    reply: Reply,
}

struct Submit {
    pending: Pending,
    params: ScheduleParams,
    shape_key: u64,
    at: Instant,
}

/// A batch handed to an instance thread.
struct Work {
    entries: Vec<Entry<Pending>>,
    dispatched: Instant,
}

/// An instance's report: each request's seq, reply channel and result.
type Done = Vec<(u64, Reply, Result<Execution, ServeError>)>;

/// The scheduler of one model version. Dropping it lets the driver finish what is queued, then
/// the instance threads exit.
#[derive(Debug)]
pub struct Scheduler {
    submit: mpsc::Sender<Submit>,
    label: String,
    /// How many instances may execute at once (1 to `instances`): an autoscaler's replicas.
    active: Arc<AtomicUsize>,
    instances: usize,
    /// Requests queued now (kept by the driver), and the most the queue holds.
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Scheduler {
    /// Starts the driver task (on the current tokio runtime) and `options.instances` threads.
    pub fn start(label: &str, model: Arc<dyn Model>, options: SchedulerOptions, metrics: VersionMetrics) -> std::io::Result<Scheduler> {
        let instances = options.instances.max(1);
        let (work_tx, work_rx) = std_mpsc::sync_channel::<Work>(instances);
        let (done_tx, done_rx) = mpsc::channel::<Done>(instances);
        let work_rx = Arc::new(Mutex::new(work_rx));
        for instance in 0..instances {
            let (work_rx, done_tx, model, metrics) = (work_rx.clone(), done_tx.clone(), model.clone(), metrics.clone());
            thread::Builder::new()
                .name(format!("quiver-exec-{label}-{instance}"))
                .spawn(move || instance_loop(&*model, &work_rx, &done_tx, &metrics))?;
        }
        let capacity = options.policy.levels.iter().map(|l| l.max_queue_size).fold(0usize, usize::saturating_add).clamp(1, 1 << 16);
        let (submit_tx, submit_rx) = mpsc::channel::<Submit>(capacity);
        let active = Arc::new(AtomicUsize::new(instances));
        let queued = Arc::new(AtomicUsize::new(0));
        let driver = Driver {
            queue: BatchQueue::new(options.policy),
            free: instances,
            instances,
            active: active.clone(),
            queued: queued.clone(),
            work: work_tx,
            order: options.preserve_ordering.then(Reorder::default),
            metrics,
            label: label.to_string(),
            inline: (instances == 1).then(|| Inline { model: model.clone(), compute: ComputeEstimate::default() }),
        };
        tokio::spawn(driver.run(submit_rx, done_rx));
        Ok(Scheduler { submit: submit_tx, label: label.to_string(), active, instances, queued, capacity })
    }

    /// Lets `n` instances execute at once (clamped to 1 ..= the instance threads started); the
    /// rest stay idle. Returns the number now active. The limit applies from the next dispatch.
    pub fn set_active(&self, n: usize) -> usize {
        let n = n.clamp(1, self.instances);
        self.active.store(n, Ordering::Relaxed);
        n
    }

    /// Whether the queue is full now, so a request would be refused: checked before work that
    /// costs more than the refusal (tokenization), as text-embeddings-inference admits before
    /// it tokenizes. The driver still has the last word per priority level.
    pub fn is_full(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= self.capacity
    }

    /// Most requests the queue holds (all priority levels).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Instances allowed to execute at once, and instance threads started.
    pub fn instances(&self) -> (usize, usize) {
        (self.active.load(Ordering::Relaxed), self.instances)
    }

    /// Queues one request and waits for its execution. Rejections (full queue, bad priority)
    /// come back as soon as the driver sees the request; a queue timeout when it expires.
    pub async fn execute(&self, inputs: Vec<Tensor>, params: ScheduleParams) -> Result<Execution, ServeError> {
        self.submit(inputs, None, params).await
    }

    /// Queues one request whose inputs the model prepared ([`Model::prepare`]) and waits for
    /// its execution: the batch's token budget counts `prepared`'s longest sequence, and the
    /// model gets `prepared` back with the batch ([`Model::execute_prepared`]).
    pub async fn execute_prepared(
        &self,
        inputs: Vec<Tensor>,
        prepared: Encoded,
        mut params: ScheduleParams,
    ) -> Result<Execution, ServeError> {
        params.tokens = prepared.count().longest;
        self.submit(inputs, Some(prepared), params).await
    }

    async fn submit(&self, inputs: Vec<Tensor>, prepared: Option<Encoded>, params: ScheduleParams) -> Result<Execution, ServeError> {
        let (reply, done) = oneshot::channel();
        let pending = Pending { inputs, prepared, reply };
        let submit = Submit { shape_key: batch::shape_key(&pending.inputs), pending, params, at: queue_now() };
        self.submit.try_send(submit).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ServeError::QueueFull(format!("the queue of model '{}' is full", self.label)),
            mpsc::error::TrySendError::Closed(_) => ServeError::Unavailable(format!("model '{}' is unloading", self.label)),
        })?;
        done.await.unwrap_or_else(|_| Err(self.gone()))
    }

    fn gone(&self) -> ServeError {
        ServeError::Unavailable(format!("model '{}' stopped before answering", self.label))
    }
}

/// The queue's clock: tokio's, which is the system's monotonic clock in a server and can be
/// paused and advanced in tests, where queue delays and timeouts then elapse without waiting.
/// Execution times are measured on `std`'s clock in [`run_batch`], as they are real work.
fn queue_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Releases results in arrival order (`preserve_ordering`).
#[derive(Default)]
struct Reorder {
    next: u64,
    ready: BTreeMap<u64, Option<Answer>>,
}

/// Executing tiny batches on the driver itself.
///
/// With one instance, handing a batch to the instance thread and its result back costs two
/// cross-thread wake-ups — tens of microseconds of scheduler time, more than a small model's
/// whole execution. When the batches of a single-instance model have been taking less than
/// [`INLINE_MAX_COMPUTE`], the driver runs them itself: the same one-at-a-time execution and
/// batching, without the hand-off. A batch that turns out slow moves the estimate up and
/// later batches back to the thread.
struct Inline {
    model: Arc<dyn Model>,
    compute: ComputeEstimate,
}

/// Longest typical batch execution run inline on the driver's reactor thread.
pub const INLINE_MAX_COMPUTE: Duration = Duration::from_micros(50);

/// Most batches run inline in a row before the driver yields to the runtime.
const INLINE_BURST: usize = 16;

/// Batches measured on the instance thread before inline execution is considered.
const INLINE_WARMUP_BATCHES: u32 = 4;

/// An exponentially weighted mean of batch execution time.
#[derive(Debug, Default, Clone, Copy)]
struct ComputeEstimate {
    mean_us: f64,
    samples: u32,
}

impl ComputeEstimate {
    fn observe(&mut self, compute: Duration) {
        let us = compute.as_secs_f64() * 1e6;
        self.mean_us = if self.samples == 0 { us } else { 0.8 * self.mean_us + 0.2 * us };
        self.samples = self.samples.saturating_add(1);
    }

    fn is_tiny(&self) -> bool {
        self.samples >= INLINE_WARMUP_BATCHES && self.mean_us < INLINE_MAX_COMPUTE.as_secs_f64() * 1e6
    }
}

struct Driver {
    inline: Option<Inline>,
    queue: BatchQueue<Pending>,
    free: usize,
    instances: usize,
    active: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
    work: std_mpsc::SyncSender<Work>,
    order: Option<Reorder>,
    metrics: VersionMetrics,
    label: String,
}

impl Driver {
    async fn run(mut self, mut submit: mpsc::Receiver<Submit>, mut done: mpsc::Receiver<Done>) {
        let mut accepting = true;
        loop {
            let wake = self.dispatch(queue_now());
            if !accepting && self.queue.is_empty() && self.free == self.instances {
                return;
            }
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(results) = done.recv() => {
                    self.free += 1;
                    if let (Some(inline), Some(Ok(execution))) = (&mut self.inline, results.iter().map(|r| &r.2).find(|r| r.is_ok())) {
                        inline.compute.observe(execution.compute);
                    }
                    for (seq, reply, result) in results {
                        self.finish(seq, Some((reply, result)));
                    }
                }
                next = submit.recv(), if accepting => match next {
                    Some(s) => self.admit(s),
                    None => accepting = false,
                },
                () = sleep => {}
            }
        }
    }

    /// Counts requests into (+) and out of (−) the queue: the pending gauge and the count
    /// [`Scheduler::is_full`] reads.
    fn pending(&self, delta: isize) {
        self.metrics.pending(delta as f64);
        if delta >= 0 {
            self.queued.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
        } else {
            self.queued.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    fn admit(&mut self, s: Submit) {
        let params = s.params;
        let label = &self.label;
        let size = RequestSize { rows: params.rows.max(1), tokens: params.tokens };
        let (reason, pending) = match self.queue.push(s.pending, size, s.shape_key, params.priority, params.timeout, s.at) {
            Ok(_) => {
                self.pending(1);
                return;
            }
            Err(rejected) => rejected,
        };
        // Rejected requests never got a seq, so they are answered outside the ordering.
        let error = match reason {
            AdmitError::QueueFull { level, max } => {
                ServeError::QueueFull(format!("the queue of model '{label}' is full ({max} requests at priority level {level})"))
            }
            AdmitError::InvalidPriority { priority, levels } => {
                ServeError::InvalidInput(format!("priority {priority} is not a priority level of model '{label}' (it has {levels})"))
            }
        };
        let _ = pending.reply.send(Err(error));
    }

    /// Applies timeouts and sends batches to free instances; returns when to wake next.
    fn dispatch(&mut self, now: Instant) -> Option<Instant> {
        for entry in self.queue.expire(now) {
            self.pending(-1);
            let waited = now.saturating_duration_since(entry.enqueued);
            let error =
                ServeError::Timeout(format!("request timed out after {} µs in the queue of model '{}'", waited.as_micros(), self.label));
            self.finish(entry.seq, Some((entry.payload.reply, Err(error))));
        }
        let mut wake = None;
        let mut inline_batches = 0;
        while self.free > 0 && self.instances - self.free < self.active.load(Ordering::Relaxed) {
            for entry in self.queue.remove_abandoned(|p| p.reply.is_closed()) {
                self.pending(-1);
                self.finish(entry.seq, None);
            }
            match self.queue.poll(now) {
                Poll::Batch(entries) if self.inline.as_ref().is_some_and(|i| i.compute.is_tiny()) => {
                    self.pending(-(entries.len() as isize));
                    let Some(inline) = &mut self.inline else { continue };
                    let results = run_batch(&*inline.model, entries, now, &self.metrics);
                    if let Some(Ok(execution)) = results.iter().map(|r| &r.2).find(|r| r.is_ok()) {
                        inline.compute.observe(execution.compute);
                    }
                    for (seq, reply, result) in results {
                        self.finish(seq, Some((reply, result)));
                    }
                    inline_batches += 1;
                    if inline_batches == INLINE_BURST {
                        // Let the reactor run other tasks; come straight back.
                        wake = Some(queue_now());
                        break;
                    }
                }
                Poll::Batch(entries) => {
                    self.pending(-(entries.len() as isize));
                    self.free -= 1;
                    if let Err(std_mpsc::TrySendError::Full(work) | std_mpsc::TrySendError::Disconnected(work)) =
                        self.work.try_send(Work { entries, dispatched: now })
                    {
                        // Cannot happen while `free` counts correctly; answer rather than lose them.
                        self.free += 1;
                        for e in work.entries {
                            let error = ServeError::Unavailable(format!("model '{}' has no instance to run it", self.label));
                            self.finish(e.seq, Some((e.payload.reply, Err(error))));
                        }
                    }
                }
                Poll::WaitUntil(at) => {
                    wake = Some(at);
                    break;
                }
                Poll::Empty => break,
            }
        }
        match (wake, self.queue.next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Delivers a result (`None`: the client is gone), in order when required.
    fn finish(&mut self, seq: u64, result: Option<Answer>) {
        let Some(order) = &mut self.order else {
            if let Some((reply, result)) = result {
                let _ = reply.send(result);
            }
            return;
        };
        order.ready.insert(seq, result);
        while let Some(result) = order.ready.remove(&order.next) {
            if let Some((reply, result)) = result {
                let _ = reply.send(result);
            }
            order.next += 1;
        }
    }
}

fn instance_loop(model: &dyn Model, work: &Mutex<std_mpsc::Receiver<Work>>, done: &mpsc::Sender<Done>, metrics: &VersionMetrics) {
    loop {
        // One thread waits on the channel while the others wait on the lock; the lock is
        // released before executing, so instances run concurrently.
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(Work { entries, dispatched }) = next else { return };
        let results = run_batch(model, entries, dispatched, metrics);
        if done.blocking_send(results).is_err() {
            return;
        }
    }
}

/// Executes one batch and splits its outputs; every entry gets a result.
fn run_batch(model: &dyn Model, entries: Vec<Entry<Pending>>, dispatched: Instant, metrics: &VersionMetrics) -> Done {
    // Requests abandoned since dispatch are not executed.
    let (live, gone): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| !e.payload.reply.is_closed());
    let mut done: Done =
        gone.into_iter().map(|e| (e.seq, e.payload.reply, Err(ServeError::Unavailable("the client went away".into())))).collect();
    if live.is_empty() {
        return done;
    }
    let rows: Vec<usize> = live.iter().map(|e| e.rows).collect();
    let batch_rows = rows.iter().sum();
    let requests = live.len();
    let mut meta = Vec::with_capacity(requests);
    let mut inputs = Vec::with_capacity(requests);
    // Stays unallocated for models that prepare nothing.
    let mut prepared = Vec::new();
    for e in live {
        meta.push((e.seq, e.payload.reply, dispatched.saturating_duration_since(e.enqueued)));
        inputs.push(e.payload.inputs);
        prepared.extend(e.payload.prepared);
    }
    // Prepared parts go to the model only when every request has one, so their rows line up
    // with the stacked inputs; otherwise the model works from the inputs alone.
    let prepared = if prepared.len() == requests { Some(prepared) } else { None };
    // The engine's span: one per batch, inside whatever span the executing thread is in.
    let _span = tracing::debug_span!("execute", requests, rows = batch_rows).entered();
    let started = Instant::now();
    let stacked = batch::concat(inputs);
    let input_time = started.elapsed();
    let infer_started = Instant::now();
    let outcome = stacked.map_err(ServeError::Inference).and_then(|inputs| {
        let run = || match &prepared {
            Some(prepared) => model.execute_prepared(inputs, prepared),
            None => model.execute(inputs),
        };
        match catch_unwind(AssertUnwindSafe(run)) {
            Ok(result) => result.map_err(ServeError::from),
            Err(_) => Err(ServeError::Inference("the backend panicked while executing".into())),
        }
    });
    let infer_time = infer_started.elapsed();
    let output_started = Instant::now();
    let split = outcome.and_then(|outputs| batch::split(outputs, &rows).map_err(ServeError::Inference));
    let output_time = output_started.elapsed();
    let compute = input_time + infer_time + output_time;
    tracing::debug!(
        input_us = input_time.as_micros() as u64,
        infer_us = infer_time.as_micros() as u64,
        output_us = output_time.as_micros() as u64,
        "batch executed"
    );
    match split {
        Ok(per_request) => {
            metrics.batch_executed();
            for ((seq, reply, queue), outputs) in meta.into_iter().zip(per_request) {
                metrics.request_timing(queue, input_time, infer_time, output_time);
                done.push((seq, reply, Ok(Execution { outputs, queue, compute, batch_rows })));
            }
        }
        Err(error) => done.extend(meta.into_iter().map(|(seq, reply, _)| (seq, reply, Err(error.clone())))),
    }
    done
}

// The tests run on a paused tokio clock: queue delays and timeouts elapse as soon as the runtime
// has nothing else to do, so `sleep`s below order events instead of waiting, and queue times are
// exact. The fake backend's executions still take real time on real threads; no test asserts
// how long they take.
#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use queue::{LevelPolicy, TimeoutAction};
    use quiver_core::{BackendError, DataType, ModelSignature};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Doubles FP32 input, records batch sizes, sleeps `delay` per row; panics on NaN.
    struct Doubler {
        signature: ModelSignature,
        delay: Duration,
        batches: Mutex<Vec<usize>>,
        /// Whether each execution ran on an instance thread.
        on_instance_thread: Mutex<Vec<bool>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
    }

    impl Doubler {
        fn new(delay_ms: u64) -> Arc<Doubler> {
            Arc::new(Doubler {
                signature: ModelSignature::default(),
                delay: Duration::from_millis(delay_ms),
                batches: Mutex::new(Vec::new()),
                on_instance_thread: Mutex::new(Vec::new()),
                running: AtomicUsize::new(0),
                max_running: AtomicUsize::new(0),
            })
        }
    }

    impl Model for Doubler {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            self.batches.lock().unwrap().push(inputs[0].shape()[0]);
            let on_instance = thread::current().name().is_some_and(|n| n.starts_with("quiver-exec-"));
            self.on_instance_thread.lock().unwrap().push(on_instance);
            thread::sleep(self.delay * inputs[0].shape()[0] as u32);
            self.running.fetch_sub(1, Ordering::SeqCst);
            let data: Vec<u8> = inputs[0]
                .data()
                .chunks_exact(4)
                .flat_map(|c| {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    assert!(!v.is_nan(), "NaN");
                    (v * 2.0).to_le_bytes()
                })
                .collect();
            Tensor::from_bytes(DataType::Fp32, inputs[0].shape().to_vec(), Bytes::from(data))
                .map(|t| vec![t])
                .map_err(|e| BackendError::Execution(e.to_string()))
        }
    }

    fn policy(dynamic: bool, max_batch: usize, delay_ms: u64, max_queue: usize) -> QueuePolicy {
        QueuePolicy {
            dynamic,
            max_batch_size: max_batch,
            max_batch_tokens: None,
            preferred_batch_sizes: vec![max_batch],
            max_queue_delay: Duration::from_millis(delay_ms),
            default_priority: 1,
            levels: vec![LevelPolicy {
                timeout_action: TimeoutAction::Reject,
                default_timeout: None,
                allow_timeout_override: true,
                max_queue_size: max_queue,
            }],
        }
    }

    fn scheduler(model: Arc<Doubler>, instances: usize, policy: QueuePolicy, ordered: bool) -> Arc<Scheduler> {
        let options = SchedulerOptions { instances, policy, preserve_ordering: ordered };
        Arc::new(Scheduler::start("test", model, options, VersionMetrics::new("test", "1")).unwrap())
    }

    fn rows(values: &[f32]) -> Vec<Tensor> {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        vec![Tensor::from_bytes(DataType::Fp32, vec![values.len(), 1], Bytes::from(data)).unwrap()]
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    fn params(n: usize) -> ScheduleParams {
        ScheduleParams { rows: n, ..Default::default() }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_are_merged_and_each_gets_its_rows() {
        let model = Doubler::new(0);
        let s = scheduler(model.clone(), 1, policy(true, 16, 200, 100), false);
        let mut tasks = Vec::new();
        for i in 0..4 {
            let s = s.clone();
            let input: Vec<f32> = (0..=i).map(|k| (10 * i + k) as f32).collect();
            tasks.push(tokio::spawn(async move { (input.clone(), s.execute(rows(&input), params(input.len())).await) }));
        }
        for task in tasks {
            let (input, result) = task.await.unwrap();
            let execution = result.unwrap();
            assert_eq!(values(&execution.outputs[0]), input.iter().map(|v| v * 2.0).collect::<Vec<_>>());
            assert_eq!(execution.batch_rows, 10);
        }
        assert_eq!(*model.batches.lock().unwrap(), vec![10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_waits_the_queue_delay_and_a_preferred_batch_does_not() {
        let model = Doubler::new(0);
        let s = scheduler(model.clone(), 1, policy(true, 8, 300, 10), false);
        let t0 = tokio::time::Instant::now();
        let lone = s.execute(rows(&[1.0]), params(1)).await.unwrap();
        // The batch leaves when the delay expires, within one tick of tokio's millisecond timer.
        assert!(lone.queue >= Duration::from_millis(300) && lone.queue < Duration::from_millis(302), "queued {:?}", lone.queue);
        assert!(t0.elapsed() >= Duration::from_millis(300));
        // 8 rows are the preferred size: no waiting at all.
        let full = s.execute(rows(&[1.0; 8]), params(8)).await.unwrap();
        assert_eq!(full.queue, Duration::ZERO);
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 8]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_dynamic_batching_requests_run_alone() {
        let model = Doubler::new(5);
        let s = scheduler(model.clone(), 1, policy(false, 8, 0, 100), false);
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.execute(rows(&[i as f32]), params(1)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(*model.batches.lock().unwrap(), vec![1, 1, 1]);
    }

    /// Sends `n` one-row requests at once and waits for every one to succeed.
    async fn run_concurrently(s: &Arc<Scheduler>, n: usize) {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.execute(rows(&[1.0]), params(1)).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn instances_execute_concurrently() {
        let model = Doubler::new(100);
        let s = scheduler(model.clone(), 3, policy(false, 1, 0, 100), false);
        run_concurrently(&s, 3).await;
        assert_eq!(model.max_running.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_active_limit_bounds_concurrent_executions() {
        let model = Doubler::new(100);
        let s = scheduler(model.clone(), 4, policy(false, 1, 0, 100), false);
        assert_eq!(s.instances(), (4, 4));
        assert_eq!(s.set_active(9), 4, "clamped to the threads started");
        assert_eq!(s.set_active(0), 1, "at least one");
        assert_eq!(s.set_active(2), 2);
        run_concurrently(&s, 6).await;
        assert_eq!(model.max_running.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_queue_says_when_it_is_full() {
        let model = Doubler::new(300);
        let s = scheduler(model.clone(), 1, policy(false, 1, 0, 1), false);
        assert_eq!(s.capacity(), 1);
        let spawn = || {
            let s = s.clone();
            tokio::spawn(async move { s.execute(rows(&[1.0]), params(1)).await })
        };
        // Waits (yielding to the driver) until `done` holds.
        async fn until(done: impl Fn() -> bool) -> bool {
            for _ in 0..500 {
                if done() {
                    return true;
                }
                tokio::task::yield_now().await;
                std::thread::sleep(Duration::from_millis(1));
            }
            false
        }
        let first = spawn();
        assert!(until(|| model.running.load(Ordering::SeqCst) == 1).await, "the first request executes");
        assert!(!s.is_full(), "executing is not queued");
        let second = spawn();
        assert!(until(|| s.is_full()).await, "the second waits in a queue of 1");
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert!(!s.is_full());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_rejects_and_a_timeout_fails() {
        let model = Doubler::new(300);
        let s = scheduler(model.clone(), 1, policy(false, 1, 0, 1), false);
        let busy = {
            let s = s.clone();
            tokio::spawn(async move { s.execute(rows(&[1.0]), params(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = {
            let s = s.clone();
            tokio::spawn(async move {
                s.execute(rows(&[2.0]), ScheduleParams { rows: 1, timeout: Some(Duration::from_millis(100)), ..Default::default() }).await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(s.execute(rows(&[3.0]), params(1)).await, Err(ServeError::QueueFull(_))));
        assert!(matches!(queued.await.unwrap(), Err(ServeError::Timeout(_))));
        assert!(busy.await.unwrap().is_ok());
        assert_eq!(*model.batches.lock().unwrap(), vec![1], "the timed-out request never ran");
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_requests_do_not_execute() {
        let model = Doubler::new(200);
        let s = scheduler(model.clone(), 1, policy(false, 1, 0, 10), false);
        let busy = {
            let s = s.clone();
            tokio::spawn(async move { s.execute(rows(&[1.0]), params(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let abandoned = {
            let s = s.clone();
            tokio::spawn(async move { s.execute(rows(&[2.0]), params(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        abandoned.abort();
        assert!(busy.await.unwrap().is_ok());
        assert!(s.execute(rows(&[3.0]), params(1)).await.is_ok());
        assert_eq!(model.batches.lock().unwrap().len(), 2, "the abandoned request was skipped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_backend_fails_its_batch_only() {
        let model = Doubler::new(0);
        let s = scheduler(model, 1, policy(true, 4, 0, 10), false);
        assert!(matches!(s.execute(rows(&[f32::NAN]), params(1)).await, Err(ServeError::Inference(_))));
        assert!(s.execute(rows(&[1.0]), params(1)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn preserve_ordering_answers_in_arrival_order() {
        // Two instances: the first request runs a slow batch alone; with ordering preserved the
        // second request, though it finishes first, is answered after it.
        let model = Arc::new(Doubler { delay: Duration::from_micros(100), ..Arc::into_inner(Doubler::new(0)).unwrap() });
        let s = scheduler(model, 2, policy(false, 4096, 0, 10), true);
        let (tx, mut rx) = mpsc::unbounded_channel();
        for (i, n) in [(0usize, 2000usize), (1, 1)] {
            let (s, tx) = (s.clone(), tx.clone());
            let input: Vec<f32> = vec![1.0; n];
            tokio::spawn(async move {
                let _ = s.execute(rows(&input), params(n)).await;
                tx.send(i).unwrap();
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(rx.recv().await, Some(0));
        assert_eq!(rx.recv().await, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn tiny_single_instance_batches_run_inline_and_slow_ones_do_not() {
        let fast = Doubler::new(0);
        let s = scheduler(fast.clone(), 1, policy(true, 4, 0, 10), false);
        for i in 0..20 {
            let out = s.execute(rows(&[i as f32]), params(1)).await.unwrap();
            assert_eq!(out.outputs[0].data().len(), 4);
        }
        let threads = fast.on_instance_thread.lock().unwrap().clone();
        assert!(threads[..INLINE_WARMUP_BATCHES as usize].iter().all(|&t| t), "measured on the thread first: {threads:?}");
        assert!(threads[threads.len() - 5..].iter().all(|&t| !t), "then inline: {threads:?}");
        // A panic inline fails its batch only, as on the thread.
        assert!(matches!(s.execute(rows(&[f32::NAN]), params(1)).await, Err(ServeError::Inference(_))));
        assert!(s.execute(rows(&[1.0]), params(1)).await.is_ok());

        // 1 ms per row is far above the inline limit: always on the thread.
        let slow = Doubler::new(1);
        let s = scheduler(slow.clone(), 1, policy(true, 4, 0, 10), false);
        for _ in 0..8 {
            s.execute(rows(&[1.0]), params(1)).await.unwrap();
        }
        assert!(slow.on_instance_thread.lock().unwrap().iter().all(|&t| t));

        // Two instances run concurrently on threads, never inline.
        let pair = Doubler::new(0);
        let s = scheduler(pair.clone(), 2, policy(true, 4, 0, 10), false);
        for _ in 0..8 {
            s.execute(rows(&[1.0]), params(1)).await.unwrap();
        }
        assert!(pair.on_instance_thread.lock().unwrap().iter().all(|&t| t));
    }
}
