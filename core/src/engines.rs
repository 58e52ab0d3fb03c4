//! The engines a server runs models on, and how one is chosen for a model.
//!
//! The server is handed its engines (the binary decides which are built in); the runtime never
//! names one. A model's engine follows Triton's config:
//!
//! - a `backend` that an engine is named after asks for that engine: it serves the model, or the
//!   load fails with why it cannot (`onnxruntime not available: ...`);
//! - otherwise a `platform`/`backend` picks the first engine, in order of preference, that serves
//!   it and is available; engines that are not available are skipped with a warning (so
//!   `platform: "onnxruntime_onnx"` runs on onnxruntime where its library is found, else on tract);
//! - a config that names neither goes to the first engine that recognizes the version
//!   directory's files, else to the engines that serve the empty platform (ONNX in Quiver): when
//!   several are available, each loads the model and the fastest on a sample batch keeps it.

use std::{fmt, path::Path, sync::Arc};

use thiserror::Error;

use crate::{fastest::Fastest, Backend, GpuInfo};

/// Why no engine can run a model.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The engine the config's `backend` names cannot run models in this process.
    #[error("{engine} not available: {reason}")]
    Unavailable {
        /// The engine's name.
        engine: String,
        /// Why (its library is missing, say).
        reason: String,
    },
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
    /// files in `version_dir` (see the module documentation for the rules).
    pub fn select(&self, platform: &str, backend: &str, version_dir: &Path) -> Result<Arc<dyn Backend>, EngineError> {
        if !backend.is_empty() {
            if let Some(named) = self.0.iter().find(|e| e.name() == backend) {
                return match named.unavailable() {
                    None => Ok(named.clone()),
                    Some(reason) => Err(EngineError::Unavailable { engine: backend.to_string(), reason }),
                };
            }
        }
        if platform.is_empty() && backend.is_empty() {
            if let Some(recognizing) = self.0.iter().find(|e| e.recognizes(version_dir)) {
                return Ok(recognizing.clone());
            }
            let defaults: Vec<&Arc<dyn Backend>> = self.0.iter().filter(|e| e.serves("", "")).collect();
            let available: Vec<Arc<dyn Backend>> = defaults.iter().filter(|e| e.unavailable().is_none()).map(|e| (*e).clone()).collect();
            return match available.len() {
                0 => Err(self.none_available(&defaults, platform, backend)),
                1 => Ok(available[0].clone()),
                _ => Ok(Arc::new(Fastest::new(available))),
            };
        }
        let serving: Vec<&Arc<dyn Backend>> = self.0.iter().filter(|e| e.serves(platform, backend)).collect();
        for (ix, engine) in serving.iter().enumerate() {
            if engine.unavailable().is_none() {
                for skipped in &serving[..ix] {
                    let why = skipped.unavailable().unwrap_or_default();
                    tracing::warn!(
                        "platform '{platform}' / backend '{backend}': {} not available ({why}); {} serves it instead",
                        skipped.name(),
                        engine.name()
                    );
                }
                return Ok((*engine).clone());
            }
        }
        Err(self.none_available(&serving, platform, backend))
    }

    /// The error for a config whose engines (`candidates`) are all unavailable, or that none serves.
    fn none_available(&self, candidates: &[&Arc<dyn Backend>], platform: &str, backend: &str) -> EngineError {
        match candidates.first() {
            Some(first) => EngineError::Unavailable { engine: first.name().to_string(), reason: first.unavailable().unwrap_or_default() },
            None => EngineError::Unsupported { platform: platform.to_string(), backend: backend.to_string(), available: self.describe() },
        }
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
        missing: Option<&'static str>,
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
        fn unavailable(&self) -> Option<String> {
            self.missing.map(str::to_string)
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
            Arc::new(Fake { name: "text", platform: "huggingface", default: false, marker: "hf", missing: None }),
            Arc::new(Fake { name: "onnx", platform: "onnx", default: true, marker: "never", missing: None }),
        ])
    }

    fn onnx_pair(ort_missing: Option<&'static str>) -> Engines {
        Engines::new(vec![
            Arc::new(Fake { name: "onnxruntime", platform: "onnx", default: true, marker: "never", missing: ort_missing }),
            Arc::new(Fake { name: "tract", platform: "onnx", default: true, marker: "never", missing: None }),
        ])
    }

    #[test]
    fn a_named_backend_is_required_and_a_platform_falls_back() {
        let dir = PathBuf::from("/m/1");
        let missing = onnx_pair(Some("no library"));
        let err = missing.select("", "onnxruntime", &dir).err().unwrap();
        assert_eq!(err.to_string(), "onnxruntime not available: no library");
        assert_eq!(missing.select("onnx", "", &dir).unwrap().name(), "tract");
        assert_eq!(missing.select("", "tract", &dir).unwrap().name(), "tract");
        // Unnamed: the only available default engine, without a race.
        assert_eq!(missing.select("", "", &dir).unwrap().name(), "tract");
        let present = onnx_pair(None);
        assert_eq!(present.select("onnx", "", &dir).unwrap().name(), "onnxruntime");
        assert_eq!(present.select("", "tract", &dir).unwrap().name(), "tract");
    }

    #[test]
    fn an_unnamed_model_is_raced_between_the_available_defaults() {
        // Neither fake loads anything, so the race reports the first engine's error.
        let err = onnx_pair(None).select("", "", Path::new("/m/1")).unwrap().load(Path::new("/m/1/model.onnx")).err().unwrap();
        assert_eq!(err.to_string(), "failed to load model: fake");
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
