//! Quiver's core: the tensors and datatypes of the Open Inference Protocol, Triton's model
//! configuration, the [`Model`]/[`Backend`] traits every engine implements, the [`Engines`] a
//! server chooses from, and the protocol's protos. Engines (tract, candle), the runtime and
//! the load generator depend on it; it knows no HTTP, no engine and no server.
#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod datatype;
pub mod engines;
mod fastest;
pub mod tensor;

/// Types generated from `proto/model_config.proto` (Triton's `ModelConfig`) and, with the
/// `grpc` feature, from `proto/grpc_service.proto` (the `inference.GRPCInferenceService`
/// messages, server and client): package `inference`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    #[cfg(feature = "grpc")]
    tonic::include_proto!("inference");
    #[cfg(not(feature = "grpc"))]
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

pub use backend::{
    Accelerator, Backend, BackendError, Encoded, GpuInfo, LoadOptions, Model, ModelSignature, Optimization, Placement, Sequence,
    TensorInfo, TokenCount,
};
pub use config::{ConfigError, ModelConfig};
pub use datatype::DataType;
pub use engines::{EngineError, Engines};
pub use tensor::{Tensor, TensorError};
