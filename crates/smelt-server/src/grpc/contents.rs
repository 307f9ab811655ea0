//! Input tensors sent as typed protobuf values (`InferTensorContents`) rather than
//! raw bytes. Each datatype has one field; the narrower integer types travel in
//! wider fields and must fit back into their own type. FP16 and BF16 have no
//! field: they can only be sent as raw contents.

use crate::datatype::WireType;
use crate::error::{Result, ServerError};
use crate::infer::TensorData;
use crate::proto::inference::InferTensorContents;
use crate::wire::element_count;
use smelt_ir::Tensor;

/// The field of InferTensorContents that carries `wire`, by its schema name.
pub fn field_for(wire: WireType) -> Option<&'static str> {
    Some(match wire {
        WireType::Bool => "bool_contents",
        WireType::I8 | WireType::I16 | WireType::I32 => "int_contents",
        WireType::I64 => "int64_contents",
        WireType::U8 | WireType::U16 | WireType::U32 => "uint_contents",
        WireType::U64 => "uint64_contents",
        WireType::F32 => "fp32_contents",
        WireType::F64 => "fp64_contents",
        WireType::Bytes => "bytes_contents",
        WireType::F16 | WireType::BF16 => return None,
    })
}

/// How many values each field of `contents` holds, by field name.
fn filled_fields(contents: &InferTensorContents) -> Vec<(&'static str, usize)> {
    [
        ("bool_contents", contents.bool_contents.len()),
        ("int_contents", contents.int_contents.len()),
        ("int64_contents", contents.int64_contents.len()),
        ("uint_contents", contents.uint_contents.len()),
        ("uint64_contents", contents.uint64_contents.len()),
        ("fp32_contents", contents.fp32_contents.len()),
        ("fp64_contents", contents.fp64_contents.len()),
        ("bytes_contents", contents.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|&(_, n)| n > 0)
    .collect()
}

/// Narrows each value to `T`, naming the first one that does not fit.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(name: &str, wire: WireType, values: &[S]) -> Result<Vec<T>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            T::try_from(v).map_err(|_| {
                ServerError::invalid(format!(
                    "input '{name}': element {i} of its contents is {v}, outside {wire}'s range"
                ))
            })
        })
        .collect()
}

