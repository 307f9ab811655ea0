//! The element types of the protocol ("FP32", "BYTES", ...), and how they map to
//! config.pbtxt's `TYPE_*` enum and to Smelt's [`DType`].

use crate::proto::inference::DataType;
use smelt_ir::DType;
use std::fmt;

/// An element type as KServe v2 names it in requests, responses and metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WireType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// Variable-length byte strings; no Smelt model takes or makes them yet.
    Bytes,
}

impl WireType {
    pub const ALL: [WireType; 14] = [
        WireType::Bool,
        WireType::U8,
        WireType::U16,
        WireType::U32,
        WireType::U64,
        WireType::I8,
        WireType::I16,
        WireType::I32,
        WireType::I64,
        WireType::F16,
        WireType::BF16,
        WireType::F32,
        WireType::F64,
        WireType::Bytes,
    ];

    /// The protocol's name: "BOOL", "UINT8", ..., "FP16", "BF16", "BYTES".
    pub fn name(self) -> &'static str {
        match self {
            WireType::Bool => "BOOL",
            WireType::U8 => "UINT8",
            WireType::U16 => "UINT16",
            WireType::U32 => "UINT32",
            WireType::U64 => "UINT64",
            WireType::I8 => "INT8",
            WireType::I16 => "INT16",
            WireType::I32 => "INT32",
            WireType::I64 => "INT64",
            WireType::F16 => "FP16",
            WireType::BF16 => "BF16",
            WireType::F32 => "FP32",
            WireType::F64 => "FP64",
            WireType::Bytes => "BYTES",
        }
    }

    pub fn parse(name: &str) -> Option<WireType> {
        WireType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Bytes per element; `None` for BYTES, whose elements vary in length.
    pub fn element_size(self) -> Option<usize> {
        self.dtype().map(DType::size)
    }

    /// The tensor element type Smelt computes with; `None` for BYTES.
    pub fn dtype(self) -> Option<DType> {
        Some(match self {
            WireType::Bool => DType::Bool,
            WireType::U8 => DType::U8,
            WireType::U16 => DType::U16,
            WireType::U32 => DType::U32,
            WireType::U64 => DType::U64,
            WireType::I8 => DType::I8,
            WireType::I16 => DType::I16,
            WireType::I32 => DType::I32,
            WireType::I64 => DType::I64,
            WireType::F16 => DType::F16,
            WireType::BF16 => DType::BF16,
            WireType::F32 => DType::F32,
            WireType::F64 => DType::F64,
            WireType::Bytes => return None,
        })
    }

    pub fn from_dtype(dtype: DType) -> WireType {
        match dtype {
            DType::Bool => WireType::Bool,
            DType::U8 => WireType::U8,
            DType::U16 => WireType::U16,
            DType::U32 => WireType::U32,
            DType::U64 => WireType::U64,
            DType::I8 => WireType::I8,
            DType::I16 => WireType::I16,
            DType::I32 => WireType::I32,
            DType::I64 => WireType::I64,
            DType::F16 => WireType::F16,
            DType::BF16 => WireType::BF16,
            DType::F32 => WireType::F32,
            DType::F64 => WireType::F64,
        }
    }

    /// config.pbtxt's name for this type (`TYPE_STRING` for BYTES).
    pub fn config_type(self) -> DataType {
        match self {
            WireType::Bool => DataType::TypeBool,
            WireType::U8 => DataType::TypeUint8,
            WireType::U16 => DataType::TypeUint16,
            WireType::U32 => DataType::TypeUint32,
            WireType::U64 => DataType::TypeUint64,
            WireType::I8 => DataType::TypeInt8,
            WireType::I16 => DataType::TypeInt16,
            WireType::I32 => DataType::TypeInt32,
            WireType::I64 => DataType::TypeInt64,
            WireType::F16 => DataType::TypeFp16,
            WireType::BF16 => DataType::TypeBf16,
            WireType::F32 => DataType::TypeFp32,
            WireType::F64 => DataType::TypeFp64,
            WireType::Bytes => DataType::TypeString,
        }
    }

    /// The wire type of a config `data_type` value; `None` for TYPE_INVALID and
    /// numbers outside the enum.
    pub fn from_config(data_type: i32) -> Option<WireType> {
        let data_type = DataType::try_from(data_type).ok()?;
        WireType::ALL.into_iter().find(|t| t.config_type() == data_type)
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// config.pbtxt's spelling of a `data_type` number (`TYPE_FP32`), for messages.
pub fn config_type_name(data_type: i32) -> String {
    match DataType::try_from(data_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("data type #{data_type}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in WireType::ALL {
            assert_eq!(WireType::parse(t.name()), Some(t));
            assert_eq!(WireType::from_config(t.config_type() as i32), Some(t));
            if let Some(d) = t.dtype() {
                assert_eq!(WireType::from_dtype(d), t);
                assert_eq!(t.element_size(), Some(d.size()));
            }
        }
        assert_eq!(WireType::parse("FLOAT32"), None);
        assert_eq!(WireType::from_config(DataType::TypeInvalid as i32), None);
        assert_eq!(config_type_name(DataType::TypeFp16 as i32), "TYPE_FP16");
    }
}
