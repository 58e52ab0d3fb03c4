//! `quiver bench`: a load generator for Open Inference Protocol (KServe V2) servers, in the
//! manner of Triton's perf_analyzer, plus the benchmarks built on it.
//!
//! The generator is a client of the wire protocol only. One run:
//! 1. reads the model's metadata (`GET /v2/models/{m}` or gRPC `ModelMetadata`) and, if served,
//!    its configuration (for `max_batch_size`), gives every input a concrete shape
//!    ([`request::resolve_inputs`]), builds the request data ([`input`]: random, zero or a
//!    perf_analyzer JSON file) and encodes each distinct request once (HTTP binary or JSON
//!    tensors, [`request::encode_http_request`]; gRPC raw contents, [`grpc_client`]);
//! 2. for each level, runs a closed loop at a concurrency or an open loop at a request rate
//!    ([`load::Load`], [`schedule`]), each worker on its own connection;
//! 3. measures consecutive windows until the last three agree ([`stability`]) or the trials run
//!    out, scraping Triton's `/metrics` at each window edge ([`metrics`]) for the server's side:
//!    average batch size, queue and compute time per request;
//! 4. reports each level ([`report::LevelReport`]) as a table row or a JSON line, optionally
//!    to CSV, and plots latency against throughput across the sweep ([`plot`]).
//!
//! The layers are separate: [`load`] knows nothing of protocols, the clients nothing of
//! windows, and the schedule and stability rules are pure functions with their own tests.
#![warn(missing_docs)]

pub mod args;
pub mod data;
pub mod grpc_client;
pub mod http_client;
pub mod input;
pub mod load;
pub mod metrics;
pub mod plot;
pub mod report;
pub mod request;
pub mod schedule;
pub mod stability;

use std::{io::Write, sync::Arc, time::Duration};

use ::http::StatusCode;
use indicatif::{ProgressBar, ProgressStyle};
use thiserror::Error;

pub use args::{BenchArgs, Levels, Protocol};
use grpc_client::{GrpcInferClient, GrpcTarget};
use http_client::{encode_segment, HttpConnection, HttpInferClient, HttpTarget, PreparedInfer};
use input::{build_requests, DataFile, InputData};
use load::{InferClient, InferOutcome, Load, Tally, Timeline, WINDOW_GRACE};
use metrics::{ModelCounters, ServerStats};
use report::{table_header, table_row, CsvReport, LatencySummary, LevelReport};
use request::{batches, encode_http_request, resolve_inputs, ModelConfigSummary, ModelMetadata, TensorFormat};
use schedule::{Schedule, SCHEDULE_SEED};
use stability::{reported_windows, Stability, WindowFigures, STABLE_WINDOWS};

