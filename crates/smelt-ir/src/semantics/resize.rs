//! Resize on concrete values: the output size, per-dim scale and roi that
//! `scales`/`sizes`/`roi`/`axes`/`keep_aspect_ratio_policy` give, and each resized
//! dim's filter (which input positions every output position reads, with which
//! weights).
//!
//! Follows ONNX's reference implementation step for step, in f64: it defines the
//! expected outputs, and the CPU kernels and the GPU's record-time tables are both
//! built from what this module returns.

use crate::{CoordinateTransform, DType, KeepAspectRatioPolicy, NearestMode, ResizeAttrs, ResizeMode, TensorView};

/// Per dim of X: the output size, the scale the coordinate transform divides
/// by, and the region of interest (start, end) as fractions of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct ResizePlan {
    pub out_shape: Vec<usize>,
    pub scales: Vec<f64>,
    pub roi: Vec<(f64, f64)>,
}

impl ResizePlan {
    /// The plan for input dims `x` from the node's `roi`, `scales` and `sizes`
    /// inputs. An empty tensor counts as absent (ONNX's way to leave one out), and
    /// `roi` is read only by `tf_crop_and_resize`.
    pub fn new(
        attrs: &ResizeAttrs,
        x: &[usize],
        roi: Option<TensorView>,
        scales: Option<TensorView>,
        sizes: Option<TensorView>,
    ) -> Result<ResizePlan, String> {
        let roi = given(roi).filter(|_| attrs.coordinate_transform == CoordinateTransform::TfCropAndResize);
        let (scales, sizes) = (given(scales), given(sizes));
        let rank = x.len();
        let axes: Vec<usize> = match &attrs.axes {
            Some(axes) => {
                let mut out = Vec::with_capacity(axes.len());
                for &a in axes {
                    let a = if a < 0 { a + rank as i64 } else { a };
                    if a < 0 || a >= rank as i64 || out.contains(&(a as usize)) {
                        return Err(format!("axes {axes:?} are invalid for rank {rank}"));
                    }
                    out.push(a as usize);
                }
                out
            }
            None => (0..rank).collect(),
        };
        let mut roi_dims = vec![(0.0, 1.0); rank];
        if let Some(roi) = roi {
            let v = roi.to_f64_vec();
            if v.len() != 2 * axes.len() {
                return Err(format!("roi has {} values for {} axes", v.len(), axes.len()));
            }
            for (i, &a) in axes.iter().enumerate() {
                roi_dims[a] = (v[i], v[axes.len() + i]);
            }
        }
        let mut out_shape = x.to_vec();
        let mut scale_dims = vec![1.0f64; rank];
        match (scales, sizes) {
            (Some(_), Some(_)) => return Err("only one of scales and sizes may be given".into()),
            (None, None) => return Err("one of scales and sizes is required".into()),
            (Some(s), None) => {
                if !s.dtype.is_float() {
                    return Err(format!("scales must be float, got {}", s.dtype));
                }
                let v = s.to_f64_vec();
                if v.len() != axes.len() {
                    return Err(format!("scales has {} values for {} axes", v.len(), axes.len()));
                }
                if v.iter().any(|&s| s <= 0.0) {
                    return Err(format!("scales {v:?} has a value that is not positive"));
                }
                for (&a, &s) in axes.iter().zip(&v) {
                    scale_dims[a] = s;
                    out_shape[a] = (s * x[a] as f64) as usize;
                }
            }
            (None, Some(s)) => {
                if !matches!(s.dtype, DType::I64 | DType::I32) {
                    return Err(format!("sizes must be integers, got {}", s.dtype));
                }
                let v = s.to_i64_vec();
                if v.len() != axes.len() || v.iter().any(|&d| d < 0) {
                    return Err(format!("sizes {v:?} do not fit {} axes", axes.len()));
                }
                for (&a, &d) in axes.iter().zip(&v) {
                    scale_dims[a] = d as f64 / x[a] as f64;
                    out_shape[a] = d as usize;
                }
                if attrs.keep_aspect_ratio_policy != KeepAspectRatioPolicy::Stretch {
                    let pick = axes.iter().map(|&a| scale_dims[a]);
                    let scale = if attrs.keep_aspect_ratio_policy == KeepAspectRatioPolicy::NotLarger {
                        pick.fold(f64::INFINITY, f64::min)
                    } else {
                        pick.fold(f64::NEG_INFINITY, f64::max)
                    };
                    for &a in &axes {
                        scale_dims[a] = scale;
                        // Rounded half up, as ONNX's reference does.
                        out_shape[a] = (scale * x[a] as f64 + 0.5) as usize;
                    }
                }
            }
        }
        Ok(ResizePlan { out_shape, scales: scale_dims, roi: roi_dims })
    }

