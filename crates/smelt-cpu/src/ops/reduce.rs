use crate::Result;
use smelt_ir::{Op, TensorView, TensorViewMut};

pub fn eval(op: &Op, _inputs: &[Option<TensorView>], _outputs: &mut [TensorViewMut]) -> Result<()> {
    Err(crate::CpuError::invalid(op.name(), "no CPU kernel yet"))
}
