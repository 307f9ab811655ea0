//! ONNX element type codes (`TensorProto.DataType`) and how they map onto Smelt's dtypes.

use smelt_ir::DType;

/// The ONNX name of an element type code, for messages and summaries.
pub fn onnx_type_name(code: i32) -> &'static str {
    match code {
        0 => "undefined",
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        24 => "float8e8m0",
        25 => "uint2",
        26 => "int2",
        27 => "float6e2m3",
        28 => "float6e3m2",
        _ => "unknown",
    }
}

/// The element type as `smelt inspect` shows it: Smelt's name when Smelt has the
/// type (`f32`), otherwise ONNX's (`string`, `float8e4m3fn`).
pub fn display_type_name(code: i32) -> String {
    match DType::from_onnx_code(code) {
        Some(d) => d.name().to_string(),
        None if !(0..=28).contains(&code) => format!("unknown type {code}"),
        None => onnx_type_name(code).to_string(),
    }
}

/// Bytes per element as stored, for parameter-size estimates. Sub-byte types round
/// up to a whole byte per element's share; strings and unknown types count as 0.
pub fn storage_bits(code: i32) -> u64 {
    match code {
        2 | 3 | 9 | 17..=20 | 24 => 8,
        4 | 5 | 10 | 16 => 16,
        1 | 6 | 12 => 32,
        7 | 11 | 13 | 14 => 64,
        15 => 128,
        21..=23 => 4,
        25 | 26 => 2,
        27 | 28 => 6,
        _ => 0,
    }
}

/// Smelt's dtype for an ONNX code, or a message naming the unsupported type.
pub fn dtype_from_code(code: i32) -> Result<DType, String> {
    DType::from_onnx_code(code).ok_or_else(|| match code {
        0 => "has no element type".to_string(),
        _ => format!("has element type {} ({code}), which Smelt does not support", onnx_type_name(code)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_smelt_dtype_round_trips_through_its_code() {
        for d in DType::ALL {
            assert_eq!(dtype_from_code(d.onnx_code()), Ok(d));
        }
    }

    #[test]
    fn unsupported_types_are_named() {
        let err = dtype_from_code(8).unwrap_err();
        assert!(err.contains("string"), "{err}");
        assert!(dtype_from_code(17).unwrap_err().contains("float8e4m3fn"));
        assert_eq!(display_type_name(1), "f32");
        assert_eq!(display_type_name(8), "string");
    }
}
