//! Resize (nearest, N-d linear and cubic, with antialiasing, every coordinate
//! transform, `axes` and `keep_aspect_ratio_policy`), DepthToSpace and
//! SpaceToDepth.
//!
//! Resize follows ONNX's reference implementation, which defines the expected
//! outputs: coordinates are computed in f64; linear and cubic interpolation is
//! separable, so it runs one axis at a time over an f64 buffer, each output
//! position a weighted sum of a fixed number of input positions (clamped to the
//! edge, or dropped and renormalised with `exclude_outside`); nearest is a pure
//! gather in the input's own type.

use super::operands::{expect_dtype, expect_shape, first_output, optional_nonempty, required};
use crate::team;
use crate::{CpuError, Result};
use smelt_ir::semantics::resize::{axis_filter, nearest_map, AxisFilter, ResizePlan};
use smelt_ir::{Element, Op, ResizeAttrs, ResizeMode, TensorView, TensorViewMut};

pub fn eval(op: &Op, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    match op {
        Op::Resize(attrs) => resize(attrs, inputs, outputs),
        Op::DepthToSpace { blocksize, column_row } => {
            let x = required("DepthToSpace", inputs, 0)?;
            depth_to_space(x, *blocksize, *column_row, first_output("DepthToSpace", outputs)?)
        }
        Op::SpaceToDepth { blocksize } => {
            let x = required("SpaceToDepth", inputs, 0)?;
            space_to_depth(x, *blocksize, first_output("SpaceToDepth", outputs)?)
        }
        other => Err(CpuError::invalid(other.name(), "is not a resize op")),
    }
}

// ── Resize ─────────────────────────────────────────────────────────────────
//
// The plan (output size, scale and roi per dim) and the per-axis filters come
// from smelt_ir::semantics::resize, which the GPU's record-time tables use too.

const OP: &str = "Resize";

fn resize(attrs: &ResizeAttrs, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let x = required(OP, inputs, 0)?;
    if x.rank() == 0 {
        return Err(CpuError::invalid(OP, "cannot resize a scalar"));
    }
    let roi = optional_nonempty(inputs, 1);
    let scales = optional_nonempty(inputs, 2);
    let sizes = optional_nonempty(inputs, 3);
    let plan = ResizePlan::new(attrs, x.shape, roi, scales, sizes).map_err(|e| CpuError::invalid(OP, e))?;
    let y = first_output(OP, outputs)?;
    expect_shape(OP, "output", y.shape, &plan.out_shape)?;
    expect_dtype(OP, "output", y.dtype, x.dtype)?;
    if y.is_empty() {
        return Ok(());
    }
    if x.is_empty() {
        return Err(CpuError::invalid(OP, format!("cannot resize the empty input {:?} to {:?}", x.shape, y.shape)));
    }
    smelt_ir::dispatch_dtype!(x.dtype, T => {
        let xs = x.as_slice::<T>()?;
        let ys = y.as_mut_slice::<T>()?;
        if attrs.mode == ResizeMode::Nearest {
            nearest::<T>(attrs, &plan, x.shape, xs, ys);
        } else {
            separable::<T>(attrs, &plan, x.shape, xs, ys);
        }
    });
    Ok(())
}

