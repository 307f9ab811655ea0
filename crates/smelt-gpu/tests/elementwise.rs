//! Elementwise kernels against the CPU reference on odd shapes.

mod common;

use common::{check, gpu, random, Rng, Tol, EXACT, F16_TOL, F32_TOL};
use smelt_ir::{BinaryOp, DType, Op, Tensor, UnaryOp, VariadicOp};

fn unary_ops() -> Vec<(UnaryOp, f32, f32)> {
    use UnaryOp::*;
    vec![
        (Relu, -3.0, 3.0),
        (LeakyRelu { alpha: 0.1 }, -3.0, 3.0),
        (Elu { alpha: 0.7 }, -3.0, 3.0),
        (Selu { alpha: 1.67, gamma: 1.05 }, -3.0, 3.0),
        (Celu { alpha: 0.8 }, -3.0, 3.0),
        (ThresholdedRelu { alpha: 0.5 }, -3.0, 3.0),
        (Gelu { tanh: false }, -4.0, 4.0),
        (Gelu { tanh: true }, -4.0, 4.0),
        (HardSigmoid { alpha: 0.2, beta: 0.5 }, -4.0, 4.0),
        (HardSwish, -4.0, 4.0),
        (Softplus, -4.0, 4.0),
        (Softsign, -4.0, 4.0),
        (Mish, -4.0, 4.0),
        (Clip { min: -0.5, max: 0.7 }, -2.0, 2.0),
        (Sigmoid, -6.0, 6.0),
        (Tanh, -6.0, 6.0),
        (Abs, -3.0, 3.0),
        (Neg, -3.0, 3.0),
        (Sqrt, 0.01, 9.0),
        (Reciprocal, 0.5, 4.0),
        (Exp, -4.0, 4.0),
        (Log, 0.01, 9.0),
        (Erf, -3.0, 3.0),
        (Sign, -3.0, 3.0),
        (Floor, -3.0, 3.0),
        (Ceil, -3.0, 3.0),
        (Round, -3.0, 3.0),
        (Sin, -3.0, 3.0),
        (Cos, -3.0, 3.0),
        (Tan, -1.2, 1.2),
        (Asin, -0.99, 0.99),
        (Acos, -0.99, 0.99),
        (Atan, -3.0, 3.0),
        (Sinh, -3.0, 3.0),
        (Cosh, -3.0, 3.0),
        (Asinh, -3.0, 3.0),
        (Acosh, 1.01, 5.0),
        (Atanh, -0.95, 0.95),
    ]
}

#[test]
fn unary_f32_and_f16() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(1);
    for (op, lo, hi) in unary_ops() {
        let x = random(&mut rng, DType::F32, &[1, 7, 13, 29], lo, hi);
        // Inverse trigonometry is the driver's own (lavapipe's asin/acos are good
        // to about 4e-4); everything else must match closely.
        let tol = if matches!(op, UnaryOp::Asin | UnaryOp::Acos) { Tol { abs: 1e-3, rel: 1e-3 } } else { F32_TOL };
        check(&ctx, &Op::Unary(op.clone()), &[Some(&x)], &[], 1, tol);
        if ctx.supports_f16() {
            let x = random(&mut rng, DType::F16, &[3, 5, 7], lo, hi);
            check(&ctx, &Op::Unary(op.clone()), &[Some(&x)], &[], 1, F16_TOL);
        }
    }
}

