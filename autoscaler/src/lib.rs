//! Knative-KPA-style autoscaling as a pure library: time and samples in, decisions out. Its
//! trace simulator (`quiver autoscaler simulate`, CSV and plots) is the
//! `quiver-autoscaler-simulator` crate, so nothing that only decides links plotting.
//!
//! The crate decides how many replicas (or model instances) a service needs, zero included,
//! the way Knative Serving's KPA does: the same windowed averages, panic mode, rate limits,
//! bounds, initial scale, scale-down delay, scale-to-zero rules and activator handling, with
//! Knative's defaults and annotation names, and KServe's `minReplicas`/`maxReplicas`/
//! `scaleTarget`/`scaleMetric` fields.
//!
//! - [`settings`]: the configuration as written (a flat map of annotation names, ConfigMap keys
//!   and KServe fields), and value parsing.
//! - [`config`]: Knative's defaults, precedence and validation, resolved into an
//!   [`AutoscalerConfig`].
//! - [`window`]: per-second bucketed windows, the simple average Knative uses by default.
//! - [`kpa`]: the [`Autoscaler`]: Knative's decider plus the KPA reconciler's scaler and
//!   status, driven by [`Autoscaler::record`] and [`Autoscaler::decide`].
//!
//! Time is a value (whole seconds since any epoch) passed to every call; nothing reads a
//! clock, so behaviour is reproducible second by second.
//!
//! # Where this differs from Knative, and why
//!
//! - Decisions happen when [`Autoscaler::decide`] is called. The simulator calls it every
//!   second; Knative ticks every 2 s, and at once on an activator poke.
//! - The clock has one-second resolution, so durations must be whole seconds. Knative
//!   requires that for windows and delays; here the grace and retention periods need it too.
//! - Only the linear (simple average) aggregation, Knative's default, is implemented;
//!   `metric-aggregation-algorithm: weightedExponential` is refused with an error.
//! - The revision is assumed reachable (routed to). The activator probe succeeds as soon as the
//!   activator is in the path, since network programming delay is not modelled. Activation
//!   never times out (Knative gives up after the progress deadline), because simulated
//!   replicas always start.
//! - A KServe field together with the annotation it writes (`scaleTarget` with `target`,
//!   `minReplicas` with `min-scale`, ...) is refused. KServe would silently overwrite the
//!   annotation. An `initial-scale` above `max-scale` is refused too, because Knative would
//!   run above max until the first decision.
//! - `activator-capacity` and `pod-autoscaler-class` are accepted and validated, but no
//!   decision here depends on them.
//!
//! ```
//! use quiver_autoscaler::{Autoscaler, AutoscalerConfig, Settings};
//!
//! let mut settings = Settings::new();
//! settings.set("autoscaling.knative.dev/target", "10").unwrap();
//! let mut kpa = Autoscaler::new(AutoscalerConfig::from_settings(&settings).unwrap(), 0);
//! kpa.record(0, 35.0); // 35 requests in flight during second 0
//! let decision = kpa.decide(0, 1); // one replica ready
//! assert_eq!(decision.desired, 5); // 35 / (10 × 70%)
//! assert!(decision.panic); // 5 wanted for 1 ready crosses the 200% panic threshold
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod kpa;
pub mod sampler;
pub mod settings;
pub mod window;

pub use config::{AutoscalerConfig, ConfigError, ScaleMetric, TargetBurstCapacity};
pub use kpa::{Activity, Autoscaler, Decision};
pub use sampler::LoadSampler;
pub use settings::Settings;
