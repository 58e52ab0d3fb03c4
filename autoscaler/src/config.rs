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

use std::fmt;

use serde::Serialize;
use thiserror::Error;

use crate::settings::{parse_bool, parse_duration_secs, parse_integer, parse_number, Settings, ANNOTATION_PREFIX, CONTAINER_CONCURRENCY};

/// Knative's `config-autoscaler` defaults (pkg/autoscaler/config).
pub mod defaults {
    /// `container-concurrency-target-percentage`: the share of a replica's concurrency to aim for.
    pub const CONTAINER_CONCURRENCY_TARGET_PERCENTAGE: f64 = 70.0;
    /// `container-concurrency-target-default`: requests per replica when containerConcurrency is 0.
    pub const CONTAINER_CONCURRENCY_TARGET_DEFAULT: f64 = 100.0;
    /// The utilization applied to the rps target (not a ConfigMap key in Knative).
    pub const TARGET_UTILIZATION: f64 = 0.7;
    /// `requests-per-second-target-default`.
    pub const REQUESTS_PER_SECOND_TARGET_DEFAULT: f64 = 200.0;
    /// `stable-window`, seconds.
    pub const STABLE_WINDOW_S: u64 = 60;
    /// `panic-window-percentage`: the panic window as a share of the stable window.
    pub const PANIC_WINDOW_PERCENTAGE: f64 = 10.0;
    /// `panic-threshold-percentage`: panic when the panic window asks for this share of the ready replicas.
    pub const PANIC_THRESHOLD_PERCENTAGE: f64 = 200.0;
    /// `max-scale-up-rate`: at most this many times the ready replicas per decision.
    pub const MAX_SCALE_UP_RATE: f64 = 1000.0;
    /// `max-scale-down-rate`: at least the ready replicas divided by this per decision.
    pub const MAX_SCALE_DOWN_RATE: f64 = 2.0;
    /// `scale-to-zero-grace-period`, seconds.
    pub const SCALE_TO_ZERO_GRACE_PERIOD_S: u64 = 30;
    /// `scale-to-zero-pod-retention-period`, seconds.
    pub const SCALE_TO_ZERO_POD_RETENTION_PERIOD_S: u64 = 0;
    /// `scale-down-delay`, seconds.
    pub const SCALE_DOWN_DELAY_S: u64 = 0;
    /// `initial-scale`.
    pub const INITIAL_SCALE: u32 = 1;
    /// `target-burst-capacity`. Knative's ConfigMap ships 211 (not a round 200, so that it is
    /// never an exact multiple of a common target).
    pub const TARGET_BURST_CAPACITY: f64 = 211.0;
    /// `activation-scale`: replicas to start when scaling from zero.
    pub const ACTIVATION_SCALE: u32 = 1;
    /// `autoscaling.knative.dev/target` and `container-concurrency-target-default` floor.
    pub const TARGET_MIN: f64 = 0.01;
    /// Shortest stable window, seconds.
    pub const WINDOW_MIN_S: u64 = 6;
    /// Longest stable window, scale-down delay and pod retention, seconds.
    pub const WINDOW_MAX_S: u64 = 3600;
    /// Knative's `container-concurrency-max-limit`.
    pub const CONTAINER_CONCURRENCY_MAX: i32 = 1000;
    /// KServe's `minReplicas` when the field is absent.
    pub const KSERVE_MIN_REPLICAS: u32 = 1;
}

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

/// The cluster-wide layer (`config-autoscaler`), as Knative's `NewConfigFromMap` reads it.
struct ClusterConfig {
    enable_scale_to_zero: bool,
    allow_zero_initial_scale: bool,
    max_scale_up_rate: f64,
    max_scale_down_rate: f64,
    container_concurrency_target_fraction: f64,
    container_concurrency_target_default: f64,
    requests_per_second_target_default: f64,
    target_burst_capacity: f64,
    panic_window_percentage: f64,
    panic_threshold_percentage: f64,
    initial_scale: i32,
    min_scale: i32,
    max_scale: i32,
    max_scale_limit: i32,
    stable_window_s: u64,
    scale_down_delay_s: u64,
    scale_to_zero_grace_period_s: u64,
    scale_to_zero_pod_retention_period_s: u64,
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), value: value.to_string(), reason: reason.into() }
}

