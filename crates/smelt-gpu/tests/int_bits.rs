//! Integer Neg, Abs, Sign, BitwiseNot, Relu on every integer width and BitShift on
//! unsigned types against the CPU reference: odd element counts (the last packed
//! word is partial, and the bytes after it must survive), the most negative values (wrapping), shift amounts at and
//! past the width, and broadcasting.

mod arena;
mod common;

use arena::check_in_arena;
use common::{gpu, Rng};
use smelt_gpu::GpuContext;
use smelt_ir::{BinaryOp, DType, Op, Tensor, UnaryOp};

/// Non-zero values of `dtype` over its whole range, plus its extremes.
fn ints(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let v: Vec<i64> = (0..n)
        .map(|i| match i % 7 {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => (rng.below(9) as i64 - 4) | 1,
            _ => (rng.next_u64() as i64) | 1,
        })
        .collect();
    macro_rules! t {
        ($t:ty) => {
            Tensor::from_vec(
                shape,
                v.iter()
                    .map(|&x| {
                        if x == i64::MIN {
                            <$t>::MIN
                        } else if x == i64::MAX {
                            <$t>::MAX
                        } else {
                            x as $t
                        }
                    })
                    .collect::<Vec<$t>>(),
            )
            .unwrap()
        };
    }
    match dtype {
        DType::I8 => t!(i8),
        DType::I16 => t!(i16),
        DType::I32 => t!(i32),
        DType::I64 => t!(i64),
        DType::U8 => t!(u8),
        DType::U16 => t!(u16),
        DType::U32 => t!(u32),
        DType::U64 => t!(u64),
        other => panic!("ints() does not make {other}"),
    }
}

/// Shift amounts: mostly below the width, some at it and past it.
fn amounts(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let bits = dtype.size() as u64 * 8;
    let n = smelt_ir::num_elements(shape);
    let v: Vec<u64> = (0..n).map(|i| if i % 5 == 0 { bits + rng.below(3) } else { rng.below(bits) }).collect();
    match dtype {
        DType::U8 => Tensor::from_vec(shape, v.iter().map(|&x| x as u8).collect::<Vec<_>>()).unwrap(),
        DType::U16 => Tensor::from_vec(shape, v.iter().map(|&x| x as u16).collect::<Vec<_>>()).unwrap(),
        DType::U32 => Tensor::from_vec(shape, v.iter().map(|&x| x as u32).collect::<Vec<_>>()).unwrap(),
        _ => Tensor::from_vec(shape, v).unwrap(),
    }
}

/// Runs `op` on both sides: the bytes must match, and nothing past the packed
/// output may change (see arena/mod.rs).
fn check_bytes(ctx: &GpuContext, op: &Op, inputs: &[&Tensor]) {
    let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    check_in_arena(ctx, op, &inputs, &[], 1);
}

const INTS: [DType; 8] = [DType::I8, DType::I16, DType::I32, DType::I64, DType::U8, DType::U16, DType::U32, DType::U64];

#[test]
fn integer_unary_ops_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(17);
    for dtype in INTS {
        for shape in [&[1usize, 7, 13, 29][..], &[3, 5, 7], &[1], &[2, 3]] {
            let x = ints(&mut rng, dtype, shape);
            for op in [UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign, UnaryOp::BitwiseNot, UnaryOp::Relu] {
                check_bytes(&ctx, &Op::Unary(op), &[&x]);
            }
        }
    }
}

#[test]
fn bit_shift_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(23);
    let shapes: [(&[usize], &[usize]); 4] =
        [(&[1, 7, 13, 29], &[1, 7, 13, 29]), (&[7, 1, 29], &[13, 29]), (&[3, 5, 7], &[]), (&[5], &[3, 1])];
    for dtype in [DType::U8, DType::U16, DType::U32, DType::U64] {
        for (sa, sb) in shapes {
            let x = ints(&mut rng, dtype, sa);
            let s = amounts(&mut rng, dtype, sb);
            for op in [BinaryOp::BitShiftLeft, BinaryOp::BitShiftRight] {
                check_bytes(&ctx, &Op::Binary(op), &[&x, &s]);
            }
        }
    }
}
