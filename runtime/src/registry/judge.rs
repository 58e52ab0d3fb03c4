//! Automatic canary rollback: compares the canary's error rate and p99 latency with the
//! stable version's over a sliding window, and says when the canary should be rolled back.
//! Pure: time is the caller's (whole seconds), and nothing here changes routing.

use std::collections::VecDeque;

use serde::Serialize;

use super::traffic::Revision;

/// When to roll a canary back. Set through the model's config parameters or the traffic API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RollbackRule {
    /// Roll back when the canary's error rate exceeds the stable version's by more than this
    /// (absolute, e.g. 0.05 = five points).
    pub max_error_rate_increase: Option<f64>,
    /// Roll back when the canary's p99 latency exceeds this multiple of the stable version's.
    pub max_p99_ratio: Option<f64>,
    /// Length of the comparison window, in seconds.
    pub window_s: u64,
    /// Requests each side needs in the window before it is judged (small samples are noise).
    pub min_requests: u64,
}

impl Default for RollbackRule {
    fn default() -> Self {
        RollbackRule { max_error_rate_increase: None, max_p99_ratio: None, window_s: 30, min_requests: 20 }
    }
}

/// Latency buckets: 2^(i/4) µs, about 19% wide, up to ~2^31 µs (35 minutes).
const BUCKETS: usize = 128;

fn bucket_of(latency_us: u64) -> usize {
    let x = latency_us.max(1) as f64;
    ((x.log2() * 4.0) as usize).min(BUCKETS - 1)
}

fn bucket_upper_us(i: usize) -> f64 {
    2f64.powf((i + 1) as f64 / 4.0)
}

/// One side's requests in one second.
#[derive(Debug, Clone)]
struct Second {
    at: u64,
    requests: u64,
    errors: u64,
    latency: [u32; BUCKETS],
}

/// One side's seconds within the window.
#[derive(Debug, Clone, Default)]
struct Side {
    seconds: VecDeque<Second>,
}

impl Side {
    fn record(&mut self, now_s: u64, ok: bool, latency_us: u64, window_s: u64) {
        if self.seconds.back().is_none_or(|s| s.at != now_s) {
            self.seconds.push_back(Second { at: now_s, requests: 0, errors: 0, latency: [0; BUCKETS] });
        }
        self.expire(now_s, window_s);
        if let Some(s) = self.seconds.back_mut() {
            s.requests += 1;
            if ok {
                s.latency[bucket_of(latency_us)] += 1;
            } else {
                s.errors += 1;
            }
        }
    }

    fn expire(&mut self, now_s: u64, window_s: u64) {
        while self.seconds.front().is_some_and(|s| s.at + window_s <= now_s) {
            self.seconds.pop_front();
        }
    }

    /// Requests, error rate and p99 (µs, of the successes) over the window.
    fn summary(&self) -> (u64, f64, f64) {
        let requests: u64 = self.seconds.iter().map(|s| s.requests).sum();
        let errors: u64 = self.seconds.iter().map(|s| s.errors).sum();
        let mut latency = [0u64; BUCKETS];
        for s in &self.seconds {
            for (total, n) in latency.iter_mut().zip(s.latency) {
                *total += u64::from(n);
            }
        }
        let successes: u64 = latency.iter().sum();
        let rank = (successes as f64 * 0.99).ceil() as u64;
        let mut seen = 0;
        let mut p99 = 0.0;
        for (i, n) in latency.iter().enumerate() {
            seen += n;
            if seen >= rank && *n > 0 {
                p99 = bucket_upper_us(i);
                break;
            }
        }
        let error_rate = if requests == 0 { 0.0 } else { errors as f64 / requests as f64 };
        (requests, error_rate, p99)
    }
}

/// The comparison of one canary against its stable version.
#[derive(Debug, Clone)]
pub struct CanaryJudge {
    rule: RollbackRule,
    stable: Side,
    canary: Side,
}

impl CanaryJudge {
    /// A judge with no history.
    pub fn new(rule: RollbackRule) -> CanaryJudge {
        CanaryJudge { rule, stable: Side::default(), canary: Side::default() }
    }

    /// The rule it applies.
    pub fn rule(&self) -> &RollbackRule {
        &self.rule
    }

