//! The load traces shipped in autoscaler/simulator/traces: how they are made, that the committed files are
//! exactly that, and that each shows the behaviour it is there to show.
//!
//! Regenerate the files with `QUIVER_REGENERATE_TRACES=1 cargo test -p quiver-autoscaler-simulator --test traces`.

use std::{f64::consts::PI, path::PathBuf};

use quiver_autoscaler::{AutoscalerConfig, ScaleMetric, Settings};
use quiver_autoscaler_simulator::{
    simulate::{simulate, ReplicaModel, SimulationSummary},
    trace::{load_trace, Trace},
};

fn traces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("traces")
}

/// xorshift64*: a fixed, dependency-free noise source so the traces are the same everywhere.
struct Noise(u64);

impl Noise {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn concurrency(loads: impl IntoIterator<Item = f64>) -> Trace {
    Trace { metric: ScaleMetric::Concurrency, start_s: 0, loads: loads.into_iter().collect() }
}

/// 50 in flight, a step to 300 at 120 s, back to 50 at 480 s (720 s).
fn step() -> Trace {
    concurrency((0..720).map(|t| if (120..480).contains(&t) { 300.0 } else { 50.0 }))
}

/// About 40 in flight with ±5 noise, and a 30 s spike to 600 at 200 s (600 s).
fn spike() -> Trace {
    let mut noise = Noise(0x5EED_0001);
    concurrency((0..600).map(|t| {
        let base = if (200..230).contains(&t) { 600.0 } else { 40.0 };
        tenths(base + 5.0 * noise.next())
    }))
}

/// One day compressed to 1440 s (a second per minute): requests per second follow
/// 30 + 570 × (1 − cos(2πt/1440)) / 2, from 30 at midnight to 600 at noon, with ±5% noise.
fn diurnal() -> Trace {
    let mut noise = Noise(0x5EED_0002);
    let loads = (0..1440)
        .map(|t| {
            let day = 30.0 + 570.0 * (1.0 - (2.0 * PI * f64::from(t) / 1440.0).cos()) / 2.0;
            tenths(day * (1.0 + 0.05 * noise.next()))
        })
        .collect();
    Trace { metric: ScaleMetric::Rps, start_s: 0, loads }
}

/// Idle for 300 s, a 60 s burst of 80 in flight, idle again until 600 s.
fn idle_burst() -> Trace {
    concurrency((0..600).map(|t| if (300..360).contains(&t) { 80.0 } else { 0.0 }))
}

fn shipped() -> [(&'static str, Trace); 4] {
    [("step.csv", step()), ("spike.csv", spike()), ("diurnal.csv", diurnal()), ("idle_burst.csv", idle_burst())]
}

#[test]
fn shipped_traces_are_what_the_generators_make() {
    let regenerate = std::env::var_os("QUIVER_REGENERATE_TRACES").is_some();
    for (name, trace) in shipped() {
        let path = traces_dir().join(name);
        if regenerate {
            std::fs::write(&path, trace.to_csv()).unwrap();
        }
        let committed = load_trace(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(committed == trace, "{name} differs from its generator: run with QUIVER_REGENERATE_TRACES=1");
    }
}

/// Simulates a shipped trace with Knative's defaults and the CLI's default replica model.
fn simulate_shipped(trace: &Trace) -> SimulationSummary {
    let mut settings = Settings::new();
    settings.set("autoscaling.knative.dev/metric", trace.metric.as_str()).unwrap();
    let config = AutoscalerConfig::from_settings(&settings).unwrap();
    let model = ReplicaModel {
        startup_delay_s: quiver_autoscaler_simulator::cli::DEFAULT_STARTUP_DELAY_S,
        capacity_per_replica: config.total_per_replica,
        initial_ready: config.initial_scale,
    };
    SimulationSummary::of(&simulate(trace, &config, &model))
}

#[test]
fn each_trace_shows_what_it_is_for() {
    // The step: from 1 replica to ceil(300 / 70) = 5, through panic (5/1 ≥ 200%).
    let s = simulate_shipped(&step());
    assert_eq!(s.peak_desired, 5);
    assert_eq!(s.panic_periods.first().map(|p| p.0), Some(120));

    // The spike: panic from its first second, 9 replicas (ceil(605 / 70) at most), and requests
    // queue while they start.
    let s = simulate_shipped(&spike());
    assert_eq!(s.panic_periods.first().map(|p| p.0), Some(200));
    assert!((9..=10).contains(&s.peak_desired), "{s:?}");
    assert!(s.queued_seconds > 0);
    assert!(s.scaled_to_zero_at.is_empty());

    // The day: rps scaling from 1 replica at night to ceil(630 / 140) = 5 at noon, and back.
    let s = simulate_shipped(&diurnal());
    assert!((5..=6).contains(&s.peak_desired), "{s:?}");

    // Idle, then a burst: to zero after a stable window (the activator is already in the path
    // with the default burst capacity), from zero on the burst's first request, to zero again.
    let s = simulate_shipped(&idle_burst());
    assert_eq!(s.scaled_to_zero_at.first(), Some(&61));
    assert_eq!(s.scaled_from_zero_at, vec![300]);
    assert_eq!(s.scaled_to_zero_at.len(), 2);
}
