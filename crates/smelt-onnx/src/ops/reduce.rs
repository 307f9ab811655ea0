//! Reductions and ArgMax/ArgMin.

use super::{Lowered, OpContext};
use crate::OnnxError;
use smelt_ir::{Op, ReduceKind};

pub(super) fn reduce_kind(op_type: &str) -> Option<ReduceKind> {
    Some(match op_type {
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMean" => ReduceKind::Mean,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        "ReduceProd" => ReduceKind::Prod,
        "ReduceL1" => ReduceKind::L1,
        "ReduceL2" => ReduceKind::L2,
        "ReduceLogSum" => ReduceKind::LogSum,
        "ReduceLogSumExp" => ReduceKind::LogSumExp,
        "ReduceSumSquare" => ReduceKind::SumSquare,
        _ => return None,
    })
}

/// `axes` moved from attribute to input in opset 13 for ReduceSum and in opset 18
/// for the other reductions, together with `noop_with_empty_axes`.
pub(super) fn lower_reduce(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    let kind = reduce_kind(cx.op_type).ok_or_else(|| cx.error("is not a reduction"))?;
    let axes_are_input = cx.opset >= if kind == ReduceKind::Sum { 13 } else { 18 };
    let keepdims = cx.attrs.flag_or("keepdims", true)?;
    let op = |noop_with_empty_axes| Op::Reduce { kind, keepdims, noop_with_empty_axes };
    if axes_are_input {
        cx.expect_io(1, 2)?;
        let noop = cx.attrs.flag_or("noop_with_empty_axes", false)?;
        return Ok(cx.lowered(op(noop)));
    }
    cx.expect_io(1, 1)?;
    let mut inputs = vec![cx.input(0)];
    // An absent or empty `axes` attribute reduces every axis, as an absent input does.
    if let Some(axes) = cx.attrs.ints("axes")?.filter(|a| !a.is_empty()) {
        inputs.push(Some(cx.add_i64s("axes", axes)));
    }
    Ok(Lowered { op: op(false), inputs, outputs: 1 })
}

pub(super) fn lower_arg(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let a = &cx.attrs;
    let axis = a.int_or("axis", 0)?;
    let keepdims = a.flag_or("keepdims", true)?;
    let select_last_index = a.flag_or("select_last_index", false)?;
    let op = if cx.op_type == "ArgMax" {
        Op::ArgMax { axis, keepdims, select_last_index }
    } else {
        Op::ArgMin { axis, keepdims, select_last_index }
    };
    Ok(cx.lowered(op))
}
