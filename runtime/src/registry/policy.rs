//! A model's lifecycle settings, read from its configuration's `parameters` (Triton's
//! free-form string map), so they travel with the model like the rest of its config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `min_instances` | `0` lets the model scale to zero when idle | `1` |
//! | `idle_grace_period_s` | seconds without requests before scaling to zero | `60` |
//! | `cold_start_timeout_s` | how long a request waits for a scaled-to-zero model to load | `60` |
//! | `cold_start_buffer` | most requests buffered while it loads | `1024` |
//! | `canary_version`, `canary_traffic_percent`, `stable_version` | a traffic split at load | none |
//! | `rollback_max_error_rate_increase`, `rollback_max_p99_ratio` | automatic canary rollback | off |
//! | `rollback_window_s`, `rollback_min_requests` | its window and sample floor | `30`, `20` |

use std::{str::FromStr, time::Duration};

use quiver_core::ModelConfig;

use super::judge::RollbackRule;

/// Scale to zero: release the model's weights after this long without requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePolicy {
    /// Time without requests before the model scales to zero.
    pub grace: Duration,
}

/// How requests to a scaled-to-zero model wait for it (the in-process activator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColdStart {
    /// Most requests waiting at once; beyond it a request is refused (503).
    pub buffer: usize,
    /// Longest wait for the load.
    pub timeout: Duration,
}

/// A split the config asks for when the model loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryConfig {
    /// The canary version.
    pub canary: u64,
    /// Its share of traffic.
    pub percent: u32,
    /// The stable version (default: the highest other version that serves).
    pub stable: Option<u64>,
}

/// Everything the lifecycle reads from a model's config.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPolicy {
    /// Scale to zero, when `min_instances` is 0.
    pub idle: Option<IdlePolicy>,
    /// The activator's settings.
    pub cold_start: ColdStart,
    /// A split to start with.
    pub canary: Option<CanaryConfig>,
    /// Automatic rollback, when a threshold is set.
    pub rollback: Option<RollbackRule>,
}

impl Default for ModelPolicy {
    fn default() -> Self {
        ModelPolicy { idle: None, cold_start: ColdStart { buffer: 1024, timeout: Duration::from_secs(60) }, canary: None, rollback: None }
    }
}

/// Largest cold-start buffer a config may ask for.
pub const MAX_COLD_START_BUFFER: usize = 1 << 16;

/// Reads the lifecycle parameters of `config`; a malformed value is an error naming the key.
pub fn model_policy(config: &ModelConfig) -> Result<ModelPolicy, String> {
    fn get<T: FromStr>(config: &ModelConfig, key: &str) -> Result<Option<T>, String> {
        match config.parameters.get(key) {
            None => Ok(None),
            Some(p) => p
                .string_value
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|_| format!("parameter '{key}': '{}' is not a valid {}", p.string_value, std::any::type_name::<T>())),
        }
    }
    let seconds = |key: &str, default: u64| -> Result<Duration, String> {
        let secs: f64 = get(config, key)?.unwrap_or(default as f64);
        Duration::try_from_secs_f64(secs).map_err(|_| format!("parameter '{key}': {secs} is not a non-negative number of seconds"))
    };
    let mut policy = ModelPolicy::default();
    let grace = seconds("idle_grace_period_s", 60)?;
    if get::<u32>(config, "min_instances")? == Some(0) {
        policy.idle = Some(IdlePolicy { grace });
    }
    policy.cold_start.timeout = seconds("cold_start_timeout_s", 60)?;
    if let Some(buffer) = get::<usize>(config, "cold_start_buffer")? {
        if buffer == 0 || buffer > MAX_COLD_START_BUFFER {
            return Err(format!("parameter 'cold_start_buffer': {buffer} is not between 1 and {MAX_COLD_START_BUFFER}"));
        }
        policy.cold_start.buffer = buffer;
    }
    if let Some(canary) = get::<u64>(config, "canary_version")? {
        let percent = get::<u32>(config, "canary_traffic_percent")?.unwrap_or(0);
        if percent > 100 {
            return Err(format!("parameter 'canary_traffic_percent': {percent} is above 100"));
        }
        policy.canary = Some(CanaryConfig { canary, percent, stable: get(config, "stable_version")? });
    }
    let rule = RollbackRule {
        max_error_rate_increase: get(config, "rollback_max_error_rate_increase")?,
        max_p99_ratio: get(config, "rollback_max_p99_ratio")?,
        window_s: get(config, "rollback_window_s")?.unwrap_or(RollbackRule::default().window_s).max(1),
        min_requests: get(config, "rollback_min_requests")?.unwrap_or(RollbackRule::default().min_requests),
    };
    if rule.max_error_rate_increase.is_some() || rule.max_p99_ratio.is_some() {
        policy.rollback = Some(rule);
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use quiver_core::proto::ModelParameter;

    use super::*;

    fn config(params: &[(&str, &str)]) -> ModelConfig {
        ModelConfig {
            parameters: params.iter().map(|(k, v)| (k.to_string(), ModelParameter { string_value: v.to_string() })).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_keep_models_loaded() {
        let p = model_policy(&config(&[])).unwrap();
        assert_eq!(p, ModelPolicy::default());
        assert_eq!(model_policy(&config(&[("min_instances", "1")])).unwrap().idle, None);
    }

    #[test]
    fn reads_every_key() {
        let p = model_policy(&config(&[
            ("min_instances", "0"),
            ("idle_grace_period_s", "2.5"),
            ("cold_start_timeout_s", "10"),
            ("cold_start_buffer", "64"),
            ("canary_version", "3"),
            ("canary_traffic_percent", "20"),
            ("stable_version", "2"),
            ("rollback_max_p99_ratio", "1.5"),
            ("rollback_window_s", "5"),
        ]))
        .unwrap();
        assert_eq!(p.idle, Some(IdlePolicy { grace: Duration::from_millis(2500) }));
        assert_eq!(p.cold_start, ColdStart { buffer: 64, timeout: Duration::from_secs(10) });
        assert_eq!(p.canary, Some(CanaryConfig { canary: 3, percent: 20, stable: Some(2) }));
        let rule = p.rollback.unwrap();
        assert_eq!((rule.max_p99_ratio, rule.max_error_rate_increase, rule.window_s, rule.min_requests), (Some(1.5), None, 5, 20));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v) in [
            ("min_instances", "-1"),
            ("idle_grace_period_s", "soon"),
            ("cold_start_buffer", "0"),
            ("canary_traffic_percent", "50"), // alone it is ignored...
            ("rollback_max_p99_ratio", "x"),
        ] {
            let result = model_policy(&config(&[(k, v)]));
            if k == "canary_traffic_percent" {
                assert!(result.is_ok());
            } else {
                assert!(result.unwrap_err().contains(k), "{k}");
            }
        }
        let err = model_policy(&config(&[("canary_version", "2"), ("canary_traffic_percent", "101")])).unwrap_err();
        assert!(err.contains("above 100"));
        assert!(model_policy(&config(&[("min_instances", "0"), ("idle_grace_period_s", "-3")])).is_err());
    }
}
