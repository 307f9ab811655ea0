//! TopK: the k largest (or smallest) values along an axis and their i64 indices,
//! sorted, equal values in index order. NaN orders above every number (numpy's
//! sort order), so it leads the largest and trails the smallest.

use super::split_at_axis;
use crate::ops::elementwise::binary::dispatch_num;
use crate::ops::elementwise::checked::{expect_dtype, expect_shape, int_values, normalize_axis, slice, slice_mut};
use crate::ops::elementwise::num::Num;
use crate::{CpuError, Result};
use smelt_ir::{DType, TensorView, TensorViewMut};
use std::cmp::Ordering;

const OP: &str = "TopK";

pub(super) fn eval(
    axis: i64,
    largest: bool,
    x: TensorView,
    k: TensorView,
    values: &mut TensorViewMut,
    indices: &mut TensorViewMut,
) -> Result<()> {
    let shape: Vec<usize> = if x.shape.is_empty() { vec![1] } else { x.shape.to_vec() };
    let axis = normalize_axis(OP, axis, shape.len())?;
    let k = match int_values(OP, "K", &k)?.as_slice() {
        [k] => *k,
        other => return Err(CpuError::invalid(OP, format!("K must hold one value, got {other:?}"))),
    };
    let (outer, n, inner) = split_at_axis(&shape, axis);
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= n)
        .ok_or_else(|| CpuError::invalid(OP, format!("K = {k} is outside [0, {n}] for axis {axis} of {shape:?}")))?;
    let mut want = x.shape.to_vec();
    if let Some(d) = want.get_mut(axis) {
        *d = k;
    }
    expect_shape(OP, "values output", values.shape, &want)?;
    expect_shape(OP, "indices output", indices.shape, &want)?;
    expect_dtype(OP, "values output", values.dtype, x.dtype)?;
    expect_dtype(OP, "indices output", indices.dtype, DType::I64)?;
    let idx_out = slice_mut::<i64>(OP, "indices output", indices)?;
    dispatch_num!(x.dtype, OP, T => {
        let src = slice::<T>(OP, "input", &x)?;
        let val_out = slice_mut::<T>(OP, "values output", values)?;
        top_k(src, (outer, n, inner), k, largest, val_out, idx_out);
        Ok(())
    })
}

/// Total order on values with NaN above everything.
#[inline]
fn order<T: Num>(a: T, b: T) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

fn top_k<T: Num>(
    x: &[T],
    (outer, n, inner): (usize, usize, usize),
    k: usize,
    largest: bool,
    values: &mut [T],
    indices: &mut [i64],
) {
    if k == 0 {
        return;
    }
    // Best first; equal values by ascending index.
    let rank = |a: &(T, usize), b: &(T, usize)| {
        let by_value = if largest { order(b.0, a.0) } else { order(a.0, b.0) };
        by_value.then(a.1.cmp(&b.1))
    };
    let mut lane: Vec<(T, usize)> = Vec::with_capacity(n);
    for o in 0..outer {
        for j in 0..inner {
            lane.clear();
            lane.extend((0..n).map(|r| (x[(o * n + r) * inner + j], r)));
            if k < n {
                lane.select_nth_unstable_by(k - 1, rank);
            }
            let top = &mut lane[..k];
            top.sort_unstable_by(rank);
            for (r, &(v, i)) in top.iter().enumerate() {
                let at = (o * k + r) * inner + j;
                values[at] = v;
                indices[at] = i as i64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::elementwise::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    fn topk(x: &Tensor, k: i64, axis: i64, largest: bool, out: &[usize]) -> (Vec<f64>, Vec<i64>) {
        let k = Tensor::from_vec(&[1], vec![k]).unwrap();
        let outs = run(
            &Op::TopK { axis, largest, sorted: true },
            &[Some(x), Some(&k)],
            &[(x.dtype(), out), (DType::I64, out)],
        )
        .unwrap();
        (outs[0].to_f64_vec(), outs[1].to_i64_vec())
    }

    #[test]
    fn largest_and_smallest_with_ties() {
        let x = Tensor::from_vec(&[5], vec![1f32, 3.0, 3.0, 2.0, 3.0]).unwrap();
        assert_eq!(topk(&x, 2, 0, true, &[2]), (vec![3.0, 3.0], vec![1, 2]));
        assert_eq!(topk(&x, 3, 0, false, &[3]), (vec![1.0, 2.0, 3.0], vec![0, 3, 1]));
        assert_eq!(topk(&x, 5, -1, true, &[5]), (vec![3.0, 3.0, 3.0, 2.0, 1.0], vec![1, 2, 4, 3, 0]));
        assert_eq!(topk(&x, 0, 0, true, &[0]), (vec![], vec![]));
    }

    #[test]
    fn along_a_middle_axis_against_a_sort() {
        let mut rng = Rng::new(4);
        let x = rng.tensor_f32(&[3, 10, 4], -5.0, 5.0);
        let v = x.to_f64_vec();
        let (vals, idx) = topk(&x, 4, 1, true, &[3, 4, 4]);
        for o in 0..3 {
            for j in 0..4 {
                let mut lane: Vec<(f64, usize)> = (0..10).map(|r| (v[(o * 10 + r) * 4 + j], r)).collect();
                lane.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
                for r in 0..4 {
                    assert_eq!(vals[(o * 4 + r) * 4 + j], lane[r].0);
                    assert_eq!(idx[(o * 4 + r) * 4 + j], lane[r].1 as i64);
                }
            }
        }
    }

    #[test]
    fn nan_orders_above_numbers_and_bad_k_fails() {
        let x = Tensor::from_vec(&[4], vec![1f32, f32::NAN, 3.0, 2.0]).unwrap();
        let (v, i) = topk(&x, 2, 0, true, &[2]);
        assert!(v[0].is_nan() && v[1] == 3.0 && i == vec![1, 2]);
        assert_eq!(topk(&x, 2, 0, false, &[2]), (vec![1.0, 2.0], vec![0, 3]));
        let k = Tensor::from_vec(&[1], vec![5i64]).unwrap();
        let op = Op::TopK { axis: 0, largest: true, sorted: true };
        assert!(run(&op, &[Some(&x), Some(&k)], &[(DType::F32, &[5]), (DType::I64, &[5])]).is_err());
        let xi = Tensor::from_vec(&[3], vec![7i32, -1, 7]).unwrap();
        assert_eq!(topk(&xi, 2, 0, true, &[2]), (vec![7.0, 7.0], vec![0, 2]));
    }
}
