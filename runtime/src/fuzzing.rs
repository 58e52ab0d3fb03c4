//! Entry points for the fuzz targets in `fuzz/`, not part of the server's API. Each runs the
//! decoders and checks the server runs on a request's untrusted bytes, in the server's order,
//! against small fixed models, so a fuzzer exercises the real code rather than a copy of it.
//! Errors are the expected outcome for most inputs; what a fuzzer looks for is a panic, a hang
//! or an allocation out of proportion to the input.

use std::sync::OnceLock;

use bytes::Bytes;
use http::HeaderValue;
use prost::Message;
use quiver_core::{
    backend::ModelSignature,
    config::{self, ModelConfig},
    proto, DataType, TensorInfo,
};

use crate::{http::openai, infer::InferRequest, metrics::VersionMetrics, model::VersionInfo, ServeError};

/// The decompressed-body limit the HTTP entry point applies (the server's is its
/// `--http-max-input-size`); small, so a decompression bomb costs the fuzzer little time.
const BODY_LIMIT: usize = 64 * 1024;

/// One fixed model's tensor: name, datatype, dims without the batch dimension, and the
/// configured reshape.
type Spec = (&'static str, DataType, &'static [i64], Option<&'static [i64]>);

fn model(name: &str, max_batch_size: i32, inputs: &[Spec], outputs: &[Spec]) -> VersionInfo {
    let full = |dims: &[i64]| if max_batch_size > 0 { std::iter::once(-1).chain(dims.iter().copied()).collect() } else { dims.to_vec() };
    let infos = |specs: &[Spec]| -> Vec<TensorInfo> {
        specs
            .iter()
            .map(|(name, datatype, dims, _)| TensorInfo { name: name.to_string(), datatype: *datatype, shape: full(dims) })
            .collect()
    };
    VersionInfo {
        name: name.into(),
        version: "1".into(),
        config: ModelConfig { name: name.into(), max_batch_size, ..Default::default() },
        inputs: infos(inputs),
        outputs: infos(outputs),
        input_reshape: inputs.iter().map(|(_, _, _, reshape)| reshape.map(<[i64]>::to_vec)).collect(),
        // As the server records an output reshape: the dims clients see.
        output_reshape: outputs.iter().map(|(_, _, dims, reshape)| reshape.map(|_| dims.to_vec())).collect(),
        metrics: VersionMetrics::new(name, "1"),
    }
}

/// The fixed models requests are checked against: one that batches (an FP32 row and a text
/// column the model sees as a scalar), one that does not (an INT32 matrix reshaped to a
/// vector), and a text embedding model as the OpenAI edge requires.
pub fn models() -> &'static [VersionInfo] {
    static MODELS: OnceLock<Vec<VersionInfo>> = OnceLock::new();
    MODELS.get_or_init(|| {
        vec![
            model(
                "batched",
                4,
                &[("x", DataType::Fp32, &[3], None), ("t", DataType::Bytes, &[1], Some(&[]))],
                &[("a", DataType::Fp32, &[2], None), ("b", DataType::Int64, &[1], Some(&[]))],
            ),
            model("fixed", 0, &[("x", DataType::Int32, &[2, -1], Some(&[-1]))], &[("o", DataType::Int64, &[-1], None)]),
            model("embedding", 8, &[("text", DataType::Bytes, &[1], Some(&[]))], &[("embedding", DataType::Fp32, &[4], None)]),
        ]
    })
}

/// Checks a decoded request against every fixed model, as each would before queueing it.
fn validate_all(request: &InferRequest) {
    for model in models() {
        let _ = model.validate(request.clone());
    }
}

/// `POST /v2/models/{m}/infer`: the `Content-Encoding` (if any) is undone, the
/// `Inference-Header-Content-Length` header (if any) read, the JSON and binary tensors decoded
/// and the request checked.
pub fn v2_infer(body: Bytes, content_encoding: Option<&[u8]>, header_content_length: Option<&[u8]>) -> Result<(), ServeError> {
    let encoding = content_encoding.map(HeaderValue::from_bytes).transpose().map_err(|e| ServeError::invalid(e.to_string()))?;
    let body = crate::http::decode_content(encoding.as_ref(), body, BODY_LIMIT)?;
    let json_length = crate::http::v2::json_length(header_content_length)?;
    let request = crate::http::v2::decode_request(body, json_length)?;
    let _ = crate::http::v2::RequestOptions::of(&request);
    validate_all(&request);
    Ok(())
}

