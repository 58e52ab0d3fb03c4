//! Converting tensor payloads to and from JSON values: V2 `data` arrays (flat or nested) and
//! V1 instances. Element counts are checked against the declared shape before any buffer is
//! allocated.

use bytes::Bytes;
use half::{bf16, f16};
use quiver_core::{tensor::element_count, DataType, Tensor, TensorError};
use serde::ser::{Serialize, SerializeSeq, Serializer};
use serde_json::Value;

use crate::ServeError;

/// Counts the scalar leaves of a (possibly nested) JSON array, stopping past `limit`.
pub fn count_leaves(value: &Value, limit: usize) -> usize {
    fn walk(value: &Value, count: &mut usize, limit: usize) {
        if *count > limit {
            return;
        }
        match value {
            Value::Array(items) => items.iter().for_each(|v| walk(v, count, limit)),
            _ => *count += 1,
        }
    }
    let mut count = 0;
    walk(value, &mut count, limit);
    count
}

/// Builds a tensor of `datatype` and `shape` from JSON `data`, flat or nested row-major.
pub fn tensor_from_json(name: &str, datatype: DataType, shape: Vec<usize>, data: &Value) -> Result<Tensor, ServeError> {
    let expected = element_count(&shape).ok_or_else(|| ServeError::from(TensorError::TooLarge { shape: shape.clone(), datatype }))?;
    let actual = count_leaves(data, expected);
    if actual != expected {
        return Err(ServeError::InvalidInput(format!(
            "input '{name}': shape {shape:?} has {expected} elements but 'data' has {}",
            if actual > expected { format!("more than {expected}") } else { actual.to_string() }
        )));
    }
    let mut leaves = Vec::with_capacity(expected);
    collect_leaves(data, &mut leaves);
    let bad = |i: usize, v: &Value| ServeError::InvalidInput(format!("input '{name}': element {i} ({v}) is not a valid {datatype} value"));
    if datatype == DataType::Bytes {
        let elements = leaves
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().map(str::as_bytes).ok_or_else(|| bad(i, v)))
            .collect::<Result<Vec<&[u8]>, _>>()?;
        return Ok(Tensor::from_bytes_elements(shape, elements)?);
    }
    let width = datatype.element_size().unwrap_or(1);
    let mut out = Vec::with_capacity(expected * width);
    for (i, v) in leaves.iter().enumerate() {
        push_json_element(&mut out, datatype, v).ok_or_else(|| bad(i, v))?;
    }
    Ok(Tensor::from_bytes(datatype, shape, Bytes::from(out))?)
}

fn collect_leaves<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_leaves(v, out)),
        v => out.push(v),
    }
}

fn int_in<T: TryFrom<i64>>(v: &Value) -> Option<T> {
    v.as_i64().and_then(|i| T::try_from(i).ok())
}

fn uint_in<T: TryFrom<u64>>(v: &Value) -> Option<T> {
    v.as_u64().and_then(|i| T::try_from(i).ok())
}

/// Appends one JSON scalar as a little-endian element; `None` if it does not fit the type.
fn push_json_element(out: &mut Vec<u8>, datatype: DataType, v: &Value) -> Option<()> {
    match datatype {
        DataType::Bool => out.push(match v {
            Value::Bool(b) => u8::from(*b),
            other => match other.as_u64()? {
                0 => 0,
                1 => 1,
                _ => return None,
            },
        }),
        DataType::Uint8 => out.push(uint_in::<u8>(v)?),
        DataType::Uint16 => out.extend_from_slice(&uint_in::<u16>(v)?.to_le_bytes()),
        DataType::Uint32 => out.extend_from_slice(&uint_in::<u32>(v)?.to_le_bytes()),
        DataType::Uint64 => out.extend_from_slice(&v.as_u64()?.to_le_bytes()),
        DataType::Int8 => out.extend_from_slice(&int_in::<i8>(v)?.to_le_bytes()),
        DataType::Int16 => out.extend_from_slice(&int_in::<i16>(v)?.to_le_bytes()),
        DataType::Int32 => out.extend_from_slice(&int_in::<i32>(v)?.to_le_bytes()),
        DataType::Int64 => out.extend_from_slice(&v.as_i64()?.to_le_bytes()),
        DataType::Fp16 => out.extend_from_slice(&f16::from_f64(v.as_f64()?).to_le_bytes()),
        DataType::Bf16 => out.extend_from_slice(&bf16::from_f64(v.as_f64()?).to_le_bytes()),
        DataType::Fp32 => out.extend_from_slice(&(v.as_f64()? as f32).to_le_bytes()),
        DataType::Fp64 => out.extend_from_slice(&v.as_f64()?.to_le_bytes()),
        DataType::Bytes => return None,
    }
    Some(())
}

/// Serializes a tensor's elements as a flat JSON array (floats in their shortest form).
pub struct JsonData<'a>(pub &'a Tensor);