/// Reads `key` with `parse` when set.
fn read<T>(settings: &Settings, key: &str, parse: impl Fn(&str, &str) -> Result<T, ConfigError>) -> Result<Option<T>, ConfigError> {
    settings.get(key).map(|value| parse(key, value)).transpose()
}

/// A number within `[min, max]`.
fn number_in(min: f64, max: f64) -> impl Fn(&str, &str) -> Result<f64, ConfigError> {
    move |key, value| {
        let v = parse_number(key, value)?;
        if v < min || v > max {
            return Err(invalid(key, value, format!("must be in [{min}, {max}]")));
        }
        Ok(v)
    }
}

/// A whole number of at least `min`.
fn integer_at_least(min: i32) -> impl Fn(&str, &str) -> Result<i32, ConfigError> {
    move |key, value| {
        let v = parse_integer(key, value)?;
        if v < min {
            return Err(invalid(key, value, format!("must be at least {min}")));
        }
        Ok(v)
    }
}

/// A whole-second duration within `[min_s, max_s]`.
fn duration_in(min_s: u64, max_s: u64) -> impl Fn(&str, &str) -> Result<u64, ConfigError> {
    move |key, value| parse_duration_secs(key, value, min_s, max_s)
}

/// `-1` (unlimited) or a non-negative number.
fn burst_capacity(key: &str, value: &str) -> Result<f64, ConfigError> {
    let v = parse_number(key, value)?;
    if v < 0.0 && v != -1.0 {
        return Err(invalid(key, value, "must be either non-negative or -1 (for unlimited)"));
    }
    Ok(v)
}

fn scale_rate(key: &str, value: &str) -> Result<f64, ConfigError> {
    let v = parse_number(key, value)?;
    if v <= 1.0 {
        return Err(invalid(key, value, "must be greater than 1.0"));
    }
    Ok(v)
}

fn class(key: &str, value: &str) -> Result<(), ConfigError> {
    match value {
        "kpa.autoscaling.knative.dev" => Ok(()),
        _ => Err(ConfigError::Unsupported {
            key: key.into(),
            value: value.into(),
            reason: "only the KPA (kpa.autoscaling.knative.dev) is implemented".into(),
        }),
    }
}

