//! Helpers for the kernel tests: seeded random tensors, running an op or a
//! prepared kernel into outputs of given shapes, and comparing with a reference.

use crate::{Kernel, Result, Scratch};
use smelt_ir::{DType, Op, Tensor, TensorView, TensorViewMut};

/// A small deterministic generator (PCG-style LCG), so tests need no crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x2545_F491_4F6C_DD1D))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// Uniform in [-1, 1), never exactly zero.
    pub fn signed_unit(&mut self) -> f64 {
        loop {
            let v = (self.next_u32() as f64 / (1u64 << 31) as f64) - 1.0;
            if v != 0.0 {
                return v;
            }
        }
    }
}

/// A tensor of random non-zero values: floats in [-1, 1), integers in [-4, 4]
/// (unsigned: [1, 6]) so integer products do not overflow.
pub fn random(dtype: DType, shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| {
            if dtype.is_float() {
                rng.signed_unit()
            } else if dtype.is_signed() {
                let v = (rng.next_u32() % 8) as f64 - 4.0;
                if v == 0.0 {
                    4.0
                } else {
                    v
                }
            } else {
                (rng.next_u32() % 6) as f64 + 1.0
            }
        })
        .collect();
    from_f64(dtype, shape, &values)
}

/// A tensor of `dtype` holding `values` (cast as `Element::from_f64` does).
pub fn from_f64(dtype: DType, shape: &[usize], values: &[f64]) -> Tensor {
    smelt_ir::dispatch_dtype!(dtype, T => {
        let v: Vec<T> = values.iter().map(|&x| <T as smelt_ir::Element>::from_f64(x)).collect();
        let mut t = Tensor::from_vec(shape, v).expect("element count matches shape");
        if dtype == DType::Bool {
            t = Tensor::from_bytes(DType::Bool, shape, t.bytes()).expect("bool bytes");
        }
        t
    })
}

fn alloc(outputs: &[(DType, &[usize])]) -> Vec<Tensor> {
    // Stale contents, as the planner's reused buffers would have: NaN for floats.
    outputs
        .iter()
        .map(|&(dtype, shape)| {
            let n: usize = shape.iter().product();
            if dtype.is_float() {
                from_f64(dtype, shape, &vec![f64::NAN; n])
            } else {
                from_f64(dtype, shape, &vec![7.0; n])
            }
        })
        .collect()
}

/// Runs `eval` into freshly allocated outputs of the given dtypes and shapes.
pub fn try_run_op(op: &Op, inputs: &[Option<&Tensor>], outputs: &[(DType, &[usize])]) -> Result<Vec<Tensor>> {
    let mut outs = alloc(outputs);
    let views: Vec<Option<TensorView>> = inputs.iter().map(|t| t.map(|t| t.view())).collect();
    let mut out_views: Vec<TensorViewMut> = outs.iter_mut().map(|t| t.view_mut()).collect();
    crate::eval(op, &views, &mut out_views, &mut Scratch::new())?;
    Ok(outs)
}

pub fn run_op(op: &Op, inputs: &[Option<&Tensor>], outputs: &[(DType, &[usize])]) -> Vec<Tensor> {
    try_run_op(op, inputs, outputs).unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

/// Runs a prepared kernel into freshly allocated outputs.
pub fn run_kernel(kernel: &dyn Kernel, inputs: &[Option<&Tensor>], outputs: &[(DType, &[usize])]) -> Vec<Tensor> {
    let mut outs = alloc(outputs);
    let views: Vec<Option<TensorView>> = inputs.iter().map(|t| t.map(|t| t.view())).collect();
    let mut out_views: Vec<TensorViewMut> = outs.iter_mut().map(|t| t.view_mut()).collect();
    kernel.run(&views, &mut out_views, &mut Scratch::new()).unwrap_or_else(|e| panic!("prepared kernel failed: {e}"));
    outs
}

/// Asserts `got` equals `want` elementwise within `tol` relative to max(1, |want|).
pub fn assert_close(got: &Tensor, want: &[f64], tol: f64) {
    let got = got.to_f64_vec();
    assert_eq!(got.len(), want.len(), "element count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= tol * w.abs().max(1.0) || (g.is_nan() && w.is_nan()) || g == w;
        assert!(ok, "element {i}: got {g}, want {w} (tol {tol})");
    }
}