    /// Whether `dim` (of size `input`) keeps its size and coordinates. The
    /// reference skips such a dim, so backends read it straight through.
    pub fn is_identity(&self, dim: usize, input: usize) -> bool {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
        let (start, end) = self.roi[dim];
        close(self.scales[dim], 1.0) && self.out_shape[dim] == input && start.abs() <= 1e-9 && close(end, 1.0)
    }
}

/// The input coordinate output index `j` of a dim maps to (ONNX's
/// `coordinate_transformation_mode`), and whether it lies outside the input in
/// `tf_crop_and_resize` (then the output is `extrapolation_value`).
fn source_coordinate(
    mode: CoordinateTransform,
    j: usize,
    scale: f64,
    input: usize,
    output: usize,
    roi: (f64, f64),
) -> (f64, bool) {
    let y = j as f64;
    let in_f = input as f64;
    // The reference uses scale × input (not the rounded output size) here.
    let out_f = scale * in_f;
    match mode {
        CoordinateTransform::AlignCorners => (if out_f == 1.0 { 0.0 } else { y * (in_f - 1.0) / (out_f - 1.0) }, false),
        CoordinateTransform::Asymmetric => (y / scale, false),
        CoordinateTransform::TfCropAndResize => {
            let (start, end) = roi;
            let x = if out_f == 1.0 {
                (end - start) * (in_f - 1.0) / 2.0
            } else {
                y * (end - start) * (in_f - 1.0) / (out_f - 1.0)
            } + start * (in_f - 1.0);
            (x, x < 0.0 || x > in_f - 1.0)
        }
        CoordinateTransform::PytorchHalfPixel => (if out_f == 1.0 { -0.5 } else { (y + 0.5) / scale - 0.5 }, false),
        CoordinateTransform::HalfPixel => ((y + 0.5) / scale - 0.5, false),
        CoordinateTransform::HalfPixelSymmetric => {
            let adjustment = output as f64 / out_f;
            let offset = in_f / 2.0 * (1.0 - adjustment);
            (offset + (y + 0.5) / scale - 0.5, false)
        }
    }
}

/// An input that is present and not empty (ONNX's way to leave one out).
fn given(t: Option<TensorView>) -> Option<TensorView> {
    t.filter(|t| !t.is_empty())
}

/// One axis of a separable resize: every output position `j` is either the
/// extrapolation value (`extrapolate[j]`) or `Σ weight · input[index]` over the
/// `taps` entries from `j · taps`.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisFilter {
    pub taps: usize,
    pub index: Vec<usize>,
    pub weight: Vec<f64>,
    pub extrapolate: Vec<bool>,
}

/// Interpolation weights for a position whose fractional offset from its left
/// neighbour is `ratio` (in (0, 1]; 1 on an exact input position).
fn coefficients(attrs: &ResizeAttrs, ratio: f64, scale: f64) -> Vec<f64> {
    let a = attrs.cubic_coeff_a as f64;
    match (attrs.mode, attrs.antialias) {
        (ResizeMode::Nearest, _) => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let left = match attrs.nearest_mode {
                NearestMode::RoundPreferFloor => ratio <= 0.5,
                NearestMode::RoundPreferCeil => ratio < 0.5,
                NearestMode::Floor => true,
                NearestMode::Ceil => false,
            };
            if left {
                vec![1.0, 0.0]
            } else {
                vec![0.0, 1.0]
            }
        }
        (ResizeMode::Linear, false) => vec![1.0 - ratio, ratio],
        (ResizeMode::Linear, true) => {
            // Downscaling widens the triangle filter to 1/scale input cells.
            let scale = scale.min(1.0);
            let start = (-1.0 / scale).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            normalized(
                (start..start + footprint)
                    .map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0))
                    .collect(),
            )
        }
        (ResizeMode::Cubic, false) => {
            let (r, s) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                ((a * (s + 1.0) - 5.0 * a) * (s + 1.0) + 8.0 * a) * (s + 1.0) - 4.0 * a,
            ]
        }
        (ResizeMode::Cubic, true) => {
            let scale = scale.min(1.0);
            let kernel = |x: f64| {
                let x = x.abs();
                let (x2, x3) = (x * x, x * x * x);
                if x <= 1.0 {
                    (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
                } else if x < 2.0 {
                    a * x3 - 5.0 * a * x2 + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / scale).floor() as i64 + 1;
            let end = 2 - start;
            normalized((start..end).map(|i| kernel(scale * (i as f64 - ratio))).collect())
        }
    }
}

fn normalized(mut c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    c.iter_mut().for_each(|v| *v /= sum);
    c
}