#[test]
fn binary_with_broadcasting() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(2);
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[1, 7, 13, 29], &[1, 7, 13, 29]),
        (&[1, 7, 13, 29], &[29]),
        (&[7, 1, 29], &[1, 7, 13, 1]),
        (&[], &[5, 3]),
        (&[2, 1, 3, 1, 5, 1, 7], &[1, 4, 1, 6, 1, 2, 1]),
        (&[0, 3], &[1, 3]),
    ];
    let ops = [
        (BinaryOp::Add, 0.0),
        (BinaryOp::Sub, 0.0),
        (BinaryOp::Mul, 0.0),
        (BinaryOp::Div, 0.5),
        (BinaryOp::Pow, 0.0),
        (BinaryOp::Mod { fmod: true }, 0.5),
        (BinaryOp::Mod { fmod: false }, 0.5),
        (BinaryOp::PRelu, 0.0),
    ];
    for (a_shape, b_shape) in shapes {
        for (op, min_b) in ops {
            // PRelu's slope broadcasts one way only: into x.
            if op == BinaryOp::PRelu && smelt_gpu::ops::broadcast::broadcast_strides(b_shape, a_shape).is_none() {
                continue;
            }
            let a = random(&mut rng, DType::F32, a_shape, -3.0, 3.0);
            // Divisors away from zero; exponents small integers and fractions.
            let mut b = random(&mut rng, DType::F32, b_shape, -3.0, 3.0);
            if min_b > 0.0 || op == BinaryOp::Pow {
                let v: Vec<f32> = b
                    .as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .map(|&v| {
                        if op == BinaryOp::Pow {
                            v.round()
                        } else if v.abs() < min_b {
                            v.signum() * min_b + v
                        } else {
                            v
                        }
                    })
                    .collect();
                b = smelt_ir::Tensor::from_vec(b_shape, v).unwrap();
            }
            check(&ctx, &Op::Binary(op), &[Some(&a), Some(&b)], &[], 1, F32_TOL);
        }
        let a = random(&mut rng, DType::F32, a_shape, -3.0, 3.0);
        let b = random(&mut rng, DType::F32, b_shape, -3.0, 3.0);
        check(&ctx, &Op::Variadic(VariadicOp::Max), &[Some(&a), Some(&b)], &[], 1, F32_TOL);
        check(&ctx, &Op::Variadic(VariadicOp::Min), &[Some(&b), Some(&a)], &[], 1, F32_TOL);
        if ctx.supports_f16() {
            let a = random(&mut rng, DType::F16, a_shape, -3.0, 3.0);
            let b = random(&mut rng, DType::F16, b_shape, -3.0, 3.0);
            check(&ctx, &Op::Binary(BinaryOp::Mul), &[Some(&a), Some(&b)], &[], 1, F16_TOL);
            check(&ctx, &Op::Binary(BinaryOp::Add), &[Some(&a), Some(&b)], &[], 1, F16_TOL);
        }
    }
}

/// Tiny results must be right relatively, not just within F32_TOL's absolute
/// 1e-5: softplus(-10) is 4.5e-5, and `log(1 + e^x)` got it 0.1% wrong (ONNX's
/// Mish cases failed by that on the GPU only).
#[test]
fn softplus_and_mish_of_very_negative_inputs() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    let relative = Tol { abs: 0.0, rel: 1e-4 };
    for op in [UnaryOp::Softplus, UnaryOp::Mish] {
        let x = random(&mut rng, DType::F32, &[3, 37], -17.0, -5.0);
        check(&ctx, &Op::Unary(op), &[Some(&x)], &[], 1, relative);
    }
    // ... and Tanh of the tiny values Softplus gives there (Mish's expanded form).
    let x = random(&mut rng, DType::F32, &[3, 37], -1e-3, 1e-3);
    check(&ctx, &Op::Unary(UnaryOp::Tanh), &[Some(&x)], &[], 1, relative);
}

/// Mod by an infinite divisor: fmod(x, inf) is x, and Python's % moves it to the
/// divisor's side (x - inf * trunc(x / inf) gave NaN).
#[test]
fn mod_by_infinity_and_zero() {
    let Some(ctx) = gpu() else { return };
    let (inf, nan) = (f32::INFINITY, f32::NAN);
    let x = Tensor::from_vec(&[10], vec![-3.0f32, 3.0, -1.0, 1.0, inf, -inf, 1.0, 1.0, nan, 5.5]).unwrap();
    let y = Tensor::from_vec(&[10], vec![inf, inf, -inf, -inf, 2.0, 2.0, 0.0, -0.0, 2.0, -3.0]).unwrap();
    for fmod in [true, false] {
        check(&ctx, &Op::Binary(BinaryOp::Mod { fmod }), &[Some(&x), Some(&y)], &[], 1, EXACT);
    }
}
