//! Matrix, convolution, pooling, normalisation, movement, gather, cast and where
//! kernels against the CPU reference on odd shapes.

mod common;

use common::{check, gpu, random, Rng, Tol, EXACT, F32_TOL};
use smelt_ir::{AutoPad, ConvAttrs, DType, Op, PoolAttrs, Tensor, UnaryOp};

/// Matrix products sum many terms: allow for f32 reassociation.
const SUM_TOL: Tol = Tol { abs: 1e-4, rel: 1e-4 };

#[test]
fn matmul_batched_broadcast_bias_activation() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(3);
    let cases: [(&[usize], &[usize]); 6] = [
        (&[7, 13], &[13, 29]),
        (&[1, 7, 13, 29], &[29, 67]),
        (&[2, 3, 7, 13], &[2, 3, 13, 5]),
        (&[3, 1, 7, 13], &[1, 2, 13, 70]),
        (&[13], &[13, 29]),
        (&[2, 7, 13], &[13]),
    ];
    for (a_shape, b_shape) in cases {
        let a = random(&mut rng, DType::F32, a_shape, -1.0, 1.0);
        let b = random(&mut rng, DType::F32, b_shape, -1.0, 1.0);
        check(&ctx, &Op::MatMul { activation: None }, &[Some(&a), Some(&b)], &[], 1, SUM_TOL);
        check(&ctx, &Op::MatMul { activation: None }, &[Some(&a), Some(&b)], &[false, true], 1, SUM_TOL);
    }
    // The fused form: bias along the last axis, then an activation.
    let a = random(&mut rng, DType::F32, &[1, 7, 13, 29], -1.0, 1.0);
    let b = random(&mut rng, DType::F32, &[29, 67], -1.0, 1.0);
    let bias = random(&mut rng, DType::F32, &[67], -1.0, 1.0);
    for act in [None, Some(UnaryOp::Relu), Some(UnaryOp::Gelu { tanh: false }), Some(UnaryOp::Tanh)] {
        check(
            &ctx,
            &Op::MatMul { activation: act },
            &[Some(&a), Some(&b), Some(&bias)],
            &[false, true, true],
            1,
            SUM_TOL,
        );
    }
}

#[test]
fn gemm_transposes_alpha_beta_c() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(4);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (m, k, n) = (7, 13, 29);
        let a = random(&mut rng, DType::F32, &if ta { [k, m] } else { [m, k] }, -1.0, 1.0);
        let b = random(&mut rng, DType::F32, &if tb { [n, k] } else { [k, n] }, -1.0, 1.0);
        for c_shape in [&[n][..], &[m, n], &[m, 1], &[]] {
            let c = random(&mut rng, DType::F32, c_shape, -1.0, 1.0);
            let op = Op::Gemm { alpha: 0.7, beta: 1.3, trans_a: ta, trans_b: tb, activation: Some(UnaryOp::Sigmoid) };
            check(&ctx, &op, &[Some(&a), Some(&b), Some(&c)], &[], 1, SUM_TOL);
        }
        let op = Op::Gemm { alpha: 1.0, beta: 1.0, trans_a: ta, trans_b: tb, activation: None };
        check(&ctx, &op, &[Some(&a), Some(&b)], &[], 1, SUM_TOL);
    }
}

fn conv_attrs(k: usize, stride: usize, pad: usize, dil: usize, group: usize, act: Option<UnaryOp>) -> ConvAttrs {
    ConvAttrs {
        kernel_shape: None,
        strides: vec![stride, stride],
        pads: vec![pad; 4],
        dilations: vec![dil, dil],
        group,
        auto_pad: AutoPad::NotSet,
        activation: act,
    }
    .with_kernel(k)
}

trait WithKernel {
    fn with_kernel(self, k: usize) -> Self;
}

impl WithKernel for ConvAttrs {
    fn with_kernel(mut self, k: usize) -> Self {
        self.kernel_shape = Some(vec![k, k]);
        self
    }
}

