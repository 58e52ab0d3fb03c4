//! Precedence, KServe mapping and validation of the resolved configuration.

use super::*;
use crate::settings::Settings;

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
