//! Shape manipulation and data movement: reshaping, slicing, gathering,
//! scattering, padding, and the small generators (Shape, Range, ConstantOfShape).

use super::{Lowered, OpContext};
use crate::attrs::NodeAttrs;
use crate::tensor::tensor_from_proto;
use crate::OnnxError;
use smelt_ir::{Op, PadMode, ScatterReduction, Tensor};

pub(super) fn lower_reshape(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    let allowzero = cx.attrs.flag_or("allowzero", false)?;
    Ok(cx.lowered(Op::Reshape { allowzero }))
}

pub(super) fn lower_flatten(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let axis = cx.attrs.int_or("axis", 1)?;
    Ok(cx.lowered(Op::Flatten { axis }))
}

pub(super) fn lower_transpose(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let perm = cx.attrs.usizes("perm")?;
    if let Some(p) = &perm {
        let mut seen = vec![false; p.len()];
        for &axis in p {
            match seen.get_mut(axis) {
                Some(s) if !*s => *s = true,
                _ => return Err(cx.attrs.error("perm", format!("{p:?} is not a permutation"))),
            }
        }
    }
    Ok(cx.lowered(Op::Transpose { perm }))
}

/// Before opset 13 the axes of Squeeze (optional) and Unsqueeze (required) were an
/// attribute; they become the `axes` input.
pub(super) fn lower_squeeze(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    let squeeze = cx.op_type == "Squeeze";
    let op = if squeeze { Op::Squeeze } else { Op::Unsqueeze };
    if cx.opset >= 13 {
        cx.expect_io(if squeeze { 1 } else { 2 }, 2)?;
        return Ok(cx.lowered(op));
    }
    cx.expect_io(1, 1)?;
    let axes = match cx.attrs.ints("axes")? {
        Some(axes) => Some(axes.to_vec()),
        None if squeeze => None,
        None => return Err(cx.attrs.error("axes", "is required")),
    };
    let mut inputs = vec![cx.input(0)];
    if let Some(axes) = axes {
        inputs.push(Some(cx.add_i64s("axes", &axes)));
    }
    Ok(Lowered { op, inputs, outputs: 1 })
}

pub(super) fn lower_concat(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, usize::MAX)?;
    if cx.inputs.iter().any(Option::is_none) {
        return Err(cx.error("has an empty input name; every operand is required"));
    }
    let axis = cx.attrs.int("axis")?.ok_or_else(|| cx.attrs.error("axis", "is required"))?;
    Ok(cx.lowered(Op::Concat { axis }))
}

/// Split: `split` sizes were an attribute before opset 13; opset 18 added
/// `num_outputs`. Without either, the node's output count (unused outputs
/// included) decides the parts, so every output position is kept.
pub(super) fn lower_split(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    let outputs = cx.n_outputs_all;
    if outputs == 0 {
        return Err(cx.error("has no outputs"));
    }
    let axis = cx.attrs.int_or("axis", 0)?;
    let mut inputs = vec![cx.input(0)];
    if cx.opset >= 13 {
        cx.expect_inputs(1, 2)?;
        inputs = cx.inputs.clone();
    } else {
        cx.expect_inputs(1, 1)?;
        if let Some(split) = cx.attrs.ints("split")? {
            if split.len() != outputs {
                let msg = format!("has {} sizes for {outputs} outputs", split.len());
                return Err(cx.attrs.error("split", msg));
            }
            let split = split.to_vec();
            inputs.push(Some(cx.add_i64s("split", &split)));
        }
    }
    let num_outputs = cx.attrs.usize("num_outputs")?;
    if let Some(n) = num_outputs {
        if cx.input(1).is_some() {
            return Err(cx.attrs.error("num_outputs", "cannot be given together with the 'split' input"));
        }
        if n == 0 || n != outputs {
            return Err(cx.attrs.error("num_outputs", format!("is {n}, but the node has {outputs} outputs")));
        }
    }
    Ok(Lowered { op: Op::Split { axis, num_outputs }, inputs, outputs })
}

/// Slice took `starts`/`ends`/`axes` attributes before opset 10.
pub(super) fn lower_slice(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    if cx.opset >= 10 {
        cx.expect_io(3, 5)?;
        return Ok(cx.lowered(Op::Slice));
    }
    cx.expect_io(1, 1)?;
    let a = &cx.attrs;
    let starts = a.required_ints("starts")?.to_vec();
    let ends = a.required_ints("ends")?.to_vec();
    let axes = a.ints("axes")?.map(<[i64]>::to_vec);
    if starts.len() != ends.len() || axes.as_ref().is_some_and(|x| x.len() != starts.len()) {
        return Err(cx.error("starts, ends and axes must have the same length"));
    }
    let mut inputs = vec![cx.input(0), Some(cx.add_i64s("starts", &starts)), Some(cx.add_i64s("ends", &ends))];
    if let Some(axes) = axes {
        inputs.push(Some(cx.add_i64s("axes", &axes)));
    }
    Ok(Lowered { op: Op::Slice, inputs, outputs: 1 })
}

pub(super) fn lower_gather(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    let a = &cx.attrs;
    let op = match cx.op_type {
        "Gather" => Op::Gather { axis: a.int_or("axis", 0)? },
        "GatherElements" => Op::GatherElements { axis: a.int_or("axis", 0)? },
        _ => Op::GatherND { batch_dims: a.usize("batch_dims")?.unwrap_or(0) },
    };
    Ok(cx.lowered(op))
}

fn scatter_reduction(a: &NodeAttrs<'_>) -> Result<ScatterReduction, OnnxError> {
    match a.string_or("reduction", "none")? {
        "none" => Ok(ScatterReduction::None),
        "add" => Ok(ScatterReduction::Add),
        "mul" => Ok(ScatterReduction::Mul),
        "max" => Ok(ScatterReduction::Max),
        "min" => Ok(ScatterReduction::Min),
        other => Err(a.error("reduction", format!("must be none, add, mul, max or min, found '{other}'"))),
    }
}

