//! The candle backend: Hugging Face transformer models from safetensors, served as sentence
//! embedding models.
//!
//! A version directory holds what a Hugging Face checkout of a sentence-transformers model holds:
//! `config.json` (a BERT config), `model.safetensors`, `tokenizer.json`, and optionally
//! `modules.json`, `1_Pooling/config.json` and `sentence_bert_config.json`, which choose the
//! pooling, the L2 normalization and the sequence length ([`settings`]). The model takes one
//! BYTES input `text` (one sentence per element) and returns FP32 `embedding` `[rows, hidden]`.
//!
//! It runs on the CPU; with the `cuda` cargo feature, on an NVIDIA GPU ([`device`]).
#![warn(missing_docs)]

pub mod bert;
pub mod cpu_ops;
pub mod device;
pub mod model;
pub mod pooling;
pub mod settings;
pub mod text;
mod weights;

use std::path::{Path, PathBuf};

use thiserror::Error;

use quiver_core::{Backend, BackendError, LoadOptions, Model};

pub use model::EmbeddingModel;

/// What is wrong with a Hugging Face model directory.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HfError {
    /// A file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// A file is not what it should be (invalid JSON, a tokenizer that does not parse).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The model uses something this backend does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// candle failed to build the model from the weights.
    #[error("building the model from the weights: {0}")]
    Weights(String),
    /// The requested device cannot be used.
    #[error("{0}")]
    Device(#[from] device::DeviceError),
}

impl From<HfError> for BackendError {
    fn from(e: HfError) -> Self {
        BackendError::Load(e.to_string())
    }
}

/// Loads Hugging Face models (BERT family) with candle.
#[derive(Debug, Default, Clone, Copy)]
pub struct CandleBackend;

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn serves(&self, platform: &str, backend: &str) -> bool {
        matches!((platform, backend), ("" | "huggingface", "candle" | "huggingface") | ("huggingface", ""))
    }

    fn recognizes(&self, version_dir: &Path) -> bool {
        is_huggingface_dir(version_dir)
    }

    fn gpus(&self) -> Option<Result<Vec<quiver_core::GpuInfo>, String>> {
        device::CUDA_BUILT.then(|| device::gpus().map_err(|e| e.to_string()))
    }

    fn platform(&self) -> &'static str {
        "huggingface"
    }

    fn default_model_filename(&self) -> &'static str {
        "model.safetensors"
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, BackendError> {
        self.load_with(path, &LoadOptions::default())
    }

    fn load_with(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn Model>, BackendError> {
        Ok(Box::new(EmbeddingModel::load(path, options)?))
    }
}

/// Whether `dir` (a version directory) holds a Hugging Face model: a `config.json` and at least
/// one `.safetensors` file.
pub fn is_huggingface_dir(dir: &Path) -> bool {
    let has_weights = std::fs::read_dir(dir)
        .is_ok_and(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "safetensors") && e.path().is_file()));
    has_weights && dir.join("config.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_huggingface_directories() {
        let dir = std::env::temp_dir().join(format!("quiver-hf-detect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert!(!is_huggingface_dir(&dir));
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert!(!is_huggingface_dir(&dir), "config.json alone is not a model");
        std::fs::write(dir.join("model.safetensors"), "").unwrap();
        assert!(is_huggingface_dir(&dir));
        std::fs::remove_file(dir.join("config.json")).unwrap();
        assert!(!is_huggingface_dir(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
