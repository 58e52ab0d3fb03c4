//! `--input-data`: where the request tensors come from — generated random or zero data, or a
//! file in perf_analyzer's JSON format.
//!
//! The file holds a list of *steps*, each giving every input's data:
//!
//! ```json
//! {"data": [
//!   {"x": [0.1, 0.2, 0.3, 0.4], "ids": {"content": [1, 2, 3], "shape": [3]}},
//!   {"x": [[0.5, 0.6], [0.7, 0.8]], "ids": {"content": [4, 5, 6], "shape": [3]}}
//! ]}
//! ```
//!
//! An input's data is a (possibly nested) array or `{"content": [...], "shape": [...]}`; as in
//! perf_analyzer, a step is one batch row when the model batches (a request of batch size b
//! takes b consecutive steps) and a whole request when it does not. A shape given in the file
//! fixes the input's variable dimensions, so `--shape` is then not needed. Each distinct
//! request is encoded once; workers cycle through them.

use std::{fmt, path::PathBuf, str::FromStr};

use serde_json::Value;

use quiver_core::DataType;

use crate::{
    args::ShapeOverride,
    data::{random_tensor_bytes, zero_tensor_bytes, SplitMix64},
    request::{InputSpec, DATA_SEED},
    BenchError,
};

/// Largest data file read, in bytes.
pub const MAX_DATA_FILE_BYTES: u64 = 1 << 30;

/// `--input-data random|zero|FILE.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputData {
    /// Uniform random data from a fixed seed (the default).
    Random,
    /// All zeros.
    Zero,
    /// Steps read from a JSON file.
    File(PathBuf),
}

impl FromStr for InputData {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "random" => InputData::Random,
            "zero" => InputData::Zero,
            "" => return Err("empty --input-data".into()),
            path => InputData::File(PathBuf::from(path)),
        })
    }
}

impl fmt::Display for InputData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputData::Random => f.write_str("random"),
            InputData::Zero => f.write_str("zero"),
            InputData::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One input of one request: its shape and its data in the binary tensor layout
/// (little-endian elements; a BYTES element is a 4-byte length and its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    /// Name, datatype and shape (batch dimension included).
    pub spec: InputSpec,
    /// The data.
    pub data: Vec<u8>,
}

/// Every input of one request, in the model's order.
pub type RequestData = Vec<InputTensor>;

/// The steps of a data file: for each step, each input's elements and optional shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DataFile {
    steps: Vec<Vec<(String, StepTensor)>>,
}

#[derive(Debug, Clone, PartialEq)]
struct StepTensor {
    elements: Vec<Value>,
    shape: Option<Vec<usize>>,
}

impl DataFile {
    /// Reads and parses a data file.
    pub fn read(path: &std::path::Path) -> Result<DataFile, BenchError> {
        let invalid = |e: &dyn fmt::Display| BenchError::InvalidInput(format!("--input-data {}: {e}", path.display()));
        let size = std::fs::metadata(path).map_err(|e| invalid(&e))?.len();
        if size > MAX_DATA_FILE_BYTES {
            return Err(invalid(&format!("{size} bytes is over the {MAX_DATA_FILE_BYTES}-byte limit")));
        }
        let text = std::fs::read(path).map_err(|e| invalid(&e))?;
        let value: Value = serde_json::from_slice(&text).map_err(|e| invalid(&e))?;
        DataFile::from_json(value).map_err(|e| invalid(&e))
    }

