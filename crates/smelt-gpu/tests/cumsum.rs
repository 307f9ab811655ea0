//! CumSum against the CPU reference on odd shapes along every axis, exclusive and
//! reverse, for f32, i32 and i64 (i64 values past 32 bits, so carries matter).

mod common;

use common::{check, gpu, random, Rng, Tol};
use smelt_ir::{DType, Op, Tensor};

/// The GPU sums in the CPU's order; allow for fused multiply-add differences only.
const SCAN_TOL: Tol = Tol { abs: 1e-5, rel: 1e-5 };

#[test]
fn cumsum_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(81);
    let shape = [1, 7, 13, 29];
    for dtype in [DType::F32, DType::I32, DType::I64] {
        let x = random(&mut rng, dtype, &shape, -50.0, 50.0);
        let x = if dtype == DType::I64 {
            let v: Vec<i64> = x.to_i64_vec().into_iter().map(|v| v * 0x3_0000_0001 + 0x8000_0000).collect();
            Tensor::from_vec(&shape, v).unwrap()
        } else {
            x
        };
        for axis in [-1i64, 0, 1, 2, 3] {
            let a = Tensor::from_vec(&[], vec![axis]).unwrap();
            for exclusive in [false, true] {
                for reverse in [false, true] {
                    let op = Op::CumSum { exclusive, reverse };
                    check(&ctx, &op, &[Some(&x), Some(&a)], &[], 1, SCAN_TOL);
                    if dtype == DType::I64 {
                        let want = smelt_cpu::eval_alloc(&op, &[Some(&x), Some(&a)], 1).unwrap();
                        let got = smelt_gpu::exec::run_op(&ctx, &op, &[Some(&x), Some(&a)], &[], 1).unwrap().unwrap();
                        assert_eq!(got[0].to_i64_vec(), want[0].to_i64_vec(), "{op:?} axis {axis}");
                    }
                }
            }
        }
    }
}
