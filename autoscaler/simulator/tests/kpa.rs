//! Table-driven tests of each documented KPA behaviour, and proptest invariants. They replay
//! loads through the simulator's replica model, so they live beside it; the KPA library itself
//! stays free of the simulator.

use proptest::prelude::*;
use quiver_autoscaler::{config::ScaleMetric, settings::Settings, Activity, Autoscaler, AutoscalerConfig, Decision};
use quiver_autoscaler_simulator::{
    simulate::{simulate, ReplicaModel, SimulatedSecond},
    trace::Trace,
};

/// Settings as `(key, value)` pairs.
type Pairs = &'static [(&'static str, &'static str)];

fn config(pairs: &[(&str, &str)]) -> AutoscalerConfig {
    let mut settings = Settings::new();
    for (k, v) in pairs {
        settings.set(k, v).unwrap();
    }
    AutoscalerConfig::from_settings(&settings).unwrap()
}

/// `(load, seconds)` segments into one load per second.
fn loads(segments: &[(f64, usize)]) -> Vec<f64> {
    segments.iter().flat_map(|&(load, n)| std::iter::repeat_n(load, n)).collect()
}

/// Simulates `segments` of concurrency (or rps when the config says so) from second 0.
fn run(config: &AutoscalerConfig, segments: &[(f64, usize)], startup_delay_s: u64, initial_ready: u32) -> Vec<SimulatedSecond> {
    let trace = Trace { metric: config.metric, start_s: 0, loads: loads(segments) };
    let model = ReplicaModel { startup_delay_s, capacity_per_replica: config.total_per_replica, initial_ready };
    simulate(&trace, config, &model)
}

/// Drives the autoscaler with a fixed number of ready replicas: each second records `load` and decides.
fn drive(kpa: &mut Autoscaler, from_s: u64, load: f64, seconds: u64, ready: u32) -> Vec<Decision> {
    (from_s..from_s + seconds)
        .map(|t| {
            kpa.record(t, load);
            kpa.decide(t, ready)
        })
        .collect()
}

fn desired(seconds: &[SimulatedSecond]) -> Vec<u32> {
    seconds.iter().map(|s| s.desired).collect()
}

fn first_second(seconds: &[SimulatedSecond], holds: impl Fn(&SimulatedSecond) -> bool) -> Option<u64> {
    seconds.iter().find(|s| holds(s)).map(|s| s.time_s)
}

#[test]
fn steady_load_holds_a_steady_count() {
    // (settings, load, expected replicas): replicas = ceil(load / target).
    let cases: &[(Pairs, f64, u32)] = &[
        (&[], 140.0, 2),
        (&[], 141.0, 3),
        (&[], 70.0, 1),
        (&[("autoscaling.knative.dev/target", "10")], 35.0, 5),
        (&[("containerConcurrency", "1")], 3.0, 5), // target 0.7
        (&[("autoscaling.knative.dev/target-utilization-percentage", "100")], 300.0, 3),
    ];
    for (pairs, load, want) in cases {
        let c = config(pairs);
        let seconds = run(&c, &[(*load, 300)], 0, *want);
        assert!(desired(&seconds).iter().all(|d| d == want), "{pairs:?} load {load}: {:?}", desired(&seconds));
        assert!(seconds.iter().all(|s| !s.panic), "{pairs:?}: no panic at a steady load");
    }
}

#[test]
fn a_step_up_is_followed_within_seconds() {
    // (settings, before, after, startup delay, want replicas, want panic)
    let cases: &[(Pairs, f64, f64, u64, u32, bool)] = &[
        // 1 → 5 replicas needed at once: the panic window sees it, panic (5/1 ≥ 200%).
        (&[], 50.0, 300.0, 5, 5, true),
        // 3 → 5: 5/3 < 200%, the stable window ramps up, no panic.
        (&[], 150.0, 350.0, 5, 5, false),
        // A higher panic threshold tolerates the 1 → 5 step.
        (&[("autoscaling.knative.dev/panic-threshold-percentage", "600")], 50.0, 300.0, 5, 5, false),
    ];
    for (pairs, before, after, delay, want, want_panic) in cases {
        let c = config(pairs);
        let initial = (before / c.target).ceil() as u32;
        let seconds = run(&c, &[(*before, 120), (*after, 240)], *delay, initial);
        assert!(seconds[..120].iter().all(|s| s.desired == initial), "{pairs:?}");
        let reached = first_second(&seconds, |s| s.desired == *want).unwrap();
        let ready = first_second(&seconds, |s| s.ready == *want).unwrap();
        let panicked = seconds.iter().any(|s| s.panic);
        assert_eq!(panicked, *want_panic, "{pairs:?}");
        if *want_panic {
            // Panic starts with the step, and the count follows within a panic window.
            assert_eq!(first_second(&seconds, |s| s.panic), Some(120), "{pairs:?}");
            assert!(reached < 120 + c.panic_window_s, "{pairs:?}: desired {want} at {reached}");
        } else {
            // The stable window follows within a window.
            assert!(reached <= 180, "{pairs:?}: desired {want} at {reached}");
        }
        assert_eq!(ready, reached + delay, "{pairs:?}: replicas are ready after the start-up delay");
        assert_eq!(seconds.last().unwrap().desired, *want, "{pairs:?}");
    }
}

