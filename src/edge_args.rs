//! The flags of the listeners' limits and restricted APIs, shared by `quiver serve` and
//! `quiver up`. Names are tritonserver's where it has the knob (`--grpc-keepalive-time`, ...,
//! `--http-restricted-api`, `--grpc-restricted-protocol`, in Triton's units).

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use quiver_runtime::{
    limits::{self, EdgeLimits, Http2Limits},
    restricted::{RestrictedApis, GRPC_HEADER_PREFIX},
};

/// Connection limits, timeouts and endpoint restrictions.
#[derive(Debug, Args)]
pub(crate) struct EdgeArgs {
    /// Seconds a client has to send a complete request head, counted from the accept (or from
    /// the first byte of a later request on a kept-alive connection); then it is closed.
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_HEADER_TIMEOUT.as_secs())]
    http_header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body once its head is complete; past it
    /// the answer is 408 and the connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_BODY_TIMEOUT.as_secs())]
    http_body_timeout_secs: u64,
    /// Seconds an HTTP connection may sit idle between requests before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = limits::DEFAULT_KEEPALIVE_TIMEOUT.as_secs())]
    http_keepalive_timeout_secs: u64,
    /// Concurrent HTTP connections; past it new ones wait in the listen backlog. Default: a
    /// quarter of the open-file limit (less 256), between 64 and 16384.
    #[arg(long, value_name = "N")]
    http_max_connections: Option<usize>,
    /// Largest HTTP/1 request head (request line and headers) in bytes, at least 8192; past it
    /// the answer is 431 and the connection is closed.
    #[arg(long, value_name = "BYTES", default_value_t = limits::DEFAULT_MAX_HEADER_BYTES)]
    http_max_header_size: usize,
    /// Most headers an HTTP/1 request may carry; past it the answer is 431.
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_HEADERS)]
    http_max_headers: usize,
    /// Concurrent gRPC connections; past it new ones wait in the listen backlog. Default as
    /// --http-max-connections.
    #[arg(long, value_name = "N")]
    grpc_max_connections: Option<usize>,
    /// Concurrent streams per HTTP/2 connection (gRPC, and HTTP/2 on the HTTP port).
    #[arg(long, value_name = "N", default_value_t = limits::DEFAULT_MAX_CONCURRENT_STREAMS)]
    grpc_max_concurrent_streams: u32,
    /// Largest decoded HTTP/2 header list in bytes (gRPC, and HTTP/2 on the HTTP port).
    #[arg(long, value_name = "BYTES", default_value_t = limits::DEFAULT_MAX_HEADER_LIST_BYTES)]
    grpc_max_header_list_size: u32,
    /// Milliseconds between HTTP/2 keep-alive pings on a silent connection; 0 sends none
    /// (Triton's flag and default).
    #[arg(long, value_name = "MS", default_value_t = limits::DEFAULT_KEEPALIVE_TIME.as_millis() as u64)]
    grpc_keepalive_time: u64,
    /// Milliseconds a keep-alive ping may go unacknowledged before the connection is closed.
    #[arg(long, value_name = "MS", default_value_t = limits::DEFAULT_KEEPALIVE_PING_TIMEOUT.as_millis() as u64)]
    grpc_keepalive_timeout: u64,
    /// Milliseconds after which a gRPC connection is asked to go away (default: no limit).
    #[arg(long, value_name = "MS")]
    grpc_max_connection_age: Option<u64>,
    /// Milliseconds a gRPC connection past its age has to finish its calls.
    #[arg(long, value_name = "MS")]
    grpc_max_connection_age_grace: Option<u64>,
    /// Endpoints that need a header, as Triton: <category>[,<category>...]:<HEADER>=<VALUE>
    /// (repeatable; categories: health, metadata, inference, shared-memory, model-config,
    /// model-repository, statistics, trace, logging; the traffic endpoints are
    /// model-repository). Others get 403.
    #[arg(long = "http-restricted-api", value_name = "CATEGORIES:HEADER=VALUE")]
    http_restricted_api: Vec<String>,
    /// gRPC methods that need a header, same syntax; clients send it as
    /// triton-grpc-protocol-<HEADER>. Others get UNAVAILABLE.
    #[arg(long = "grpc-restricted-protocol", value_name = "CATEGORIES:HEADER=VALUE")]
    grpc_restricted_protocol: Vec<String>,
}

/// What the flags configure.
#[derive(Debug)]
pub(crate) struct Edge {
    pub(crate) limits: EdgeLimits,
    pub(crate) http_restricted: RestrictedApis,
    pub(crate) grpc_restricted: RestrictedApis,
}

impl EdgeArgs {
    /// Checks the flags and builds the settings.
    pub(crate) fn resolve(&self) -> anyhow::Result<Edge> {
        anyhow::ensure!(self.http_header_timeout_secs > 0, "--http-header-timeout-secs must be at least 1");
        anyhow::ensure!(self.http_body_timeout_secs > 0, "--http-body-timeout-secs must be at least 1");
        anyhow::ensure!(self.http_keepalive_timeout_secs > 0, "--http-keepalive-timeout-secs must be at least 1");
        anyhow::ensure!(
            self.http_max_header_size >= limits::MIN_MAX_HEADER_BYTES,
            "--http-max-header-size must be at least {} bytes",
            limits::MIN_MAX_HEADER_BYTES
        );
        anyhow::ensure!(self.http_max_headers > 0, "--http-max-headers must be at least 1");
        anyhow::ensure!(self.http_max_connections != Some(0), "--http-max-connections must be at least 1");
        anyhow::ensure!(self.grpc_max_connections != Some(0), "--grpc-max-connections must be at least 1");
        anyhow::ensure!(self.grpc_max_concurrent_streams > 0, "--grpc-max-concurrent-streams must be at least 1");
        anyhow::ensure!(self.grpc_keepalive_timeout > 0, "--grpc-keepalive-timeout must be at least 1 ms");
        let limits = EdgeLimits {
            http_header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            http_keepalive_timeout: Duration::from_secs(self.http_keepalive_timeout_secs),
            http_body_timeout: Duration::from_secs(self.http_body_timeout_secs),
            http_max_connections: self.http_max_connections,
            http_max_header_bytes: self.http_max_header_size,
            http_max_headers: self.http_max_headers,
            grpc_max_connections: self.grpc_max_connections,
            http2: Http2Limits {
                max_concurrent_streams: self.grpc_max_concurrent_streams,
                max_header_list_bytes: self.grpc_max_header_list_size,
                keepalive_time: (self.grpc_keepalive_time > 0).then(|| Duration::from_millis(self.grpc_keepalive_time)),
                keepalive_timeout: Duration::from_millis(self.grpc_keepalive_timeout),
                max_connection_age: self.grpc_max_connection_age.map(Duration::from_millis),
                max_connection_age_grace: self.grpc_max_connection_age_grace.map(Duration::from_millis),
            },
        };
        let http_restricted = RestrictedApis::parse(&self.http_restricted_api, "").context("--http-restricted-api")?;
        let grpc_restricted =
            RestrictedApis::parse(&self.grpc_restricted_protocol, GRPC_HEADER_PREFIX).context("--grpc-restricted-protocol")?;
        Ok(Edge { limits, http_restricted, grpc_restricted })
    }
}