fn nearest<T: Element>(attrs: &ResizeAttrs, plan: &ResizePlan, shape: &[usize], x: &[T], y: &mut [T]) {
    let rank = shape.len();
    let maps: Vec<Vec<Option<usize>>> = (0..rank)
        .map(|d| {
            if plan.is_identity(d, shape[d]) {
                (0..shape[d]).map(Some).collect()
            } else {
                nearest_map(attrs, shape[d], plan.out_shape[d], plan.scales[d], plan.roi[d])
            }
        })
        .collect();
    let mut strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let fill = T::from_f64(attrs.extrapolation_value as f64);
    let last = rank - 1;
    let row_len = plan.out_shape[last];
    let last_map = &maps[last];
    let row = |r: usize, out: &mut [T]| {
        // The offset of this output row's source row, unless a dim extrapolates.
        let mut rem = r;
        let mut base = Some(0usize);
        for d in (0..last).rev() {
            let o = rem % plan.out_shape[d];
            rem /= plan.out_shape[d];
            base = base.zip(maps[d][o]).map(|(b, i)| b + i * strides[d]);
        }
        match base {
            None => out.fill(fill),
            Some(b) => {
                for (v, m) in out.iter_mut().zip(last_map) {
                    *v = m.map_or(fill, |i| x[b + i]);
                }
            }
        }
    };
    if team::threads() > 1 && y.len() >= 1 << 16 {
        team::for_each_piece(y, row_len, |r, out| row(r, out));
    } else {
        y.chunks_mut(row_len).enumerate().for_each(|(r, out)| row(r, out));
    }
}

fn separable<T: Element>(attrs: &ResizeAttrs, plan: &ResizePlan, shape: &[usize], x: &[T], y: &mut [T]) {
    let mut cur_shape = shape.to_vec();
    let mut buf: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    let extrapolation = attrs.extrapolation_value as f64;
    for d in 0..shape.len() {
        if plan.is_identity(d, shape[d]) {
            continue;
        }
        let filter = axis_filter(attrs, shape[d], plan.out_shape[d], plan.scales[d], plan.roi[d]);
        buf = resample_axis(&buf, &cur_shape, d, &filter, extrapolation);
        cur_shape[d] = plan.out_shape[d];
    }
    let integer = T::DTYPE.is_int();
    let (lo, hi) = (T::from_f64(f64::NEG_INFINITY).to_f64(), T::from_f64(f64::INFINITY).to_f64());
    for (d, &v) in y.iter_mut().zip(&buf) {
        // Saturating like the reference's cast: integers round half to even first.
        *d = if integer { T::from_f64(v.round_ties_even().clamp(lo, hi)) } else { T::from_f64(v) };
    }
}

/// Resamples dim `axis` of a row-major `shape` buffer through `filter`.
fn resample_axis(src: &[f64], shape: &[usize], axis: usize, filter: &AxisFilter, extrapolation: f64) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let (input, output) = (shape[axis], filter.extrapolate.len());
    let mut dst = vec![0.0; outer * output * inner];
    if dst.is_empty() {
        return dst;
    }
    let taps = filter.taps;
    let block = |o: usize, out: &mut [f64]| {
        let src = &src[o * input * inner..][..input * inner];
        for (j, row) in out.chunks_mut(inner).enumerate() {
            if filter.extrapolate[j] {
                row.fill(extrapolation);
                continue;
            }
            row.fill(0.0);
            for t in 0..taps {
                let w = filter.weight[j * taps + t];
                let s = &src[filter.index[j * taps + t] * inner..][..inner];
                row.iter_mut().zip(s).for_each(|(r, &v)| *r += w * v);
            }
        }
    };
    if team::threads() > 1 && outer > 1 && dst.len() * taps >= 1 << 16 {
        team::for_each_piece(&mut dst, output * inner, |o, out| block(o, out));
    } else {
        dst.chunks_mut(output * inner).enumerate().for_each(|(o, out)| block(o, out));
    }
    dst
}

// ── DepthToSpace / SpaceToDepth ────────────────────────────────────────────

/// Copies element `src_index(dst_index)` for every output element, byte-wise so
/// every dtype shares one loop.
fn permute_bytes(x: &[u8], y: &mut [u8], elem: usize, src_index: impl Fn(usize) -> usize) {
    for (i, d) in y.chunks_exact_mut(elem).enumerate() {
        let s = src_index(i) * elem;
        d.copy_from_slice(&x[s..s + elem]);
    }
}

