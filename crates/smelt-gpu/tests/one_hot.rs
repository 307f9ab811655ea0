//! OneHot against the CPU reference: every axis, i32/i64/f32 indices with negative
//! and out-of-range ones (all-off rows), f32/i32/i64 values, odd shapes.

mod common;

use common::{check, gpu, Rng, EXACT};
use smelt_ir::{DType, Op, Tensor};

#[test]
fn one_hot_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(41);
    let depth = 7i64;
    let shape = [3, 5, 2];
    // Indices in [-9, 9): in range, negative, and out of range on both sides.
    let raw: Vec<i64> = (0..30).map(|_| rng.below(18) as i64 - 9).collect();
    assert!(raw.iter().any(|&v| v >= depth) && raw.iter().any(|&v| v < -depth));
    let idx_i64 = Tensor::from_slice(&shape, &raw).unwrap();
    let idx_i32 = Tensor::from_vec(&shape, raw.iter().map(|&v| v as i32).collect::<Vec<_>>()).unwrap();
    let idx_f32 = Tensor::from_vec(&shape, raw.iter().map(|&v| v as f32 + 0.5).collect::<Vec<_>>()).unwrap();
    // An i64 beyond 2^32 whose low word is in range must not hit.
    let mut far = raw.clone();
    far[4] = (1 << 32) + 2;
    far[5] = -(1 << 32) + 3;
    let idx_far = Tensor::from_slice(&shape, &far).unwrap();
    let values = [
        Tensor::from_slice(&[2], &[-0.5f32, 3.25]).unwrap(),
        Tensor::from_slice(&[2], &[4i32, -9]).unwrap(),
        Tensor::from_slice(&[2], &[-3i64, (1 << 40) + 7]).unwrap(),
    ];
    for v in &values {
        for idx in [&idx_i64, &idx_i32, &idx_f32, &idx_far] {
            for axis in [-4i64, -3, -2, -1, 0, 1, 2, 3] {
                for d in [Tensor::scalar(depth), Tensor::from_slice(&[1], &[depth as i32]).unwrap()] {
                    check(&ctx, &Op::OneHot { axis }, &[Some(idx), Some(&d), Some(v)], &[], 1, EXACT);
                }
            }
        }
        // Exact i64 values (check compares as f64).
        let d = Tensor::scalar(depth);
        let inputs = [Some(&idx_far), Some(&d), Some(v)];
        let want = smelt_cpu::eval_alloc(&Op::OneHot { axis: 1 }, &inputs, 1).unwrap();
        let got = smelt_gpu::exec::run_op(&ctx, &Op::OneHot { axis: 1 }, &inputs, &[], 1).unwrap().unwrap();
        assert_eq!(got[0].to_i64_vec(), want[0].to_i64_vec());
        assert_eq!(got[0].dtype(), v.dtype());
    }
    assert_eq!(values[0].dtype(), DType::F32);
}
