//! Comparisons, logical ops, Not, IsNaN and IsInf (bool outputs) against the CPU
//! reference on odd shapes (element counts not a multiple of four, so the last
//! output word is partial), with broadcasting, ties, NaN and infinities.

mod common;

use common::{check, gpu, random, Rng, EXACT};
use smelt_ir::{half::f16, BinaryOp, DType, Op, Tensor, UnaryOp};

const COMPARISONS: [BinaryOp; 5] =
    [BinaryOp::Equal, BinaryOp::Less, BinaryOp::LessOrEqual, BinaryOp::Greater, BinaryOp::GreaterOrEqual];

/// Values from a few small integers (many ties), with NaN and infinities mixed in
/// for float types.
fn values(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let v: Vec<f32> = (0..n)
        .map(|i| match (dtype, i % 17) {
            (DType::F32 | DType::F16, 5) => f32::NAN,
            (DType::F32 | DType::F16, 11) => f32::INFINITY,
            (DType::F32 | DType::F16, 13) => f32::NEG_INFINITY,
            _ => rng.uniform(-3.0, 3.0).floor() * 0.5,
        })
        .collect();
    match dtype {
        DType::F32 => Tensor::from_vec(shape, v).unwrap(),
        DType::F16 => Tensor::from_vec(shape, v.into_iter().map(f16::from_f32).collect::<Vec<_>>()).unwrap(),
        DType::I32 => Tensor::from_vec(shape, v.into_iter().map(|x| (x * 2.0) as i32).collect::<Vec<_>>()).unwrap(),
        // Values past 32 bits, of both signs, so the high words decide.
        DType::I64 => Tensor::from_vec(
            shape,
            v.into_iter().map(|x| (x * 2.0) as i64 * 0x1_0000_0001 + (i64::from(x > 0.0) << 31)).collect::<Vec<_>>(),
        )
        .unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn comparisons_match_the_cpu_for_every_type_and_broadcast() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(21);
    let shapes: [(&[usize], &[usize]); 4] =
        [(&[1, 7, 13, 29], &[1, 7, 13, 29]), (&[7, 1, 29], &[13, 29]), (&[7, 13, 5], &[]), (&[13, 1], &[3, 1, 7])];
    let mut dtypes = vec![DType::F32, DType::I32, DType::I64];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        for (sa, sb) in shapes {
            let a = values(&mut rng, dtype, sa);
            let b = values(&mut rng, dtype, sb);
            for op in COMPARISONS {
                check(&ctx, &Op::Binary(op), &[Some(&a), Some(&b)], &[], 1, EXACT);
            }
        }
    }
}

#[test]
fn logical_ops_and_not_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(22);
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[1, 7, 13, 29], &[1, 7, 13, 29]), (&[7, 1, 29], &[13, 29]), (&[7, 13], &[])];
    for (sa, sb) in shapes {
        let a = random(&mut rng, DType::Bool, sa, 0.0, 1.0);
        let b = random(&mut rng, DType::Bool, sb, 0.0, 1.0);
        for op in [BinaryOp::And, BinaryOp::Or, BinaryOp::Xor, BinaryOp::Equal] {
            check(&ctx, &Op::Binary(op), &[Some(&a), Some(&b)], &[], 1, EXACT);
        }
        check(&ctx, &Op::Unary(UnaryOp::Not), &[Some(&a)], &[], 1, EXACT);
    }
}

#[test]
fn isnan_isinf_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(23);
    let mut dtypes = vec![DType::F32];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        for shape in [&[1usize, 7, 13, 29][..], &[3, 5], &[1]] {
            let x = values(&mut rng, dtype, shape);
            check(&ctx, &Op::Unary(UnaryOp::IsNaN), &[Some(&x)], &[], 1, EXACT);
            for detect_positive in [false, true] {
                for detect_negative in [false, true] {
                    let op = Op::Unary(UnaryOp::IsInf { detect_positive, detect_negative });
                    check(&ctx, &op, &[Some(&x)], &[], 1, EXACT);
                }
            }
        }
    }
}