/// Why a benchmark could not run.
#[derive(Debug, Error)]
pub enum BenchError {
    /// The command line does not describe a runnable benchmark.
    #[error("invalid arguments: {0}")]
    InvalidArgs(String),
    /// No valid request can be built for the model with these settings.
    #[error("{0}")]
    InvalidInput(String),
    /// The server could not be reached.
    #[error("cannot connect to {0}")]
    Connect(String),
    /// The server answered something unusable.
    #[error("server: {0}")]
    Server(String),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    /// Drawing the plot failed.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// Runs the benchmark `args` describes, printing each level to stdout as it completes (a table,
/// or one JSON object per line with `--json`) and notes to stderr; returns every level's report.
pub async fn run(args: BenchArgs) -> Result<Vec<LevelReport>, BenchError> {
    run_with_output(args, &mut std::io::stdout()).await
}

/// [`run`], writing the table or JSON lines to `out` (flushed after each level).
pub async fn run_with_output<W: Write>(args: BenchArgs, out: &mut W) -> Result<Vec<LevelReport>, BenchError> {
    check_args(&args)?;
    let levels = args.levels();
    let (metadata, max_batch_size) = fetch_model(&args).await?;
    let file = match &args.input_data {
        InputData::File(path) => Some(DataFile::read(path)?),
        _ => None,
    };
    let overrides = file.as_ref().map_or_else(|| args.shapes.clone(), |f| f.shape_overrides(&args.shapes));
    let inputs = resolve_inputs(&metadata, max_batch_size, args.batch_size, &overrides)?;
    let requests = build_requests(&args.input_data, file.as_ref(), &inputs, batches(&metadata, max_batch_size))?;
    let transport = Transport::prepare(&args, &requests)?;
    eprintln!(
        "quiver bench: model '{}' at {} over {}, inputs {}; {} distinct request(s) of {} bytes",
        args.model,
        args.url(),
        args.protocol,
        inputs.iter().map(|i| format!("{} {}{:?}", i.name, i.datatype, i.shape)).collect::<Vec<_>>().join(", "),
        requests.len(),
        transport.first_request_bytes(),
    );
    let mut metrics = MetricsSource::for_args(&args)?;
    if let Some(source) = &mut metrics {
        if source.scrape(&args.model).await.is_none() {
            eprintln!("quiver bench: no Triton metrics for '{}' at {}; reporting the client side only", args.model, source.describe());
            metrics = None;
        }
    }
    let mut csv = match &args.csv {
        Some(path) => Some(CsvReport::new(std::fs::File::create(path)?)),
        None => None,
    };

    if !args.json {
        writeln!(out, "{}", table_header(matches!(levels, Levels::RequestRate(_))))?;
        out.flush()?;
    }
    let level_list: Vec<Level> = match &levels {
        Levels::Concurrency(c) => c.iter().map(|&n| Level::Concurrency(n)).collect(),
        Levels::RequestRate(r) => r.iter().map(|&r| Level::Rate(r)).collect(),
    };
    let mut clients: Vec<AnyClient> = Vec::new();
    let mut reports = Vec::with_capacity(level_list.len());
    for level in level_list {
        let needed = match level {
            Level::Concurrency(n) => n,
            Level::Rate(_) => args.max_concurrency,
        };
        clients.truncate(needed);
        while clients.len() < needed {
            clients.push(transport.client(clients.len()));
        }
        clients = connect_all(clients).await?;
        let timeline = Timeline::after(args.warmup, args.measurement_interval());
        let load = match level {
            Level::Concurrency(_) => Load::closed(std::mem::take(&mut clients), timeline),
            Level::Rate(rate) => {
                let schedule = Schedule::new(rate, args.request_distribution, SCHEDULE_SEED).map_err(BenchError::InvalidArgs)?;
                Load::open(std::mem::take(&mut clients), schedule, timeline)
            }
        };
        let measured = measure(&load, &args, level, metrics.as_mut()).await;
        clients = load.stop().await;

        let report = measured.report(&args, level);
        if report.stable == Some(false) {
            eprintln!(
                "quiver bench: {level}: not stable within {}% after {} windows; reporting the last {STABLE_WINDOWS}",
                args.stability_percentage, report.windows
            );
        }
        for (kind, message) in &measured.reported.first_errors {
            eprintln!("quiver bench: {level}: {} error(s) '{kind}', first: {}", measured.reported.errors[kind], message.trim());
        }
        if args.json {
            let line = serde_json::to_string(&report).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", table_row(&report))?;
        }
        out.flush()?;
        if let Some(csv) = &mut csv {
            csv.write(&report)?;
        }
        reports.push(report);
    }
    if let Some(path) = &args.plot {
        plot::plot_latency_vs_throughput(&reports, path)?;
        eprintln!("quiver bench: plot written to {}", path.display());
    }
    Ok(reports)
}

/// Refuses settings that cannot describe a run, before anything is sent.
fn check_args(args: &BenchArgs) -> Result<(), BenchError> {
    let invalid = |m: &str| Err(BenchError::InvalidArgs(m.to_string()));
    if let Levels::Concurrency(levels) = args.levels() {
        if levels.contains(&0) {
            return invalid("concurrency must be at least 1");
        }
    }
    if args.measurement_interval_ms == 0 {
        return invalid("--measurement-interval must be above 0");
    }
    if args.max_trials == 0 {
        return invalid("--max-trials must be at least 1");
    }
    if args.max_concurrency == 0 {
        return invalid("--max-concurrency must be at least 1");
    }
    if !(args.stability_percentage.is_finite() && args.stability_percentage >= 0.0) {
        return invalid("--stability-percentage must be a non-negative number");
    }
    if args.protocol == Protocol::Grpc
        && (args.input_tensor_format == TensorFormat::Json || args.output_tensor_format == TensorFormat::Json)
    {
        return invalid("gRPC sends tensors as raw contents; --input/--output-tensor-format apply to HTTP");
    }
    if let Some(path) = &args.plot {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("png" | "svg")) {
            return Err(plot::PlotError::Format(path.display().to_string()).into());
        }
    }
    Ok(())
}

