//! Convolutions and pooling, which share their window attributes.

use super::{Lowered, OpContext};
use crate::attrs::NodeAttrs;
use crate::OnnxError;
use smelt_ir::{AutoPad, ConvAttrs, ConvTransposeAttrs, Op, PoolAttrs};

fn auto_pad(a: &NodeAttrs<'_>) -> Result<AutoPad, OnnxError> {
    match a.string_or("auto_pad", "NOTSET")? {
        "NOTSET" => Ok(AutoPad::NotSet),
        "SAME_UPPER" => Ok(AutoPad::SameUpper),
        "SAME_LOWER" => Ok(AutoPad::SameLower),
        "VALID" => Ok(AutoPad::Valid),
        other => Err(a.error("auto_pad", format!("must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, found '{other}'"))),
    }
}

/// Strides and dilations of 0 would divide by zero downstream.
fn positive(a: &NodeAttrs<'_>, name: &str) -> Result<Vec<usize>, OnnxError> {
    let v = a.usizes(name)?.unwrap_or_default();
    if v.contains(&0) {
        return Err(a.error(name, format!("must be positive, found {v:?}")));
    }
    Ok(v)
}

fn conv_attrs(a: &NodeAttrs<'_>) -> Result<ConvAttrs, OnnxError> {
    let kernel_shape = a.usizes("kernel_shape")?;
    let group = a.int_or("group", 1)?;
    let group = usize::try_from(group)
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| a.error("group", format!("must be positive, found {group}")))?;
    Ok(ConvAttrs {
        kernel_shape,
        strides: positive(a, "strides")?,
        pads: a.usizes("pads")?.unwrap_or_default(),
        dilations: positive(a, "dilations")?,
        group,
        auto_pad: auto_pad(a)?,
        activation: None,
    })
}

pub(super) fn lower_conv(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 3)?;
    let attrs = conv_attrs(&cx.attrs)?;
    Ok(cx.lowered(Op::Conv(attrs)))
}

pub(super) fn lower_conv_transpose(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(2, 3)?;
    let a = &cx.attrs;
    let attrs = ConvTransposeAttrs {
        conv: conv_attrs(a)?,
        output_padding: a.usizes("output_padding")?.unwrap_or_default(),
        output_shape: a.usizes("output_shape")?,
    };
    Ok(cx.lowered(Op::ConvTranspose(attrs)))
}

/// MaxPool, AveragePool and LpPool. Attributes a given opset lacks simply are not
/// set by its models, so reading them all with their defaults covers every opset.
pub(super) fn lower_pool(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_inputs(1, 1)?;
    let max_outputs = if cx.op_type == "MaxPool" { 2 } else { 1 };
    cx.expect_outputs(1, max_outputs)?;
    let a = &cx.attrs;
    let kernel_shape = a.usizes("kernel_shape")?.ok_or_else(|| a.error("kernel_shape", "is required"))?;
    if kernel_shape.is_empty() || kernel_shape.contains(&0) {
        return Err(a.error("kernel_shape", format!("must be non-empty and positive, found {kernel_shape:?}")));
    }
    let is_max = cx.op_type == "MaxPool";
    let is_average = cx.op_type == "AveragePool";
    let attrs = PoolAttrs {
        kernel_shape,
        strides: positive(a, "strides")?,
        pads: a.usizes("pads")?.unwrap_or_default(),
        dilations: positive(a, "dilations")?,
        auto_pad: auto_pad(a)?,
        ceil_mode: a.flag_or("ceil_mode", false)?,
        count_include_pad: if is_average { a.flag_or("count_include_pad", false)? } else { false },
        storage_order: if is_max { a.flag_or("storage_order", false)? as i64 } else { 0 },
    };
    let op = match cx.op_type {
        "MaxPool" => Op::MaxPool(attrs),
        "AveragePool" => Op::AveragePool(attrs),
        _ => {
            let p = a.int_or("p", 2)?;
            if p < 1 {
                return Err(a.error("p", format!("must be at least 1, found {p}")));
            }
            Op::LpPool { attrs, p }
        }
    };
    Ok(cx.lowered(op))
}

pub(super) fn lower_global_pool(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    cx.expect_io(1, 1)?;
    let op = if cx.op_type == "GlobalMaxPool" { Op::GlobalMaxPool } else { Op::GlobalAveragePool };
    Ok(cx.lowered(op))
}
