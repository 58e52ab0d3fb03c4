//! The gRPC transport: `inference.GRPCInferenceService` over one HTTP/2 connection per worker,
//! sending tensors in `raw_input_contents` (as perf_analyzer does).
//!
//! The message types and client stub are the ones generated from the protocol's proto file
//! (`quiver_core::proto`, package `inference`); nothing here depends on how Quiver serves
//! them, so the client works against Triton or any other server of the protocol.

use std::{sync::Arc, time::Duration};

use quiver_core::proto::{
    grpc_inference_service_client::GrpcInferenceServiceClient, model_infer_request::InferInputTensor, ModelConfigRequest,
    ModelInferRequest, ModelMetadataRequest,
};
use tonic::{transport::Channel, Code};

use crate::{
    input::RequestData,
    load::{InferClient, InferOutcome},
    request::{MetadataTensor, ModelMetadata},
    BenchError,
};

/// How long one infer request may take before it counts as a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest response message accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// Pause after a failed connection attempt, so a server that is down is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

/// Where the gRPC server is: `host:port` or `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTarget {
    /// The URI connected to (`http://host:port`).
    pub uri: String,
}

impl GrpcTarget {
    /// Parses `host:port` or `http://host:port` (TLS is not supported).
    pub fn parse(url: &str) -> Result<GrpcTarget, BenchError> {
        let url = url.trim().trim_end_matches('/');
        let authority = match url.split_once("://") {
            None => url,
            Some(("http" | "grpc", rest)) => rest,
            Some((scheme, _)) => {
                return Err(BenchError::InvalidArgs(format!("URL scheme '{scheme}' is not supported for gRPC (only plaintext)")))
            }
        };
        let parsed = authority.parse::<http::uri::Authority>().map_err(|e| BenchError::InvalidArgs(format!("'{url}': {e}")))?;
        if parsed.port_u16().is_none() || authority.contains('/') {
            return Err(BenchError::InvalidArgs(format!("'{url}' is not host:port")));
        }
        Ok(GrpcTarget { uri: format!("http://{authority}") })
    }

    /// Opens one HTTP/2 connection.
    pub async fn connect(&self) -> Result<GrpcInferenceServiceClient<Channel>, BenchError> {
        let endpoint = Channel::from_shared(self.uri.clone())
            .map_err(|e| BenchError::InvalidArgs(format!("{}: {e}", self.uri)))?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10));
        let channel = endpoint.connect().await.map_err(|e| BenchError::Connect(format!("{}: {e}", self.uri)))?;
        Ok(GrpcInferenceServiceClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES).max_encoding_message_size(usize::MAX))
    }
}

/// The model's metadata (`ModelMetadata`) and, when the server has Triton's configuration
/// extension, its `max_batch_size` (`ModelConfig`).
pub async fn fetch_model(
    client: &mut GrpcInferenceServiceClient<Channel>,
    model: &str,
) -> Result<(ModelMetadata, Option<i64>), BenchError> {
    let metadata = client
        .model_metadata(ModelMetadataRequest { name: model.to_string(), version: String::new() })
        .await
        .map_err(|s| BenchError::Server(format!("ModelMetadata '{model}': {} {}", s.code(), s.message())))?
        .into_inner();
    let metadata = ModelMetadata {
        name: metadata.name,
        inputs: metadata.inputs.into_iter().map(|t| MetadataTensor { name: t.name, datatype: t.datatype, shape: t.shape }).collect(),
    };
    let max_batch_size = match client.model_config(ModelConfigRequest { name: model.to_string(), version: String::new() }).await {
        Ok(r) => r.into_inner().config.map(|c| i64::from(c.max_batch_size)),
        Err(_) => None, // a plain V2 server without the configuration extension
    };
    Ok((metadata, max_batch_size))
}

