//! `TensorProto` → [`Tensor`]: element types, shapes, and the several places ONNX
//! may keep the data (raw bytes, a typed repeated field, or an external file).

use crate::dtype::{dtype_from_code, onnx_type_name};
use crate::proto::{tensor_proto::DataLocation, TensorProto};
use crate::{external, OnnxError};
use prost::Message;
use smelt_ir::{DType, Element, Tensor};
use std::path::Path;

/// Checks a tensor's dims and returns them with the element count and byte size.
/// Negative dims and counts that overflow are errors, so nothing downstream can
/// be asked to allocate an impossible buffer.
pub(crate) fn checked_shape(name: &str, dims: &[i64], dtype: DType) -> Result<(Vec<usize>, usize, usize), OnnxError> {
    let mut shape = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for &d in dims {
        let d =
            usize::try_from(d).map_err(|_| OnnxError::tensor(name, format!("has a negative dimension in {dims:?}")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| OnnxError::tensor(name, format!("shape {dims:?} has more elements than fit in memory")))?;
        shape.push(d);
    }
    let bytes = count
        .checked_mul(dtype.size())
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| OnnxError::tensor(name, format!("shape {dims:?} needs more bytes than fit in memory")))?;
    Ok((shape, count, bytes))
}

/// Converts a tensor message. `name` is used in errors (a Constant node's tensor
/// often has no name of its own); `base_dir` is where external data is looked up.
pub(crate) fn tensor_from_proto(name: &str, proto: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor, OnnxError> {
    let dtype = dtype_from_code(proto.data_type).map_err(|m| OnnxError::tensor(name, m))?;
    let (shape, count, byte_len) = checked_shape(name, &proto.dims, dtype)?;
    if proto.segment.is_some() {
        return Err(OnnxError::tensor(name, "is segmented; Smelt needs each tensor in one message"));
    }
    if proto.data_location == DataLocation::External as i32 {
        return external::read(name, proto, base_dir, dtype, &shape, byte_len);
    }
    if !proto.raw_data.is_empty() {
        return Tensor::from_bytes(dtype, &shape, &proto.raw_data).map_err(|_| {
            OnnxError::tensor(
                name,
                format!(
                    "raw_data has {} bytes, but a {dtype} tensor of shape {shape:?} needs {byte_len}",
                    proto.raw_data.len()
                ),
            )
        });
    }
    from_typed_field(name, proto, dtype, &shape, count)
}

/// The data from the repeated field ONNX uses for `dtype`.
fn from_typed_field(
    name: &str,
    proto: &TensorProto,
    dtype: DType,
    shape: &[usize],
    count: usize,
) -> Result<Tensor, OnnxError> {
    let (field, len) = match dtype {
        DType::F32 => ("float_data", proto.float_data.len()),
        DType::F64 => ("double_data", proto.double_data.len()),
        DType::I64 => ("int64_data", proto.int64_data.len()),
        DType::U32 | DType::U64 => ("uint64_data", proto.uint64_data.len()),
        _ => ("int32_data", proto.int32_data.len()),
    };
    if len != count {
        let message = if len == 0 {
            format!("has no data for its {count} elements (raw_data and {field} are empty)")
        } else {
            format!("{field} has {len} elements, but shape {shape:?} needs {count}")
        };
        return Err(OnnxError::tensor(name, message));
    }
    let ints = &proto.int32_data;
    let narrow = |what: &str| OnnxError::tensor(name, format!("int32_data holds a value out of range for {what}"));
    let tensor = match dtype {
        DType::F32 => Tensor::from_slice(shape, &proto.float_data),
        DType::F64 => Tensor::from_slice(shape, &proto.double_data),
        DType::I64 => Tensor::from_slice(shape, &proto.int64_data),
        DType::U64 => Tensor::from_slice(shape, &proto.uint64_data),
        DType::U32 => {
            let v: Vec<u32> = proto
                .uint64_data
                .iter()
                .map(|&x| u32::try_from(x))
                .collect::<Result<_, _>>()
                .map_err(|_| OnnxError::tensor(name, "uint64_data holds a value out of range for uint32"))?;
            Tensor::from_vec(shape, v)
        }
        DType::I32 => Tensor::from_slice(shape, ints),
        DType::I16 => Tensor::from_vec(shape, narrow_ints::<i16>(ints).ok_or_else(|| narrow("int16"))?),
        DType::U16 => Tensor::from_vec(shape, narrow_ints::<u16>(ints).ok_or_else(|| narrow("uint16"))?),
        DType::I8 => Tensor::from_vec(shape, narrow_ints::<i8>(ints).ok_or_else(|| narrow("int8"))?),
        DType::U8 => Tensor::from_vec(shape, narrow_ints::<u8>(ints).ok_or_else(|| narrow("uint8"))?),
        DType::Bool => {
            let v: Vec<bool> = ints.iter().map(|&x| x != 0).collect();
            Tensor::from_bools(shape, &v)
        }
        // Half-precision values travel as their 16 bit patterns in the low half of each int32.
        DType::F16 | DType::BF16 => {
            let bits: Vec<u16> = ints.iter().map(|&x| x as u16).collect();
            Tensor::from_bytes(dtype, shape, bytemuck::cast_slice(&bits))
        }
    };
    tensor.map_err(|e| OnnxError::tensor(name, e.to_string()))
}

fn narrow_ints<T: Element + TryFrom<i32>>(values: &[i32]) -> Option<Vec<T>> {
    values.iter().map(|&x| T::try_from(x).ok()).collect()
}

/// Decodes a serialized `TensorProto` (the ONNX test suite's `input_0.pb` files)
/// into its name and tensor. External data is refused: such files stand alone.
pub fn read_tensor_proto(bytes: &[u8]) -> Result<(String, Tensor), OnnxError> {
    let proto = TensorProto::decode(bytes).map_err(OnnxError::DecodeTensor)?;
    let label = if proto.name.is_empty() { "<unnamed>" } else { proto.name.as_str() };
    if proto.data_type == 8 {
        return Err(OnnxError::tensor(
            label,
            format!("has element type {}, which Smelt does not support", onnx_type_name(8)),
        ));
    }
    let tensor = tensor_from_proto(label, &proto, None)?;
    Ok((proto.name, tensor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    fn proto(dtype: DType, dims: &[i64]) -> TensorProto {
        TensorProto { name: "t".into(), data_type: dtype.onnx_code(), dims: dims.to_vec(), ..Default::default() }
    }

    fn raw<T: Element>(dims: &[i64], values: &[T]) -> TensorProto {
        TensorProto { raw_data: bytemuck::cast_slice(values).to_vec().into(), ..proto(T::DTYPE, dims) }
    }

    #[test]
    fn raw_data_of_every_dtype() {
        let t = tensor_from_proto("t", &raw(&[2, 2], &[1.0f32, 2.0, 3.0, 4.0]), None).unwrap();
        assert_eq!(t.shape(), &[2, 2]);
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0]);
        macro_rules! check {
            ($t:ty, $vals:expr) => {
                let vals: Vec<$t> = $vals;
                let t = tensor_from_proto("t", &raw(&[vals.len() as i64], &vals), None).unwrap();
                assert_eq!(t.dtype(), <$t as Element>::DTYPE);
                assert_eq!(t.as_slice::<$t>().unwrap(), &vals[..]);
            };
        }
        check!(f64, vec![1.5, -2.0]);
        check!(f16, vec![f16::from_f32(0.5), f16::from_f32(-3.0)]);
        check!(bf16, vec![bf16::from_f32(0.5)]);
        check!(i8, vec![-1, 2, 3]);
        check!(u8, vec![255, 0]);
        check!(i16, vec![-300]);
        check!(u16, vec![60000]);
        check!(i32, vec![-70000, 1]);
        check!(u32, vec![4_000_000_000]);
        check!(i64, vec![-1, i64::MAX]);
        check!(u64, vec![u64::MAX]);
        let b = TensorProto { raw_data: vec![1u8, 0, 1].into(), ..proto(DType::Bool, &[3]) };
        let t = tensor_from_proto("t", &b, None).unwrap();
        assert_eq!((t.dtype(), t.as_slice::<u8>().unwrap()), (DType::Bool, &[1u8, 0, 1][..]));
    }

    #[test]
    fn typed_fields_of_every_dtype() {
        let t = tensor_from_proto("t", &TensorProto { float_data: vec![1.0, 2.0], ..proto(DType::F32, &[2]) }, None);
        assert_eq!(t.unwrap().as_slice::<f32>().unwrap(), &[1.0, 2.0]);
        let t = tensor_from_proto("t", &TensorProto { double_data: vec![0.25], ..proto(DType::F64, &[]) }, None);
        assert_eq!(t.unwrap().as_slice::<f64>().unwrap(), &[0.25]);
        let t = tensor_from_proto("t", &TensorProto { int64_data: vec![-5, 7], ..proto(DType::I64, &[2]) }, None);
        assert_eq!(t.unwrap().as_slice::<i64>().unwrap(), &[-5, 7]);
        let t = tensor_from_proto("t", &TensorProto { uint64_data: vec![9], ..proto(DType::U64, &[1]) }, None);
        assert_eq!(t.unwrap().as_slice::<u64>().unwrap(), &[9]);
        let t = tensor_from_proto("t", &TensorProto { uint64_data: vec![9], ..proto(DType::U32, &[1]) }, None);
        assert_eq!(t.unwrap().as_slice::<u32>().unwrap(), &[9]);
        let ints = |d: DType, v: Vec<i32>| TensorProto { int32_data: v, ..proto(d, &[2]) };
        assert_eq!(
            tensor_from_proto("t", &ints(DType::I32, vec![-1, 2]), None).unwrap().as_slice::<i32>().unwrap(),
            &[-1, 2]
        );
        assert_eq!(
            tensor_from_proto("t", &ints(DType::I8, vec![-1, 2]), None).unwrap().as_slice::<i8>().unwrap(),
            &[-1, 2]
        );
        assert_eq!(
            tensor_from_proto("t", &ints(DType::U8, vec![255, 2]), None).unwrap().as_slice::<u8>().unwrap(),
            &[255, 2]
        );
        assert_eq!(
            tensor_from_proto("t", &ints(DType::I16, vec![-9, 2]), None).unwrap().as_slice::<i16>().unwrap(),
            &[-9, 2]
        );
        assert_eq!(
            tensor_from_proto("t", &ints(DType::U16, vec![9, 2]), None).unwrap().as_slice::<u16>().unwrap(),
            &[9, 2]
        );
        let b = tensor_from_proto("t", &ints(DType::Bool, vec![1, 0]), None).unwrap();
        assert_eq!((b.dtype(), b.as_slice::<u8>().unwrap()), (DType::Bool, &[1u8, 0][..]));
        let h = ints(DType::F16, vec![f16::from_f32(1.5).to_bits() as i32, f16::from_f32(-2.0).to_bits() as i32]);
        let h = tensor_from_proto("t", &h, None).unwrap();
        assert_eq!(h.as_slice::<f16>().unwrap(), &[f16::from_f32(1.5), f16::from_f32(-2.0)]);
        let h = ints(DType::BF16, vec![bf16::from_f32(1.5).to_bits() as i32, 0]);
        let h = tensor_from_proto("t", &h, None).unwrap();
        assert_eq!(h.as_slice::<bf16>().unwrap(), &[bf16::from_f32(1.5), bf16::from_f32(0.0)]);
        assert!(tensor_from_proto("t", &ints(DType::I8, vec![300, 0]), None).is_err());
    }

    #[test]
    fn empty_tensors_need_no_data() {
        let t = tensor_from_proto("t", &proto(DType::F32, &[0, 3]), None).unwrap();
        assert_eq!(t.shape(), &[0, 3]);
    }

    #[test]
    fn bad_tensors_are_errors_naming_the_tensor() {
        let err = tensor_from_proto("w", &proto(DType::F32, &[2, -1]), None).unwrap_err().to_string();
        assert!(err.contains("'w'") && err.contains("negative"), "{err}");
        let err = tensor_from_proto("w", &proto(DType::F32, &[i64::MAX, i64::MAX]), None).unwrap_err().to_string();
        assert!(err.contains("more"), "{err}");
        let err = tensor_from_proto("w", &raw(&[3], &[1.0f32, 2.0]), None).unwrap_err().to_string();
        assert!(err.contains("raw_data has 8 bytes"), "{err}");
        let err = tensor_from_proto("w", &proto(DType::F32, &[3]), None).unwrap_err().to_string();
        assert!(err.contains("no data"), "{err}");
        let s = TensorProto { data_type: 8, string_data: vec![b"a".to_vec()], dims: vec![1], ..Default::default() };
        let err = tensor_from_proto("names", &s, None).unwrap_err().to_string();
        assert!(err.contains("'names'") && err.contains("string"), "{err}");
        let f8 = TensorProto { data_type: 17, raw_data: vec![0].into(), dims: vec![1], ..Default::default() };
        assert!(tensor_from_proto("q", &f8, None).unwrap_err().to_string().contains("float8e4m3fn"));
        let c = TensorProto { data_type: 14, float_data: vec![0.0, 1.0], dims: vec![1], ..Default::default() };
        assert!(tensor_from_proto("c", &c, None).unwrap_err().to_string().contains("complex64"));
    }

    #[test]
    fn external_data_without_a_directory_is_an_error() {
        let t = TensorProto {
            data_location: DataLocation::External as i32,
            external_data: vec![crate::proto::StringStringEntryProto { key: "location".into(), value: "w.bin".into() }],
            ..proto(DType::F32, &[1])
        };
        let err = tensor_from_proto("w", &t, None).unwrap_err().to_string();
        assert!(err.contains("external data") && err.contains("w.bin"), "{err}");
    }

    #[test]
    fn read_tensor_proto_decodes_name_and_data() {
        let bytes = raw(&[2], &[3i64, 4]).encode_to_vec();
        let (name, t) = read_tensor_proto(&bytes).unwrap();
        assert_eq!(name, "t");
        assert_eq!(t.as_slice::<i64>().unwrap(), &[3, 4]);
        assert!(read_tensor_proto(&bytes[..bytes.len() - 3]).is_err());
    }
}
