//! Why a storageUri could not be fetched or served.

use std::path::PathBuf;

use thiserror::Error;

/// Why a `storageUri` could not be fetched, or why fetched content cannot be served.
/// Every variant names the URI or path it is about.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The URI is malformed (empty, no bucket, a bad `#sha256=` fragment, ...).
    #[error("storageUri '{uri}': {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The scheme is not one Quiver fetches.
    #[error("storageUri '{uri}': unsupported scheme '{scheme}' (supported: a local path, file://, http://, https://, s3://)")]
    UnsupportedScheme {
        /// The URI as given.
        uri: String,
        /// The scheme found.
        scheme: String,
    },
    /// Nothing exists at the URI.
    #[error("storageUri '{uri}': not found: {detail}")]
    NotFound {
        /// The URI as given.
        uri: String,
        /// What was looked for.
        detail: String,
    },
    /// A local path exists but cannot be read.
    #[error("storageUri '{uri}': cannot read {}: {reason}", path.display())]
    Unreadable {
        /// The URI as given.
        uri: String,
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The content is larger than the size cap.
    #[error("storageUri '{uri}': {bytes} bytes exceed the size limit of {limit} bytes")]
    TooLarge {
        /// The URI as given.
        uri: String,
        /// The size found (or reached when the download was stopped).
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// A prefix or directory holds more files than the file-count cap.
    #[error("storageUri '{uri}': more than {limit} files (the file-count limit)")]
    TooManyFiles {
        /// The URI as given.
        uri: String,
        /// The cap.
        limit: usize,
    },
    /// The content's sha256 is not the one the URI's `#sha256=` fragment (or the cache index) says.
    #[error("storageUri '{uri}': sha256 mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The URI as given.
        uri: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// The transfer ended with a different byte count than the object's declared size.
    #[error("storageUri '{uri}': {file}: received {actual} bytes, expected {expected} (truncated or changed during the download)")]
    SizeMismatch {
        /// The URI as given.
        uri: String,
        /// The object (relative path inside a prefix, or the URI's last segment).
        file: String,
        /// The declared size.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// An http(s) server answered with an error status.
    #[error("storageUri '{uri}': HTTP status {status}: {reason}")]
    HttpStatus {
        /// The URI as given.
        uri: String,
        /// The status code.
        status: u16,
        /// The client's description.
        reason: String,
    },
    /// An http(s) transfer failed without a status (connection, TLS, body read).
    #[error("storageUri '{uri}': transfer failed: {reason}")]
    Transfer {
        /// The URI as given.
        uri: String,
        /// What failed.
        reason: String,
    },
    /// An S3 request failed (credentials, endpoint, permissions, listing).
    #[error("storageUri '{uri}': S3 error: {reason}")]
    S3 {
        /// The URI as given.
        uri: String,
        /// What failed (with the HTTP status when there is one).
        reason: String,
    },
    /// The local cache could not be written or read.
    #[error("model cache {}: {reason}", path.display())]
    Cache {
        /// The cache path.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The format is not one Quiver serves.
    #[error("format '{format}' is not supported (supported: onnx, huggingface, triton, sklearn, xgboost, lightgbm)")]
    UnsupportedFormat {
        /// The format asked for.
        format: String,
    },
    /// The content holds a native model of the format, which is served only as its ONNX conversion.
    #[error("{}: holds a {format} model ({found}) but no .onnx file; Quiver serves {format} models as ONNX: convert it with {converter} and store the .onnx file", path.display())]
    ConversionNeeded {
        /// The fetched content.
        path: PathBuf,
        /// The format asked for.
        format: String,
        /// The native model file found.
        found: String,
        /// The converter to use.
        converter: String,
    },
    /// The content is a model of another kind than the format asked for.
    #[error("{}: format '{format}' asked, but {reason}", path.display())]
    FormatMismatch {
        /// The fetched content.
        path: PathBuf,
        /// The format asked for.
        format: String,
        /// What the content is.
        reason: String,
    },
    /// The content holds no model file the runtime can load for the format.
    #[error("{}: no {format} model: {reason}", path.display())]
    NoModel {
        /// The fetched content.
        path: PathBuf,
        /// The format asked for.
        format: String,
        /// What is missing.
        reason: String,
    },
}
