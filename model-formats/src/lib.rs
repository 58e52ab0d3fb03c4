//! Quiver's model formats: tensors and datatypes of the Open Inference Protocol, Triton's model
//! configuration, and the backends that execute models behind one [`Model`] trait.
#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod datatype;
pub mod onnx;
pub mod tensor;

/// Types generated from `proto/model_config.proto` (Triton's `ModelConfig`, package `inference`).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

pub use backend::{Backend, BackendError, Model, ModelSignature, TensorInfo};
pub use config::{ConfigError, ModelConfig};
pub use datatype::DataType;
pub use tensor::{Tensor, TensorError};
