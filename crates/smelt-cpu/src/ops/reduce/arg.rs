//! ArgMax / ArgMin along one axis, with `keepdims` and `select_last_index`.
//!
//! NaN counts as the extreme value for both, as in numpy and onnxruntime: the first
//! NaN wins (the last one with `select_last_index`).

use super::{reduced_shape, split_at_axis};
use crate::ops::dims::Dims;
use crate::ops::elementwise::binary::dispatch_num;
use crate::ops::elementwise::checked::{expect_dtype, expect_shape, normalize_axis, slice, slice_mut};
use crate::ops::elementwise::num::Num;
use crate::{CpuError, Result};
use smallvec::SmallVec;
use smelt_ir::{DType, TensorView, TensorViewMut};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Pick {
    Max,
    Min,
}

pub(super) fn eval(
    name: &'static str,
    pick: Pick,
    axis: i64,
    keepdims: bool,
    select_last: bool,
    x: TensorView,
    out: &mut TensorViewMut,
) -> Result<()> {
    // A scalar is a one-element vector.
    let shape: &[usize] = if x.shape.is_empty() { &[1] } else { x.shape };
    let axis = normalize_axis(name, axis, shape.len())?;
    let want = if x.shape.is_empty() { Dims::new() } else { reduced_shape(shape, axis, keepdims, 1) };
    expect_shape(name, "output", out.shape, &want)?;
    expect_dtype(name, "output", out.dtype, DType::I64)?;
    let (outer, n, inner) = split_at_axis(shape, axis);
    let dst = slice_mut::<i64>(name, "output", out)?;
    if dst.is_empty() {
        return Ok(());
    }
    if n == 0 {
        return Err(CpuError::invalid(
            name,
            format!("axis {axis} of shape {shape:?} is empty: there is no index to pick"),
        ));
    }
    dispatch_num!(x.dtype, name, T => {
        let src = slice::<T>(name, "input", &x)?;
        pick_indices(pick, select_last, src, outer, n, inner, dst);
        Ok(())
    })
}

/// Whether `v` should replace the current pick `best`.
#[inline(always)]
fn better<T: Num>(pick: Pick, select_last: bool, v: T, best: T) -> bool {
    if best.is_nan() {
        return select_last && v.is_nan();
    }
    if v.is_nan() {
        return true;
    }
    match (pick, select_last) {
        (Pick::Max, false) => v > best,
        (Pick::Max, true) => v >= best,
        (Pick::Min, false) => v < best,
        (Pick::Min, true) => v <= best,
    }
}

fn pick_indices<T: Num>(pick: Pick, select_last: bool, x: &[T], outer: usize, n: usize, inner: usize, out: &mut [i64]) {
    // The best value of each lane; inline for the common last-axis case (one lane).
    let mut best: SmallVec<[T; 16]> = SmallVec::with_capacity(inner);
    for (block, out) in x.chunks_exact(n * inner).zip(out.chunks_exact_mut(inner)).take(outer) {
        best.clear();
        best.extend_from_slice(&block[..inner]);
        out.fill(0);
        for (r, row) in block.chunks_exact(inner).enumerate().skip(1) {
            for ((b, o), &v) in best.iter_mut().zip(out.iter_mut()).zip(row) {
                if better(pick, select_last, v, *b) {
                    *b = v;
                    *o = r as i64;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::elementwise::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    fn arg(max: bool, axis: i64, keepdims: bool, last: bool, x: &Tensor, shape: &[usize]) -> Vec<i64> {
        let op = if max {
            Op::ArgMax { axis, keepdims, select_last_index: last }
        } else {
            Op::ArgMin { axis, keepdims, select_last_index: last }
        };
        run1(&op, &[x], DType::I64, shape).unwrap().to_i64_vec()
    }

    #[test]
    fn along_each_axis() {
        let x = Tensor::from_vec(&[2, 3], vec![1f32, 5.0, 5.0, 7.0, 0.0, 7.0]).unwrap();
        assert_eq!(arg(true, 1, true, false, &x, &[2, 1]), vec![1, 0]);
        assert_eq!(arg(true, 1, false, true, &x, &[2]), vec![2, 2]);
        assert_eq!(arg(true, 0, false, false, &x, &[3]), vec![1, 0, 1]);
        assert_eq!(arg(false, -1, false, false, &x, &[2]), vec![0, 1]);
        assert_eq!(arg(false, 0, true, false, &x, &[1, 3]), vec![0, 1, 0]);
        let i = Tensor::from_vec(&[4], vec![3i64, -1, 9, -1]).unwrap();
        assert_eq!(arg(false, 0, false, true, &i, &[]), vec![3]);
        assert_eq!(arg(true, 0, true, false, &i, &[1]), vec![2]);
    }

    #[test]
    fn random_rows_match_a_scan() {
        let mut rng = Rng::new(9);
        let x = rng.tensor_f32(&[5, 17, 3], -1.0, 1.0);
        let v = x.to_f64_vec();
        let got = arg(true, 1, false, false, &x, &[5, 3]);
        for o in 0..5 {
            for j in 0..3 {
                let col: Vec<f64> = (0..17).map(|r| v[o * 51 + r * 3 + j]).collect();
                let best = (0..17).fold(0, |b, r| if col[r] > col[b] { r } else { b });
                assert_eq!(got[o * 3 + j], best as i64);
            }
        }
    }

    #[test]
    fn nan_wins_and_empty_axes_fail() {
        let x = Tensor::from_vec(&[4], vec![1f32, f32::NAN, 3.0, f32::NAN]).unwrap();
        assert_eq!(arg(true, 0, false, false, &x, &[]), vec![1]);
        assert_eq!(arg(false, 0, false, false, &x, &[]), vec![1]);
        assert_eq!(arg(true, 0, false, true, &x, &[]), vec![3]);
        let e = Tensor::from_vec::<f32>(&[2, 0], vec![]).unwrap();
        assert!(run1(&Op::ArgMax { axis: 1, keepdims: true, select_last_index: false }, &[&e], DType::I64, &[2, 1])
            .is_err());
        assert_eq!(arg(true, 0, true, false, &e, &[1, 0]), Vec::<i64>::new());
    }
}
