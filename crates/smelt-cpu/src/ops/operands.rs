//! Small checks every kernel in the matrix, convolution, pooling and resize
//! families makes on its operands, so each error names the op and the operand.

use crate::{CpuError, Result};
use smelt_ir::{TensorView, TensorViewMut};

/// Input `index`, which the op requires.
pub fn required<'a>(op: &'static str, inputs: &[Option<TensorView<'a>>], index: usize) -> Result<TensorView<'a>> {
    inputs
        .get(index)
        .copied()
        .flatten()
        .ok_or_else(|| CpuError::invalid(op, format!("input {index} is required but missing")))
}

/// Input `index` if present.
pub fn optional<'a>(inputs: &[Option<TensorView<'a>>], index: usize) -> Option<TensorView<'a>> {
    inputs.get(index).copied().flatten()
}

/// Input `index` if present and non-empty. Exporters write empty `roi`/`scales`
/// placeholders where older opsets had no way to omit an input.
pub fn optional_nonempty<'a>(inputs: &[Option<TensorView<'a>>], index: usize) -> Option<TensorView<'a>> {
    inputs.get(index).copied().flatten().filter(|t| !t.is_empty())
}

/// The first output, which every op in these families has.
pub fn first_output<'o, 'a>(
    op: &'static str,
    outputs: &'o mut [TensorViewMut<'a>],
) -> Result<&'o mut TensorViewMut<'a>> {
    outputs.first_mut().ok_or_else(|| CpuError::invalid(op, "the node has no output"))
}

/// Fails unless the pre-allocated output has the shape this kernel computes.
pub fn expect_shape(op: &'static str, what: &str, given: &[usize], expected: &[usize]) -> Result<()> {
    if given == expected {
        Ok(())
    } else {
        Err(CpuError::invalid(op, format!("{what} has shape {given:?}, but the inputs give {expected:?}")))
    }
}

/// Fails unless `found` is the dtype the op requires at this operand.
pub fn expect_dtype(op: &'static str, what: &str, found: smelt_ir::DType, expected: smelt_ir::DType) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(CpuError::invalid(op, format!("{what} is {found}, expected {expected}")))
    }
}

/// Reads an integer tensor (i64 or i32) such as `sizes` or `pads`.
pub fn int_values(op: &'static str, what: &str, t: TensorView) -> Result<super::dims::IntValues> {
    match t.dtype {
        smelt_ir::DType::I64 | smelt_ir::DType::I32 => Ok(super::dims::i64_values(t)),
        other => Err(CpuError::invalid(op, format!("{what} must be int64, got {other}"))),
    }
}
