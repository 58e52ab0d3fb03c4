//! A model loaded into ONNX Runtime sessions, and the tensor conversions at its edges.
//!
//! `ort`'s `Session::run` takes `&mut self` (its authors found ONNX Runtime's `Run` not thread
//! safe under some execution providers, despite the C API's promise), so a session serves one
//! batch at a time. Instances therefore draw sessions from a pool: by default each concurrent
//! instance gets its own (made on first need, kept for reuse: at most one per instance thread),
//! as Triton's onnxruntime backend does; `share_session_between_instances: true` keeps one
//! session that the instances take in turn (less memory; on the CPU one run already uses every
//! intra-op thread).

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Condvar, Mutex, MutexGuard},
};

use bytes::Bytes;
use ort::{
    environment::Environment,
    session::{Session, SessionInputValue},
    value::{DynValue, PrimitiveTensorElementType, TensorElementType, TensorRef, ValueType},
};
use quiver_core::{BackendError, DataType, Model, ModelSignature, Tensor, TensorInfo};

use crate::options::SessionSettings;

/// A loaded ONNX model on ONNX Runtime.
pub struct OrtModel {
    path: PathBuf,
    environment: Environment,
    settings: SessionSettings,
    signature: ModelSignature,
    input_types: Vec<TensorElementType>,
    /// Sessions not running a batch now.
    idle: Mutex<Vec<Session>>,
    /// Signalled when a session is returned to `idle` (waited on only when sessions are shared).
    returned: Condvar,
}

impl fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrtModel").field("path", &self.path).field("signature", &self.signature).finish_non_exhaustive()
    }
}

fn load_error(path: &Path, e: impl fmt::Display) -> BackendError {
    BackendError::Load(format!("{}: {e}", path.display()))
}

fn execution(e: impl fmt::Display) -> BackendError {
    BackendError::Execution(e.to_string())
}

impl OrtModel {
    /// Creates the first session for the model at `path` and reads its signature.
    pub(crate) fn load(environment: &Environment, path: &Path, settings: SessionSettings) -> Result<OrtModel, BackendError> {
        // ONNX Runtime sizes tensors from the file's claims; the one ONNX file check (the tract
        // engine's, on tract-onnx's protobuf types) runs first, so a file claiming more than it
        // holds fails here with the tensor named.
        quiver_engine_tract::check_onnx_file(path).map_err(|e| load_error(path, e))?;
        let session = new_session(environment, path, &settings)?;
        let mut input_types = Vec::new();
        let mut inputs = Vec::new();
        for outlet in session.inputs() {
            let (info, ty) = tensor_info(outlet.name(), outlet.dtype()).map_err(|e| load_error(path, format!("input {e}")))?;
            inputs.push(info);
            input_types.push(ty);
        }
        let outputs = session
            .outputs()
            .iter()
            .map(|o| tensor_info(o.name(), o.dtype()).map(|(info, _)| info).map_err(|e| load_error(path, format!("output {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OrtModel {
            path: path.to_path_buf(),
            environment: environment.clone(),
            settings,
            signature: ModelSignature { inputs, outputs },
            input_types,
            idle: Mutex::new(vec![session]),
            returned: Condvar::new(),
        })
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Session>> {
        // A panic while holding the lock leaves the pool's Vec intact; keep serving.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle session, or a new one (a further instance), or, with shared sessions, the one
    /// session once it is returned.
    fn take(&self) -> Result<Session, BackendError> {
        let mut idle = self.idle();
        loop {
            if let Some(session) = idle.pop() {
                return Ok(session);
            }
            if !self.settings.share_session {
                drop(idle);
                tracing::debug!(model = %self.path.display(), "another concurrent instance: creating a session for it");
                return new_session(&self.environment, &self.path, &self.settings).map_err(|e| BackendError::Execution(e.to_string()));
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn put(&self, session: Session) {
        self.idle().push(session);
        self.returned.notify_one();
    }
}

fn new_session(environment: &Environment, path: &Path, settings: &SessionSettings) -> Result<Session, BackendError> {
    let builder = Session::builder(environment).map_err(|e| load_error(path, e))?;
    let mut builder = settings.apply(builder).map_err(|e| load_error(path, e))?;
    builder.commit_from_file(path).map_err(|e| load_error(path, e))
}

impl Model for OrtModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn execute(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        if inputs.len() != self.input_types.len() {
            return Err(BackendError::InvalidInput(format!("model takes {} inputs, got {}", self.input_types.len(), inputs.len())));
        }
        let values = inputs.iter().zip(&self.input_types).map(|(t, &ty)| to_ort(t, ty)).collect::<Result<Vec<_>, _>>()?;
        let mut session = self.take()?;
        let result = session.run(values.as_slice()).map_err(execution).and_then(|outputs| {
            outputs
                .iter()
                .map(|(name, value)| from_ort(&value).map_err(|e| BackendError::Execution(format!("output '{name}': {e}"))))
                .collect()
        });
        self.put(session);
        result
    }

    fn engine(&self) -> Option<&'static str> {
        Some(crate::NAME)
    }
}

/// The protocol datatype of an ONNX Runtime element type, if it has one.
fn datatype_of(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn tensor_info(name: &str, dtype: &ValueType) -> Result<(TensorInfo, TensorElementType), String> {
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(format!("'{name}' is a {dtype}, not a tensor (export classifiers without ZipMap: zipmap=False)"));
    };
    let datatype = datatype_of(*ty).ok_or_else(|| format!("'{name}' has unsupported type {ty}"))?;
    Ok((TensorInfo { name: name.to_string(), datatype, shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect() }, *ty))
}

/// A view of `tensor`'s bytes as ONNX Runtime's input: zero-copy when the buffer is aligned for
/// `T` (the batch buffer normally is), else one copy.
fn view<T: PrimitiveTensorElementType + fmt::Debug + Clone + Copy + 'static>(
    tensor: &Tensor,
) -> Result<SessionInputValue<'_>, BackendError> {
    let shape = tensor.shape_i64();
    let bytes: &[u8] = tensor.data();
    // SAFETY: T is a plain numeric type (no padding, every bit pattern valid), so any aligned
    // run of its size in bytes is a valid T.
    let (head, body, tail) = unsafe { bytes.align_to::<T>() };
    if head.is_empty() && tail.is_empty() {
        return Ok(TensorRef::from_array_view((shape, body)).map_err(execution)?.into());
    }
    let size = std::mem::size_of::<T>();
    // SAFETY: as above; read_unaligned reads each chunk of exactly size_of::<T>() bytes.
    let owned: Vec<T> = bytes.chunks_exact(size).map(|c| unsafe { std::ptr::read_unaligned(c.as_ptr().cast::<T>()) }).collect();
    Ok(ort::value::Tensor::from_array((shape, owned)).map_err(execution)?.into())
}

fn to_ort(tensor: &Tensor, ty: TensorElementType) -> Result<SessionInputValue<'_>, BackendError> {
    if datatype_of(ty) != Some(tensor.datatype()) {
        return Err(BackendError::InvalidInput(format!("expected {ty} data, got {}", tensor.datatype())));
    }
    let shape = tensor.shape_i64();
    match ty {
        TensorElementType::Float32 => view::<f32>(tensor),
        TensorElementType::Float64 => view::<f64>(tensor),
        TensorElementType::Float16 => view::<half::f16>(tensor),
        TensorElementType::Bfloat16 => view::<half::bf16>(tensor),
        TensorElementType::Int8 => view::<i8>(tensor),
        TensorElementType::Int16 => view::<i16>(tensor),
        TensorElementType::Int32 => view::<i32>(tensor),
        TensorElementType::Int64 => view::<i64>(tensor),
        TensorElementType::Uint8 => view::<u8>(tensor),
        TensorElementType::Uint16 => view::<u16>(tensor),
        TensorElementType::Uint32 => view::<u32>(tensor),
        TensorElementType::Uint64 => view::<u64>(tensor),
        // A bool must be 0 or 1 in memory; the wire may carry any byte, so normalize by copying.
        TensorElementType::Bool => {
            let values: Vec<bool> = tensor.data().iter().map(|&b| b != 0).collect();
            Ok(ort::value::Tensor::from_array((shape, values)).map_err(execution)?.into())
        }
        TensorElementType::String => {
            let strings = tensor
                .bytes_elements()
                .enumerate()
                .map(|(i, e)| {
                    String::from_utf8(e.to_vec())
                        .map_err(|_| BackendError::InvalidInput(format!("BYTES element {i} is not UTF-8, which ONNX strings require")))
                })
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ort::value::Tensor::from_string_array((shape, strings.as_slice())).map_err(execution)?.into())
        }
        other => Err(BackendError::InvalidInput(format!("unsupported input type {other}"))),
    }
}

/// The bytes of an output tensor of element type `T`.
fn bytes_of<T: PrimitiveTensorElementType + Copy>(value: &DynValue, datatype: DataType) -> Result<Tensor, String> {
    let (shape, data) = value.try_extract_tensor::<T>().map_err(|e| e.to_string())?;
    // SAFETY: T is a plain numeric type without padding; its memory is `size_of_val` initialized bytes.
    let bytes = unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) };
    Tensor::from_bytes(datatype, dims(shape)?, Bytes::copy_from_slice(bytes)).map_err(|e| e.to_string())
}

