//! The resolved autoscaler configuration: Knative's defaults, overridden by `config-autoscaler`
//! keys, then by per-revision annotations (which KServe fields are written into), validated the
//! way Knative's webhook and ConfigMap parser validate them.
//!
//! Precedence, as in Knative: annotation > `config-autoscaler` key > default. KServe fields are
//! mapped onto annotations the way KServe's InferenceService controller maps them
//! (`scaleTarget` → `target`, `scaleMetric` → `metric`, `minReplicas` → `min-scale` with
//! KServe's default of 1, `maxReplicas` → `max-scale` unless 0). Where a KServe field and the
//! annotation it writes are both given, KServe would silently overwrite the annotation; this
//! crate refuses the pair instead, so a configuration means one thing.
//!
//! Layout: [`defaults`] holds Knative's values; `validate` the per-key parsers and range checks;
//! `resolve` the two layers (`config-autoscaler`, then annotations and KServe fields) and
//! [`AutoscalerConfig::from_settings`]; this file the types and their display.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

pub mod defaults;
mod resolve;
#[cfg(test)]
mod tests;
mod validate;

/// Why a configuration was refused.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    /// A key this crate does not know (a typo, or a setting it does not model).
    #[error(
        "unknown setting '{0}': expected an autoscaling.knative.dev/ annotation, a config-autoscaler key, \
         containerConcurrency, or a KServe field (minReplicas, maxReplicas, scaleTarget, scaleMetric)"
    )]
    UnknownKey(String),
    /// A value that is malformed or out of range for its key.
    #[error("'{key}' = '{value}': {reason}")]
    Invalid {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// A valid Knative or KServe value that this autoscaler does not implement.
    #[error("'{key}' = '{value}' is not supported: {reason}")]
    Unsupported {
        /// The key as written.
        key: String,
        /// The value as written.
        value: String,
        /// What is supported instead.
        reason: String,
    },
    /// Two keys that set the same thing.
    #[error("'{first}' and '{second}' both set the same value ({reason}); set only one")]
    Conflict {
        /// One key.
        first: String,
        /// The other key.
        second: String,
        /// How they overlap.
        reason: String,
    },
    /// Values that are valid alone but not together.
    #[error("{0}")]
    Inconsistent(String),
    /// A configuration document that is not a flat JSON object.
    #[error("the configuration is not a JSON object of settings: {0}")]
    NotASettingsObject(String),
    /// A `--set` argument without `=`.
    #[error("'{0}' is not KEY=VALUE")]
    NotAnAssignment(String),
}

/// What the autoscaler scales on (Knative's `metric` annotation, KServe's `scaleMetric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// In-flight requests per replica (the default).
    Concurrency,
    /// Requests per second per replica.
    Rps,
}

impl ScaleMetric {
    /// The name Knative and KServe use.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleMetric::Concurrency => "concurrency",
            ScaleMetric::Rps => "rps",
        }
    }

    /// What a value of the metric counts, for people.
    pub fn unit(self) -> &'static str {
        match self {
            ScaleMetric::Concurrency => "in-flight requests",
            ScaleMetric::Rps => "requests per second",
        }
    }

    /// Reads a metric name; `cpu` and `memory` (HPA metrics) are refused as unsupported.
    pub fn parse(key: &str, value: &str) -> Result<Self, ConfigError> {
        match value {
            "concurrency" => Ok(ScaleMetric::Concurrency),
            "rps" => Ok(ScaleMetric::Rps),
            "cpu" | "memory" => Err(ConfigError::Unsupported {
                key: key.into(),
                value: value.into(),
                reason: "cpu and memory are scaled by Kubernetes' HPA, not the KPA; use concurrency or rps".into(),
            }),
            _ => Err(ConfigError::Invalid { key: key.into(), value: value.into(), reason: "must be concurrency or rps".into() }),
        }
    }
}

impl fmt::Display for ScaleMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much spare capacity the service must hold before the activator leaves the request path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetBurstCapacity {
    /// `-1`: the activator always stays in the path.
    Unlimited,
    /// Requests (of the metric) of headroom; `0` takes the activator out of the path whenever
    /// the service has replicas.
    Requests(f64),
}

