//! Tensor data in HTTP bodies: JSON `data` arrays (flat or nested) and the binary
//! tensor data extension (little-endian, row-major; BYTES elements prefixed with a
//! 4-byte little-endian length).

use crate::datatype::WireType;
use crate::error::{Result, ServerError};
use crate::infer::TensorData;
use half::{bf16, f16};
use serde_json::Value;
use smelt_ir::{DType, Tensor};

fn element_count(name: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ServerError::invalid(format!("input '{name}': shape {shape:?} holds too many elements")))
}

/// The leaves of a JSON `data` value, nested arrays flattened in row-major order.
fn flatten<'a>(data: &'a Value, out: &mut Vec<&'a Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        leaf => out.push(leaf),
    }
}

fn bad_element(name: &str, wire: WireType, index: usize, value: &Value) -> ServerError {
    let mut shown = value.to_string();
    if shown.len() > 40 {
        shown.truncate(40);
        shown.push('…');
    }
    ServerError::invalid(format!("input '{name}': element {index} of 'data' is {shown}, which is not a {wire} value"))
}

fn ints<T: TryFrom<i64> + TryFrom<u64>>(name: &str, wire: WireType, leaves: &[&Value]) -> Result<Vec<T>> {
    leaves
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let converted = match v {
                Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(x), _) => T::try_from(x).ok(),
                    (None, Some(x)) => T::try_from(x).ok(),
                    _ => None,
                },
                _ => None,
            };
            converted.ok_or_else(|| bad_element(name, wire, i, v))
        })
        .collect()
}

fn floats(name: &str, wire: WireType, leaves: &[&Value]) -> Result<Vec<f64>> {
    leaves.iter().enumerate().map(|(i, v)| v.as_f64().ok_or_else(|| bad_element(name, wire, i, v))).collect()
}

/// A request tensor from a JSON `data` value.
pub fn tensor_from_json(name: &str, wire: WireType, shape: &[usize], data: &Value) -> Result<TensorData> {
    let count = element_count(name, shape)?;
    let mut leaves = Vec::with_capacity(count);
    flatten(data, &mut leaves);
    if leaves.len() != count {
        return Err(ServerError::invalid(format!(
            "unexpected number of elements for input '{name}': shape {shape:?} holds {count} but 'data' has {}",
            leaves.len()
        )));
    }
    let build = |r: std::result::Result<Tensor, smelt_ir::IrError>| {
        r.map(TensorData::Tensor).map_err(|e| ServerError::internal(format!("input '{name}': {e}")))
    };
    match wire {
        WireType::Bool => {
            let values: Result<Vec<bool>> = leaves
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_bool().ok_or_else(|| bad_element(name, wire, i, v)))
                .collect();
            build(Tensor::from_bools(shape, &values?))
        }
        WireType::U8 => build(Tensor::from_vec(shape, ints::<u8>(name, wire, &leaves)?)),
        WireType::U16 => build(Tensor::from_vec(shape, ints::<u16>(name, wire, &leaves)?)),
        WireType::U32 => build(Tensor::from_vec(shape, ints::<u32>(name, wire, &leaves)?)),
        WireType::U64 => build(Tensor::from_vec(shape, ints::<u64>(name, wire, &leaves)?)),
        WireType::I8 => build(Tensor::from_vec(shape, ints::<i8>(name, wire, &leaves)?)),
        WireType::I16 => build(Tensor::from_vec(shape, ints::<i16>(name, wire, &leaves)?)),
        WireType::I32 => build(Tensor::from_vec(shape, ints::<i32>(name, wire, &leaves)?)),
        WireType::I64 => build(Tensor::from_vec(shape, ints::<i64>(name, wire, &leaves)?)),
        WireType::F16 => {
            build(Tensor::from_vec(shape, floats(name, wire, &leaves)?.into_iter().map(f16::from_f64).collect()))
        }
        WireType::BF16 => {
            build(Tensor::from_vec(shape, floats(name, wire, &leaves)?.into_iter().map(bf16::from_f64).collect()))
        }
        WireType::F32 => {
            build(Tensor::from_vec(shape, floats(name, wire, &leaves)?.into_iter().map(|v| v as f32).collect()))
        }
        WireType::F64 => build(Tensor::from_vec(shape, floats(name, wire, &leaves)?)),
        WireType::Bytes => {
            let values: Result<Vec<Vec<u8>>> = leaves
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| bad_element(name, wire, i, v)))
                .collect();
            Ok(TensorData::Bytes(values?))
        }
    }
}

