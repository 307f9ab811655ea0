//! Sum, Mean, Max and Min of 1, 2 and 3+ inputs with broadcasting against the CPU
//! reference on odd shapes (Max/Min also in f16, and with NaN).

mod common;

use common::{check, gpu, random, Rng, EXACT, F32_TOL};
use smelt_ir::{DType, Op, Tensor, VariadicOp};

const OPS: [VariadicOp; 4] = [VariadicOp::Sum, VariadicOp::Mean, VariadicOp::Max, VariadicOp::Min];

#[test]
fn variadic_ops_match_the_cpu() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng::new(61);
    let shapes: [&[usize]; 4] = [&[1, 7, 13, 29], &[13, 1], &[29], &[7, 1, 1]];
    let mut dtypes = vec![DType::F32];
    if ctx.supports_f16() {
        dtypes.push(DType::F16);
    }
    for dtype in dtypes {
        let xs: Vec<Tensor> = shapes.iter().map(|s| random(&mut rng, dtype, s, -3.0, 3.0)).collect();
        for op in OPS {
            // f16 Sum/Mean run on the CPU.
            if dtype == DType::F16 && matches!(op, VariadicOp::Sum | VariadicOp::Mean) {
                continue;
            }
            let tol = if matches!(op, VariadicOp::Max | VariadicOp::Min) { EXACT } else { F32_TOL };
            for count in [1usize, 2, 3, 4] {
                let inputs: Vec<Option<&Tensor>> = xs.iter().take(count).map(Some).collect();
                check(&ctx, &Op::Variadic(op), &inputs, &[], 1, tol);
            }
        }
    }
    // NaN wins Max and Min wherever it is.
    let mut v: Vec<f32> = (0..7 * 13).map(|_| rng.uniform(-3.0, 3.0)).collect();
    v[3] = f32::NAN;
    let a = Tensor::from_vec(&[7, 13], v).unwrap();
    let b = random(&mut rng, DType::F32, &[13], -3.0, 3.0);
    let mut w: Vec<f32> = (0..7 * 13).map(|_| rng.uniform(-3.0, 3.0)).collect();
    w[40] = f32::NAN;
    let c = Tensor::from_vec(&[7, 13], w).unwrap();
    for op in [VariadicOp::Max, VariadicOp::Min] {
        check(&ctx, &Op::Variadic(op), &[Some(&a), Some(&b), Some(&c)], &[], 1, EXACT);
        check(&ctx, &Op::Variadic(op), &[Some(&b), Some(&c), Some(&a)], &[], 1, EXACT);
    }
}
