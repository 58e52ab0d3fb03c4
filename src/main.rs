//! `quiver`: the command-line entry point.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use quiver_control_plane as cp;
use quiver_core::Engines;
use quiver_engine_candle::CandleBackend;
use quiver_engine_tract::OnnxBackend;
use quiver_runtime::{
    model::LoadOptions,
    registry::{ControlMode, RegistryOptions},
    server::DEFAULT_MAX_BODY_BYTES,
    Server, ServerOptions,
};
use tracing_subscriber::EnvFilter;

mod edge_args;

/// Quiver: a KServe- and Triton-compatible inference server.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the models of a Triton-layout model repository over HTTP and gRPC.
    Serve(ServeArgs),
    /// Measure a server's throughput and latency under load (a perf_analyzer equivalent).
    Bench(quiver_benches::BenchArgs),
    /// Knative-KPA-style autoscaling tools.
    #[command(subcommand)]
    Autoscaler(AutoscalerCommand),
    /// Print the InferenceService CustomResourceDefinition (YAML) for `kubectl apply -f -`.
    Crd,
    /// Run the server and the control plane in one process: InferenceServices applied with
    /// `quiver apply` are served on its ports (state under --home, $QUIVER_HOME or ~/.quiver).
    Up(UpArgs),
    /// Create or update resources from manifests (multi-document YAML or JSON), like kubectl apply.
    Apply {
        #[command(flatten)]
        args: cp::cli::ApplyArgs,
        #[command(flatten)]
        conn: cp::cli::ConnectionArgs,
    },
    /// List resources or show one (table, wide, json, yaml), like kubectl get.
    Get {
        #[command(flatten)]
        args: cp::cli::GetArgs,
        #[command(flatten)]
        conn: cp::cli::ConnectionArgs,
    },
    /// Delete resources by name or by manifest, like kubectl delete.
    Delete {
        #[command(flatten)]
        args: cp::cli::DeleteArgs,
        #[command(flatten)]
        conn: cp::cli::ConnectionArgs,
    },
    /// Show a resource in detail: spec, conditions, revisions, traffic and recent events.
    Describe {
        #[command(flatten)]
        args: cp::cli::DescribeArgs,
        #[command(flatten)]
        conn: cp::cli::ConnectionArgs,
    },
}

/// `quiver up`: flags as `quiver serve` names them, plus the home.
#[derive(Debug, Args)]
struct UpArgs {
    /// Where the control plane keeps its state (store, managed models, cache, token).
    #[arg(long)]
    home: Option<PathBuf>,
    /// HTTP address to listen on (inference, /metrics and the management API).
    #[arg(long, default_value = "127.0.0.1")]
    http_address: IpAddr,
    /// HTTP port; 0 picks a free port.
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// gRPC address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    grpc_address: IpAddr,
    /// gRPC port; 0 picks a free port.
    #[arg(long, default_value_t = 8001)]
    grpc_port: u16,
    /// Largest accepted HTTP request body or gRPC message, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    http_max_body_bytes: usize,
    /// Backend settings as KEY=VALUE (as `quiver serve --backend-config`).
    #[arg(long = "backend-config", value_name = "[BACKEND,]KEY=VALUE")]
    backend_config: Vec<String>,
    /// The ONNX Runtime shared library for the onnxruntime engine (the `onnxruntime` wheel's
    /// onnxruntime/capi/libonnxruntime.so.*); else ORT_DYLIB_PATH, the dynamic loader's path, then
    /// an active or user Python environment's wheel. Without one, tract serves ONNX models.
    #[arg(long, value_name = "PATH")]
    onnxruntime_library: Option<PathBuf>,
    /// Cluster-wide autoscaler settings as KEY=VALUE: the keys of Knative's config-autoscaler
    /// ConfigMap (e.g. scale-to-zero-grace-period=30s, stable-window=60s), under each
    /// InferenceService's own annotations and fields.
    #[arg(long = "autoscaler-set", value_name = "KEY=VALUE")]
    autoscaler_set: Vec<String>,
    #[command(flatten)]
    edge: edge_args::EdgeArgs,
}

#[derive(Debug, Subcommand)]
enum AutoscalerCommand {
    /// Replay a load trace through the autoscaler and a replica model; print, and plot, the result.
    Simulate(quiver_autoscaler_simulator::SimulateArgs),
}

