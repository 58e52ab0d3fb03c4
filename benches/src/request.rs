//! What to send: the model's inputs with concrete shapes, and the encoded V2 infer request.
//!
//! Each distinct request is encoded once, in Triton's binary tensor extension or in plain
//! JSON, and workers send the same [`Bytes`] (a reference-counted clone per request, no copy).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use quiver_core::DataType;

use crate::{args::ShapeOverride, input::RequestData, BenchError};

/// Seed of the input data: fixed, so every run sends the same bytes.
pub const DATA_SEED: u64 = 0x5155_4956_4552; // "QUIVER"

/// One tensor of `GET /v2/models/{m}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MetadataTensor {
    /// Tensor name.
    pub name: String,
    /// Protocol datatype (`"FP32"`).
    pub datatype: String,
    /// Shape, with -1 for each variable dimension.
    pub shape: Vec<i64>,
}

/// The parts of `GET /v2/models/{m}` the generator needs.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Inputs, in the model's order.
    pub inputs: Vec<MetadataTensor>,
}

/// The parts of Triton's `GET /v2/models/{m}/config` the generator needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelConfigSummary {
    /// 0 when the model does not batch; otherwise the largest batch, and every input's shape is
    /// `[-1] + dims`.
    #[serde(default)]
    pub max_batch_size: i64,
}

/// One input with the shape and data every request carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSpec {
    /// Input name.
    pub name: String,
    /// Datatype.
    #[serde(serialize_with = "serialize_wire_type")]
    pub datatype: DataType,
    /// Concrete shape, batch dimension included.
    pub shape: Vec<usize>,
}

fn serialize_wire_type<S: serde::Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_v2())
}

impl InputSpec {
    /// Number of elements.
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Whether the model batches: from its configuration's `max_batch_size` when the server
/// serves `/config`, otherwise from whether every input's first dimension is -1.
pub fn batches(metadata: &ModelMetadata, max_batch_size: Option<i64>) -> bool {
    match max_batch_size {
        Some(max) => max > 0,
        None => metadata.inputs.iter().all(|i| i.shape.first() == Some(&-1)),
    }
}

/// Gives every input a concrete shape.
///
/// Whether the model batches comes from [`batches`]. When it batches, the first dimension is
/// `batch_size` and the others come from the metadata, or from a `--shape` override (which, as
/// in perf_analyzer, leaves out the batch dimension). When it does not, a `--shape` override gives the whole shape and `batch_size` must be 1.
pub fn resolve_inputs(
    metadata: &ModelMetadata,
    max_batch_size: Option<i64>,
    batch_size: usize,
    overrides: &[ShapeOverride],
) -> Result<Vec<InputSpec>, BenchError> {
    if batch_size == 0 {
        return invalid("batch size must be at least 1".into());
    }
    if metadata.inputs.is_empty() {
        return invalid(format!("model '{}' declares no inputs", metadata.name));
    }
    for o in overrides {
        if !metadata.inputs.iter().any(|i| i.name == o.name) {
            return invalid(format!("--shape names '{}', which is not an input of '{}'", o.name, metadata.name));
        }
    }
    let batching = batches(metadata, max_batch_size);
    if !batching && batch_size > 1 {
        return invalid(format!("model '{}' does not batch, so the batch size must be 1", metadata.name));
    }
    if let Some(max) = max_batch_size.filter(|&m| m > 0) {
        if batch_size as u64 > max as u64 {
            return invalid(format!("batch size {batch_size} exceeds the max_batch_size {max} of '{}'", metadata.name));
        }
    }
    metadata
        .inputs
        .iter()
        .map(|input| {
            let datatype = DataType::from_v2(&input.datatype)
                .ok_or_else(|| BenchError::InvalidInput(format!("input '{}': unknown datatype '{}'", input.name, input.datatype)))?;
            let declared = if batching {
                match input.shape.split_first() {
                    Some((&first, rest)) if first == -1 || first == batch_size as i64 => rest,
                    _ => return invalid(format!("input '{}' has shape {:?}, without a batch dimension", input.name, input.shape)),
                }
            } else {
                &input.shape[..]
            };
            let rest = match overrides.iter().find(|o| o.name == input.name) {
                Some(o) => {
                    if o.dims.len() != declared.len() {
                        return invalid(format!(
                            "--shape {}: {} dimensions given, the input has {}{}",
                            input.name,
                            o.dims.len(),
                            declared.len(),
                            if batching { " besides the batch dimension" } else { "" }
                        ));
                    }
                    for (&given, &want) in o.dims.iter().zip(declared) {
                        if want >= 0 && given as i64 != want {
                            return invalid(format!("--shape {}: {:?} does not fit the declared {declared:?}", input.name, o.dims));
                        }
                    }
                    o.dims.clone()
                }
                None => declared.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<Vec<usize>>>().ok_or_else(|| {
                    BenchError::InvalidInput(format!(
                        "input '{}' has variable dimensions {declared:?}; give them with --shape {}:d1,d2,...",
                        input.name, input.name
                    ))
                })?,
            };
            let shape = if batching { std::iter::once(batch_size).chain(rest).collect() } else { rest };
            Ok(InputSpec { name: input.name.clone(), datatype, shape })
        })
        .collect()
}

fn invalid<T>(msg: String) -> Result<T, BenchError> {
    Err(BenchError::InvalidInput(msg))
}

/// How tensors travel in an HTTP request or response (perf_analyzer's
/// `--input-tensor-format` / `--output-tensor-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TensorFormat {
    /// Triton's binary tensor extension: a JSON header, then the raw tensors.
    Binary,
    /// Plain JSON: every element a JSON number, boolean or string.
    Json,
}