#[test]
fn a_spike_enters_panic_and_leaves_a_stable_window_after_the_last_trigger() {
    // Replicas start at once, so the ready count follows the decisions exactly.
    let c = AutoscalerConfig::default();
    let seconds = run(&c, &[(40.0, 100), (600.0, 10), (40.0, 200)], 0, 1);
    let panic: Vec<u64> = seconds.iter().filter(|s| s.panic).map(|s| s.time_s).collect();
    // At 100 the panic window (95..=100) averages 133 → 2 replicas for 1 ready: 200%.
    assert_eq!(panic.first(), Some(&100));
    // The last trigger is at 101 (4 wanted for 2 ready); panic ends when 101 + 60 < now.
    assert_eq!(panic.last(), Some(&161));
    assert_eq!(panic.len(), 62, "one contiguous period");
    let peak = seconds.iter().map(|s| s.desired).max().unwrap();
    assert_eq!(peak, 9, "ceil(600 / 70)");
    // Never down while panicking: the count holds at the peak until panic ends.
    assert!(seconds[110..162].iter().all(|s| s.desired == peak));
    // Afterwards it comes down to the baseline.
    assert_eq!(seconds.last().unwrap().desired, 1);
    assert!(seconds[162..].windows(2).all(|w| w[1].desired <= w[0].desired));
}

#[test]
fn panic_never_scales_down_and_stays_while_triggered() {
    let c = AutoscalerConfig::default();
    let mut kpa = Autoscaler::new(c, 0);
    drive(&mut kpa, 0, 70.0, 60, 1);
    // 700 in flight for 1 ready: panic, 10 wanted.
    let burst = drive(&mut kpa, 60, 700.0, 6, 1);
    assert!(burst.iter().all(|d| d.panic));
    assert_eq!(burst.last().unwrap().desired, 10);
    // The load falls at once but panic holds the count for a stable window after the last trigger.
    let after = drive(&mut kpa, 66, 0.0, 61, 10);
    assert!(after[..60].iter().all(|d| d.panic && d.desired == 10), "{:?}", after.iter().map(|d| d.desired).collect::<Vec<_>>());
    assert!(!after[60].panic, "panic ends once 65 + 60 < now");
}

#[test]
fn scale_down_is_bounded_by_max_scale_down_rate() {
    // (max-scale-down-rate, ready, expected desired when the load has gone)
    let cases: &[(&str, u32, u32)] = &[("2", 20, 10), ("2", 21, 10), ("4", 20, 5), ("1.5", 20, 13), ("2", 1, 0)];
    for (rate, ready, want) in cases {
        let c = config(&[("max-scale-down-rate", rate), ("autoscaling.knative.dev/min-scale", "0")]);
        let mut kpa = Autoscaler::new(c, 0);
        drive(&mut kpa, 0, 70.0 * f64::from(*ready), 60, *ready);
        // A full window of zeros: the stable average is 0, so only the rate limit holds replicas.
        let d = drive(&mut kpa, 60, 0.0, 60, *ready);
        assert_eq!(d.last().unwrap().recommended, Some(*want), "rate {rate}, ready {ready}");
    }
    // Once the stable average is 0, each decision halves the count the ready replicas follow.
    let c = AutoscalerConfig { enable_scale_to_zero: false, ..config(&[("autoscaling.knative.dev/window", "6s")]) };
    let mut kpa = Autoscaler::new(c, 0);
    drive(&mut kpa, 0, 70.0 * 64.0, 6, 64);
    let mut ready = 64;
    let mut halving = Vec::new();
    for t in 6..40 {
        kpa.record(t, 0.0);
        let d = kpa.decide(t, ready);
        if d.stable_average == 0.0 {
            halving.push(d.desired);
        }
        ready = d.desired;
    }
    let start = halving[0];
    let want: Vec<u32> = std::iter::successors(Some(start), |&n| Some((n / 2).max(1))).take(halving.len()).collect();
    assert!(start > 1, "the average reached 0 before the count did");
    assert_eq!(halving, want);
}

