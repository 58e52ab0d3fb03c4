//! Scale to zero for `quiver serve`, on the same KPA as the control plane's InferenceServices:
//! a model's `min_instances: 0` and `idle_grace_period_s` become a KPA with no lower bound and
//! a stable window of the grace period (whole seconds, at least 1), so a model with no request
//! for that long is released, and the next request wakes it through the activator. The
//! autoscaler crate decides; the registry carries it out.

use std::{collections::HashMap, sync::Arc, time::Instant};

use quiver_autoscaler::{AutoscalerConfig, LoadSampler};
use tracing::warn;

use crate::registry::ModelRegistry;

/// The KPA of a model whose config lets it scale to zero.
fn config(grace_s: u64) -> AutoscalerConfig {
    AutoscalerConfig {
        stable_window_s: grace_s.max(1),
        panic_window_s: 1,
        min_scale: 0,
        // The runtime's activator is always in front of a released model: nothing to wait for
        // once the window has seen no request.
        scale_to_zero_grace_period_s: 0,
        scale_to_zero_pod_retention_period_s: 0,
        ..AutoscalerConfig::default()
    }
}

/// One KPA per model with a scale-to-zero policy, sampled by [`IdleAutoscaler::sample`] and
/// deciding once a second in [`IdleAutoscaler::decide`].
#[derive(Debug)]
pub(crate) struct IdleAutoscaler {
    registry: Arc<ModelRegistry>,
    models: HashMap<String, (u64, LoadSampler)>,
    started: Instant,
}

impl IdleAutoscaler {
    pub(crate) fn new(registry: Arc<ModelRegistry>) -> IdleAutoscaler {
        IdleAutoscaler { registry, models: HashMap::new(), started: Instant::now() }
    }

    /// Samples the requests in flight of every model that may scale to zero (and starts or
    /// drops KPAs as models come, go or change their grace period).
    pub(crate) fn sample(&mut self) {
        let now_s = self.started.elapsed().as_secs();
        let policies = self.registry.scale_to_zero_policies();
        self.models.retain(|name, (grace, _)| policies.iter().any(|(n, g)| n == name && g.as_secs() == *grace));
        for (name, grace) in policies {
            let in_flight = self.registry.in_flight(&name);
            let (_, sampler) =
                self.models.entry(name).or_insert_with(|| (grace.as_secs(), LoadSampler::new(config(grace.as_secs()), now_s)));
            sampler.sample(in_flight);
        }
    }

    /// One decision per model; zero replicas releases the model.
    pub(crate) async fn decide(&mut self) {
        let now_s = self.started.elapsed().as_secs();
        for (name, (_, sampler)) in &mut self.models {
            let ready = u32::from(self.registry.is_loaded(name));
            let decision = sampler.decide(now_s, self.registry.requests(name), ready);
            if decision.desired == 0 && ready > 0 {
                if let Err(e) = self.registry.scale(name, 0).await {
                    warn!(model = %name, "scaling to zero: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_period_is_the_window() {
        assert_eq!(config(60).stable_window_s, 60);
        assert_eq!(config(0).stable_window_s, 1, "whole seconds, at least one");
        assert_eq!(config(5).min_scale, 0);
    }
}
