//! Resize: output sizes from `scales` or `sizes`, over all axes or the `axes`
//! attribute, with the keep-aspect-ratio policies.

use super::dims::{fmt_vals, norm_axes, values, Val};
use super::Args;
use crate::{Dim, Fact, KeepAspectRatioPolicy, ResizeAttrs, Shape};

pub(super) fn resize(attrs: &ResizeAttrs, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, String> {
    let a = Args::new(inputs, &["X", "roi", "scales", "sizes"], 1)?;
    a.int_input(3)?;
    let x = a.req(0);
    // Opset 11-12 models fill an unused scales or sizes slot with an empty tensor.
    let given = |i: usize| a.opt(i).filter(|f| f.shape.dims() != Some(&[Dim::Fixed(0)][..]));
    let (scales, sizes) = match (given(2), given(3)) {
        (Some(_), Some(_)) => return Err("only one of scales and sizes may be given".into()),
        (None, None) => return Err("one of scales and sizes is required".into()),
        pair => pair,
    };
    let param = scales.or(sizes).expect("one of them is present");
    if scales.is_some_and(|s| !s.dtype.is_float()) {
        return Err(format!("scales must be a float tensor, got {}", param.dtype));
    }
    let count = match param.shape.dims() {
        Some([d]) => d.fixed(),
        Some(_) => {
            return Err(format!(
                "{} must be 1-D, got shape {}",
                a.name(if scales.is_some() { 2 } else { 3 }),
                param.shape
            ))
        }
        None => None,
    };
    let Some(d) = x.shape.dims() else {
        let shape = match (&attrs.axes, count) {
            (None, Some(n)) => Shape::of_rank(n),
            _ => Shape::unknown(),
        };
        return Ok(vec![Fact::new(x.dtype, shape)]);
    };
    let axes = match &attrs.axes {
        Some(ax) => norm_axes(ax, d.len(), "axes")?,
        None => (0..d.len()).collect(),
    };
    if let Some(n) = count {
        if n != axes.len() {
            return Err(format!(
                "{} has {n} values, but {} axes are resized (input {})",
                if scales.is_some() { "scales" } else { "sizes" },
                axes.len(),
                x.shape
            ));
        }
    }
    let mut out = d.to_vec();
    if let Some(s) = scales {
        let Some(t) = &s.constant else {
            for &ax in &axes {
                out[ax] = Dim::Unknown;
            }
            return Ok(vec![Fact::new(x.dtype, Shape::new(out))]);
        };
        let factors = t.to_f64_vec();
        for (&ax, &f) in axes.iter().zip(&factors) {
            if f <= 0.0 || !f.is_finite() {
                return Err(format!("scale {f} for axis {ax} must be positive"));
            }
            out[ax] = scaled(&d[ax], f as f32);
        }
    } else if let Some(s) = sizes {
        let Some(vals) = values(s) else {
            for &ax in &axes {
                out[ax] = Dim::Unknown;
            }
            return Ok(vec![Fact::new(x.dtype, Shape::new(out))]);
        };
        if let Some(n) = vals.iter().find_map(|v| v.int().filter(|i| *i < 0)) {
            return Err(format!("sizes {} has the negative size {n}", fmt_vals(&vals)));
        }
        match attrs.keep_aspect_ratio_policy {
            KeepAspectRatioPolicy::Stretch => {
                for (&ax, v) in axes.iter().zip(&vals) {
                    out[ax] = v.to_dim();
                }
            }
            policy => {
                // One scale for every resized axis: the smallest (not_larger) or the
                // largest (not_smaller) of sizes / input, then round half up.
                let ratios: Option<Vec<f32>> = axes
                    .iter()
                    .zip(&vals)
                    .map(|(&ax, v)| match (v, &d[ax]) {
                        (Val::Int(s), Dim::Fixed(n)) if *n > 0 => Some(*s as f32 / *n as f32),
                        _ => None,
                    })
                    .collect();
                for &ax in &axes {
                    out[ax] = match &ratios {
                        Some(r) => {
                            let scale = if policy == KeepAspectRatioPolicy::NotLarger {
                                r.iter().copied().fold(f32::INFINITY, f32::min)
                            } else {
                                r.iter().copied().fold(0.0, f32::max)
                            };
                            let n = d[ax].fixed().unwrap_or_default() as f32;
                            Dim::Fixed((scale * n).round() as usize)
                        }
                        None => Dim::Unknown,
                    };
                }
            }
        }
    }
    Ok(vec![Fact::new(x.dtype, Shape::new(out))])
}

/// `floor(size × scale)`, computed in f32 as ONNX's reference shape inference and
/// onnxruntime do (the f64 product can land on the other side of an integer).
fn scaled(d: &Dim, scale: f32) -> Dim {
    match d {
        Dim::Fixed(n) => Dim::Fixed((*n as f32 * scale).floor() as usize),
        other if scale == 1.0 => other.clone(),
        _ => Dim::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{CoordinateTransform, DType, KeepAspectRatioPolicy, NearestMode, Op, ResizeAttrs, ResizeMode, Shape};

    fn resize(axes: Option<Vec<i64>>, policy: KeepAspectRatioPolicy) -> Op {
        Op::Resize(ResizeAttrs {
            mode: ResizeMode::Nearest,
            coordinate_transform: CoordinateTransform::Asymmetric,
            nearest_mode: NearestMode::Floor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes,
            keep_aspect_ratio_policy: policy,
        })
    }

    fn run_resize(op: &Op, inputs: &[Option<&crate::Fact>]) -> Result<Vec<crate::Fact>, String> {
        crate::infer::infer(op, inputs, 1)
    }

    #[test]
    fn scales_floor_the_product() {
        let op = resize(None, KeepAspectRatioPolicy::Stretch);
        let x = f32(shape!["N", 3, 10, 7]);
        let scales = f32s(&[1.0, 1.0, 2.0, 0.5]);
        let out = run_resize(&op, &[Some(&x), None, Some(&scales)]).unwrap();
        assert_eq!(out[0].shape, shape!["N", 3, 20, 3]);
        // f32 arithmetic, as onnxruntime: 10 × 0.7f32 rounds to 7.0 before the floor.
        let tricky = f32s(&[1.0, 1.0, 0.7, 1.0]);
        let out = run_resize(&op, &[Some(&x), None, Some(&tricky)]).unwrap();
        assert_eq!(out[0].shape, shape!["N", 3, 7, 7]);
    }

    #[test]
    fn sizes_with_axes_and_empty_scales() {
        let op = resize(Some(vec![-2, -1]), KeepAspectRatioPolicy::Stretch);
        let x = f32(shape!["N", 3, 10, 7]);
        let empty = f32s(&[]);
        let sizes = i64s(&[32, 48]);
        let out = run_resize(&op, &[Some(&x), Some(&empty), Some(&empty), Some(&sizes)]).unwrap();
        assert_eq!(out[0].shape, shape!["N", 3, 32, 48]);
        let e = run_resize(&op, &[Some(&x), None, None, Some(&i64s(&[1, 2, 3]))]).unwrap_err();
        assert!(e.contains("3 values") && e.contains("2 axes"), "{e}");
        let both = run_resize(&op, &[Some(&x), None, Some(&f32s(&[1.0, 1.0])), Some(&sizes)]).unwrap_err();
        assert!(both.contains("only one"), "{both}");
        let unknown = run_resize(&op, &[Some(&x), None, None, Some(&fact(DType::I64, shape![2]))]).unwrap();
        assert_eq!(unknown[0].shape, shape!["N", 3, "?", "?"]);
    }

    #[test]
    fn keep_aspect_ratio_policies() {
        let x = f32(shape![1, 3, 100, 50]);
        let sizes = i64s(&[60, 60]);
        let nl = resize(Some(vec![2, 3]), KeepAspectRatioPolicy::NotLarger);
        let out = run_resize(&nl, &[Some(&x), None, None, Some(&sizes)]).unwrap();
        assert_eq!(out[0].shape, shape![1, 3, 60, 30]);
        let ns = resize(Some(vec![2, 3]), KeepAspectRatioPolicy::NotSmaller);
        let out = run_resize(&ns, &[Some(&x), None, None, Some(&sizes)]).unwrap();
        assert_eq!(out[0].shape, shape![1, 3, 120, 60]);
        let unknown_rank = run_resize(
            &resize(None, KeepAspectRatioPolicy::Stretch),
            &[Some(&f32(Shape::unknown())), None, Some(&f32s(&[1.0, 2.0]))],
        )
        .unwrap();
        assert_eq!(unknown_rank[0].shape, Shape::of_rank(2));
    }
}
