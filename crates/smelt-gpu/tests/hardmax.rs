//! Hardmax against the CPU reference on odd shapes, every axis, both the opset 13
//! and the flattened form, f32 and f16, with ties and NaN.

mod common;

use common::{check, gpu, Rng, EXACT};
use smelt_ir::{half::f16, DType, Op, Tensor};

/// Small integers (many ties), with NaN at chosen places.
fn ties(rng: &mut Rng, dtype: DType, shape: &[usize], nans: &[usize]) -> Tensor {
    let n = smelt_ir::num_elements(shape);
    let mut v: Vec<f32> = (0..n).map(|_| rng.uniform(-3.0, 3.0).floor()).collect();
    for &i in nans {
        v[i] = f32::NAN;
    }
    match dtype {
        DType::F16 => Tensor::from_vec(shape, v.into_iter().map(f16::from_f32).collect::<Vec<_>>()).unwrap(),
        _ => Tensor::from_vec(shape, v).unwrap(),
    }
}

#[test]
fn hardmax_matches_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(91);
    let mut dtypes = vec![DType::F32];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        let x = ties(&mut rng, dtype, &[1, 7, 13, 29], &[0, 30, 31, 400]);
        for axis in [-1i64, 0, 1, 2, 3] {
            for coerce_2d in [false, true] {
                check(&ctx, &Op::Hardmax { axis, coerce_2d }, &[Some(&x)], &[], 1, EXACT);
            }
        }
        // Rows longer than a workgroup.
        let x = ties(&mut rng, dtype, &[3, 301], &[5, 301]);
        check(&ctx, &Op::Hardmax { axis: 1, coerce_2d: false }, &[Some(&x)], &[], 1, EXACT);
    }
}
