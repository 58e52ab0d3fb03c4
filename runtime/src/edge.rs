//! What the HTTP and gRPC edges share, so the two protocols cannot drift apart: server
//! readiness, the protocol extensions Quiver refuses, and the model metadata document.

use std::sync::atomic::{AtomicBool, Ordering};

use quiver_core::TensorInfo;
use serde::Serialize;

use crate::{model::VersionInfo, registry::ModelRegistry, ServeError};

/// Whether the server takes requests: not shutting down, and every model it loaded has a
/// version that serves.
pub(crate) fn server_ready(registry: &ModelRegistry, shutting_down: &AtomicBool) -> bool {
    !shutting_down.load(Ordering::Acquire) && registry.all_ready()
}

/// Refuses an input that asks for the shared-memory extension (`has` tells whether the input
/// carries a parameter of that name).
pub(crate) fn refuse_input_extensions(has: impl Fn(&str) -> bool) -> Result<(), ServeError> {
    if has("shared_memory_region") {
        return Err(ServeError::Unsupported("the shared-memory extension is not supported".into()));
    }
    Ok(())
}

/// Refuses a requested output that asks for the classification or shared-memory extension.
pub(crate) fn refuse_output_extensions(has: impl Fn(&str) -> bool) -> Result<(), ServeError> {
    if has("classification") {
        return Err(ServeError::Unsupported("the classification extension is not supported".into()));
    }
    refuse_input_extensions(has)
}

/// One tensor of the model metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct TensorMetadata {
    pub(crate) name: String,
    pub(crate) datatype: &'static str,
    pub(crate) shape: Vec<i64>,
}

/// The model metadata document (`GET /v2/models/{m}`, `ModelMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ModelMetadata {
    pub(crate) name: String,
    pub(crate) versions: Vec<String>,
    pub(crate) platform: String,
    pub(crate) inputs: Vec<TensorMetadata>,
    pub(crate) outputs: Vec<TensorMetadata>,
}

impl ModelMetadata {
    /// The metadata of `model`, listing the versions of it that serve.
    pub(crate) fn of(registry: &ModelRegistry, model: &VersionInfo) -> ModelMetadata {
        let tensors = |list: &[TensorInfo]| {
            list.iter().map(|t| TensorMetadata { name: t.name.clone(), datatype: t.datatype.as_v2(), shape: t.shape.clone() }).collect()
        };
        ModelMetadata {
            name: model.name().to_string(),
            versions: registry.ready_versions(model.name()),
            platform: model.platform().to_string(),
            inputs: tensors(model.inputs()),
            outputs: tensors(model.outputs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_refused_the_same_way_everywhere() {
        let none = |_: &str| false;
        assert!(refuse_input_extensions(none).is_ok() && refuse_output_extensions(none).is_ok());
        let shm = |k: &str| k == "shared_memory_region";
        let class = |k: &str| k == "classification";
        assert!(matches!(refuse_input_extensions(shm), Err(ServeError::Unsupported(m)) if m.contains("shared-memory")));
        assert!(matches!(refuse_output_extensions(shm), Err(ServeError::Unsupported(m)) if m.contains("shared-memory")));
        assert!(matches!(refuse_output_extensions(class), Err(ServeError::Unsupported(m)) if m.contains("classification")));
        assert!(refuse_input_extensions(class).is_ok(), "classification is an output parameter");
    }
}