#[test]
fn scale_to_zero_waits_for_the_window_and_the_grace_period() {
    // Traffic until second 29, then none. (settings, second the last replica goes)
    let cases: &[(Pairs, Option<u64>)] = &[
        // The activator is not in the path (burst capacity 0): the stable window empties at 89
        // (29 + 60), the service goes inactive, and the grace period runs: 89 + 30.
        (&[("target-burst-capacity", "0")], Some(119)),
        (&[("target-burst-capacity", "0"), ("scale-to-zero-grace-period", "1m")], Some(149)),
        // A pod retention period longer than the grace period keeps the last replica longer.
        (&[("target-burst-capacity", "0"), ("autoscaling.knative.dev/scale-to-zero-pod-retention-period", "90s")], Some(179)),
        // With Knative's default burst capacity (211 > one replica's 100) the activator has been
        // in the path all along, so its grace period has long passed: zero right after inactive.
        (&[], Some(90)),
        (&[("autoscaling.knative.dev/target-burst-capacity", "-1")], Some(90)),
        (&[("autoscaling.knative.dev/window", "20s"), ("target-burst-capacity", "0")], Some(79)),
        (&[("autoscaling.knative.dev/min-scale", "1")], None),
        (&[("enable-scale-to-zero", "false")], None),
        (&[("minReplicas", "1")], None),
    ];
    for (pairs, want) in cases {
        let c = config(pairs);
        let seconds = run(&c, &[(10.0, 30), (0.0, 300)], 0, 1);
        let zero_at = first_second(&seconds, |s| s.desired == 0);
        assert_eq!(zero_at, *want, "{pairs:?}");
        if let Some(at) = zero_at {
            assert!(seconds[at as usize..].iter().all(|s| s.desired == 0 && s.ready == 0), "{pairs:?}: stays at zero");
        } else {
            assert!(seconds.iter().all(|s| s.desired >= 1), "{pairs:?}");
        }
    }
}

#[test]
fn a_request_to_a_scaled_to_zero_service_scales_it_from_zero_at_once() {
    // (settings, burst load, expected replicas in the second of the first request)
    let cases: &[(Pairs, f64, u32)] = &[
        (&[], 1.0, 1),
        (&[], 5.0, 1),
        (&[("autoscaling.knative.dev/activation-scale", "3")], 1.0, 3),
        // A burst from zero panics (9 wanted for "1" ready) and asks for all of it at once.
        (&[], 600.0, 9),
    ];
    for (pairs, burst, want) in cases {
        let c = config(pairs);
        let seconds = run(&c, &[(0.0, 200), (*burst, 60)], 5, 1);
        assert_eq!(seconds[199].desired, 0, "{pairs:?}: idle service at zero");
        assert_eq!(seconds[200].desired, *want, "{pairs:?}: desired in the second of the first request");
        assert!(seconds[200].activator_in_path, "{pairs:?}: the activator holds the requests");
        assert!(seconds[200].queued > 0.0, "{pairs:?}: requests wait for the cold start");
        assert_eq!(first_second(&seconds[200..], |s| s.ready > 0), Some(205), "{pairs:?}");
    }
    // The signal itself: recorded as one request, and a decision is due when the last was zero.
    let mut kpa = Autoscaler::new(AutoscalerConfig { initial_scale: 0, ..AutoscalerConfig::default() }, 0);
    assert_eq!(kpa.decide(0, 0).desired, 0, "initial scale 0, no data");
    assert!(!kpa.activator_signal(1), "no zero recommendation yet: the periodic tick will see it");
    let d = kpa.decide(1, 0);
    assert_eq!((d.desired, d.activity), (1, Activity::Activating));
    // Without any signal an idle service stays at zero.
    let mut kpa = Autoscaler::new(AutoscalerConfig { initial_scale: 0, ..AutoscalerConfig::default() }, 0);
    assert!((0..100).all(|t| kpa.decide(t, 0).desired == 0));
}

