//! Windowed aggregation over one-second buckets, ported from Knative's
//! pkg/autoscaler/aggregation.
//!
//! [`BucketAverage`] is `TimedFloat64Buckets`: the simple (linear) average Knative uses by
//! default (the weighted-exponential variant is opt-in there and not implemented here). Its
//! quirks are kept on purpose, because they decide when the KPA scales:
//! - values recorded for the same second add up (the pods' and the activator's reports are
//!   summed, as Knative's collector sums them);
//! - the average divides by the seconds from the first write to the last one (at most the
//!   window), so seconds with no report at all do not dilute it, while reported zeros do;
//! - after a full window without a write the window forgets everything and starts again.
//!
//! [`WindowMax`] is `max.TimeWindow`: the largest value recorded in the last N seconds, used
//! for the scale-down delay.

use std::collections::VecDeque;

/// Knative rounds window averages to this many decimal digits, so float noise cannot push a
/// ratio like 140.0000001 / 70 over the next integer.
pub const AVERAGE_DECIMALS: i32 = 6;

/// The simple average of per-second values over a sliding window.
#[derive(Debug, Clone)]
pub struct BucketAverage {
    buckets: Vec<f64>,
    window_total: f64,
    /// `(first, last)` seconds written since the window last emptied; `None` before any write.
    writes: Option<(u64, u64)>,
}

impl BucketAverage {
    /// A window of `window_s` one-second buckets (at least one).
    pub fn new(window_s: u64) -> Self {
        let len = usize::try_from(window_s.max(1)).unwrap_or(usize::MAX);
        Self { buckets: vec![0.0; len], window_total: 0.0, writes: None }
    }

    fn window_s(&self) -> u64 {
        self.buckets.len() as u64
    }

    fn index(&self, time_s: u64) -> usize {
        (time_s % self.window_s()) as usize
    }

    /// Adds `value` to the bucket of second `time_s`. A value older than a window before the
    /// latest write is dropped.
    pub fn record(&mut self, time_s: u64, value: f64) {
        let window = self.window_s();
        match self.writes {
            None => self.writes = Some((time_s, time_s)),
            Some((first, last)) if time_s != last => {
                if time_s.saturating_add(window) <= last {
                    return;
                }
                let first = first.min(time_s);
                if time_s > last {
                    if time_s - last >= window {
                        // A full window without data: start over from this second.
                        self.buckets.fill(0.0);
                        self.window_total = 0.0;
                        self.writes = Some((time_s, time_s));
                    } else {
                        // Seconds skipped since the last write held no data: clear their buckets,
                        // which still hold values from a window ago.
                        for t in last + 1..=time_s {
                            let i = self.index(t);
                            self.window_total -= self.buckets[i];
                            self.buckets[i] = 0.0;
                        }
                        self.writes = Some((first, time_s));
                    }
                } else {
                    self.writes = Some((first, last));
                }
            }
            Some(_) => {}
        }
        let i = self.index(time_s);
        self.buckets[i] += value;
        self.window_total += value;
    }

    /// Whether no value was written in the window ending at `now_s` (Knative's "no data").
    pub fn is_empty(&self, now_s: u64) -> bool {
        match self.writes {
            None => true,
            Some((_, last)) => now_s.saturating_sub(last) > self.window_s(),
        }
    }

    /// The average over the window ending at `now_s`.
    pub fn average(&self, now_s: u64) -> f64 {
        let Some((first, last)) = self.writes else {
            return 0.0;
        };
        let window = self.window_s();
        let written = (last - first + 1).min(window) as f64;
        let average = if now_s <= last {
            self.window_total / written
        } else if now_s - last < window {
            // Buckets after the last write still hold values from a window ago: leave them out.
            let stale: f64 = (last + 1..=now_s).map(|t| self.buckets[self.index(t)]).sum();
            let valid = written.min((window - (now_s - last)) as f64);
            (self.window_total - stale) / valid
        } else {
            0.0
        };
        round_to_decimals(average, AVERAGE_DECIMALS)
    }
}

/// `x` rounded to `decimals` decimal digits.
pub fn round_to_decimals(x: f64, decimals: i32) -> f64 {
    let p = 10f64.powi(decimals);
    (x * p).round() / p
}

/// The largest value recorded in the last `window_s` seconds (ascending-minima deque: at most
/// one entry per second of the window).
#[derive(Debug, Clone)]
pub struct WindowMax {
    window_s: u64,
    /// `(second, value)` with strictly decreasing values, oldest first.
    maxima: VecDeque<(u64, u32)>,
}

impl WindowMax {
    /// A window of `window_s` seconds (at least one).
    pub fn new(window_s: u64) -> Self {
        Self { window_s: window_s.max(1), maxima: VecDeque::new() }
    }

