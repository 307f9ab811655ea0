//! Normalisations: Batch, Layer, Instance, Group and Lp.

use super::{Lowered, OpContext};
use crate::OnnxError;
use smelt_ir::Op;

const DEFAULT_EPSILON: f32 = 1e-5;

/// Inference-mode BatchNormalization. Only output 0 is produced: the running
/// statistics outputs exist for training, and the importer refuses the model if
/// anything reads them.
pub(super) fn lower_batch_norm(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_inputs(5, 5)?;
    cx.expect_outputs(1, if cx.opset >= 14 { 3 } else { 5 })?;
    let a = &cx.attrs;
    let epsilon = a.float_or("epsilon", DEFAULT_EPSILON)?;
    a.ignore(&["momentum"]);
    if cx.opset < 9 && !a.flag_or("spatial", true)? {
        return Err(a.error("spatial", "is 0 (per-activation statistics); Smelt supports per-channel statistics only"));
    }
    if cx.opset >= 14 && a.flag_or("training_mode", false)? {
        return Err(a.error("training_mode", "is 1; Smelt runs BatchNormalization in inference mode only"));
    }
    Ok(Lowered { op: Op::BatchNormalization { epsilon }, inputs: cx.inputs.clone(), outputs: 1 })
}

pub(super) fn lower_layer_norm(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_inputs(2, 3)?;
    cx.expect_outputs(1, 3)?;
    let a = &cx.attrs;
    let op = Op::LayerNormalization { axis: a.int_or("axis", -1)?, epsilon: a.float_or("epsilon", DEFAULT_EPSILON)? };
    // stash_type picks the precision of the statistics; Smelt always computes them in f32.
    a.ignore(&["stash_type"]);
    Ok(cx.lowered(op))
}

pub(super) fn lower_instance_norm(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(3, 3)?;
    let epsilon = cx.attrs.float_or("epsilon", DEFAULT_EPSILON)?;
    Ok(cx.lowered(Op::InstanceNormalization { epsilon }))
}

/// Opset 18's scale and bias are per group; opset 21 made them per channel.
pub(super) fn lower_group_norm(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(3, 3)?;
    let a = &cx.attrs;
    let num_groups = a.usize("num_groups")?.ok_or_else(|| a.error("num_groups", "is required"))?;
    if num_groups == 0 {
        return Err(a.error("num_groups", "must be positive"));
    }
    let epsilon = a.float_or("epsilon", DEFAULT_EPSILON)?;
    a.ignore(&["stash_type"]);
    Ok(cx.lowered(Op::GroupNormalization { epsilon, num_groups, per_channel: cx.opset >= 21 }))
}

pub(super) fn lower_lp_norm(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let a = &cx.attrs;
    let p = a.int_or("p", 2)?;
    if p != 1 && p != 2 {
        return Err(a.error("p", format!("must be 1 or 2, found {p}")));
    }
    Ok(cx.lowered(Op::LpNormalization { axis: a.int_or("axis", -1)?, p }))
}
