//! Per-dimension numbers held on the stack: shapes, strides, pads and the small
//! integer inputs (`shape`, `axes`) that kernels plan their loops from. Kernels
//! build these on every run, so keeping them inline (up to rank 8; higher ranks
//! spill to the heap) is what lets a steady-state run allocate nothing.

use crate::{CpuError, Result};
use smallvec::{smallvec, SmallVec};
use smelt_ir::TensorView;

/// One unsigned number per dim: a shape, strides, pads.
pub type Dims = SmallVec<[usize; 8]>;
/// One signed stride per dim (a negative stride walks backwards).
pub type SignedDims = SmallVec<[isize; 8]>;
/// The values of a small integer tensor such as a `shape` or `axes` input.
pub type IntValues = SmallVec<[i64; 8]>;

/// Row-major strides (in elements) of `shape`.
pub fn strides_of(shape: &[usize]) -> Dims {
    let mut strides: Dims = smallvec![0; shape.len()];
    smelt_ir::write_strides(shape, &mut strides);
    strides
}

/// Every element of `t` as i64 (what [`TensorView::to_i64_vec`] gives), inline.
/// Callers check the dtype first: their error messages differ.
pub fn i64_values(t: TensorView) -> IntValues {
    let mut values: IntValues = smallvec![0; t.data.len() / t.dtype.size()];
    t.write_i64s(&mut values);
    values
}

/// A window attribute with one value per spatial dim (`strides`, `dilations`):
/// empty means `default` everywhere.
pub fn per_dim(op: &'static str, name: &str, values: &[usize], rank: usize, default: usize) -> Result<Dims> {
    match values.len() {
        0 => Ok(smallvec![default; rank]),
        n if n == rank => Ok(Dims::from_slice(values)),
        n => Err(CpuError::invalid(op, format!("{name} has {n} values for {rank} spatial dims"))),
    }
}

/// Begin and end pads from a `pads` attribute (`[b1, .., bn, e1, .., en]`; empty
/// means no padding).
pub fn explicit_pads(op: &'static str, pads: &[usize], rank: usize) -> Result<(Dims, Dims)> {
    match pads.len() {
        0 => Ok((smallvec![0; rank], smallvec![0; rank])),
        n if n == 2 * rank => Ok((Dims::from_slice(&pads[..rank]), Dims::from_slice(&pads[rank..]))),
        n => Err(CpuError::invalid(op, format!("pads has {n} values for {rank} spatial dims"))),
    }
}