/// The model's metadata and, when served, its `max_batch_size`, over the run's protocol.
async fn fetch_model(args: &BenchArgs) -> Result<(ModelMetadata, Option<i64>), BenchError> {
    match args.protocol {
        Protocol::Grpc => {
            let mut client = GrpcTarget::parse(args.url())?.connect().await?;
            grpc_client::fetch_model(&mut client, &args.model).await
        }
        Protocol::Http => {
            let target = HttpTarget::parse(args.url())?;
            let mut control = HttpConnection::connect(&target).await?;
            let model_path = format!("/v2/models/{}", encode_segment(&args.model));
            let (status, body) = control.get(&target, &model_path).await?;
            if status != StatusCode::OK {
                return Err(BenchError::Server(format!("GET {model_path} answered {status}: {}", String::from_utf8_lossy(&body).trim())));
            }
            let metadata: ModelMetadata =
                serde_json::from_slice(&body).map_err(|e| BenchError::Server(format!("model metadata of '{}': {e}", args.model)))?;
            // Triton's configuration extension; a plain V2 server may not have it.
            let max_batch_size = match control.get(&target, &format!("{model_path}/config")).await? {
                (StatusCode::OK, body) => serde_json::from_slice::<ModelConfigSummary>(&body).ok().map(|c| c.max_batch_size),
                _ => None,
            };
            Ok((metadata, max_batch_size))
        }
    }
}

/// The requests of a run, encoded once for the run's protocol.
enum Transport {
    Http { target: HttpTarget, requests: Arc<[PreparedInfer]> },
    Grpc { target: GrpcTarget, requests: Arc<[quiver_core::proto::ModelInferRequest]> },
}

impl Transport {
    fn prepare(args: &BenchArgs, requests: &[input::RequestData]) -> Result<Transport, BenchError> {
        Ok(match args.protocol {
            Protocol::Http => {
                let target = HttpTarget::parse(args.url())?;
                let prepared = requests
                    .iter()
                    .map(|r| {
                        let encoded = encode_http_request(r, args.input_tensor_format, args.output_tensor_format)?;
                        PreparedInfer::new(&target, &args.model, &encoded)
                    })
                    .collect::<Result<Vec<_>, BenchError>>()?;
                Transport::Http { target, requests: prepared.into() }
            }
            Protocol::Grpc => Transport::Grpc {
                target: GrpcTarget::parse(args.url())?,
                requests: requests.iter().map(|r| grpc_client::infer_request(&args.model, r)).collect::<Vec<_>>().into(),
            },
        })
    }

    /// The size of the first request on the wire (the HTTP body, or the gRPC message).
    fn first_request_bytes(&self) -> usize {
        match self {
            Transport::Http { requests, .. } => requests.first().map_or(0, PreparedInfer::body_len),
            Transport::Grpc { requests, .. } => requests.first().map_or(0, prost::Message::encoded_len),
        }
    }

