//! Tensors as the protocol carries them: a datatype, a shape and row-major little-endian bytes.
//!
//! Sizes are computed with checked arithmetic from the declared shape and compared with the
//! bytes actually received *before* anything is allocated, so a request that claims 2^40
//! elements is an error, never an allocation.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::DataType;

/// What can be wrong with a tensor's shape or payload.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TensorError {
    /// A dimension is negative.
    #[error("shape {shape:?} has a negative dimension")]
    NegativeDimension {
        /// The shape as declared.
        shape: Vec<i64>,
    },
    /// The element count or byte size does not fit in memory.
    #[error("shape {shape:?} of {datatype} is too large")]
    TooLarge {
        /// The shape as declared.
        shape: Vec<usize>,
        /// The declared datatype.
        datatype: DataType,
    },
    /// The payload length is not what the shape and datatype imply.
    #[error("{datatype} tensor of shape {shape:?} needs {expected} bytes, got {actual}")]
    ByteSizeMismatch {
        /// The declared datatype.
        datatype: DataType,
        /// The declared shape.
        shape: Vec<usize>,
        /// Bytes the shape implies.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// The number of elements is not what the shape implies.
    #[error("tensor of shape {shape:?} needs {expected} elements, got {actual}")]
    ElementCountMismatch {
        /// The declared shape.
        shape: Vec<usize>,
        /// Elements the shape implies.
        expected: usize,
        /// Elements received.
        actual: usize,
    },
    /// A BYTES element's 4-byte length prefix runs past the end of the payload.
    #[error("BYTES element {index} is truncated: its length prefix says {length} bytes but only {available} remain")]
    TruncatedBytesElement {
        /// Index of the element.
        index: usize,
        /// Length the prefix claims.
        length: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// A BOOL element is neither 0 nor 1.
    #[error("BOOL element {index} has value {value}, expected 0 or 1")]
    InvalidBool {
        /// Index of the element.
        index: usize,
        /// The byte found.
        value: u8,
    },
    /// A single BYTES element is longer than the 4-byte length prefix can describe.
    #[error("BYTES element {index} is longer than 4 GiB")]
    BytesElementTooLong {
        /// Index of the element.
        index: usize,
    },
}

/// Converts a protocol shape (int64 dims) to sizes, rejecting negative dimensions.
pub fn shape_from_i64(shape: &[i64]) -> Result<Vec<usize>, TensorError> {
    shape.iter().map(|&d| usize::try_from(d).map_err(|_| TensorError::NegativeDimension { shape: shape.to_vec() })).collect()
}

/// The number of elements in `shape`, or `None` on overflow. The empty shape is a scalar (1).
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The byte size of a fixed-width tensor, checked; BYTES tensors have no size implied by shape.
pub fn fixed_byte_size(datatype: DataType, shape: &[usize]) -> Result<Option<usize>, TensorError> {
    let Some(width) = datatype.element_size() else { return Ok(None) };
    element_count(shape)
        .and_then(|n| n.checked_mul(width))
        .filter(|&n| n <= isize::MAX as usize)
        .map(Some)
        .ok_or_else(|| TensorError::TooLarge { shape: shape.to_vec(), datatype })
}

/// A tensor: datatype, shape and payload.
///
/// Fixed-width payloads are row-major little-endian elements. BYTES payloads use the binary
/// extension's serialization: each element is a 4-byte little-endian length then its bytes.
/// Every constructor validates the payload against the shape, so a `Tensor` is always
/// consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tensor {
    datatype: DataType,
    shape: Vec<usize>,
    data: Bytes,
}

impl Tensor {
    /// Wraps a payload after checking it matches `datatype` and `shape`. No copy is made.
    pub fn from_bytes(datatype: DataType, shape: Vec<usize>, data: Bytes) -> Result<Tensor, TensorError> {
        match fixed_byte_size(datatype, &shape)? {
            Some(expected) => {
                if data.len() != expected {
                    return Err(TensorError::ByteSizeMismatch { datatype, shape, expected, actual: data.len() });
                }
                if datatype == DataType::Bool {
                    if let Some((index, &value)) = data.iter().enumerate().find(|(_, &b)| b > 1) {
                        return Err(TensorError::InvalidBool { index, value });
                    }
                }
            }
            None => {
                let expected = element_count(&shape).ok_or_else(|| TensorError::TooLarge { shape: shape.clone(), datatype })?;
                let actual = count_bytes_elements(&data, expected)?;
                if actual != expected {
                    return Err(TensorError::ElementCountMismatch { shape, expected, actual });
                }
            }
        }
        Ok(Tensor { datatype, shape, data })
    }

    /// Builds a BYTES tensor from its elements.
    pub fn from_bytes_elements<'a, I>(shape: Vec<usize>, elements: I) -> Result<Tensor, TensorError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut buf = BytesMut::new();
        for (index, element) in elements.into_iter().enumerate() {
            let len = u32::try_from(element.len()).map_err(|_| TensorError::BytesElementTooLong { index })?;
            buf.put_u32_le(len);
            buf.put_slice(element);
        }
        Tensor::from_bytes(DataType::Bytes, shape, buf.freeze())
    }

    /// The same elements under another shape with the same element count (no copy).
    pub fn reshape(self, shape: Vec<usize>) -> Result<Tensor, TensorError> {
        let expected = self.element_count();
        if element_count(&shape) != Some(expected) {
            let actual = element_count(&shape).unwrap_or(usize::MAX);
            return Err(TensorError::ElementCountMismatch { shape, expected: actual, actual: expected });
        }
        Ok(Tensor { shape, ..self })
    }

    /// The datatype.
    pub fn datatype(&self) -> DataType {
        self.datatype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The shape as protocol int64 dims.
    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }

    /// The number of elements.
    pub fn element_count(&self) -> usize {
        // Validated at construction.
        element_count(&self.shape).unwrap_or(0)
    }

    /// The payload (see the type's documentation for its layout).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Consumes the tensor, returning its payload.
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// Iterates over the elements of a BYTES tensor; empty for other datatypes.
    pub fn bytes_elements(&self) -> BytesElements<'_> {
        let rest = if self.datatype == DataType::Bytes { &self.data[..] } else { &[][..] };
        BytesElements { rest }
    }
}

