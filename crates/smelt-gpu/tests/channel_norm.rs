//! BatchNormalization, InstanceNormalization, GroupNormalization and
//! LpNormalization against the CPU reference on odd shapes, in f32 and f16.

mod common;

use common::{check, gpu, random, Rng, Tol};
use smelt_ir::{DType, Op, Tensor};

/// Row statistics summed in another order than the CPU's.
const NORM_TOL: Tol = Tol { abs: 1e-4, rel: 1e-4 };
const HALF_TOL: Tol = Tol { abs: 4e-3, rel: 4e-3 };

fn dtypes(ctx: &smelt_gpu::GpuContext) -> Vec<(DType, Tol)> {
    let mut d = vec![(DType::F32, NORM_TOL)];
    if ctx.supports_f16() {
        d.push((DType::F16, HALF_TOL));
    }
    d
}

#[test]
fn batch_norm_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(41);
    for (dtype, tol) in dtypes(&ctx) {
        for shape in [&[1usize, 7, 13, 29][..], &[3, 5, 11], &[2, 9]] {
            let c = shape[1];
            let x = random(&mut rng, dtype, shape, -3.0, 3.0);
            let scale = random(&mut rng, dtype, &[c], 0.5, 1.5);
            let bias = random(&mut rng, dtype, &[c], -1.0, 1.0);
            let mean = random(&mut rng, dtype, &[c], -0.5, 0.5);
            let var = random(&mut rng, dtype, &[c], 0.25, 2.0);
            let inputs = [Some(&x), Some(&scale), Some(&bias), Some(&mean), Some(&var)];
            check(&ctx, &Op::BatchNormalization { epsilon: 1e-5 }, &inputs, &[], 1, tol);
            check(&ctx, &Op::BatchNormalization { epsilon: 0.1 }, &inputs, &[false, true, true, true, true], 1, tol);
        }
    }
}

#[test]
fn instance_and_group_norm_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(42);
    for (dtype, tol) in dtypes(&ctx) {
        // Offset inputs (mean far from zero) test the two-pass variance.
        let x = random(&mut rng, dtype, &[2, 6, 13, 29], 2.0, 5.0);
        let scale = random(&mut rng, dtype, &[6], 0.5, 1.5);
        let bias = random(&mut rng, dtype, &[6], -1.0, 1.0);
        check(&ctx, &Op::InstanceNormalization { epsilon: 1e-5 }, &[Some(&x), Some(&scale), Some(&bias)], &[], 1, tol);
        let x3 = random(&mut rng, dtype, &[3, 6, 7], -3.0, 3.0);
        check(&ctx, &Op::InstanceNormalization { epsilon: 1e-3 }, &[Some(&x3), Some(&scale), Some(&bias)], &[], 1, tol);
        for groups in [1usize, 2, 3, 6] {
            let op = Op::GroupNormalization { epsilon: 1e-5, num_groups: groups, per_channel: true };
            check(&ctx, &op, &[Some(&x), Some(&scale), Some(&bias)], &[], 1, tol);
            // Opset 18: scale and bias per group.
            let gs = random(&mut rng, dtype, &[groups], 0.5, 1.5);
            let gb = random(&mut rng, dtype, &[groups], -1.0, 1.0);
            let op = Op::GroupNormalization { epsilon: 1e-5, num_groups: groups, per_channel: false };
            check(&ctx, &op, &[Some(&x3), Some(&gs), Some(&gb)], &[], 1, tol);
        }
    }
}

#[test]
fn lp_norm_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(43);
    for (dtype, tol) in dtypes(&ctx) {
        let x = random(&mut rng, dtype, &[1, 7, 13, 29], -3.0, 3.0);
        for axis in [-1i64, 0, 1, 2, 3] {
            for p in [1, 2] {
                check(&ctx, &Op::LpNormalization { axis, p }, &[Some(&x)], &[], 1, tol);
            }
        }
    }
    // A zero row gives zeros.
    let mut v: Vec<f32> = (0..5 * 301).map(|_| rng.uniform(-1.0, 1.0)).collect();
    v[301..602].fill(0.0);
    let x = Tensor::from_vec(&[5, 301], v).unwrap();
    check(&ctx, &Op::LpNormalization { axis: 1, p: 2 }, &[Some(&x)], &[], 1, NORM_TOL);
}
