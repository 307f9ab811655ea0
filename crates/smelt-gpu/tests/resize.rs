//! Resize against the CPU reference: every mode, nearest_mode, coordinate
//! transform, cubic coefficient and exclude_outside, antialias, scales and
//! sizes (with keep_aspect_ratio_policy and axes), tf_crop_and_resize with roi
//! and extrapolation, ranks 1 to 5, f32, f16, and nearest on 1-, 2-, 4- and 8-byte types; and
//! the error and fallback cases.

mod common;

use common::{check, gpu, random, record_error, Rng, Tol, EXACT, F16_TOL, F32_TOL};
use smelt_ir::half::bf16;
use smelt_ir::{CoordinateTransform, DType, KeepAspectRatioPolicy, NearestMode, Op, ResizeAttrs, ResizeMode, Tensor};

const TRANSFORMS: [CoordinateTransform; 6] = [
    CoordinateTransform::HalfPixel,
    CoordinateTransform::HalfPixelSymmetric,
    CoordinateTransform::PytorchHalfPixel,
    CoordinateTransform::AlignCorners,
    CoordinateTransform::Asymmetric,
    CoordinateTransform::TfCropAndResize,
];

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

fn scales(v: &[f32]) -> Tensor {
    Tensor::from_slice(&[v.len()], v).unwrap()
}

fn sizes(v: &[i64]) -> Tensor {
    Tensor::from_slice(&[v.len()], v).unwrap()
}

fn dtypes(ctx: &smelt_gpu::GpuContext) -> Vec<(DType, Tol)> {
    let mut d = vec![(DType::F32, F32_TOL)];
    if ctx.supports_f16() {
        d.push((DType::F16, F16_TOL));
    }
    d
}

/// Runs one Resize with scales (or sizes) on x, and with roi when the transform
/// is tf_crop_and_resize.
fn run(ctx: &smelt_gpu::GpuContext, a: &ResizeAttrs, x: &Tensor, sc: Option<&Tensor>, sz: Option<&Tensor>, tol: Tol) {
    let rank = a.axes.as_ref().map_or(x.rank(), |v| v.len());
    let roi = (a.coordinate_transform == CoordinateTransform::TfCropAndResize).then(|| {
        // Starts inside, ends past the input on some dims: exercises extrapolation.
        let mut v: Vec<f32> = (0..rank).map(|d| [0.0, 0.1, -0.2, 0.3, 0.05][d % 5]).collect();
        v.extend((0..rank).map(|d| [1.0, 0.9, 1.25, 0.8, 1.1][d % 5]));
        Tensor::from_slice(&[2 * rank], &v).unwrap()
    });
    check(ctx, &Op::Resize(a.clone()), &[Some(x), roi.as_ref(), sc, sz], &[], 1, tol);
}

#[test]
fn nearest_every_mode_and_transform() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(1);
    for (dtype, _) in dtypes(&ctx) {
        let x = random(&mut rng, dtype, &[1, 3, 7, 13], -3.0, 3.0);
        for ct in TRANSFORMS {
            for nm in
                [NearestMode::RoundPreferFloor, NearestMode::RoundPreferCeil, NearestMode::Floor, NearestMode::Ceil]
            {
                let mut a = attrs(ResizeMode::Nearest, ct);
                a.nearest_mode = nm;
                a.extrapolation_value = -7.5;
                run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 1.7, 2.3])), None, EXACT);
                run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 0.6, 0.45])), None, EXACT);
                run(&ctx, &a, &x, None, Some(&sizes(&[1, 3, 5, 29])), EXACT);
            }
        }
    }
}

#[test]
fn linear_and_cubic_every_transform() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(2);
    for (dtype, tol) in dtypes(&ctx) {
        let x = random(&mut rng, dtype, &[1, 2, 7, 13], -3.0, 3.0);
        for ct in TRANSFORMS {
            let mut a = attrs(ResizeMode::Linear, ct);
            a.extrapolation_value = 2.5;
            run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 1.7, 2.3])), None, tol);
            run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 0.6, 0.45])), None, tol);
            run(&ctx, &a, &x, None, Some(&sizes(&[1, 2, 1, 29])), tol);
            for (coeff, exclude) in [(-0.75, false), (-0.5, true), (-0.5, false), (-0.75, true)] {
                let mut a = attrs(ResizeMode::Cubic, ct);
                a.cubic_coeff_a = coeff;
                a.exclude_outside = exclude;
                a.extrapolation_value = -1.0;
                run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 1.7, 2.3])), None, tol);
                run(&ctx, &a, &x, None, Some(&sizes(&[1, 2, 4, 6])), tol);
            }
        }
    }
}

