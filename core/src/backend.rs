//! The interface between the server and the engines that run models.
//!
//! A [`Backend`] turns files on disk into a [`Model`]; a `Model` describes its tensors and
//! executes batches. The runtime owns queueing, batching and threads; a backend only computes.

use std::{collections::BTreeMap, path::Path};

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

/// The tokens of one text request, as a token-budgeted batcher needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCount {
    /// Tokens of the request's longest sequence: each of its rows is padded to at least this.
    pub longest: usize,
    /// Tokens of all its sequences, without padding (what OpenAI's `usage` reports).
    pub total: usize,
}

/// One tokenized text: the token ids the model embeds, unpadded (every token is real).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequence {
    /// Token ids, special tokens included, truncated to the model's sequence length.
    pub ids: Vec<u32>,
    /// Token type (segment) ids, one per token.
    pub type_ids: Vec<u32>,
}

/// What [`Model::prepare`] made of one request's inputs before it was queued: its texts,
/// tokenized once, one [`Sequence`] per text element in element order. It travels with the
/// request to the batch, so the engine pads it rather than tokenizing again, and the batcher
/// bounds padded tokens with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    /// One sequence per text element of the request.
    pub sequences: Vec<Sequence>,
}

impl Encoded {
    /// The request's longest sequence and its total tokens.
    pub fn count(&self) -> TokenCount {
        let lengths = self.sequences.iter().map(|s| s.ids.len());
        TokenCount { longest: lengths.clone().max().unwrap_or(0), total: lengths.sum() }
    }
}

/// Where a model executes (from the config's `instance_group`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Placement {
    /// Host CPU.
    #[default]
    Cpu,
    /// The GPU with this CUDA ordinal.
    Gpu(usize),
}

/// An execution accelerator of the config's `optimization { execution_accelerators }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accelerator {
    /// Its name (`tensorrt`, `cuda`, `openvino`, ...).
    pub name: String,
    /// Its `parameters` map.
    pub parameters: BTreeMap<String, String>,
}

/// The config's `optimization` settings an engine may honour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Optimization {
    /// `optimization { graph { level } }`: -1 basic, 0 the engine's default, 1 all; `None` when unset.
    pub graph_level: Option<i32>,
    /// `execution_accelerators { gpu_execution_accelerator }`, in order.
    pub gpu_accelerators: Vec<Accelerator>,
    /// `execution_accelerators { cpu_execution_accelerator }`, in order.
    pub cpu_accelerators: Vec<Accelerator>,
}

/// What a load needs beyond the model file: where it runs and the config's string parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The device to load onto.
    pub placement: Placement,
    /// `parameters { key value { string_value } }` of the model config.
    pub parameters: BTreeMap<String, String>,
    /// The config's `optimization` settings.
    pub optimization: Optimization,
}

/// A loaded model, ready to execute. Implementations are shared between executor threads.
pub trait Model: Send + Sync {
    /// The model's inputs and outputs.
    fn signature(&self) -> &ModelSignature;

    /// Whether [`Model::prepare`] does work for this model. The runtime calls `prepare` only
    /// when it does (on worker threads, never on the async reactor), so models without a
    /// preparation step pay nothing for it.
    fn prepares(&self) -> bool {
        false
    }

    /// For models that take text: tokenizes one request's inputs (checked against the
    /// signature, model-facing shapes) once, before the request is queued, so batches can be
    /// bounded by padded tokens and [`Model::execute_prepared`] need not tokenize again. It
    /// also rejects text the model cannot take (such as invalid UTF-8) before the request joins
    /// a batch. `None` for models that prepare nothing.
    fn prepare(&self, _inputs: &[Tensor]) -> Result<Option<Encoded>, BackendError> {
        Ok(None)
    }

    /// Runs the model on one batch. `inputs` follow `signature().inputs` order and have been
    /// checked against the signature; the result follows `signature().outputs` order.
    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError>;

    /// Runs the model on one batch whose requests were prepared: `prepared` holds what
    /// [`Model::prepare`] returned for each request of the batch, in the order their rows are
    /// stacked in `inputs`. The default ignores it and calls [`Model::execute`].
    fn execute_prepared(&self, inputs: Vec<Tensor>, _prepared: &[Encoded]) -> Result<Vec<Tensor>, BackendError> {
        self.execute(inputs)
    }

    /// The engine that runs it, when the backend that loaded it chose one of several (see
    /// [`crate::engines`]); `None` means the loading backend's own name.
    fn engine(&self) -> Option<&'static str> {
        None
    }
}

/// A GPU as its driver reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// CUDA ordinal.
    pub ordinal: usize,
    /// Device name.
    pub name: String,
    /// The device's UUID as NVML and Triton write it (`GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`),
    /// the `gpu_uuid` label of the GPU metrics.
    pub uuid: String,
    /// Free memory, bytes.
    pub free_bytes: usize,
    /// Total memory, bytes.
    pub total_bytes: usize,
}

/// An engine that can load models of one format.
pub trait Backend: Send + Sync {
    /// The backend name as Triton's `config.pbtxt` `backend` field spells it.
    fn name(&self) -> &'static str;

    /// Whether this engine runs models whose config names `platform` and `backend` (either may
    /// be empty; both empty asks for the server's default engine).
    fn serves(&self, platform: &str, backend: &str) -> bool;

    /// Whether `version_dir` holds a model in this engine's own format, for configs that name
    /// neither platform nor backend (a Hugging Face checkout, say). The default recognizes
    /// nothing.
    fn recognizes(&self, _version_dir: &Path) -> bool {
        false
    }

    /// The GPUs and their memory as this engine's driver reports them; `None` when the engine
    /// has no GPU support in this build (no GPU metrics are then exported for it).
    fn gpus(&self) -> Option<Result<Vec<GpuInfo>, String>> {
        None
    }

    /// Why this engine cannot run models in this process (its shared library is missing, say);
    /// `None` when it can. An unavailable engine is skipped for models that did not ask for it.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// The platform string reported in model metadata and `config.pbtxt` `platform`.
    fn platform(&self) -> &'static str;

    /// The file name loaded from each version directory when the config names none.
    fn default_model_filename(&self) -> &'static str;

    /// Loads the model file at `path`.
    fn load(&self, path: &Path) -> Result<Box<dyn Model>, BackendError>;

    /// Loads the model file at `path` with `options`. Backends that run only on the CPU and
    /// take no parameters keep this default, which refuses a GPU placement.
    fn load_with(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn Model>, BackendError> {
        match options.placement {
            Placement::Cpu => self.load(path),
            Placement::Gpu(ordinal) => Err(BackendError::Load(format!(
                "backend '{}' executes on the CPU only; it cannot place an instance on GPU {ordinal} (use KIND_CPU)",
                self.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_request_counts_its_longest_and_total_tokens() {
        let sequence = |n: usize| Sequence { ids: vec![1; n], type_ids: vec![0; n] };
        let encoded = Encoded { sequences: vec![sequence(3), sequence(5), sequence(0)] };
        assert_eq!(encoded.count(), TokenCount { longest: 5, total: 8 });
        assert_eq!(Encoded::default().count(), TokenCount::default());
    }
}
