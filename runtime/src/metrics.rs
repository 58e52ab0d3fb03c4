//! Prometheus metrics with Triton's names, recorded through the `metrics` crate.
//!
//! Handles are resolved once per model version at load time, so the request path only
//! increments atomics. GPU memory gauges are refreshed by [`export_gpu_memory`] on a timer, as
//! Triton refreshes them every `--metrics-interval-ms`.

use std::{sync::OnceLock, time::Duration};

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use quiver_core::{Engines, GpuInfo};
use tracing::warn;

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
    describe_gauge!("nv_gpu_memory_total_bytes", "GPU total memory, in bytes");
    describe_gauge!("nv_gpu_memory_used_bytes", "GPU used memory, in bytes");
}

/// Triton's default `--metrics-interval-ms`: how often the GPU gauges are refreshed.
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_millis(2000);

/// Sets Triton's GPU memory gauges, `nv_gpu_memory_total_bytes` and `nv_gpu_memory_used_bytes`
/// (total less free, as the driver reports it for the whole device), labelled `gpu_uuid`.
pub fn record_gpu_memory(gpus: &[GpuInfo]) {
    install();
    for gpu in gpus {
        let used = gpu.total_bytes.saturating_sub(gpu.free_bytes);
        gauge!("nv_gpu_memory_total_bytes", "gpu_uuid" => gpu.uuid.clone()).set(gpu.total_bytes as f64);
        gauge!("nv_gpu_memory_used_bytes", "gpu_uuid" => gpu.uuid.clone()).set(used as f64);
    }
}

/// Refreshes the GPU memory gauges every `interval` (at least 100 ms) until the task is
/// dropped, from the first of `engines` with GPU support. Returns at once when none has any (a
/// build without the `cuda` feature), which then exports no GPU metrics. A driver that cannot
/// be queried logs one warning (not one per tick) and leaves the gauges as they were; the
/// server serves on.
pub async fn export_gpu_memory(interval: Duration, engines: Engines) {
    if engines.gpus().is_none() {
        return;
    }
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tick.tick().await;
        let engines = engines.clone();
        let reading = match tokio::task::spawn_blocking(move || engines.gpus()).await {
            Ok(reading) => reading.unwrap_or_else(|| Ok(Vec::new())),
            Err(e) => Err(e.to_string()),
        };
        match reading {
            Ok(gpus) => record_gpu_memory(&gpus),
            Err(message) if !warned => {
                warned = true;
                warn!("GPU metrics: {message}; the nv_gpu_memory_* gauges are not refreshed while this lasts (warned once)");
            }
            Err(_) => {}
        }
    }
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
        let failure = |reason: &'static str| counter!("nv_inference_request_failure", "model" => model.to_string(), "version" => version.to_string(), "reason" => reason);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_memory_is_exported_with_triton_names_and_labels() {
        let gpu = GpuInfo {
            ordinal: 0,
            name: "test GPU".to_string(),
            uuid: "GPU-00000000-0000-0000-0000-00000000cafe".to_string(),
            free_bytes: 3000,
            total_bytes: 8000,
        };
        record_gpu_memory(&[gpu]);
        let text = render();
        assert!(text.contains("# TYPE nv_gpu_memory_total_bytes gauge"), "{text}");
        assert!(text.contains(r#"nv_gpu_memory_total_bytes{gpu_uuid="GPU-00000000-0000-0000-0000-00000000cafe"} 8000"#), "{text}");
        assert!(text.contains(r#"nv_gpu_memory_used_bytes{gpu_uuid="GPU-00000000-0000-0000-0000-00000000cafe"} 5000"#), "{text}");
    }

    #[tokio::test]
    async fn without_gpu_engines_nothing_is_polled() {
        // Returns at once rather than looping on a timer.
        tokio::time::timeout(Duration::from_secs(5), export_gpu_memory(Duration::from_millis(1), Engines::default())).await.unwrap();
    }
}