#[test]
fn conv2d_groups_strides_padding_dilation() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(5);
    // (N, C, H, W, Cout, k, stride, pad, dilation, group)
    let cases = [
        (1, 3, 13, 11, 7, 3, 1, 1, 1, 1),
        (2, 4, 9, 10, 6, 3, 2, 1, 1, 2),
        (1, 6, 8, 7, 6, 3, 1, 1, 1, 6),
        (1, 5, 7, 9, 67, 1, 1, 0, 1, 1),
        (1, 3, 15, 15, 4, 5, 2, 2, 2, 1),
        (1, 2, 16, 13, 3, 7, 2, 3, 1, 1),
    ];
    for (n, c, h, w, co, k, s, p, d, g) in cases {
        let x = random(&mut rng, DType::F32, &[n, c, h, w], -1.0, 1.0);
        let wt = random(&mut rng, DType::F32, &[co, c / g, k, k], -1.0, 1.0);
        let b = random(&mut rng, DType::F32, &[co], -1.0, 1.0);
        check(&ctx, &Op::Conv(conv_attrs(k, s, p, d, g, None)), &[Some(&x), Some(&wt)], &[], 1, SUM_TOL);
        let op = Op::Conv(conv_attrs(k, s, p, d, g, Some(UnaryOp::Relu)));
        check(&ctx, &op, &[Some(&x), Some(&wt), Some(&b)], &[false, true, true], 1, SUM_TOL);
    }
    // 1-D, and SAME_UPPER padding.
    let x = random(&mut rng, DType::F32, &[2, 3, 29], -1.0, 1.0);
    let wt = random(&mut rng, DType::F32, &[5, 3, 4], -1.0, 1.0);
    let attrs = ConvAttrs {
        kernel_shape: None,
        strides: vec![2],
        pads: vec![],
        dilations: vec![1],
        group: 1,
        auto_pad: AutoPad::SameUpper,
        activation: None,
    };
    check(&ctx, &Op::Conv(attrs), &[Some(&x), Some(&wt)], &[], 1, SUM_TOL);
}

#[test]
fn pooling() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(6);
    let x = random(&mut rng, DType::F32, &[1, 7, 13, 29], -3.0, 3.0);
    let attrs = |k: usize, s: usize, p: usize, ceil: bool, cip: bool| PoolAttrs {
        kernel_shape: vec![k, k],
        strides: vec![s, s],
        pads: vec![p; 4],
        dilations: vec![1, 1],
        auto_pad: AutoPad::NotSet,
        ceil_mode: ceil,
        count_include_pad: cip,
        storage_order: 0,
    };
    for (k, s, p, ceil) in [(3, 2, 1, false), (2, 2, 0, true), (3, 1, 1, false), (5, 3, 2, true)] {
        check(&ctx, &Op::MaxPool(attrs(k, s, p, ceil, false)), &[Some(&x)], &[], 1, EXACT);
        for cip in [false, true] {
            check(&ctx, &Op::AveragePool(attrs(k, s, p, ceil, cip)), &[Some(&x)], &[], 1, F32_TOL);
        }
    }
    check(&ctx, &Op::GlobalAveragePool, &[Some(&x)], &[], 1, F32_TOL);
    check(&ctx, &Op::GlobalMaxPool, &[Some(&x)], &[], 1, EXACT);
}

#[test]
fn softmax_and_layer_norm() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(7);
    let x = random(&mut rng, DType::F32, &[1, 7, 13, 29], -5.0, 5.0);
    for axis in [-1, 1, 2, 0] {
        check(&ctx, &Op::Softmax { axis, coerce_2d: false }, &[Some(&x)], &[], 1, F32_TOL);
        check(&ctx, &Op::LogSoftmax { axis, coerce_2d: false }, &[Some(&x)], &[], 1, F32_TOL);
    }
    check(&ctx, &Op::Softmax { axis: 2, coerce_2d: true }, &[Some(&x)], &[], 1, F32_TOL);
    // A row longer than the workgroup.
    let long = random(&mut rng, DType::F32, &[3, 1000], -5.0, 5.0);
    check(&ctx, &Op::Softmax { axis: -1, coerce_2d: false }, &[Some(&long)], &[], 1, F32_TOL);
    for (axis, tail) in [(-1i64, vec![29]), (2, vec![13, 29])] {
        let scale = random(&mut rng, DType::F32, &tail, 0.5, 1.5);
        let bias = random(&mut rng, DType::F32, &tail, -1.0, 1.0);
        let op = Op::LayerNormalization { axis, epsilon: 1e-5 };
        check(&ctx, &op, &[Some(&x), Some(&scale), Some(&bias)], &[false, true, true], 1, F32_TOL);
        check(&ctx, &op, &[Some(&x), Some(&scale)], &[], 1, F32_TOL);
    }
}

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_slice(shape, v).unwrap()
}

