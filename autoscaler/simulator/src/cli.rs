//! `quiver autoscaler simulate`: the command line over [`crate::simulate`] and [`crate::plot`].

use std::{
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use clap::Args;
use thiserror::Error;

use quiver_autoscaler::{
    config::{AutoscalerConfig, ConfigError, ScaleMetric},
    settings::{Settings, MAX_SETTINGS_BYTES},
};

use crate::{
    plot::{plot, PlotError, PlotFormat},
    simulate::{simulate, ReplicaModel, SimulatedSecond, SimulationSummary},
    trace::{load_trace, Trace, TraceError},
};

/// Default seconds from a replica being asked for to it being ready: a small model server's
/// cold start (image cached, model loaded from local disk).
pub const DEFAULT_STARTUP_DELAY_S: u64 = 5;
/// Longest start-up delay accepted.
pub const MAX_STARTUP_DELAY_S: u64 = 3600;
/// Most replicas a simulation may start with.
pub const MAX_INITIAL_READY: u32 = 1_000_000;

/// Options of `quiver autoscaler simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Load trace: CSV with the header `time_s,concurrency` or `time_s,rps`, one row per second.
    #[arg(long, value_name = "FILE.csv")]
    pub trace: PathBuf,

    /// JSON object of settings: Knative annotations (`autoscaling.knative.dev/target`, ...),
    /// config-autoscaler keys (`stable-window`, ...), `containerConcurrency`, and KServe fields
    /// (`minReplicas`, `maxReplicas`, `scaleTarget`, `scaleMetric`).
    #[arg(long, value_name = "FILE.json")]
    pub config: Option<PathBuf>,

    /// One setting as KEY=VALUE (same keys as --config, which it overrides); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,

    /// Write a plot of the run to this file (.png or .svg).
    #[arg(long, value_name = "FILE.png|svg")]
    pub plot: Option<PathBuf>,

    /// Print one JSON object per simulated second instead of the table and summary.
    #[arg(long)]
    pub json: bool,

    /// Seconds from a replica being asked for to it being ready.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_STARTUP_DELAY_S)]
    pub startup_delay: u64,

    /// Load one ready replica serves, in the trace's unit [default: the per-replica total the
    /// target is a share of: containerConcurrency, the target annotation, or 100 concurrent
    /// requests / 200 rps].
    #[arg(long, value_name = "N")]
    pub replica_capacity: Option<f64>,

    /// Replicas ready when the trace starts [default: the initial scale].
    #[arg(long, value_name = "N")]
    pub initial_ready: Option<u32>,
}

/// Why a simulation could not run.
#[derive(Debug, Error)]
pub enum SimulateError {
    /// The trace file is unreadable or malformed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The configuration is malformed or invalid.
    #[error("invalid autoscaler configuration: {0}")]
    Config(ConfigError),
    /// The configuration file could not be read.
    #[error("cannot read the configuration {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A command-line value is out of range.
    #[error("{0}")]
    Args(String),
    /// The plot could not be written.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Io(std::io::Error),
}

// By hand rather than `#[from]`: the messages above already include the inner error, and a
// `#[from]` would also make it the source, printed a second time as "Caused by".
impl From<ConfigError> for SimulateError {
    fn from(error: ConfigError) -> Self {
        SimulateError::Config(error)
    }
}

impl From<std::io::Error> for SimulateError {
    fn from(error: std::io::Error) -> Self {
        SimulateError::Io(error)
    }
}

/// The outcome of a run: every simulated second and their summary.
#[derive(Debug, Clone)]
pub struct SimulationReport {
    /// The configuration the autoscaler ran with.
    pub config: AutoscalerConfig,
    /// One entry per second of the trace.
    pub seconds: Vec<SimulatedSecond>,
    /// What they amount to.
    pub summary: SimulationSummary,
}