/// An encoded HTTP infer request body.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// The whole body.
    pub body: Bytes,
    /// With binary inputs, the length of the JSON header (`Inference-Header-Content-Length`);
    /// `None` for a plain JSON body.
    pub json_len: Option<usize>,
}

#[derive(Serialize)]
struct JsonInput<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Vec<serde_json::Value>>,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// Encodes a V2 infer request for HTTP: the inputs in `input` format, asking for every output
/// in `output` format (`binary_data_output` for binary).
pub fn encode_http_request(request: &RequestData, input: TensorFormat, output: TensorFormat) -> Result<EncodedRequest, BenchError> {
    let inputs = request
        .iter()
        .map(|t| {
            let (parameters, data) = match input {
                TensorFormat::Binary => (Some(BinarySize { binary_data_size: t.data.len() }), None),
                TensorFormat::Json => (None, Some(json_elements(t.spec.datatype, &t.data)?)),
            };
            Ok(JsonInput { name: &t.spec.name, shape: &t.spec.shape, datatype: t.spec.datatype.as_v2(), parameters, data })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let mut header = serde_json::json!({ "inputs": inputs });
    if output == TensorFormat::Binary {
        header["parameters"] = serde_json::json!({ "binary_data_output": true });
    }
    let json = serde_json::to_vec(&header).map_err(|e| BenchError::InvalidInput(format!("encoding the request: {e}")))?;
    if input == TensorFormat::Json {
        return Ok(EncodedRequest { body: Bytes::from(json), json_len: None });
    }
    let json_len = json.len();
    let mut body = json;
    body.reserve_exact(request.iter().map(|t| t.data.len()).sum());
    for t in request {
        body.extend_from_slice(&t.data);
    }
    Ok(EncodedRequest { body: Bytes::from(body), json_len: Some(json_len) })
}

/// The elements of binary-layout `data` as JSON values (FP16 and BF16 as numbers, BYTES as
/// strings, lossily when not UTF-8).
fn json_elements(datatype: DataType, data: &[u8]) -> Result<Vec<serde_json::Value>, BenchError> {
    use serde_json::Value;
    let malformed = || BenchError::InvalidInput(format!("malformed {datatype} data"));
    if datatype == DataType::Bytes {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(malformed)?;
            let len = u32::from_le_bytes(*len) as usize;
            let s = tail.get(..len).ok_or_else(malformed)?;
            out.push(Value::String(String::from_utf8_lossy(s).into_owned()));
            rest = &tail[len..];
        }
        return Ok(out);
    }
    let size = datatype.element_size().ok_or_else(malformed)?;
    if !data.len().is_multiple_of(size) {
        return Err(malformed());
    }
    Ok(data
        .chunks_exact(size)
        .map(|c| match datatype {
            DataType::Bool => Value::Bool(c[0] != 0),
            DataType::Uint8 => Value::from(c[0]),
            DataType::Uint16 => Value::from(u16::from_le_bytes(le(c))),
            DataType::Uint32 => Value::from(u32::from_le_bytes(le(c))),
            DataType::Uint64 => Value::from(u64::from_le_bytes(le(c))),
            DataType::Int8 => Value::from(c[0] as i8),
            DataType::Int16 => Value::from(i16::from_le_bytes(le(c))),
            DataType::Int32 => Value::from(i32::from_le_bytes(le(c))),
            DataType::Int64 => Value::from(i64::from_le_bytes(le(c))),
            DataType::Fp16 => Value::from(f64::from(half::f16::from_le_bytes(le(c)))),
            DataType::Bf16 => Value::from(f64::from(half::bf16::from_le_bytes(le(c)))),
            DataType::Fp32 => Value::from(f64::from(f32::from_le_bytes(le(c)))),
            DataType::Fp64 => Value::from(f64::from_le_bytes(le(c))),
            DataType::Bytes => Value::Null, // handled above
        })
        .collect())
}

/// The first N bytes of an element (chunks are exactly the element size).
fn le<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&chunk[..N]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(inputs: &[(&str, &str, &[i64])]) -> ModelMetadata {
        ModelMetadata {
            name: "m".into(),
            inputs: inputs
                .iter()
                .map(|(n, d, s)| MetadataTensor { name: n.to_string(), datatype: d.to_string(), shape: s.to_vec() })
                .collect(),
        }
    }

    fn shape(name: &str, dims: &[usize]) -> ShapeOverride {
        ShapeOverride { name: name.into(), dims: dims.to_vec() }
    }

    #[test]
    fn batch_size_fills_the_batch_dimension() {
        let md = metadata(&[("x", "FP32", &[-1, 16]), ("ids", "INT64", &[-1, -1])]);
        let specs = resolve_inputs(&md, Some(8), 4, &[shape("ids", &[7])]).unwrap();
        assert_eq!(specs[0], InputSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![4, 16] });
        assert_eq!(specs[1].shape, vec![4, 7]);
        // Without /config, a leading -1 everywhere means the model batches.
        assert_eq!(resolve_inputs(&md, None, 2, &[shape("ids", &[3])]).unwrap()[1].shape, vec![2, 3]);
    }

    #[test]
    fn shapes_are_checked() {
        let md = metadata(&[("x", "FP32", &[-1, 16]), ("ids", "INT64", &[-1, -1])]);
        let err = |r: Result<Vec<InputSpec>, BenchError>| r.unwrap_err().to_string();
        assert!(err(resolve_inputs(&md, Some(8), 1, &[])).contains("--shape ids"));
        assert!(err(resolve_inputs(&md, Some(8), 9, &[shape("ids", &[1])])).contains("max_batch_size 8"));
        assert!(err(resolve_inputs(&md, Some(8), 1, &[shape("ids", &[1]), shape("nope", &[1])])).contains("nope"));
        assert!(err(resolve_inputs(&md, Some(8), 1, &[shape("ids", &[1, 2])])).contains("2 dimensions given"));
        assert!(err(resolve_inputs(&md, Some(8), 1, &[shape("ids", &[1]), shape("x", &[15])])).contains("does not fit"));
        assert!(err(resolve_inputs(&md, Some(8), 0, &[])).contains("at least 1"));
        let bad = metadata(&[("s", "STRING", &[-1])]);
        assert!(err(resolve_inputs(&bad, None, 1, &[])).contains("unknown datatype"));
    }

    #[test]
    fn non_batching_models_take_whole_shapes() {
        let md = metadata(&[("input", "FP32", &[-1, 4])]);
        assert!(resolve_inputs(&md, Some(0), 1, &[]).unwrap_err().to_string().contains("--shape input"));
        let specs = resolve_inputs(&md, Some(0), 1, &[shape("input", &[3, 4])]).unwrap();
        assert_eq!(specs[0].shape, vec![3, 4]);
        assert!(resolve_inputs(&md, Some(0), 2, &[shape("input", &[3, 4])]).is_err());
        let fixed = metadata(&[("a", "INT32", &[2, 2])]);
        assert_eq!(resolve_inputs(&fixed, None, 1, &[]).unwrap()[0].shape, vec![2, 2]);
    }

    fn requests(inputs: &[InputSpec]) -> RequestData {
        crate::input::build_requests(&crate::input::InputData::Random, None, inputs, true).unwrap().remove(0)
    }

    #[test]
    fn binary_body_is_json_header_then_tensors() {
        let inputs = vec![
            InputSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![2, 3] },
            InputSpec { name: "s".into(), datatype: DataType::Bytes, shape: vec![2] },
            InputSpec { name: "b".into(), datatype: DataType::Bool, shape: vec![2, 1] },
        ];
        let data = requests(&inputs);
        let req = encode_http_request(&data, TensorFormat::Binary, TensorFormat::Binary).unwrap();
        let json_len = req.json_len.unwrap();
        let header: serde_json::Value = serde_json::from_slice(&req.body[..json_len]).unwrap();
        assert_eq!(header["parameters"]["binary_data_output"], true);
        let sizes = [24, 2 * (4 + crate::data::STRING_LENGTH), 2];
        for (i, (input, size)) in inputs.iter().zip(sizes).enumerate() {
            let h = &header["inputs"][i];
            assert_eq!(h["name"], input.name.as_str());
            assert_eq!(h["datatype"], input.datatype.as_v2());
            assert_eq!(h["shape"], serde_json::json!(input.shape));
            assert_eq!(h["parameters"]["binary_data_size"], size);
            assert!(h.get("data").is_none());
        }
        assert_eq!(req.body.len(), json_len + sizes.iter().sum::<usize>());
        assert_eq!(&req.body[json_len..json_len + 24], &data[0].data[..]);
        // JSON outputs: no binary_data_output.
        let req = encode_http_request(&data, TensorFormat::Binary, TensorFormat::Json).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&req.body[..req.json_len.unwrap()]).unwrap();
        assert!(header.get("parameters").is_none());
    }

    #[test]
    fn json_body_carries_the_same_elements() {
        let inputs: Vec<InputSpec> = quiver_core::datatype::ALL_DATATYPES
            .iter()
            .map(|&t| InputSpec { name: t.as_v2().to_lowercase(), datatype: t, shape: vec![1, 3] })
            .collect();
        let data = requests(&inputs);
        let req = encode_http_request(&data, TensorFormat::Json, TensorFormat::Binary).unwrap();
        assert_eq!(req.json_len, None);
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["parameters"]["binary_data_output"], true);
        for (i, t) in data.iter().enumerate() {
            let h = &body["inputs"][i];
            assert_eq!(h["shape"], serde_json::json!([1, 3]));
            assert!(h.get("parameters").is_none());
            let elements = h["data"].as_array().unwrap();
            assert_eq!(elements.len(), 3, "{h}");
            // Re-encoding the JSON elements gives back the binary data exactly.
            let file =
                crate::input::DataFile::from_json(serde_json::json!({"data": [{ t.spec.name.clone(): h["data"].clone() }]})).unwrap();
            let again = file.requests(std::slice::from_ref(&t.spec), false).unwrap();
            assert_eq!(again[0][0].data, t.data, "{}", t.spec.datatype);
        }
        let negative = crate::input::DataFile::from_json(serde_json::json!({"data": [{"x": [-1, -128, 127]}]})).unwrap();
        let spec = InputSpec { name: "x".into(), datatype: DataType::Int8, shape: vec![3] };
        let t = negative.requests(std::slice::from_ref(&spec), false).unwrap().remove(0);
        let body = encode_http_request(&t, TensorFormat::Json, TensorFormat::Json).unwrap().body;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["inputs"][0]["data"], serde_json::json!([-1, -128, 127]));
    }
}
