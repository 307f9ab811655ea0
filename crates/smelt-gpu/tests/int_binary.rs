//! Integer Add, Sub, Mul, bitwise ops and Max/Min on i32 and i64 against the CPU
//! reference on odd shapes with broadcasting, including values that overflow
//! (wrapping) and cross the 32-bit word of i64.

mod common;

use common::{check, gpu, Rng, EXACT};
use smelt_gpu::GpuContext;
use smelt_ir::{BinaryOp, DType, Op, Tensor, VariadicOp};

fn ops() -> Vec<Op> {
    let mut ops: Vec<Op> =
        [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::BitwiseAnd, BinaryOp::BitwiseOr, BinaryOp::BitwiseXor]
            .into_iter()
            .map(Op::Binary)
            .collect();
    ops.push(Op::Variadic(VariadicOp::Max));
    ops.push(Op::Variadic(VariadicOp::Min));
    ops
}

/// Wide-ranging non-zero values of both signs.
fn wide(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let v: Vec<i64> = (0..n)
        .map(|_| {
            let r = rng.next_u64() as i64;
            match rng.below(3) {
                0 => (r % 7) | 1,
                1 => r >> 20,
                _ => r,
            }
        })
        .collect();
    match dtype {
        DType::I32 => Tensor::from_vec(shape, v.into_iter().map(|x| x as i32).collect::<Vec<_>>()).unwrap(),
        _ => Tensor::from_vec(shape, v).unwrap(),
    }
}

/// `check`, plus a comparison of the integers themselves: `check` compares as f64,
/// which cannot tell i64 values apart past 2^53.
fn check_int(ctx: &GpuContext, op: &Op, a: &Tensor, b: &Tensor) {
    check(ctx, op, &[Some(a), Some(b)], &[], 1, EXACT);
    let want = smelt_cpu::eval_alloc(op, &[Some(a), Some(b)], 1).unwrap();
    let got = smelt_gpu::exec::run_op(ctx, op, &[Some(a), Some(b)], &[], 1).unwrap().unwrap();
    assert_eq!(got[0].to_i64_vec(), want[0].to_i64_vec(), "{op:?} on {:?} and {:?}", a.shape(), b.shape());
}

#[test]
fn integer_binary_ops_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(71);
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[1, 7, 13, 29], &[1, 7, 13, 29]), (&[7, 1, 29], &[13, 29]), (&[7, 13], &[])];
    for dtype in [DType::I32, DType::I64] {
        for (sa, sb) in shapes {
            let a = wide(&mut rng, dtype, sa);
            let b = wide(&mut rng, dtype, sb);
            for op in ops() {
                check_int(&ctx, &op, &a, &b);
            }
        }
    }
}