    /// Client number `i` (clients start at different requests of the cycle).
    fn client(&self, i: usize) -> AnyClient {
        match self {
            Transport::Http { target, requests } => AnyClient::Http(HttpInferClient::new(target.clone(), requests.clone(), i)),
            Transport::Grpc { target, requests } => AnyClient::Grpc(GrpcInferClient::new(target.clone(), requests.clone(), i)),
        }
    }
}

/// A client of either protocol, so one load loop drives both.
#[derive(Debug)]
enum AnyClient {
    Http(HttpInferClient),
    Grpc(GrpcInferClient),
}

impl AnyClient {
    async fn connect(&mut self) -> Result<(), BenchError> {
        match self {
            AnyClient::Http(c) => c.connect().await,
            AnyClient::Grpc(c) => c.connect().await,
        }
    }
}

impl InferClient for AnyClient {
    async fn infer(&mut self) -> InferOutcome {
        match self {
            AnyClient::Http(c) => c.infer().await,
            AnyClient::Grpc(c) => c.infer().await,
        }
    }
}

/// Connects every client at once, before the clock starts.
async fn connect_all(clients: Vec<AnyClient>) -> Result<Vec<AnyClient>, BenchError> {
    let mut connecting = tokio::task::JoinSet::new();
    for mut client in clients {
        connecting.spawn(async move { client.connect().await.map(|()| client) });
    }
    let mut connected = Vec::with_capacity(connecting.len());
    while let Some(joined) = connecting.join_next().await {
        connected.push(joined.map_err(|e| BenchError::Connect(e.to_string()))??);
    }
    Ok(connected)
}

/// One load level.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Concurrency(usize),
    Rate(f64),
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Level::Concurrency(n) => write!(f, "concurrency {n}"),
            Level::Rate(r) => write!(f, "request rate {r}/s"),
        }
    }
}

/// What one level's windows measured.
struct Measured {
    /// The reported windows' tallies, merged.
    reported: Tally,
    /// Windows measured.
    windows: usize,
    /// Reported windows.
    reported_windows: usize,
    /// Whether the reported windows agreed (`None`: not checked).
    stable: Option<bool>,
    /// Server counters at the reported windows' start and end.
    server: Option<ServerStats>,
    interval: Duration,
}

impl Measured {
    fn report(&self, args: &BenchArgs, level: Level) -> LevelReport {
        let seconds = self.interval.as_secs_f64() * self.reported_windows as f64;
        let per_second = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let t = &self.reported;
        LevelReport {
            model: args.model.clone(),
            protocol: args.protocol.to_string(),
            concurrency: match level {
                Level::Concurrency(n) => Some(n),
                Level::Rate(_) => None,
            },
            request_rate: match level {
                Level::Concurrency(_) => None,
                Level::Rate(r) => Some(r),
            },
            batch_size: args.batch_size,
            duration_s: seconds,
            windows: self.windows,
            stable: self.stable,
            requests: t.successes,
            requests_per_s: per_second(t.successes),
            throughput_infer_per_s: per_second(t.successes.saturating_mul(args.batch_size as u64)),
            latency_us: LatencySummary::from_histogram(&t.latency_us),
            errors: t.errors.clone(),
            delayed: t.delayed,
            server: self.server,
        }
    }
}

