//! The engines a server runs models on, and how one is chosen for a model.
//!
//! The server is handed its engines (the binary decides which are built in); the runtime never
//! names one. A model's engine follows Triton's config: the `platform`/`backend` it names, or,
//! when it names neither, the first engine that recognizes the version directory's files, else
//! the first that serves the empty platform (the default engine, ONNX in Quiver).

use std::{fmt, path::Path, sync::Arc};

use thiserror::Error;

use crate::{Backend, GpuInfo};

/// Why no engine can run a model.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// No engine serves the config's platform/backend.
    #[error("no backend for platform '{platform}' / backend '{backend}' (this server's engines: {available})")]
    Unsupported {
        /// The config's platform.
        platform: String,
        /// The config's backend.
        backend: String,
        /// The engines there are, with the platform each serves.
        available: String,
    },
}

/// The engines of a server, in order of preference.
#[derive(Clone, Default)]
pub struct Engines(Arc<[Arc<dyn Backend>]>);

impl fmt::Debug for Engines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter().map(|e| e.name())).finish()
    }
}

impl Engines {
    /// The engines, most preferred first.
    pub fn new(engines: Vec<Arc<dyn Backend>>) -> Engines {
        Engines(engines.into())
    }

    /// Every engine, most preferred first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Backend>> {
        self.0.iter()
    }

    /// The engine for a model whose config names `platform` and `backend`, with its version
    /// files in `version_dir`.
    pub fn select(&self, platform: &str, backend: &str, version_dir: &Path) -> Result<&Arc<dyn Backend>, EngineError> {
        let recognized = (platform.is_empty() && backend.is_empty()).then(|| self.0.iter().find(|e| e.recognizes(version_dir))).flatten();
        recognized.or_else(|| self.0.iter().find(|e| e.serves(platform, backend))).ok_or_else(|| EngineError::Unsupported {
            platform: platform.to_string(),
            backend: backend.to_string(),
            available: self.describe(),
        })
    }

    /// The GPUs as the first engine with GPU support reports them; `None` when no engine has
    /// GPU support in this build.
    pub fn gpus(&self) -> Option<Result<Vec<GpuInfo>, String>> {
        self.0.iter().find_map(|e| e.gpus())
    }

    fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".to_string();
        }
        self.0.iter().map(|e| format!("{} ({})", e.name(), e.platform())).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::{BackendError, Model};

    struct Fake {
        name: &'static str,
        platform: &'static str,
        default: bool,
        marker: &'static str,
    }

    impl Backend for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn serves(&self, platform: &str, backend: &str) -> bool {
            (platform.is_empty() && backend.is_empty() && self.default) || platform == self.platform || backend == self.name
        }
        fn recognizes(&self, dir: &Path) -> bool {
            dir.ends_with(self.marker)
        }
        fn platform(&self) -> &'static str {
            self.platform
        }
        fn default_model_filename(&self) -> &'static str {
            "model"
        }
        fn load(&self, _path: &Path) -> Result<Box<dyn Model>, BackendError> {
            Err(BackendError::Load("fake".into()))
        }
    }

    fn engines() -> Engines {
        Engines::new(vec![
            Arc::new(Fake { name: "text", platform: "huggingface", default: false, marker: "hf" }),
            Arc::new(Fake { name: "onnx", platform: "onnx", default: true, marker: "never" }),
        ])
    }

    #[test]
    fn named_platform_or_backend_picks_its_engine() {
        let e = engines();
        let dir = PathBuf::from("/m/1");
        assert_eq!(e.select("huggingface", "", &dir).unwrap().name(), "text");
        assert_eq!(e.select("", "text", &dir).unwrap().name(), "text");
        assert_eq!(e.select("onnx", "", &dir).unwrap().name(), "onnx");
    }

    #[test]
    fn unnamed_config_uses_the_recognizing_engine_else_the_default() {
        let e = engines();
        assert_eq!(e.select("", "", Path::new("/m/hf")).unwrap().name(), "text");
        assert_eq!(e.select("", "", Path::new("/m/1")).unwrap().name(), "onnx");
    }

    #[test]
    fn unknown_platforms_name_the_engines_there_are() {
        let err = engines().select("tensorflow_savedmodel", "", Path::new("/m/1")).err().unwrap().to_string();
        assert!(err.contains("'tensorflow_savedmodel'") && err.contains("text (huggingface), onnx (onnx)"), "{err}");
        assert!(Engines::default().select("", "", Path::new("/m/1")).err().unwrap().to_string().contains("engines: none"));
    }

    #[test]
    fn gpus_come_from_the_first_engine_with_gpu_support() {
        assert!(engines().gpus().is_none());
    }
}
