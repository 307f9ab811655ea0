//! Reduce* and ArgMax/ArgMin kernels against the CPU reference on odd shapes, in
//! f32 and f16, over every kind of axes set (trailing, middle, leading, several,
//! all, none), with and without keepdims.

mod common;

use common::{check, gpu, random, Rng, Tol, EXACT};
use smelt_ir::{half::f16, DType, Op, ReduceKind, Tensor};

/// Sums of a few thousand terms: allow for f32 reassociation.
const SUM_TOL: Tol = Tol { abs: 1e-4, rel: 1e-4 };
/// f16 outputs rounded from an f32 accumulator that summed in another order.
const HALF_TOL: Tol = Tol { abs: 4e-3, rel: 4e-3 };

const KINDS: [ReduceKind; 10] = [
    ReduceKind::Sum,
    ReduceKind::Mean,
    ReduceKind::Max,
    ReduceKind::Min,
    ReduceKind::Prod,
    ReduceKind::L1,
    ReduceKind::L2,
    ReduceKind::LogSum,
    ReduceKind::LogSumExp,
    ReduceKind::SumSquare,
];

fn axes(values: &[i64]) -> Tensor {
    Tensor::from_vec(&[values.len()], values.to_vec()).unwrap()
}

/// Inputs for `kind`: positive where a log needs a positive sum, near 1 where a
/// product must stay finite, signed otherwise; never zero.
fn input(rng: &mut Rng, dtype: DType, shape: &[usize], kind: ReduceKind) -> Tensor {
    match kind {
        ReduceKind::LogSum => random(rng, dtype, shape, 0.1, 2.0),
        ReduceKind::Prod => random(rng, dtype, shape, 0.8, 1.25),
        _ => {
            let t = random(rng, dtype, shape, 0.05, 2.0);
            // Flip the sign of every other element so sums cancel partly.
            let v: Vec<f32> = t
                .to_f64_vec()
                .iter()
                .enumerate()
                .map(|(i, &x)| if i % 3 == 1 { -x as f32 } else { x as f32 })
                .collect();
            make(dtype, shape, v)
        }
    }
}

fn make(dtype: DType, shape: &[usize], v: Vec<f32>) -> Tensor {
    match dtype {
        DType::F16 => Tensor::from_vec(shape, v.into_iter().map(f16::from_f32).collect::<Vec<_>>()).unwrap(),
        _ => Tensor::from_vec(shape, v).unwrap(),
    }
}

#[test]
fn every_reduce_kind_over_every_axes_set_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(11);
    let shape = [1, 7, 13, 29];
    let axes_sets: [&[i64]; 7] = [&[3], &[1], &[2], &[0, 2], &[1, 3], &[-1, -3], &[]];
    let mut dtypes = vec![DType::F32];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        let tol = if dtype == DType::F16 { HALF_TOL } else { SUM_TOL };
        for kind in KINDS {
            let x = input(&mut rng, dtype, &shape, kind);
            for set in axes_sets {
                // A product of thousands of terms is not a useful comparison.
                if kind == ReduceKind::Prod && set.is_empty() {
                    continue;
                }
                for keepdims in [false, true] {
                    let op = Op::Reduce { kind, keepdims, noop_with_empty_axes: false };
                    let a = axes(set);
                    check(&ctx, &op, &[Some(&x), Some(&a)], &[], 1, tol);
                }
            }
            // Absent axes reduce everything; noop_with_empty_axes keeps every element.
            if kind != ReduceKind::Prod {
                let op = Op::Reduce { kind, keepdims: false, noop_with_empty_axes: false };
                check(&ctx, &op, &[Some(&x)], &[], 1, tol);
            }
            let op = Op::Reduce { kind, keepdims: true, noop_with_empty_axes: true };
            check(&ctx, &op, &[Some(&x), Some(&axes(&[]))], &[], 1, tol);
        }
    }
}

#[test]
fn reduce_of_other_ranks_and_nan() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(12);
    // Rank 1, rank 5 with alternating kept and reduced axes, and a scalar.
    let cases: [(&[usize], &[i64]); 4] =
        [(&[301], &[0]), (&[3, 5, 2, 7, 3], &[0, 2, 4]), (&[3, 5, 2, 7, 3], &[1, 3]), (&[], &[])];
    for (shape, set) in cases {
        for kind in KINDS {
            let x = input(&mut rng, DType::F32, shape, kind);
            let op = Op::Reduce { kind, keepdims: false, noop_with_empty_axes: false };
            check(&ctx, &op, &[Some(&x), Some(&axes(set))], &[], 1, SUM_TOL);
        }
    }
    // A NaN wins Max and Min and spreads through sums.
    let mut v: Vec<f32> = (0..7 * 13).map(|_| rng.uniform(-2.0, 2.0)).collect();
    v[20] = f32::NAN;
    v[50] = f32::INFINITY;
    let x = Tensor::from_vec(&[7, 13], v).unwrap();
    for kind in KINDS {
        for set in [[0i64], [1]] {
            let op = Op::Reduce { kind, keepdims: true, noop_with_empty_axes: false };
            check(&ctx, &op, &[Some(&x), Some(&axes(&set))], &[], 1, SUM_TOL);
        }
    }
}

/// Small integers as floats, so equal values (ties) are common.
fn ties(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    make(dtype, shape, (0..n).map(|_| rng.uniform(-3.0, 3.0).floor()).collect())
}

#[test]
fn argmax_argmin_match_the_cpu_with_ties_and_nan() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(13);
    let shape = [1, 7, 13, 29];
    let mut dtypes = vec![DType::F32];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        for x in [ties(&mut rng, dtype, &shape), random(&mut rng, dtype, &shape, -3.0, 3.0)] {
            for axis in [-1i64, 0, 1, 2, 3] {
                for keepdims in [false, true] {
                    for select_last_index in [false, true] {
                        let max = Op::ArgMax { axis, keepdims, select_last_index };
                        let min = Op::ArgMin { axis, keepdims, select_last_index };
                        check(&ctx, &max, &[Some(&x)], &[], 1, EXACT);
                        check(&ctx, &min, &[Some(&x)], &[], 1, EXACT);
                    }
                }
            }
        }
    }
    // A long axis (more elements than threads per output) with NaNs.
    let mut v: Vec<f32> = (0..3 * 301).map(|_| rng.uniform(-3.0, 3.0).floor()).collect();
    v[100] = f32::NAN;
    v[250] = f32::NAN;
    v[301 + 7] = f32::NAN;
    let x = Tensor::from_vec(&[3, 301], v).unwrap();
    for select_last_index in [false, true] {
        for axis in [0, 1] {
            check(&ctx, &Op::ArgMax { axis, keepdims: true, select_last_index }, &[Some(&x)], &[], 1, EXACT);
            check(&ctx, &Op::ArgMin { axis, keepdims: false, select_last_index }, &[Some(&x)], &[], 1, EXACT);
        }
    }
}
