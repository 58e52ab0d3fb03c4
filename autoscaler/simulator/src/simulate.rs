//! Replays a load trace through the [`Autoscaler`] with a simple replica model, one decision
//! per second, and reports what would have happened.
//!
//! The replica model: a replica asked for becomes ready `startup_delay_s` seconds later; a
//! replica no longer wanted goes at once (a starting one first). Ready replicas serve up to
//! `capacity_per_replica` of the load each (in-flight requests, or requests per second).
//! What they cannot serve queues: for a concurrency trace, the excess in-flight requests that
//! second; for an rps trace, a backlog of requests that carries over to the next second.
//!
//! What the autoscaler observes: the load of every second while any replica is ready (the
//! pods are scraped, zeros included), and the load the activator holds while none is ready;
//! nothing for seconds with neither. A request reaching a service with no ready replica after
//! a quiet second triggers the activator's immediate signal.

use std::collections::VecDeque;

use serde::Serialize;

use quiver_autoscaler::{
    config::{AutoscalerConfig, ScaleMetric},
    kpa::Autoscaler,
    window::{round_to_decimals, AVERAGE_DECIMALS},
};

use crate::trace::Trace;

/// How replicas behave in the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaModel {
    /// Seconds from a replica being asked for to it being ready.
    pub startup_delay_s: u64,
    /// Load one ready replica serves (the metric's unit).
    pub capacity_per_replica: f64,
    /// Replicas ready when the trace starts.
    pub initial_ready: u32,
}

/// Replicas of the simulated service: ready ones, and starting ones grouped by the second they
/// become ready (one group per second at most, so memory is bounded by the start-up delay, not
/// by how many replicas are asked for).
#[derive(Debug, Clone, Default)]
pub struct Replicas {
    ready: u32,
    /// `(ready at second, count)`, oldest first.
    starting: VecDeque<(u64, u32)>,
}

impl Replicas {
    /// `ready` replicas ready, none starting.
    pub fn new(ready: u32) -> Self {
        Self { ready, starting: VecDeque::new() }
    }

    /// Ready replicas.
    pub fn ready(&self) -> u32 {
        self.ready
    }

    /// Replicas asked for but not ready yet.
    pub fn starting(&self) -> u32 {
        self.starting.iter().fold(0u32, |sum, &(_, n)| sum.saturating_add(n))
    }

    /// Marks the replicas due by `now_s` ready.
    pub fn promote(&mut self, now_s: u64) {
        while let Some(&(at, n)) = self.starting.front() {
            if at > now_s {
                break;
            }
            self.ready = self.ready.saturating_add(n);
            self.starting.pop_front();
        }
    }

    /// Moves towards `desired` replicas at `now_s`: starts the missing ones (ready after
    /// `startup_delay_s`), or removes the surplus, newest starting ones first.
    pub fn scale_to(&mut self, desired: u32, now_s: u64, startup_delay_s: u64) {
        let total = self.ready.saturating_add(self.starting());
        if desired > total {
            let ready_at = now_s + startup_delay_s;
            match self.starting.back_mut() {
                Some((at, n)) if *at == ready_at => *n = n.saturating_add(desired - total),
                _ => self.starting.push_back((ready_at, desired - total)),
            }
            return;
        }
        let mut surplus = total - desired;
        while surplus > 0 {
            let Some((_, n)) = self.starting.back_mut() else {
                break;
            };
            let removed = surplus.min(*n);
            *n -= removed;
            surplus -= removed;
            if *n == 0 {
                self.starting.pop_back();
            }
        }
        self.ready -= surplus.min(self.ready);
    }
}

/// One simulated second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimulatedSecond {
    /// The second.
    pub time_s: u64,
    /// The trace's load that second (in-flight requests, or requests per second).
    pub load: f64,
    /// Replicas the autoscaler asked for.
    pub desired: u32,
    /// Replicas ready at the end of the second.
    pub ready: u32,
    /// Whether the autoscaler was in panic mode.
    pub panic: bool,
    /// Requests waiting for capacity: excess in-flight requests (concurrency), or the backlog
    /// carried into the next second (rps).
    pub queued: f64,
    /// Whether the activator fronted the service.
    pub activator_in_path: bool,
    /// The metric's stable-window average the decision used.
    pub stable_average: f64,
    /// The metric's panic-window average the decision used.
    pub panic_average: f64,
}

