//! ConvTranspose against the CPU reference: 1-D, 2-D and 3-D, groups (and
//! depthwise), strides, dilations, pads, output_padding, output_shape, every
//! auto_pad, with and without bias, a fused activation, f32 and f16; and the
//! error and fallback cases.

mod common;

use common::{check, gpu, random, record_error, Rng, Tol, F16_TOL, F32_TOL};
use smelt_ir::{AutoPad, ConvAttrs, ConvTransposeAttrs, DType, Op, UnaryOp};

struct Case {
    x: &'static [usize],
    w: &'static [usize],
    group: usize,
    strides: &'static [usize],
    pads: &'static [usize],
    dilations: &'static [usize],
    output_padding: &'static [usize],
    output_shape: Option<&'static [usize]>,
    auto_pad: AutoPad,
}

const fn case(x: &'static [usize], w: &'static [usize], group: usize) -> Case {
    Case {
        x,
        w,
        group,
        strides: &[],
        pads: &[],
        dilations: &[],
        output_padding: &[],
        output_shape: None,
        auto_pad: AutoPad::NotSet,
    }
}

fn op(c: &Case, activation: Option<UnaryOp>) -> Op {
    Op::ConvTranspose(ConvTransposeAttrs {
        conv: ConvAttrs {
            kernel_shape: None,
            strides: c.strides.to_vec(),
            pads: c.pads.to_vec(),
            dilations: c.dilations.to_vec(),
            group: c.group,
            auto_pad: c.auto_pad,
            activation,
        },
        output_padding: c.output_padding.to_vec(),
        output_shape: c.output_shape.map(|s| s.to_vec()),
    })
}

fn cases() -> Vec<Case> {
    vec![
        // 1-D: stride, dilation, asymmetric pads, output_padding, two groups.
        Case { strides: &[2], pads: &[1, 0], dilations: &[2], output_padding: &[1], ..case(&[2, 4, 7], &[4, 3, 3], 2) },
        case(&[1, 3, 13], &[3, 5, 4], 1),
        // 2-D.
        case(&[1, 3, 5, 7], &[3, 2, 3, 3], 1),
        Case {
            strides: &[2, 3],
            pads: &[1, 0, 0, 2],
            dilations: &[1, 2],
            output_padding: &[1, 0],
            ..case(&[2, 6, 5, 7], &[6, 2, 3, 2], 3)
        },
        // Depthwise.
        Case { strides: &[2, 2], pads: &[1, 1, 1, 1], ..case(&[1, 4, 7, 5], &[4, 1, 3, 3], 4) },
        // Every auto_pad.
        Case { strides: &[2, 3], auto_pad: AutoPad::SameUpper, ..case(&[1, 2, 5, 7], &[2, 3, 3, 4], 1) },
        Case { strides: &[2, 3], auto_pad: AutoPad::SameLower, ..case(&[1, 2, 5, 7], &[2, 3, 3, 4], 1) },
        Case { strides: &[2, 1], auto_pad: AutoPad::Valid, ..case(&[1, 2, 5, 7], &[2, 3, 3, 4], 1) },
        // output_shape, smaller and larger than the full result (negative pads).
        Case { strides: &[2, 2], output_shape: Some(&[10, 12]), ..case(&[1, 2, 5, 6], &[2, 3, 3, 3], 1) },
        Case { strides: &[2, 2], output_shape: Some(&[1, 3, 13, 14]), ..case(&[1, 2, 5, 6], &[2, 3, 3, 3], 1) },
        Case {
            strides: &[3, 2],
            output_shape: Some(&[16, 13]),
            auto_pad: AutoPad::SameLower,
            ..case(&[1, 2, 5, 6], &[2, 3, 3, 3], 1)
        },
        // 3-D.
        Case {
            strides: &[1, 2, 2],
            pads: &[0, 1, 0, 1, 0, 1],
            dilations: &[2, 1, 1],
            ..case(&[1, 2, 3, 4, 5], &[2, 3, 2, 3, 2], 1)
        },
        Case { strides: &[2, 1, 2], output_padding: &[1, 0, 1], ..case(&[2, 4, 3, 3, 2], &[4, 1, 2, 2, 3], 2) },
    ]
}

fn dtypes(ctx: &smelt_gpu::GpuContext) -> Vec<(DType, Tol)> {
    let mut d = vec![(DType::F32, F32_TOL)];
    if ctx.supports_f16() {
        d.push((DType::F16, F16_TOL));
    }
    d
}