impl ClusterConfig {
    fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        use defaults::*;
        read(s, "pod-autoscaler-class", class)?;
        // Sizes how many activators front a service; no decision here depends on it.
        read(s, "activator-capacity", number_in(1.0, f64::MAX))?;
        let fraction = read(s, "container-concurrency-target-percentage", parse_number)?.unwrap_or(CONTAINER_CONCURRENCY_TARGET_PERCENTAGE);
        // Knative accepts a fraction in (0, 1] for legacy reasons, and a percentage above 1.
        let fraction = if fraction > 1.0 { fraction / 100.0 } else { fraction };
        if fraction <= 0.0 || fraction > 1.0 {
            let value = s.get("container-concurrency-target-percentage").unwrap_or_default();
            return Err(invalid("container-concurrency-target-percentage", value, "must be in (0, 100]"));
        }
        let cc_default = read(s, "container-concurrency-target-default", parse_number)?.unwrap_or(CONTAINER_CONCURRENCY_TARGET_DEFAULT);
        if fraction * cc_default < TARGET_MIN {
            return Err(ConfigError::Inconsistent(format!(
                "container-concurrency-target-percentage and container-concurrency-target-default yield a target \
                 concurrency of {}, which is below {TARGET_MIN}",
                fraction * cc_default
            )));
        }
        let cluster = Self {
            enable_scale_to_zero: read(s, "enable-scale-to-zero", parse_bool)?.unwrap_or(true),
            allow_zero_initial_scale: read(s, "allow-zero-initial-scale", parse_bool)?.unwrap_or(false),
            max_scale_up_rate: read(s, "max-scale-up-rate", scale_rate)?.unwrap_or(MAX_SCALE_UP_RATE),
            max_scale_down_rate: read(s, "max-scale-down-rate", scale_rate)?.unwrap_or(MAX_SCALE_DOWN_RATE),
            container_concurrency_target_fraction: fraction,
            container_concurrency_target_default: cc_default,
            requests_per_second_target_default: read(s, "requests-per-second-target-default", number_in(TARGET_MIN, f64::MAX))?
                .unwrap_or(REQUESTS_PER_SECOND_TARGET_DEFAULT),
            target_burst_capacity: read(s, "target-burst-capacity", burst_capacity)?.unwrap_or(TARGET_BURST_CAPACITY),
            panic_window_percentage: read(s, "panic-window-percentage", number_in(1.0, 100.0))?.unwrap_or(PANIC_WINDOW_PERCENTAGE),
            panic_threshold_percentage: read(s, "panic-threshold-percentage", number_in(110.0, 1000.0))?
                .unwrap_or(PANIC_THRESHOLD_PERCENTAGE),
            initial_scale: read(s, "initial-scale", integer_at_least(0))?.unwrap_or(INITIAL_SCALE as i32),
            min_scale: read(s, "min-scale", integer_at_least(0))?.unwrap_or(0),
            max_scale: read(s, "max-scale", integer_at_least(0))?.unwrap_or(0),
            max_scale_limit: read(s, "max-scale-limit", integer_at_least(0))?.unwrap_or(0),
            stable_window_s: read(s, "stable-window", duration_in(WINDOW_MIN_S, WINDOW_MAX_S))?.unwrap_or(STABLE_WINDOW_S),
            scale_down_delay_s: read(s, "scale-down-delay", duration_in(0, WINDOW_MAX_S))?.unwrap_or(SCALE_DOWN_DELAY_S),
            scale_to_zero_grace_period_s: read(s, "scale-to-zero-grace-period", duration_in(1, WINDOW_MAX_S))?
                .unwrap_or(SCALE_TO_ZERO_GRACE_PERIOD_S),
            scale_to_zero_pod_retention_period_s: read(s, "scale-to-zero-pod-retention-period", duration_in(0, WINDOW_MAX_S))?
                .unwrap_or(SCALE_TO_ZERO_POD_RETENTION_PERIOD_S),
        };
        if cluster.initial_scale == 0 && !cluster.allow_zero_initial_scale {
            return Err(ConfigError::Inconsistent("initial-scale = 0 needs allow-zero-initial-scale = true".into()));
        }
        if cluster.max_scale_limit > 0 && (cluster.max_scale < 1 || cluster.max_scale > cluster.max_scale_limit) {
            return Err(ConfigError::Inconsistent(format!(
                "max-scale = {} must be in [1, max-scale-limit ({})]",
                cluster.max_scale, cluster.max_scale_limit
            )));
        }
        if cluster.max_scale > 0 && cluster.min_scale > cluster.max_scale {
            return Err(ConfigError::Inconsistent(format!(
                "min-scale ({}) must not be above max-scale ({})",
                cluster.min_scale, cluster.max_scale
            )));
        }
        Ok(cluster)
    }
}

/// The per-revision annotations in effect: those written, plus KServe's fields mapped onto them.
/// Keys are annotation names without the prefix; each value remembers the key it came from so
/// errors name what the user wrote.
struct Annotations {
    values: Vec<(&'static str, String, String)>,
}

impl Annotations {
    fn from_settings(s: &Settings, cluster: &ClusterConfig) -> Result<Self, ConfigError> {
        let mut values = Vec::new();
        for (name, _) in crate::settings::ANNOTATIONS {
            if let Some((key, value)) = s.annotation(name) {
                values.push((*name, key, value.to_string()));
            }
        }
        let mut annotations = Self { values };
        if s.has_kserve_fields() {
            annotations.apply_kserve_fields(s, cluster)?;
        }
        Ok(annotations)
    }