    /// Parses perf_analyzer's layout: `{"data": [{input: data, ...}, ...]}`.
    pub fn from_json(value: Value) -> Result<DataFile, String> {
        let Value::Object(mut root) = value else { return Err("expected an object with a \"data\" list".into()) };
        let Some(Value::Array(steps)) = root.remove("data") else { return Err("expected a \"data\" list".into()) };
        if steps.is_empty() {
            return Err("\"data\" holds no steps".into());
        }
        let steps = steps
            .into_iter()
            .enumerate()
            .map(|(i, step)| {
                let Value::Object(step) = step else {
                    return Err(format!("step {i} is not an object of inputs (several streams are not supported)"));
                };
                step.into_iter()
                    .map(|(name, v)| {
                        let tensor = StepTensor::from_json(v).map_err(|e| format!("step {i}, input '{name}': {e}"))?;
                        Ok((name, tensor))
                    })
                    .collect::<Result<Vec<_>, String>>()
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(DataFile { steps })
    }

    /// The shapes the first step gives, as `--shape` overrides for the inputs the command line
    /// leaves open (the command line wins).
    pub fn shape_overrides(&self, given: &[ShapeOverride]) -> Vec<ShapeOverride> {
        let mut overrides = given.to_vec();
        for (name, tensor) in self.steps.first().into_iter().flatten() {
            if let Some(dims) = &tensor.shape {
                if !given.iter().any(|o| &o.name == name) {
                    overrides.push(ShapeOverride { name: name.clone(), dims: dims.clone() });
                }
            }
        }
        overrides
    }

    /// One request per step: a request of batch size b takes steps `i*b .. i*b+b` (wrapping)
    /// when the model batches, step `i` when it does not.
    pub fn requests(&self, inputs: &[InputSpec], batching: bool) -> Result<Vec<RequestData>, BenchError> {
        let rows = if batching { inputs.first().and_then(|i| i.shape.first().copied()).unwrap_or(1) } else { 1 };
        let n = self.steps.len();
        (0..n)
            .map(|i| {
                inputs
                    .iter()
                    .map(|spec| {
                        let per_step: usize = if batching { spec.shape[1..].iter().product() } else { spec.element_count() };
                        let mut data = Vec::new();
                        for j in 0..rows {
                            let step = (i * rows + j) % n;
                            let tensor = self.steps[step].iter().find(|(name, _)| name == &spec.name).map(|(_, t)| t).ok_or_else(|| {
                                BenchError::InvalidInput(format!("--input-data: step {step} has no data for input '{}'", spec.name))
                            })?;
                            if tensor.elements.len() != per_step {
                                return Err(BenchError::InvalidInput(format!(
                                    "--input-data: step {step}, input '{}': {} elements, the shape {:?} needs {per_step}",
                                    spec.name,
                                    tensor.elements.len(),
                                    if batching { &spec.shape[1..] } else { &spec.shape[..] },
                                )));
                            }
                            encode_elements(spec.datatype, &tensor.elements, &mut data)
                                .map_err(|e| BenchError::InvalidInput(format!("--input-data: step {step}, input '{}': {e}", spec.name)))?;
                        }
                        Ok(InputTensor { spec: spec.clone(), data })
                    })
                    .collect()
            })
            .collect()
    }
}

impl StepTensor {
    fn from_json(value: Value) -> Result<StepTensor, String> {
        let (content, shape) = match value {
            Value::Object(mut o) => {
                if o.contains_key("b64") {
                    return Err("\"b64\" data is not supported; give the elements as \"content\"".into());
                }
                let content = o.remove("content").ok_or("expected \"content\" (and optionally \"shape\")")?;
                let shape = match o.remove("shape") {
                    None => None,
                    Some(s) => Some(serde_json::from_value::<Vec<usize>>(s).map_err(|e| format!("shape: {e}"))?),
                };
                (content, shape)
            }
            other => (other, None),
        };
        let mut elements = Vec::new();
        flatten(content, &mut elements);
        if let Some(shape) = &shape {
            let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("the shape overflows")?;
            if count != elements.len() {
                return Err(format!("shape {shape:?} needs {count} elements, the content has {}", elements.len()));
            }
        }
        Ok(StepTensor { elements, shape })
    }
}

fn flatten(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|v| flatten(v, out)),
        scalar => out.push(scalar),
    }
}