/// `ModelInfer` over gRPC: the message is decoded from its protobuf bytes (as tonic does),
/// converted to the neutral request and checked.
pub fn grpc_infer(message: &[u8]) -> Result<(), ServeError> {
    let message = proto::ModelInferRequest::decode(message).map_err(|e| ServeError::invalid(e.to_string()))?;
    let request = crate::grpc::decode_request(message)?;
    validate_all(&request);
    Ok(())
}

/// KServe V1 `:predict`: decoded for each fixed model (V1 needs the model's inputs) and checked.
pub fn v1_predict(body: &[u8]) {
    for model in models() {
        if let Ok(request) = crate::http::v1::decode_predict(body, model) {
            let _ = model.validate(request);
        }
    }
}

/// `POST /openai/v1/embeddings`: decoded, then turned into one checked request per text for
/// each fixed model (only the embedding model accepts).
pub fn openai_embeddings(body: &[u8]) -> Result<(), ServeError> {
    let decoded = openai::decode(body)?;
    for model in models() {
        let _ = openai::embedding_requests(model, &decoded);
    }
    Ok(())
}

/// A model configuration (`config.pbtxt`, or the JSON a load request gives), put through what
/// a load does with it: parsing, auto-completion against a fixed model signature, the
/// scheduler's queue policy and token budget, and the JSON served at `/v2/models/{m}/config`.
pub fn model_config(text: &str, json: bool) -> Result<(), ServeError> {
    let mut parsed =
        if json { config::parse_json(text) } else { config::parse_pbtxt(text) }.map_err(|e| ServeError::invalid(e.to_string()))?;
    let _ = config::to_json(&parsed);
    let tensor = |name: &str, datatype, shape: &[i64]| TensorInfo { name: name.into(), datatype, shape: shape.to_vec() };
    let signature = ModelSignature {
        inputs: vec![tensor("x", DataType::Fp32, &[-1, 3]), tensor("t", DataType::Bytes, &[-1])],
        outputs: vec![tensor("a", DataType::Fp32, &[-1, 2])],
    };
    config::autocomplete(&mut parsed, "m", "onnxruntime_onnx", "onnxruntime", &signature, 4)
        .map_err(|e| ServeError::invalid(e.to_string()))?;
    crate::scheduler::policy::queue_policy(&parsed).map_err(ServeError::invalid)?;
    crate::model::max_batch_tokens(&parsed).map_err(|e| ServeError::invalid(e.to_string()))?;
    let _ = config::to_json(&parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_requests_pass_every_decoder() {
        let v2 = r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]},{"name":"t","shape":[1],"datatype":"BYTES","data":["a"]}]}"#;
        assert!(v2_infer(Bytes::from(v2), None, None).is_ok());
        assert!(models()[0].validate(crate::http::v2::decode_request(Bytes::from(v2), None).unwrap()).is_ok());
        assert!(v2_infer(Bytes::from(v2), Some(b"br"), None).is_err());
        assert!(v2_infer(Bytes::from(v2), None, Some(b"x")).is_err());
        let request = proto::ModelInferRequest {
            inputs: vec![proto::model_infer_request::InferInputTensor {
                name: "x".into(),
                datatype: "INT32".into(),
                shape: vec![2, 1],
                ..Default::default()
            }],
            raw_input_contents: vec![Bytes::from(vec![0; 8])],
            ..Default::default()
        };
        assert!(grpc_infer(&request.encode_to_vec()).is_ok());
        assert!(models()[1].validate(crate::grpc::decode_request(request).unwrap()).is_ok());
        assert!(openai_embeddings(br#"{"model":"embedding","input":["a","b"]}"#).is_ok());
        assert_eq!(openai::embedding_requests(&models()[2], &openai::decode(br#"{"model":"e","input":"a"}"#).unwrap()).unwrap().hidden, 4);
        let pbtxt = model_config("max_batch_size: 2 input [{ name: \"x\" data_type: TYPE_FP32 dims: [3] }]", false);
        assert!(pbtxt.is_ok(), "{pbtxt:?}");
        assert!(model_config(r#"{"max_batch_size": 2}"#, true).is_ok());
        assert!(model_config("max_batch_size: -1", false).is_err());
        let decoded = crate::http::v1::decode_predict(br#"{"instances":[[1,2,3]]}"#, &models()[1]).unwrap();
        assert!(models()[1].validate(decoded).is_err(), "the fixed model's input has two rows");
        let decoded = crate::http::v1::decode_predict(br#"{"instances":[[1,2,3],[4,5,6]]}"#, &models()[1]).unwrap();
        assert_eq!(models()[1].validate(decoded).unwrap().inputs[0].shape(), [6]);
    }
}
