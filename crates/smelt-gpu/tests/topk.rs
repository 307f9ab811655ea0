//! TopK against the CPU reference: every axis of odd shapes, largest and
//! smallest, k from 1 to the full axis, axes longer than a workgroup and than
//! the shared-memory sort (the rank pass takes those), many ties
//! (equal values must come out in index order), NaN and signed zeros, for f32,
//! f16, i32 and i64.

mod arena;
mod common;

use common::{check, gpu, random, Rng, EXACT};
use smelt_gpu::GpuContext;
use smelt_ir::{half::f16, DType, Op, Tensor};

/// Runs TopK on both sides and compares values and indices exactly (the values
/// as bits through `check`'s f64 comparison, the indices as integers).
fn check_topk(ctx: &GpuContext, x: &Tensor, k: usize, axis: i64, largest: bool) {
    let op = Op::TopK { axis, largest, sorted: true };
    let kt = Tensor::from_vec(&[1], vec![k as i64]).unwrap();
    check(ctx, &op, &[Some(x), Some(&kt)], &[false, true], 2, EXACT);
    let want = smelt_cpu::eval_alloc(&op, &[Some(x), Some(&kt)], 2).unwrap();
    let got = smelt_gpu::exec::run_op(ctx, &op, &[Some(x), Some(&kt)], &[false, true], 2).unwrap().unwrap();
    assert_eq!(got[1].to_i64_vec(), want[1].to_i64_vec(), "indices of {op:?} k={k} on {:?}", x.shape());
    assert_eq!(got[0].bytes(), want[0].bytes(), "value bits of {op:?} k={k} on {:?}", x.shape());
}

/// Small integers (many ties), as `dtype`.
fn tied(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let v: Vec<i64> = (0..n).map(|_| rng.below(9) as i64 - 4).collect();
    match dtype {
        DType::F32 => Tensor::from_vec(shape, v.iter().map(|&x| x as f32 * 0.5).collect::<Vec<_>>()).unwrap(),
        DType::F16 => {
            Tensor::from_vec(shape, v.iter().map(|&x| f16::from_f32(x as f32 * 0.5)).collect::<Vec<_>>()).unwrap()
        }
        DType::I32 => Tensor::from_vec(shape, v.iter().map(|&x| x as i32).collect::<Vec<_>>()).unwrap(),
        // Values that differ in the high word and in the low word.
        _ => Tensor::from_vec(shape, v.iter().map(|&x| (x << 33) + (x % 3) * 0x7fff_ffff).collect::<Vec<_>>()).unwrap(),
    }
}

const DTYPES: [DType; 4] = [DType::F32, DType::F16, DType::I32, DType::I64];

#[test]
fn topk_matches_the_cpu_on_every_axis() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(5);
    let shape = [1, 7, 13, 29];
    for dtype in DTYPES {
        let x = random(&mut rng, dtype, &shape, -100.0, 100.0);
        let t = tied(&mut rng, dtype, &shape);
        for axis in 0..4i64 {
            let n = shape[axis as usize];
            for k in [1, n / 2 + 1, n] {
                for largest in [true, false] {
                    check_topk(&ctx, &x, k, axis, largest);
                    check_topk(&ctx, &t, k, axis - 4, largest);
                }
            }
        }
    }
}

#[test]
fn topk_rows_longer_than_a_workgroup() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(9);
    for dtype in DTYPES {
        let x = tied(&mut rng, dtype, &[3, 601]);
        for k in [1, 2, 255, 257, 601] {
            check_topk(&ctx, &x, k, 1, true);
            check_topk(&ctx, &x, k, -1, false);
        }
        // Around the shared-memory sort's limit (1024): longer rows take the
        // rank pass.
        for n in [1024, 1025, 1500] {
            let x = tied(&mut rng, dtype, &[2, n]);
            for k in [1, 300, n] {
                check_topk(&ctx, &x, k, 1, true);
                check_topk(&ctx, &x, k, 1, false);
            }
        }
        let x = tied(&mut rng, dtype, &[1100, 3]);
        check_topk(&ctx, &x, 7, 0, true);
        // An odd count of f16 values: the last output word is half full.
        let x = random(&mut rng, dtype, &[3, 5, 7], -10.0, 10.0);
        check_topk(&ctx, &x, 3, 1, true);
        check_topk(&ctx, &x, 0, 1, true);
    }
}

#[test]
fn topk_orders_nan_first_and_zeros_as_equal() {
    let Some(ctx) = gpu() else { return };
    let v = [1.0f32, f32::NAN, -0.0, 0.0, f32::NEG_INFINITY, f32::NAN, 2.0, -0.0, f32::INFINITY, -3.0, 0.0];
    let x = Tensor::from_vec(&[1, 11], v.to_vec()).unwrap();
    let h = Tensor::from_vec(&[1, 11], v.iter().map(|&a| f16::from_f32(a)).collect::<Vec<_>>()).unwrap();
    for t in [&x, &h] {
        for k in [1, 3, 6, 11] {
            check_topk(&ctx, t, k, 1, true);
            check_topk(&ctx, t, k, 1, false);
        }
    }
}

#[test]
fn topk_keeps_the_bytes_after_an_odd_f16_output() {
    // 63 f16 values: the last word of the values output is half full, and the
    // half after it belongs to no tensor; nothing outside the outputs may change.
    let Some(ctx) = gpu() else { return };
    let x = random(&mut Rng::new(13), DType::F16, &[3, 5, 7], -10.0, 10.0);
    let k = Tensor::from_vec(&[1], vec![3i64]).unwrap();
    for largest in [true, false] {
        let op = Op::TopK { axis: 1, largest, sorted: true };
        arena::check_in_arena(&ctx, &op, &[Some(&x), Some(&k)], &[], 2);
    }
}