/// Iterator over the elements of a validated BYTES payload.
#[derive(Debug, Clone)]
pub struct BytesElements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for BytesElements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (prefix, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*prefix) as usize;
        let len = len.min(rest.len());
        let (element, rest) = rest.split_at(len);
        self.rest = rest;
        Some(element)
    }
}

/// Counts the elements of a BYTES payload, checking every length prefix. Stops with an error
/// as soon as more than `limit` elements are seen, so a hostile payload costs at most one pass.
fn count_bytes_elements(data: &[u8], limit: usize) -> Result<usize, TensorError> {
    let mut rest = data;
    let mut index = 0usize;
    while !rest.is_empty() {
        let Some((prefix, tail)) = rest.split_first_chunk::<4>() else {
            return Err(TensorError::TruncatedBytesElement { index, length: 4, available: rest.len() });
        };
        let length = u32::from_le_bytes(*prefix) as usize;
        if length > tail.len() {
            return Err(TensorError::TruncatedBytesElement { index, length, available: tail.len() });
        }
        rest = &tail[length..];
        index += 1;
        if index > limit {
            break;
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_sizes() {
        assert_eq!(element_count(&[]), Some(1));
        assert_eq!(element_count(&[2, 3]), Some(6));
        assert_eq!(element_count(&[usize::MAX, 2]), None);
        assert!(fixed_byte_size(DataType::Fp32, &[1 << 40]).unwrap().is_some());
        assert!(matches!(fixed_byte_size(DataType::Fp64, &[usize::MAX / 4]), Err(TensorError::TooLarge { .. })));
        assert_eq!(fixed_byte_size(DataType::Bytes, &[3]).unwrap(), None);
        assert!(matches!(shape_from_i64(&[1, -1]), Err(TensorError::NegativeDimension { .. })));
        assert_eq!(shape_from_i64(&[1, 4]).unwrap(), vec![1, 4]);
    }

    #[test]
    fn huge_declared_shape_is_rejected_without_allocation() {
        let err = Tensor::from_bytes(DataType::Fp32, vec![1 << 40], Bytes::from_static(&[0; 8])).unwrap_err();
        assert!(matches!(err, TensorError::ByteSizeMismatch { expected, actual: 8, .. } if expected == 1 << 42));
        let err = Tensor::from_bytes(DataType::Bytes, vec![1 << 40], Bytes::from_static(&[1, 0, 0, 0, b'a'])).unwrap_err();
        assert!(matches!(err, TensorError::ElementCountMismatch { actual: 1, .. }));
    }

    #[test]
    fn fixed_width_payload_must_match() {
        let t = Tensor::from_bytes(DataType::Int16, vec![2, 2], Bytes::from(vec![0u8; 8])).unwrap();
        assert_eq!(t.element_count(), 4);
        assert_eq!(t.shape_i64(), vec![2, 2]);
        assert!(Tensor::from_bytes(DataType::Int16, vec![2, 2], Bytes::from(vec![0u8; 7])).is_err());
        assert!(matches!(
            Tensor::from_bytes(DataType::Bool, vec![2], Bytes::from_static(&[1, 2])),
            Err(TensorError::InvalidBool { index: 1, value: 2 })
        ));
    }

    #[test]
    fn reshape_keeps_the_elements() {
        let t = Tensor::from_bytes(DataType::Uint8, vec![2, 3], Bytes::from_static(&[1, 2, 3, 4, 5, 6])).unwrap();
        let r = t.clone().reshape(vec![3, 2]).unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert_eq!(r.data(), t.data());
        assert!(t.reshape(vec![4]).is_err());
    }

    #[test]
    fn bytes_elements_round_trip() {
        let t = Tensor::from_bytes_elements(vec![3], [&b"ab"[..], b"", b"xyz"]).unwrap();
        let elements: Vec<&[u8]> = t.bytes_elements().collect();
        assert_eq!(elements, vec![&b"ab"[..], b"", b"xyz"]);
        assert_eq!(t.data().len(), 4 * 3 + 5);
        assert!(Tensor::from_bytes_elements(vec![2], [&b"ab"[..]]).is_err());
    }

    #[test]
    fn bytes_length_past_the_end_is_an_error() {
        let payload = Bytes::from_static(&[200, 0, 0, 0, b'a', b'b']);
        assert!(matches!(
            Tensor::from_bytes(DataType::Bytes, vec![1], payload),
            Err(TensorError::TruncatedBytesElement { index: 0, length: 200, available: 2 })
        ));
        let truncated_prefix = Bytes::from_static(&[1, 0, 0, 0, b'a', 3, 0]);
        assert!(matches!(
            Tensor::from_bytes(DataType::Bytes, vec![2], truncated_prefix),
            Err(TensorError::TruncatedBytesElement { index: 1, .. })
        ));
    }
}
