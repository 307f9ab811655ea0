//! Operand access for the elementwise, reduction and normalisation kernels: every
//! check turns bad input into a [`CpuError`] naming the op and operand, never a panic.

use crate::ops::dims::IntValues;
use crate::{CpuError, Result};
use smelt_ir::{num_elements, DType, Element, TensorView, TensorViewMut};
use std::fmt::Display;

/// Input `index`, which the op requires.
pub(crate) fn input<'a>(op: &'static str, inputs: &[Option<TensorView<'a>>], index: usize) -> Result<TensorView<'a>> {
    inputs
        .get(index)
        .copied()
        .flatten()
        .ok_or_else(|| CpuError::invalid(op, format!("input {index} is required but missing")))
}

/// Input `index` if the node has it.
pub(crate) fn optional_input<'a>(inputs: &[Option<TensorView<'a>>], index: usize) -> Option<TensorView<'a>> {
    inputs.get(index).copied().flatten()
}

/// Output `index`, which the op requires.
pub(crate) fn output<'o, 'a>(
    op: &'static str,
    outputs: &'o mut [TensorViewMut<'a>],
    index: usize,
) -> Result<&'o mut TensorViewMut<'a>> {
    outputs.get_mut(index).ok_or_else(|| CpuError::invalid(op, format!("output {index} is required but missing")))
}

fn check_len(op: &'static str, what: impl Display, dtype: DType, shape: &[usize], bytes: usize) -> Result<()> {
    let want = num_elements(shape) * dtype.size();
    if bytes == want {
        Ok(())
    } else {
        Err(CpuError::invalid(op, format!("{what}: {dtype} {shape:?} needs {want} bytes, the buffer has {bytes}")))
    }
}

fn check_dtype<T: Element>(op: &'static str, what: impl Display, dtype: DType) -> Result<()> {
    if T::DTYPE == dtype || (dtype == DType::Bool && T::DTYPE == DType::U8) {
        Ok(())
    } else {
        Err(CpuError::invalid(op, format!("{what} is {dtype}, read as {}", T::DTYPE)))
    }
}

/// The elements of an input, checked for type, length and alignment. `what`
/// names the input in errors; it is only formatted for one.
pub(crate) fn slice<'a, T: Element>(op: &'static str, what: impl Display, v: &TensorView<'a>) -> Result<&'a [T]> {
    check_dtype::<T>(op, &what, v.dtype)?;
    check_len(op, &what, v.dtype, v.shape, v.data.len())?;
    bytemuck::try_cast_slice(v.data).map_err(|e| CpuError::invalid(op, format!("{what}: buffer is unusable ({e})")))
}

/// The elements of an output, checked for type, length and alignment.
pub(crate) fn slice_mut<'a, T: Element>(
    op: &'static str,
    what: &str,
    v: &'a mut TensorViewMut<'_>,
) -> Result<&'a mut [T]> {
    check_dtype::<T>(op, what, v.dtype)?;
    check_len(op, what, v.dtype, v.shape, v.data.len())?;
    bytemuck::try_cast_slice_mut(v.data).map_err(|e| CpuError::invalid(op, format!("{what}: buffer is unusable ({e})")))
}

/// Fails unless `given` (an output's pre-allocated shape) is the shape the kernel computes.
pub(crate) fn expect_shape(op: &'static str, what: &str, given: &[usize], expected: &[usize]) -> Result<()> {
    if given == expected {
        Ok(())
    } else {
        Err(CpuError::invalid(op, format!("{what} has shape {given:?}, but the inputs give {expected:?}")))
    }
}

/// Fails unless `found` is the dtype the op requires at this operand (`what`,
/// only formatted for an error).
pub(crate) fn expect_dtype(op: &'static str, what: impl Display, found: DType, expected: DType) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(CpuError::invalid(op, format!("{what} is {found}, expected {expected}")))
    }
}

/// An axis attribute or input in `[-rank, rank)`, made non-negative.
pub(crate) fn normalize_axis(op: &'static str, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if (-r..r).contains(&axis) {
        Ok(if axis < 0 { axis + r } else { axis } as usize)
    } else {
        Err(CpuError::invalid(op, format!("axis {axis} is out of range for rank {rank}")))
    }
}

/// The values of an integer input (i64 or i32), such as axes or K.
pub(crate) fn int_values(op: &'static str, what: &str, v: &TensorView) -> Result<IntValues> {
    match v.dtype {
        DType::I64 => Ok(IntValues::from_slice(slice::<i64>(op, what, v)?)),
        DType::I32 => Ok(slice::<i32>(op, what, v)?.iter().map(|&x| x as i64).collect()),
        other => Err(CpuError::invalid(op, format!("{what} must be int64 or int32, got {other}"))),
    }
}