/// A request tensor from typed contents, checked against the datatype and shape.
pub fn tensor_from_contents(
    name: &str,
    wire: WireType,
    shape: &[usize],
    contents: &InferTensorContents,
) -> Result<TensorData> {
    let count = element_count(name, shape)?;
    let Some(field) = field_for(wire) else {
        return Err(ServerError::invalid(format!(
            "input '{name}' is {wire}, which InferTensorContents has no field for; send its data in \
             raw_input_contents"
        )));
    };
    let filled = filled_fields(contents);
    if let Some((other, _)) = filled.iter().find(|(f, _)| *f != field) {
        return Err(ServerError::invalid(format!(
            "input '{name}' of {wire} has values in {other}; {wire} values go in {field}"
        )));
    }
    let given = filled.first().map_or(0, |&(_, n)| n);
    if given != count {
        return Err(ServerError::invalid(format!(
            "unexpected number of elements for input '{name}': shape {shape:?} holds {count} but {field} has {given}"
        )));
    }
    let built = match wire {
        WireType::Bool => Tensor::from_bools(shape, &contents.bool_contents),
        WireType::I8 => Tensor::from_vec(shape, narrow::<i32, i8>(name, wire, &contents.int_contents)?),
        WireType::I16 => Tensor::from_vec(shape, narrow::<i32, i16>(name, wire, &contents.int_contents)?),
        WireType::I32 => Tensor::from_slice(shape, &contents.int_contents),
        WireType::I64 => Tensor::from_slice(shape, &contents.int64_contents),
        WireType::U8 => Tensor::from_vec(shape, narrow::<u32, u8>(name, wire, &contents.uint_contents)?),
        WireType::U16 => Tensor::from_vec(shape, narrow::<u32, u16>(name, wire, &contents.uint_contents)?),
        WireType::U32 => Tensor::from_slice(shape, &contents.uint_contents),
        WireType::U64 => Tensor::from_slice(shape, &contents.uint64_contents),
        WireType::F32 => Tensor::from_slice(shape, &contents.fp32_contents),
        WireType::F64 => Tensor::from_slice(shape, &contents.fp64_contents),
        WireType::Bytes => return Ok(TensorData::Bytes(contents.bytes_contents.clone())),
        WireType::F16 | WireType::BF16 => unreachable!("no contents field: refused above"),
    };
    built.map(TensorData::Tensor).map_err(|e| ServerError::internal(format!("input '{name}': {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use smelt_ir::DType;

    fn tensor(data: TensorData) -> Tensor {
        match data {
            TensorData::Tensor(t) => t,
            TensorData::Bytes(_) => panic!("expected a tensor"),
        }
    }

    #[test]
    fn every_typed_field_decodes() {
        let ints = InferTensorContents { int_contents: vec![-128, 0, 5, 127], ..Default::default() };
        let t = tensor(tensor_from_contents("x", WireType::I8, &[2, 2], &ints).unwrap());
        assert_eq!((t.dtype(), t.shape()), (DType::I8, &[2usize, 2][..]));
        assert_eq!(t.as_slice::<i8>().unwrap(), &[-128, 0, 5, 127]);
        let t = tensor(tensor_from_contents("x", WireType::I16, &[4], &ints).unwrap());
        assert_eq!(t.as_slice::<i16>().unwrap(), &[-128, 0, 5, 127]);
        let t = tensor(tensor_from_contents("x", WireType::I32, &[4], &ints).unwrap());
        assert_eq!(t.as_slice::<i32>().unwrap(), &[-128, 0, 5, 127]);

        let uints = InferTensorContents { uint_contents: vec![0, 255], ..Default::default() };
        assert_eq!(tensor(tensor_from_contents("x", WireType::U8, &[2], &uints).unwrap()).bytes(), &[0, 255]);
        let t = tensor(tensor_from_contents("x", WireType::U16, &[2], &uints).unwrap());
        assert_eq!(t.as_slice::<u16>().unwrap(), &[0, 255]);
        let t = tensor(tensor_from_contents("x", WireType::U32, &[2], &uints).unwrap());
        assert_eq!(t.as_slice::<u32>().unwrap(), &[0, 255]);

        let c = InferTensorContents { int64_contents: vec![i64::MIN, i64::MAX], ..Default::default() };
        let t = tensor(tensor_from_contents("x", WireType::I64, &[2], &c).unwrap());
        assert_eq!(t.as_slice::<i64>().unwrap(), &[i64::MIN, i64::MAX]);
        let c = InferTensorContents { uint64_contents: vec![u64::MAX], ..Default::default() };
        let t = tensor(tensor_from_contents("x", WireType::U64, &[1], &c).unwrap());
        assert_eq!(t.as_slice::<u64>().unwrap(), &[u64::MAX]);
        let c = InferTensorContents { fp32_contents: vec![0.5, -1.25], ..Default::default() };
        let t = tensor(tensor_from_contents("x", WireType::F32, &[1, 2], &c).unwrap());
        assert_eq!(t.as_slice::<f32>().unwrap(), &[0.5, -1.25]);
        let c = InferTensorContents { fp64_contents: vec![1e300], ..Default::default() };
        let t = tensor(tensor_from_contents("x", WireType::F64, &[1], &c).unwrap());
        assert_eq!(t.as_slice::<f64>().unwrap(), &[1e300]);
        let c = InferTensorContents { bool_contents: vec![true, false, true], ..Default::default() };
        let t = tensor(tensor_from_contents("x", WireType::Bool, &[3], &c).unwrap());
        assert_eq!(t.bytes(), &[1, 0, 1]);
        let c = InferTensorContents { bytes_contents: vec![b"ab".to_vec(), vec![]], ..Default::default() };
        assert_eq!(
            tensor_from_contents("s", WireType::Bytes, &[2], &c).unwrap(),
            TensorData::Bytes(vec![b"ab".to_vec(), vec![]])
        );
        // Zero elements: no field filled at all.
        let t = tensor(tensor_from_contents("x", WireType::F32, &[0, 3], &InferTensorContents::default()).unwrap());
        assert_eq!(t.shape(), &[0, 3]);
    }

    #[test]
    fn bad_contents_are_refused_with_the_reason() {
        let ints = InferTensorContents { int_contents: vec![1, 300], ..Default::default() };
        let e = tensor_from_contents("x", WireType::I8, &[2], &ints).unwrap_err();
        assert!(e.message.contains("element 1") && e.message.contains("300") && e.message.contains("INT8"), "{e}");
        let uints = InferTensorContents { uint_contents: vec![70000], ..Default::default() };
        assert!(tensor_from_contents("x", WireType::U16, &[1], &uints).is_err());

        let e = tensor_from_contents("x", WireType::F32, &[3], &ints).unwrap_err();
        assert!(e.message.contains("int_contents") && e.message.contains("fp32_contents"), "{e}");
        let floats = InferTensorContents { fp32_contents: vec![1.0; 3], ..Default::default() };
        let e = tensor_from_contents("x", WireType::F32, &[2, 2], &floats).unwrap_err();
        assert!(e.message.contains("holds 4 but fp32_contents has 3"), "{e}");
        let e = tensor_from_contents("h", WireType::F16, &[3], &floats).unwrap_err();
        assert!(e.message.contains("FP16") && e.message.contains("raw_input_contents"), "{e}");
        let e = tensor_from_contents("b", WireType::BF16, &[0], &InferTensorContents::default()).unwrap_err();
        assert!(e.message.contains("BF16"), "{e}");
    }
}
