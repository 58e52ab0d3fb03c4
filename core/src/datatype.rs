//! The Open Inference Protocol datatypes and their Triton `config.pbtxt` spellings.

use std::fmt;

use crate::proto;

/// One of the V2 tensor datatypes.
///
/// Every type but [`DataType::Bytes`] has a fixed element width; BYTES elements are
/// length-prefixed byte strings of any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// One byte, 0 or 1.
    Bool,
    /// Unsigned 8-bit integer.
    Uint8,
    /// Unsigned 16-bit integer.
    Uint16,
    /// Unsigned 32-bit integer.
    Uint32,
    /// Unsigned 64-bit integer.
    Uint64,
    /// Signed 8-bit integer.
    Int8,
    /// Signed 16-bit integer.
    Int16,
    /// Signed 32-bit integer.
    Int32,
    /// Signed 64-bit integer.
    Int64,
    /// IEEE 754 half precision.
    Fp16,
    /// IEEE 754 single precision.
    Fp32,
    /// IEEE 754 double precision.
    Fp64,
    /// bfloat16.
    Bf16,
    /// Variable-length byte strings.
    Bytes,
}

/// Every datatype, in the order the specification lists them.
pub const ALL_DATATYPES: [DataType; 14] = [
    DataType::Bool,
    DataType::Uint8,
    DataType::Uint16,
    DataType::Uint32,
    DataType::Uint64,
    DataType::Int8,
    DataType::Int16,
    DataType::Int32,
    DataType::Int64,
    DataType::Fp16,
    DataType::Fp32,
    DataType::Fp64,
    DataType::Bf16,
    DataType::Bytes,
];

impl DataType {
    /// Parses the protocol spelling (`"FP32"`, `"BYTES"`, ...). Case-sensitive, as the spec is.
    pub fn from_v2(name: &str) -> Option<DataType> {
        ALL_DATATYPES.iter().copied().find(|dt| dt.as_v2() == name)
    }

    /// The protocol spelling (`"FP32"`).
    pub fn as_v2(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bf16 => "BF16",
            DataType::Bytes => "BYTES",
        }
    }

    /// The width of one element in bytes, or `None` for BYTES.
    pub fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// The `config.pbtxt` enum value (`TYPE_FP32`); BYTES is `TYPE_STRING` there.
    pub fn to_config(self) -> proto::DataType {
        match self {
            DataType::Bool => proto::DataType::TypeBool,
            DataType::Uint8 => proto::DataType::TypeUint8,
            DataType::Uint16 => proto::DataType::TypeUint16,
            DataType::Uint32 => proto::DataType::TypeUint32,
            DataType::Uint64 => proto::DataType::TypeUint64,
            DataType::Int8 => proto::DataType::TypeInt8,
            DataType::Int16 => proto::DataType::TypeInt16,
            DataType::Int32 => proto::DataType::TypeInt32,
            DataType::Int64 => proto::DataType::TypeInt64,
            DataType::Fp16 => proto::DataType::TypeFp16,
            DataType::Fp32 => proto::DataType::TypeFp32,
            DataType::Fp64 => proto::DataType::TypeFp64,
            DataType::Bf16 => proto::DataType::TypeBf16,
            DataType::Bytes => proto::DataType::TypeString,
        }
    }

    /// The datatype a `config.pbtxt` enum value names; `None` for `TYPE_INVALID`.
    pub fn from_config(value: proto::DataType) -> Option<DataType> {
        ALL_DATATYPES.iter().copied().find(|dt| dt.to_config() == value)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_v2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_names_round_trip_and_are_case_sensitive() {
        for dt in ALL_DATATYPES {
            assert_eq!(DataType::from_v2(dt.as_v2()), Some(dt));
            assert_eq!(DataType::from_config(dt.to_config()), Some(dt));
        }
        assert_eq!(DataType::from_v2("fp32"), None);
        assert_eq!(DataType::from_v2("STRING"), None);
        assert_eq!(DataType::from_config(proto::DataType::TypeInvalid), None);
    }

    #[test]
    fn widths() {
        assert_eq!(DataType::Bool.element_size(), Some(1));
        assert_eq!(DataType::Bf16.element_size(), Some(2));
        assert_eq!(DataType::Fp64.element_size(), Some(8));
        assert_eq!(DataType::Bytes.element_size(), None);
        assert_eq!(DataType::Bytes.to_config(), proto::DataType::TypeString);
    }
}
