//! Quiver's model formats: tensors and datatypes of the Open Inference Protocol, Triton's model
//! configuration, and the backends that execute models behind one [`Model`] trait: tract for
//! ONNX, candle for Hugging Face transformers (safetensors).
#![warn(missing_docs)]

pub mod backend;
pub mod candle;
pub mod config;
pub mod datatype;
pub mod onnx;
pub mod tensor;

/// Types generated from `proto/model_config.proto` (Triton's `ModelConfig`, package `inference`).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/inference.rs"));
}

pub use backend::{Backend, BackendError, LoadOptions, Model, ModelSignature, Placement, TensorInfo, TokenCount};
pub use config::{ConfigError, ModelConfig};
pub use datatype::DataType;
pub use tensor::{Tensor, TensorError};
