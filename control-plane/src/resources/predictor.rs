//! An InferenceService's predictor as the reconcile core sees it: checked, defaulted and
//! normalized from the manifest (`spec.predictor.model`, the older `spec.predictor.<format>`
//! shorthand, the component extension fields and Knative's `autoscaling.knative.dev/*`
//! annotations). Validation produces it; nothing downstream reads the raw manifest again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The model server protocol the predictor speaks (`protocolVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Protocol {
    /// KServe V1 (`v1`), the default as in KServe.
    #[default]
    V1,
    /// The Open Inference Protocol (`v2`); also `grpc-v2`.
    V2,
}

/// What the autoscaler scales on (`scaleMetric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ScaleMetric {
    /// In-flight requests per replica (Knative's default).
    #[default]
    Concurrency,
    /// Requests per second per replica.
    Rps,
}

/// The model format (`modelFormat`), name lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFormat {
    /// `onnx`, `huggingface`, `sklearn`, `xgboost`, `lightgbm`, ... (lowercase).
    pub name: String,
    /// The format version, when given.
    pub version: Option<String>,
}

/// Replica bounds and the autoscaling target, from the component extension fields and the
/// Knative annotations (the fields win where both are given, as in KServe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// `minReplicas` (KServe's default 1); 0 allows scale to zero.
    pub min_replicas: u32,
    /// `maxReplicas`; 0 means no bound, as in Knative.
    pub max_replicas: u32,
    /// `scaleTarget` (or `autoscaling.knative.dev/target`): per-replica target of the metric.
    pub target: Option<f64>,
    /// `scaleMetric` (or `autoscaling.knative.dev/metric`).
    pub metric: ScaleMetric,
    /// `containerConcurrency`: the hard limit of in-flight requests per replica (0 = none).
    pub container_concurrency: u32,
    /// The other `autoscaling.knative.dev/*` annotations, verbatim (window, panic thresholds,
    /// scale-down delay, retention periods), for the autoscaler's configuration.
    pub annotations: BTreeMap<String, String>,
}

/// `batcher`: KServe's request batcher, mapped to the dynamic batcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batcher {
    /// `maxBatchSize`.
    pub max_batch_size: Option<u32>,
    /// `maxLatency` in milliseconds.
    pub max_latency_ms: Option<u64>,
}

/// An InferenceService's predictor, valid and normalized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSpec {
    /// The model format.
    pub format: ModelFormat,
    /// `runtime`, when named (informational in embedded mode: Quiver is the runtime).
    pub runtime: Option<String>,
    /// `storageUri`, as written.
    pub storage_uri: String,
    /// `protocolVersion`.
    pub protocol: Protocol,
    /// Replicas and autoscaling.
    pub scaling: Scaling,
    /// `timeout` in seconds (per request), when given.
    pub timeout_seconds: Option<u64>,
    /// `canaryTrafficPercent`, 0 to 100, when given. Not part of the revision: changing it
    /// only moves traffic.
    pub canary_traffic_percent: Option<u32>,
    /// `batcher`.
    pub batcher: Option<Batcher>,
}

impl PredictorSpec {
    /// The part of the spec that makes a revision: everything but the traffic split. Two specs
    /// with equal templates are the same revision, as a Knative revision is its template.
    pub fn template(&self) -> PredictorSpec {
        PredictorSpec { canary_traffic_percent: None, ..self.clone() }
    }
}

/// A predictor for tests: an ONNX model at `uri`, V2, one replica at least, no bound.
#[cfg(test)]
pub(crate) fn example(uri: &str, canary_traffic_percent: Option<u32>) -> PredictorSpec {
    PredictorSpec {
        format: ModelFormat { name: "onnx".into(), version: None },
        runtime: None,
        storage_uri: uri.into(),
        protocol: Protocol::V2,
        scaling: Scaling {
            min_replicas: 1,
            max_replicas: 0,
            target: None,
            metric: ScaleMetric::Concurrency,
            container_concurrency: 0,
            annotations: BTreeMap::new(),
        },
        timeout_seconds: None,
        canary_traffic_percent,
        batcher: None,
    }
}
