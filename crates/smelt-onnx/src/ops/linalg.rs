//! Matrix products: MatMul, Gemm, Einsum.

use super::{Lowered, OpContext};
use crate::OnnxError;
use smelt_ir::Op;

pub(super) fn lower_matmul(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    Ok(cx.lowered(Op::MatMul { activation: None }))
}

/// Gemm's C became optional in opset 11; older models always give it, so one rule
/// (2 or 3 inputs) serves every opset.
pub(super) fn lower_gemm(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 3)?;
    let a = &cx.attrs;
    let op = Op::Gemm {
        alpha: a.float_or("alpha", 1.0)?,
        beta: a.float_or("beta", 1.0)?,
        trans_a: a.flag_or("transA", false)?,
        trans_b: a.flag_or("transB", false)?,
        activation: None,
    };
    Ok(cx.lowered(op))
}

pub(super) fn lower_einsum(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, usize::MAX)?;
    if cx.inputs.iter().any(Option::is_none) {
        return Err(cx.error("has an empty input name; every operand is required"));
    }
    let equation = cx.attrs.string("equation")?.ok_or_else(|| cx.attrs.error("equation", "is required"))?;
    // Spaces carry no meaning in an equation; dropping them spares every consumer.
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    if equation.is_empty() {
        return Err(cx.attrs.error("equation", "is empty"));
    }
    Ok(cx.lowered(Op::Einsum { equation }))
}
