//! The open loop's schedule: when each request is *meant* to be sent.
//!
//! A request's latency is measured from its intended send time, not from when a connection
//! became free to send it, so a server that stalls is charged for every request it held back
//! (no coordinated omission). The schedule is pure: offsets from the start of the load, made
//! from the rate, the distribution and a seed.

use std::time::Duration;

use rand::{rngs::SmallRng, SeedableRng};
use rand_distr::{Distribution as _, Exp};

/// How request arrivals are spaced in request-rate mode (perf_analyzer's
/// `--request-distribution`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Evenly spaced: one request every 1/rate seconds.
    Constant,
    /// A Poisson process: exponentially distributed gaps with mean 1/rate.
    Poisson,
}

/// Seed of the Poisson gaps: fixed, so a run's schedule is reproducible.
pub const SCHEDULE_SEED: u64 = 0x5155_4956_4552_5253;

/// Intended send times, as offsets from the start of the load, in order.
#[derive(Debug, Clone)]
pub struct Schedule {
    gaps: Gaps,
    next: Duration,
}

#[derive(Debug, Clone)]
enum Gaps {
    Constant(f64),
    Poisson(Exp<f64>, SmallRng),
}

impl Schedule {
    /// A schedule of `rate` requests per second (which must be positive and finite).
    pub fn new(rate: f64, distribution: Distribution, seed: u64) -> Result<Schedule, String> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(format!("request rate {rate} is not a positive number"));
        }
        let gaps = match distribution {
            Distribution::Constant => Gaps::Constant(1.0 / rate),
            Distribution::Poisson => Gaps::Poisson(Exp::new(rate).map_err(|e| format!("rate {rate}: {e}"))?, SmallRng::seed_from_u64(seed)),
        };
        Ok(Schedule { gaps, next: Duration::ZERO })
    }

    fn gap(&mut self) -> Duration {
        let secs = match &mut self.gaps {
            Gaps::Constant(gap) => *gap,
            Gaps::Poisson(exp, rng) => exp.sample(rng),
        };
        // A gap too long to represent (a rate near zero) parks the schedule far in the future.
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    /// The next intended send time. The first request is due at once.
    fn next(&mut self) -> Option<Duration> {
        let due = self.next;
        let gap = self.gap();
        self.next = self.next.saturating_add(gap);
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let times: Vec<Duration> = Schedule::new(1000.0, Distribution::Constant, 1).unwrap().take(5).collect();
        let micros: Vec<u128> = times.iter().map(Duration::as_micros).collect();
        assert_eq!(micros, [0, 1000, 2000, 3000, 4000]);
        // No drift: the 10,000th request is due at 10 s within a microsecond.
        let last = Schedule::new(1000.0, Distribution::Constant, 1).unwrap().nth(10_000).unwrap();
        assert!((last.as_secs_f64() - 10.0).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn poisson_has_the_rate_and_exponential_gaps() {
        let rate = 500.0;
        let times: Vec<f64> = Schedule::new(rate, Distribution::Poisson, 7).unwrap().take(50_001).map(|d| d.as_secs_f64()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "times ascend");
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean * rate - 1.0).abs() < 0.02, "mean gap {mean}");
        // Exponential: the standard deviation equals the mean, and P(gap > mean) = 1/e.
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((var.sqrt() / mean - 1.0).abs() < 0.03, "cv {}", var.sqrt() / mean);
        let above = gaps.iter().filter(|&&g| g > mean).count() as f64 / gaps.len() as f64;
        assert!((above - (-1.0f64).exp()).abs() < 0.01, "{above}");
        // Seeded: the same seed gives the same schedule, another seed another.
        let again: Vec<f64> = Schedule::new(rate, Distribution::Poisson, 7).unwrap().take(100).map(|d| d.as_secs_f64()).collect();
        assert_eq!(again, times[..100]);
        let other: Vec<f64> = Schedule::new(rate, Distribution::Poisson, 8).unwrap().take(100).map(|d| d.as_secs_f64()).collect();
        assert_ne!(other, times[..100]);
    }

    #[test]
    fn bad_rates_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Schedule::new(rate, Distribution::Constant, 1).is_err(), "{rate}");
            assert!(Schedule::new(rate, Distribution::Poisson, 1).is_err(), "{rate}");
        }
        // A tiny rate is valid; its second request is far away but representable.
        let mut s = Schedule::new(1e-300, Distribution::Constant, 1).unwrap();
        assert_eq!(s.next(), Some(Duration::ZERO));
        assert!(s.next().unwrap() > Duration::from_secs(1 << 40));
    }
}
