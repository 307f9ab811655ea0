//! Softmax, LogSoftmax and Hardmax along one axis (or, with `coerce_2d`, over the
//! flattened trailing dims as opset < 13 defines them).
//!
//! Numerically stable: the maximum is subtracted before exponentiating. Each row is
//! processed in separate passes (max, exp, sum, scale) so every pass is a loop the
//! compiler vectorises. f16 and bf16 compute in f32.

use super::split_at_axis;
use crate::ops::activation::exp_f32;
use crate::ops::broadcast::for_each_row_block;
use crate::ops::elementwise::checked::{expect_dtype, expect_shape, normalize_axis, slice, slice_mut};
use crate::{CpuError, Result};
use half::{bf16, f16};
use num_traits::Float;
use smelt_ir::{DType, TensorView, TensorViewMut};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    Softmax,
    LogSoftmax,
    Hardmax,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Softmax => "Softmax",
            Kind::LogSoftmax => "LogSoftmax",
            Kind::Hardmax => "Hardmax",
        }
    }
}

/// The float types softmax computes in, with the exp each one uses.
pub(crate) trait SoftFloat: Float + Send + Sync + 'static {
    fn exp_fast(self) -> Self;
}

/// [`SoftFloat::exp_fast`] of f32 is exactly zero below this exponent.
pub(crate) const EXP_FLUSH_BELOW: f32 = -87.0;

impl SoftFloat for f32 {
    /// e^x, flushed to zero below e^-87 (1.6e-38): the exponents here are
    /// `x - max`, and a masked attention score (x = -3.4e38, or -inf) would
    /// otherwise make a subnormal, which x86 cores compute in microcode at about
    /// a hundred times the cost. GPT-2's causal softmax spent 49 ns an element
    /// that way. The flushed terms are below 1.6e-38 of the row's largest.
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        // Not `max`: a NaN must reach exp_f32 and come out NaN.
        let e = exp_f32(if self < EXP_FLUSH_BELOW { EXP_FLUSH_BELOW } else { self });
        if self < EXP_FLUSH_BELOW {
            0.0
        } else {
            e
        }
    }
}

impl SoftFloat for f64 {
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        self.exp()
    }
}

pub(super) fn eval(kind: Kind, axis: i64, coerce_2d: bool, x: TensorView, out: &mut TensorViewMut) -> Result<()> {
    let name = kind.name();
    expect_dtype(name, "output", out.dtype, x.dtype)?;
    expect_shape(name, "output", out.shape, x.shape)?;
    // A scalar is a single row of one element.
    let shape: &[usize] = if x.shape.is_empty() { &[1] } else { x.shape };
    let axis = normalize_axis(name, axis, shape.len())?;
    let (n, inner) = if coerce_2d {
        (shape[axis..].iter().product(), 1)
    } else {
        let (_, n, inner) = split_at_axis(shape, axis);
        (n, inner)
    };
    match x.dtype {
        DType::F32 => run(kind, n, inner, slice::<f32>(name, "input", &x)?, slice_mut::<f32>(name, "output", out)?),
        DType::F64 => run(kind, n, inner, slice::<f64>(name, "input", &x)?, slice_mut::<f64>(name, "output", out)?),
        DType::F16 => {
            let src: Vec<f32> = slice::<f16>(name, "input", &x)?.iter().map(|v| v.to_f32()).collect();
            let mut dst = vec![0f32; src.len()];
            run(kind, n, inner, &src, &mut dst);
            for (o, v) in slice_mut::<f16>(name, "output", out)?.iter_mut().zip(dst) {
                *o = f16::from_f32(v);
            }
        }
        DType::BF16 => {
            let src: Vec<f32> = slice::<bf16>(name, "input", &x)?.iter().map(|v| v.to_f32()).collect();
            let mut dst = vec![0f32; src.len()];
            run(kind, n, inner, &src, &mut dst);
            for (o, v) in slice_mut::<bf16>(name, "output", out)?.iter_mut().zip(dst) {
                *o = bf16::from_f32(v);
            }
        }
        dtype => return Err(CpuError::UnsupportedDType { op: name, dtype }),
    }
    Ok(())
}

/// Runs `kind` over `x` seen as blocks of `n` rows by `inner` lanes.
fn run<F: SoftFloat>(kind: Kind, n: usize, inner: usize, x: &[F], y: &mut [F]) {
    let block = n * inner;
    if block == 0 {
        return;
    }
    let total = x.len();
    for_each_row_block(y, block, total * 4, |rows, y| {
        let x = &x[rows.start * block..rows.end * block];
        for (x, y) in x.chunks_exact(block).zip(y.chunks_exact_mut(block)) {
            // One block at a time through `wide::run`, one kind each: a closure
            // over all of them was too large for the compiler to inline there, so
            // it ran 4 lanes wide.
            match (kind, inner == 1) {
                (Kind::Softmax, true) => crate::ops::wide::run(|| softmax_row(x, y)),
                (Kind::LogSoftmax, true) => crate::ops::wide::run(|| log_softmax_row(x, y)),
                (Kind::Hardmax, true) => hardmax_row(x, y),
                (Kind::Softmax | Kind::LogSoftmax, false) => {
                    crate::ops::wide::run(|| softmax_columns(kind, n, inner, x, y))
                }
                (Kind::Hardmax, false) => hardmax_columns(n, inner, x, y),
            }
        }
    });
}