impl Serialize for JsonData<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tensor = self.0;
        let mut seq = serializer.serialize_seq(Some(tensor.element_count()))?;
        let data = tensor.data();
        macro_rules! each {
            ($t:ty, $n:literal, $conv:expr) => {
                for chunk in data.chunks_exact($n) {
                    let mut raw = [0u8; $n];
                    raw.copy_from_slice(chunk);
                    seq.serialize_element(&$conv(<$t>::from_le_bytes(raw)))?;
                }
            };
        }
        match tensor.datatype() {
            DataType::Bool => {
                for &b in data.iter() {
                    seq.serialize_element(&(b != 0))?;
                }
            }
            DataType::Uint8 => each!(u8, 1, |v| v),
            DataType::Uint16 => each!(u16, 2, |v| v),
            DataType::Uint32 => each!(u32, 4, |v| v),
            DataType::Uint64 => each!(u64, 8, |v| v),
            DataType::Int8 => each!(i8, 1, |v| v),
            DataType::Int16 => each!(i16, 2, |v| v),
            DataType::Int32 => each!(i32, 4, |v| v),
            DataType::Int64 => each!(i64, 8, |v| v),
            DataType::Fp16 => each!(f16, 2, |v: f16| v.to_f32()),
            DataType::Bf16 => each!(bf16, 2, |v: bf16| v.to_f32()),
            DataType::Fp32 => each!(f32, 4, |v| v),
            DataType::Fp64 => each!(f64, 8, |v| v),
            DataType::Bytes => {
                for element in tensor.bytes_elements() {
                    seq.serialize_element(&String::from_utf8_lossy(element))?;
                }
            }
        }
        seq.end()
    }
}

/// The tensor's elements as JSON values, nested by `shape` (used by KServe V1 responses).
pub fn nested_json(tensor: &Tensor, shape: &[usize]) -> Value {
    // Through text rather than `to_value`, so f32 elements keep their shortest decimal form
    // instead of widening to f64 digits (0.1, not 0.10000000149011612).
    let flat = match serde_json::to_vec(&JsonData(tensor)).map(|text| serde_json::from_slice(&text)) {
        Ok(Ok(Value::Array(items))) => items,
        _ => Vec::new(),
    };
    fn nest(items: &mut std::vec::IntoIter<Value>, shape: &[usize]) -> Value {
        match shape.split_first() {
            None => items.next().unwrap_or(Value::Null),
            Some((&n, rest)) => Value::Array((0..n).map(|_| nest(items, rest)).collect()),
        }
    }
    nest(&mut flat.into_iter(), shape)
}

/// The shape of a nested JSON array, following first elements; a scalar has shape `[]`.
pub fn json_shape(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut current = value;
    while let Value::Array(items) = current {
        shape.push(items.len());
        match items.first() {
            Some(first) => current = first,
            None => break,
        }
    }
    shape
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flat_and_nested_data_decode_the_same() {
        let flat = tensor_from_json("x", DataType::Fp32, vec![2, 2], &json!([1.0, 2.5, -3, 4])).unwrap();
        let nested = tensor_from_json("x", DataType::Fp32, vec![2, 2], &json!([[1.0, 2.5], [-3, 4]])).unwrap();
        assert_eq!(flat, nested);
        assert_eq!(serde_json::to_string(&JsonData(&flat)).unwrap(), "[1.0,2.5,-3.0,4.0]");
    }

    #[test]
    fn every_datatype_round_trips() {
        let cases = [
            (DataType::Bool, json!([true, false])),
            (DataType::Uint8, json!([0, 255])),
            (DataType::Uint16, json!([1, 65535])),
            (DataType::Uint32, json!([1, 4294967295u64])),
            (DataType::Uint64, json!([1, u64::MAX])),
            (DataType::Int8, json!([-128, 127])),
            (DataType::Int16, json!([-2, 3])),
            (DataType::Int32, json!([-2, 3])),
            (DataType::Int64, json!([i64::MIN, 3])),
            (DataType::Fp16, json!([0.5, -2.0])),
            (DataType::Bf16, json!([0.5, -2.0])),
            (DataType::Fp32, json!([0.1, -2.0])),
            (DataType::Fp64, json!([0.1, -2.0])),
            (DataType::Bytes, json!(["ab", ""])),
        ];
        for (dt, data) in cases {
            let t = tensor_from_json("x", dt, vec![2], &data).unwrap();
            assert_eq!(serde_json::to_string(&JsonData(&t)).unwrap(), data.to_string(), "{dt}");
        }
    }

    #[test]
    fn wrong_values_and_counts_are_rejected() {
        assert!(tensor_from_json("x", DataType::Uint8, vec![1], &json!([256])).is_err());
        assert!(tensor_from_json("x", DataType::Int32, vec![1], &json!([1.5])).is_err());
        assert!(tensor_from_json("x", DataType::Bool, vec![1], &json!(["true"])).is_err());
        assert!(tensor_from_json("x", DataType::Bytes, vec![1], &json!([1])).is_err());
        assert!(tensor_from_json("x", DataType::Fp32, vec![3], &json!([1, 2])).is_err());
        assert!(tensor_from_json("x", DataType::Fp32, vec![1], &json!([1, 2])).is_err());
        let err = tensor_from_json("x", DataType::Fp32, vec![1 << 40], &json!([1, 2])).unwrap_err();
        assert!(err.to_string().contains("1099511627776 elements"), "{err}");
        assert!(tensor_from_json("x", DataType::Fp32, vec![usize::MAX, 2], &json!([1])).is_err());
    }

    #[test]
    fn nested_floats_keep_their_short_form() {
        let t = tensor_from_json("x", DataType::Fp32, vec![1, 2], &json!([0.1, 0.2])).unwrap();
        assert_eq!(nested_json(&t, &[1, 2]).to_string(), "[[0.1,0.2]]");
    }

    #[test]
    fn nesting_helpers() {
        let t = tensor_from_json("x", DataType::Int64, vec![2, 3], &json!([1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(nested_json(&t, &[2, 3]), json!([[1, 2, 3], [4, 5, 6]]));
        assert_eq!(json_shape(&json!([[1, 2, 3], [4, 5, 6]])), vec![2, 3]);
        assert_eq!(json_shape(&json!(7)), Vec::<usize>::new());
    }
}