/// Runs the simulation `args` describe, writing the table and summary (or, with `--json`, one
/// JSON object per second) to `out`, and the plot if asked for.
pub fn run_simulate<W: Write>(args: &SimulateArgs, out: &mut W) -> Result<SimulationReport, SimulateError> {
    // Refuse a bad plot name before spending time on the simulation.
    if let Some(path) = &args.plot {
        PlotFormat::of(path)?;
    }
    let trace = load_trace(&args.trace)?;
    let config = resolve_config(args, trace.metric)?;
    let model = replica_model(args, &config)?;
    let seconds = simulate(&trace, &config, &model);
    let summary = SimulationSummary::of(&seconds);

    if let Some(path) = &args.plot {
        let title = format!("quiver autoscaler simulate: {}", file_name(&args.trace));
        plot(path, &title, trace.metric, &seconds)?;
    }
    if args.json {
        for second in &seconds {
            serde_json::to_writer(&mut *out, second).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
        }
    } else {
        write_report(out, args, &trace, &config, &model, &seconds, &summary)?;
    }
    out.flush()?;
    Ok(SimulationReport { config, seconds, summary })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The settings from `--config` and `--set`, with the trace's metric when none is set.
fn resolve_config(args: &SimulateArgs, trace_metric: ScaleMetric) -> Result<AutoscalerConfig, SimulateError> {
    let mut settings = match &args.config {
        Some(path) => {
            let file_error = |reason: String| SimulateError::ConfigFile { path: path.clone(), reason };
            let file = fs::File::open(path).map_err(|e| file_error(e.to_string()))?;
            let mut text = String::new();
            file.take(MAX_SETTINGS_BYTES as u64 + 1).read_to_string(&mut text).map_err(|e| file_error(e.to_string()))?;
            Settings::from_json(&text)?
        }
        None => Settings::new(),
    };
    for assignment in &args.set {
        settings.set_assignment(assignment)?;
    }
    let metric_key = "autoscaling.knative.dev/metric";
    if settings.annotation("metric").is_none() && !settings.contains("scaleMetric") {
        settings.set(metric_key, trace_metric.as_str())?;
    }
    let config = AutoscalerConfig::from_settings(&settings)?;
    if config.metric != trace_metric {
        return Err(SimulateError::Args(format!(
            "the trace holds {trace_metric} but the autoscaler is configured to scale on {}; \
             set {metric_key} (or scaleMetric) to {trace_metric}, or leave it unset",
            config.metric
        )));
    }
    Ok(config)
}

fn replica_model(args: &SimulateArgs, config: &AutoscalerConfig) -> Result<ReplicaModel, SimulateError> {
    if args.startup_delay > MAX_STARTUP_DELAY_S {
        return Err(SimulateError::Args(format!("--startup-delay must be at most {MAX_STARTUP_DELAY_S} seconds")));
    }
    let capacity = args.replica_capacity.unwrap_or(config.total_per_replica);
    if !(capacity.is_finite() && capacity > 0.0) {
        return Err(SimulateError::Args(format!("--replica-capacity must be a positive number, not {capacity}")));
    }
    let initial_ready = args.initial_ready.unwrap_or(config.initial_scale);
    if initial_ready > MAX_INITIAL_READY {
        return Err(SimulateError::Args(format!("--initial-ready must be at most {MAX_INITIAL_READY}")));
    }
    Ok(ReplicaModel { startup_delay_s: args.startup_delay, capacity_per_replica: capacity, initial_ready })
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The human-readable report: the setup, a row for every second where the replica counts,
/// panic or the activator's place changed (plus the first and last), and the summary.
fn write_report<W: Write>(
    out: &mut W,
    args: &SimulateArgs,
    trace: &Trace,
    config: &AutoscalerConfig,
    model: &ReplicaModel,
    seconds: &[SimulatedSecond],
    summary: &SimulationSummary,
) -> std::io::Result<()> {
    writeln!(out, "trace:      {} ({} s of {})", args.trace.display(), trace.loads.len(), trace.metric)?;
    writeln!(out, "autoscaler: {config}")?;
    writeln!(
        out,
        "replicas:   ready {} s after being asked for, each serves {} {}, {} ready at start",
        model.startup_delay_s,
        model.capacity_per_replica,
        trace.metric.unit(),
        model.initial_ready
    )?;
    writeln!(out)?;
    writeln!(out, "{:>8} {:>10} {:>8} {:>6} {:>6} {:>10} {:>10}", "time_s", "load", "desired", "ready", "panic", "queued", "activator")?;
    let changed = |a: &SimulatedSecond, b: &SimulatedSecond| {
        (a.desired, a.ready, a.panic, a.activator_in_path) != (b.desired, b.ready, b.panic, b.activator_in_path)
    };
    for (i, s) in seconds.iter().enumerate() {
        let show = i == 0 || i + 1 == seconds.len() || changed(&seconds[i - 1], s);
        if show {
            writeln!(
                out,
                "{:>8} {:>10.1} {:>8} {:>6} {:>6} {:>10.1} {:>10}",
                s.time_s,
                s.load,
                s.desired,
                s.ready,
                yes_no(s.panic),
                s.queued,
                if s.activator_in_path { "in path" } else { "-" }
            )?;
        }
    }
    writeln!(out)?;
    let (peak_at, peak_load) = summary.peak_load;
    writeln!(out, "summary over {} s:", summary.seconds)?;
    writeln!(out, "  peak load           {peak_load} {} at {peak_at} s", trace.metric.unit())?;
    writeln!(out, "  peak replicas       {} desired, {} ready", summary.peak_desired, summary.peak_ready)?;
    let panic_seconds: u64 = summary.panic_periods.iter().map(|(a, b)| b - a).sum();
    let panics: Vec<String> = summary.panic_periods.iter().map(|(a, b)| format!("{a}-{b} s")).collect();
    writeln!(
        out,
        "  panic mode          {panic_seconds} s in {} period(s){}{}",
        panics.len(),
        if panics.is_empty() { "" } else { ": " },
        panics.join(", ")
    )?;
    writeln!(
        out,
        "  queued requests     in {} s, at most {:.1}, {:.0} request-seconds of waiting",
        summary.queued_seconds, summary.peak_queued, summary.queued_request_seconds
    )?;
    writeln!(out, "  replica-seconds     {}", summary.replica_seconds)?;
    let list = |times: &[u64]| {
        if times.is_empty() {
            "never".to_string()
        } else {
            times.iter().map(|t| format!("{t} s")).collect::<Vec<_>>().join(", ")
        }
    };
    writeln!(out, "  scaled to zero at   {}", list(&summary.scaled_to_zero_at))?;
    writeln!(out, "  scaled from zero at {}", list(&summary.scaled_from_zero_at))?;
    if let Some(path) = &args.plot {
        writeln!(out, "  plot                {}", path.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("quiver-autoscaler-{}-{name}", std::process::id()))
    }

    fn args(trace: &Path) -> SimulateArgs {
        SimulateArgs {
            trace: trace.to_path_buf(),
            config: None,
            set: Vec::new(),
            plot: None,
            json: false,
            startup_delay: DEFAULT_STARTUP_DELAY_S,
            replica_capacity: None,
            initial_ready: None,
        }
    }

    fn write_trace(name: &str, text: &str) -> PathBuf {
        let path = temp_path(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn json_prints_one_object_per_second() {
        let trace = write_trace("json.csv", "time_s,concurrency\n0,10\n1,300\n2,300\n");
        let mut out = Vec::new();
        let report = run_simulate(&SimulateArgs { json: true, ..args(&trace) }, &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        for key in ["time_s", "load", "desired", "ready", "panic", "queued"] {
            assert!(lines[2].get(key).is_some(), "{key} missing from {}", lines[2]);
        }
        assert_eq!(lines[1]["load"], 300.0);
        assert_eq!(lines[1]["panic"], true);
        assert_eq!(report.summary.peak_desired, 3, "ceil(203 / 70): the panic window's average");
        fs::remove_file(trace).ok();
    }

    #[test]
    fn the_table_shows_the_setup_changes_and_summary() {
        let trace = write_trace("table.csv", "time_s,rps\n0,100\n1,100\n2,1000\n");
        let mut out = Vec::new();
        let a = SimulateArgs { set: vec!["maxReplicas=3".into()], ..args(&trace) };
        run_simulate(&a, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for want in ["3 s of rps", "metric rps, target 140", "replicas 1..3", "time_s", "summary over 3 s", "panic mode"] {
            assert!(text.contains(want), "{want:?} missing from:\n{text}");
        }
        fs::remove_file(trace).ok();
    }

    #[test]
    fn plots_are_written_as_png_or_svg() {
        let trace = write_trace("plot.csv", "time_s,concurrency\n0,10\n1,500\n2,500\n3,0\n");
        for (name, magic) in [("plot.png", &b"\x89PNG\r\n\x1a\n"[..]), ("plot.svg", &b"<svg"[..])] {
            let plot = temp_path(name);
            run_simulate(&SimulateArgs { plot: Some(plot.clone()), ..args(&trace) }, &mut Vec::new()).unwrap();
            let bytes = fs::read(&plot).unwrap();
            assert!(bytes.starts_with(magic), "{name} starts with {:?}", &bytes[..8.min(bytes.len())]);
            fs::remove_file(plot).ok();
        }
        fs::remove_file(trace).ok();
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let trace = write_trace("errors.csv", "time_s,concurrency\n0,10\n");
        let config = write_trace("errors.json", r#"{"autoscaling.knative.dev/window": "1s"}"#);
        let cases: Vec<(SimulateArgs, &str)> = vec![
            (SimulateArgs { plot: Some("x.gif".into()), ..args(&trace) }, ".png or .svg"),
            (args(Path::new("/nonexistent.csv")), "cannot read the trace /nonexistent.csv"),
            (SimulateArgs { set: vec!["scaleMetric=rps".into()], ..args(&trace) }, "the trace holds concurrency"),
            (SimulateArgs { set: vec!["scaleMetric=cpu".into()], ..args(&trace) }, "HPA"),
            (SimulateArgs { set: vec!["bogus=1".into()], ..args(&trace) }, "unknown setting 'bogus'"),
            (SimulateArgs { config: Some(config.clone()), ..args(&trace) }, "autoscaling.knative.dev/window"),
            (SimulateArgs { config: Some("/nonexistent.json".into()), ..args(&trace) }, "cannot read the configuration"),
            (SimulateArgs { replica_capacity: Some(0.0), ..args(&trace) }, "--replica-capacity"),
            (SimulateArgs { replica_capacity: Some(f64::NAN), ..args(&trace) }, "--replica-capacity"),
            (SimulateArgs { startup_delay: 100_000, ..args(&trace) }, "--startup-delay"),
            (SimulateArgs { initial_ready: Some(u32::MAX), ..args(&trace) }, "--initial-ready"),
        ];
        for (a, want) in cases {
            let err = run_simulate(&a, &mut Vec::new()).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
        fs::remove_file(trace).ok();
        fs::remove_file(config).ok();
    }
}
