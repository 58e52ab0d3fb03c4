//! Knative's `config-autoscaler` defaults (pkg/autoscaler/config).

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