#[test]
fn min_max_and_initial_scale_clamp_the_count() {
    // (settings, load, initial ready, expected final count, expected peak)
    let cases: &[(Pairs, f64, u32, u32, u32)] = &[
        (&[("autoscaling.knative.dev/max-scale", "5")], 10_000.0, 1, 5, 5),
        (&[("maxReplicas", "4")], 10_000.0, 1, 4, 4),
        (&[("autoscaling.knative.dev/min-scale", "3")], 0.0, 3, 3, 3),
        (&[("minReplicas", "2"), ("maxReplicas", "2")], 500.0, 2, 2, 2),
        // Initial scale is a floor until reached once, then the load decides.
        (&[("autoscaling.knative.dev/initial-scale", "4")], 10.0, 0, 1, 4),
        (&[("max-scale", "3"), ("autoscaling.knative.dev/max-scale", "6")], 10_000.0, 1, 6, 6),
    ];
    for (pairs, load, initial_ready, want_final, want_peak) in cases {
        let c = config(pairs);
        let seconds = run(&c, &[(*load, 400)], 3, *initial_ready);
        let peak = seconds.iter().map(|s| s.desired).max().unwrap();
        assert_eq!(peak, *want_peak, "{pairs:?}");
        assert_eq!(seconds.last().unwrap().desired, *want_final, "{pairs:?}");
        assert!(seconds.iter().all(|s| s.desired >= c.min_scale), "{pairs:?}");
    }
}

#[test]
fn rps_is_scaled_on_requests_per_second() {
    // (settings, rps, expected replicas): target = 200 × 70% = 140 rps by default.
    let cases: &[(Pairs, f64, u32)] = &[
        (&[("autoscaling.knative.dev/metric", "rps")], 700.0, 5),
        (&[("scaleMetric", "rps"), ("scaleTarget", "50")], 700.0, 20),
        (&[("autoscaling.knative.dev/metric", "rps"), ("requests-per-second-target-default", "100")], 700.0, 10),
    ];
    for (pairs, rps, want) in cases {
        let c = config(pairs);
        assert_eq!(c.metric, ScaleMetric::Rps);
        let seconds = run(&c, &[(*rps, 200)], 0, *want);
        assert!(desired(&seconds).iter().all(|d| d == want), "{pairs:?}: {:?}", &desired(&seconds)[..10]);
    }
}

#[test]
fn scale_down_delay_holds_the_highest_recent_count() {
    let c = config(&[("autoscaling.knative.dev/scale-down-delay", "30s"), ("autoscaling.knative.dev/window", "6s")]);
    let mut kpa = Autoscaler::new(c, 0);
    drive(&mut kpa, 0, 700.0, 6, 10);
    let after = drive(&mut kpa, 6, 70.0, 40, 10);
    // The stable average falls within 6 s, but the count holds for the 30 s delay.
    assert!(after[..29].iter().all(|d| d.desired == 10), "{:?}", after.iter().map(|d| d.desired).collect::<Vec<_>>());
    assert!(after[39].desired < 10);
}

#[test]
fn excess_burst_capacity_decides_whether_the_activator_stays_in_the_path() {
    // (settings, ready, load, expected EBC, activator in path)
    let cases: &[(Pairs, u32, f64, f64, bool)] = &[
        // 1 × 100 − 211 − 10 < 0.
        (&[], 1, 10.0, -121.0, true),
        // 4 × 100 − 211 − 100 = 89.
        (&[], 4, 100.0, 89.0, false),
        (&[("target-burst-capacity", "0")], 1, 60.0, 0.0, false),
        (&[("autoscaling.knative.dev/target-burst-capacity", "-1")], 10, 10.0, -1.0, true),
        (&[("autoscaling.knative.dev/target-burst-capacity", "50"), ("containerConcurrency", "10")], 10, 45.0, 5.0, false),
        (&[("autoscaling.knative.dev/target-burst-capacity", "50"), ("containerConcurrency", "10")], 10, 55.0, -5.0, true),
    ];
    for (pairs, ready, load, ebc, in_path) in cases {
        let mut kpa = Autoscaler::new(config(pairs), 0);
        let d = *drive(&mut kpa, 0, *load, 10, *ready).last().unwrap();
        assert_eq!((d.excess_burst_capacity, d.activator_in_path), (*ebc, *in_path), "{pairs:?}");
    }
}

