//! The Open Inference Protocol's REST inference body: JSON, optionally followed by raw tensors
//! (Triton's binary tensor data extension), in both directions.

use bytes::{BufMut, Bytes, BytesMut};
use quiver_core::{tensor::shape_from_i64, DataType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::codec::{tensor_from_json, JsonData};
use crate::{
    edge,
    infer::{InferInput, InferRequest, InferResponse, ParameterValue, Parameters, RequestedOutput},
    ServeError,
};

/// The header giving the length of the JSON part of a binary-extension body.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

#[derive(Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

/// Reads the `Inference-Header-Content-Length` header's value, when the request has one.
pub(crate) fn json_length(header: Option<&[u8]>) -> Result<Option<usize>, ServeError> {
    let Some(value) = header else { return Ok(None) };
    std::str::from_utf8(value)
        .ok()
        .filter(|v| v.is_ascii())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| ServeError::InvalidInput("Inference-Header-Content-Length is not a number".into()))
}

/// Converts JSON parameters; nested objects and arrays are rejected.
pub fn parameters_from_json(map: Option<Map<String, Value>>) -> Result<Parameters, ServeError> {
    let mut out = Parameters::new();
    for (key, value) in map.unwrap_or_default() {
        let converted = match value {
            Value::Bool(b) => ParameterValue::Bool(b),
            Value::String(s) => ParameterValue::String(s),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => ParameterValue::Int(i),
                (None, Some(u), _) => ParameterValue::Uint(u),
                (None, None, Some(f)) => ParameterValue::Double(f),
                _ => return Err(ServeError::invalid(format!("parameter '{key}' is not a representable number"))),
            },
            other => return Err(ServeError::invalid(format!("parameter '{key}' must be a bool, number or string, got {other}"))),
        };
        out.insert(key, converted);
    }
    Ok(out)
}

/// Decodes an inference request body. `json_length` is the `Inference-Header-Content-Length`
/// header when present: the body is then that many bytes of JSON followed by the binary
/// tensors, in input order, each `parameters.binary_data_size` long. Binary tensors are
/// sliced out of `body` without copying.
pub fn decode_request(body: Bytes, json_length: Option<usize>) -> Result<InferRequest, ServeError> {
    let json_length = json_length.unwrap_or(body.len());
    if json_length > body.len() {
        return Err(ServeError::invalid(format!(
            "Inference-Header-Content-Length is {json_length} but the body has only {} bytes",
            body.len()
        )));
    }
    let parsed: RequestJson =
        serde_json::from_slice(&body[..json_length]).map_err(|e| ServeError::invalid(format!("failed to parse the request JSON: {e}")))?;
    let mut binary = body.slice(json_length..);

    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let datatype = DataType::from_v2(&input.datatype)
            .ok_or_else(|| ServeError::invalid(format!("input '{}': unknown datatype '{}'", input.name, input.datatype)))?;
        let shape = shape_from_i64(&input.shape).map_err(|e| ServeError::invalid(format!("input '{}': {e}", input.name)))?;
        let parameters = parameters_from_json(input.parameters)?;
        edge::refuse_input_extensions(|k| parameters.contains_key(k))?;
        let tensor = match parameters.get("binary_data_size") {
            Some(size) => {
                if input.data.is_some() {
                    return Err(ServeError::invalid(format!("input '{}' has both 'data' and 'binary_data_size'", input.name)));
                }
                let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                    ServeError::invalid(format!("input '{}': binary_data_size must be a non-negative integer", input.name))
                })?;
                if size > binary.len() {
                    return Err(ServeError::invalid(format!(
                        "input '{}': binary_data_size {size} runs past the end of the body ({} bytes of binary data left)",
                        input.name,
                        binary.len()
                    )));
                }
                let data = binary.split_to(size);
                Tensor::from_bytes(datatype, shape, data).map_err(|e| ServeError::invalid(format!("input '{}': {e}", input.name)))?
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| ServeError::invalid(format!("input '{}' has no 'data'", input.name)))?;
                tensor_from_json(&input.name, datatype, shape, data)?
            }
        };
        inputs.push(InferInput { name: input.name, tensor });
    }
    if !binary.is_empty() {
        return Err(ServeError::invalid(format!("{} bytes of binary data follow the inputs and belong to none of them", binary.len())));
    }
    let outputs = parsed
        .outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let parameters = parameters_from_json(o.parameters)?;
            edge::refuse_output_extensions(|k| parameters.contains_key(k))?;
            Ok::<_, ServeError>(RequestedOutput { name: o.name, parameters })
        })
        .collect::<Result<Vec<_>, _>>()?;
    InferRequest::new(parsed.id, parameters_from_json(parsed.parameters)?, inputs, outputs)
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    outputs: Vec<OutputResponseJson<'a>>,
}