/// Flags follow tritonserver's names.
#[derive(Debug, Args)]
struct ServeArgs {
    /// The model repository: <repo>/<model>/[config.pbtxt], <repo>/<model>/<version>/model.onnx.
    #[arg(long)]
    model_repository: PathBuf,
    /// HTTP address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    http_address: IpAddr,
    /// HTTP port (KServe V1, Open Inference Protocol REST, /metrics); 0 picks a free port.
    #[arg(long, default_value_t = 8000)]
    http_port: u16,
    /// gRPC address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    grpc_address: IpAddr,
    /// gRPC port (inference.GRPCInferenceService); 0 picks a free port.
    #[arg(long, default_value_t = 8001)]
    grpc_port: u16,
    /// Largest accepted HTTP request body or gRPC message, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BODY_BYTES)]
    http_max_body_bytes: usize,
    /// Backend settings as KEY=VALUE (Triton's --backend-config); supported:
    /// default-max-batch-size=N (max_batch_size auto-complete gives models that can batch).
    #[arg(long = "backend-config", value_name = "[BACKEND,]KEY=VALUE")]
    backend_config: Vec<String>,
    /// The ONNX Runtime shared library for the onnxruntime engine (the `onnxruntime` wheel's
    /// onnxruntime/capi/libonnxruntime.so.*); else ORT_DYLIB_PATH, the dynamic loader's path, then
    /// an active or user Python environment's wheel. Without one, tract serves ONNX models.
    #[arg(long, value_name = "PATH")]
    onnxruntime_library: Option<PathBuf>,
    /// When models load: none (all at startup; no load/unload API), explicit (--load-model
    /// at startup, then the load/unload API), poll (all at startup, then rescans).
    #[arg(long, value_name = "none|explicit|poll", default_value = "none", value_parser = parse_control_mode)]
    model_control_mode: ControlMode,
    /// Explicit mode: a model to load at startup (repeatable; `*` loads every model).
    #[arg(long = "load-model", value_name = "NAME")]
    load_model: Vec<String>,
    /// Poll mode: seconds between repository scans.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    repository_poll_secs: u64,
    /// Milliseconds between refreshes of the GPU metrics (nv_gpu_memory_*; CUDA builds only).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    metrics_interval_ms: u64,
    #[command(flatten)]
    edge: edge_args::EdgeArgs,
}

fn parse_control_mode(s: &str) -> Result<ControlMode, String> {
    s.parse()
}

/// The engines this binary is built with, most preferred first: candle takes the Hugging Face
/// checkouts it recognizes; onnxruntime (when its library loads) and tract serve ONNX, and race
/// for models whose config names neither (see `quiver_core::engines`).
fn engines(onnxruntime_library: Option<PathBuf>) -> Engines {
    let mut engines: Vec<Arc<dyn quiver_core::Backend>> = vec![Arc::new(CandleBackend)];
    #[cfg(feature = "onnxruntime")]
    engines.push(Arc::new(quiver_engine_onnxruntime::OrtBackend::new(onnxruntime_library)));
    #[cfg(not(feature = "onnxruntime"))]
    if let Some(path) = onnxruntime_library {
        tracing::warn!("--onnxruntime-library {} ignored: this binary is built without the onnxruntime feature", path.display());
    }
    engines.push(Arc::new(OnnxBackend));
    Engines::new(engines)
}

