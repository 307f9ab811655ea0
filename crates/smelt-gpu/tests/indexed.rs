//! GatherElements, GatherND, ScatterElements and ScatterND against the CPU
//! reference: every axis, batch_dims and reduction, f32/i32/i64 data, i32/i64
//! indices (negative ones included, duplicates for the scatters), odd shapes; and
//! an index out of range failing the run with the CPU's message, the next run
//! being clean.

mod common;

use common::{check, gpu, random, Rng, EXACT};
use smelt_gpu::GpuContext;
use smelt_ir::{DType, Op, ScatterReduction, Tensor};

const DTYPES: [DType; 3] = [DType::F32, DType::I32, DType::I64];
const REDUCTIONS: [ScatterReduction; 5] = [
    ScatterReduction::None,
    ScatterReduction::Add,
    ScatterReduction::Mul,
    ScatterReduction::Max,
    ScatterReduction::Min,
];

/// Random data with no zeros (a zero hides a wrong Mul or a missing write).
fn data(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let t = random(rng, dtype, shape, -9.0, 9.0);
    match dtype {
        DType::F32 => {
            Tensor::from_vec(shape, t.to_f64_vec().iter().map(|&v| if v == 0.0 { 1.5 } else { v as f32 }).collect())
                .unwrap()
        }
        DType::I32 => Tensor::from_vec(
            shape,
            t.to_i64_vec().iter().map(|&v| if v == 0 { 7 } else { v as i32 }).collect::<Vec<_>>(),
        )
        .unwrap(),
        _ => Tensor::from_vec(shape, t.to_i64_vec().iter().map(|&v| if v == 0 { -5 } else { v }).collect()).unwrap(),
    }
}

/// Indices of `shape`; entry j in [-sizes[j % len], sizes[j % len]) so every
/// component of an ND tuple stays in range of its own axis.
fn indices(rng: &mut Rng, shape: &[usize], sizes: &[usize], i64s: bool) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let v: Vec<i64> = (0..n)
        .map(|j| {
            let s = sizes[j % sizes.len()] as u64;
            rng.below(2 * s) as i64 - s as i64
        })
        .collect();
    ints(shape, v, i64s)
}

fn ints(shape: &[usize], v: Vec<i64>, i64s: bool) -> Tensor {
    if i64s {
        Tensor::from_vec(shape, v).unwrap()
    } else {
        Tensor::from_vec(shape, v.into_iter().map(|x| x as i32).collect::<Vec<_>>()).unwrap()
    }
}

/// `check`, plus an exact integer comparison (`check` compares as f64).
fn check_exact(ctx: &GpuContext, op: &Op, inputs: &[&Tensor]) {
    let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    check(ctx, op, &inputs, &[], 1, EXACT);
    if inputs[0].unwrap().dtype() == DType::I64 {
        let want = smelt_cpu::eval_alloc(op, &inputs, 1).unwrap();
        let got = smelt_gpu::exec::run_op(ctx, op, &inputs, &[], 1).unwrap().unwrap();
        assert_eq!(got[0].to_i64_vec(), want[0].to_i64_vec(), "{op:?}");
    }
}

/// Runs `op` on the GPU expecting the CPU's error, word for word.
fn check_fails(ctx: &GpuContext, op: &Op, inputs: &[&Tensor], message: &str) {
    let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|&t| Some(t)).collect();
    let cpu = smelt_cpu::eval_alloc(op, &inputs, 1).expect_err("the CPU fails");
    assert_eq!(cpu.to_string(), message);
    let gpu = smelt_gpu::exec::run_op(ctx, op, &inputs, &[], 1).expect_err("an index out of range must fail the run");
    assert_eq!(gpu.to_string(), message);
}

#[test]
fn gather_elements_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(31);
    let shape = [5, 7, 3];
    for dtype in DTYPES {
        let x = data(&mut rng, dtype, &shape);
        for axis in [-3i64, -2, -1, 0, 1, 2] {
            let a = axis.rem_euclid(3) as usize;
            // Off the axis no larger than the data; along it any length.
            let mut ishape = vec![4, 6, 2];
            ishape[a] = 9;
            for i64s in [false, true] {
                let idx = indices(&mut rng, &ishape, &[shape[a]], i64s);
                check_exact(&ctx, &Op::GatherElements { axis }, &[&x, &idx]);
            }
        }
    }
    let x = data(&mut rng, DType::F32, &shape);
    let mut v = vec![0i64; 5 * 3 * 3];
    v[17] = 3;
    check_fails(
        &ctx,
        &Op::GatherElements { axis: 2 },
        &[&x, &ints(&[5, 3, 3], v.clone(), true)],
        "GatherElements: index 3 is out of range for axis 2 of size 3",
    );
    v[17] = -4;
    check_fails(
        &ctx,
        &Op::GatherElements { axis: -1 },
        &[&x, &ints(&[5, 3, 3], v.clone(), false)],
        "GatherElements: index -4 is out of range for axis 2 of size 3",
    );
    // The status is clear for the next run.
    v[17] = -3;
    check_exact(&ctx, &Op::GatherElements { axis: 2 }, &[&x, &ints(&[5, 3, 3], v, false)]);
}

