//! Protocol helpers shared by the HTTP and gRPC edges: the revision pin header and Triton's
//! load parameters.

use quiver_core::ModelConfig;

use crate::{registry::traffic::Revision, ServeError};

/// Header (HTTP) and metadata key (gRPC) pinning an unversioned request to a side of a canary
/// split (KServe's tag routing); HTTP responses carry the side that served under the same name.
pub const REVISION_HEADER: &str = "x-quiver-revision";

/// The side a request pins itself to, from the bytes of its [`REVISION_HEADER`], if present.
pub fn pinned_revision(value: Option<&[u8]>) -> Result<Option<Revision>, ServeError> {
    let Some(value) = value else { return Ok(None) };
    let text = std::str::from_utf8(value).map_err(|_| ServeError::InvalidInput(format!("{REVISION_HEADER} is not valid text")))?;
    text.parse().map(Some).map_err(|e| ServeError::InvalidInput(format!("{REVISION_HEADER}: {e}")))
}

/// Parses the configuration a load request gives (Triton's `config` load parameter: the
/// model configuration as JSON), which replaces the model's `config.pbtxt` for that load.
pub fn parse_config_override(json: &str) -> Result<ModelConfig, ServeError> {
    quiver_core::config::parse_json(json).map_err(|e| ServeError::InvalidInput(format!("load parameter 'config': {e}")))
}

/// Reads Triton's load parameters, the same for HTTP and gRPC: `config` (`None`: absent;
/// `Some(None)`: present but not a string; `Some(Some(json))`) replaces `config.pbtxt` for the
/// load; model files sent inline (keys `file:...`) are refused.
pub fn load_parameters<'a>(
    mut keys: impl Iterator<Item = &'a String>,
    config: Option<Option<&str>>,
) -> Result<Option<ModelConfig>, ServeError> {
    if let Some(key) = keys.find(|k| k.starts_with("file:")) {
        return Err(ServeError::InvalidInput(format!(
            "load parameter '{key}': model files sent in the request are not supported; put them in the repository"
        )));
    }
    match config {
        None => Ok(None),
        Some(Some(json)) => parse_config_override(json).map(Some),
        Some(None) => Err(ServeError::InvalidInput("load parameter 'config' must be a string holding the config as JSON".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_pins_parse() {
        assert_eq!(pinned_revision(None).unwrap(), None);
        assert_eq!(pinned_revision(Some(b"canary")).unwrap(), Some(Revision::Canary));
        assert_eq!(pinned_revision(Some(b" Stable ")).unwrap(), Some(Revision::Stable));
        assert!(matches!(pinned_revision(Some(b"blue")), Err(ServeError::InvalidInput(_))));
        assert!(matches!(pinned_revision(Some(b"\xff")), Err(ServeError::InvalidInput(_))));
    }

    #[test]
    fn load_parameters_refuse_inline_files_and_bad_configs() {
        let keys = ["config".to_string(), "file:1/model.onnx".to_string()];
        assert!(load_parameters(keys.iter(), None).unwrap_err().to_string().contains("file:1/model.onnx"));
        assert_eq!(load_parameters(keys[..1].iter(), None).unwrap(), None);
        assert_eq!(load_parameters(keys[..1].iter(), Some(Some(r#"{"max_batch_size": 2}"#))).unwrap().unwrap().max_batch_size, 2);
        assert!(load_parameters(keys[..1].iter(), Some(None)).is_err());
        assert!(parse_config_override("{not json").is_err());
    }
}
