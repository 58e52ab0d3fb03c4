//! The Quiver model server.
//!
//! Requests arrive at a protocol edge ([`http`] for KServe V1 and the Open Inference Protocol's
//! REST binding, [`grpc`] for its gRPC binding), are decoded into the protocol-neutral
//! [`infer::InferRequest`], routed by the [`registry`] to a loaded model version, checked
//! against its configuration, queued on that version's [`scheduler`] and executed by a backend
//! from the engines the server is given (`quiver_core::Engines`). Errors are one enum, [`error::ServeError`], mapped to HTTP and
//! gRPC status at each edge.
#![warn(missing_docs)]

mod autoscale;
mod edge;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod http;
pub mod infer;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod registry;
pub mod repository;
pub mod restricted;
pub mod scheduler;
pub mod server;
pub mod tokenize;
pub mod validate;

/// The protocol's generated types (package `inference`), from the core crate.
pub use quiver_core::proto;

pub use error::ServeError;
pub use server::{Server, ServerOptions};

/// The server name reported by `/v2` and `ServerMetadata`.
pub const SERVER_NAME: &str = "quiver";
/// The server version reported by `/v2` and `ServerMetadata`.
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// Protocol extensions this server implements, as listed by `/v2`.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_configuration", "model_repository"];
