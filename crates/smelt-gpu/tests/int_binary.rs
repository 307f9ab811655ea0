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

fn divide_ops() -> [Op; 3] {
    [Op::Binary(BinaryOp::Div), Op::Binary(BinaryOp::Mod { fmod: false }), Op::Binary(BinaryOp::Mod { fmod: true })]
}

#[test]
fn integer_div_and_mod_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(72);
    let shapes: [(&[usize], &[usize]); 3] =
        [(&[1, 7, 13, 3], &[1, 7, 13, 3]), (&[7, 1, 29], &[13, 29]), (&[7, 13], &[])];
    for dtype in [DType::I32, DType::I64] {
        for (sa, sb) in shapes {
            // `wide` never gives 0 (each branch is odd or very unlikely 0): make sure.
            let a = wide(&mut rng, dtype, sa);
            let b = wide(&mut rng, dtype, sb);
            assert!(b.to_i64_vec().iter().all(|&v| v != 0));
            for op in divide_ops() {
                check_int(&ctx, &op, &a, &b);
            }
        }
    }
    // Edge cases, every pair of them: signs, exact multiples, |a| < |b|, MIN / -1
    // (wraps to MIN), MIN % -1, values past 2^32 and 2^63 - 1.
    let edges64: Vec<i64> = vec![
        1,
        -1,
        2,
        -2,
        7,
        -7,
        3,
        -3,
        i64::MIN,
        i64::MAX,
        i64::MIN + 1,
        1 << 32,
        -(1 << 32),
        (1 << 32) + 5,
        (1 << 40) + 12345,
        -(1 << 40) - 12345,
        0x7fff_ffff,
        -0x8000_0000,
        0xffff_ffff,
        0x1_0000_0001,
        0x8000_0000_0000_0001u64 as i64,
        1 << 62,
    ];
    let edges32: Vec<i64> =
        vec![1, -1, 2, -2, 7, -7, 3, -3, i32::MIN as i64, i32::MAX as i64, i32::MIN as i64 + 1, 65536];
    for (dtype, edges) in [(DType::I64, edges64), (DType::I32, edges32)] {
        let n = edges.len();
        let make = |v: Vec<i64>, shape: &[usize]| match dtype {
            DType::I32 => Tensor::from_vec(shape, v.into_iter().map(|x| x as i32).collect::<Vec<_>>()).unwrap(),
            _ => Tensor::from_vec(shape, v).unwrap(),
        };
        let a = make(edges.clone(), &[n, 1]);
        let b = make(edges.clone(), &[1, n]);
        for op in divide_ops() {
            check_int(&ctx, &op, &a, &b);
        }
    }
}

#[test]
fn integer_division_by_zero_fails_the_run_and_the_next_run_is_clean() {
    let Some(ctx) = gpu() else { return };
    for dtype in [DType::I32, DType::I64] {
        let make = |v: &[i64], shape: &[usize]| match dtype {
            DType::I32 => Tensor::from_vec(shape, v.iter().map(|&x| x as i32).collect::<Vec<_>>()).unwrap(),
            _ => Tensor::from_vec(shape, v.to_vec()).unwrap(),
        };
        let a = make(&[5, -6, 7, 8, 9, 10], &[2, 3]);
        let zero = make(&[3, 0, -2], &[3]);
        let fine = make(&[3, 4, -2], &[3]);
        for op in divide_ops() {
            let cpu = smelt_cpu::eval_alloc(&op, &[Some(&a), Some(&zero)], 1).expect_err("the CPU fails");
            let err = smelt_gpu::exec::run_op(&ctx, &op, &[Some(&a), Some(&zero)], &[], 1)
                .expect_err("a zero divisor must fail the run");
            assert_eq!(err.to_string(), format!("{}: integer division by zero", op.name()));
            assert_eq!(err.to_string(), cpu.to_string());
            check_int(&ctx, &op, &a, &fine);
        }
    }
}