fn load_options(settings: &[String], onnxruntime_library: Option<PathBuf>) -> anyhow::Result<LoadOptions> {
    let mut options = LoadOptions { engines: engines(onnxruntime_library), ..LoadOptions::default() };
    for setting in settings {
        // Triton accepts "<backend>,<key>=<value>" and "<key>=<value>".
        let kv = setting.rsplit_once(',').map_or(setting.as_str(), |(_, kv)| kv);
        let (key, value) = kv.split_once('=').with_context(|| format!("--backend-config '{setting}' is not KEY=VALUE"))?;
        match key {
            "default-max-batch-size" => {
                options.default_max_batch_size =
                    value.parse().with_context(|| format!("default-max-batch-size '{value}' is not an integer"))?;
            }
            other => anyhow::bail!("unknown --backend-config setting '{other}'"),
        }
    }
    Ok(options)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.model_repository.is_dir(), "--model-repository {} is not a directory", args.model_repository.display());
    let edge = args.edge.resolve()?;
    let options = ServerOptions {
        model_repository: args.model_repository,
        http_addr: SocketAddr::new(args.http_address, args.http_port),
        grpc_addr: SocketAddr::new(args.grpc_address, args.grpc_port),
        max_body_bytes: args.http_max_body_bytes,
        registry: RegistryOptions {
            load: load_options(&args.backend_config, args.onnxruntime_library.clone())?,
            control_mode: args.model_control_mode,
            startup_models: args.load_model,
        },
        repository_poll_interval: std::time::Duration::from_secs(args.repository_poll_secs.max(1)),
        metrics_interval: std::time::Duration::from_millis(args.metrics_interval_ms),
        http_extension: None,
        limits: edge.limits,
        http_restricted: edge.http_restricted,
        grpc_restricted: edge.grpc_restricted,
    };
    if options.registry.control_mode != ControlMode::Explicit && !options.registry.startup_models.is_empty() {
        anyhow::bail!("--load-model needs --model-control-mode explicit");
    }
    let server = Server::bind(options).await?;
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let edge = args.edge.resolve()?;
    let home = cp::embedded::Home::resolve(args.home).context("the Quiver home")?;
    home.prepare().with_context(|| format!("preparing {}", home.root.display()))?;
    let store = Arc::new(cp::store::Store::open(home.store()).with_context(|| format!("opening {}", home.store().display()))?);
    let token = home.token().context("the management API token")?;
    let mut autoscaler = quiver_autoscaler::Settings::new();
    for assignment in &args.autoscaler_set {
        autoscaler.set_assignment(assignment).map_err(|e| anyhow::anyhow!("--autoscaler-set {assignment}: {e}"))?;
    }
    let kinds: Vec<Arc<dyn cp::api::ResourceKind>> = vec![Arc::new(cp::embedded::InferenceServiceKind::new(store.clone()))];
    let api = Arc::new(cp::api::ManagementApi::new(store.clone(), token, kinds));
    let options = ServerOptions {
        model_repository: home.repository(),
        http_addr: SocketAddr::new(args.http_address, args.http_port),
        grpc_addr: SocketAddr::new(args.grpc_address, args.grpc_port),
        max_body_bytes: args.http_max_body_bytes,
        registry: RegistryOptions {
            load: load_options(&args.backend_config, args.onnxruntime_library.clone())?,
            control_mode: ControlMode::Explicit,
            startup_models: Vec::new(),
        },
        repository_poll_interval: std::time::Duration::from_secs(15),
        metrics_interval: std::time::Duration::from_millis(2000),
        http_extension: Some(Arc::new(cp::embedded::ManagementRoutes(api))),
        limits: edge.limits,
        http_restricted: edge.http_restricted,
        grpc_restricted: edge.grpc_restricted,
    };
    let server = Server::bind(options).await?;
    let http = server.http_addr()?;
    let host = if http.ip().is_unspecified() { std::net::Ipv4Addr::LOCALHOST.into() } else { http.ip() };
    let base_url = format!("http://{}", SocketAddr::new(host, http.port()));
    home.write_server_url(&base_url).context("writing the server URL to the home")?;
    let mut controller = cp::embedded::Controller::new(
        store,
        server.registry(),
        cp::embedded::ControllerOptions { repository: home.repository(), cache: home.cache(), base_url: base_url.clone(), autoscaler },
    );
    // What served before a restart serves again before the first request is answered.
    let restored = controller.restore().await.context("restoring InferenceServices")?;
    tracing::info!(home = %home.root.display(), "control plane up at {base_url}: {restored} InferenceServices restored");
    let controller = tokio::spawn(controller.run());
    let result = server.run(shutdown_signal()).await;
    controller.abort();
    result?;
    Ok(())
}

/// A CLI command's outcome: an error is printed as kubectl prints it and the process exits 1.
fn report(result: Result<(), cp::cli::CliError>) -> anyhow::Result<()> {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("QUIVER_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A backend that panics is caught and answered with a 500; log it as one line rather than
    // the default hook's message on raw stderr.
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Bench(args) => runtime.block_on(quiver_benches::run(args)).map(drop).map_err(anyhow::Error::from),
        Command::Autoscaler(AutoscalerCommand::Simulate(args)) => {
            quiver_autoscaler_simulator::run_simulate(&args, &mut std::io::stdout().lock()).map(drop).map_err(anyhow::Error::from)
        }
        Command::Crd => {
            let yaml = quiver_control_plane::resources::crd::crd_yaml().context("serializing the InferenceService CRD")?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), yaml.as_bytes()).context("writing the CRD to stdout")
        }
        Command::Up(args) => runtime.block_on(up(args)),
        Command::Apply { args, conn } => {
            report(runtime.block_on(cp::cli::run_apply(&conn, &args, &mut std::io::stdout(), &mut std::io::stderr())))
        }
        Command::Get { args, conn } => {
            report(runtime.block_on(cp::cli::run_get(&conn, &args, &mut std::io::stdout(), &mut std::io::stderr())))
        }
        Command::Delete { args, conn } => {
            report(runtime.block_on(cp::cli::run_delete(&conn, &args, &mut std::io::stdout(), &mut std::io::stderr())))
        }
        Command::Describe { args, conn } => {
            report(runtime.block_on(cp::cli::run_describe(&conn, &args, &mut std::io::stdout(), &mut std::io::stderr())))
        }
    }
}