#[derive(Serialize)]
struct OutputResponseJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

/// Which outputs go in binary form: an output's own `binary_data` parameter wins, then the
/// request's `binary_data_output`, and JSON otherwise.
fn wants_binary(request: &RequestOptions, name: &str) -> bool {
    request.per_output.iter().find(|(n, _)| n == name).and_then(|(_, b)| *b).unwrap_or(request.binary_data_output)
}

/// What of the request the response encoding needs.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    binary_data_output: bool,
    per_output: Vec<(String, Option<bool>)>,
}

impl RequestOptions {
    /// Reads the binary-output choices from a decoded request.
    pub fn of(request: &InferRequest) -> RequestOptions {
        RequestOptions {
            binary_data_output: request.parameters.get("binary_data_output").and_then(ParameterValue::as_bool).unwrap_or(false),
            per_output: request
                .outputs
                .iter()
                .map(|o| (o.name.clone(), o.parameters.get("binary_data").and_then(ParameterValue::as_bool)))
                .collect(),
        }
    }
}

/// An encoded response body and the JSON length to send as `Inference-Header-Content-Length`
/// when binary outputs follow it.
pub struct EncodedResponse {
    /// The body.
    pub body: Bytes,
    /// `Some(json length)` when the body carries binary outputs.
    pub json_length: Option<usize>,
}

