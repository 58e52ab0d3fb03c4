//! The gRPC edge (tonic): `inference.GRPCInferenceService`.

use std::{pin::Pin, sync::Arc};

use bytes::Bytes;
use quiver_core::{tensor::shape_from_i64, DataType, Tensor};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::{
    edge,
    infer::{InferInput, InferRequest, InferResponse, ParameterValue, Parameters, RequestedOutput, Timing},
    proto::{self, grpc_inference_service_server::GrpcInferenceService, infer_parameter::ParameterChoice},
    protocol::{self, REVISION_HEADER},
    registry::{traffic::Revision, ModelRegistry},
    ServeError, EXTENSIONS, SERVER_NAME, SERVER_VERSION,
};

/// The gRPC status for an error.
pub fn status_of(error: ServeError) -> Status {
    match error {
        ServeError::InvalidInput(m) | ServeError::PayloadTooLarge(m) => Status::invalid_argument(m),
        ServeError::NotFound(m) => Status::not_found(m),
        ServeError::Unavailable(m) => Status::unavailable(m),
        ServeError::QueueFull(m) => Status::resource_exhausted(m),
        ServeError::Timeout(m) | ServeError::BodyTimeout(m) => Status::deadline_exceeded(m),
        ServeError::Inference(m) => Status::internal(m),
        ServeError::Unsupported(m) => Status::unimplemented(m),
    }
}

/// The service implementation.
#[derive(Debug, Clone)]
pub struct InferenceService {
    registry: Arc<ModelRegistry>,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

impl InferenceService {
    /// A service over `registry`.
    pub fn new(registry: Arc<ModelRegistry>, shutting_down: Arc<std::sync::atomic::AtomicBool>) -> Self {
        InferenceService { registry, shutting_down }
    }

