//! What to send: the model's inputs with concrete shapes, and the encoded V2 infer request.
//!
//! The request is encoded once, with Triton's binary tensor extension, and every worker
//! sends the same [`Bytes`] (a reference-counted clone per request, no copy).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use quiver_model_formats::DataType;

use crate::{
    args::ShapeOverride,
    data::{random_tensor_bytes, SplitMix64},
    BenchError,
};

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

/// Gives every input a concrete shape.
///
/// Whether the model batches comes from its configuration's `max_batch_size` when the server
/// serves `/config`, and otherwise from whether every input's first dimension is -1. When it
/// batches, the first dimension is `batch_size` and the others come from the metadata, or from
/// a `--shape` override (which, as in perf_analyzer, leaves out the batch dimension). When it
/// does not, a `--shape` override gives the whole shape and `batch_size` must be 1.
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
    let batching = match max_batch_size {
        Some(max) => max > 0,
        None => metadata.inputs.iter().all(|i| i.shape.first() == Some(&-1)),
    };
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
            let datatype = DataType::from_v2(&input.datatype).ok_or_else(|| {
                BenchError::InvalidInput(format!("input '{}': unknown datatype '{}'", input.name, input.datatype))
            })?;
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
                None => declared
                    .iter()
                    .map(|&d| usize::try_from(d).ok())
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| {
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

/// An encoded infer request body: a JSON header followed by the binary tensors.
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// The whole body.
    pub body: Bytes,
    /// Length of the JSON header (`Inference-Header-Content-Length`).
    pub json_len: usize,
}

#[derive(Serialize)]
struct JsonInput<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'static str,
    parameters: BinarySize,
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// Encodes an infer request for `inputs` with random data from [`DATA_SEED`], asking for
/// every output in binary (`binary_data_output`).
pub fn encode_infer_request(inputs: &[InputSpec]) -> Result<EncodedRequest, BenchError> {
    let mut rng = SplitMix64::new(DATA_SEED);
    let tensors: Vec<Vec<u8>> = inputs.iter().map(|i| random_tensor_bytes(i.datatype, i.element_count(), &mut rng)).collect();
    let header = serde_json::json!({
        "inputs": inputs
            .iter()
            .zip(&tensors)
            .map(|(i, data)| JsonInput {
                name: &i.name,
                shape: &i.shape,
                datatype: i.datatype.as_v2(),
                parameters: BinarySize { binary_data_size: data.len() },
            })
            .collect::<Vec<_>>(),
        "parameters": { "binary_data_output": true },
    });
    let json = serde_json::to_vec(&header).map_err(|e| BenchError::InvalidInput(format!("encoding the request: {e}")))?;
    let json_len = json.len();
    let mut body = json;
    body.reserve_exact(tensors.iter().map(Vec::len).sum());
    for t in &tensors {
        body.extend_from_slice(t);
    }
    Ok(EncodedRequest { body: Bytes::from(body), json_len })
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

    #[test]
    fn body_is_json_header_then_binary_tensors() {
        let inputs = vec![
            InputSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![2, 3] },
            InputSpec { name: "s".into(), datatype: DataType::Bytes, shape: vec![2] },
            InputSpec { name: "b".into(), datatype: DataType::Bool, shape: vec![2, 1] },
        ];
        let req = encode_infer_request(&inputs).unwrap();
        let header: serde_json::Value = serde_json::from_slice(&req.body[..req.json_len]).unwrap();
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
        assert_eq!(req.body.len(), req.json_len + sizes.iter().sum::<usize>());
        // The first tensor starts right after the header: six floats in [0, 1).
        let floats: Vec<f32> =
            req.body[req.json_len..req.json_len + 24].chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        assert!(floats.iter().all(|x| (0.0..1.0).contains(x)));
        // Deterministic: the same inputs encode to the same bytes.
        assert_eq!(encode_infer_request(&inputs).unwrap().body, req.body);
    }
}
