//! The tokenization workers: a few OS threads that run [`quiver_core::Model::prepare`] (a text
//! model tokenizing a request) before the request is queued, as text-embeddings-inference's
//! tokenization workers do.
//!
//! Tokenizing is CPU work of up to milliseconds per request; on a tokio thread it would stall
//! every connection that thread serves, and inside the executor it would take time from the
//! model. Jobs wait in one bounded queue; a full queue rejects at once, as a full scheduler
//! queue does. Models that prepare nothing never reach this pool.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock},
    thread,
};

use thiserror::Error;
use tokio::sync::oneshot;

use crate::ServeError;

/// Jobs the shared pool holds waiting, across all models: a request's job is its whole
/// tokenization, so this bounds requests, like a scheduler queue's `max_queue_size`.
pub const QUEUE_SIZE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job was not run.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum PoolError {
    /// The queue holds its maximum of jobs.
    #[error("the tokenization queue is full ({0} requests)")]
    Full(usize),
    /// The workers have exited, or the job panicked before it answered.
    #[error("the tokenization workers stopped before answering")]
    Stopped,
}

impl From<PoolError> for ServeError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Full(_) => ServeError::QueueFull(e.to_string()),
            PoolError::Stopped => ServeError::Inference(e.to_string()),
        }
    }
}

/// A fixed set of worker threads fed from one bounded queue. Dropping it lets the workers
/// finish the queued jobs and exit.
#[derive(Debug)]
pub struct Pool {
    jobs: std_mpsc::SyncSender<Job>,
    capacity: usize,
}

impl Pool {
    /// Starts `threads` workers (at least one) behind a queue of `capacity` jobs (at least one).
    pub fn start(threads: usize, capacity: usize) -> std::io::Result<Pool> {
        let capacity = capacity.max(1);
        let (jobs, queue) = std_mpsc::sync_channel::<Job>(capacity);
        let queue = Arc::new(Mutex::new(queue));
        for worker in 0..threads.max(1) {
            let queue = queue.clone();
            thread::Builder::new().name(format!("quiver-tokenize-{worker}")).spawn(move || worker_loop(&queue))?;
        }
        Ok(Pool { jobs, capacity })
    }

    /// Queues `job` and waits for its result. A full queue is an error at once; a job whose
    /// caller stopped waiting is skipped.
    pub async fn run<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> Result<R, PoolError> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !reply.is_closed() {
                let _ = reply.send(job());
            }
        });
        self.jobs.try_send(job).map_err(|e| match e {
            std_mpsc::TrySendError::Full(_) => PoolError::Full(self.capacity),
            std_mpsc::TrySendError::Disconnected(_) => PoolError::Stopped,
        })?;
        result.await.map_err(|_| PoolError::Stopped)
    }
}

fn worker_loop(queue: &Mutex<std_mpsc::Receiver<Job>>) {
    loop {
        // One worker waits on the channel while the others wait on the lock; the lock is
        // released before the job runs, so workers run jobs concurrently.
        let next = match queue.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panicking job drops its reply (its caller gets `Stopped`); the worker lives on.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// The process's pool, started on first use with one worker per core, so servers that load no
/// text model start no threads.
pub fn shared() -> Result<&'static Pool, ServeError> {
    static POOL: OnceLock<Result<Pool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        Pool::start(threads, QUEUE_SIZE).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ServeError::Unavailable(format!("the tokenization workers could not start: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::mpsc, time::Duration};

    #[tokio::test]
    async fn jobs_run_on_the_workers_and_results_come_back() {
        let pool = Pool::start(2, 8).unwrap();
        let name = pool.run(|| thread::current().name().map(str::to_string)).await.unwrap();
        assert!(name.is_some_and(|n| n.starts_with("quiver-tokenize-")));
        let results = futures_util::future::join_all((0..6).map(|i| pool.run(move || i * 10))).await;
        assert_eq!(results, (0..6).map(|i| Ok(i * 10)).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_queue_rejects_at_once() {
        let pool = Arc::new(Pool::start(1, 1).unwrap());
        // Block the only worker, then fill the one queue slot.
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = oneshot::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.run(move || {
                    started_tx.send(()).unwrap();
                    blocked.recv().unwrap();
                })
                .await
            })
        };
        tokio::time::timeout(Duration::from_secs(5), started).await.unwrap().unwrap();
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| 2).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let full = pool.run(|| 3).await;
        assert_eq!(full, Err(PoolError::Full(1)));
        assert!(matches!(ServeError::from(full.unwrap_err()), ServeError::QueueFull(m) if m.contains("tokenization queue is full")));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
        assert_eq!(queued.await.unwrap(), Ok(2));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let pool = Pool::start(1, 4).unwrap();
        assert_eq!(pool.run(|| -> u32 { panic!("tokenizer bug") }).await, Err(PoolError::Stopped));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
