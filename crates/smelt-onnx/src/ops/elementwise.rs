//! Elementwise ops, casts, Dropout and the softmax family.

use super::{Lowered, OpContext};
use crate::dtype::dtype_from_code;
use crate::OnnxError;
use smelt_ir::{BinaryOp, Op, UnaryOp, VariadicOp};

const UNARY: &[&str] = &[
    "Abs",
    "Neg",
    "Sqrt",
    "Reciprocal",
    "Exp",
    "Log",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "ThresholdedRelu",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Mish",
    "Not",
    "IsNaN",
    "IsInf",
    "Sign",
    "Floor",
    "Ceil",
    "Round",
    "Sin",
    "Cos",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "BitwiseNot",
];

const BINARY: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "PRelu",
];

pub(super) fn is_unary(op_type: &str) -> bool {
    UNARY.contains(&op_type)
}

pub(super) fn is_binary(op_type: &str) -> bool {
    BINARY.contains(&op_type)
}

pub(super) fn lower_unary(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let a = &cx.attrs;
    let op = match cx.op_type {
        "Abs" => UnaryOp::Abs,
        "Neg" => UnaryOp::Neg,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Erf" => UnaryOp::Erf,
        "Tanh" => UnaryOp::Tanh,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "LeakyRelu" => UnaryOp::LeakyRelu { alpha: a.float_or("alpha", 0.01)? },
        "Elu" => UnaryOp::Elu { alpha: a.float_or("alpha", 1.0)? },
        // ONNX's defaults are these constants rounded to f32.
        "Selu" => UnaryOp::Selu { alpha: a.float_or("alpha", 1.673_263_2)?, gamma: a.float_or("gamma", 1.050_701)? },
        "Celu" => UnaryOp::Celu { alpha: a.float_or("alpha", 1.0)? },
        "ThresholdedRelu" => UnaryOp::ThresholdedRelu { alpha: a.float_or("alpha", 1.0)? },
        "Gelu" => match a.string_or("approximate", "none")? {
            "none" => UnaryOp::Gelu { tanh: false },
            "tanh" => UnaryOp::Gelu { tanh: true },
            other => return Err(a.error("approximate", format!("must be 'none' or 'tanh', found '{other}'"))),
        },
        "HardSigmoid" => UnaryOp::HardSigmoid { alpha: a.float_or("alpha", 0.2)?, beta: a.float_or("beta", 0.5)? },
        "HardSwish" => UnaryOp::HardSwish,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "Mish" => UnaryOp::Mish,
        "Not" => UnaryOp::Not,
        "IsNaN" => UnaryOp::IsNaN,
        "IsInf" => UnaryOp::IsInf {
            detect_positive: a.flag_or("detect_positive", true)?,
            detect_negative: a.flag_or("detect_negative", true)?,
        },
        "Sign" => UnaryOp::Sign,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan,
        "Asin" => UnaryOp::Asin,
        "Acos" => UnaryOp::Acos,
        "Atan" => UnaryOp::Atan,
        "Sinh" => UnaryOp::Sinh,
        "Cosh" => UnaryOp::Cosh,
        "Asinh" => UnaryOp::Asinh,
        "Acosh" => UnaryOp::Acosh,
        "Atanh" => UnaryOp::Atanh,
        "BitwiseNot" => UnaryOp::BitwiseNot,
        other => return Err(cx.error(format!("{other} is not a unary operator"))),
    };
    Ok(cx.lowered(Op::Unary(op)))
}

pub(super) fn lower_binary(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    let a = &cx.attrs;
    let op = match cx.op_type {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Mod" => BinaryOp::Mod { fmod: a.flag_or("fmod", false)? },
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        "BitShift" => match a.string("direction")? {
            Some("LEFT") => BinaryOp::BitShiftLeft,
            Some("RIGHT") => BinaryOp::BitShiftRight,
            Some(other) => return Err(a.error("direction", format!("must be 'LEFT' or 'RIGHT', found '{other}'"))),
            None => return Err(a.error("direction", "is required")),
        },
        "BitwiseAnd" => BinaryOp::BitwiseAnd,
        "BitwiseOr" => BinaryOp::BitwiseOr,
        "BitwiseXor" => BinaryOp::BitwiseXor,
        "PRelu" => BinaryOp::PRelu,
        other => return Err(cx.error(format!("{other} is not a binary operator"))),
    };
    Ok(cx.lowered(Op::Binary(op)))
}

