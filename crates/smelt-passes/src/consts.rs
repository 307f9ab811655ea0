//! Building small constant tensors of any dtype from computed values.

use smelt_ir::{DType, Element, Tensor};

/// A tensor of `dtype` holding `values` (converted as `as` casts would; bool is
/// `v != 0`).
pub(crate) fn tensor_from_f64(dtype: DType, shape: &[usize], values: &[f64]) -> Tensor {
    if dtype == DType::Bool {
        let bools: Vec<bool> = values.iter().map(|&v| v != 0.0).collect();
        return Tensor::from_bools(shape, &bools).expect("callers pass one value per element");
    }
    let tensor = smelt_ir::dispatch_dtype!(dtype, T => {
        let typed: Vec<T> = values.iter().map(|&v| T::from_f64(v)).collect();
        Tensor::from_vec(shape, typed)
    });
    tensor.expect("callers pass one value per element")
}

/// A tensor of `dtype` holding `values`; i64 is stored exactly, other types convert.
pub(crate) fn tensor_from_i64(dtype: DType, shape: &[usize], values: &[i64]) -> Tensor {
    if dtype == DType::I64 {
        return Tensor::from_slice(shape, values).expect("callers pass one value per element");
    }
    let widened: Vec<f64> = values.iter().map(|&v| v as f64).collect();
    tensor_from_f64(dtype, shape, &widened)
}

/// The single element of a one-element tensor, as f32.
pub(crate) fn single_f32(tensor: &Tensor) -> Option<f32> {
    match tensor.to_f64_vec().as_slice() {
        [v] => Some(*v as f32),
        _ => None,
    }
}