/// A complete KPA configuration for one service (revision). [`AutoscalerConfig::from_settings`]
/// builds a validated one; the fields are public for tests and tools, and a hand-built value is
/// used as given (each window allocates one bucket per second).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerConfig {
    /// The metric scaled on.
    pub metric: ScaleMetric,
    /// The per-replica value aimed for: total × utilization (at least 0.01).
    pub target: f64,
    /// The per-replica value the target is a share of: containerConcurrency, the `target`
    /// annotation, or the default for the metric. Used for excess burst capacity.
    pub total_per_replica: f64,
    /// Hard cap on concurrent requests per replica; 0 means none.
    pub container_concurrency: u32,
    /// Length of the stable window, seconds.
    pub stable_window_s: u64,
    /// Length of the panic window, seconds (at least 1).
    pub panic_window_s: u64,
    /// Panic when desired-by-panic-window / ready replicas reaches this ratio (2.0 = 200%).
    pub panic_threshold: f64,
    /// Upper bound on one decision's growth, as a multiple of the ready replicas.
    pub max_scale_up_rate: f64,
    /// Lower bound on one decision's shrinkage, as a divisor of the ready replicas.
    pub max_scale_down_rate: f64,
    /// Fewest replicas (0 allows scale to zero).
    pub min_scale: u32,
    /// Most replicas; `None` is unbounded.
    pub max_scale: Option<u32>,
    /// Replicas the service starts with.
    pub initial_scale: u32,
    /// Fewest replicas to run whenever any are wanted (scale from zero to at least this).
    pub activation_scale: u32,
    /// Scale-down decisions take the largest desired count of this many past seconds.
    pub scale_down_delay_s: u64,
    /// Cluster switch: without it a service never goes below one replica.
    pub enable_scale_to_zero: bool,
    /// The activator must front the service this long before its last replica goes.
    pub scale_to_zero_grace_period_s: u64,
    /// The last replica stays at least this long after the service went inactive.
    pub scale_to_zero_pod_retention_period_s: u64,
    /// Headroom that keeps the activator out of the path.
    pub target_burst_capacity: TargetBurstCapacity,
}

impl Default for AutoscalerConfig {
    /// Knative's defaults: concurrency metric, target 70 (100 × 70%), 60 s / 6 s windows.
    fn default() -> Self {
        use defaults::*;
        Self {
            metric: ScaleMetric::Concurrency,
            target: CONTAINER_CONCURRENCY_TARGET_DEFAULT * CONTAINER_CONCURRENCY_TARGET_PERCENTAGE / 100.0,
            total_per_replica: CONTAINER_CONCURRENCY_TARGET_DEFAULT,
            container_concurrency: 0,
            stable_window_s: STABLE_WINDOW_S,
            panic_window_s: panic_window_s(STABLE_WINDOW_S, PANIC_WINDOW_PERCENTAGE),
            panic_threshold: PANIC_THRESHOLD_PERCENTAGE / 100.0,
            max_scale_up_rate: MAX_SCALE_UP_RATE,
            max_scale_down_rate: MAX_SCALE_DOWN_RATE,
            min_scale: 0,
            max_scale: None,
            initial_scale: INITIAL_SCALE,
            activation_scale: ACTIVATION_SCALE,
            scale_down_delay_s: SCALE_DOWN_DELAY_S,
            enable_scale_to_zero: true,
            scale_to_zero_grace_period_s: SCALE_TO_ZERO_GRACE_PERIOD_S,
            scale_to_zero_pod_retention_period_s: SCALE_TO_ZERO_POD_RETENTION_PERIOD_S,
            target_burst_capacity: TargetBurstCapacity::Requests(TARGET_BURST_CAPACITY),
        }
    }
}

/// Knative's panic window: a percentage of the stable window, rounded to whole seconds and at
/// least one bucket (pkg/reconciler/autoscaling/resources.MakeMetric).
fn panic_window_s(stable_window_s: u64, percentage: f64) -> u64 {
    ((stable_window_s as f64 * percentage / 100.0).round() as u64).max(1)
}

impl AutoscalerConfig {
    /// Whether the service may have zero replicas.
    pub fn allows_zero(&self) -> bool {
        self.min_scale == 0 && self.enable_scale_to_zero
    }
}

impl fmt::Display for AutoscalerConfig {
    /// One line a person can check against their annotations.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let utilization = 100.0 * self.target / self.total_per_replica;
        write!(
            f,
            "metric {}, target {} per replica ({} × {}%), stable window {} s, panic window {} s at {}%, ",
            self.metric,
            round2(self.target),
            round2(self.total_per_replica),
            round2(utilization),
            self.stable_window_s,
            self.panic_window_s,
            round2(self.panic_threshold * 100.0),
        )?;
        let max = self.max_scale.map_or_else(|| "unbounded".to_string(), |m| m.to_string());
        write!(
            f,
            "replicas {}..{max} (initial {}), rates up ×{} down ÷{}, ",
            self.min_scale,
            self.initial_scale,
            round2(self.max_scale_up_rate),
            round2(self.max_scale_down_rate)
        )?;
        if self.scale_down_delay_s > 0 {
            write!(f, "scale-down delay {} s, ", self.scale_down_delay_s)?;
        }
        if self.allows_zero() {
            write!(f, "scale to zero after {} s grace, ", self.scale_to_zero_grace_period_s)?;
        } else {
            write!(f, "no scale to zero, ")?;
        }
        match self.target_burst_capacity {
            TargetBurstCapacity::Unlimited => write!(f, "activator always in path"),
            TargetBurstCapacity::Requests(tbc) => {
                write!(f, "target burst capacity {}", round2(tbc))
            }
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