#[test]
fn antialias_downscales() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(3);
    for (dtype, tol) in dtypes(&ctx) {
        let x = random(&mut rng, dtype, &[2, 3, 11, 29], -3.0, 3.0);
        for mode in [ResizeMode::Linear, ResizeMode::Cubic] {
            for ct in
                [CoordinateTransform::HalfPixel, CoordinateTransform::AlignCorners, CoordinateTransform::Asymmetric]
            {
                let mut a = attrs(mode, ct);
                a.antialias = true;
                run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 0.6, 0.3])), None, tol);
                a.exclude_outside = true;
                run(&ctx, &a, &x, None, Some(&sizes(&[2, 3, 4, 7])), tol);
                // Upscaling with antialias is plain interpolation.
                run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 1.5, 1.0])), None, tol);
            }
        }
    }
}

#[test]
fn axes_aspect_ratio_and_other_ranks() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(4);
    let x = random(&mut rng, DType::F32, &[1, 2, 7, 13], -3.0, 3.0);
    for policy in [KeepAspectRatioPolicy::Stretch, KeepAspectRatioPolicy::NotLarger, KeepAspectRatioPolicy::NotSmaller]
    {
        for mode in [ResizeMode::Nearest, ResizeMode::Linear, ResizeMode::Cubic] {
            let mut a = attrs(mode, CoordinateTransform::HalfPixel);
            a.axes = Some(vec![2, -1]);
            a.keep_aspect_ratio_policy = policy;
            run(&ctx, &a, &x, None, Some(&sizes(&[10, 9])), F32_TOL);
        }
    }
    // Axes in another order, with tf_crop_and_resize's roi per listed axis.
    let mut a = attrs(ResizeMode::Linear, CoordinateTransform::TfCropAndResize);
    a.axes = Some(vec![3, 1]);
    a.extrapolation_value = 4.0;
    run(&ctx, &a, &x, Some(&scales(&[1.4, 2.0])), None, F32_TOL);

    // Rank 1, 2, 3 and 5, every dim resized (batch and channel dims too).
    for (shape, s) in [
        (&[13][..], &[2.3f32][..]),
        (&[7, 5], &[1.5, 0.7]),
        (&[2, 3, 29], &[1.0, 1.0, 0.55]),
        (&[2, 3, 5, 3, 4], &[1.5, 1.0, 1.6, 2.0, 0.75]),
    ] {
        let x = random(&mut rng, DType::F32, shape, -3.0, 3.0);
        for mode in [ResizeMode::Nearest, ResizeMode::Linear, ResizeMode::Cubic] {
            for ct in [CoordinateTransform::HalfPixel, CoordinateTransform::TfCropAndResize] {
                run(&ctx, &attrs(mode, ct), &x, Some(&scales(s)), None, F32_TOL);
            }
        }
    }
}

#[test]
fn nearest_on_integer_and_wide_types() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(5);
    for dtype in [DType::I32, DType::I64] {
        let x = random(&mut rng, dtype, &[2, 3, 5, 7], -1000.0, 1000.0);
        for ct in TRANSFORMS {
            let mut a = attrs(ResizeMode::Nearest, ct);
            a.nearest_mode = NearestMode::RoundPreferCeil;
            a.extrapolation_value = -3.7;
            run(&ctx, &a, &x, Some(&scales(&[1.0, 1.0, 2.2, 0.6])), None, EXACT);
        }
    }
    // 1- and 2-byte types, packed in words: odd sizes leave partial last words.
    let n = 2 * 3 * 5 * 7;
    let shape = [2, 3, 5, 7];
    let packed = [
        Tensor::from_vec(&shape, (0..n).map(|i| (i * 37 % 251) as u8).collect::<Vec<_>>()).unwrap(),
        Tensor::from_vec(&shape, (0..n).map(|i| (i * 37 % 251) as i8).collect::<Vec<_>>()).unwrap(),
        Tensor::from_vec(&shape, (0..n).map(|i| (i * 7919 % 65521) as i16).collect::<Vec<_>>()).unwrap(),
        Tensor::from_vec(&shape, (0..n).map(|i| (i * 7919 % 65521) as u16).collect::<Vec<_>>()).unwrap(),
        Tensor::from_vec(&shape, (0..n).map(|i| bf16::from_f32(i as f32 * 0.37 - 20.0)).collect::<Vec<_>>()).unwrap(),
        random(&mut rng, DType::Bool, &shape, 0.0, 1.0),
        random(&mut rng, DType::F16, &shape, -3.0, 3.0),
    ];
    for x in &packed {
        for ct in TRANSFORMS {
            let mut a = attrs(ResizeMode::Nearest, ct);
            a.nearest_mode = NearestMode::Floor;
            a.extrapolation_value = 3.0;
            run(&ctx, &a, x, Some(&scales(&[1.0, 1.0, 2.2, 0.6])), None, EXACT);
            run(&ctx, &a, x, None, Some(&sizes(&[1, 3, 3, 11])), EXACT);
        }
    }
    let v: Vec<f64> = (0..35).map(|i| i as f64 * 1.000000001 - 17.0).collect();
    let x = Tensor::from_vec(&[1, 1, 5, 7], v).unwrap();
    let mut a = attrs(ResizeMode::Nearest, CoordinateTransform::TfCropAndResize);
    a.extrapolation_value = 0.1;
    run(&ctx, &a, &x, None, Some(&sizes(&[1, 1, 9, 4])), EXACT);
}

