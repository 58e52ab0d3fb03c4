//! The one error type of the request path. Each edge maps it to its protocol's status once.

use quiver_core::{BackendError, ConfigError, TensorError};
use thiserror::Error;

/// Why a request could not be served.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ServeError {
    /// The request is malformed or does not fit the model (HTTP 400, INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidInput(String),
    /// The model or version does not exist (HTTP 404, NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The model or server is not ready (HTTP 503, UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The model's queue is full (HTTP 429, RESOURCE_EXHAUSTED).
    #[error("{0}")]
    QueueFull(String),
    /// The request timed out in the queue (HTTP 503, DEADLINE_EXCEEDED).
    #[error("{0}")]
    Timeout(String),
    /// The request body exceeds the configured limit (HTTP 413, INVALID_ARGUMENT).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body did not arrive in time (HTTP 408; over gRPC, DEADLINE_EXCEEDED).
    #[error("{0}")]
    BodyTimeout(String),
    /// The backend failed while executing (HTTP 500, INTERNAL).
    #[error("{0}")]
    Inference(String),
    /// The request asks for something Quiver does not implement (HTTP 501, UNIMPLEMENTED).
    #[error("{0}")]
    Unsupported(String),
}

impl ServeError {
    /// A request that is malformed or does not fit the model (400, INVALID_ARGUMENT).
    pub fn invalid(message: impl Into<String>) -> ServeError {
        ServeError::InvalidInput(message.into())
    }

    /// The `reason` label of `nv_inference_request_failure` for this error, as Triton uses it.
    pub fn failure_reason(&self) -> &'static str {
        match self {
            ServeError::QueueFull(_) | ServeError::Timeout(_) => "REJECTED",
            ServeError::Inference(_) => "BACKEND",
            _ => "OTHER",
        }
    }
}

impl From<TensorError> for ServeError {
    fn from(e: TensorError) -> Self {
        ServeError::InvalidInput(e.to_string())
    }
}

impl From<BackendError> for ServeError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::InvalidInput(m) => ServeError::InvalidInput(m),
            BackendError::Load(m) => ServeError::Unavailable(m),
            BackendError::Execution(m) => ServeError::Inference(m),
        }
    }
}

impl From<ConfigError> for ServeError {
    fn from(e: ConfigError) -> Self {
        ServeError::InvalidInput(e.to_string())
    }
}
