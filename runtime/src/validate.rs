//! The checks a request passes before it is queued, against a version's completed
//! configuration only: input names, datatypes, shapes and batch size, the configured reshapes,
//! and the requested outputs. They need no loaded weights, so a request to a scaled-to-zero
//! version is checked before anything wakes it, and a malformed request never reaches a queue.

use std::time::Duration;

use quiver_core::{Tensor, TensorInfo};

use crate::{
    infer::{InferInput, InferRequest, RequestedOutput},
    model::VersionInfo,
    ServeError,
};

/// A request that fits its version: inputs placed in the backend's order with the shapes the
/// model sees, the requested outputs resolved, and the scheduling parameters.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    /// Client-chosen id, echoed in the response.
    pub(crate) id: Option<String>,
    /// Inputs in the backend's order, reshaped as the config says.
    pub(crate) inputs: Vec<Tensor>,
    /// Rows the request brings (1 for models that do not batch).
    pub(crate) batch_size: u64,
    /// Indices (into the version's outputs) of the outputs to return, in the order asked.
    pub(crate) outputs: Vec<usize>,
    /// Requested priority level.
    pub(crate) priority: Option<u64>,
    /// Requested queue timeout.
    pub(crate) timeout: Option<Duration>,
}

impl VersionInfo {
    /// Checks `request` against this version's configuration, counting a refusal as a failed
    /// request of the version (`nv_inference_request_failure`, as Triton counts it).
    pub fn validate_counted(&self, request: InferRequest) -> Result<ValidRequest, ServeError> {
        self.validate(request).inspect_err(|e| self.metrics.request_failed(e.failure_reason(), Duration::ZERO))
    }

    /// Checks `request` against this version's configuration.
    pub fn validate(&self, request: InferRequest) -> Result<ValidRequest, ServeError> {
        let (inputs, batch_size) = self.check_inputs(request.inputs)?;
        let outputs = self.check_outputs(&request.outputs)?;
        Ok(ValidRequest { id: request.id, inputs, batch_size, outputs, priority: request.priority, timeout: request.timeout })
    }