/// A request tensor from its binary data.
pub fn tensor_from_binary(name: &str, wire: WireType, shape: &[usize], bytes: &[u8]) -> Result<TensorData> {
    let count = element_count(name, shape)?;
    let Some(size) = wire.element_size() else {
        return bytes_elements(name, shape, count, bytes).map(TensorData::Bytes);
    };
    let expected = count.saturating_mul(size);
    if bytes.len() != expected {
        return Err(ServerError::invalid(format!(
            "unexpected size for input '{name}': shape {shape:?} of {wire} needs {expected} bytes, its binary data \
             holds {}",
            bytes.len()
        )));
    }
    let dtype = wire.dtype().expect("fixed-size types have a dtype");
    let mut tensor =
        Tensor::from_bytes(dtype, shape, bytes).map_err(|e| ServerError::internal(format!("input '{name}': {e}")))?;
    if dtype == DType::Bool {
        // Any non-zero byte is true; the kernels expect exactly 0 or 1.
        tensor.bytes_mut().iter_mut().for_each(|b| *b = u8::from(*b != 0));
    }
    Ok(TensorData::Tensor(tensor))
}

fn bytes_elements(name: &str, shape: &[usize], count: usize, mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err(ServerError::invalid(format!(
                "input '{name}': BYTES element {} is cut short: {} bytes left where a 4-byte length is expected",
                out.len(),
                bytes.len()
            )));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(ServerError::invalid(format!(
                "input '{name}': BYTES element {} claims {len} bytes but only {} remain",
                out.len(),
                rest.len()
            )));
        }
        out.push(rest[..len].to_vec());
        bytes = &rest[len..];
    }
    if out.len() != count {
        return Err(ServerError::invalid(format!(
            "unexpected number of elements for input '{name}': shape {shape:?} holds {count} but its BYTES data has {}",
            out.len()
        )));
    }
    Ok(out)
}

/// A response tensor as a flat JSON array.
pub fn tensor_to_json(tensor: &Tensor) -> Value {
    fn list<T: Copy + smelt_ir::Element>(t: &Tensor, f: impl Fn(T) -> Value) -> Value {
        Value::Array(t.as_slice::<T>().map(|s| s.iter().map(|&v| f(v)).collect()).unwrap_or_default())
    }
    let float = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    match tensor.dtype() {
        DType::Bool => Value::Array(tensor.bytes().iter().map(|&b| Value::Bool(b != 0)).collect()),
        DType::U8 => list::<u8>(tensor, |v| v.into()),
        DType::U16 => list::<u16>(tensor, |v| v.into()),
        DType::U32 => list::<u32>(tensor, |v| v.into()),
        DType::U64 => list::<u64>(tensor, |v| v.into()),
        DType::I8 => list::<i8>(tensor, |v| v.into()),
        DType::I16 => list::<i16>(tensor, |v| v.into()),
        DType::I32 => list::<i32>(tensor, |v| v.into()),
        DType::I64 => list::<i64>(tensor, |v| v.into()),
        DType::F16 => list::<f16>(tensor, |v| float(v.to_f64())),
        DType::BF16 => list::<bf16>(tensor, |v| float(v.to_f64())),
        // Through f32's own shortest form, so 0.1f32 prints as 0.1.
        DType::F32 => list::<f32>(tensor, |v| float(shortest_f64(v))),
        DType::F64 => list::<f64>(tensor, float),
    }
}

/// The f64 nearest to the shortest decimal that reads back as `v`, so that JSON
/// shows 0.1 for 0.1f32 rather than 0.10000000149011612.
fn shortest_f64(v: f32) -> f64 {
    if v.is_finite() {
        format!("{v}").parse().unwrap_or(f64::from(v))
    } else {
        f64::from(v)
    }
}

