//! `quiver bench`: a load generator for Open Inference Protocol (KServe V2) servers, in the
//! manner of Triton's perf_analyzer, plus the benchmarks built on it.
//!
//! The generator is a client of the wire protocol only. One run:
//! 1. reads the model's metadata (`GET /v2/models/{m}`) and, if served, its configuration
//!    (`/config`, for `max_batch_size`), gives every input a concrete shape
//!    ([`request::resolve_inputs`]) and encodes one binary-tensor infer request
//!    ([`request::encode_infer_request`]);
//! 2. for each concurrency level, runs a closed loop ([`load::ClosedLoop`]): N workers, each on
//!    its own keep-alive connection ([`http_client::HttpInferClient`]), send that request back to back
//!    through a warmup and then a measurement window;
//! 3. scrapes `/metrics` as the window opens and closes ([`metrics::ModelCounters`]) for the
//!    server's side: average batch size, queue and compute time per request;
//! 4. reports each level ([`report::LevelReport`]) as a table row or a JSON line.
//!
//! The layers are separate so later modes (request rate, stability windows) can reuse them:
//! [`load`] knows nothing of HTTP, and [`http_client`] nothing of windows.
#![warn(missing_docs)]

pub mod args;
pub mod data;
pub mod http_client;
pub mod load;
pub mod metrics;
pub mod report;
pub mod request;

use std::io::Write;

use ::http::StatusCode;
use thiserror::Error;

pub use args::{BenchArgs, Protocol};
use http_client::{encode_segment, HttpConnection, HttpInferClient, HttpTarget, PreparedInfer};
use load::{ClosedLoop, Window};
use metrics::{ModelCounters, ServerStats};
use report::{table_header, table_row, LatencySummary, LevelReport};
use request::{encode_infer_request, resolve_inputs, ModelConfigSummary, ModelMetadata};

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
    /// The feature is not implemented yet.
    #[error("{0}")]
    Unsupported(String),
    /// Writing the report failed.
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the benchmark `args` describes, printing each level to stdout as it completes (a table,
/// or one JSON object per line with `--json`) and notes to stderr; returns every level's report.
pub async fn run(args: BenchArgs) -> Result<Vec<LevelReport>, BenchError> {
    run_with_output(args, &mut std::io::stdout()).await
}

/// [`run`], writing the table or JSON lines to `out` (flushed after each level).
pub async fn run_with_output<W: Write>(args: BenchArgs, out: &mut W) -> Result<Vec<LevelReport>, BenchError> {
    if args.protocol != Protocol::Http {
        return Err(BenchError::Unsupported(format!(
            "protocol '{}' is not supported by quiver bench yet; use -i http",
            args.protocol
        )));
    }
    let levels = args.concurrency_levels();
    if levels.contains(&0) {
        return Err(BenchError::InvalidArgs("concurrency must be at least 1".into()));
    }
    if args.duration.is_zero() {
        return Err(BenchError::InvalidArgs("--duration must be above 0".into()));
    }
    let target = HttpTarget::parse(&args.url)?;
    let mut control = HttpConnection::connect(&target).await?;

    let model_path = format!("/v2/models/{}", encode_segment(&args.model));
    let (status, body) = control.get(&target, &model_path).await?;
    if status != StatusCode::OK {
        return Err(BenchError::Server(format!(
            "GET {model_path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let metadata: ModelMetadata =
        serde_json::from_slice(&body).map_err(|e| BenchError::Server(format!("model metadata of '{}': {e}", args.model)))?;
    // Triton's configuration extension; a plain V2 server may not have it.
    let max_batch_size = match control.get(&target, &format!("{model_path}/config")).await? {
        (StatusCode::OK, body) => serde_json::from_slice::<ModelConfigSummary>(&body).ok().map(|c| c.max_batch_size),
        _ => None,
    };
    let inputs = resolve_inputs(&metadata, max_batch_size, args.batch_size, &args.shapes)?;
    let encoded = encode_infer_request(&inputs)?;
    let prepared = PreparedInfer::new(&target, &args.model, &encoded)?;
    eprintln!(
        "quiver bench: model '{}' at {}{}, inputs {}; request body {} bytes",
        args.model,
        target.authority,
        target.base_path,
        inputs.iter().map(|i| format!("{} {}{:?}", i.name, i.datatype, i.shape)).collect::<Vec<_>>().join(", "),
        encoded.body.len()
    );
    let has_metrics = scrape(&mut control, &target, &args.model).await.is_some();
    if !has_metrics {
        eprintln!("quiver bench: no Triton metrics for '{}' at /metrics; reporting the client side only", args.model);
    }

    if !args.json {
        writeln!(out, "{}", table_header())?;
        out.flush()?;
    }
    let mut clients: Vec<HttpInferClient> = Vec::new();
    let mut reports = Vec::with_capacity(levels.len());
    for concurrency in levels {
        clients.truncate(concurrency);
        while clients.len() < concurrency {
            clients.push(HttpInferClient::new(target.clone(), prepared.clone()));
        }
        // Connect before the clock starts, all at once.
        let mut connecting = tokio::task::JoinSet::new();
        for mut client in clients.drain(..) {
            connecting.spawn(async move { client.connect().await.map(|()| client) });
        }
        while let Some(joined) = connecting.join_next().await {
            clients.push(joined.map_err(|e| BenchError::Connect(e.to_string()))??);
        }

        let running = ClosedLoop::start(std::mem::take(&mut clients), Window::after(args.warmup, args.duration));
        let window = running.window();
        let mut before = None;
        if has_metrics {
            tokio::time::sleep_until(window.start).await;
            before = scrape(&mut control, &target, &args.model).await;
        }
        tokio::time::sleep_until(window.end).await;
        let after = if has_metrics { scrape(&mut control, &target, &args.model).await } else { None };
        let (returned, tally) = running.finish().await;
        clients = returned;

        let seconds = window.duration().as_secs_f64();
        let server = match (before, after) {
            (Some(b), Some(a)) => Some(ServerStats::from_delta(a.since(&b), tally.successes)),
            _ => None,
        };
        for (kind, message) in &tally.first_errors {
            eprintln!("quiver bench: concurrency {concurrency}: {} error(s) '{kind}', first: {}", tally.errors[kind], message.trim());
        }
        let report = LevelReport {
            model: args.model.clone(),
            protocol: args.protocol.to_string(),
            concurrency,
            batch_size: args.batch_size,
            duration_s: seconds,
            requests: tally.successes,
            requests_per_s: tally.successes as f64 / seconds,
            throughput_infer_per_s: (tally.successes * args.batch_size as u64) as f64 / seconds,
            latency_us: LatencySummary::from_histogram(&tally.latency_us),
            errors: tally.errors,
            server,
        };
        if args.json {
            let line = serde_json::to_string(&report).map_err(std::io::Error::other)?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}", table_row(&report))?;
        }
        out.flush()?;
        reports.push(report);
    }
    Ok(reports)
}

/// The model's counters from `/metrics`, or `None` when the server has none for it. The
/// control connection sits idle through a measurement, so if the server has closed it, it is
/// reopened and the scrape tried once more.
async fn scrape(control: &mut HttpConnection, target: &HttpTarget, model: &str) -> Option<ModelCounters> {
    for attempt in 0..2 {
        if attempt > 0 || control.is_closed() {
            *control = HttpConnection::connect(target).await.ok()?;
        }
        match control.get(target, "/metrics").await {
            Ok((StatusCode::OK, body)) => return ModelCounters::from_text(std::str::from_utf8(&body).ok()?, model),
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}
