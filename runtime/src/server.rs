//! Starting and stopping the server: binds both listeners, loads the repository, serves until
//! told to stop, then drains.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use thiserror::Error;
use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

use crate::{
    grpc::InferenceService,
    http::{self, HttpState},
    limits::{self, EdgeLimits, GrpcIncoming},
    metrics,
    proto::grpc_inference_service_server::GrpcInferenceServiceServer,
    registry::{ControlMode, ModelRegistry, RegistryOptions},
    repository::RepositoryError,
    restricted::{RestrictedApis, RestrictedService},
};

/// Default limit on request bodies and gRPC messages: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The Triton-layout model repository.
    pub model_repository: PathBuf,
    /// HTTP listen address (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// gRPC listen address (port 0 picks a free port).
    pub grpc_addr: SocketAddr,
    /// Largest accepted HTTP body or gRPC message.
    pub max_body_bytes: usize,
    /// How models load: control mode, startup models, load settings.
    pub registry: RegistryOptions,
    /// Poll mode: how often the repository is rescanned.
    pub repository_poll_interval: Duration,
    /// How often the GPU metrics are refreshed (Triton's `--metrics-interval-ms`; default
    /// [`crate::metrics::DEFAULT_METRICS_INTERVAL`]). Unused in a build without CUDA.
    pub metrics_interval: Duration,
    /// Extra HTTP routes on the same port (the control plane's management API).
    pub http_extension: Option<Arc<dyn http::HttpExtension>>,
    /// Connection caps, timeouts and header bounds of both listeners.
    pub limits: EdgeLimits,
    /// `--http-restricted-api`.
    pub http_restricted: RestrictedApis,
    /// `--grpc-restricted-protocol`.
    pub grpc_restricted: RestrictedApis,
}

