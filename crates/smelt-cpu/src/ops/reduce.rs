//! Ops that combine values along axes: Softmax/LogSoftmax/Hardmax, Reduce*, ArgMax/
//! ArgMin, CumSum and TopK.
//!
//! Most of them see their input as `[outer, n, inner]` around one axis: rows of `n`
//! contiguous elements when `inner` is 1 (the common last-axis case, which runs as
//! tight loops over slices) and interleaved columns otherwise (handled a row of
//! `inner` lanes at a time, which also vectorises).

mod arg;
mod cumsum;
mod reduction;
pub(crate) mod softmax;
mod topk;

use super::dims::Dims;
use super::elementwise::checked::{input, output};
use crate::{CpuError, Result};
use smelt_ir::{Op, TensorView, TensorViewMut};

pub fn eval(op: &Op, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let name = op.name();
    match *op {
        Op::Softmax { axis, coerce_2d } => {
            softmax::eval(softmax::Kind::Softmax, axis, coerce_2d, input(name, inputs, 0)?, output(name, outputs, 0)?)
        }
        Op::LogSoftmax { axis, coerce_2d } => softmax::eval(
            softmax::Kind::LogSoftmax,
            axis,
            coerce_2d,
            input(name, inputs, 0)?,
            output(name, outputs, 0)?,
        ),
        Op::Hardmax { axis, coerce_2d } => {
            softmax::eval(softmax::Kind::Hardmax, axis, coerce_2d, input(name, inputs, 0)?, output(name, outputs, 0)?)
        }
        Op::Reduce { kind, keepdims, noop_with_empty_axes } => reduction::eval(
            name,
            kind,
            keepdims,
            noop_with_empty_axes,
            input(name, inputs, 0)?,
            super::elementwise::checked::optional_input(inputs, 1),
            output(name, outputs, 0)?,
        ),
        Op::ArgMax { axis, keepdims, select_last_index } => arg::eval(
            name,
            arg::Pick::Max,
            axis,
            keepdims,
            select_last_index,
            input(name, inputs, 0)?,
            output(name, outputs, 0)?,
        ),
        Op::ArgMin { axis, keepdims, select_last_index } => arg::eval(
            name,
            arg::Pick::Min,
            axis,
            keepdims,
            select_last_index,
            input(name, inputs, 0)?,
            output(name, outputs, 0)?,
        ),
        Op::CumSum { exclusive, reverse } => cumsum::eval(
            exclusive,
            reverse,
            input(name, inputs, 0)?,
            input(name, inputs, 1)?,
            output(name, outputs, 0)?,
        ),
        Op::TopK { axis, largest, sorted: _ } => {
            // Unsorted output may come in any order; sorted order is one of them.
            let [values, indices] = outputs else {
                return Err(CpuError::invalid(name, format!("needs 2 outputs, the node has {}", outputs.len())));
            };
            topk::eval(axis, largest, input(name, inputs, 0)?, input(name, inputs, 1)?, values, indices)
        }
        _ => Err(CpuError::invalid(name, "is not a reduction")),
    }
}

/// `shape` seen around `axis`: (product of the dims before, the axis, product after).
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// `shape` with `axis` set to `keep` (keepdims) or removed.
fn reduced_shape(shape: &[usize], axis: usize, keepdims: bool, keep: usize) -> Dims {
    let mut out = Dims::from_slice(shape);
    if keepdims {
        out[axis] = keep;
    } else {
        out.remove(axis);
    }
    out
}