/// ScatterND, ScatterElements, and the deprecated Scatter (opsets 9-10), which is
/// ScatterElements without a reduction.
pub(super) fn lower_scatter(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(3, 3)?;
    let a = &cx.attrs;
    let op = match cx.op_type {
        "ScatterND" => Op::ScatterND { reduction: scatter_reduction(a)? },
        "ScatterElements" => Op::ScatterElements { axis: a.int_or("axis", 0)?, reduction: scatter_reduction(a)? },
        _ => Op::ScatterElements { axis: a.int_or("axis", 0)?, reduction: ScatterReduction::None },
    };
    Ok(cx.lowered(op))
}

pub(super) fn lower_expand_tile(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    Ok(cx.lowered(if cx.op_type == "Expand" { Op::Expand } else { Op::Tile }))
}

/// Pad took `pads` and a float `value` as attributes before opset 11; they become
/// the `pads` and `constant_value` inputs. Opset 18 added the `axes` input.
pub(super) fn lower_pad(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    let a = &cx.attrs;
    let mode = match a.string_or("mode", "constant")? {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(a.error("mode", format!("must be constant, reflect, edge or wrap, found '{other}'"))),
    };
    let op = Op::Pad { mode };
    if cx.opset >= 11 {
        cx.expect_io(2, if cx.opset >= 18 { 4 } else { 3 })?;
        return Ok(cx.lowered(op));
    }
    cx.expect_io(1, 1)?;
    let pads = a.required_ints("pads")?.to_vec();
    let value = a.float_or("value", 0.0)?;
    let mut inputs = vec![cx.input(0), Some(cx.add_i64s("pads", &pads))];
    if value != 0.0 {
        inputs.push(Some(cx.add_scalar_like("constant_value", 0, value as f64)));
    }
    Ok(Lowered { op, inputs, outputs: 1 })
}

pub(super) fn lower_shape(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let a = &cx.attrs;
    let op = Op::Shape { start: a.int_or("start", 0)?, end: a.int("end")? };
    Ok(cx.lowered(op))
}

pub(super) fn lower_size(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    Ok(cx.lowered(Op::Size))
}

/// ConstantOfShape's `value` defaults to a one-element f32 zero.
pub(super) fn lower_constant_of_shape(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let value = match cx.attrs.tensor("value")? {
        None => Tensor::from_slice(&[1], &[0.0f32]).expect("one element"),
        Some(t) => {
            let name = format!("{}::value", cx.node);
            let t = tensor_from_proto(&name, t, None)?;
            if t.len() != 1 {
                return Err(cx.attrs.error("value", format!("must hold one element, found shape {:?}", t.shape())));
            }
            t
        }
    };
    Ok(cx.lowered(Op::ConstantOfShape { value }))
}

pub(super) fn lower_range(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(3, 3)?;
    // Opset 27's stash_type only widens the accumulation of float16 ranges.
    cx.attrs.ignore(&["stash_type"]);
    Ok(cx.lowered(Op::Range))
}

pub(super) fn lower_trilu(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 2)?;
    let upper = cx.attrs.flag_or("upper", true)?;
    Ok(cx.lowered(Op::Trilu { upper }))
}

pub(super) fn lower_cumsum(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 2)?;
    let a = &cx.attrs;
    let op = Op::CumSum { exclusive: a.flag_or("exclusive", false)?, reverse: a.flag_or("reverse", false)? };
    Ok(cx.lowered(op))
}

/// TopK's `k` was an attribute before opset 10 (now the 1-element input `K`);
/// `largest` and `sorted` arrived in opset 11.
pub(super) fn lower_topk(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_outputs(1, 2)?;
    let a = &cx.attrs;
    let op = Op::TopK {
        axis: a.int_or("axis", -1)?,
        largest: a.flag_or("largest", true)?,
        sorted: a.flag_or("sorted", true)?,
    };
    if cx.opset >= 10 {
        cx.expect_inputs(2, 2)?;
        return Ok(cx.lowered(op));
    }
    cx.expect_inputs(1, 1)?;
    let k = a.usize("k")?.ok_or_else(|| a.error("k", "is required"))?;
    let k = Some(cx.add_i64s("k", &[k as i64]));
    Ok(Lowered { op, inputs: vec![cx.input(0), k], outputs: cx.n_outputs })
}

pub(super) fn lower_one_hot(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(3, 3)?;
    let axis = cx.attrs.int_or("axis", -1)?;
    Ok(cx.lowered(Op::OneHot { axis }))
}

/// DepthToSpace's `mode` (DCR or CRD) arrived in opset 11; SpaceToDepth gained one
/// in opset 28, where Smelt's op only has the DCR layout.
pub(super) fn lower_depth_space(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let a = &cx.attrs;
    let blocksize = a.usize("blocksize")?.ok_or_else(|| a.error("blocksize", "is required"))?;
    if blocksize == 0 {
        return Err(a.error("blocksize", "must be positive"));
    }
    let column_row = match a.string_or("mode", "DCR")? {
        "DCR" => false,
        "CRD" => true,
        other => return Err(a.error("mode", format!("must be DCR or CRD, found '{other}'"))),
    };
    let op = if cx.op_type == "DepthToSpace" {
        Op::DepthToSpace { blocksize, column_row }
    } else if column_row {
        return Err(a.error("mode", "CRD is not supported for SpaceToDepth; Smelt implements DCR only"));
    } else {
        Op::SpaceToDepth { blocksize }
    };
    Ok(cx.lowered(op))
}