pub(super) fn lower_variadic(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, usize::MAX)?;
    if cx.inputs.iter().any(Option::is_none) {
        return Err(cx.error("has an empty input name; every operand is required"));
    }
    let op = match cx.op_type {
        "Min" => VariadicOp::Min,
        "Max" => VariadicOp::Max,
        "Sum" => VariadicOp::Sum,
        _ => VariadicOp::Mean,
    };
    Ok(cx.lowered(Op::Variadic(op)))
}

/// Clip-6 has float `min`/`max` attributes; from opset 11 they are optional inputs.
pub(super) fn lower_clip(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    if cx.opset >= 11 {
        cx.expect_io(1, 3)?;
        return Ok(cx.lowered(Op::Clip));
    }
    cx.expect_io(1, 1)?;
    let min = cx.attrs.float("min")?;
    let max = cx.attrs.float("max")?;
    let mut inputs = vec![cx.input(0)];
    let min = min.map(|v| cx.add_scalar_like("min", 0, v as f64));
    let max = max.map(|v| cx.add_scalar_like("max", 0, v as f64));
    if min.is_some() || max.is_some() {
        inputs.push(min);
    }
    if max.is_some() {
        inputs.push(max);
    }
    Ok(Lowered { op: Op::Clip, inputs, outputs: 1 })
}

pub(super) fn lower_where(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(3, 3)?;
    Ok(cx.lowered(Op::Where))
}

pub(super) fn lower_cast(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let to = cx.attrs.required_int("to")?;
    let to = i32::try_from(to)
        .map_err(|_| format!("{to} is not an element type"))
        .and_then(|code| dtype_from_code(code).map_err(|m| format!("target {m}")))
        .map_err(|m| cx.attrs.error("to", m))?;
    // Saturation and rounding modes only apply to float8 and smaller targets, which Smelt lacks.
    cx.attrs.ignore(&["saturate", "round_mode"]);
    Ok(cx.lowered(Op::Cast { to }))
}

pub(super) fn lower_cast_like(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    cx.attrs.ignore(&["saturate", "round_mode"]);
    Ok(cx.lowered(Op::CastLike))
}

pub(super) fn lower_identity(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    Ok(cx.lowered(Op::Identity))
}

/// Inference-mode Dropout passes its input through; the ratio (an attribute before
/// opset 12, an input after) and the seed do not matter. A `training_mode` input
/// that is true, or not a constant, may ask for random dropping, which Smelt does not do.
pub(super) fn lower_dropout(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    if cx.opset >= 12 {
        cx.expect_inputs(1, 3)?;
        cx.attrs.ignore(&["seed"]);
        if let Some(mode) = cx.input(2) {
            match cx.graph.constant(mode) {
                Some(t) if t.to_i64_vec().iter().all(|&m| m == 0) => {}
                Some(_) => return Err(cx.error("training_mode is true; Smelt runs Dropout in inference mode only")),
                // A run-time flag could switch dropping on, which Smelt cannot honour.
                None => {
                    return Err(cx.error("training_mode is not a constant; Smelt runs Dropout in inference mode only"))
                }
            }
        }
    } else {
        cx.expect_inputs(1, 1)?;
        cx.attrs.ignore(&["ratio"]);
    }
    cx.expect_outputs(1, 2)?;
    Ok(Lowered { op: Op::Dropout, inputs: vec![cx.input(0)], outputs: cx.n_outputs })
}

/// Before opset 13 the softmax family flattened the input to 2-D around `axis`
/// (default 1); from 13 it works along one axis (default -1).
pub(super) fn lower_softmax(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let coerce_2d = cx.opset < 13;
    let axis = cx.attrs.int_or("axis", if coerce_2d { 1 } else { -1 })?;
    let op = match cx.op_type {
        "Softmax" => Op::Softmax { axis, coerce_2d },
        "LogSoftmax" => Op::LogSoftmax { axis, coerce_2d },
        _ => Op::Hardmax { axis, coerce_2d },
    };
    Ok(cx.lowered(op))
}
