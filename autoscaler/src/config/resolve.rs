//! Resolving settings into an [`AutoscalerConfig`]: the cluster layer (`config-autoscaler`),
//! then the per-revision annotations with KServe's fields mapped onto them.

use crate::settings::{parse_bool, parse_integer, parse_number, Settings, ANNOTATION_PREFIX, CONTAINER_CONCURRENCY};

use super::{
    defaults, panic_window_s,
    validate::{burst_capacity, class, duration_in, integer_at_least, invalid, number_in, read, scale_rate},
    AutoscalerConfig, ConfigError, ScaleMetric, TargetBurstCapacity,
};

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
}