#[test]
fn movement_ops_f32_and_i64() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(8);
    for dtype in [DType::F32, DType::I64] {
        let x = random(&mut rng, dtype, &[1, 7, 13, 29], -100.0, 100.0);
        for perm in [vec![0, 2, 1, 3], vec![3, 2, 1, 0], vec![0, 1, 3, 2], vec![1, 0, 2, 3]] {
            check(&ctx, &Op::Transpose { perm: Some(perm) }, &[Some(&x)], &[], 1, EXACT);
        }
        check(&ctx, &Op::Transpose { perm: None }, &[Some(&x)], &[], 1, EXACT);
        let starts = i64s(&[2], &[1, -20]);
        let ends = i64s(&[2], &[12, 1000]);
        let axes = i64s(&[2], &[2, 3]);
        let steps = i64s(&[2], &[3, 2]);
        check(&ctx, &Op::Slice, &[Some(&x), Some(&starts), Some(&ends), Some(&axes), Some(&steps)], &[], 1, EXACT);
        let neg = i64s(&[1], &[-1]);
        let (s, e) = (i64s(&[1], &[-2]), i64s(&[1], &[-30]));
        check(&ctx, &Op::Slice, &[Some(&x), Some(&s), Some(&e), Some(&i64s(&[1], &[3])), Some(&neg)], &[], 1, EXACT);
        let y = random(&mut rng, dtype, &[1, 7, 4, 29], -100.0, 100.0);
        check(&ctx, &Op::Concat { axis: 2 }, &[Some(&x), Some(&y), Some(&x)], &[], 1, EXACT);
        let split = i64s(&[3], &[2, 10, 1]);
        check(&ctx, &Op::Split { axis: -2, num_outputs: None }, &[Some(&x), Some(&split)], &[], 3, EXACT);
        let small = random(&mut rng, dtype, &[7, 1, 29], -100.0, 100.0);
        check(&ctx, &Op::Expand, &[Some(&small), Some(&i64s(&[4], &[2, 7, 13, 1]))], &[], 1, EXACT);
    }
}

#[test]
fn gather_cast_where() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(9);
    let table = random(&mut rng, DType::F32, &[29, 13], -1.0, 1.0);
    let ids = i64s(&[2, 3], &[0, 28, -1, 5, 7, 13]);
    check(&ctx, &Op::Gather { axis: 0 }, &[Some(&table), Some(&ids)], &[true, false], 1, EXACT);
    let ids32 = Tensor::from_slice(&[4], &[3i32, 0, 12, -2]).unwrap();
    check(&ctx, &Op::Gather { axis: 1 }, &[Some(&table), Some(&ids32)], &[], 1, EXACT);
    let x = random(&mut rng, DType::I64, &[1, 7, 13, 5], -50.0, 50.0);
    check(&ctx, &Op::Gather { axis: 2 }, &[Some(&x), Some(&i64s(&[], &[4]))], &[], 1, EXACT);

    // An index out of range fails the run with the CPU's message, for both index
    // types, negative ones and an i64 beyond 2^31 (its low word is in range).
    for ids in [i64s(&[3], &[0, 13, 2]), i64s(&[3], &[1, -14, 2]), i64s(&[2], &[(1i64 << 32) + 1, 0])] {
        let err = smelt_gpu::exec::run_op(&ctx, &Op::Gather { axis: 1 }, &[Some(&table), Some(&ids)], &[], 1)
            .expect_err("out-of-range index must fail");
        assert!(err.to_string().contains("is out of range for axis 1 of size 13"), "{err}");
    }
    let ids32 = Tensor::from_slice(&[2], &[5i32, 40]).unwrap();
    let err = smelt_gpu::exec::run_op(&ctx, &Op::Gather { axis: 1 }, &[Some(&table), Some(&ids32)], &[], 1)
        .expect_err("out-of-range index must fail");
    assert_eq!(err.to_string(), "Gather: index 40 is out of range for axis 1 of size 13");

    for (from, to) in [
        (DType::I64, DType::F32),
        (DType::F32, DType::I64),
        (DType::F32, DType::I32),
        (DType::I32, DType::F32),
        (DType::Bool, DType::F32),
        (DType::I64, DType::I32),
    ] {
        let x = random(&mut rng, from, &[7, 13, 3], -100.0, 100.0);
        check(&ctx, &Op::Cast { to }, &[Some(&x)], &[], 1, EXACT);
    }

    let cond = random(&mut rng, DType::Bool, &[1, 1, 13, 29], 0.0, 1.0);
    let a = random(&mut rng, DType::F32, &[1, 7, 13, 29], -1.0, 1.0);
    let b = Tensor::from_slice(&[], &[-1e9f32]).unwrap();
    check(&ctx, &Op::Where, &[Some(&cond), Some(&a), Some(&b)], &[], 1, EXACT);
}