fn depth_to_space(x: TensorView, b: usize, column_row: bool, y: &mut TensorViewMut) -> Result<()> {
    const OP: &str = "DepthToSpace";
    let &[n, c, h, w] = x.shape else {
        return Err(CpuError::invalid(OP, format!("input must be 4-D, got {:?}", x.shape)));
    };
    if b == 0 || c % (b * b) != 0 {
        return Err(CpuError::invalid(OP, format!("channels {c} are not a multiple of blocksize² ({b}²)")));
    }
    let oc = c / (b * b);
    let (oh, ow) = (h * b, w * b);
    expect_shape(OP, "output", y.shape, &[n, oc, oh, ow])?;
    expect_dtype(OP, "output", y.dtype, x.dtype)?;
    permute_bytes(x.data, y.data, x.dtype.size(), |i| {
        let (ox, rest) = (i % ow, i / ow);
        let (oy, rest) = (rest % oh, rest / oh);
        let (ch, batch) = (rest % oc, rest / oc);
        let (yy, by) = (oy / b, oy % b);
        let (xx, bx) = (ox / b, ox % b);
        // DCR: depth is (block row, block col, channel); CRD: (channel, block row, block col).
        let src_c = if column_row { (ch * b + by) * b + bx } else { (by * b + bx) * oc + ch };
        ((batch * c + src_c) * h + yy) * w + xx
    });
    Ok(())
}