    /// KServe's InferenceService controller writes these annotations from its fields.
    fn apply_kserve_fields(&mut self, s: &Settings, cluster: &ClusterConfig) -> Result<(), ConfigError> {
        if let Some(target) = s.get("scaleTarget") {
            // KServe's scaleTarget is an integer field.
            let v = parse_integer("scaleTarget", target)?;
            if v < 1 {
                return Err(invalid("scaleTarget", target, "must be at least 1"));
            }
            self.insert_from_field("target", "scaleTarget", target.to_string())?;
        }
        if let Some(metric) = s.get("scaleMetric") {
            ScaleMetric::parse("scaleMetric", metric)?;
            self.insert_from_field("metric", "scaleMetric", metric.to_string())?;
        }
        let min_replicas = read(s, "minReplicas", integer_at_least(0))?;
        let max_replicas = read(s, "maxReplicas", integer_at_least(0))?;
        if let (Some(min), Some(max)) = (min_replicas, max_replicas) {
            if max != 0 && min > max {
                return Err(ConfigError::Inconsistent(format!("minReplicas ({min}) must not be above maxReplicas ({max})")));
            }
        }
        let min = min_replicas.unwrap_or(defaults::KSERVE_MIN_REPLICAS as i32);
        let min_field = if min_replicas.is_some() { "minReplicas" } else { "minReplicas (absent: KServe's default 1)" };
        self.insert_from_field("min-scale", min_field, min.to_string())?;
        if let Some(max) = max_replicas.filter(|&m| m != 0) {
            self.insert_from_field("max-scale", "maxReplicas", max.to_string())?;
        }
        // KServe starts a minReplicas-0 service at zero replicas where the cluster allows it.
        if min == 0 && cluster.allow_zero_initial_scale {
            self.insert_from_field("initial-scale", "minReplicas", "0".into())?;
        }
        Ok(())
    }

    fn insert_from_field(&mut self, name: &'static str, field: &str, value: String) -> Result<(), ConfigError> {
        if let Some((_, key, _)) = self.values.iter().find(|(n, _, _)| *n == name) {
            return Err(ConfigError::Conflict {
                first: field.to_string(),
                second: key.clone(),
                reason: format!("KServe writes {ANNOTATION_PREFIX}{name} from {field}"),
            });
        }
        self.values.push((name, field.to_string(), value));
        Ok(())
    }

    fn read<T>(&self, name: &str, parse: impl Fn(&str, &str) -> Result<T, ConfigError>) -> Result<Option<T>, ConfigError> {
        self.values.iter().find(|(n, _, _)| *n == name).map(|(_, key, value)| parse(key, value)).transpose()
    }

    /// The key the annotation `name` came from, for error messages.
    fn key(&self, name: &str) -> String {
        self.values.iter().find(|(n, _, _)| *n == name).map_or_else(|| format!("{ANNOTATION_PREFIX}{name}"), |(_, key, _)| key.clone())
    }
}

impl AutoscalerConfig {
    /// Resolves `settings` into a configuration with Knative's precedence (annotation over
    /// `config-autoscaler` key over default) and KServe's field mapping, or says which
    /// setting is wrong.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        use defaults::*;
        let cluster = ClusterConfig::from_settings(settings)?;
        let ann = Annotations::from_settings(settings, &cluster)?;

        ann.read("class", class)?;
        ann.read("metric-aggregation-algorithm", |key, value| match value {
            "linear" => Ok(()),
            _ => Err(ConfigError::Unsupported {
                key: key.into(),
                value: value.into(),
                reason: "only linear (the simple average over the window, Knative's default) is implemented".into(),
            }),
        })?;
        let metric = ann.read("metric", ScaleMetric::parse)?.unwrap_or(ScaleMetric::Concurrency);
        let container_concurrency = read(settings, CONTAINER_CONCURRENCY, |key, value| {
            let v = parse_integer(key, value)?;
            if !(0..=CONTAINER_CONCURRENCY_MAX).contains(&v) {
                return Err(invalid(key, value, format!("must be in [0, {CONTAINER_CONCURRENCY_MAX}]")));
            }
            Ok(v as u32)
        })?
        .unwrap_or(0);

        // pkg/reconciler/autoscaling/resources.ResolveMetricTarget.
        let (mut total, mut utilization) = match metric {
            ScaleMetric::Rps => (cluster.requests_per_second_target_default, TARGET_UTILIZATION),
            ScaleMetric::Concurrency if container_concurrency == 0 => {
                (cluster.container_concurrency_target_default, cluster.container_concurrency_target_fraction)
            }
            ScaleMetric::Concurrency => (f64::from(container_concurrency), cluster.container_concurrency_target_fraction),
        };
        if let Some(target) = ann.read("target", number_in(TARGET_MIN, f64::MAX))? {
            total = target;
            if metric == ScaleMetric::Concurrency && container_concurrency != 0 {
                // Never aim above what one replica accepts.
                total = target.min(f64::from(container_concurrency));
            }
        }
        if let Some(percentage) = ann.read("target-utilization-percentage", number_in(1.0, 100.0))? {
            utilization = percentage / 100.0;
        }