/// The filter of one resized dim from `input` to `output` positions, with the
/// plan's `scale` and `roi` for that dim. Input indices are clamped to the edge.
pub fn axis_filter(attrs: &ResizeAttrs, input: usize, output: usize, scale: f64, roi: (f64, f64)) -> AxisFilter {
    let mut taps = 0;
    let (mut index, mut weight, mut extrapolate) = (Vec::new(), Vec::new(), Vec::with_capacity(output));
    for j in 0..output {
        let (x, outside) = source_coordinate(attrs.coordinate_transform, j, scale, input, output, roi);
        let floor = x.floor();
        let ratio = if x == floor { 1.0 } else { x - floor };
        let mut c = coefficients(attrs, ratio, scale);
        let n = c.len();
        taps = n;
        // The n input positions nearest x, ties to the smaller index (the
        // reference's rule), as offsets from floor(x).
        let frac = x - floor;
        let first = if n.is_multiple_of(2) {
            floor as i64 - (n / 2) as i64 + i64::from(frac != 0.0)
        } else {
            floor as i64 - ((n - 1) / 2) as i64 + i64::from(frac > 0.5)
        };
        if attrs.exclude_outside {
            for (t, w) in c.iter_mut().enumerate() {
                let i = first + t as i64;
                if i < 0 || i >= input as i64 {
                    *w = 0.0;
                }
            }
            let sum: f64 = c.iter().sum();
            if sum != 0.0 {
                c.iter_mut().for_each(|w| *w /= sum);
            }
        }
        for (t, w) in c.into_iter().enumerate() {
            index.push((first + t as i64).clamp(0, input as i64 - 1) as usize);
            weight.push(w);
        }
        extrapolate.push(outside);
    }
    AxisFilter { taps, index, weight, extrapolate }
}

/// The input index each output position of a dim reads with nearest mode, or
/// `None` where it extrapolates.
pub fn nearest_map(
    attrs: &ResizeAttrs,
    input: usize,
    output: usize,
    scale: f64,
    roi: (f64, f64),
) -> Vec<Option<usize>> {
    let f = axis_filter(attrs, input, output, scale, roi);
    (0..output)
        .map(|j| {
            if f.extrapolate[j] {
                None
            } else {
                // Nearest coefficients are one-hot over two taps.
                let t = if f.weight[j * 2] != 0.0 { 0 } else { 1 };
                Some(f.index[j * 2 + t])
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    fn attrs(mode: ResizeMode, policy: KeepAspectRatioPolicy) -> ResizeAttrs {
        ResizeAttrs {
            mode,
            coordinate_transform: CoordinateTransform::HalfPixel,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: Some(vec![2, 3]),
            keep_aspect_ratio_policy: policy,
        }
    }

    #[test]
    fn plan_from_sizes_keeps_the_aspect_ratio() {
        let sizes = Tensor::from_vec(&[2], vec![60i64, 60]).unwrap();
        let a = attrs(ResizeMode::Nearest, KeepAspectRatioPolicy::NotLarger);
        let plan = ResizePlan::new(&a, &[1, 3, 100, 50], None, None, Some(sizes.view())).unwrap();
        assert_eq!(plan.out_shape, vec![1, 3, 60, 30]);
        assert_eq!(plan.scales, vec![1.0, 1.0, 0.6, 0.6]);
        assert!(plan.is_identity(1, 3) && !plan.is_identity(2, 100));
        // An empty scales tensor is absent, not a second target.
        let empty = Tensor::from_vec::<f32>(&[0], vec![]).unwrap();
        assert!(ResizePlan::new(&a, &[1, 3, 100, 50], None, Some(empty.view()), Some(sizes.view())).is_ok());
        let e = ResizePlan::new(&a, &[1, 3, 100, 50], None, None, None).unwrap_err();
        assert!(e.contains("one of scales and sizes is required"), "{e}");
    }

    #[test]
    fn linear_filter_halves_between_neighbours() {
        let a = attrs(ResizeMode::Linear, KeepAspectRatioPolicy::Stretch);
        // Upscaling 2 -> 4 with half_pixel reads x = -0.25, 0.25, 0.75, 1.25.
        let f = axis_filter(&a, 2, 4, 2.0, (0.0, 1.0));
        assert_eq!(f.taps, 2);
        assert_eq!(f.index, vec![0, 0, 0, 1, 0, 1, 1, 1]);
        // Both taps of the first position clamp to input 0.
        assert_eq!(f.weight, vec![0.25, 0.75, 0.75, 0.25, 0.25, 0.75, 0.75, 0.25]);
        let n = attrs(ResizeMode::Nearest, KeepAspectRatioPolicy::Stretch);
        assert_eq!(nearest_map(&n, 2, 4, 2.0, (0.0, 1.0)), vec![Some(0), Some(0), Some(1), Some(1)]);
    }
}