#[test]
fn conv_transpose_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    for (dtype, tol) in dtypes(&ctx) {
        // f16 sums of many products: allow for the rounding of the inputs' products.
        let tol = if dtype == DType::F16 { Tol { abs: 1e-2, rel: 1e-2 } } else { tol };
        for c in cases() {
            let x = random(&mut rng, dtype, c.x, -2.0, 2.0);
            let w = random(&mut rng, dtype, c.w, -1.0, 1.0);
            let co = c.w[1] * c.group;
            let b = random(&mut rng, dtype, &[co], -1.0, 1.0);
            check(&ctx, &op(&c, None), &[Some(&x), Some(&w)], &[], 1, tol);
            check(&ctx, &op(&c, None), &[Some(&x), Some(&w), Some(&b)], &[false, true, true], 1, tol);
            check(&ctx, &op(&c, Some(UnaryOp::LeakyRelu { alpha: 0.1 })), &[Some(&x), Some(&w), Some(&b)], &[], 1, tol);
        }
    }
}

#[test]
fn conv_transpose_refuses_what_it_cannot_run() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(12);
    // Four spatial dims: no GPU kernel (the CPU runs it).
    let c = case(&[1, 1, 2, 2, 2, 2], &[1, 1, 2, 2, 2, 2], 1);
    let x = random(&mut rng, DType::F32, c.x, -1.0, 1.0);
    let w = random(&mut rng, DType::F32, c.w, -1.0, 1.0);
    assert!(smelt_gpu::exec::run_op(&ctx, &op(&c, None), &[Some(&x), Some(&w)], &[], 1).unwrap().is_none());
    // A bias of the wrong length is an error, not a panic.
    let c = case(&[1, 2, 3, 3], &[2, 3, 2, 2], 1);
    let x = random(&mut rng, DType::F32, c.x, -1.0, 1.0);
    let w = random(&mut rng, DType::F32, c.w, -1.0, 1.0);
    let b = random(&mut rng, DType::F32, &[2], -1.0, 1.0);
    let got = smelt_gpu::exec::run_op(&ctx, &op(&c, None), &[Some(&x), Some(&w), Some(&b)], &[], 1);
    assert!(got.is_err(), "a 2-element bias for 3 channels must fail");
    // Channels that do not divide into groups.
    let c = case(&[1, 3, 3, 3], &[3, 1, 2, 2], 2);
    let x = random(&mut rng, DType::F32, c.x, -1.0, 1.0);
    let w = random(&mut rng, DType::F32, c.w, -1.0, 1.0);
    assert!(smelt_gpu::exec::run_op(&ctx, &op(&c, None), &[Some(&x), Some(&w)], &[], 1).is_err());
}

#[test]
fn the_kernel_names_what_it_cannot_record() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(13);
    let c = Case { strides: &[2, 2], ..case(&[1, 2, 3, 3], &[2, 3, 2, 2], 1) };
    let x = random(&mut rng, DType::F32, c.x, -1.0, 1.0);
    let w = random(&mut rng, DType::F32, c.w, -1.0, 1.0);
    // The full output is [1, 3, 6, 6].
    let e = record_error(&ctx, &op(&c, None), &[Some(&x), Some(&w)], (DType::F32, &[1, 3, 6, 7]));
    assert!(e.contains("conv_transpose") && e.contains("[1, 3, 6, 6]"), "{e}");
    let b = random(&mut rng, DType::F32, &[2], -1.0, 1.0);
    let e = record_error(&ctx, &op(&c, None), &[Some(&x), Some(&w), Some(&b)], (DType::F32, &[1, 3, 6, 6]));
    assert!(e.contains("B has 2 elements for 3 output channels"), "{e}");
    let bad = Case { strides: &[2, 2, 2], ..case(&[1, 2, 3, 3], &[2, 3, 2, 2], 1) };
    let e = record_error(&ctx, &op(&bad, None), &[Some(&x), Some(&w)], (DType::F32, &[1, 3, 6, 6]));
    assert!(e.contains("strides has 3 values for 2 spatial dims"), "{e}");
    let w3 = random(&mut rng, DType::F32, &[2, 3, 2], -1.0, 1.0);
    let e = record_error(&ctx, &op(&c, None), &[Some(&x), Some(&w3)], (DType::F32, &[1, 3, 6, 6]));
    assert!(e.contains("the same for both"), "{e}");
}
