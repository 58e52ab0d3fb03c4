//! KServe's V1 protocol: `{"instances": [...]}` in, `{"predictions": [...]}` out.
//!
//! Each instance is one row. A model with one input takes each instance as that input's row
//! (or an object naming it); a model with several inputs takes objects keyed by input name.
//! Predictions are the rows of the model's first output.

use serde_json::{Map, Value};

use super::codec::{json_shape, nested_json, tensor_from_json};
use crate::{
    infer::{InferInput, InferRequest, InferResponse},
    model::VersionInfo,
    ServeError,
};

/// Decodes a V1 predict body for `model`.
pub fn decode_predict(body: &[u8], model: &VersionInfo) -> Result<InferRequest, ServeError> {
    let mut parsed: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| ServeError::invalid(format!("failed to parse the request JSON: {e}")))?;
    let instances = match (parsed.remove("instances"), parsed.remove("inputs")) {
        (Some(Value::Array(items)), None) | (None, Some(Value::Array(items))) => items,
        (Some(_), Some(_)) => return Err(ServeError::invalid("give either 'instances' or 'inputs', not both")),
        (Some(_), None) | (None, Some(_)) => return Err(ServeError::invalid("'instances' must be a list")),
        (None, None) => return Err(ServeError::invalid("the request has no 'instances'")),
    };
    if instances.is_empty() {
        return Err(ServeError::invalid("'instances' is empty"));
    }
    let batching = model.config().max_batch_size > 0;
    let specs = model.inputs();
    let mut inputs = Vec::with_capacity(specs.len());
    for spec in specs {
        // Pick this input's value out of every instance.
        let rows = instances
            .iter()
            .map(|instance| match instance {
                Value::Object(fields) => {
                    fields.get(&spec.name).ok_or_else(|| ServeError::invalid(format!("an instance lacks input '{}'", spec.name)))
                }
                other if specs.len() == 1 => Ok(other),
                _ => Err(ServeError::invalid(format!(
                    "model '{}' has several inputs: each instance must be an object keyed by input name",
                    model.name()
                ))),
            })
            .collect::<Result<Vec<&Value>, _>>()?;
        let row_shape = json_shape(rows[0]);
        if rows.iter().any(|r| json_shape(r) != row_shape) {
            return Err(ServeError::invalid(format!("instances of input '{}' differ in shape", spec.name)));
        }
        let data = Value::Array(rows.into_iter().cloned().collect());
        let shape = if batching { std::iter::once(instances.len()).chain(row_shape).collect() } else { json_shape(&data) };
        let tensor = tensor_from_json(&spec.name, spec.datatype, shape, &data)?;
        inputs.push(InferInput { name: spec.name.clone(), tensor });
    }
    Ok(InferRequest { inputs, ..Default::default() })
}

/// Encodes the predictions: the rows of the first output.
pub fn encode_predict(response: &InferResponse) -> Value {
    let predictions = response
        .outputs
        .first()
        .map(|o| {
            let shape = o.tensor.shape();
            let nested = nested_json(&o.tensor, shape);
            match (shape.len(), nested) {
                (0, scalar) => Value::Array(vec![scalar]),
                (_, Value::Array(rows)) => Value::Array(rows),
                (_, other) => Value::Array(vec![other]),
            }
        })
        .unwrap_or(Value::Array(Vec::new()));
    serde_json::json!({ "predictions": predictions })
}
