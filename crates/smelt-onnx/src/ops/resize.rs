//! Resize and its predecessor Upsample.
//!
//! Upsample (opsets 7-9) and Resize-10 scale by `scales` with what later opsets
//! call the asymmetric coordinate transform, rounding nearest-neighbour source
//! coordinates down (Resize-10 rounds up on shrunk axes); they become a Resize
//! with those settings and inputs `X, -, scales`.

use super::{Lowered, OpContext};
use crate::attrs::NodeAttrs;
use crate::OnnxError;
use smelt_ir::{CoordinateTransform, KeepAspectRatioPolicy, NearestMode, Op, ResizeAttrs, ResizeMode, Tensor};

fn mode(a: &NodeAttrs<'_>, allow_cubic: bool) -> Result<ResizeMode, OnnxError> {
    match a.string_or("mode", "nearest")? {
        "nearest" => Ok(ResizeMode::Nearest),
        "linear" => Ok(ResizeMode::Linear),
        "cubic" if allow_cubic => Ok(ResizeMode::Cubic),
        other => {
            let allowed = if allow_cubic { "nearest, linear or cubic" } else { "nearest or linear" };
            Err(a.error("mode", format!("must be {allowed}, found '{other}'")))
        }
    }
}

/// The settings that reproduce Upsample and Resize-10.
fn legacy_attrs(mode: ResizeMode) -> ResizeAttrs {
    ResizeAttrs {
        mode,
        coordinate_transform: CoordinateTransform::Asymmetric,
        nearest_mode: NearestMode::Floor,
        cubic_coeff_a: -0.75,
        exclude_outside: false,
        extrapolation_value: 0.0,
        antialias: false,
        axes: None,
        keep_aspect_ratio_policy: KeepAspectRatioPolicy::Stretch,
    }
}

/// Upsample-7 takes `scales` as an attribute, Upsample-9 as an input.
pub(super) fn lower_upsample(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    let attrs = legacy_attrs(mode(&cx.attrs, false)?);
    let scales = if cx.opset >= 9 {
        cx.expect_io(2, 2)?;
        cx.input(1)
    } else {
        cx.expect_io(1, 1)?;
        let scales = cx.attrs.floats("scales")?.ok_or_else(|| cx.attrs.error("scales", "is required"))?;
        let t = Tensor::from_slice(&[scales.len()], scales).expect("a 1-D tensor of len elements");
        Some(cx.add_constant("scales", t))
    };
    Ok(Lowered { op: Op::Resize(attrs), inputs: vec![cx.input(0), None, scales], outputs: 1 })
}

/// Resize-10's nearest neighbour rounds source coordinates down when an axis is
/// enlarged and up when it is shrunk (what onnxruntime and the opset-10 test data
/// do). One rounding mode must serve every axis, so with constant scales the mode
/// follows their direction; scales only known at run time are taken to enlarge,
/// the overwhelmingly common use.
fn resize10_nearest_mode(cx: &OpContext<'_>) -> Result<NearestMode, OnnxError> {
    let Some(scales) = cx.input(1).and_then(|v| cx.graph.constant(v)) else {
        return Ok(NearestMode::Floor);
    };
    let scales = scales.to_f64_vec();
    let shrinks = scales.iter().any(|&s| s < 1.0);
    let grows = scales.iter().any(|&s| s > 1.0);
    match (shrinks, grows) {
        (true, true) => Err(cx.error(format!(
            "nearest Resize-10 with scales {scales:?} enlarges some axes and shrinks others; Smelt's Resize has one rounding mode for all axes"
        ))),
        (true, false) => Ok(NearestMode::Ceil),
        _ => Ok(NearestMode::Floor),
    }
}

pub(super) fn lower_resize(cx: &mut OpContext<'_>) -> Result<Lowered, OnnxError> {
    if cx.opset < 11 {
        cx.expect_io(2, 2)?;
        let mut attrs = legacy_attrs(mode(&cx.attrs, false)?);
        if attrs.mode == ResizeMode::Nearest {
            attrs.nearest_mode = resize10_nearest_mode(cx)?;
        }
        return Ok(Lowered { op: Op::Resize(attrs), inputs: vec![cx.input(0), None, cx.input(1)], outputs: 1 });
    }
    // Resize-11 lists roi and scales as required, but exporters leave them empty
    // when sizes are given; every opset is read as "X, roi?, scales?, sizes?".
    cx.expect_io(1, 4)?;
    let a = &cx.attrs;
    let coordinate_transform = match a.string_or("coordinate_transformation_mode", "half_pixel")? {
        "half_pixel" => CoordinateTransform::HalfPixel,
        "half_pixel_symmetric" => CoordinateTransform::HalfPixelSymmetric,
        "pytorch_half_pixel" => CoordinateTransform::PytorchHalfPixel,
        "align_corners" => CoordinateTransform::AlignCorners,
        "asymmetric" => CoordinateTransform::Asymmetric,
        "tf_crop_and_resize" => CoordinateTransform::TfCropAndResize,
        other => {
            return Err(a.error(
                "coordinate_transformation_mode",
                format!("'{other}' is not supported (Smelt has half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric and tf_crop_and_resize)"),
            ))
        }
    };
    let nearest_mode = match a.string_or("nearest_mode", "round_prefer_floor")? {
        "round_prefer_floor" => NearestMode::RoundPreferFloor,
        "round_prefer_ceil" => NearestMode::RoundPreferCeil,
        "floor" => NearestMode::Floor,
        "ceil" => NearestMode::Ceil,
        other => {
            return Err(a.error(
                "nearest_mode",
                format!("must be round_prefer_floor, round_prefer_ceil, floor or ceil, found '{other}'"),
            ))
        }
    };
    let keep_aspect_ratio_policy = match a.string_or("keep_aspect_ratio_policy", "stretch")? {
        "stretch" => KeepAspectRatioPolicy::Stretch,
        "not_larger" => KeepAspectRatioPolicy::NotLarger,
        "not_smaller" => KeepAspectRatioPolicy::NotSmaller,
        other => {
            return Err(a.error(
                "keep_aspect_ratio_policy",
                format!("must be stretch, not_larger or not_smaller, found '{other}'"),
            ))
        }
    };
    let attrs = ResizeAttrs {
        mode: mode(a, true)?,
        coordinate_transform,
        nearest_mode,
        cubic_coeff_a: a.float_or("cubic_coeff_a", -0.75)?,
        exclude_outside: a.flag_or("exclude_outside", false)?,
        extrapolation_value: a.float_or("extrapolation_value", 0.0)?,
        antialias: a.flag_or("antialias", false)?,
        axes: a.ints("axes")?.map(<[i64]>::to_vec),
        keep_aspect_ratio_policy,
    };
    // Empty constant roi/scales tensors are how opset 11 spelled "not given".
    let mut inputs = cx.inputs.clone();
    for slot in inputs.iter_mut().take(3).skip(1) {
        if slot.and_then(|v| cx.graph.constant(v)).is_some_and(|t| t.is_empty()) {
            *slot = None;
        }
    }
    while inputs.last() == Some(&None) {
        inputs.pop();
    }
    if inputs.get(2).copied().flatten().is_none() && inputs.get(3).copied().flatten().is_none() {
        return Err(cx.error("needs either the scales or the sizes input"));
    }
    Ok(Lowered { op: Op::Resize(attrs), inputs, outputs: 1 })
}