/// Runs `trace` through an autoscaler with `config` (whose metric must be the trace's).
pub fn simulate(trace: &Trace, config: &AutoscalerConfig, model: &ReplicaModel) -> Vec<SimulatedSecond> {
    let mut autoscaler = Autoscaler::new(config.clone(), trace.start_s);
    let mut replicas = Replicas::new(model.initial_ready);
    let mut backlog = 0.0;
    let mut previous_load = 0.0;
    let mut seconds = Vec::with_capacity(trace.loads.len());
    for (i, &load) in trace.loads.iter().enumerate() {
        let now = trace.time_of(i);
        replicas.promote(now);
        let ready = replicas.ready();
        if ready > 0 {
            autoscaler.record(now, load);
        } else if load > 0.0 {
            // The activator holds these requests and reports them; the first after a quiet
            // second is reported at once (as 1), the rest with its periodic report.
            let mut rest = load;
            if previous_load == 0.0 {
                autoscaler.activator_signal(now);
                rest = (load - 1.0).max(0.0);
            }
            autoscaler.record(now, rest);
        }
        let decision = autoscaler.decide(now, ready);
        replicas.scale_to(decision.desired, now, model.startup_delay_s);
        replicas.promote(now);

        let capacity = f64::from(replicas.ready()) * model.capacity_per_replica;
        let queued = match trace.metric {
            ScaleMetric::Concurrency => (load - capacity).max(0.0),
            ScaleMetric::Rps => {
                backlog = (backlog + load - capacity).max(0.0);
                backlog
            }
        };
        seconds.push(SimulatedSecond {
            time_s: now,
            load,
            desired: decision.desired,
            ready: replicas.ready(),
            panic: decision.panic,
            // Rounded like the window averages: 596.7 − 100 is 496.70000000000005 in binary.
            queued: round_to_decimals(queued, AVERAGE_DECIMALS),
            activator_in_path: decision.activator_in_path,
            stable_average: decision.stable_average,
            panic_average: decision.panic_average,
        });
        previous_load = load;
    }
    seconds
}

/// Contiguous runs of seconds where `holds` is true, as `[start, end)` seconds.
pub fn periods(seconds: &[SimulatedSecond], holds: impl Fn(&SimulatedSecond) -> bool) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for s in seconds.iter().filter(|s| holds(s)) {
        match runs.last_mut() {
            Some((_, end)) if *end == s.time_s => *end = s.time_s + 1,
            _ => runs.push((s.time_s, s.time_s + 1)),
        }
    }
    runs
}

/// What a simulation amounted to.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationSummary {
    /// Seconds simulated.
    pub seconds: usize,
    /// The highest load and its second.
    pub peak_load: (u64, f64),
    /// Most replicas asked for.
    pub peak_desired: u32,
    /// Most replicas ready.
    pub peak_ready: u32,
    /// Panic-mode periods, `[start, end)`.
    pub panic_periods: Vec<(u64, u64)>,
    /// Seconds in which requests queued.
    pub queued_seconds: usize,
    /// The most requests queued in one second.
    pub peak_queued: f64,
    /// Requests queued, summed over seconds: the request-seconds spent waiting for capacity.
    pub queued_request_seconds: f64,
    /// Ready replicas summed over seconds: what the service cost.
    pub replica_seconds: u64,
    /// Seconds at which the last replica went.
    pub scaled_to_zero_at: Vec<u64>,
    /// Seconds at which a service with no replica asked for some again.
    pub scaled_from_zero_at: Vec<u64>,
}

