//! The ONNX backend, on tract-onnx (CPU).
//!
//! Models are loaded with their variable dimensions kept symbolic, so one optimized plan serves
//! every batch size. `ai.onnx.ml` operators that tract lacks are registered from [`ml`].
#![warn(missing_docs)]

mod check;
pub mod ml;

use std::{path::Path, sync::Arc};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, GenericFactoid, InferenceFact, ShapeFactoid};

use quiver_core::{Backend, BackendError, DataType, Model, ModelSignature, Tensor, TensorInfo};

/// Loads `.onnx` files with tract.
#[derive(Debug, Default, Clone, Copy)]
pub struct OnnxBackend;

impl Backend for OnnxBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    /// Triton's ONNX platform; `backend: "tract"`; a default engine when a config names neither;
    /// and `backend: "onnxruntime"` in builds without an engine of that name (a config naming
    /// an engine that exists asks for that engine: see `quiver_core::engines`).
    fn serves(&self, platform: &str, backend: &str) -> bool {
        matches!(platform, "" | "onnxruntime_onnx") && matches!(backend, "" | "tract" | "onnxruntime")
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }

    fn default_model_filename(&self) -> &'static str {
        "model.onnx"
    }

    fn load(&self, path: &Path) -> Result<Box<dyn Model>, BackendError> {
        Ok(Box::new(OnnxModel::load(path)?))
    }
}

/// A loaded, optimized ONNX model.
#[derive(Debug)]
pub struct OnnxModel {
    plan: Arc<TypedRunnableModel>,
    signature: ModelSignature,
    input_types: Vec<DatumType>,
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> BackendError {
    BackendError::Load(format!("{}: {e:#}", path.display()))
}

/// Checks the ONNX file at `path` as this engine does before loading it (every tensor against
/// the bytes backing it, external data inside the model's directory, at most 2 GiB), without
/// building a model: for engines that hand the file to a library that would trust its claims
/// (the onnxruntime engine). The error says what is wrong and names the tensor.
pub fn check_onnx_file(path: &Path) -> Result<(), String> {
    check::read_checked(path).map(drop)
}

impl OnnxModel {
    /// Parses, type-checks and optimizes the model at `path`.
    pub fn load(path: &Path) -> Result<OnnxModel, BackendError> {
        let mut onnx = tract_onnx::onnx();
        ml::register(&mut onnx);
        // The file's tensors are checked against the bytes backing them before tract
        // materializes any of them.
        let proto = check::read_checked(path).map_err(|e| load_error(path, e))?;
        let dir = path.parent().and_then(Path::to_str);
        let parsed = onnx.parse(&proto, dir).map_err(|e| load_error(path, e))?;
        drop(proto);
        if !parsed.unresolved_inputs.is_empty() {
            return Err(load_error(path, format!("could not resolve inputs at top level: {:?}", parsed.unresolved_inputs)));
        }
        let mut model = parsed.model;

        // Every input needs a known element type and rank; dimensions the file leaves unnamed
        // become fresh symbols so the plan stays valid for any size.
        let mut input_types = Vec::new();
        let mut inputs = Vec::new();
        for ix in 0..model.inputs.len() {
            let fact = model.input_fact(ix).map_err(|e| load_error(path, e))?.clone();
            let name = model.node(model.inputs[ix].node).name.clone();
            let dt = fact.datum_type.concretize().ok_or_else(|| load_error(path, format!("input '{name}' has no element type")))?;
            if fact.shape.is_open() {
                return Err(load_error(path, format!("input '{name}' has an unknown rank")));
            }
            let dims: TVec<TDim> = fact
                .shape
                .dims()
                .enumerate()
                .map(|(d, dim)| match dim {
                    GenericFactoid::Only(v) => v.clone(),
                    GenericFactoid::Any => model.symbols.sym(&format!("quiver_in{ix}_d{d}")).into(),
                })
                .collect();
            let shape: Vec<i64> = dims.iter().map(|d| d.to_i64().unwrap_or(-1)).collect();
            let datatype = datatype_of(dt).ok_or_else(|| load_error(path, format!("input '{name}' has unsupported type {dt:?}")))?;
            let closed = ShapeFactoid::closed(dims.into_iter().map(GenericFactoid::Only).collect());
            model.set_input_fact(ix, InferenceFact::dt_shape(dt, closed)).map_err(|e| load_error(path, e))?;
            input_types.push(dt);
            inputs.push(TensorInfo { name, datatype, shape });
        }

        let typed = model.into_typed().map_err(|e| load_error(path, e))?;
        let mut outputs = Vec::new();
        for (ix, outlet) in typed.outputs.iter().enumerate() {
            let fact = typed.output_fact(ix).map_err(|e| load_error(path, e))?;
            let name = typed.outlet_label(*outlet).map(str::to_string).unwrap_or_else(|| typed.node(outlet.node).name.clone());
            let datatype = datatype_of(fact.datum_type)
                .ok_or_else(|| load_error(path, format!("output '{name}' has unsupported type {:?}", fact.datum_type)))?;
            let shape = fact.shape.iter().map(|d| d.to_i64().unwrap_or(-1)).collect();
            outputs.push(TensorInfo { name, datatype, shape });
        }
        let plan = typed.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| load_error(path, e))?;
        Ok(OnnxModel { plan, signature: ModelSignature { inputs, outputs }, input_types })
    }
}