#[test]
fn unsupported_shapes_and_bad_inputs_are_refused_cleanly() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(6);
    let op = Op::Resize(attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel));
    // Rank 9 is past the kernel's limit: no GPU kernel, the CPU runs it.
    let x9 = random(&mut rng, DType::F32, &[1; 9], -1.0, 1.0);
    let s9 = scales(&[1.0; 9]);
    let got = smelt_gpu::exec::run_op(&ctx, &op, &[Some(&x9), None, Some(&s9), None], &[], 1).unwrap();
    assert!(got.is_none(), "a rank-9 resize should fall back to the CPU");
    // Integer linear interpolation rounds on the CPU.
    let xi = random(&mut rng, DType::I32, &[1, 1, 3, 3], -9.0, 9.0);
    let s4 = scales(&[1.0, 1.0, 2.0, 2.0]);
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &[Some(&xi), None, Some(&s4), None], &[], 1).unwrap().is_none());
    // Scales and sizes together, or neither: an error, not a panic.
    let x = random(&mut rng, DType::F32, &[1, 1, 3, 3], -1.0, 1.0);
    let both = [Some(&x), None, Some(&s4), Some(&sizes(&[1, 1, 6, 6]))];
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &both, &[], 1).is_err());
    let neither = [Some(&x), None, None, None];
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &neither, &[], 1).is_err());
    // Scales of the wrong length.
    let short = [Some(&x), None, Some(&scales(&[2.0, 2.0])), None];
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &short, &[], 1).is_err());
}

#[test]
fn the_kernel_names_what_it_cannot_record() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(7);
    let x = random(&mut rng, DType::F32, &[1, 1, 3, 3], -1.0, 1.0);
    let op = Op::Resize(attrs(ResizeMode::Linear, CoordinateTransform::HalfPixel));
    let s = scales(&[1.0, 1.0, 2.0, 2.0]);
    // An output that the scales do not give.
    let e = record_error(&ctx, &op, &[Some(&x), None, Some(&s), None], (DType::F32, &[1, 1, 5, 6]));
    assert!(e.contains("resize") && e.contains("[1, 1, 5, 6]") && e.contains("[1, 1, 6, 6]"), "{e}");
    let e =
        record_error(&ctx, &op, &[Some(&x), None, Some(&s), Some(&sizes(&[1, 1, 6, 6]))], (DType::F32, &[1, 1, 6, 6]));
    assert!(e.contains("only one of scales and sizes"), "{e}");
    let e = record_error(&ctx, &op, &[Some(&x), None, None, None], (DType::F32, &[1, 1, 6, 6]));
    assert!(e.contains("one of scales and sizes is required"), "{e}");
    let e = record_error(
        &ctx,
        &op,
        &[Some(&x), None, Some(&scales(&[1.0, -2.0, 1.0, 1.0])), None],
        (DType::F32, &[1, 1, 3, 3]),
    );
    assert!(e.contains("not positive"), "{e}");
    let mut bad_axes = attrs(ResizeMode::Nearest, CoordinateTransform::HalfPixel);
    bad_axes.axes = Some(vec![2, 2]);
    let e = record_error(
        &ctx,
        &Op::Resize(bad_axes),
        &[Some(&x), None, Some(&scales(&[2.0, 2.0])), None],
        (DType::F32, &[1, 1, 6, 3]),
    );
    assert!(e.contains("axes"), "{e}");
}