impl SimulationSummary {
    /// Summarises `seconds`.
    pub fn of(seconds: &[SimulatedSecond]) -> Self {
        let peak_load =
            seconds.iter().fold(
                (seconds.first().map_or(0, |s| s.time_s), 0.0),
                |peak, s| {
                    if s.load > peak.1 {
                        (s.time_s, s.load)
                    } else {
                        peak
                    }
                },
            );
        let mut scaled_to_zero_at = Vec::new();
        let mut scaled_from_zero_at = Vec::new();
        for pair in seconds.windows(2) {
            if pair[0].desired > 0 && pair[1].desired == 0 {
                scaled_to_zero_at.push(pair[1].time_s);
            }
            if pair[0].desired == 0 && pair[1].desired > 0 {
                scaled_from_zero_at.push(pair[1].time_s);
            }
        }
        Self {
            seconds: seconds.len(),
            peak_load,
            peak_desired: seconds.iter().map(|s| s.desired).max().unwrap_or(0),
            peak_ready: seconds.iter().map(|s| s.ready).max().unwrap_or(0),
            panic_periods: periods(seconds, |s| s.panic),
            queued_seconds: seconds.iter().filter(|s| s.queued > 0.0).count(),
            peak_queued: seconds.iter().map(|s| s.queued).fold(0.0, f64::max),
            queued_request_seconds: seconds.iter().map(|s| s.queued).sum(),
            replica_seconds: seconds.iter().map(|s| u64::from(s.ready)).sum(),
            scaled_to_zero_at,
            scaled_from_zero_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_start_after_the_delay_and_stop_at_once() {
        let mut r = Replicas::new(1);
        r.scale_to(4, 10, 5);
        assert_eq!((r.ready(), r.starting()), (1, 3));
        r.promote(14);
        assert_eq!(r.ready(), 1);
        r.scale_to(6, 12, 5);
        r.promote(15);
        assert_eq!((r.ready(), r.starting()), (4, 2));
        // Starting replicas are cancelled before ready ones are removed.
        r.scale_to(3, 15, 5);
        assert_eq!((r.ready(), r.starting()), (3, 0));
        r.scale_to(0, 16, 5);
        assert_eq!((r.ready(), r.starting()), (0, 0));
        // A zero delay makes them ready within the same second.
        r.scale_to(2, 20, 0);
        r.promote(20);
        assert_eq!(r.ready(), 2);
    }

    #[test]
    fn replica_memory_does_not_grow_with_the_count() {
        let mut r = Replicas::new(0);
        r.scale_to(u32::MAX, 0, 10);
        r.scale_to(u32::MAX, 1, 10);
        assert_eq!((r.starting.len(), r.starting()), (1, u32::MAX));
        r.promote(10);
        assert_eq!(r.ready(), u32::MAX);
    }

    fn second(time_s: u64, desired: u32, panic: bool) -> SimulatedSecond {
        SimulatedSecond {
            time_s,
            load: time_s as f64,
            desired,
            ready: desired,
            panic,
            queued: if panic { 2.0 } else { 0.0 },
            activator_in_path: false,
            stable_average: 0.0,
            panic_average: 0.0,
        }
    }

    #[test]
    fn summaries_find_periods_and_zero_crossings() {
        let seconds: Vec<_> = [(1, false), (2, true), (2, true), (0, false), (0, false), (3, true)]
            .iter()
            .enumerate()
            .map(|(t, &(d, p))| second(t as u64, d, p))
            .collect();
        let s = SimulationSummary::of(&seconds);
        assert_eq!(s.panic_periods, vec![(1, 3), (5, 6)]);
        assert_eq!((s.scaled_to_zero_at.as_slice(), s.scaled_from_zero_at.as_slice()), (&[3][..], &[5][..]));
        assert_eq!((s.peak_desired, s.replica_seconds, s.queued_seconds), (3, 8, 3));
        assert_eq!((s.peak_load, s.queued_request_seconds), ((5, 5.0), 6.0));
    }

    #[test]
    fn rps_backlog_carries_over_and_drains() {
        let trace = Trace { metric: ScaleMetric::Rps, start_s: 0, loads: vec![300.0, 300.0, 0.0, 0.0] };
        let config = AutoscalerConfig { metric: ScaleMetric::Rps, max_scale: Some(1), ..AutoscalerConfig::default() };
        let model = ReplicaModel { startup_delay_s: 0, capacity_per_replica: 200.0, initial_ready: 1 };
        let queued: Vec<f64> = simulate(&trace, &config, &model).iter().map(|s| s.queued).collect();
        assert_eq!(queued, vec![100.0, 200.0, 0.0, 0.0]);
    }
}
