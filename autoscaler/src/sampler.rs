//! Feeding the KPA from a live server: requests in flight sampled several times a second and
//! averaged per second (or the request counter's growth, for the rps metric), then one decision
//! a second. Both `quiver serve` (a model's scale-to-zero settings) and `quiver up` (an
//! InferenceService's autoscaling) drive replicas through it, so there is one autoscaling design.

use crate::{Autoscaler, AutoscalerConfig, Decision, ScaleMetric};

/// A KPA with the samples of the second in progress.
#[derive(Debug, Clone)]
pub struct LoadSampler {
    kpa: Autoscaler,
    /// Concurrency samples of the current second: sum and count.
    samples: (f64, u32),
    /// The request counter at the last decision.
    last_requests: Option<u64>,
}

impl LoadSampler {
    /// A KPA with `config`, created at second `now_s`.
    pub fn new(config: AutoscalerConfig, now_s: u64) -> LoadSampler {
        LoadSampler { kpa: Autoscaler::new(config, now_s), samples: (0.0, 0), last_requests: None }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &AutoscalerConfig {
        self.kpa.config()
    }

    /// Records the requests in flight now (sample several times a second).
    pub fn sample(&mut self, in_flight: u32) {
        self.samples.0 += f64::from(in_flight);
        self.samples.1 += 1;
    }

    /// Closes second `now_s` and decides the replicas, given those ready. `requests_total` is
    /// the service's request counter (requests per second are its growth between decisions).
    /// Requests that came and went between samples still count: a second with requests but
    /// no sampled concurrency is recorded as the activator's report of one (Knative's poke),
    /// so a model woken from zero is not released again at once.
    pub fn decide(&mut self, now_s: u64, requests_total: u64, ready: u32) -> Decision {
        let requested = self.last_requests.is_some_and(|last| requests_total > last);
        let value = match self.kpa.config().metric {
            ScaleMetric::Concurrency => {
                let (sum, n) = self.samples;
                if n == 0 {
                    0.0
                } else {
                    sum / f64::from(n)
                }
            }
            ScaleMetric::Rps => self.last_requests.map_or(0.0, |last| requests_total.saturating_sub(last) as f64),
        };
        self.samples = (0.0, 0);
        self.last_requests = Some(requests_total);
        if requested && value <= 0.0 && self.kpa.config().metric == ScaleMetric::Concurrency {
            self.kpa.activator_signal(now_s);
        } else {
            self.kpa.record(now_s, value);
        }
        self.kpa.decide(now_s, ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zero_after(window_s: u64) -> AutoscalerConfig {
        AutoscalerConfig {
            stable_window_s: window_s,
            panic_window_s: 1,
            scale_to_zero_grace_period_s: 0,
            scale_to_zero_pod_retention_period_s: 0,
            ..AutoscalerConfig::default()
        }
    }

    #[test]
    fn light_traffic_keeps_it_up_and_silence_takes_it_to_zero() {
        let mut s = LoadSampler::new(zero_after(1), 0);
        let mut requests = 0;
        let mut ready = 1;
        // One short request a second, never caught in flight by a sample: it stays up.
        for t in 1..=10 {
            requests += 1;
            ready = s.decide(t, requests, ready).desired;
            assert_eq!(ready, 1, "second {t}");
        }
        // Silence: zero within a few seconds of a 1 s window.
        let zero_at = (11..=20).find(|&t| {
            ready = s.decide(t, requests, ready).desired;
            ready == 0
        });
        assert!(zero_at.is_some_and(|t| t <= 14), "{zero_at:?}");
    }

    #[test]
    fn concurrency_is_averaged_over_the_second() {
        let mut s = LoadSampler::new(AutoscalerConfig { target: 1.0, ..zero_after(6) }, 0);
        for _ in 0..10 {
            s.sample(3);
        }
        assert_eq!(s.decide(1, 0, 1).desired, 3);
    }
}