/// The NaN-propagating maximum: once a NaN is seen it stays.
#[inline(always)]
fn max_nan<F: Float>(m: F, v: F) -> F {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// Maximum of a row with eight independent lanes, so the loop vectorises.
#[inline(always)]
pub(crate) fn row_max<F: Float>(x: &[F]) -> F {
    let mut lanes = [F::neg_infinity(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = max_nan(*l, v);
        }
    }
    let mut m = F::neg_infinity();
    for &v in rest.iter().chain(lanes.iter()) {
        m = max_nan(m, v);
    }
    m
}

/// Sum of a row with eight independent lanes, so the loop vectorises.
#[inline(always)]
pub(crate) fn row_sum<F: Float>(x: &[F]) -> F {
    let mut lanes = [F::zero(); 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = *l + v;
        }
    }
    let mut s = F::zero();
    for &v in rest.iter().chain(lanes.iter()) {
        s = s + v;
    }
    s
}

#[inline(always)]
fn softmax_row<F: SoftFloat>(x: &[F], y: &mut [F]) {
    let m = row_max(x);
    for (y, &v) in y.iter_mut().zip(x) {
        *y = (v - m).exp_fast();
    }
    let inv = F::one() / row_sum(y);
    for y in y.iter_mut() {
        *y = *y * inv;
    }
}

#[inline(always)]
fn log_softmax_row<F: SoftFloat>(x: &[F], y: &mut [F]) {
    let m = row_max(x);
    for (y, &v) in y.iter_mut().zip(x) {
        *y = (v - m).exp_fast();
    }
    let shift = m + row_sum(y).ln();
    for (y, &v) in y.iter_mut().zip(x) {
        *y = v - shift;
    }
}

/// One-hot of the first maximum. Comparisons start from element 0, so (as in
/// onnxruntime) a NaN elsewhere is never picked.
fn hardmax_row<F: Float>(x: &[F], y: &mut [F]) {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate().skip(1) {
        if v > x[best] {
            best = i;
        }
    }
    y.fill(F::zero());
    y[best] = F::one();
}

/// Softmax or LogSoftmax of a `[n, inner]` block along `n`, a row of lanes at a time.
#[inline(always)]
fn softmax_columns<F: SoftFloat>(kind: Kind, n: usize, inner: usize, x: &[F], y: &mut [F]) {
    let mut m = vec![F::neg_infinity(); inner];
    for row in x.chunks_exact(inner) {
        for (m, &v) in m.iter_mut().zip(row) {
            *m = max_nan(*m, v);
        }
    }
    let mut s = vec![F::zero(); inner];
    for (xr, yr) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
        for ((y, &v), &m) in yr.iter_mut().zip(xr).zip(&m) {
            *y = (v - m).exp_fast();
        }
        for (s, &y) in s.iter_mut().zip(yr.iter()) {
            *s = *s + y;
        }
    }
    debug_assert_eq!(x.len(), n * inner);
    if kind == Kind::Softmax {
        let inv: Vec<F> = s.iter().map(|&s| F::one() / s).collect();
        for yr in y.chunks_exact_mut(inner) {
            for (y, &i) in yr.iter_mut().zip(&inv) {
                *y = *y * i;
            }
        }
    } else {
        let shift: Vec<F> = s.iter().zip(&m).map(|(&s, &m)| m + s.ln()).collect();
        for (xr, yr) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
            for ((y, &v), &sh) in yr.iter_mut().zip(xr).zip(&shift) {
                *y = v - sh;
            }
        }
    }
}