/// How often the autoscaler decides whether idle models scale to zero (the KPA's tick).
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often requests in flight are sampled for it.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Why the server could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The repository could not be read.
    #[error("model repository: {0}")]
    Repository(#[from] RepositoryError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// A bound server, before it serves.
#[derive(Debug)]
pub struct Server {
    options: ServerOptions,
    http: TcpListener,
    grpc: TcpListener,
    registry: Arc<ModelRegistry>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

impl Server {
    /// Binds both listeners and logs the addresses actually bound.
    pub async fn bind(options: ServerOptions) -> Result<Server, StartError> {
        let http = bind(options.http_addr).await?;
        let grpc = bind(options.grpc_addr).await?;
        let registry = Arc::new(ModelRegistry::new(options.model_repository.clone(), options.registry.clone()));
        Ok(Server { options, http, grpc, registry })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// The models: the handle through which an embedding program (the control plane) loads,
    /// unloads and routes them, as the model control and traffic endpoints do.
    pub fn registry(&self) -> Arc<ModelRegistry> {
        self.registry.clone()
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
    /// and returns. Models load after the listeners are up, so liveness answers during the
    /// load and readiness turns true when it is done.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
        let Server { options, http, grpc, registry } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let shutting_down = Arc::new(AtomicBool::new(false));
        if let Ok(addr) = http.local_addr() {
            info!("HTTP server listening on {addr}");
        }
        if let Ok(addr) = grpc.local_addr() {
            info!("gRPC server listening on {addr}");
        }
        let http_state = Arc::new(HttpState {
            registry: registry.clone(),
            max_body_bytes: options.max_body_bytes,
            body_timeout: options.limits.http_body_timeout,
            shutting_down: shutting_down.clone(),
            extension: options.http_extension.clone(),
            openapi: Default::default(),
            restricted: options.http_restricted.clone(),
        });
        let limits = options.limits.clone();
        let fd_limit = limits::raise_fd_limit();
        let http_cap = limits.http_max_connections.unwrap_or_else(|| limits::auto_max_connections(fd_limit));
        let grpc_cap = limits.grpc_max_connections.unwrap_or_else(|| limits::auto_max_connections(fd_limit));
        info!(
            "connection caps: HTTP {http_cap}, gRPC {grpc_cap} (open-file limit {fd_limit}); header timeout {:?}, keep-alive timeout {:?}",
            limits.http_header_timeout, limits.http_keepalive_timeout
        );
        let http_task = tokio::spawn(http::serve(http, http_state, limits.clone(), http_cap, stopped(stop_rx.clone())));
        let gpu_metrics = tokio::spawn(metrics::export_gpu_memory(options.metrics_interval, options.registry.load.engines.clone()));
        let service = GrpcInferenceServiceServer::new(InferenceService::new(registry.clone(), shutting_down.clone()))
            .max_decoding_message_size(options.max_body_bytes)
            .max_encoding_message_size(usize::MAX);
        let service = RestrictedService::new(service, options.grpc_restricted.clone());
        let http2 = &limits.http2;
        let mut grpc_server = tonic::transport::Server::builder()
            .max_concurrent_streams(http2.max_concurrent_streams)
            .http2_max_header_list_size(http2.max_header_list_bytes)
            .http2_max_pending_accept_reset_streams(Some(limits::MAX_PENDING_ACCEPT_RESET_STREAMS))
            .http2_max_local_error_reset_streams(Some(limits::MAX_LOCAL_ERROR_RESET_STREAMS))
            .http2_keepalive_interval(http2.keepalive_time)
            .http2_keepalive_timeout(Some(http2.keepalive_timeout));
        if let Some(age) = http2.max_connection_age {
            grpc_server = grpc_server.max_connection_age(age);
        }
        if let Some(grace) = http2.max_connection_age_grace {
            grpc_server = grpc_server.max_connection_age_grace(grace);
        }
        // The incoming connections set TCP_NODELAY: without it a small response waits out the
        // client's delayed ACK (~40 ms) behind Nagle's algorithm.
        let incoming = GrpcIncoming::new(grpc, grpc_cap, limits.http_header_timeout);
        let grpc_task = tokio::spawn(grpc_server.add_service(service).serve_with_incoming_shutdown(incoming, stopped(stop_rx)));

        let load = registry.load_startup();
        tokio::pin!(shutdown);
        let load_result = tokio::select! {
            result = load => Some(result),
            () = &mut shutdown => None,
        };
        match load_result {
            Some(Ok(summary)) => {
                if summary.failed == 0 {
                    info!("model repository loaded: {} models ready; server ready", summary.ready);
                } else {
                    warn!(
                        "model repository loaded: {} models ready, {} unavailable (see POST /v2/repository/index); \
                         server not ready while a model has no version that serves",
                        summary.ready, summary.failed
                    );
                }
                let background = tokio::spawn(lifecycle(registry.clone(), options.repository_poll_interval));
                shutdown.await;
                background.abort();
            }
            Some(Err(e)) => {
                let _ = stop_tx.send(true);
                return Err(e.into());
            }
            None => {}
        }
        gpu_metrics.abort();
        info!("shutting down: no new connections; waiting for in-flight requests");
        shutting_down.store(true, std::sync::atomic::Ordering::Release);
        let _ = stop_tx.send(true);
        let _ = http_task.await;
        if let Ok(result) = grpc_task.await {
            result?;
        }
        info!("stopped");
        Ok(())
    }
}

/// The lifecycle's timers: scale idle models to zero, and in poll mode rescan the repository.
async fn lifecycle(registry: Arc<ModelRegistry>, poll_interval: Duration) {
    let mut autoscaler = crate::autoscale::IdleAutoscaler::new(registry.clone());
    let mut sample = tokio::time::interval(SAMPLE_INTERVAL);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut idle = tokio::time::interval(IDLE_CHECK_INTERVAL);
    let mut poll = tokio::time::interval(poll_interval.max(Duration::from_millis(100)));
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await; // the startup load was the first scan
    let polling = registry.control_mode() == ControlMode::Poll;
    loop {
        tokio::select! {
            _ = sample.tick() => autoscaler.sample(),
            _ = idle.tick() => autoscaler.decide().await,
            _ = poll.tick(), if polling => registry.poll().await,
        }
    }
}
