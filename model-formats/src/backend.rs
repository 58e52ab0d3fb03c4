//! The interface between the server and the engines that run models.
//!
//! A [`Backend`] turns files on disk into a [`Model`]; a `Model` describes its tensors and
//! executes batches. The runtime owns queueing, batching and threads; a backend only computes.

use std::path::Path;

use thiserror::Error;

use crate::{DataType, Tensor};

/// Why a backend could not load or run a model.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The model file could not be read or parsed, or uses something unsupported.
    #[error("failed to load model: {0}")]
    Load(String),
    /// The inputs do not fit what the model accepts (caught before execution where possible).
    #[error("{0}")]
    InvalidInput(String),
    /// The engine failed while executing.
    #[error("inference failed: {0}")]
    Execution(String),
}

/// A tensor of a model's signature: its name, datatype and full shape, with -1 for each
/// dimension the model leaves variable (such as the batch dimension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name as the model file spells it.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Full shape; -1 marks a variable dimension.
    pub shape: Vec<i64>,
}

/// The inputs and outputs a model declares, in the order `execute` takes and returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSignature {
    /// Inputs in execution order.
    pub inputs: Vec<TensorInfo>,
    /// Outputs in execution order.
    pub outputs: Vec<TensorInfo>,
}

impl ModelSignature {
    /// Whether every input and output has a variable first dimension, so rows of several
    /// requests can be stacked along it (what Triton calls "supports batching").
    pub fn supports_batching(&self) -> bool {
        self.inputs.iter().chain(&self.outputs).all(|t| t.shape.first() == Some(&-1)) && !self.inputs.is_empty()
    }
}

/// A loaded model, ready to execute. Implementations are shared between executor threads.
pub trait Model: Send + Sync {
    /// The model's inputs and outputs.
    fn signature(&self) -> &ModelSignature;

    /// Runs the model on one batch. `inputs` follow `signature().inputs` order and have been
    /// checked against the signature; the result follows `signature().outputs` order.
    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;
}

/// An engine that can load models of one format.
pub trait Backend: Send + Sync {
    /// The backend name as Triton's `config.pbtxt` `backend` field spells it.
    fn name(&self) -> &'static str;

    /// The platform string reported in model metadata and `config.pbtxt` `platform`.
    fn platform(&self) -> &'static str;

    /// The file name loaded from each version directory when the config names none.
    fn default_model_filename(&self) -> &'static str;

    /// Loads the model file at `path`.
    fn load(&self, path: &Path) -> Result<Box<dyn Model>, BackendError>;
}