    /// Places the request's inputs in the backend's order, checking names, datatypes and
    /// shapes against the config. Returns the tensors and the request's batch size.
    fn check_inputs(&self, inputs: Vec<InferInput>) -> Result<(Vec<Tensor>, u64), ServeError> {
        let mut placed: Vec<Option<Tensor>> = vec![None; self.inputs.len()];
        for input in inputs {
            let Some(ix) = self.inputs.iter().position(|i| i.name == input.name) else {
                return Err(ServeError::InvalidInput(format!(
                    "unexpected inference input '{}' for model '{}', the model's inputs are {:?}",
                    input.name,
                    self.name,
                    self.inputs.iter().map(|i| &i.name).collect::<Vec<_>>()
                )));
            };
            if placed[ix].is_some() {
                return Err(ServeError::InvalidInput(format!("input '{}' is given more than once", input.name)));
            }
            let spec = &self.inputs[ix];
            // A batched input the model sees as one element per row (dims [1], reshape []) may
            // also come as [batch]: the shape of V1 instances and of a plain list of strings.
            let tensor = match (&self.input_reshape[ix], input.tensor.shape()) {
                (Some(reshape), &[rows]) if reshape.is_empty() && spec.shape == [-1, 1] && self.config.max_batch_size > 0 => {
                    input.tensor.reshape(vec![rows, 1])?
                }
                _ => input.tensor,
            };
            let input = InferInput { tensor, ..input };
            if input.tensor.datatype() != spec.datatype {
                return Err(ServeError::InvalidInput(format!(
                    "inference input '{}' data-type is '{}', but model '{}' expects '{}'",
                    spec.name,
                    input.tensor.datatype(),
                    self.name,
                    spec.datatype
                )));
            }
            self.check_shape(spec, input.tensor.shape())?;
            placed[ix] = Some(input.tensor);
        }
        let tensors = placed
            .into_iter()
            .zip(&self.inputs)
            .map(|(t, spec)| {
                t.ok_or_else(|| ServeError::InvalidInput(format!("expected input '{}' for model '{}' is missing", spec.name, self.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let batch_size = if self.config.max_batch_size > 0 { tensors.first().map_or(1, |t| t.shape()[0] as u64) } else { 1 };
        if self.config.max_batch_size > 0 && tensors.iter().any(|t| t.shape()[0] as u64 != batch_size) {
            return Err(ServeError::InvalidInput("all inputs must have the same batch size".into()));
        }
        let tensors = tensors
            .into_iter()
            .zip(&self.input_reshape)
            .zip(&self.inputs)
            .map(|((tensor, reshape), spec)| match reshape {
                Some(dims) => self.reshape(tensor, dims).map_err(|e| {
                    ServeError::InvalidInput(format!("input '{}' cannot take the configured reshape {dims:?}: {e}", spec.name))
                }),
                None => Ok(tensor),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((tensors, batch_size))
    }

    /// Gives `tensor` the shape `[batch] + dims` (or `dims` without batching), resolving at
    /// most one -1 in `dims` from the element count.
    pub(crate) fn reshape(&self, tensor: Tensor, dims: &[i64]) -> Result<Tensor, String> {
        let mut shape: Vec<usize> = Vec::with_capacity(dims.len() + 1);
        if self.config.max_batch_size > 0 {
            shape.push(*tensor.shape().first().ok_or("the tensor has no batch dimension")?);
        }
        let known: usize = dims.iter().filter(|&&d| d >= 0).map(|&d| d as usize).product::<usize>() * shape.first().copied().unwrap_or(1);
        let variable = dims.iter().filter(|&&d| d < 0).count();
        let total = tensor.element_count();
        for &d in dims {
            shape.push(match d {
                d if d >= 0 => d as usize,
                _ if variable == 1 && known > 0 && total.is_multiple_of(known) => total / known,
                _ => return Err(format!("cannot infer the variable dims of {dims:?}")),
            });
        }
        tensor.reshape(shape).map_err(|e| e.to_string())
    }

    fn check_shape(&self, spec: &TensorInfo, shape: &[usize]) -> Result<(), ServeError> {
        let max_batch = self.config.max_batch_size;
        let mismatch = || {
            ServeError::InvalidInput(format!(
                "unexpected shape for input '{}' for model '{}'. Expected {:?}, got {:?}",
                spec.name, self.name, spec.shape, shape
            ))
        };
        if shape.len() != spec.shape.len() {
            return Err(mismatch());
        }
        let mut dims = shape.iter().zip(&spec.shape);
        if max_batch > 0 {
            let Some((&batch, _)) = dims.next() else { return Err(mismatch()) };
            if batch == 0 || batch > max_batch as usize {
                return Err(ServeError::InvalidInput(format!(
                    "inference request batch-size {batch} for model '{}' must be between 1 and max_batch_size {max_batch}",
                    self.name
                )));
            }
        }
        if dims.all(|(&got, &want)| want == -1 || got as i64 == want) {
            Ok(())
        } else {
            Err(mismatch())
        }
    }

    /// Indices (into `outputs()`) of the requested outputs; all of them when none are named.
    fn check_outputs(&self, requested: &[RequestedOutput]) -> Result<Vec<usize>, ServeError> {
        if requested.is_empty() {
            return Ok((0..self.outputs.len()).collect());
        }
        for (i, r) in requested.iter().enumerate() {
            if requested[..i].iter().any(|earlier| earlier.name == r.name) {
                return Err(ServeError::InvalidInput(format!("output '{}' is requested more than once", r.name)));
            }
        }
        requested
            .iter()
            .map(|r| {
                self.outputs.iter().position(|o| o.name == r.name).ok_or_else(|| {
                    ServeError::InvalidInput(format!(
                        "unexpected inference output '{}' for model '{}', the model's outputs are {:?}",
                        r.name,
                        self.name,
                        self.outputs.iter().map(|o| &o.name).collect::<Vec<_>>()
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use quiver_core::{DataType, ModelConfig};

    use super::*;

    fn info(max_batch_size: i32, input_reshape: Option<Vec<i64>>, input_dims: Vec<i64>) -> VersionInfo {
        let batched = |dims: &[i64]| if max_batch_size > 0 { [&[-1][..], dims].concat() } else { dims.to_vec() };
        VersionInfo {
            name: "m".into(),
            version: "1".into(),
            config: ModelConfig { max_batch_size, ..Default::default() },
            inputs: vec![
                TensorInfo { name: "x".into(), datatype: DataType::Fp32, shape: batched(&input_dims) },
                TensorInfo { name: "y".into(), datatype: DataType::Int64, shape: batched(&[1]) },
            ],
            outputs: vec![
                TensorInfo { name: "a".into(), datatype: DataType::Fp32, shape: batched(&[2]) },
                TensorInfo { name: "b".into(), datatype: DataType::Fp32, shape: batched(&[2]) },
            ],
            input_reshape: vec![input_reshape, None],
            output_reshape: vec![None, None],
            metrics: crate::metrics::VersionMetrics::new("validate-test", "1"),
        }
    }

    fn tensor(datatype: DataType, shape: Vec<usize>) -> Tensor {
        let size = shape.iter().product::<usize>() * datatype.element_size().unwrap_or(1);
        Tensor::from_bytes(datatype, shape, Bytes::from(vec![0u8; size])).unwrap()
    }

    fn request(inputs: Vec<(&str, Tensor)>, outputs: &[&str]) -> InferRequest {
        InferRequest {
            inputs: inputs.into_iter().map(|(name, tensor)| InferInput { name: name.into(), tensor }).collect(),
            outputs: outputs.iter().map(|name| RequestedOutput { name: name.to_string(), ..Default::default() }).collect(),
            priority: Some(1),
            id: Some("r".into()),
            ..Default::default()
        }
    }

    fn message(result: Result<ValidRequest, ServeError>) -> String {
        match result {
            Err(ServeError::InvalidInput(m)) => m,
            other => panic!("expected invalid input, got {other:?}"),
        }
    }

    #[test]
    fn inputs_are_placed_in_backend_order_and_outputs_resolved() {
        let info = info(4, None, vec![3]);
        let valid = info
            .validate(request(vec![("y", tensor(DataType::Int64, vec![2, 1])), ("x", tensor(DataType::Fp32, vec![2, 3]))], &["b", "a"]))
            .unwrap();
        assert_eq!(valid.inputs.iter().map(|t| t.datatype()).collect::<Vec<_>>(), [DataType::Fp32, DataType::Int64]);
        assert_eq!(valid.batch_size, 2);
        assert_eq!(valid.outputs, [1, 0]);
        assert_eq!((valid.id.as_deref(), valid.priority), (Some("r"), Some(1)));
        let all = info
            .validate(request(vec![("x", tensor(DataType::Fp32, vec![1, 3])), ("y", tensor(DataType::Int64, vec![1, 1]))], &[]))
            .unwrap();
        assert_eq!(all.outputs, [0, 1]);
    }

    #[test]
    fn names_datatypes_and_counts_are_checked() {
        let info = info(4, None, vec![3]);
        let x = || ("x", tensor(DataType::Fp32, vec![1, 3]));
        let y = || ("y", tensor(DataType::Int64, vec![1, 1]));
        assert!(message(info.validate(request(vec![x(), y(), ("z", tensor(DataType::Fp32, vec![1]))], &[])))
            .contains("unexpected inference input 'z'"));
        assert!(message(info.validate(request(vec![x(), x(), y()], &[]))).contains("given more than once"));
        assert!(message(info.validate(request(vec![x()], &[]))).contains("expected input 'y' for model 'm' is missing"));
        let wrong_type = ("y", tensor(DataType::Int32, vec![1, 1]));
        assert!(message(info.validate(request(vec![x(), wrong_type], &[]))).contains("data-type is 'INT32', but model 'm' expects 'INT64'"));
        assert!(message(info.validate(request(vec![x(), y()], &["c"]))).contains("unexpected inference output 'c'"));
        assert!(message(info.validate(request(vec![x(), y()], &["a", "a"]))).contains("requested more than once"));
    }

    #[test]
    fn shapes_and_batch_sizes_are_checked() {
        let info = info(4, None, vec![3]);
        let y = |rows| ("y", tensor(DataType::Int64, vec![rows, 1]));
        let x = |shape: Vec<usize>| ("x", tensor(DataType::Fp32, shape));
        assert!(message(info.validate(request(vec![x(vec![1, 4]), y(1)], &[]))).contains("unexpected shape for input 'x'"));
        assert!(message(info.validate(request(vec![x(vec![3]), y(1)], &[]))).contains("unexpected shape"));
        assert!(message(info.validate(request(vec![x(vec![5, 3]), y(5)], &[])))
            .contains("batch-size 5 for model 'm' must be between 1 and max_batch_size 4"));
        assert!(message(info.validate(request(vec![x(vec![0, 3]), y(0)], &[]))).contains("batch-size 0"));
        assert!(message(info.validate(request(vec![x(vec![2, 3]), y(1)], &[]))).contains("same batch size"));
        // Without batching the shape is the full shape, and the batch size is 1.
        let unbatched = self::info(0, None, vec![2, 3]);
        let ok = unbatched.validate(request(vec![x(vec![2, 3]), ("y", tensor(DataType::Int64, vec![1]))], &[])).unwrap();
        assert_eq!(ok.batch_size, 1);
    }

    #[test]
    fn configured_reshapes_apply_and_scalar_rows_may_come_flat() {
        // dims [4] reshaped to [2, 2] for the model.
        let info = info(4, Some(vec![2, 2]), vec![4]);
        let y = ("y", tensor(DataType::Int64, vec![3, 1]));
        let valid = info.validate(request(vec![("x", tensor(DataType::Fp32, vec![3, 4])), y], &[])).unwrap();
        assert_eq!(valid.inputs[0].shape(), [3, 2, 2]);
        // dims [1] reshaped to [] also accepts [batch] (V1 instances, plain string lists).
        let info = self::info(4, Some(vec![]), vec![1]);
        let y = ("y", tensor(DataType::Int64, vec![3, 1]));
        let valid = info.validate(request(vec![("x", tensor(DataType::Fp32, vec![3])), y], &[])).unwrap();
        assert_eq!(valid.inputs[0].shape(), [3]);
    }

    #[test]
    fn reshape_resolves_one_variable_dim() {
        let info = info(4, None, vec![3]);
        assert_eq!(info.reshape(tensor(DataType::Fp32, vec![2, 6]), &[-1, 3]).unwrap().shape(), [2, 2, 3]);
        assert!(info.reshape(tensor(DataType::Fp32, vec![2, 6]), &[-1, -1]).is_err());
        assert!(info.reshape(tensor(DataType::Fp32, vec![2, 5]), &[-1, 3]).is_err());
    }
}