/// A `ModelInfer` request with every input in `raw_input_contents`.
pub fn infer_request(model: &str, data: &RequestData) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.to_string(),
        inputs: data
            .iter()
            .map(|t| InferInputTensor {
                name: t.spec.name.clone(),
                datatype: t.spec.datatype.as_v2().to_string(),
                shape: t.spec.shape.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: data.iter().map(|t| bytes::Bytes::from(t.data.clone())).collect(),
        ..Default::default()
    }
}

/// A V2 gRPC infer client over one HTTP/2 connection, reconnecting when it fails. It sends the
/// prepared requests in turn.
#[derive(Debug)]
pub struct GrpcInferClient {
    target: GrpcTarget,
    requests: Arc<[ModelInferRequest]>,
    next: usize,
    client: Option<GrpcInferenceServiceClient<Channel>>,
}

impl GrpcInferClient {
    /// A client that connects on its first request; `first` staggers clients through the
    /// requests.
    pub fn new(target: GrpcTarget, requests: Arc<[ModelInferRequest]>, first: usize) -> GrpcInferClient {
        GrpcInferClient { target, requests, next: first, client: None }
    }

    /// Opens the connection now, so the first measured request does not pay for it.
    pub async fn connect(&mut self) -> Result<(), BenchError> {
        if self.client.is_none() {
            self.client = Some(self.target.connect().await?);
        }
        Ok(())
    }

    async fn exchange(&mut self) -> InferOutcome {
        if let Err(e) = self.connect().await {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            return InferOutcome::failed("transport", e.to_string());
        }
        let (Some(client), Some(request)) = (self.client.as_mut(), self.requests.get(self.next % self.requests.len().max(1))) else {
            return InferOutcome::failed("client", "no request to send");
        };
        self.next = self.next.wrapping_add(1);
        match client.model_infer(request.clone()).await {
            Ok(_) => InferOutcome::Success,
            // The channel reconnects by itself after a transport failure.
            Err(status) => InferOutcome::failed(code_name(status.code()), status.message()),
        }
    }
}

/// A gRPC status code as the protocol spells it (`UNAVAILABLE`), for error counts.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl InferClient for GrpcInferClient {
    async fn infer(&mut self) -> InferOutcome {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange()).await {
            Ok(outcome) => outcome,
            // Dropping the call resets its stream; the connection stays usable.
            Err(_) => InferOutcome::failed("timeout", format!("no response within {REQUEST_TIMEOUT:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use quiver_core::DataType;

    use super::*;
    use crate::{input::InputTensor, request::InputSpec};

    #[test]
    fn targets_parse() {
        assert_eq!(GrpcTarget::parse("localhost:8001").unwrap().uri, "http://localhost:8001");
        assert_eq!(GrpcTarget::parse("http://10.0.0.1:9/").unwrap().uri, "http://10.0.0.1:9");
        assert_eq!(GrpcTarget::parse("[::1]:8001").unwrap().uri, "http://[::1]:8001");
        assert!(GrpcTarget::parse("https://h:1").is_err());
        assert!(GrpcTarget::parse("localhost").is_err());
        assert!(GrpcTarget::parse("h:1/prefix").is_err());
    }

    #[test]
    fn requests_carry_raw_contents_in_input_order() {
        let data = vec![
            InputTensor { spec: InputSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![2, 1] }, data: vec![0; 8] },
            InputTensor { spec: InputSpec { name: "s".into(), datatype: DataType::Bytes, shape: vec![1] }, data: b"\x01\0\0\0a".to_vec() },
        ];
        let r = infer_request("m", &data);
        assert_eq!(r.model_name, "m");
        assert_eq!(r.inputs[0].name, "x");
        assert_eq!(r.inputs[0].datatype, "FP32");
        assert_eq!(r.inputs[0].shape, [2, 1]);
        assert!(r.inputs[0].contents.is_none());
        assert_eq!(r.inputs[1].datatype, "BYTES");
        assert_eq!(r.raw_input_contents, [vec![0u8; 8], b"\x01\0\0\0a".to_vec()]);
        assert!(r.outputs.is_empty(), "every output");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
    }
}