/// Encodes a response: JSON, with the outputs that asked for it appended in binary form.
pub fn encode_response(response: &InferResponse, options: &RequestOptions) -> Result<EncodedResponse, ServeError> {
    let mut binary_parts: Vec<&Bytes> = Vec::new();
    let outputs = response
        .outputs
        .iter()
        .map(|o| {
            if wants_binary(options, &o.name) {
                binary_parts.push(o.tensor.data());
                OutputResponseJson {
                    name: &o.name,
                    datatype: o.tensor.datatype().as_v2(),
                    shape: o.tensor.shape(),
                    parameters: Some(BinaryParameters { binary_data_size: o.tensor.data().len() }),
                    data: None,
                }
            } else {
                OutputResponseJson {
                    name: &o.name,
                    datatype: o.tensor.datatype().as_v2(),
                    shape: o.tensor.shape(),
                    parameters: None,
                    data: Some(JsonData(&o.tensor)),
                }
            }
        })
        .collect();
    let json =
        ResponseJson { model_name: &response.model_name, model_version: &response.model_version, id: response.id.as_deref(), outputs };
    let header = serde_json::to_vec(&json).map_err(|e| ServeError::Inference(format!("failed to encode the response: {e}")))?;
    if binary_parts.is_empty() {
        return Ok(EncodedResponse { body: Bytes::from(header), json_length: None });
    }
    let total = header.len() + binary_parts.iter().map(|b| b.len()).sum::<usize>();
    let mut body = BytesMut::with_capacity(total);
    body.put_slice(&header);
    for part in binary_parts {
        body.put_slice(part);
    }
    Ok(EncodedResponse { body: body.freeze(), json_length: Some(header.len()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::InferOutput;

    fn binary_body(json: &str, tail: &[u8]) -> (Bytes, usize) {
        let mut body = json.as_bytes().to_vec();
        body.extend_from_slice(tail);
        (Bytes::from(body), json.len())
    }

    #[test]
    fn decodes_json_and_binary_inputs_together() {
        let json = r#"{"id":"r1","parameters":{"binary_data_output":true},"inputs":[
            {"name":"a","shape":[1,2],"datatype":"INT32","parameters":{"binary_data_size":8}},
            {"name":"b","shape":[2],"datatype":"BYTES","data":["x","yz"]},
            {"name":"c","shape":[1],"datatype":"FP32","parameters":{"binary_data_size":4}}],
            "outputs":[{"name":"o","parameters":{"binary_data":false}}]}"#;
        let mut tail = Vec::new();
        tail.extend_from_slice(&1i32.to_le_bytes());
        tail.extend_from_slice(&2i32.to_le_bytes());
        tail.extend_from_slice(&0.5f32.to_le_bytes());
        let (body, len) = binary_body(json, &tail);
        let request = decode_request(body, Some(len)).unwrap();
        assert_eq!(request.id.as_deref(), Some("r1"));
        assert_eq!(request.inputs.len(), 3);
        assert_eq!(&request.inputs[0].tensor.data()[..], &tail[..8]);
        assert_eq!(request.inputs[1].tensor.bytes_elements().collect::<Vec<_>>(), vec![&b"x"[..], b"yz"]);
        assert_eq!(&request.inputs[2].tensor.data()[..], &0.5f32.to_le_bytes());
        let options = RequestOptions::of(&request);
        assert!(!wants_binary(&options, "o"));
        assert!(wants_binary(&options, "other"));
    }

    #[test]
    fn binary_framing_errors() {
        let json = r#"{"inputs":[{"name":"a","shape":[2],"datatype":"INT32","parameters":{"binary_data_size":8}}]}"#;
        // Header length past the end of the body.
        let (body, len) = binary_body(json, &[0; 8]);
        assert!(decode_request(body.clone(), Some(len + 100)).is_err());
        // binary_data_size past the end.
        let (short, len) = binary_body(json, &[0; 4]);
        let err = decode_request(short, Some(len)).unwrap_err();
        assert!(err.to_string().contains("runs past the end"), "{err}");
        // Left-over bytes.
        let (long, len) = binary_body(json, &[0; 12]);
        assert!(decode_request(long, Some(len)).is_err());
        // The right size works.
        assert!(decode_request(body, Some(len)).is_ok());
        // A BYTES element whose length prefix points past the end of its tensor.
        let json = r#"{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}"#;
        let (body, len) = binary_body(json, &[100, 0, 0, 0, b'a', b'b']);
        let err = decode_request(body, Some(len)).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn malformed_requests_are_invalid_input() {
        for body in [
            "{",
            "[]",
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP99","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32"}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1],"parameters":{"p":[1]}}]}"#,
            r#"{"inputs":[{"name":"a","shape":[1099511627776],"datatype":"FP32","data":[1]}]}"#,
        ] {
            let result = decode_request(Bytes::from(body), None);
            assert!(matches!(result, Err(ServeError::InvalidInput(_))), "{body}: {result:?}");
        }
    }

    #[test]
    fn encodes_json_and_binary_outputs() {
        let t = Tensor::from_bytes(DataType::Fp32, vec![2], Bytes::copy_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64])).unwrap();
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("x".into()),
            outputs: vec![InferOutput { name: "a".into(), tensor: t.clone() }, InferOutput { name: "b".into(), tensor: t }],
            tokens: None,
            timing: Default::default(),
        };
        let json_only = encode_response(&response, &RequestOptions::default()).unwrap();
        assert!(json_only.json_length.is_none());
        let v: Value = serde_json::from_slice(&json_only.body).unwrap();
        assert_eq!(v["outputs"][1]["data"], serde_json::json!([1.0, 2.0]));
        assert_eq!(v["id"], "x");
        let options = RequestOptions { binary_data_output: false, per_output: vec![("b".into(), Some(true))] };
        let mixed = encode_response(&response, &options).unwrap();
        let len = mixed.json_length.unwrap();
        let v: Value = serde_json::from_slice(&mixed.body[..len]).unwrap();
        assert_eq!(v["outputs"][1]["parameters"]["binary_data_size"], 8);
        assert!(v["outputs"][1].get("data").is_none());
        assert_eq!(&mixed.body[len..], &[0, 0, 128, 63, 0, 0, 0, 64]);
    }
}
