//! The KPA: Knative's decider (pkg/autoscaler/scaling/autoscaler.go `Scale()`) and the part of
//! the KPA reconciler that turns its recommendation into a replica count
//! (pkg/reconciler/autoscaling/kpa: min/max bounds, initial scale, scale-to-zero handling,
//! the Active/Activating/Inactive status and whether the activator fronts the service).
//!
//! Time is a value: every call takes the current second. Nothing here reads a clock, so a
//! test or the simulator drives it second by second.

use serde::Serialize;

use crate::{
    config::{AutoscalerConfig, TargetBurstCapacity},
    window::{BucketAverage, WindowMax},
};

/// The service's Active condition, as the KPA tracks it on the PodAutoscaler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activity {
    /// Replicas are wanted but fewer than needed are ready (requests wait at the activator).
    Activating,
    /// Enough replicas are ready.
    Active,
    /// No traffic: the service is at, or on its way to, zero replicas.
    Inactive,
}

/// One decision: what the KPA would write to the deployment now, and why.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// The second the decision was made at.
    pub time_s: u64,
    /// Replicas the service should have now (after bounds and scale-to-zero handling).
    pub desired: u32,
    /// The decider's recommendation before bounds; `None` while it has no data.
    pub recommended: Option<u32>,
    /// Whether the decider is in panic mode.
    pub panic: bool,
    /// The metric's average over the stable window.
    pub stable_average: f64,
    /// The metric's average over the panic window.
    pub panic_average: f64,
    /// Ready replicas × per-replica total − panic average − target burst capacity (−1 when
    /// the burst capacity is unlimited, 0 when it is 0); negative keeps the activator in the path.
    pub excess_burst_capacity: f64,
    /// Whether the activator is in the request path (buffering, and reporting load).
    pub activator_in_path: bool,
    /// The service's Active condition after this decision.
    pub activity: Activity,
}

/// The decider's last valid result (Knative keeps it when a tick has no data).
#[derive(Debug, Clone, Copy)]
struct Recommendation {
    desired: Option<u32>,
    excess_burst_capacity: f64,
}

/// Where the scaler's output stands: `want` is reported as the desired scale (`None` is
/// Knative's −1, unknown) and `apply` says whether it is written to the deployment.
struct ScalerOutcome {
    want: Option<u32>,
    apply: bool,
}

/// A Knative KPA for one service: feed it per-second metric samples with [`Autoscaler::record`]
/// and ask it for a replica count with [`Autoscaler::decide`].
#[derive(Debug, Clone)]
pub struct Autoscaler {
    config: AutoscalerConfig,
    stable: BucketAverage,
    panic: BucketAverage,
    scale_down_delay: Option<WindowMax>,
    /// When the panic window last crossed the threshold; `Some` while in panic mode.
    panic_since: Option<u64>,
    /// The most replicas asked for during this panic; panic never asks for fewer.
    max_panic_pods: u32,
    recommendation: Recommendation,
    stable_average: f64,
    panic_average: f64,
    activity: Activity,
    /// When `activity` last changed.
    activity_since: u64,
    /// Whether the service has once reached its initial scale (until then, initial scale is a floor).
    scale_target_initialized: bool,
    activator_in_path: bool,
    /// When the activator last entered the path.
    activator_in_path_since: u64,
    /// The replica count last written to the deployment.
    applied_scale: u32,
    last_decision_s: u64,
}

impl Autoscaler {
    /// A service created at second `created_s`: its deployment asks for the initial scale, it
    /// is Activating, and the activator fronts it (Knative starts the SKS in proxy mode).
    pub fn new(config: AutoscalerConfig, created_s: u64) -> Self {
        // Knative's starting estimate: whether the initial scale alone covers the burst capacity.
        let initial_capacity = f64::from(config.initial_scale) * config.total_per_replica;
        let excess_burst_capacity = excess_burst_capacity(config.target_burst_capacity, initial_capacity, 0.0);
        Self {
            stable: BucketAverage::new(config.stable_window_s),
            panic: BucketAverage::new(config.panic_window_s),
            scale_down_delay: (config.scale_down_delay_s > 0).then(|| WindowMax::new(config.scale_down_delay_s)),
            panic_since: None,
            max_panic_pods: 0,
            recommendation: Recommendation { desired: None, excess_burst_capacity },
            stable_average: 0.0,
            panic_average: 0.0,
            activity: Activity::Activating,
            activity_since: created_s,
            scale_target_initialized: false,
            activator_in_path: true,
            activator_in_path_since: created_s,
            applied_scale: config.initial_scale,
            last_decision_s: created_s,
            config,
        }
    }

    /// The configuration this autoscaler runs with.
    pub fn config(&self) -> &AutoscalerConfig {
        &self.config
    }

