//! The scheduler carries each request's prepared (tokenized) data to the model with its batch,
//! and bounds batches by the carried tokens.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use quiver_core::{BackendError, DataType, Encoded, Model, ModelSignature, Sequence, Tensor};

use super::{
    queue::{LevelPolicy, QueuePolicy, TimeoutAction},
    ScheduleParams, Scheduler, SchedulerOptions,
};
use crate::metrics::VersionMetrics;

/// Answers each row with the token count of its carried sequence (-1 when executed without
/// prepared data) and records the requests per batch.
#[derive(Default)]
struct Lengths {
    signature: ModelSignature,
    batches: Mutex<Vec<usize>>,
}

fn output(values: &[f32]) -> Result<Vec<Tensor>, BackendError> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    Tensor::from_bytes(DataType::Fp32, vec![values.len(), 1], Bytes::from(data))
        .map(|t| vec![t])
        .map_err(|e| BackendError::Execution(e.to_string()))
}

impl Model for Lengths {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        output(&vec![-1.0; inputs[0].shape()[0]])
    }
    fn execute_prepared(&self, _inputs: Vec<Tensor>, prepared: &[Encoded]) -> Result<Vec<Tensor>, BackendError> {
        self.batches.lock().unwrap().push(prepared.len());
        output(&prepared.iter().flat_map(|e| &e.sequences).map(|s| s.ids.len() as f32).collect::<Vec<_>>())
    }
}

fn encoded(lengths: &[usize]) -> Encoded {
    Encoded { sequences: lengths.iter().map(|&n| Sequence { ids: vec![7; n], type_ids: vec![0; n] }).collect() }
}

fn rows(n: usize) -> Vec<Tensor> {
    vec![Tensor::from_bytes(DataType::Fp32, vec![n, 1], Bytes::from(vec![0u8; 4 * n])).unwrap()]
}

fn values(t: &Tensor) -> Vec<f32> {
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn scheduler(model: Arc<Lengths>, max_batch_tokens: Option<usize>) -> Arc<Scheduler> {
    let policy = QueuePolicy {
        dynamic: true,
        max_batch_size: 16,
        max_batch_tokens,
        preferred_batch_sizes: vec![16],
        max_queue_delay: Duration::from_millis(100),
        default_priority: 1,
        levels: vec![LevelPolicy {
            timeout_action: TimeoutAction::Reject,
            default_timeout: None,
            allow_timeout_override: false,
            max_queue_size: 16,
        }],
    };
    let options = SchedulerOptions { instances: 1, policy, preserve_ordering: false };
    Arc::new(Scheduler::start("prepared", model, options, VersionMetrics::new("prepared", "1")).unwrap())
}

/// Submits requests of these sequence lengths at once; returns each one's answer.
async fn submit_all(s: &Arc<Scheduler>, requests: &[&[usize]]) -> Vec<Vec<f32>> {
    let tasks: Vec<_> = requests
        .iter()
        .map(|lengths| {
            let (s, prepared) = (s.clone(), encoded(lengths));
            let params = ScheduleParams { rows: lengths.len(), ..Default::default() };
            tokio::spawn(async move { s.execute_prepared(rows(prepared.sequences.len()), prepared, params).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(values(&task.await.unwrap().unwrap().outputs[0]));
    }
    answers
}

#[tokio::test]
async fn each_batch_gets_its_requests_prepared_data_in_row_order() {
    let model = Arc::new(Lengths::default());
    let s = scheduler(model.clone(), None);
    let answers = submit_all(&s, &[&[3, 5], &[2], &[4, 1, 6]]).await;
    assert_eq!(answers, vec![vec![3.0, 5.0], vec![2.0], vec![4.0, 1.0, 6.0]]);
    assert_eq!(*model.batches.lock().unwrap(), vec![3], "one batch of three prepared requests");
    // A request queued without prepared data runs through `execute`.
    let plain = s.execute(rows(2), ScheduleParams { rows: 2, ..Default::default() }).await.unwrap();
    assert_eq!(values(&plain.outputs[0]), vec![-1.0, -1.0]);
}

#[tokio::test]
async fn the_token_budget_counts_the_carried_sequences() {
    let model = Arc::new(Lengths::default());
    // The params count no tokens; the carried ones do: two rows of 1 token pad to 2, and a
    // row of 5 joining them would pad all three to 15 > 10, so it waits for the next batch.
    let s = scheduler(model.clone(), Some(10));
    let answers = submit_all(&s, &[&[1], &[1], &[5]]).await;
    assert_eq!(answers, vec![vec![1.0], vec![1.0], vec![5.0]]);
    assert_eq!(*model.batches.lock().unwrap(), vec![2, 1]);
}
