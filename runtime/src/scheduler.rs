//! Runs a model version's executions on dedicated threads, fed through a bounded queue.
//!
//! Each of the version's instances (`instance_group.count`) is one OS thread that takes the
//! next queued job and executes it, so model execution never blocks the tokio reactor. The
//! queue is bounded: a full queue rejects at once rather than growing. A job whose client has
//! gone away (its reply channel closed) is dropped before execution.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use quiver_model_formats::{Model, Tensor};
use tokio::sync::{mpsc, oneshot};

use crate::{metrics::VersionMetrics, ServeError};

/// What one execution took and produced.
#[derive(Debug)]
pub struct Execution {
    /// Outputs in the model signature's order.
    pub outputs: Vec<Tensor>,
    /// Time spent queued.
    pub queue: Duration,
    /// Time spent executing.
    pub compute: Duration,
}

struct Job {
    inputs: Vec<Tensor>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Execution, ServeError>>,
}

/// Sizing of a scheduler.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerOptions {
    /// Number of concurrent executions (threads).
    pub instances: usize,
    /// Maximum number of queued jobs.
    pub queue_capacity: usize,
}

/// The queue and executor threads of one model version. Dropping it closes the queue; the
/// threads finish the jobs already queued and exit.
#[derive(Debug)]
pub struct Scheduler {
    queue: mpsc::Sender<Job>,
    metrics: VersionMetrics,
    label: String,
}

impl Scheduler {
    /// Starts `options.instances` executor threads for `model`.
    pub fn start(
        label: &str,
        model: Arc<dyn Model>,
        options: SchedulerOptions,
        metrics: VersionMetrics,
    ) -> std::io::Result<Scheduler> {
        let (tx, rx) = mpsc::channel::<Job>(options.queue_capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for instance in 0..options.instances.max(1) {
            let rx = rx.clone();
            let model = model.clone();
            let metrics = metrics.clone();
            thread::Builder::new()
                .name(format!("quiver-exec-{label}-{instance}"))
                .spawn(move || executor_loop(&*model, &rx, &metrics))?;
        }
        Ok(Scheduler { queue: tx, metrics, label: label.to_string() })
    }

    /// Queues one execution and waits for it.
    pub async fn execute(&self, inputs: Vec<Tensor>) -> Result<Execution, ServeError> {
        let (reply, done) = oneshot::channel();
        let job = Job { inputs, enqueued: Instant::now(), reply };
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ServeError::QueueFull(format!("the queue of model '{}' is full", self.label))
            }
            mpsc::error::TrySendError::Closed(_) => {
                ServeError::Unavailable(format!("model '{}' is unloading", self.label))
            }
        })?;
        self.metrics.pending(1.0);
        done.await
            .unwrap_or_else(|_| Err(ServeError::Inference(format!("model '{}' dropped the request", self.label))))
    }
}

fn executor_loop(model: &dyn Model, queue: &Mutex<mpsc::Receiver<Job>>, metrics: &VersionMetrics) {
    loop {
        // One thread waits on the channel while the others wait on the lock; the lock is
        // released before executing, so executions run concurrently.
        let job = match queue.lock() {
            Ok(mut rx) => rx.blocking_recv(),
            Err(_) => return,
        };
        let Some(job) = job else { return };
        metrics.pending(-1.0);
        if job.reply.is_closed() {
            continue;
        }
        let queue_time = job.enqueued.elapsed();
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| model.execute(job.inputs)));
        let compute = started.elapsed();
        let result = match result {
            Ok(Ok(outputs)) => {
                metrics.executed(queue_time, Duration::ZERO, compute, Duration::ZERO);
                Ok(Execution { outputs, queue: queue_time, compute })
            }
            Ok(Err(e)) => Err(ServeError::from(e)),
            Err(_) => Err(ServeError::Inference("the backend panicked while executing".into())),
        };
        let _ = job.reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use quiver_model_formats::{BackendError, DataType, ModelSignature};

    /// Doubles FP32 input; sleeps per call so queue behaviour is observable; panics on NaN.
    struct Doubler {
        signature: ModelSignature,
        delay: Duration,
    }

    impl Model for Doubler {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
            thread::sleep(self.delay);
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

    fn scheduler(delay_ms: u64, capacity: usize) -> Scheduler {
        let model = Arc::new(Doubler { signature: ModelSignature::default(), delay: Duration::from_millis(delay_ms) });
        let options = SchedulerOptions { instances: 1, queue_capacity: capacity };
        Scheduler::start("test", model, options, VersionMetrics::new("test", "1")).unwrap()
    }

    fn input(v: f32) -> Vec<Tensor> {
        vec![Tensor::from_bytes(DataType::Fp32, vec![1], Bytes::copy_from_slice(&v.to_le_bytes())).unwrap()]
    }

    #[tokio::test]
    async fn executes_on_a_thread() {
        let s = scheduler(0, 4);
        let out = s.execute(input(1.5)).await.unwrap();
        assert_eq!(&out.outputs[0].data()[..], &3.0f32.to_le_bytes());
    }

    #[tokio::test]
    async fn a_panicking_backend_is_an_error_not_a_dead_executor() {
        let s = scheduler(0, 4);
        assert!(matches!(s.execute(input(f32::NAN)).await, Err(ServeError::Inference(_))));
        assert!(s.execute(input(1.0)).await.is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_rejects_at_once() {
        let s = Arc::new(scheduler(200, 1));
        let mut running = Vec::new();
        for _ in 0..2 {
            let s = s.clone();
            running.push(tokio::spawn(async move { s.execute(input(1.0)).await }));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // One job executes, one fills the queue: the next is rejected.
        assert!(matches!(s.execute(input(1.0)).await, Err(ServeError::QueueFull(_))));
        for r in running {
            assert!(r.await.unwrap().is_ok());
        }
    }
}
