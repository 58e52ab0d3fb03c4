//! One autoscaling design for both modes: the autoscaler crate's KPA decides each
//! InferenceService's replicas from the load it sees; in embedded mode a replica is an active
//! instance of the model, and zero replicas is the runtime's scale to zero (the next request
//! wakes it through the runtime's activator, buffered, as Knative's activator does).

use quiver_autoscaler::{AutoscalerConfig, Decision, LoadSampler, Settings};

use crate::resources::predictor::{self, Scaling};

/// A service's KPA (the autoscaler crate's [`LoadSampler`]) and the spec it follows.
#[derive(Debug)]
pub(crate) struct ServiceScaler {
    sampler: LoadSampler,
    /// The scaling spec it was built from (rebuilt when the spec changes).
    scaling: Scaling,
}

/// The KPA settings of a service: the cluster-wide `config-autoscaler` keys `quiver up` was
/// given, then the service's Knative annotations and KServe fields.
pub(crate) fn settings(cluster: &Settings, scaling: &Scaling) -> Result<Settings, String> {
    let mut settings = cluster.clone();
    let mut set = |key: &str, value: String| settings.set(key, &value).map_err(|e| e.to_string());
    for (key, value) in &scaling.annotations {
        // Annotations the KPA does not read (none today) are not an error here: validation
        // has already said what is unsupported.
        if settings_knows(key) {
            set(key, value.clone())?;
        }
    }
    set("minReplicas", scaling.min_replicas.to_string())?;
    if scaling.max_replicas > 0 {
        set("maxReplicas", scaling.max_replicas.to_string())?;
    }
    if let Some(target) = scaling.target {
        set("scaleTarget", target.to_string())?;
    }
    let metric = match scaling.metric {
        predictor::ScaleMetric::Concurrency => "concurrency",
        predictor::ScaleMetric::Rps => "rps",
    };
    set("scaleMetric", metric.to_string())?;
    if scaling.container_concurrency > 0 {
        set("containerConcurrency", scaling.container_concurrency.to_string())?;
    }
    Ok(settings)
}

fn settings_knows(key: &str) -> bool {
    Settings::new().set(key, "0").is_ok()
}

impl ServiceScaler {
    /// A KPA for `scaling`, created at second `now_s`.
    pub(crate) fn new(cluster: &Settings, scaling: &Scaling, now_s: u64) -> Result<ServiceScaler, String> {
        let config = AutoscalerConfig::from_settings(&settings(cluster, scaling)?).map_err(|e| e.to_string())?;
        Ok(ServiceScaler { sampler: LoadSampler::new(config, now_s), scaling: scaling.clone() })
    }

    /// Whether it was built from `scaling`.
    pub(crate) fn follows(&self, scaling: &Scaling) -> bool {
        self.scaling == *scaling
    }

    /// Records the requests in flight now (sampled several times a second).
    pub(crate) fn sample(&mut self, in_flight: u32) {
        self.sampler.sample(in_flight);
    }

    /// Closes second `now_s` and decides the replicas, given those ready.
    pub(crate) fn decide(&mut self, now_s: u64, requests_total: u64, ready: u32) -> Decision {
        self.sampler.decide(now_s, requests_total, ready)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn scaling(min: u32, annotations: &[(&str, &str)]) -> Scaling {
        Scaling {
            min_replicas: min,
            max_replicas: 3,
            target: Some(1.0),
            metric: predictor::ScaleMetric::Concurrency,
            container_concurrency: 0,
            annotations: annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn load_scales_up_within_bounds_and_silence_scales_to_zero() {
        let mut cluster = Settings::new();
        cluster.set("scale-to-zero-grace-period", "1s").unwrap();
        let spec = scaling(0, &[("autoscaling.knative.dev/window", "6s")]);
        let mut s = ServiceScaler::new(&cluster, &spec, 0).unwrap();
        assert!(s.follows(&spec));
        let mut ready = 1;
        let mut desired = 0;
        for t in 1..=10 {
            for _ in 0..10 {
                s.sample(5);
            }
            desired = s.decide(t, 0, ready).desired;
            ready = desired;
        }
        assert_eq!(desired, 3, "5 in flight at target 1, capped at maxReplicas 3");
        for t in 11..=60 {
            desired = s.decide(t, 0, ready).desired;
            ready = desired;
            if desired == 0 {
                break;
            }
        }
        assert_eq!(desired, 0, "no load for longer than the window and the grace: zero");
    }

    #[test]
    fn min_replicas_one_never_goes_to_zero() {
        let spec = scaling(1, &[("autoscaling.knative.dev/window", "6s")]);
        let mut s = ServiceScaler::new(&Settings::new(), &spec, 0).unwrap();
        let decisions: Vec<u32> = (1..=200).map(|t| s.decide(t, 0, 1).desired).collect();
        assert!(decisions.iter().all(|&d| d == 1), "{decisions:?}");
    }

    #[test]
    fn rps_counts_requests_per_second() {
        let mut spec = scaling(1, &[]);
        spec.metric = predictor::ScaleMetric::Rps;
        spec.target = Some(10.0);
        let mut s = ServiceScaler::new(&Settings::new(), &spec, 0).unwrap();
        let mut total = 0;
        let mut desired = 0;
        for t in 1..=70 {
            total += 25;
            desired = s.decide(t, total, desired.max(1)).desired;
        }
        assert_eq!(desired, 3, "25 rps at 10 per replica");
    }

    #[test]
    fn a_bad_annotation_is_an_error() {
        let spec = scaling(1, &[("autoscaling.knative.dev/window", "forever")]);
        assert!(ServiceScaler::new(&Settings::new(), &spec, 0).unwrap_err().contains("window"));
    }
}