#[test]
fn without_data_the_last_decision_stands() {
    let mut kpa = Autoscaler::new(AutoscalerConfig { initial_scale: 3, ..AutoscalerConfig::default() }, 0);
    // No sample at all: the deployment keeps its initial scale.
    let d = kpa.decide(0, 0);
    assert_eq!((d.desired, d.recommended), (3, None));
    drive(&mut kpa, 1, 140.0, 10, 3);
    // Samples stop (no ready pod to scrape, no request at the activator): nothing changes.
    let d = kpa.decide(500, 3);
    assert_eq!(d.desired, 2);
}

/// A random but valid configuration.
fn any_config() -> impl Strategy<Value = AutoscalerConfig> {
    (
        0u32..4,
        prop::option::of(1u32..30),
        prop::bool::ANY,
        6u64..120,
        1u32..50,
        prop::sample::select(vec![1.1, 2.0, 10.0, 1000.0]),
        prop::sample::select(vec![1.1, 2.0, 4.0]),
        prop::sample::select(vec![-1.0, 0.0, 50.0, 211.0]),
        0u64..30,
        (1.0f64..200.0, 110.0f64..400.0),
    )
        .prop_map(|(min, max, zero, window, panic_pct, up, down, tbc, delay, (target, threshold))| {
            let max = max.map(|m| m.max(min).max(1));
            let mut settings = Settings::new();
            let mut set = |k: &str, v: String| settings.set(k, &v).unwrap();
            set("autoscaling.knative.dev/min-scale", min.to_string());
            set("autoscaling.knative.dev/max-scale", max.unwrap_or(0).to_string());
            set("enable-scale-to-zero", zero.to_string());
            set("autoscaling.knative.dev/window", format!("{window}s"));
            set("autoscaling.knative.dev/panic-window-percentage", panic_pct.to_string());
            set("max-scale-up-rate", up.to_string());
            set("max-scale-down-rate", down.to_string());
            set("autoscaling.knative.dev/target-burst-capacity", tbc.to_string());
            set("autoscaling.knative.dev/scale-down-delay", format!("{delay}s"));
            set("autoscaling.knative.dev/target", format!("{target:.2}"));
            set("autoscaling.knative.dev/panic-threshold-percentage", format!("{threshold:.0}"));
            AutoscalerConfig::from_settings(&settings).unwrap()
        })
}

/// Loads with idle stretches, plateaus and spikes.
fn any_loads() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec((prop_oneof![Just(0.0), 0.0f64..50.0, 0.0f64..2000.0, 5000.0f64..50_000.0], 1usize..90), 1..12)
        .prop_map(|segments| segments.iter().flat_map(|&(load, n)| std::iter::repeat_n(load, n)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_for_any_load(config in any_config(), loads in any_loads(), delay in 0u64..20, initial in 0u32..3) {
        let trace = Trace { metric: ScaleMetric::Concurrency, start_s: 0, loads };
        let model = ReplicaModel { startup_delay_s: delay, capacity_per_replica: config.total_per_replica, initial_ready: initial };
        let seconds = simulate(&trace, &config, &model);
        for s in &seconds {
            if let Some(max) = config.max_scale {
                prop_assert!(s.desired <= max, "{} above max {max} at {}", s.desired, s.time_s);
            }
            if s.desired == 0 {
                prop_assert!(config.allows_zero(), "zero at {} without scale to zero", s.time_s);
            } else {
                prop_assert!(s.desired >= config.min_scale, "{} below min {} at {}", s.desired, config.min_scale, s.time_s);
            }
        }
        for pair in seconds.windows(2) {
            if pair[0].panic && pair[1].panic {
                prop_assert!(pair[1].desired >= pair[0].desired, "down while panicking at {}: {} → {}", pair[1].time_s, pair[0].desired, pair[1].desired);
            }
        }
    }

    #[test]
    fn decisions_do_not_depend_on_the_epoch(loads in any_loads(), offset in 0u64..1_000_000) {
        let config = AutoscalerConfig::default();
        let model = ReplicaModel { startup_delay_s: 3, capacity_per_replica: 100.0, initial_ready: 1 };
        let at = |start_s| simulate(&Trace { metric: ScaleMetric::Concurrency, start_s, loads: loads.clone() }, &config, &model);
        let (a, b) = (at(0), at(offset));
        prop_assert_eq!(desired(&a), desired(&b));
    }
}