        let stable_window_s = ann.read("window", duration_in(WINDOW_MIN_S, WINDOW_MAX_S))?.unwrap_or(cluster.stable_window_s);
        let panic_window_percentage =
            ann.read("panic-window-percentage", number_in(1.0, 100.0))?.unwrap_or(cluster.panic_window_percentage);
        let panic_threshold_percentage =
            ann.read("panic-threshold-percentage", number_in(110.0, 1000.0))?.unwrap_or(cluster.panic_threshold_percentage);
        let target_burst_capacity = ann.read("target-burst-capacity", burst_capacity)?.unwrap_or(cluster.target_burst_capacity);

        let min_scale = ann.read("min-scale", integer_at_least(0))?.unwrap_or(cluster.min_scale);
        let max_scale = ann.read("max-scale", integer_at_least(0))?.unwrap_or(cluster.max_scale);
        if max_scale != 0 && max_scale < min_scale {
            return Err(ConfigError::Inconsistent(format!("max-scale = {max_scale} is less than min-scale = {min_scale}")));
        }
        if cluster.max_scale_limit > 0 && (max_scale == 0 || max_scale > cluster.max_scale_limit) {
            return Err(ConfigError::Inconsistent(format!(
                "max-scale = {max_scale} must be in [1, max-scale-limit ({})]",
                cluster.max_scale_limit
            )));
        }
        let activation_scale = ann.read("activation-scale", parse_integer)?;
        if let Some(activation) = activation_scale {
            let key = ann.key("activation-scale");
            let value = activation.to_string();
            if activation < 2 {
                return Err(invalid(&key, &value, "must be greater than 1"));
            }
            if min_scale > activation {
                return Err(invalid(&key, &value, format!("must not be below min-scale ({min_scale})")));
            }
            if max_scale != 0 && max_scale < activation {
                return Err(invalid(&key, &value, format!("must not be above max-scale ({max_scale})")));
            }
        }
        let initial_scale = match ann.read("initial-scale", integer_at_least(0))? {
            Some(0) if !cluster.allow_zero_initial_scale => {
                return Err(invalid(&ann.key("initial-scale"), "0", "0 needs allow-zero-initial-scale = true"));
            }
            Some(v) => v,
            None => cluster.initial_scale,
        };
        // Knative lets the deployment start above max-scale until the first decision; that
        // would break the "never above max" guarantee, so it is refused here.
        if max_scale != 0 && initial_scale > max_scale {
            return Err(ConfigError::Inconsistent(format!("initial-scale = {initial_scale} is above max-scale = {max_scale}")));
        }

        Ok(Self {
            metric,
            target: (total * utilization).max(TARGET_MIN),
            total_per_replica: total,
            container_concurrency,
            stable_window_s,
            panic_window_s: panic_window_s(stable_window_s, panic_window_percentage),
            panic_threshold: panic_threshold_percentage / 100.0,
            max_scale_up_rate: cluster.max_scale_up_rate,
            max_scale_down_rate: cluster.max_scale_down_rate,
            min_scale: min_scale as u32,
            max_scale: (max_scale != 0).then_some(max_scale as u32),
            initial_scale: initial_scale as u32,
            activation_scale: activation_scale.map_or(ACTIVATION_SCALE, |v| v as u32),
            scale_down_delay_s: ann.read("scale-down-delay", duration_in(0, WINDOW_MAX_S))?.unwrap_or(cluster.scale_down_delay_s),
            enable_scale_to_zero: cluster.enable_scale_to_zero,
            scale_to_zero_grace_period_s: cluster.scale_to_zero_grace_period_s,
            scale_to_zero_pod_retention_period_s: ann
                .read("scale-to-zero-pod-retention-period", duration_in(0, WINDOW_MAX_S))?
                .unwrap_or(cluster.scale_to_zero_pod_retention_period_s),
            target_burst_capacity: if target_burst_capacity == -1.0 {
                TargetBurstCapacity::Unlimited
            } else {
                TargetBurstCapacity::Requests(target_burst_capacity)
            },
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings as `(key, value)` pairs.
    type Pairs = &'static [(&'static str, &'static str)];

    fn config(pairs: &[(&str, &str)]) -> Result<AutoscalerConfig, ConfigError> {
        let mut settings = Settings::new();
        for (k, v) in pairs {
            settings.set(k, v)?;
        }
        AutoscalerConfig::from_settings(&settings)
    }

    #[test]
    fn no_settings_give_knatives_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c, AutoscalerConfig::default());
        assert_eq!(c.target, 70.0);
        assert_eq!(c.total_per_replica, 100.0);
        assert_eq!((c.stable_window_s, c.panic_window_s), (60, 6));
        assert_eq!(c.panic_threshold, 2.0);
        assert_eq!((c.max_scale_up_rate, c.max_scale_down_rate), (1000.0, 2.0));
        assert_eq!((c.min_scale, c.max_scale, c.initial_scale), (0, None, 1));
        assert_eq!(c.scale_to_zero_grace_period_s, 30);
        assert_eq!(c.target_burst_capacity, TargetBurstCapacity::Requests(211.0));
    }