fn hardmax_columns<F: Float>(n: usize, inner: usize, x: &[F], y: &mut [F]) {
    let mut best = vec![0usize; inner];
    let mut best_val: Vec<F> = x[..inner].to_vec();
    for r in 1..n {
        let row = &x[r * inner..(r + 1) * inner];
        for j in 0..inner {
            if row[j] > best_val[j] {
                best_val[j] = row[j];
                best[j] = r;
            }
        }
    }
    y.fill(F::zero());
    for (j, &r) in best.iter().enumerate() {
        y[r * inner + j] = F::one();
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::elementwise::testing::*;
    use half::f16;
    use smelt_ir::{DType, Op, Tensor};

    /// Softmax along `axis` computed in f64 one output at a time.
    fn naive(x: &[f32], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
        let (outer, n, inner) = super::split_at_axis(shape, axis);
        let mut y = vec![0.0; x.len()];
        for o in 0..outer {
            for j in 0..inner {
                let at = |r: usize| o * n * inner + r * inner + j;
                let m = (0..n).map(|r| x[at(r)] as f64).fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = (0..n).map(|r| (x[at(r)] as f64 - m).exp()).sum();
                for r in 0..n {
                    let e = x[at(r)] as f64 - m;
                    y[at(r)] = if log { e - s.ln() } else { e.exp() / s };
                }
            }
        }
        y
    }

    #[test]
    fn softmax_and_log_softmax_along_any_axis() {
        let mut rng = Rng::new(11);
        for (shape, axis) in [
            (vec![3, 7], 1i64),
            (vec![2, 3, 5], 1),
            (vec![2, 3, 5], 0),
            (vec![2, 3, 5], -1),
            (vec![64, 1000], 1),
            (vec![40, 30, 33], 1),
        ] {
            let x = rng.tensor_f32(&shape, -8.0, 8.0);
            let ax = if axis < 0 { axis + shape.len() as i64 } else { axis } as usize;
            for log in [false, true] {
                let op = if log {
                    Op::LogSoftmax { axis, coerce_2d: false }
                } else {
                    Op::Softmax { axis, coerce_2d: false }
                };
                let y = run1(&op, &[&x], DType::F32, &shape).unwrap();
                assert_close(&y.to_f64_vec(), &naive(x.as_slice().unwrap(), &shape, ax, log), 2e-6);
            }
        }
    }

    #[test]
    fn coerce_2d_flattens_the_trailing_dims() {
        let mut rng = Rng::new(12);
        let x = rng.tensor_f32(&[2, 3, 4], -3.0, 3.0);
        let y = run1(&Op::Softmax { axis: 1, coerce_2d: true }, &[&x], DType::F32, &[2, 3, 4]).unwrap();
        assert_close(&y.to_f64_vec(), &naive(x.as_slice().unwrap(), &[2, 12], 1, false), 2e-6);
        let y = run1(&Op::LogSoftmax { axis: 0, coerce_2d: true }, &[&x], DType::F32, &[2, 3, 4]).unwrap();
        assert_close(&y.to_f64_vec(), &naive(x.as_slice().unwrap(), &[1, 24], 1, true), 2e-6);
    }

    #[test]
    fn hardmax_picks_the_first_maximum() {
        let x = Tensor::from_vec(&[2, 3], vec![1f32, 3.0, 3.0, 2.0, f32::NAN, 0.0]).unwrap();
        let y = run1(&Op::Hardmax { axis: 1, coerce_2d: false }, &[&x], DType::F32, &[2, 3]).unwrap();
        assert_eq!(y.to_f64_vec(), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let y = run1(&Op::Hardmax { axis: 0, coerce_2d: false }, &[&x], DType::F32, &[2, 3]).unwrap();
        assert_eq!(y.to_f64_vec(), vec![0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn extreme_values_and_half_types() {
        let x = Tensor::from_vec(&[2, 2], vec![1000f32, 0.0, f32::NEG_INFINITY, 0.0]).unwrap();
        let y = run1(&Op::Softmax { axis: -1, coerce_2d: false }, &[&x], DType::F32, &[2, 2]).unwrap();
        assert_eq!(y.to_f64_vec(), vec![1.0, 0.0, 0.0, 1.0]);
        let all_inf = Tensor::from_vec(&[2], vec![f32::NEG_INFINITY; 2]).unwrap();
        let y = run1(&Op::Softmax { axis: 0, coerce_2d: false }, &[&all_inf], DType::F32, &[2]).unwrap();
        assert!(y.to_f64_vec().iter().all(|v| v.is_nan()));
        let h = Tensor::from_vec(&[3], vec![f16::from_f32(1.0), f16::from_f32(2.0), f16::from_f32(3.0)]).unwrap();
        let y = run1(&Op::Softmax { axis: 0, coerce_2d: false }, &[&h], DType::F16, &[3]).unwrap();
        let want = naive(&[1.0, 2.0, 3.0], &[3], 0, false);
        assert_close(&y.to_f64_vec(), &want, 1e-3);
        let empty = Tensor::from_vec::<f32>(&[0, 4], vec![]).unwrap();
        assert!(run1(&Op::Softmax { axis: 1, coerce_2d: false }, &[&empty], DType::F32, &[0, 4]).is_ok());
        let i = Tensor::from_vec(&[2], vec![1i32, 2]).unwrap();
        assert!(run1(&Op::Softmax { axis: 0, coerce_2d: false }, &[&i], DType::I32, &[2]).is_err());
    }

    #[test]
    fn masked_scores_give_exact_zeros_and_nan_still_propagates() {
        // Attention masks add the lowest f32: those terms flush to 0, not subnormals.
        let row = [0.5f32, f32::MIN, 1.5, -90.0, -3.0];
        let x = Tensor::from_vec(&[1, 5], row.to_vec()).unwrap();
        let y = run1(&Op::Softmax { axis: -1, coerce_2d: false }, &[&x], DType::F32, &[1, 5]).unwrap().to_f64_vec();
        assert_eq!((y[1], y[3]), (0.0, 0.0));
        assert_close(&y, &naive(&row, &[1, 5], 1, false), 1e-6);
        let nan = Tensor::from_vec(&[1, 3], vec![0.5f32, f32::NAN, 1.0]).unwrap();
        let y = run1(&Op::Softmax { axis: -1, coerce_2d: false }, &[&nan], DType::F32, &[1, 3]).unwrap();
        assert!(y.to_f64_vec()[1].is_nan());
    }
}