/// Appends JSON elements in `datatype`'s binary layout, checking each fits.
fn encode_elements(datatype: DataType, elements: &[Value], out: &mut Vec<u8>) -> Result<(), String> {
    for v in elements {
        let bad = || format!("{v} is not a valid {datatype} element");
        let int = || v.as_i64().or_else(|| v.as_bool().map(i64::from)).ok_or_else(bad);
        let uint = || v.as_u64().or_else(|| v.as_bool().map(u64::from)).ok_or_else(bad);
        let float = || v.as_f64().ok_or_else(bad);
        macro_rules! put_int {
            ($t:ty, $get:expr) => {
                out.extend_from_slice(&<$t>::try_from($get()?).map_err(|_| bad())?.to_le_bytes())
            };
        }
        match datatype {
            DataType::Bool => out.push(u8::from(v.as_bool().or_else(|| v.as_u64().filter(|&n| n <= 1).map(|n| n == 1)).ok_or_else(bad)?)),
            DataType::Uint8 => put_int!(u8, uint),
            DataType::Uint16 => put_int!(u16, uint),
            DataType::Uint32 => put_int!(u32, uint),
            DataType::Uint64 => put_int!(u64, uint),
            DataType::Int8 => put_int!(i8, int),
            DataType::Int16 => put_int!(i16, int),
            DataType::Int32 => put_int!(i32, int),
            DataType::Int64 => put_int!(i64, int),
            DataType::Fp16 => out.extend_from_slice(&half::f16::from_f64(float()?).to_le_bytes()),
            DataType::Bf16 => out.extend_from_slice(&half::bf16::from_f64(float()?).to_le_bytes()),
            DataType::Fp32 => out.extend_from_slice(&(float()? as f32).to_le_bytes()),
            DataType::Fp64 => out.extend_from_slice(&float()?.to_le_bytes()),
            DataType::Bytes => {
                let s = v.as_str().ok_or_else(bad)?;
                let len = u32::try_from(s.len()).map_err(|_| bad())?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    Ok(())
}

/// The distinct requests of a run: one for generated data, one per step for a file.
pub fn build_requests(
    source: &InputData,
    file: Option<&DataFile>,
    inputs: &[InputSpec],
    batching: bool,
) -> Result<Vec<RequestData>, BenchError> {
    match (source, file) {
        (InputData::File(_), Some(file)) => file.requests(inputs, batching),
        (InputData::File(path), None) => Err(BenchError::InvalidInput(format!("--input-data {}: not read", path.display()))),
        (InputData::Random, _) => {
            let mut rng = SplitMix64::new(DATA_SEED);
            Ok(vec![inputs
                .iter()
                .map(|spec| InputTensor { spec: spec.clone(), data: random_tensor_bytes(spec.datatype, spec.element_count(), &mut rng) })
                .collect()])
        }
        (InputData::Zero, _) => Ok(vec![inputs
            .iter()
            .map(|spec| InputTensor { spec: spec.clone(), data: zero_tensor_bytes(spec.datatype, spec.element_count()) })
            .collect()]),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(name: &str, datatype: DataType, shape: &[usize]) -> InputSpec {
        InputSpec { name: name.into(), datatype, shape: shape.to_vec() }
    }

    fn floats(data: &[u8]) -> Vec<f32> {
        data.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    #[test]
    fn sources_parse() {
        assert_eq!("random".parse::<InputData>().unwrap(), InputData::Random);
        assert_eq!("zero".parse::<InputData>().unwrap(), InputData::Zero);
        assert_eq!("d.json".parse::<InputData>().unwrap(), InputData::File("d.json".into()));
        assert!("".parse::<InputData>().is_err());
    }

    #[test]
    fn batched_requests_take_consecutive_steps() {
        let file = DataFile::from_json(json!({"data": [
            {"x": [1.0, 2.0], "ids": {"content": [1], "shape": [1]}},
            {"x": [[3.0], [4.0]], "ids": {"content": [2], "shape": [1]}},
            {"x": [5.0, 6.0], "ids": [3]},
        ]}))
        .unwrap();
        let inputs = [spec("x", DataType::Fp32, &[2, 2]), spec("ids", DataType::Int64, &[2, 1])];
        let requests = file.requests(&inputs, true).unwrap();
        assert_eq!(requests.len(), 3);
        assert_eq!(floats(&requests[0][0].data), [1.0, 2.0, 3.0, 4.0]);
        // Request 1 takes steps 2 and 0 (wrapping).
        assert_eq!(floats(&requests[1][0].data), [5.0, 6.0, 1.0, 2.0]);
        assert_eq!(requests[1][1].data, [3i64.to_le_bytes(), 1i64.to_le_bytes()].concat());
        assert_eq!(requests[2][1].spec, inputs[1]);
    }

    #[test]
    fn unbatched_requests_are_whole_steps() {
        let file = DataFile::from_json(json!({"data": [{"s": ["ab", "c"], "b": [true, 0]}]})).unwrap();
        let inputs = [spec("s", DataType::Bytes, &[2]), spec("b", DataType::Bool, &[2])];
        let r = file.requests(&inputs, false).unwrap();
        assert_eq!(r[0][0].data, [&2u32.to_le_bytes()[..], b"ab", &1u32.to_le_bytes(), b"c"].concat());
        assert_eq!(r[0][1].data, [1, 0]);
    }

    #[test]
    fn file_shapes_fill_open_dimensions_unless_given() {
        let file =
            DataFile::from_json(json!({"data": [{"ids": {"content": [1, 2, 3], "shape": [3]}, "x": {"content": [1], "shape": [1]}}]}))
                .unwrap();
        let given = [ShapeOverride { name: "x".into(), dims: vec![7] }];
        let overrides = file.shape_overrides(&given);
        assert_eq!(overrides.len(), 2);
        assert_eq!(overrides[0].dims, [7]);
        assert_eq!(overrides[1], ShapeOverride { name: "ids".into(), dims: vec![3] });
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let err = |v: Value| DataFile::from_json(v).unwrap_err();
        assert!(err(json!([1])).contains("\"data\""));
        assert!(err(json!({"data": []})).contains("no steps"));
        assert!(err(json!({"data": [[{"x": [1]}]]})).contains("streams"));
        assert!(err(json!({"data": [{"x": {"b64": "AAAA"}}]})).contains("b64"));
        assert!(err(json!({"data": [{"x": {"content": [1, 2], "shape": [3]}}]})).contains("needs 3 elements"));
        assert!(err(json!({"data": [{"x": {"content": [1], "shape": [-1]}}]})).contains("shape"));

        let file = |v: Value| DataFile::from_json(v).unwrap();
        let inputs = [spec("x", DataType::Uint8, &[1, 2])];
        let msg = |f: DataFile| f.requests(&inputs, true).unwrap_err().to_string();
        assert!(msg(file(json!({"data": [{"y": [1, 2]}]}))).contains("no data for input 'x'"));
        assert!(msg(file(json!({"data": [{"x": [1, 2, 3]}]}))).contains("3 elements"));
        assert!(msg(file(json!({"data": [{"x": [1, 256]}]}))).contains("256 is not a valid UINT8"));
        assert!(msg(file(json!({"data": [{"x": [1, -1]}]}))).contains("-1 is not a valid UINT8"));
        assert!(msg(file(json!({"data": [{"x": [1, "a"]}]}))).contains("not a valid"));
    }

    #[test]
    fn generated_sources_give_one_request() {
        let inputs = [spec("x", DataType::Fp32, &[1, 3])];
        let zero = build_requests(&InputData::Zero, None, &inputs, true).unwrap();
        assert_eq!(zero.len(), 1);
        assert_eq!(zero[0][0].data, vec![0; 12]);
        let random = build_requests(&InputData::Random, None, &inputs, true).unwrap();
        assert!(floats(&random[0][0].data).iter().all(|x| (0.0..1.0).contains(x)));
        assert_eq!(random, build_requests(&InputData::Random, None, &inputs, true).unwrap(), "seeded");
        assert!(build_requests(&InputData::File("x.json".into()), None, &inputs, true).is_err());
    }
}