    /// The replica count last decided (the initial scale before the first decision).
    pub fn desired(&self) -> u32 {
        self.applied_scale
    }

    /// Records the service's load in second `time_s`, in the unit of the configured metric
    /// (in-flight requests, or requests per second). Call it once per source per second:
    /// values for the same second add up, as the pods' and the activator's reports do in
    /// Knative. Negative or non-finite values count as 0.
    pub fn record(&mut self, time_s: u64, value: f64) {
        let value = if value.is_finite() { value.max(0.0) } else { 0.0 };
        self.stable.record(time_s, value);
        self.panic.record(time_s, value);
    }

    /// The activator's immediate report when a request reaches it for this service: a
    /// concurrency (and request count) of 1 at `time_s`, so a scaled-to-zero service starts
    /// scaling at once instead of at the activator's next periodic report. Returns whether a
    /// decision is due now (Knative's "poke": the last recommendation was zero replicas).
    pub fn activator_signal(&mut self, time_s: u64) -> bool {
        self.record(time_s, 1.0);
        self.recommendation.desired == Some(0)
    }

    /// Decides the replica count at second `now_s`, given how many replicas are ready. A
    /// `now_s` earlier than a previous decision's is taken as that decision's second.
    pub fn decide(&mut self, now_s: u64, ready: u32) -> Decision {
        let now = now_s.max(self.last_decision_s);
        self.last_decision_s = now;
        self.recommend(now, ready);
        let outcome = self.scale(now);
        if outcome.apply {
            if let Some(want) = outcome.want {
                self.applied_scale = want;
            }
        }
        self.update_activator_path(now, outcome.want);
        self.update_activity(now, outcome.want, ready);
        Decision {
            time_s: now,
            desired: self.applied_scale,
            recommended: self.recommendation.desired,
            panic: self.panic_since.is_some(),
            stable_average: self.stable_average,
            panic_average: self.panic_average,
            excess_burst_capacity: self.recommendation.excess_burst_capacity,
            activator_in_path: self.activator_in_path,
            activity: self.activity,
        }
    }

    /// Knative's `autoscaler.Scale()`: the recommendation from the windowed averages, with
    /// panic mode, rate limits, activation scale and the scale-down delay.
    fn recommend(&mut self, now: u64, ready: u32) {
        if self.stable.is_empty(now) {
            // No data: Knative's decider returns an invalid result and keeps its last one.
            return;
        }
        let c = &self.config;
        // Rates and the panic ratio are relative to at least one replica, so scaling from
        // zero is possible.
        let ready_for_rates = f64::from(ready.max(1));
        let stable = self.stable.average(now);
        let panic = self.panic.average(now);
        self.stable_average = stable;
        self.panic_average = panic;

        // At least one replica more than the ready ones when any are needed, however slow
        // the rate: ceil for up, floor for down.
        let max_scale_up = (c.max_scale_up_rate * ready_for_rates).ceil();
        let max_scale_down = (ready_for_rates / c.max_scale_down_rate).floor();
        let stable_pods = (stable / c.target).ceil();
        let panic_pods = (panic / c.target).ceil();
        // `as` saturates: an absurd load asks for u32::MAX replicas rather than wrapping.
        let mut desired_stable = stable_pods.max(max_scale_down).min(max_scale_up) as u32;
        let mut desired_panic = panic_pods.max(max_scale_down).min(max_scale_up) as u32;
        if c.activation_scale > 1 {
            if stable_pods > 0.0 {
                desired_stable = desired_stable.max(c.activation_scale);
            }
            if panic_pods > 0.0 {
                desired_panic = desired_panic.max(c.activation_scale);
            }
        }

        let over_panic_threshold = panic_pods / ready_for_rates >= c.panic_threshold;
        match self.panic_since {
            _ if over_panic_threshold => self.panic_since = Some(now),
            // Leave panic once a whole stable window has passed without a new trigger, so the
            // surge has made its way into the stable average.
            Some(since) if since.saturating_add(c.stable_window_s) < now => {
                self.panic_since = None;
                self.max_panic_pods = 0;
            }
            _ => {}
        }

        let mut desired = desired_stable;
        if self.panic_since.is_some() {
            // The stable window can ask for more than the panic one; provision for both, and
            // never scale down while panicking.
            desired = desired.max(desired_panic);
            self.max_panic_pods = self.max_panic_pods.max(desired);
            desired = self.max_panic_pods;
        }
        if let Some(delay) = &mut self.scale_down_delay {
            delay.record(now, desired);
            desired = delay.current();
        }

        // Based on the panic average, so a short burst takes the activator into the path.
        let capacity = f64::from(ready) * c.total_per_replica;
        let excess_burst_capacity = excess_burst_capacity(c.target_burst_capacity, capacity, panic);
        self.recommendation = Recommendation { desired: Some(desired), excess_burst_capacity };
    }

