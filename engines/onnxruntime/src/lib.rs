//! The ONNX engine on ONNX Runtime, loaded at run time.
//!
//! The library is not linked: it is loaded (`ort`'s `load-dynamic`) from the `onnxruntime`
//! wheel on PyPI or any ONNX Runtime build of version 1.17 or newer, found as [`library`]
//! describes. When none loads, the engine reports itself unavailable with the reason, models that
//! ask for it fail to load with that reason, and tract serves the rest.
#![warn(missing_docs)]

mod library;
mod model;
mod options;

use std::path::{Path, PathBuf};

use quiver_core::{Backend, BackendError, LoadOptions, Model};

pub use model::OrtModel;

/// The engine's name: Triton's `backend: "onnxruntime"`.
pub const NAME: &str = "onnxruntime";

/// Loads `.onnx` files into ONNX Runtime sessions.
#[derive(Debug, Clone, Default)]
pub struct OrtBackend {
    library: Option<PathBuf>,
}

impl OrtBackend {
    /// An engine that loads the library from `library` when given, else from `ORT_DYLIB_PATH`,
    /// the dynamic loader's path or an active or user Python environment's `onnxruntime` wheel.
    /// The library is loaded here, once per process (the first engine made decides).
    pub fn new(library: Option<PathBuf>) -> OrtBackend {
        let backend = OrtBackend { library };
        match library::load(backend.library.as_deref()) {
            Ok((_, path)) => tracing::info!("onnxruntime engine: library {}", path.display()),
            Err(why) => tracing::info!("onnxruntime engine not available: {why}"),
        }
        backend
    }

    /// The library file in use, or why none could be loaded.
    pub fn library(&self) -> Result<&'static Path, String> {
        library::load(self.library.as_deref()).as_ref().map(|(_, path)| path.as_path()).map_err(Clone::clone)
    }

    /// Loads the model at `path` as its concrete type (benchmarks and tests use it directly).
    pub fn load_model(&self, path: &Path, options: &LoadOptions) -> Result<OrtModel, BackendError> {
        let (environment, _) =
            library::load(self.library.as_deref()).as_ref().map_err(|why| BackendError::Load(format!("{NAME} not available: {why}")))?;
        let settings = options::SessionSettings::from_options(options)?;
        OrtModel::load(environment, path, settings)
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Triton's ONNX platform and backend names; and a default engine when a config names neither.
    fn serves(&self, platform: &str, backend: &str) -> bool {
        matches!(platform, "" | "onnxruntime_onnx") && matches!(backend, "" | NAME)
    }

    fn unavailable(&self) -> Option<String> {
        self.library().err()
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }

    fn default_model_filename(&self) -> &'static str {
        "model.onnx"
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, BackendError> {
        self.load_with(path, &LoadOptions::default())
    }

    fn load_with(&self, path: &Path, options: &LoadOptions) -> Result<Box<dyn Model>, BackendError> {
        Ok(Box::new(self.load_model(path, options)?))
    }
}