    #[test]
    fn targets_resolve_like_knatives_resolve_metric_target() {
        // (settings, target, total)
        let cases: &[(Pairs, f64, f64)] = &[
            (&[("autoscaling.knative.dev/target", "10")], 7.0, 10.0),
            (&[("containerConcurrency", "10")], 7.0, 10.0),
            // The target annotation cannot exceed containerConcurrency.
            (&[("containerConcurrency", "10"), ("autoscaling.knative.dev/target", "50")], 7.0, 10.0),
            (&[("autoscaling.knative.dev/metric", "rps")], 140.0, 200.0),
            (&[("autoscaling.knative.dev/metric", "rps"), ("containerConcurrency", "10")], 140.0, 200.0),
            (&[("autoscaling.knative.dev/metric", "rps"), ("requests-per-second-target-default", "50")], 35.0, 50.0),
            (&[("autoscaling.knative.dev/target-utilization-percentage", "50")], 50.0, 100.0),
            (&[("container-concurrency-target-percentage", "0.5")], 50.0, 100.0),
            (&[("container-concurrency-target-percentage", "80")], 80.0, 100.0),
            (&[("container-concurrency-target-default", "20")], 14.0, 20.0),
            (&[("autoscaling.knative.dev/target", "0.01")], 0.01, 0.01),
            (&[("scaleTarget", "5"), ("scaleMetric", "rps")], 3.5, 5.0),
        ];
        for (pairs, target, total) in cases {
            let c = config(pairs).unwrap();
            assert!((c.target - target).abs() < 1e-9, "{pairs:?}: target {}", c.target);
            assert_eq!(c.total_per_replica, *total, "{pairs:?}");
        }
    }

    #[test]
    fn annotations_override_cluster_keys() {
        let c = config(&[
            ("stable-window", "2m"),
            ("autoscaling.knative.dev/window", "30s"),
            ("panic-window-percentage", "20"),
            ("min-scale", "1"),
            ("autoscaling.knative.dev/min-scale", "2"),
            ("max-scale", "3"),
            ("target-burst-capacity", "0"),
            ("autoscaling.knative.dev/target-burst-capacity", "-1"),
            ("scale-down-delay", "10s"),
        ])
        .unwrap();
        assert_eq!((c.stable_window_s, c.panic_window_s), (30, 6));
        assert_eq!((c.min_scale, c.max_scale), (2, Some(3)));
        assert_eq!(c.target_burst_capacity, TargetBurstCapacity::Unlimited);
        assert_eq!(c.scale_down_delay_s, 10);
    }

    #[test]
    fn panic_window_is_at_least_one_second() {
        let c = config(&[("autoscaling.knative.dev/window", "6s"), ("autoscaling.knative.dev/panic-window-percentage", "1")]).unwrap();
        assert_eq!(c.panic_window_s, 1);
    }