    /// Runs one request; also returns the side of a canary split that answered, if any.
    async fn infer(
        &self,
        request: proto::ModelInferRequest,
        pin: Option<Revision>,
    ) -> (Result<(proto::ModelInferResponse, Timing), ServeError>, Option<Revision>) {
        // Route (no IO, nothing woken), decode, and check against the version's configuration
        // before anything can start a scaled-to-zero model.
        // The request's span, from the edge to the engine (enabled with QUIVER_LOG=debug).
        let span = tracing::debug_span!("grpc", model = %request.model_name, version = %request.model_version);
        let routed = match span.in_scope(|| self.registry.route(&request.model_name, &request.model_version, pin)) {
            Ok(routed) => routed,
            Err(e) => return (Err(e), None),
        };
        let revision = routed.revision();
        let answer = async {
            let decoded = decode_request(request)?;
            let valid = routed.info().validate_counted(decoded)?;
            let response = routed.infer(valid).await?;
            let timing = response.timing;
            Ok((encode_response(response), timing))
        };
        (answer.instrument(span).await, revision)
    }
}

fn parameters(map: std::collections::HashMap<String, proto::InferParameter>) -> Parameters {
    map.into_iter()
        .filter_map(|(k, v)| {
            let value = match v.parameter_choice? {
                ParameterChoice::BoolParam(b) => ParameterValue::Bool(b),
                ParameterChoice::Int64Param(i) => ParameterValue::Int(i),
                ParameterChoice::StringParam(s) => ParameterValue::String(s),
                ParameterChoice::DoubleParam(d) => ParameterValue::Double(d),
                ParameterChoice::Uint64Param(u) => ParameterValue::Uint(u),
            };
            Some((k, value))
        })
        .collect()
}

/// Decodes a `ModelInferRequest`: raw contents are used without copying; typed contents are
/// converted after their element count is checked against the shape.
pub fn decode_request(request: proto::ModelInferRequest) -> Result<InferRequest, ServeError> {
    let raw = request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(ServeError::invalid(format!(
            "raw_input_contents has {} entries but there are {} inputs",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (ix, input) in request.inputs.into_iter().enumerate() {
        let datatype = DataType::from_v2(&input.datatype)
            .ok_or_else(|| ServeError::invalid(format!("input '{}': unknown datatype '{}'", input.name, input.datatype)))?;
        let shape = shape_from_i64(&input.shape).map_err(|e| ServeError::invalid(format!("input '{}': {e}", input.name)))?;
        edge::refuse_input_extensions(|k| input.parameters.contains_key(k))?;
        let tensor = match (raw.get(ix), input.contents) {
            (Some(_), Some(_)) => {
                return Err(ServeError::invalid(format!("input '{}': contents and raw_input_contents are mutually exclusive", input.name)))
            }
            (Some(bytes), None) => Tensor::from_bytes(datatype, shape, bytes.clone())
                .map_err(|e| ServeError::invalid(format!("input '{}': {e}", input.name)))?,
            (None, Some(contents)) => typed_tensor(&input.name, datatype, shape, contents)?,
            (None, None) => return Err(ServeError::invalid(format!("input '{}' has no contents", input.name))),
        };
        inputs.push(InferInput { name: input.name, tensor });
    }
    let outputs = request
        .outputs
        .into_iter()
        .map(|o| {
            let parameters = parameters(o.parameters);
            edge::refuse_output_extensions(|k| parameters.contains_key(k))?;
            Ok::<_, ServeError>(RequestedOutput { name: o.name, parameters })
        })
        .collect::<Result<Vec<_>, _>>()?;
    InferRequest::new(Some(request.id).filter(|id| !id.is_empty()), parameters(request.parameters), inputs, outputs)
}

fn typed_tensor(name: &str, datatype: DataType, shape: Vec<usize>, c: proto::InferTensorContents) -> Result<Tensor, ServeError> {
    let expected = quiver_core::tensor::element_count(&shape)
        .ok_or_else(|| ServeError::invalid(format!("input '{name}': shape {shape:?} is too large")))?;
    let count = |n: usize| {
        if n == expected {
            Ok(())
        } else {
            Err(ServeError::invalid(format!("input '{name}': shape {shape:?} has {expected} elements but contents has {n}")))
        }
    };
    let out_of_range = || ServeError::invalid(format!("input '{name}': a value is out of range for {datatype}"));
    macro_rules! narrow {
        ($src:expr, $t:ty) => {{
            count($src.len())?;
            let mut out = Vec::with_capacity(expected * std::mem::size_of::<$t>());
            for &v in &$src {
                out.extend_from_slice(&<$t>::try_from(v).map_err(|_| out_of_range())?.to_le_bytes());
            }
            out
        }};
    }
    let data = match datatype {
        DataType::Bool => {
            count(c.bool_contents.len())?;
            c.bool_contents.iter().map(|&b| u8::from(b)).collect()
        }
        DataType::Int8 => narrow!(c.int_contents, i8),
        DataType::Int16 => narrow!(c.int_contents, i16),
        DataType::Int32 => narrow!(c.int_contents, i32),
        DataType::Int64 => narrow!(c.int64_contents, i64),
        DataType::Uint8 => narrow!(c.uint_contents, u8),
        DataType::Uint16 => narrow!(c.uint_contents, u16),
        DataType::Uint32 => narrow!(c.uint_contents, u32),
        DataType::Uint64 => narrow!(c.uint64_contents, u64),
        DataType::Fp32 => narrow!(c.fp32_contents, f32),
        DataType::Fp64 => narrow!(c.fp64_contents, f64),
        DataType::Bytes => {
            count(c.bytes_contents.len())?;
            return Tensor::from_bytes_elements(shape, c.bytes_contents.iter().map(|b| &b[..]))
                .map_err(|e| ServeError::invalid(format!("input '{name}': {e}")));
        }
        DataType::Fp16 | DataType::Bf16 => {
            return Err(ServeError::invalid(format!(
                "input '{name}': {datatype} has no typed contents field; send it in raw_input_contents"
            )))
        }
    };
    Tensor::from_bytes(datatype, shape, Bytes::from(data)).map_err(|e| ServeError::invalid(format!("input '{name}': {e}")))
}

/// Encodes a response with every output in `raw_output_contents`.
pub fn encode_response(response: InferResponse) -> proto::ModelInferResponse {
    let mut outputs = Vec::with_capacity(response.outputs.len());
    let mut raw = Vec::with_capacity(response.outputs.len());
    for output in response.outputs {
        outputs.push(proto::model_infer_response::InferOutputTensor {
            name: output.name,
            datatype: output.tensor.datatype().as_v2().to_string(),
            shape: output.tensor.shape_i64(),
            parameters: Default::default(),
            contents: None,
        });
        raw.push(output.tensor.into_data());
    }
    proto::ModelInferResponse {
        model_name: response.model_name,
        model_version: response.model_version,
        id: response.id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw,
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<proto::ModelStreamInferResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(&self, _: Request<proto::ServerLiveRequest>) -> Result<Response<proto::ServerLiveResponse>, Status> {
        Ok(Response::new(proto::ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _: Request<proto::ServerReadyRequest>) -> Result<Response<proto::ServerReadyResponse>, Status> {
        let ready = edge::server_ready(&self.registry, &self.shutting_down);
        Ok(Response::new(proto::ServerReadyResponse { ready }))
    }

    async fn model_ready(&self, request: Request<proto::ModelReadyRequest>) -> Result<Response<proto::ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready = self.registry.is_ready(&request.name, &request.version);
        Ok(Response::new(proto::ModelReadyResponse { ready }))
    }

    async fn server_metadata(&self, _: Request<proto::ServerMetadataRequest>) -> Result<Response<proto::ServerMetadataResponse>, Status> {
        Ok(Response::new(proto::ServerMetadataResponse {
            name: SERVER_NAME.to_string(),
            version: SERVER_VERSION.to_string(),
            extensions: EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<proto::ModelMetadataRequest>,
    ) -> Result<Response<proto::ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let model = self.registry.info(&request.name, &request.version).map_err(status_of)?;
        let metadata = edge::ModelMetadata::of(&self.registry, &model);
        let tensors = |list: Vec<edge::TensorMetadata>| {
            list.into_iter()
                .map(|t| proto::model_metadata_response::TensorMetadata { name: t.name, datatype: t.datatype.to_string(), shape: t.shape })
                .collect()
        };
        Ok(Response::new(proto::ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform,
            inputs: tensors(metadata.inputs),
            outputs: tensors(metadata.outputs),
        }))
    }

    async fn model_infer(&self, request: Request<proto::ModelInferRequest>) -> Result<Response<proto::ModelInferResponse>, Status> {
        let pin = pinned_revision(request.metadata()).map_err(status_of)?;
        let (answer, revision) = self.infer(request.into_inner(), pin).await;
        // The side of a split that answered, in the response's (or the error's) metadata.
        let side = revision.map(|r| tonic::metadata::MetadataValue::from_static(r.as_str()));
        match answer {
            Ok((response, timing)) => {
                let mut response = Response::new(response);
                if let Some(side) = side {
                    response.metadata_mut().insert(REVISION_HEADER, side);
                }
                // Where the time went, in the response metadata (tonic sends a unary answer's
                // own metadata as headers; its trailers carry only the status).
                for (name, micros) in timing.headers() {
                    response.metadata_mut().insert(name, tonic::metadata::MetadataValue::from(micros));
                }
                Ok(response)
            }
            Err(e) => {
                let mut status = status_of(e);
                if let Some(side) = side {
                    status.metadata_mut().insert(REVISION_HEADER, side);
                }
                Err(status)
            }
        }
    }

    type ModelStreamInferStream = ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<Streaming<proto::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let pin = pinned_revision(request.metadata()).map_err(status_of)?;
        let mut requests = request.into_inner();
        let service = self.clone();
        let stream = async_stream(move |tx| async move {
            while let Some(next) = requests.next().await {
                let message = match next {
                    Ok(request) => match service.infer(request, pin).await.0 {
                        Ok((response, _)) => {
                            proto::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response) }
                        }
                        Err(e) => proto::ModelStreamInferResponse { error_message: e.to_string(), infer_response: None },
                    },
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                if tx.send(Ok(message)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn model_config(&self, request: Request<proto::ModelConfigRequest>) -> Result<Response<proto::ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let model = self.registry.info(&request.name, &request.version).map_err(status_of)?;
        Ok(Response::new(proto::ModelConfigResponse { config: Some(model.config().clone()) }))
    }

    async fn model_statistics(
        &self,
        _: Request<proto::ModelStatisticsRequest>,
    ) -> Result<Response<proto::ModelStatisticsResponse>, Status> {
        Err(Status::unimplemented("model statistics are exported as Prometheus metrics at /metrics"))
    }

    async fn repository_index(
        &self,
        request: Request<proto::RepositoryIndexRequest>,
    ) -> Result<Response<proto::RepositoryIndexResponse>, Status> {
        let models = self
            .registry
            .index(request.into_inner().ready)
            .into_iter()
            .map(|row| proto::repository_index_response::ModelIndex {
                name: row.name,
                version: row.version,
                state: row.state.to_string(),
                reason: row.reason,
            })
            .collect();
        Ok(Response::new(proto::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<proto::RepositoryModelLoadRequest>,
    ) -> Result<Response<proto::RepositoryModelLoadResponse>, Status> {
        use proto::model_repository_parameter::ParameterChoice;
        let request = request.into_inner();
        let config_param = request.parameters.get("config").map(|p| match &p.parameter_choice {
            Some(ParameterChoice::StringParam(json)) => Some(json.as_str()),
            _ => None,
        });
        let config = protocol::load_parameters(request.parameters.keys(), config_param).map_err(status_of)?;
        self.registry.load(&request.model_name, config).await.map_err(status_of)?;
        Ok(Response::new(proto::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<proto::RepositoryModelUnloadRequest>,
    ) -> Result<Response<proto::RepositoryModelUnloadResponse>, Status> {
        self.registry.unload(&request.into_inner().model_name).await.map_err(status_of)?;
        Ok(Response::new(proto::RepositoryModelUnloadResponse {}))
    }
}

/// The side of a canary split a call pins itself to (`x-quiver-revision` metadata), if any.
fn pinned_revision(metadata: &tonic::metadata::MetadataMap) -> Result<Option<Revision>, ServeError> {
    protocol::pinned_revision(metadata.get(REVISION_HEADER).map(|v| v.as_bytes()))
}

/// Runs `producer` on a task feeding a bounded channel, and returns the channel as a stream.
fn async_stream<F, Fut>(producer: F) -> ResponseStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<proto::ModelStreamInferResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::model_infer_request::InferInputTensor;

    fn input(name: &str, datatype: &str, shape: Vec<i64>, contents: Option<proto::InferTensorContents>) -> InferInputTensor {
        InferInputTensor { name: name.into(), datatype: datatype.into(), shape, parameters: Default::default(), contents }
    }

    #[test]
    fn raw_and_typed_contents() {
        let raw = proto::ModelInferRequest {
            inputs: vec![input("a", "FP32", vec![2], None)],
            raw_input_contents: vec![Bytes::from_static(&[0, 0, 128, 63, 0, 0, 0, 64])],
            ..Default::default()
        };
        let decoded = decode_request(raw).unwrap();
        let typed = proto::ModelInferRequest {
            inputs: vec![input(
                "a",
                "FP32",
                vec![2],
                Some(proto::InferTensorContents { fp32_contents: vec![1.0, 2.0], ..Default::default() }),
            )],
            ..Default::default()
        };
        assert_eq!(decode_request(typed).unwrap().inputs[0].tensor, decoded.inputs[0].tensor);
        let int8 = proto::ModelInferRequest {
            inputs: vec![input("a", "INT8", vec![1], Some(proto::InferTensorContents { int_contents: vec![300], ..Default::default() }))],
            ..Default::default()
        };
        assert!(decode_request(int8).is_err());
    }

    #[test]
    fn contents_errors() {
        let both = proto::ModelInferRequest {
            inputs: vec![input("a", "FP32", vec![1], Some(proto::InferTensorContents { fp32_contents: vec![1.0], ..Default::default() }))],
            raw_input_contents: vec![Bytes::from_static(&[0, 0, 128, 63])],
            ..Default::default()
        };
        assert!(matches!(decode_request(both), Err(ServeError::InvalidInput(m)) if m.contains("mutually exclusive")));
        let wrong_len = proto::ModelInferRequest {
            inputs: vec![input("a", "FP32", vec![2], None)],
            raw_input_contents: vec![Bytes::from_static(&[0, 0, 128, 63])],
            ..Default::default()
        };
        assert!(decode_request(wrong_len).is_err());
        let huge = proto::ModelInferRequest {
            inputs: vec![input(
                "a",
                "FP32",
                vec![1 << 40],
                Some(proto::InferTensorContents { fp32_contents: vec![1.0], ..Default::default() }),
            )],
            ..Default::default()
        };
        assert!(decode_request(huge).is_err());
        let count_mismatch = proto::ModelInferRequest {
            inputs: vec![input("a", "FP32", vec![1], None), input("b", "FP32", vec![1], None)],
            raw_input_contents: vec![Bytes::from_static(&[0, 0, 128, 63])],
            ..Default::default()
        };
        assert!(decode_request(count_mismatch).is_err());
        let negative = proto::ModelInferRequest { inputs: vec![input("a", "FP32", vec![-1], None)], ..Default::default() };
        assert!(decode_request(negative).is_err());
    }
}