fn dims(shape: &[i64]) -> Result<Vec<usize>, String> {
    shape.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}"))).collect()
}

fn from_ort(value: &DynValue) -> Result<Tensor, String> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(format!("a {} is not a tensor", value.dtype()));
    };
    match ty {
        TensorElementType::Float32 => bytes_of::<f32>(value, DataType::Fp32),
        TensorElementType::Float64 => bytes_of::<f64>(value, DataType::Fp64),
        TensorElementType::Float16 => bytes_of::<half::f16>(value, DataType::Fp16),
        TensorElementType::Bfloat16 => bytes_of::<half::bf16>(value, DataType::Bf16),
        TensorElementType::Int8 => bytes_of::<i8>(value, DataType::Int8),
        TensorElementType::Int16 => bytes_of::<i16>(value, DataType::Int16),
        TensorElementType::Int32 => bytes_of::<i32>(value, DataType::Int32),
        TensorElementType::Int64 => bytes_of::<i64>(value, DataType::Int64),
        TensorElementType::Uint8 => bytes_of::<u8>(value, DataType::Uint8),
        TensorElementType::Uint16 => bytes_of::<u16>(value, DataType::Uint16),
        TensorElementType::Uint32 => bytes_of::<u32>(value, DataType::Uint32),
        TensorElementType::Uint64 => bytes_of::<u64>(value, DataType::Uint64),
        TensorElementType::Bool => {
            let (shape, data) = value.try_extract_tensor::<bool>().map_err(|e| e.to_string())?;
            Tensor::from_bytes(DataType::Bool, dims(shape)?, data.iter().map(|&b| u8::from(b)).collect::<Vec<u8>>().into())
                .map_err(|e| e.to_string())
        }
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            Tensor::from_bytes_elements(dims(shape)?, strings.iter().map(|s| s.as_bytes())).map_err(|e| e.to_string())
        }
        other => Err(format!("unsupported output type {other}")),
    }
}