    #[test]
    fn kserve_fields_map_like_the_inferenceservice_controller() {
        let c = config(&[("scaleTarget", "10"), ("scaleMetric", "concurrency")]).unwrap();
        assert_eq!((c.min_scale, c.max_scale), (1, None), "KServe's minReplicas defaults to 1");
        let c = config(&[("minReplicas", "0"), ("maxReplicas", "0")]).unwrap();
        assert_eq!((c.min_scale, c.max_scale, c.initial_scale), (0, None, 1));
        assert!(c.allows_zero());
        let c = config(&[("minReplicas", "0"), ("maxReplicas", "4"), ("allow-zero-initial-scale", "true")]).unwrap();
        assert_eq!((c.min_scale, c.max_scale, c.initial_scale), (0, Some(4), 0));
    }

    #[test]
    fn bad_configurations_are_refused_with_the_key_named() {
        let cases: &[(Pairs, &str)] = &[
            (&[("scaleMetric", "cpu")], "not supported: cpu and memory are scaled by Kubernetes' HPA"),
            (&[("autoscaling.knative.dev/metric", "memory")], "not supported"),
            (&[("autoscaling.knative.dev/metric", "latency")], "must be concurrency or rps"),
            (&[("autoscaling.knative.dev/class", "hpa.autoscaling.knative.dev")], "only the KPA"),
            (&[("autoscaling.knative.dev/metric-aggregation-algorithm", "weightedExponential")], "only linear"),
            (&[("autoscaling.knative.dev/target", "0")], "must be in [0.01"),
            (&[("autoscaling.knative.dev/window", "5s")], "must be in [6s, 3600s]"),
            (&[("autoscaling.knative.dev/window", "90500ms")], "second precision"),
            (&[("autoscaling.knative.dev/panic-window-percentage", "0.5")], "must be in [1, 100]"),
            (&[("autoscaling.knative.dev/panic-threshold-percentage", "100")], "must be in [110, 1000]"),
            (&[("autoscaling.knative.dev/target-burst-capacity", "-2")], "-1 (for unlimited)"),
            (&[("max-scale-down-rate", "1")], "greater than 1.0"),
            (&[("max-scale-up-rate", "0.5")], "greater than 1.0"),
            (&[("autoscaling.knative.dev/min-scale", "-1")], "at least 0"),
            (&[("autoscaling.knative.dev/min-scale", "3"), ("autoscaling.knative.dev/max-scale", "2")], "less than min-scale"),
            (&[("autoscaling.knative.dev/initial-scale", "0")], "allow-zero-initial-scale"),
            (&[("autoscaling.knative.dev/initial-scale", "5"), ("autoscaling.knative.dev/max-scale", "2")], "above max-scale"),
            (&[("autoscaling.knative.dev/activation-scale", "1")], "greater than 1"),
            (&[("autoscaling.knative.dev/activation-scale", "5"), ("autoscaling.knative.dev/max-scale", "3")], "above max-scale"),
            (&[("max-scale-limit", "10")], "max-scale-limit"),
            (&[("containerConcurrency", "1001")], "[0, 1000]"),
            (&[("scale-to-zero-grace-period", "0s")], "must be in [1s"),
            (&[("container-concurrency-target-percentage", "0")], "(0, 100]"),
            (&[("minReplicas", "2"), ("maxReplicas", "1")], "minReplicas (2) must not be above maxReplicas (1)"),
            (&[("scaleTarget", "10"), ("autoscaling.knative.dev/target", "10")], "both set the same value"),
            (
                &[("maxReplicas", "3"), ("autoscaling.knative.dev/min-scale", "0")],
                "KServe writes autoscaling.knative.dev/min-scale from minReplicas",
            ),
            (&[("scaleTarget", "2.5")], "whole number"),
            (&[("enable-scale-to-zero", "maybe")], "true or false"),
        ];
        for (pairs, want) in cases {
            let err = config(pairs).unwrap_err().to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn the_summary_line_names_the_resolved_values() {
        let line = config(&[("minReplicas", "0"), ("maxReplicas", "5")]).unwrap().to_string();
        assert!(line.contains("target 70 per replica (100 × 70%)"), "{line}");
        assert!(line.contains("replicas 0..5"), "{line}");
        assert!(line.contains("scale to zero after 30 s grace"), "{line}");
    }
}