    /// Records one request answered by `revision` at second `now_s`.
    pub fn record(&mut self, now_s: u64, revision: Revision, ok: bool, latency_us: u64) {
        let window = self.rule.window_s.max(1);
        match revision {
            Revision::Stable => self.stable.record(now_s, ok, latency_us, window),
            Revision::Canary => self.canary.record(now_s, ok, latency_us, window),
        }
    }

    /// Why the canary should be rolled back now, or `None` while it holds up (or either side
    /// has too few requests in the window to tell).
    pub fn verdict(&mut self, now_s: u64) -> Option<String> {
        let window = self.rule.window_s.max(1);
        self.stable.expire(now_s, window);
        self.canary.expire(now_s, window);
        let (stable_n, stable_errors, stable_p99) = self.stable.summary();
        let (canary_n, canary_errors, canary_p99) = self.canary.summary();
        if stable_n < self.rule.min_requests || canary_n < self.rule.min_requests {
            return None;
        }
        if let Some(limit) = self.rule.max_error_rate_increase {
            if canary_errors - stable_errors > limit {
                return Some(format!(
                    "canary error rate {:.1}% exceeds stable {:.1}% by more than {:.1} points over {window} s",
                    canary_errors * 100.0,
                    stable_errors * 100.0,
                    limit * 100.0
                ));
            }
        }
        if let Some(ratio) = self.rule.max_p99_ratio {
            if stable_p99 > 0.0 && canary_p99 > stable_p99 * ratio {
                return Some(format!(
                    "canary p99 {:.0} µs exceeds {ratio}× the stable p99 {:.0} µs over {window} s",
                    canary_p99, stable_p99
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(errors: Option<f64>, p99: Option<f64>) -> RollbackRule {
        RollbackRule { max_error_rate_increase: errors, max_p99_ratio: p99, window_s: 10, min_requests: 20 }
    }

    fn feed(j: &mut CanaryJudge, at: u64, revision: Revision, n: u64, error_every: u64, latency_us: u64) {
        for i in 0..n {
            let ok = error_every == 0 || i % error_every != 0;
            j.record(at, revision, ok, latency_us);
        }
    }

    #[test]
    fn error_rate_trips_only_above_the_margin() {
        let mut j = CanaryJudge::new(rule(Some(0.05), None));
        feed(&mut j, 0, Revision::Stable, 100, 0, 1000);
        feed(&mut j, 0, Revision::Canary, 100, 25, 1000); // 4% errors
        assert_eq!(j.verdict(0), None);
        feed(&mut j, 1, Revision::Canary, 100, 5, 1000); // now 12% over 200
        let why = j.verdict(1).expect("trips");
        assert!(why.contains("error rate"), "{why}");
    }

    #[test]
    fn p99_trips_on_a_slow_canary() {
        let mut j = CanaryJudge::new(rule(None, Some(2.0)));
        feed(&mut j, 0, Revision::Stable, 200, 0, 1_000);
        feed(&mut j, 0, Revision::Canary, 200, 0, 1_500);
        assert_eq!(j.verdict(0), None, "1.5× is within 2×");
        feed(&mut j, 1, Revision::Canary, 50, 0, 10_000);
        assert!(j.verdict(1).expect("trips").contains("p99"));
    }

    #[test]
    fn needs_enough_requests_and_forgets_old_seconds() {
        let mut j = CanaryJudge::new(rule(Some(0.0), None));
        feed(&mut j, 0, Revision::Stable, 100, 0, 100);
        feed(&mut j, 0, Revision::Canary, 10, 1, 100); // all errors, but only 10
        assert_eq!(j.verdict(0), None);
        feed(&mut j, 5, Revision::Canary, 10, 1, 100);
        assert!(j.verdict(5).is_some(), "20 canary requests now");
        // Ten seconds later the bad ones have left the window and the canary has too few.
        assert_eq!(j.verdict(15), None);
        feed(&mut j, 16, Revision::Stable, 50, 0, 100);
        feed(&mut j, 16, Revision::Canary, 50, 0, 100);
        assert_eq!(j.verdict(16), None, "a healthy window");
    }

    #[test]
    fn buckets_cover_the_range() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert!(bucket_upper_us(bucket_of(1000)) >= 1000.0);
        assert!(bucket_upper_us(bucket_of(1000)) < 1200.0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }
}
