//! Prometheus metrics with Triton's names, recorded through the `metrics` crate.
//!
//! Handles are resolved once per model version at load time, so the request path only
//! increments atomics.

use std::{sync::OnceLock, time::Duration};

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder as the process-wide `metrics` recorder (once; later calls
/// return the same handle). `None` means another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// Renders every metric in the Prometheus text format.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

fn describe() {
    describe_counter!("nv_inference_request_success", "Number of successful inference requests, all batch sizes");
    describe_counter!("nv_inference_request_failure", "Number of failed inference requests, all batch sizes");
    describe_counter!("nv_inference_count", "Number of inferences performed (a batch of n counts n)");
    describe_counter!("nv_inference_exec_count", "Number of model executions performed (a batch counts once)");
    describe_counter!("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds");
    describe_counter!("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds");
    describe_counter!("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds");
    describe_counter!("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds");
    describe_counter!("nv_inference_compute_output_duration_us", "Cumulative compute output duration in microseconds");
    describe_gauge!("nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution");
}

/// The metric handles of one model version.
#[derive(Clone)]
pub struct VersionMetrics {
    success: Counter,
    failure_rejected: Counter,
    failure_backend: Counter,
    failure_other: Counter,
    inference_count: Counter,
    exec_count: Counter,
    request_duration: Counter,
    queue_duration: Counter,
    compute_input_duration: Counter,
    compute_infer_duration: Counter,
    compute_output_duration: Counter,
    pending: Gauge,
}

impl std::fmt::Debug for VersionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VersionMetrics")
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl VersionMetrics {
    /// Registers (or finds) the metrics labelled `{model, version}`.
    pub fn new(model: &str, version: &str) -> VersionMetrics {
        install();
        let labels = [("model", model.to_string()), ("version", version.to_string())];
        let failure = |reason: &'static str| {
            counter!("nv_inference_request_failure", "model" => model.to_string(), "version" => version.to_string(), "reason" => reason)
        };
        VersionMetrics {
            success: counter!("nv_inference_request_success", &labels),
            failure_rejected: failure("REJECTED"),
            failure_backend: failure("BACKEND"),
            failure_other: failure("OTHER"),
            inference_count: counter!("nv_inference_count", &labels),
            exec_count: counter!("nv_inference_exec_count", &labels),
            request_duration: counter!("nv_inference_request_duration_us", &labels),
            queue_duration: counter!("nv_inference_queue_duration_us", &labels),
            compute_input_duration: counter!("nv_inference_compute_input_duration_us", &labels),
            compute_infer_duration: counter!("nv_inference_compute_infer_duration_us", &labels),
            compute_output_duration: counter!("nv_inference_compute_output_duration_us", &labels),
            pending: gauge!("nv_inference_pending_request_count", &labels),
        }
    }

    /// Records a successful request of `batch_size` inferences.
    pub fn request_succeeded(&self, batch_size: u64, total: Duration) {
        self.success.increment(1);
        self.inference_count.increment(batch_size);
        self.request_duration.increment(micros(total));
    }

    /// Records a failed request; `reason` is a [`crate::ServeError::failure_reason`].
    pub fn request_failed(&self, reason: &str, total: Duration) {
        match reason {
            "REJECTED" => self.failure_rejected.increment(1),
            "BACKEND" => self.failure_backend.increment(1),
            _ => self.failure_other.increment(1),
        }
        self.request_duration.increment(micros(total));
    }

    /// Records one model execution (a batch counts once).
    pub fn batch_executed(&self) {
        self.exec_count.increment(1);
    }

    /// Records one request's time in the queue and in its batch's phases (cumulative per
    /// request, as Triton counts them).
    pub fn request_timing(&self, queue: Duration, input: Duration, infer: Duration, output: Duration) {
        self.queue_duration.increment(micros(queue));
        self.compute_input_duration.increment(micros(input));
        self.compute_infer_duration.increment(micros(infer));
        self.compute_output_duration.increment(micros(output));
    }

    /// Moves the pending-request gauge.
    pub fn pending(&self, delta: f64) {
        self.pending.increment(delta);
    }
}