impl Model for OnnxModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        if inputs.len() != self.input_types.len() {
            return Err(BackendError::InvalidInput(format!("model takes {} inputs, got {}", self.input_types.len(), inputs.len())));
        }
        let values = inputs
            .iter()
            .zip(&self.input_types)
            .map(|(t, &dt)| to_tract(t, dt).map(|t| t.into_tvalue()))
            .collect::<Result<TVec<TValue>, _>>()?;
        let outputs = self.plan.run(values).map_err(|e| BackendError::Execution(format!("{e:#}")))?;
        outputs.iter().map(from_tract).collect()
    }
}

/// The protocol datatype of a tract element type, if it has one.
fn datatype_of(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 | DatumType::TDim => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

fn to_tract(tensor: &Tensor, dt: DatumType) -> Result<tract_onnx::prelude::Tensor, BackendError> {
    if datatype_of(dt) != Some(tensor.datatype()) {
        return Err(BackendError::InvalidInput(format!("expected {dt:?} data, got {}", tensor.datatype())));
    }
    if dt == DatumType::String {
        let strings = tensor
            .bytes_elements()
            .enumerate()
            .map(|(i, e)| {
                String::from_utf8(e.to_vec())
                    .map_err(|_| BackendError::InvalidInput(format!("BYTES element {i} is not UTF-8, which ONNX strings require")))
            })
            .collect::<Result<Vec<String>, _>>()?;
        let array =
            tract_ndarray::ArrayD::from_shape_vec(tensor.shape(), strings).map_err(|e| BackendError::InvalidInput(e.to_string()))?;
        return Ok(array.into());
    }
    let mut out = tract_onnx::prelude::Tensor::zero_dt(dt, tensor.shape()).map_err(|e| BackendError::Execution(e.to_string()))?;
    out.as_bytes_mut().copy_from_slice(tensor.data());
    Ok(out)
}

fn from_tract(value: &TValue) -> Result<Tensor, BackendError> {
    let shape = value.shape().to_vec();
    match value.datum_type() {
        DatumType::String => {
            let strings = value.to_plain_array_view::<String>().map_err(|e| BackendError::Execution(e.to_string()))?;
            Tensor::from_bytes_elements(shape, strings.iter().map(|s| s.as_bytes())).map_err(|e| BackendError::Execution(e.to_string()))
        }
        DatumType::TDim => {
            let cast = value.cast_to_dt(DatumType::I64).map_err(|e| BackendError::Execution(e.to_string()))?;
            Tensor::from_bytes(DataType::Int64, shape, bytes::Bytes::copy_from_slice(cast.as_bytes()))
                .map_err(|e| BackendError::Execution(e.to_string()))
        }
        dt => {
            let datatype = datatype_of(dt).ok_or_else(|| BackendError::Execution(format!("unsupported output type {dt:?}")))?;
            Tensor::from_bytes(datatype, shape, bytes::Bytes::copy_from_slice(value.as_bytes()))
                .map_err(|e| BackendError::Execution(e.to_string()))
        }
    }
}
