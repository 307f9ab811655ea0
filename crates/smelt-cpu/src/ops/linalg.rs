use crate::{Kernel, Result, Scratch};
use smelt_ir::{Op, Tensor, TensorView, TensorViewMut};
use std::sync::Arc;

pub fn eval(
    op: &Op,
    _inputs: &[Option<TensorView>],
    _outputs: &mut [TensorViewMut],
    _scratch: &mut Scratch,
) -> Result<()> {
    Err(crate::CpuError::invalid(op.name(), "no CPU kernel yet"))
}

/// A specialised kernel for MatMul/Gemm/Conv with constant weights, or `None`.
pub fn prepare(_op: &Op, _constants: &[Option<&Arc<Tensor>>]) -> Option<Box<dyn Kernel>> {
    None
}
