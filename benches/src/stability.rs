//! perf_analyzer's stability rule: a level is measured in consecutive windows until the last
//! [`STABLE_WINDOWS`] agree, or the trials run out.
//!
//! Windows agree when each one's throughput and each one's mean latency lie within
//! `percentage` % of the average over those windows. The level then reports the agreeing
//! windows together.

/// How many consecutive windows must agree.
pub const STABLE_WINDOWS: usize = 3;

/// What one measurement window saw, for the stability check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFigures {
    /// Successful inferences per second.
    pub throughput: f64,
    /// Mean latency of the successful requests, in µs (0 when there were none).
    pub mean_latency_us: f64,
}

/// The stability check over the windows measured so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stability {
    /// Largest allowed deviation from the average, in percent.
    pub percentage: f64,
}

impl Stability {
    /// Whether the last [`STABLE_WINDOWS`] windows agree (false while there are fewer).
    pub fn is_stable(&self, windows: &[WindowFigures]) -> bool {
        if windows.len() < STABLE_WINDOWS {
            return false;
        }
        let last = &windows[windows.len() - STABLE_WINDOWS..];
        self.within(last.iter().map(|w| w.throughput)) && self.within(last.iter().map(|w| w.mean_latency_us))
    }

    /// Whether every value is within the percentage of their average.
    fn within(&self, values: impl Iterator<Item = f64> + Clone) -> bool {
        let n = values.clone().count() as f64;
        let average = values.clone().sum::<f64>() / n;
        let allowed = average.abs() * self.percentage / 100.0;
        values.into_iter().all(|v| v.is_finite() && (v - average).abs() <= allowed)
    }
}

/// Which windows a level reports: the last [`STABLE_WINDOWS`] of those measured (all of them
/// when there are fewer), as a range of indices.
pub fn reported_windows(measured: usize) -> std::ops::Range<usize> {
    measured.saturating_sub(STABLE_WINDOWS)..measured
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(throughput: f64, mean_latency_us: f64) -> WindowFigures {
        WindowFigures { throughput, mean_latency_us }
    }

    #[test]
    fn needs_three_agreeing_windows() {
        let s = Stability { percentage: 10.0 };
        assert!(!s.is_stable(&[]));
        assert!(!s.is_stable(&[w(100.0, 10.0), w(100.0, 10.0)]));
        assert!(s.is_stable(&[w(100.0, 10.0), w(100.0, 10.0), w(100.0, 10.0)]));
        // Only the last three count: an early outlier (the warmup's tail) does not matter.
        assert!(s.is_stable(&[w(10.0, 900.0), w(100.0, 10.0), w(105.0, 10.5), w(95.0, 9.5)]));
        // Average 100: 89 is more than 10% below it.
        assert!(!s.is_stable(&[w(100.0, 10.0), w(111.0, 10.0), w(89.0, 10.0)]));
        // Throughput agrees, latency does not.
        assert!(!s.is_stable(&[w(100.0, 10.0), w(100.0, 10.0), w(100.0, 14.0)]));
    }

    #[test]
    fn the_percentage_is_the_tolerance() {
        let windows = [w(100.0, 10.0), w(120.0, 10.0), w(80.0, 10.0)];
        assert!(!Stability { percentage: 10.0 }.is_stable(&windows));
        assert!(Stability { percentage: 20.0 }.is_stable(&windows));
        // Exactly at the edge counts as within.
        assert!(Stability { percentage: 20.0 }.is_stable(&[w(80.0, 1.0), w(100.0, 1.0), w(120.0, 1.0)]));
        assert!(!Stability { percentage: 0.0 }.is_stable(&[w(100.0, 1.0), w(100.0, 1.0), w(101.0, 1.0)]));
    }

    #[test]
    fn idle_and_broken_windows() {
        let s = Stability { percentage: 10.0 };
        // Nothing succeeded in any window: steady, if uninteresting.
        assert!(s.is_stable(&[w(0.0, 0.0); 3]));
        // Traffic appearing after an idle window is not steady.
        assert!(!s.is_stable(&[w(0.0, 0.0), w(0.0, 0.0), w(50.0, 10.0)]));
        assert!(!s.is_stable(&[w(f64::NAN, 1.0); 3]));
    }

    #[test]
    fn reports_the_last_three() {
        assert_eq!(reported_windows(0), 0..0);
        assert_eq!(reported_windows(2), 0..2);
        assert_eq!(reported_windows(3), 0..3);
        assert_eq!(reported_windows(10), 7..10);
    }
}