    /// Records `value` at second `time_s` (seconds must not go backwards; an earlier one is
    /// treated as the latest).
    pub fn record(&mut self, time_s: u64, value: u32) {
        let time_s = self.maxima.back().map_or(time_s, |&(t, _)| time_s.max(t));
        let mut value = value;
        // Two values for one second: keep the larger.
        if let Some(&(t, v)) = self.maxima.back() {
            if t == time_s {
                value = value.max(v);
                self.maxima.pop_back();
            }
        }
        // A smaller, older value can never be the maximum again.
        while self.maxima.back().is_some_and(|&(_, v)| v <= value) {
            self.maxima.pop_back();
        }
        while self.maxima.front().is_some_and(|&(t, _)| time_s - t >= self.window_s) {
            self.maxima.pop_front();
        }
        self.maxima.push_back((time_s, value));
    }

    /// The maximum over the window ending at the latest record (0 before any).
    pub fn current(&self) -> u32 {
        self.maxima.front().map_or(0, |&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(window, writes as (second, value), now, expected average)`.
    type AverageCase = (u64, &'static [(u64, f64)], u64, f64);
    /// `(window, records as (second, value), expected maximum after each)`.
    type MaxCase = (u64, &'static [(u64, u32)], &'static [u32]);

    #[test]
    fn averages_follow_knatives_timed_buckets() {
        let cases: &[AverageCase] = &[
            (5, &[], 3, 0.0),
            (5, &[(10, 4.0)], 10, 4.0),
            // A partial window averages over the seconds written so far.
            (5, &[(10, 4.0), (11, 2.0)], 11, 3.0),
            // Full window: the oldest bucket has slid out.
            (3, &[(0, 9.0), (1, 3.0), (2, 3.0), (3, 3.0)], 3, 3.0),
            // Same second twice: the reports add up.
            (5, &[(7, 1.0), (7, 2.0)], 7, 3.0),
            // Seconds after the last write are not counted as zeros...
            (5, &[(0, 6.0), (1, 6.0)], 3, 6.0),
            // ...until they push written seconds out of the window.
            (3, &[(0, 3.0), (1, 6.0)], 3, 6.0),
            // A gap closed by a later write counts as zeros.
            (5, &[(0, 10.0), (3, 0.0)], 3, 2.5),
            // Nothing for a whole window: zero.
            (5, &[(0, 10.0)], 5, 0.0),
            // After a full window without data the window restarts at the new write.
            (5, &[(0, 10.0), (9, 1.0)], 9, 1.0),
            // A write older than the window before the latest is ignored.
            (3, &[(10, 2.0), (5, 100.0)], 10, 2.0),
            // A late write within the window lands in its bucket.
            (5, &[(10, 2.0), (8, 4.0)], 10, 2.0),
            (2, &[(0, 1.0), (1, 2.0), (2, 4.0)], 2, 3.0),
        ];
        for (window, writes, now, want) in cases {
            let mut w = BucketAverage::new(*window);
            for (t, v) in *writes {
                w.record(*t, *v);
            }
            assert_eq!(w.average(*now), *want, "window {window}, writes {writes:?}, now {now}");
        }
    }

    #[test]
    fn a_window_is_empty_after_a_full_window_without_writes() {
        let mut w = BucketAverage::new(60);
        assert!(w.is_empty(0));
        w.record(100, 0.0);
        assert!(!w.is_empty(100));
        assert!(!w.is_empty(160));
        assert!(w.is_empty(161));
    }

    #[test]
    fn averages_are_rounded_to_six_decimals() {
        let mut w = BucketAverage::new(3);
        for t in 0..3 {
            w.record(t, 0.1);
        }
        assert_eq!(w.average(2), 0.1);
    }

    #[test]
    fn window_max_keeps_the_largest_of_the_last_seconds() {
        let cases: &[MaxCase] = &[
            (3, &[(0, 5), (1, 2), (2, 1), (3, 1), (4, 1)], &[5, 5, 5, 2, 1]),
            (3, &[(0, 1), (1, 4), (2, 2), (5, 0)], &[1, 4, 4, 0]),
            (1, &[(0, 7), (1, 3)], &[7, 3]),
            (5, &[(0, 2), (0, 9), (0, 4)], &[2, 9, 9]),
        ];
        for (window, records, want) in cases {
            let mut m = WindowMax::new(*window);
            let got: Vec<u32> = records
                .iter()
                .map(|&(t, v)| {
                    m.record(t, v);
                    m.current()
                })
                .collect();
            assert_eq!(got, *want, "window {window}, records {records:?}");
        }
    }
}