#[test]
fn gather_nd_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(32);
    let shape = [3, 5, 7];
    // (batch_dims, indices shape): k = 1, 2, 3 without batch dims, 1 and 2 with one.
    let cases: [(usize, &[usize]); 6] =
        [(0, &[4, 1]), (0, &[2, 3, 2]), (0, &[5, 3]), (1, &[3, 4, 1]), (1, &[3, 2, 2]), (2, &[3, 5, 1])];
    for dtype in DTYPES {
        let x = data(&mut rng, dtype, &shape);
        for (batch_dims, ishape) in cases {
            for i64s in [false, true] {
                let idx = indices(&mut rng, ishape, &shape[batch_dims..batch_dims + ishape[ishape.len() - 1]], i64s);
                check_exact(&ctx, &Op::GatherND { batch_dims }, &[&x, &idx]);
            }
        }
    }
    let x = data(&mut rng, DType::I64, &shape);
    let op = Op::GatherND { batch_dims: 1 };
    let bad = ints(&[3, 2, 2], vec![0, 1, 2, 6, -5, 0, 1, -8, 4, 6, 2, 2], true);
    check_fails(&ctx, &op, &[&x, &bad], "GatherND: index -8 is out of range for axis 2 of size 7");
    let bad = ints(&[3, 2, 2], vec![0, 1, 2, 6, 5, 0, 1, -1, 4, 6, 2, 2], false);
    check_fails(&ctx, &op, &[&x, &bad], "GatherND: index 5 is out of range for axis 1 of size 5");
    let fine = ints(&[3, 2, 2], vec![0, 1, 2, 6, -5, 0, 1, -7, 4, 6, 2, 2], false);
    check_exact(&ctx, &op, &[&x, &fine]);
}

#[test]
fn scatter_elements_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(33);
    let shape = [5, 7, 3];
    for dtype in DTYPES {
        let x = data(&mut rng, dtype, &shape);
        for axis in [-3i64, -1, 0, 1, 2] {
            let a = axis.rem_euclid(3) as usize;
            // More updates along the axis than it has places: duplicates.
            let mut ishape = vec![4, 6, 2];
            ishape[a] = 9;
            let updates = data(&mut rng, dtype, &ishape);
            for i64s in [false, true] {
                let idx = indices(&mut rng, &ishape, &[shape[a]], i64s);
                for reduction in REDUCTIONS {
                    check_exact(&ctx, &Op::ScatterElements { axis, reduction }, &[&x, &idx, &updates]);
                }
            }
        }
    }
    let x = data(&mut rng, DType::F32, &shape);
    let updates = data(&mut rng, DType::F32, &[2, 2, 2]);
    let op = Op::ScatterElements { axis: 1, reduction: ScatterReduction::Add };
    let bad = ints(&[2, 2, 2], vec![0, 1, 6, -7, 7, 0, 1, 2], false);
    check_fails(&ctx, &op, &[&x, &bad, &updates], "ScatterElements: index 7 is out of range for axis 1 of size 7");
    let bad = ints(&[2, 2, 2], vec![0, 1, 6, -8, 1, 0, 1, 2], true);
    check_fails(&ctx, &op, &[&x, &bad, &updates], "ScatterElements: index -8 is out of range for axis 1 of size 7");
    let fine = ints(&[2, 2, 2], vec![0, 1, 6, -7, 1, 0, 1, 2], true);
    check_exact(&ctx, &op, &[&x, &fine, &updates]);
}

#[test]
fn scatter_nd_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(34);
    let shape = [5, 6, 3];
    // Indices shapes for k = 1, 2, 3, with more tuples than places (duplicates).
    let cases: [&[usize]; 4] = [&[7, 1], &[2, 9, 2], &[40, 3], &[1]];
    for dtype in DTYPES {
        let x = data(&mut rng, dtype, &shape);
        for ishape in cases {
            let q = ishape.len();
            let k = ishape[q - 1];
            let ushape: Vec<usize> = ishape[..q - 1].iter().chain(&shape[k..]).copied().collect();
            let updates = data(&mut rng, dtype, &ushape);
            for i64s in [false, true] {
                let idx = indices(&mut rng, ishape, &shape[..k], i64s);
                for reduction in REDUCTIONS {
                    check_exact(&ctx, &Op::ScatterND { reduction }, &[&x, &idx, &updates]);
                }
            }
        }
    }
    let x = data(&mut rng, DType::I32, &shape);
    let updates = data(&mut rng, DType::I32, &[3, 3]);
    // Both paths: with a reduction (every output scans the tuples) and without
    // (the tuples mark the last writer of each slice).
    for reduction in [ScatterReduction::Mul, ScatterReduction::None] {
        let op = Op::ScatterND { reduction };
        let bad = ints(&[3, 2], vec![0, 1, 4, 6, -5, 0], true);
        check_fails(&ctx, &op, &[&x, &bad, &updates], "ScatterND: index 6 is out of range for axis 1 of size 6");
        let bad = ints(&[3, 2], vec![0, 1, -6, 5, -5, 0], false);
        check_fails(&ctx, &op, &[&x, &bad, &updates], "ScatterND: index -6 is out of range for axis 0 of size 5");
        // Duplicates: tuples 0 and 2 both name [0, 1]; the last one wins.
        let fine = ints(&[3, 2], vec![0, 1, 4, 5, -5, -5], false);
        check_exact(&ctx, &op, &[&x, &fine, &updates]);
    }
}
