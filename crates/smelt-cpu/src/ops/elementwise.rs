//! Elementwise ops: Unary, Binary, Variadic (Min/Max/Sum/Mean), Clip, Where, Cast,
//! CastLike, Identity and Dropout.
//!
//! Kernels are generic over the element type through [`num::Num`] and run their
//! inner loops over contiguous slices; [`super::broadcast`] turns broadcasting into
//! such slices, and large outputs are split across the rayon pool.

pub(crate) mod binary;
mod cast;
pub(crate) mod checked;
mod nary;
pub(crate) mod num;
mod unary;

use crate::{CpuError, Result};
use checked::{expect_dtype, expect_shape, input, output};
use smallvec::SmallVec;
use smelt_ir::{DType, Op, TensorView, TensorViewMut};

pub use cast::cast;

pub fn eval(op: &Op, inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let name = op.name();
    match op {
        Op::Unary(u) => unary::eval(u, input(name, inputs, 0)?, output(name, outputs, 0)?),
        Op::Binary(b) => binary::eval(*b, input(name, inputs, 0)?, input(name, inputs, 1)?, output(name, outputs, 0)?),
        Op::Variadic(v) => {
            let ins = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| t.ok_or_else(|| CpuError::invalid(name, format!("input {i} is missing"))))
                .collect::<Result<SmallVec<[_; 4]>>>()?;
            nary::variadic(*v, &ins, output(name, outputs, 0)?)
        }
        Op::Clip => nary::clip(
            input(name, inputs, 0)?,
            checked::optional_input(inputs, 1),
            checked::optional_input(inputs, 2),
            output(name, outputs, 0)?,
        ),
        Op::Where => nary::where_(
            input(name, inputs, 0)?,
            input(name, inputs, 1)?,
            input(name, inputs, 2)?,
            output(name, outputs, 0)?,
        ),
        Op::Cast { to } => {
            let out = output(name, outputs, 0)?;
            expect_dtype(name, "output", out.dtype, *to)?;
            cast(input(name, inputs, 0)?, out)
        }
        Op::CastLike => {
            let target = input(name, inputs, 1)?;
            let out = output(name, outputs, 0)?;
            expect_dtype(name, "output", out.dtype, target.dtype)?;
            cast(input(name, inputs, 0)?, out)
        }
        Op::Identity => copy(name, input(name, inputs, 0)?, output(name, outputs, 0)?),
        Op::Dropout => {
            copy(name, input(name, inputs, 0)?, output(name, outputs, 0)?)?;
            // Inference: nothing is dropped, so the mask is all true.
            if let Some(mask) = outputs.get_mut(1) {
                expect_dtype(name, "mask output", mask.dtype, DType::Bool)?;
                let shape = inputs[0].map_or(&[][..], |x| x.shape);
                expect_shape(name, "mask output", mask.shape, shape)?;
                checked::slice_mut::<u8>(name, "mask output", mask)?.fill(1);
            }
            Ok(())
        }
        _ => Err(CpuError::invalid(name, "is not an elementwise op")),
    }
}

/// Copies `x` into `out`, which must have its dtype and shape.
fn copy(op: &'static str, x: TensorView, out: &mut TensorViewMut) -> Result<()> {
    expect_dtype(op, "output", out.dtype, x.dtype)?;
    expect_shape(op, "output", out.shape, x.shape)?;
    if out.data.len() != x.data.len() {
        return Err(CpuError::invalid(op, "output buffer size differs from the input's"));
    }
    out.data.copy_from_slice(x.data);
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for kernel tests in this crate: outputs allocated by hand (tests do
    //! not depend on shape inference) and a small deterministic random source.

    use smelt_ir::{DType, Op, Tensor, TensorView, TensorViewMut};

    /// Runs `op` on `inputs` into fresh outputs of the given dtypes and shapes.
    pub fn run(op: &Op, inputs: &[Option<&Tensor>], outs: &[(DType, &[usize])]) -> crate::Result<Vec<Tensor>> {
        let mut outputs: Vec<Tensor> = outs.iter().map(|(d, s)| Tensor::zeros(*d, s)).collect();
        // Stale data in the buffers: kernels must write every element.
        for t in &mut outputs {
            t.bytes_mut().fill(0xA5);
        }
        let views: Vec<Option<TensorView>> = inputs.iter().map(|t| t.map(|t| t.view())).collect();
        let mut out_views: Vec<TensorViewMut> = outputs.iter_mut().map(|t| t.view_mut()).collect();
        crate::eval(op, &views, &mut out_views, &mut crate::Scratch::new())?;
        Ok(outputs)
    }

    /// Runs `op` with one output and returns it.
    pub fn run1(op: &Op, inputs: &[&Tensor], dtype: DType, shape: &[usize]) -> crate::Result<Tensor> {
        let inputs: Vec<Option<&Tensor>> = inputs.iter().map(|t| Some(*t)).collect();
        Ok(run(op, &inputs, &[(dtype, shape)])?.remove(0))
    }

    /// A fixed-seed xorshift generator.
    pub struct Rng(u64);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// Uniform in [lo, hi), never exactly 0.
        pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
            loop {
                let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                let v = lo + (hi - lo) * u;
                if v != 0.0 {
                    return v;
                }
            }
        }

        pub fn vec_f32(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
            (0..n).map(|_| self.f32(lo, hi)).collect()
        }

        pub fn tensor_f32(&mut self, shape: &[usize], lo: f32, hi: f32) -> Tensor {
            let n = shape.iter().product();
            Tensor::from_vec(shape, self.vec_f32(n, lo, hi)).unwrap()
        }
    }

    /// Asserts elementwise closeness with a relative-or-absolute tolerance.
    pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "lengths differ");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol * w.abs().max(1.0);
            assert!(ok, "element {i}: got {g}, want {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    #[test]
    fn identity_and_dropout_copy() {
        let x = Tensor::from_vec(&[2, 2], vec![1i32, -2, 3, 4]).unwrap();
        assert_eq!(run1(&Op::Identity, &[&x], DType::I32, &[2, 2]).unwrap(), x);
        let outs = run(&Op::Dropout, &[Some(&x)], &[(DType::I32, &[2, 2]), (DType::Bool, &[2, 2])]).unwrap();
        assert_eq!(outs[0], x);
        assert_eq!(outs[1].as_slice::<u8>().unwrap(), &[1, 1, 1, 1]);
        assert!(run1(&Op::Identity, &[&x], DType::I32, &[4]).is_err());
        assert!(run1(&Op::Identity, &[&x], DType::F32, &[2, 2]).is_err());
    }
}