    /// The KPA reconciler's `scaler.scale()`: bounds, initial scale, and scale-to-zero.
    fn scale(&self, now: u64) -> ScalerOutcome {
        let c = &self.config;
        let recommended = self.recommendation.desired;
        if recommended.is_none() && self.activity != Activity::Activating {
            return ScalerOutcome { want: None, apply: false };
        }
        let mut min = c.min_scale;
        if c.initial_scale > 1 && !self.scale_target_initialized {
            min = min.max(c.initial_scale);
        }
        let bounded = match recommended {
            // Knative bounds its −1 ("unknown") too, which lands on min.
            None => min,
            Some(desired) => desired.max(min).min(c.max_scale.unwrap_or(u32::MAX)),
        };
        self.handle_scale_to_zero(now, bounded)
    }

    /// pkg/reconciler/autoscaling/kpa/scaler.go `handleScaleToZero`. The last replica goes only
    /// when the service has been Active for a stable window (so its stable average really is
    /// zero), then Inactive, and the activator has fronted it for the grace period (or it has
    /// been Inactive for max(grace, pod retention)).
    fn handle_scale_to_zero(&self, now: u64, desired: u32) -> ScalerOutcome {
        let c = &self.config;
        let apply = |want| ScalerOutcome { want: Some(want), apply: true };
        let hold = |want| ScalerOutcome { want, apply: false };
        if desired != 0 {
            return apply(desired);
        }
        if !c.enable_scale_to_zero {
            return apply(1);
        }
        let in_state_for = now - self.activity_since;
        match self.activity {
            // Still starting: decide once it is up. (Knative also gives up after the progress
            // deadline; replicas here always start, so that timeout is not modelled.)
            Activity::Activating => hold(None),
            // Report zero, which marks the service Inactive and puts the activator in front.
            Activity::Active if in_state_for >= c.stable_window_s => hold(Some(0)),
            Activity::Active => apply(1),
            Activity::Inactive => {
                // Knative probes the activator unless the burst capacity is unlimited (then it
                // is always in the path); the probe succeeds once the activator is in the path.
                let activator_in_path = c.target_burst_capacity == TargetBurstCapacity::Unlimited || self.activator_in_path;
                if !activator_in_path {
                    return hold(Some(0));
                }
                let retention = c.scale_to_zero_pod_retention_period_s;
                if in_state_for >= c.scale_to_zero_grace_period_s.max(retention) {
                    return apply(0);
                }
                if retention > 0 && in_state_for < retention {
                    return hold(Some(0));
                }
                // The grace period is for the activator to get into the path; if it has been
                // there that long already, the last replica can go now.
                if now - self.activator_in_path_since >= c.scale_to_zero_grace_period_s {
                    return apply(0);
                }
                hold(Some(0))
            }
        }
    }

    /// The KPA puts the activator in the path (SKS proxy mode) unless replicas are wanted and
    /// the excess burst capacity is non-negative.
    fn update_activator_path(&mut self, now: u64, want: Option<u32>) {
        let serve = want.is_some_and(|w| w > 0) && self.recommendation.excess_burst_capacity >= 0.0;
        let in_path = !serve;
        if in_path && !self.activator_in_path {
            self.activator_in_path_since = now;
        }
        self.activator_in_path = in_path;
    }

    /// pkg/reconciler/autoscaling/kpa `computeActiveCondition`.
    fn update_activity(&mut self, now: u64, want: Option<u32>, ready: u32) {
        let c = &self.config;
        let min_ready = if self.scale_target_initialized { c.min_scale.max(1) } else { c.min_scale.max(c.initial_scale) };
        if ready >= min_ready {
            self.scale_target_initialized = true;
        }
        let wants_replicas = want.is_some_and(|w| w > 0);
        let next = if want == Some(0) || min_ready == 0 {
            Activity::Inactive
        } else if ready < min_ready {
            if wants_replicas || self.activity != Activity::Inactive {
                Activity::Activating
            } else {
                Activity::Inactive
            }
        } else if wants_replicas || self.activity != Activity::Inactive {
            Activity::Active
        } else {
            self.activity
        };
        if next != self.activity {
            self.activity = next;
            self.activity_since = now;
        }
    }
}

/// Capacity left after the in-flight load and the burst headroom: Knative's
/// `floor(ready × total − target burst capacity − panic average)`, fixed at −1 for an unlimited
/// burst capacity (the activator stays) and 0 for none (it never has to).
fn excess_burst_capacity(tbc: TargetBurstCapacity, capacity: f64, in_flight: f64) -> f64 {
    match tbc {
        TargetBurstCapacity::Unlimited => -1.0,
        TargetBurstCapacity::Requests(0.0) => 0.0,
        TargetBurstCapacity::Requests(tbc) => (capacity - tbc - in_flight).floor(),
    }
}
