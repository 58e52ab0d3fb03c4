//! Stacking requests into one batch along the first dimension, and splitting the outputs
//! back into each request's rows.

use std::hash::{DefaultHasher, Hash, Hasher};

use bytes::BytesMut;
use quiver_core::{DataType, Tensor};

/// A key equal for requests whose inputs can be stacked: same datatypes and the same
/// dimensions after the first.
pub fn shape_key(inputs: &[Tensor]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for tensor in inputs {
        tensor.datatype().as_v2().hash(&mut hasher);
        tensor.shape().get(1..).hash(&mut hasher);
    }
    hasher.finish()
}

/// Stacks the inputs of several requests (`requests[r][i]` is input `i` of request `r`) into
/// one tensor per input. A single request is passed through without copying.
pub fn concat(mut requests: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
    if requests.len() == 1 {
        return Ok(requests.pop().unwrap_or_default());
    }
    let Some(first) = requests.first() else { return Ok(Vec::new()) };
    let inputs = first.len();
    let mut stacked = Vec::with_capacity(inputs);
    for i in 0..inputs {
        let parts: Vec<&Tensor> = requests.iter().map(|r| r.get(i)).collect::<Option<_>>().ok_or("requests differ in inputs")?;
        let head = parts[0];
        let mut rows = 0usize;
        let mut bytes = 0usize;
        for part in &parts {
            if part.datatype() != head.datatype() || part.shape().get(1..) != head.shape().get(1..) || part.shape().is_empty() {
                return Err("requests in one batch differ in datatype or non-batch dims".into());
            }
            rows += part.shape()[0];
            bytes += part.data().len();
        }
        let mut data = BytesMut::with_capacity(bytes);
        for part in &parts {
            data.extend_from_slice(part.data());
        }
        let mut shape = head.shape().to_vec();
        shape[0] = rows;
        stacked.push(Tensor::from_bytes(head.datatype(), shape, data.freeze()).map_err(|e| e.to_string())?);
    }
    Ok(stacked)
}

/// Splits batch outputs into consecutive row ranges of `rows` (one per request). The
/// slices share the batch's buffers.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, String> {
    if rows.len() == 1 {
        return Ok(vec![outputs]);
    }
    let total: usize = rows.iter().sum();
    let mut per_request: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        if output.shape().first() != Some(&total) {
            return Err(format!("a batch output has shape {:?}, expected {total} rows first", output.shape()));
        }
        let elements_per_row = output.shape()[1..].iter().product::<usize>();
        let offsets = row_offsets(&output, total, elements_per_row)?;
        let mut row = 0;
        for (r, &n) in rows.iter().enumerate() {
            let data = output.data().slice(offsets[row]..offsets[row + n]);
            let mut shape = output.shape().to_vec();
            shape[0] = n;
            per_request[r].push(Tensor::from_bytes(output.datatype(), shape, data).map_err(|e| e.to_string())?);
            row += n;
        }
    }
    Ok(per_request)
}

/// Byte offset of the start of each row, plus the end.
fn row_offsets(tensor: &Tensor, rows: usize, elements_per_row: usize) -> Result<Vec<usize>, String> {
    match tensor.datatype().element_size() {
        Some(width) => {
            let row_bytes = elements_per_row * width;
            Ok((0..=rows).map(|r| r * row_bytes).collect())
        }
        None => {
            debug_assert_eq!(tensor.datatype(), DataType::Bytes);
            let mut offsets = Vec::with_capacity(rows + 1);
            offsets.push(0);
            let mut offset = 0;
            let mut elements = tensor.bytes_elements();
            for _ in 0..rows {
                for _ in 0..elements_per_row {
                    offset += 4 + elements.next().ok_or("BYTES output has fewer elements than its shape")?.len();
                }
                offsets.push(offset);
            }
            Ok(offsets)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn int32(shape: Vec<usize>, values: &[i32]) -> Tensor {
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_bytes(DataType::Int32, shape, Bytes::from(data)).unwrap()
    }

    #[test]
    fn concat_then_split_gives_each_request_its_rows() {
        let a = vec![int32(vec![1, 2], &[1, 2])];
        let b = vec![int32(vec![2, 2], &[3, 4, 5, 6])];
        let stacked = concat(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(stacked[0], int32(vec![3, 2], &[1, 2, 3, 4, 5, 6]));
        let back = split(stacked, &[1, 2]).unwrap();
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn bytes_tensors_split_by_elements() {
        let t = Tensor::from_bytes_elements(vec![3, 1], [&b"a"[..], b"bcd", b""]).unwrap();
        let parts = split(vec![t], &[2, 1]).unwrap();
        assert_eq!(parts[0][0].bytes_elements().collect::<Vec<_>>(), vec![&b"a"[..], b"bcd"]);
        assert_eq!(parts[1][0].bytes_elements().collect::<Vec<_>>(), vec![&b""[..]]);
        let x = Tensor::from_bytes_elements(vec![1], [&b"x"[..]]).unwrap();
        let y = Tensor::from_bytes_elements(vec![2], [&b"yy"[..], b"z"]).unwrap();
        let stacked = concat(vec![vec![x], vec![y]]).unwrap();
        assert_eq!(stacked[0].bytes_elements().collect::<Vec<_>>(), vec![&b"x"[..], b"yy", b"z"]);
    }

    #[test]
    fn mismatches_are_errors() {
        assert!(concat(vec![vec![int32(vec![1, 2], &[1, 2])], vec![int32(vec![1, 1], &[3])]]).is_err());
        assert!(split(vec![int32(vec![2, 1], &[1, 2])], &[1, 2]).is_err());
    }

    #[test]
    fn shape_keys_ignore_the_batch_dimension() {
        let k1 = shape_key(&[int32(vec![1, 2], &[1, 2])]);
        let k2 = shape_key(&[int32(vec![3, 2], &[1, 2, 3, 4, 5, 6])]);
        let k3 = shape_key(&[int32(vec![2, 1], &[1, 2])]);
        assert_eq!(k1, k2);
        assert_ne!(k1, k3);
    }
}