/// Decodes standard base64 (with or without padding; whitespace ignored), the
/// encoding of model files in a repository load request.
pub fn base64_decode(text: &str) -> std::result::Result<Vec<u8>, String> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let body = symbols.iter().position(|&c| c == b'=').map_or(&symbols[..], |p| &symbols[..p]);
    if symbols[body.len()..].iter().any(|&c| c != b'=') || symbols.len() - body.len() > 2 {
        return Err("'=' padding appears before the end".to_string());
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = value(c).ok_or_else(|| format!("'{}' is not a base64 character", c as char))?;
            acc |= v << (18 - 6 * i);
        }
        match chunk.len() {
            4 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]),
            3 => out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8]),
            2 => out.push((acc >> 16) as u8),
            _ => return Err("the data ends with a single base64 character".to_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tensor(data: TensorData) -> Tensor {
        match data {
            TensorData::Tensor(t) => t,
            TensorData::Bytes(_) => panic!("expected a tensor"),
        }
    }

    /// Every fixed-size type: JSON in, binary in, JSON out agree.
    #[test]
    fn every_datatype_round_trips() {
        let cases: Vec<(WireType, Value, Value)> = vec![
            (WireType::Bool, json!([true, false, true, true]), json!([true, false, true, true])),
            (WireType::U8, json!([0, 1, 254, 255]), json!([0, 1, 254, 255])),
            (WireType::U16, json!([0, 1, 65534, 65535]), json!([0, 1, 65534, 65535])),
            (WireType::U32, json!([0, 1, 7, 4294967295u64]), json!([0, 1, 7, 4294967295u64])),
            (WireType::U64, json!([0, 1, 7, u64::MAX]), json!([0, 1, 7, u64::MAX])),
            (WireType::I8, json!([-128, -1, 0, 127]), json!([-128, -1, 0, 127])),
            (WireType::I16, json!([-32768, -1, 0, 32767]), json!([-32768, -1, 0, 32767])),
            (WireType::I32, json!([i32::MIN, -1, 0, i32::MAX]), json!([i32::MIN, -1, 0, i32::MAX])),
            (WireType::I64, json!([i64::MIN, -1, 0, i64::MAX]), json!([i64::MIN, -1, 0, i64::MAX])),
            (WireType::F16, json!([0.5, -2, 1.5, 65504]), json!([0.5, -2.0, 1.5, 65504.0])),
            (WireType::BF16, json!([0.5, -2, 1.5, 256]), json!([0.5, -2.0, 1.5, 256.0])),
            (WireType::F32, json!([0.1, -2, 1.5, 3e38]), json!([0.1, -2.0, 1.5, 3e38])),
            (WireType::F64, json!([0.1, -2, 1.5, 1e300]), json!([0.1, -2.0, 1.5, 1e300])),
        ];
        for (wire, input, expected) in cases {
            // Nested data with shape [2, 2].
            let nested = json!([input.as_array().unwrap()[..2], input.as_array().unwrap()[2..]]);
            let t = tensor(tensor_from_json("x", wire, &[2, 2], &nested).unwrap());
            assert_eq!(t.dtype(), wire.dtype().unwrap(), "{wire}");
            assert_eq!(t.shape(), &[2, 2]);
            assert_eq!(tensor_to_json(&t), expected, "{wire}");
            let flat = tensor(tensor_from_json("x", wire, &[4], &input).unwrap());
            let binary = tensor(tensor_from_binary("x", wire, &[4], flat.bytes()).unwrap());
            assert_eq!(binary, flat, "{wire}");
        }
    }

    #[test]
    fn json_type_and_count_errors() {
        let e = tensor_from_json("x", WireType::I8, &[2], &json!([1, 300])).unwrap_err();
        assert!(e.message.contains("element 1") && e.message.contains("INT8"), "{e}");
        let e = tensor_from_json("x", WireType::U32, &[1], &json!([-1])).unwrap_err();
        assert!(e.message.contains("UINT32"), "{e}");
        let e = tensor_from_json("x", WireType::I32, &[1], &json!([1.5])).unwrap_err();
        assert!(e.message.contains("INT32"), "{e}");
        let e = tensor_from_json("x", WireType::Bool, &[1], &json!([1])).unwrap_err();
        assert!(e.message.contains("BOOL"), "{e}");
        let e = tensor_from_json("x", WireType::F32, &[1], &json!(["a"])).unwrap_err();
        assert!(e.message.contains("FP32"), "{e}");
        let e = tensor_from_json("x", WireType::F32, &[2, 2], &json!([1, 2, 3])).unwrap_err();
        assert!(e.message.contains("holds 4 but 'data' has 3"), "{e}");
    }

    #[test]
    fn binary_size_mismatch_is_an_error() {
        let e = tensor_from_binary("x", WireType::F32, &[1, 4], &[0; 12]).unwrap_err();
        assert!(e.message.contains("needs 16 bytes") && e.message.contains("holds 12"), "{e}");
        let t = tensor(tensor_from_binary("b", WireType::Bool, &[3], &[0, 2, 1]).unwrap());
        assert_eq!(t.bytes(), &[0, 1, 1]);
    }

    #[test]
    fn bytes_elements_parse_with_length_prefixes() {
        let mut raw = Vec::new();
        for s in [&b"ab"[..], b"", b"xyz"] {
            raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            raw.extend_from_slice(s);
        }
        let TensorData::Bytes(items) = tensor_from_binary("s", WireType::Bytes, &[3], &raw).unwrap() else {
            panic!("expected bytes")
        };
        assert_eq!(items, vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]);
        assert!(tensor_from_binary("s", WireType::Bytes, &[2], &raw).unwrap_err().message.contains("holds 2"));
        assert!(tensor_from_binary("s", WireType::Bytes, &[3], &raw[..raw.len() - 1])
            .unwrap_err()
            .message
            .contains("claims 3 bytes"));
        assert!(tensor_from_binary("s", WireType::Bytes, &[1], &[1, 0]).unwrap_err().message.contains("cut short"));
        let TensorData::Bytes(items) = tensor_from_json("s", WireType::Bytes, &[2], &json!(["hi", "é"])).unwrap()
        else {
            panic!("expected bytes")
        };
        assert_eq!(items[1], "é".as_bytes());
    }

    #[test]
    fn base64_decodes_standard_and_unpadded() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a$==").is_err());
        assert!(base64_decode("a").is_err());
        assert!(base64_decode("aG=Vs").is_err());
    }
}