/// Measures windows of `load` until the last three agree or `--max-trials` run out, scraping
/// the server's counters at each window edge; shows progress on a terminal.
async fn measure(load: &Load<AnyClient>, args: &BenchArgs, level: Level, mut metrics: Option<&mut MetricsSource>) -> Measured {
    let timeline = load.timeline();
    let stability = Stability { percentage: args.stability_percentage };
    let check_stability = args.max_trials >= STABLE_WINDOWS;
    let bar = ProgressBar::new(args.max_trials as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}: window {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(level.to_string());
    bar.set_message("warming up");
    bar.enable_steady_tick(Duration::from_millis(200));

    let mut tallies: Vec<Tally> = Vec::new();
    let mut figures: Vec<WindowFigures> = Vec::new();
    // Counters at each window edge: edges[k] opens window k.
    let mut edges: Vec<Option<ModelCounters>> = Vec::new();
    tokio::time::sleep_until(timeline.start).await;
    edges.push(scrape(&mut metrics, &args.model).await);
    let mut stable = false;
    for k in 0..args.max_trials as u64 {
        tokio::time::sleep_until(timeline.window_end(k)).await;
        edges.push(scrape(&mut metrics, &args.model).await);
        tokio::time::sleep_until(timeline.window_end(k) + WINDOW_GRACE).await;
        let tally = load.take_window(k);
        let throughput = tally.successes as f64 * args.batch_size as f64 / timeline.interval.as_secs_f64();
        let mean_latency_us = if tally.latency_us.is_empty() { 0.0 } else { tally.latency_us.mean() };
        figures.push(WindowFigures { throughput, mean_latency_us });
        tallies.push(tally);
        bar.inc(1);
        bar.set_message(format!("{throughput:.1} infer/s, mean {:.2} ms", mean_latency_us / 1000.0));
        if check_stability && stability.is_stable(&figures) {
            stable = true;
            break;
        }
    }
    bar.finish_and_clear();

    let range = reported_windows(tallies.len());
    let mut reported = Tally::default();
    for t in &tallies[range.clone()] {
        reported.merge(t.clone());
    }
    let server = match (edges.get(range.start).copied().flatten(), edges.get(range.end).copied().flatten()) {
        (Some(before), Some(after)) => Some(ServerStats::from_delta(after.since(&before), reported.successes)),
        _ => None,
    };
    Measured {
        reported,
        windows: tallies.len(),
        reported_windows: range.len(),
        stable: check_stability.then_some(stable),
        server,
        interval: timeline.interval,
    }
}

async fn scrape(metrics: &mut Option<&mut MetricsSource>, model: &str) -> Option<ModelCounters> {
    match metrics {
        Some(source) => source.scrape(model).await,
        None => None,
    }
}

/// Where the server's Prometheus metrics are scraped from.
struct MetricsSource {
    target: HttpTarget,
    path: String,
    connection: Option<HttpConnection>,
}

impl MetricsSource {
    /// `--metrics-url`, or `/metrics` on the HTTP server; none for gRPC without the flag.
    fn for_args(args: &BenchArgs) -> Result<Option<MetricsSource>, BenchError> {
        let url = match (&args.metrics_url, args.protocol) {
            (Some(url), _) => url.as_str(),
            (None, Protocol::Http) => args.url(),
            (None, Protocol::Grpc) => return Ok(None),
        };
        let mut target = HttpTarget::parse(url)?;
        let path = if args.metrics_url.is_some() && !target.base_path.is_empty() {
            std::mem::take(&mut target.base_path)
        } else {
            format!("{}/metrics", std::mem::take(&mut target.base_path))
        };
        Ok(Some(MetricsSource { target, path, connection: None }))
    }

    fn describe(&self) -> String {
        format!("{}{}", self.target.authority, self.path)
    }

    /// The model's counters, or `None` when the server has none for it. The connection sits
    /// idle through a window, so if the server has closed it, it is reopened and the scrape
    /// tried once more.
    async fn scrape(&mut self, model: &str) -> Option<ModelCounters> {
        for attempt in 0..2 {
            if attempt > 0 || self.connection.as_ref().is_none_or(HttpConnection::is_closed) {
                self.connection = Some(HttpConnection::connect(&self.target).await.ok()?);
            }
            let connection = self.connection.as_mut()?;
            match connection.get(&self.target, &self.path).await {
                Ok((StatusCode::OK, body)) => return ModelCounters::from_text(std::str::from_utf8(&body).ok()?, model),
                Ok(_) => return None,
                Err(_) => continue,
            }
        }
        None
    }
}