fn space_to_depth(x: TensorView, b: usize, y: &mut TensorViewMut) -> Result<()> {
    const OP: &str = "SpaceToDepth";
    let &[n, c, h, w] = x.shape else {
        return Err(CpuError::invalid(OP, format!("input must be 4-D, got {:?}", x.shape)));
    };
    if b == 0 || h % b != 0 || w % b != 0 {
        return Err(CpuError::invalid(OP, format!("spatial dims {h}x{w} are not multiples of blocksize {b}")));
    }
    let (oc, oh, ow) = (c * b * b, h / b, w / b);
    expect_shape(OP, "output", y.shape, &[n, oc, oh, ow])?;
    expect_dtype(OP, "output", y.dtype, x.dtype)?;
    permute_bytes(x.data, y.data, x.dtype.size(), |i| {
        let (xx, rest) = (i % ow, i / ow);
        let (yy, rest) = (rest % oh, rest / oh);
        let (och, batch) = (rest % oc, rest / oc);
        let (blk, ch) = (och / c, och % c);
        let (by, bx) = (blk / b, blk % b);
        ((batch * c + ch) * h + yy * b + by) * w + xx * b + bx
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_close, random, run_op, try_run_op};
    use smelt_ir::Tensor;
    use smelt_ir::{CoordinateTransform, DType, KeepAspectRatioPolicy, NearestMode};

    fn attrs(mode: ResizeMode, ct: CoordinateTransform) -> ResizeAttrs {
        ResizeAttrs {
            mode,
            coordinate_transform: ct,
            nearest_mode: NearestMode::RoundPreferFloor,
            cubic_coeff_a: -0.75,
            exclude_outside: false,
            extrapolation_value: 0.0,
            antialias: false,
            axes: None,
            keep_aspect_ratio_policy: KeepAspectRatioPolicy::Stretch,
        }
    }

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec()).unwrap()
    }

    fn run_resize(
        a: ResizeAttrs,
        x: &Tensor,
        roi: Option<&Tensor>,
        scales: Option<&Tensor>,
        sizes: Option<&Tensor>,
        out: &[usize],
    ) -> Tensor {
        run_op(&Op::Resize(a), &[Some(x), roi, scales, sizes], &[(x.dtype(), out)]).remove(0)
    }

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        f32s(shape, &(1..=n).map(|v| v as f32).collect::<Vec<_>>())
    }

    // Expected values below are ONNX's backend test cases (onnx/backend/test/case/node/resize.py).

    #[test]
    fn nearest_upsample_and_downsample() {
        let x = ramp(&[1, 1, 2, 2]);
        let scales = f32s(&[4], &[1.0, 1.0, 2.0, 3.0]);
        let a = attrs(ResizeMode::Nearest, CoordinateTransform::HalfPixel);
        let got = run_resize(a, &x, None, Some(&scales), None, &[1, 1, 4, 6]);
        let want = [1., 1., 1., 2., 2., 2., 1., 1., 1., 2., 2., 2., 3., 3., 3., 4., 4., 4., 3., 3., 3., 4., 4., 4.];
        assert_close(&got, &want, 0.0);

        let x = ramp(&[1, 1, 2, 4]);
        let scales = f32s(&[4], &[1.0, 1.0, 0.6, 0.6]);
        let got = run_resize(
            attrs(ResizeMode::Nearest, CoordinateTransform::HalfPixel),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 1, 2],
        );
        assert_close(&got, &[1., 3.], 0.0);
    }

    #[test]
    fn nearest_modes_with_sizes() {
        let x = ramp(&[1, 1, 4, 4]);
        let sizes = Tensor::from_vec(&[4], vec![1i64, 1, 8, 8]).unwrap();
        let mut a = attrs(ResizeMode::Nearest, CoordinateTransform::HalfPixel);
        a.nearest_mode = NearestMode::Ceil;
        let got = run_resize(a.clone(), &x, None, None, Some(&sizes), &[1, 1, 8, 8]);
        let row = |r: [f64; 8]| r;
        let want: Vec<f64> = [
            row([1., 2., 2., 3., 3., 4., 4., 4.]),
            row([5., 6., 6., 7., 7., 8., 8., 8.]),
            row([5., 6., 6., 7., 7., 8., 8., 8.]),
            row([9., 10., 10., 11., 11., 12., 12., 12.]),
            row([9., 10., 10., 11., 11., 12., 12., 12.]),
            row([13., 14., 14., 15., 15., 16., 16., 16.]),
            row([13., 14., 14., 15., 15., 16., 16., 16.]),
            row([13., 14., 14., 15., 15., 16., 16., 16.]),
        ]
        .concat();
        assert_close(&got, &want, 0.0);

        a.nearest_mode = NearestMode::Floor;
        a.coordinate_transform = CoordinateTransform::AlignCorners;
        let got = run_resize(a.clone(), &x, None, None, Some(&sizes), &[1, 1, 8, 8]);
        let first_rows = [1., 1., 1., 2., 2., 3., 3., 4., 1., 1., 1., 2., 2., 3., 3., 4.];
        assert_close(&Tensor::from_vec(&[16], got.to_f64_vec()[..16].to_vec()).unwrap(), &first_rows, 0.0);

        a.nearest_mode = NearestMode::RoundPreferCeil;
        a.coordinate_transform = CoordinateTransform::Asymmetric;
        let got = run_resize(a, &x, None, None, Some(&sizes), &[1, 1, 8, 8]);
        let first_row = [1., 2., 2., 3., 3., 4., 4., 4.];
        assert_close(&Tensor::from_vec(&[8], got.to_f64_vec()[..8].to_vec()).unwrap(), &first_row, 0.0);
    }

    #[test]
    fn linear_modes() {
        let x = ramp(&[1, 1, 2, 2]);
        let scales = f32s(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let got = run_resize(
            attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 4, 4],
        );
        let want = [1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.];
        assert_close(&got, &want, 1e-6);
        let got = run_resize(
            attrs(ResizeMode::Linear, CoordinateTransform::AlignCorners),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 4, 4],
        );
        let want = [
            1., 1.33333333, 1.66666667, 2., 1.66666667, 2., 2.33333333, 2.66666667, 2.33333333, 2.66666667, 3.,
            3.33333333, 3., 3.33333333, 3.66666667, 4.,
        ];
        assert_close(&got, &want, 1e-6);

        let x = ramp(&[1, 1, 2, 4]);
        let scales = f32s(&[4], &[1.0, 1.0, 0.6, 0.6]);
        let got = run_resize(
            attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 1, 2],
        );
        assert_close(&got, &[2.6666665, 4.3333331], 1e-6);
        let got = run_resize(
            attrs(ResizeMode::Linear, CoordinateTransform::AlignCorners),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 1, 2],
        );
        assert_close(&got, &[1., 3.142857], 1e-6);

        // tf_crop_and_resize with extrapolation.
        let x = ramp(&[1, 1, 4, 4]);
        let roi = f32s(&[8], &[0., 0., 0.4, 0.6, 1., 1., 1.2, 1.7]);
        let sizes = Tensor::from_vec(&[4], vec![1i64, 1, 3, 3]).unwrap();
        let mut a = attrs(ResizeMode::Linear, CoordinateTransform::TfCropAndResize);
        a.extrapolation_value = 10.0;
        let got = run_resize(a, &x, Some(&roi), None, Some(&sizes), &[1, 1, 3, 3]);
        assert_close(&got, &[7.6000004, 10., 10., 12.400001, 10., 10., 10., 10., 10.], 1e-5);
    }

    #[test]
    fn cubic_and_antialias() {
        let x = ramp(&[1, 1, 4, 4]);
        let scales = f32s(&[4], &[1.0, 1.0, 2.0, 2.0]);
        let got = run_resize(
            attrs(ResizeMode::Cubic, CoordinateTransform::Asymmetric),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 8, 8],
        );
        let first_row = [1., 1.40625, 2., 2.5, 3., 3.59375, 4., 4.09375];
        assert_close(&Tensor::from_vec(&[8], got.to_f64_vec()[..8].to_vec()).unwrap(), &first_row, 1e-5);

        let scales = f32s(&[4], &[1.0, 1.0, 0.8, 0.8]);
        let mut a = attrs(ResizeMode::Cubic, CoordinateTransform::HalfPixel);
        a.cubic_coeff_a = -0.5;
        a.exclude_outside = true;
        let got = run_resize(a, &x, None, Some(&scales), None, &[1, 1, 3, 3]);
        let want =
            [1.36812675, 2.6695014, 4.0133367, 6.57362535, 7.875, 9.2188353, 11.94896657, 13.25034326, 14.59417661];
        assert_close(&got, &want, 1e-5);

        let scales = f32s(&[4], &[1.0, 1.0, 0.6, 0.6]);
        let mut a = attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel);
        a.antialias = true;
        let got = run_resize(a, &x, None, Some(&scales), None, &[1, 1, 2, 2]);
        assert_close(&got, &[2.875, 4.5, 9.375, 11.0], 1e-5);
        let mut a = attrs(ResizeMode::Cubic, CoordinateTransform::HalfPixel);
        a.antialias = true;
        let got = run_resize(a, &x, None, Some(&scales), None, &[1, 1, 2, 2]);
        assert_close(&got, &[2.5180721, 4.2858863, 9.589329, 11.357142], 1e-5);
    }

    #[test]
    fn axes_and_aspect_ratio() {
        let x = ramp(&[1, 1, 2, 2]);
        let sizes = Tensor::from_vec(&[2], vec![7i64, 8]).unwrap();
        let mut a = attrs(ResizeMode::Nearest, CoordinateTransform::HalfPixel);
        a.axes = Some(vec![2, 3]);
        a.keep_aspect_ratio_policy = KeepAspectRatioPolicy::NotLarger;
        let got = run_resize(a.clone(), &x, None, None, Some(&sizes), &[1, 1, 7, 7]);
        let want_row = |v: [f64; 2]| [v[0], v[0], v[0], v[0], v[1], v[1], v[1]];
        let mut want = Vec::new();
        for r in 0..7 {
            want.extend(want_row(if r < 4 { [1., 2.] } else { [3., 4.] }));
        }
        assert_close(&got, &want, 0.0);
        a.keep_aspect_ratio_policy = KeepAspectRatioPolicy::NotSmaller;
        let got = run_resize(a, &x, None, None, Some(&sizes), &[1, 1, 8, 8]);
        assert_eq!(got.shape(), &[1, 1, 8, 8]);

        let mut a = attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel);
        a.axes = Some(vec![-1]);
        let x = random(DType::F32, &[2, 3, 5], 4);
        let scales = f32s(&[1], &[2.0]);
        let got = run_resize(a.clone(), &x, None, Some(&scales), None, &[2, 3, 10]);
        a.axes = None;
        let all = f32s(&[3], &[1.0, 1.0, 2.0]);
        let want = run_resize(a, &x, None, Some(&all), None, &[2, 3, 10]);
        assert_eq!(got, want);
    }

    #[test]
    fn integer_resize_rounds_and_shape_is_checked() {
        let x = Tensor::from_vec(&[1, 1, 1, 2], vec![0u8, 255]).unwrap();
        let scales = f32s(&[4], &[1.0, 1.0, 1.0, 4.0]);
        let got = run_resize(
            attrs(ResizeMode::Linear, CoordinateTransform::AlignCorners),
            &x,
            None,
            Some(&scales),
            None,
            &[1, 1, 1, 8],
        );
        // 255·k/7, rounded half to even.
        let want: Vec<f64> = (0..8).map(|k| (255.0 * k as f64 / 7.0).round_ties_even()).collect();
        assert_close(&got, &want, 0.0);
        let op = Op::Resize(attrs(ResizeMode::Linear, CoordinateTransform::AlignCorners));
        assert!(try_run_op(&op, &[Some(&x), None, Some(&scales), None], &[(DType::U8, &[1, 1, 1, 7])]).is_err());
        assert!(try_run_op(&op, &[Some(&x), None, None, None], &[(DType::U8, &[1, 1, 1, 8])]).is_err());
    }

    #[test]
    fn depth_space_round_trip() {
        let x = ramp(&[1, 8, 2, 3]);
        // test_depthtospace_example (DCR) and test_depthtospace_crd_mode_example.
        let x2 = f32s(&[1, 8, 2, 3], &(0..48).map(|v| v as f32).collect::<Vec<_>>());
        let got =
            run_op(&Op::DepthToSpace { blocksize: 2, column_row: false }, &[Some(&x2)], &[(DType::F32, &[1, 2, 4, 6])]);
        let first = [0., 12., 1., 13., 2., 14., 24., 36., 25., 37., 26., 38.];
        assert_eq!(&got[0].to_f64_vec()[..12], &first);
        let got =
            run_op(&Op::DepthToSpace { blocksize: 2, column_row: true }, &[Some(&x2)], &[(DType::F32, &[1, 2, 4, 6])]);
        let first = [0., 6., 1., 7., 2., 8., 12., 18., 13., 19., 14., 20.];
        assert_eq!(&got[0].to_f64_vec()[..12], &first);
        // SpaceToDepth inverts DCR DepthToSpace.
        let d2s =
            run_op(&Op::DepthToSpace { blocksize: 2, column_row: false }, &[Some(&x)], &[(DType::F32, &[1, 2, 4, 6])]);
        let back = run_op(&Op::SpaceToDepth { blocksize: 2 }, &[Some(&d2s[0])], &[(DType::F32, &[1, 8, 2, 3])]);
        assert_eq!(back[0], x);
        let xi = random(DType::I64, &[2, 3, 4, 6], 9);
        let s2d = run_op(&Op::SpaceToDepth { blocksize: 2 }, &[Some(&xi)], &[(DType::I64, &[2, 12, 2, 3])]);
        let back = run_op(
            &Op::DepthToSpace { blocksize: 2, column_row: false },
            &[Some(&s2d[0])],
            &[(DType::I64, &[2, 3, 4, 6])],
        );
        assert_eq!(back[0], xi);
        assert!(try_run_op(&Op::SpaceToDepth { blocksize: 4 }, &[Some(&xi)], &[(DType::I64, &[2, 48, 1, 1])]).is_err());
    }
}
