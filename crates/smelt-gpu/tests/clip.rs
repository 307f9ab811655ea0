//! Clip with bounds as inputs against the CPU reference: f32 and f16, odd shapes,
//! each bound absent or present, crossed bounds, and NaN inputs.

mod common;

use common::{check, gpu, random, Rng, EXACT};
use smelt_ir::{half::f16, DType, Op, Tensor};

fn scalar(dtype: DType, v: f32) -> Tensor {
    match dtype {
        DType::F16 => Tensor::from_vec(&[], vec![f16::from_f32(v)]).unwrap(),
        _ => Tensor::from_vec(&[], vec![v]).unwrap(),
    }
}

#[test]
fn clip_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(31);
    let mut dtypes = vec![DType::F32];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        let x = random(&mut rng, dtype, &[1, 7, 13, 29], -3.0, 3.0);
        let (lo, hi) = (scalar(dtype, -0.75), scalar(dtype, 1.25));
        let crossed = scalar(dtype, -2.0);
        let cases: [(Option<&Tensor>, Option<&Tensor>); 5] =
            [(Some(&lo), Some(&hi)), (Some(&lo), None), (None, Some(&hi)), (Some(&hi), Some(&crossed)), (None, None)];
        for (min, max) in cases {
            check(&ctx, &Op::Clip, &[Some(&x), min, max], &[], 1, EXACT);
            check(&ctx, &Op::Clip, &[Some(&x), min, max], &[false, true, true], 1, EXACT);
        }
    }
    let mut v: Vec<f32> = (0..3 * 5).map(|_| rng.uniform(-3.0, 3.0)).collect();
    v[4] = f32::NAN;
    v[7] = f32::INFINITY;
    let x = Tensor::from_vec(&[3, 5], v).unwrap();
    check(&ctx, &Op::Clip, &[Some(&x), Some(&scalar(DType::F32, -1.0)), Some(&scalar(DType::F32, 1.0))], &[], 1, EXACT);
}
