//! Test support for the data-movement and gather kernels: seeded random tensors,
//! running one op into outputs of given shapes, and a by-index reference.

use crate::Result;
use smelt_ir::{DType, Element, Op, Tensor, TensorView, TensorViewMut};

/// The dtypes every movement test covers: one per element size plus bool.
pub const TEST_DTYPES: [DType; 4] = [DType::F32, DType::I64, DType::Bool, DType::F16];

/// A small xorshift generator, so tests need no dependency and repeat exactly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random non-zero values (bools are random 0/1) of `dtype`.
pub fn random(rng: &mut Rng, dtype: DType, shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f64> = (0..n)
        .map(|_| match dtype {
            DType::Bool => (rng.next() % 2) as f64,
            d if d.is_float() => (rng.below(2000) as f64 - 999.5) / 8.0,
            d if d.is_signed() => [-1.0, 1.0][rng.below(2)] * (1 + rng.below(100)) as f64,
            _ => (1 + rng.below(200)) as f64,
        })
        .collect();
    let mut t = Tensor::zeros(dtype, shape);
    smelt_ir::dispatch_dtype!(dtype, T => {
        for (v, &x) in t.as_mut_slice::<T>().unwrap().iter_mut().zip(&values) {
            *v = T::from_f64(x);
        }
    });
    t
}

pub fn i64s(values: &[i64]) -> Tensor {
    Tensor::from_slice(&[values.len()], values).unwrap()
}

pub fn i32s(values: &[i32]) -> Tensor {
    Tensor::from_slice(&[values.len()], values).unwrap()
}

/// Runs `op` into freshly allocated outputs of the given dtypes and shapes, which are
/// first filled with a marker pattern so that an element the kernel skips shows.
pub fn run(op: &Op, inputs: &[Option<&Tensor>], outputs: &[(DType, &[usize])]) -> Result<Vec<Tensor>> {
    let mut outs: Vec<Tensor> = outputs
        .iter()
        .map(|&(dtype, shape)| {
            let mut t = Tensor::zeros(dtype, shape);
            t.bytes_mut().fill(0xA5);
            t
        })
        .collect();
    let views: Vec<Option<TensorView>> = inputs.iter().map(|t| t.map(Tensor::view)).collect();
    let mut out_views: Vec<TensorViewMut> = outs.iter_mut().map(Tensor::view_mut).collect();
    crate::eval(op, &views, &mut out_views, &mut crate::Scratch::new())?;
    Ok(outs)
}

/// [`run`] for a single output.
pub fn run1(op: &Op, inputs: &[Option<&Tensor>], dtype: DType, shape: &[usize]) -> Result<Tensor> {
    Ok(run(op, inputs, &[(dtype, shape)])?.remove(0))
}

/// Calls `f` with every multi-index of `shape`, in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut index = vec![0; shape.len()];
    loop {
        f(&index);
        let mut k = shape.len();
        loop {
            if k == 0 {
                return;
            }
            k -= 1;
            index[k] += 1;
            if index[k] < shape[k] {
                break;
            }
            index[k] = 0;
        }
    }
}

/// Row-major flat index of `index` in `shape`.
pub fn flat(shape: &[usize], index: &[usize]) -> usize {
    shape.iter().zip(index).fold(0, |acc, (&n, &i)| acc * n + i)
}

/// The reference result built one element at a time: output element `index` is
/// `src`'s element at the multi-index `source(index)` returns, or `fill` for `None`.
pub fn by_index(
    src: &Tensor,
    shape: &[usize],
    fill: &[u8],
    mut source: impl FnMut(&[usize]) -> Option<Vec<usize>>,
) -> Tensor {
    let es = src.dtype().size();
    let mut bytes = Vec::with_capacity(shape.iter().product::<usize>() * es);
    for_each_index(shape, |index| match source(index) {
        Some(at) => {
            let s = flat(src.shape(), &at) * es;
            bytes.extend_from_slice(&src.bytes()[s..s + es]);
        }
        None => bytes.extend_from_slice(fill),
    });
    Tensor::from_bytes(src.dtype(), shape, &bytes).unwrap()
}
