//! LpPool against the CPU reference: p = 1, 2, 3, 4; 1-D, 2-D and 3-D; strides,
//! pads, dilations, ceil_mode and every auto_pad; f32 and f16; and the fallback
//! and error cases.

mod common;

use common::{check, gpu, random, record_error, Rng, Tol, F16_TOL, F32_TOL};
use smelt_ir::{AutoPad, DType, Op, PoolAttrs};

fn attrs(kernel: &[usize], strides: &[usize], pads: &[usize], dilations: &[usize]) -> PoolAttrs {
    PoolAttrs {
        kernel_shape: kernel.to_vec(),
        strides: strides.to_vec(),
        pads: pads.to_vec(),
        dilations: dilations.to_vec(),
        auto_pad: AutoPad::NotSet,
        ceil_mode: false,
        count_include_pad: false,
        storage_order: 0,
    }
}

#[test]
fn lp_pool_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(21);
    let mut dtypes = vec![(DType::F32, F32_TOL)];
    if ctx.supports_f16() {
        dtypes.push((DType::F16, Tol { abs: F16_TOL.abs, rel: 1e-2 }));
    }
    let cases: Vec<(&[usize], PoolAttrs)> = vec![
        (&[2, 3, 29], attrs(&[3], &[2], &[1, 1], &[])),
        (&[2, 3, 29], PoolAttrs { ceil_mode: true, ..attrs(&[4], &[3], &[0, 2], &[2]) }),
        (&[1, 3, 7, 13], attrs(&[2, 2], &[], &[], &[])),
        (&[1, 3, 7, 13], attrs(&[3, 2], &[2, 3], &[1, 0, 1, 1], &[1, 2])),
        (&[1, 3, 7, 13], PoolAttrs { ceil_mode: true, ..attrs(&[3, 3], &[2, 2], &[], &[]) }),
        (&[1, 3, 7, 13], PoolAttrs { auto_pad: AutoPad::SameUpper, ..attrs(&[3, 4], &[2, 3], &[], &[]) }),
        (&[1, 3, 7, 13], PoolAttrs { auto_pad: AutoPad::SameLower, ..attrs(&[3, 4], &[2, 3], &[], &[]) }),
        (&[1, 3, 7, 13], PoolAttrs { auto_pad: AutoPad::Valid, ..attrs(&[2, 5], &[1, 2], &[], &[]) }),
        (&[1, 2, 5, 6, 7], attrs(&[2, 3, 2], &[1, 2, 2], &[0, 1, 1, 1, 0, 1], &[2, 1, 1])),
    ];
    for (dtype, tol) in dtypes {
        for (shape, a) in &cases {
            let x = random(&mut rng, dtype, shape, -3.0, 3.0);
            for p in [1, 2, 3, 4] {
                check(&ctx, &Op::LpPool { attrs: a.clone(), p }, &[Some(&x)], &[], 1, tol);
            }
        }
    }
}

#[test]
fn lp_pool_refuses_what_it_cannot_run() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(22);
    // Four spatial dims: no GPU kernel.
    let x = random(&mut rng, DType::F32, &[1, 1, 2, 2, 2, 2], -1.0, 1.0);
    let op = Op::LpPool { attrs: attrs(&[1, 1, 1, 1], &[], &[], &[]), p: 2 };
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &[Some(&x)], &[], 1).unwrap().is_none());
    // p = 0 is an error, not a panic.
    let x = random(&mut rng, DType::F32, &[1, 1, 4, 4], -1.0, 1.0);
    let op = Op::LpPool { attrs: attrs(&[2, 2], &[], &[], &[]), p: 0 };
    assert!(smelt_gpu::exec::run_op(&ctx, &op, &[Some(&x)], &[], 1).is_err());
}

#[test]
fn the_kernel_names_what_it_cannot_record() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(23);
    let x = random(&mut rng, DType::F32, &[1, 2, 5, 5], -1.0, 1.0);
    let e = record_error(
        &ctx,
        &Op::LpPool { attrs: attrs(&[2, 2], &[], &[], &[]), p: 0 },
        &[Some(&x)],
        (DType::F32, &[1, 2, 4, 4]),
    );
    assert!(e.contains("lp_pool") && e.contains("p must be >= 1"), "{e}");
    let e = record_error(
        &ctx,
        &Op::LpPool { attrs: attrs(&[2], &[], &[], &[]), p: 2 },
        &[Some(&x)],
        (DType::F32, &[1, 2, 4, 4]),
    );
    assert!(e.contains("kernel_shape [2]"), "{e}");
    let e = record_error(
        &ctx,
        &Op::LpPool { attrs: attrs(&[2, 2], &[1], &[], &[]), p: 2 },
        &[Some(&x)],
        (DType::F32, &[1, 2, 4, 4]),
    );
    assert!(e.contains("strides [1]"), "{e}");
}
