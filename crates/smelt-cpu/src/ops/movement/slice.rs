//! Slice: a strided window of the input, read by the layout engine with each axis's
//! stride scaled by its step (negative steps walk backwards from the start).

use super::{int_values, layout, normalize_axis, optional, output, required};
use crate::ops::dims::{Dims, IntValues};
use crate::{CpuError, Result};
use smallvec::{smallvec, SmallVec};
use smelt_ir::{TensorView, TensorViewMut};

const OP: &str = "Slice";

pub fn slice(inputs: &[Option<TensorView>], outputs: &mut [TensorViewMut]) -> Result<()> {
    let data = required(OP, inputs, 0)?;
    let starts = int_values(OP, "starts", required(OP, inputs, 1)?)?;
    let ends = int_values(OP, "ends", required(OP, inputs, 2)?)?;
    let axes = match optional(OP, inputs, 3)? {
        Some(axes) => int_values(OP, "axes", axes)?,
        None => (0..starts.len() as i64).collect::<IntValues>(),
    };
    let steps = match optional(OP, inputs, 4)? {
        Some(steps) => int_values(OP, "steps", steps)?,
        None => smallvec![1; starts.len()],
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(CpuError::invalid(
            OP,
            format!(
                "starts, ends, axes and steps must have one length, got {}, {}, {} and {}",
                starts.len(),
                ends.len(),
                axes.len(),
                steps.len()
            ),
        ));
    }

    let in_strides = layout::row_major(data.shape);
    let mut shape = Dims::from_slice(data.shape);
    let mut strides = in_strides.clone();
    let mut offset = 0usize;
    let mut sliced: SmallVec<[bool; 8]> = smallvec![false; data.rank()];
    for i in 0..starts.len() {
        let axis = normalize_axis(OP, axes[i], data.rank())?;
        if std::mem::replace(&mut sliced[axis], true) {
            return Err(CpuError::invalid(OP, format!("axes {axes:?} name axis {axis} twice")));
        }
        if steps[i] == 0 {
            return Err(CpuError::invalid(OP, format!("steps[{i}] is 0")));
        }
        let (start, len) = window(starts[i], ends[i], steps[i], data.shape[axis]);
        shape[axis] = len;
        strides[axis] = in_strides[axis] * steps[i] as isize;
        offset += start * in_strides[axis] as usize;
    }
    let out = output(OP, outputs, data.dtype, &shape)?;
    let src_at = layout::Strided { offset, strides: &strides };
    layout::copy_to_contiguous(OP, data.dtype.size(), &shape, out.data, data.data, src_at)
}

/// The first index and the element count of `start..end` by `step` (non-zero) along
/// an axis of `dim`, clamped as ONNX specifies: negative bounds count from the end,
/// and bounds past either end stop at it.
fn window(start: i64, end: i64, step: i64, dim: usize) -> (usize, usize) {
    let (start, end, step, dim) = (start as i128, end as i128, step as i128, dim as i128);
    let from_end = |v: i128| if v < 0 { v + dim } else { v };
    let (start, end) = (from_end(start), from_end(end));
    if step > 0 {
        let (start, end) = (start.clamp(0, dim), end.clamp(0, dim));
        let len = if end > start { (end - start - 1) / step + 1 } else { 0 };
        (start as usize, len as usize)
    } else if dim == 0 {
        (0, 0)
    } else {
        // Walking backwards, start is the last element at most and end may be one
        // before the first.
        let (start, end) = (start.clamp(0, dim - 1), end.clamp(-1, dim - 1));
        let len = if start > end { (start - end - 1) / -step + 1 } else { 0 };
        (start as usize, len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::window;
    use smelt_ir::{DType, Op, Tensor};

    /// The indices ONNX's slice rule picks, walked one step at a time. Unlike
    /// Python's slicing, a start before the first element with a negative step
    /// clamps to the first element (onnxruntime agrees).
    fn indices(start: i64, end: i64, step: i64, dim: usize) -> Vec<usize> {
        if dim == 0 {
            return Vec::new();
        }
        let dim = dim as i64;
        let (lower, upper) = if step > 0 { (0, dim) } else { (0, dim - 1) };
        let adjust = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let mut i = adjust(start).min(upper).max(lower);
        let end = adjust(end).min(upper).max(if step > 0 { 0 } else { -1 });
        let mut out = Vec::new();
        while (step > 0 && i < end) || (step < 0 && i > end) {
            out.push(i as usize);
            match i.checked_add(step) {
                Some(next) => i = next,
                None => break,
            }
        }
        out
    }

    #[test]
    fn windows_match_stepping() {
        let bounds = [i64::MIN, -9, -5, -4, -1, 0, 1, 2, 3, 4, 5, 9, i64::MAX];
        for dim in [0, 1, 4, 5] {
            for &start in &bounds {
                for &end in &bounds {
                    for step in [i64::MIN, -3, -2, -1, 1, 2, 3, i64::MAX] {
                        let want = indices(start, end, step, dim);
                        let (first, len) = window(start, end, step, dim);
                        assert_eq!(len, want.len(), "{start}:{end}:{step} of {dim}");
                        if len > 0 {
                            assert_eq!(first, want[0], "{start}:{end}:{step} of {dim}");
                        }
                    }
                }
            }
        }
    }

    fn check(x: &Tensor, starts: &[i64], ends: &[i64], axes: Option<&[i64]>, steps: Option<&[i64]>, i32: bool) {
        let rank = x.rank() as i64;
        let all: Vec<i64> = (0..starts.len() as i64).collect();
        let axes_v = axes.unwrap_or(&all);
        let mut picks: Vec<Vec<usize>> = x.shape().iter().map(|&n| (0..n).collect()).collect();
        for (i, &a) in axes_v.iter().enumerate() {
            let a = a.rem_euclid(rank) as usize;
            let step = steps.map_or(1, |s| s[i]);
            picks[a] = indices(starts[i], ends[i], step, x.shape()[a]);
        }
        let shape: Vec<usize> = picks.iter().map(Vec::len).collect();
        let want = by_index(x, &shape, &[], |o| Some(o.iter().enumerate().map(|(k, &i)| picks[k][i]).collect()));
        let ints = |v: &[i64]| {
            if i32 {
                i32s(&v.iter().map(|&x| x.clamp(i32::MIN as i64, i32::MAX as i64) as i32).collect::<Vec<_>>())
            } else {
                i64s(v)
            }
        };
        let (s, e) = (ints(starts), ints(ends));
        let a = axes.map(ints);
        let st = steps.map(ints);
        let inputs = [Some(x), Some(&s), Some(&e), a.as_ref(), st.as_ref()];
        let got = run1(&Op::Slice, &inputs, x.dtype(), &shape).unwrap();
        assert_eq!(got, want, "{starts:?} {ends:?} {axes:?} {steps:?}");
    }

    #[test]
    fn slices_match_the_reference() {
        let mut rng = Rng::new(21);
        for dtype in TEST_DTYPES {
            let x = random(&mut rng, dtype, &[5, 6, 7]);
            for i32 in [false, true] {
                check(&x, &[1, 2], &[4, -1], None, None, i32);
                check(&x, &[0], &[i64::MAX], Some(&[-1]), Some(&[2]), i32);
                check(&x, &[-1, 5, 6], &[i64::MIN, 0, -100], Some(&[0, 1, 2]), Some(&[-1, -2, -3]), i32);
                check(&x, &[4, 1], &[1, 5], Some(&[2, 0]), Some(&[-1, 3]), i32);
                check(&x, &[3], &[3], Some(&[1]), None, i32);
                check(&x, &[10], &[20], Some(&[1]), None, i32);
                check(&x, &[0, 0, 0], &[5, 6, 7], None, Some(&[1, 1, 1]), i32);
            }
        }
        let x = random(&mut rng, DType::F32, &[20, 10, 5]);
        check(&x, &[20, 10, 4], &[0, 0, 1], Some(&[0, 1, 2]), Some(&[-1, -3, -2]), false);
        let big = random(&mut rng, DType::F32, &[64, 64, 32]);
        check(&big, &[1, -1], &[64, 0], Some(&[0, 2]), Some(&[1, -1]), false);
        let empty = random(&mut rng, DType::F16, &[0, 4]);
        check(&empty, &[0, 1], &[-1, 3], None, Some(&[-1, 1]), false);
    }

    #[test]
    fn bad_slices_are_errors() {
        let x = random(&mut Rng::new(22), DType::F32, &[4, 4]);
        let run_with = |s: &[i64], e: &[i64], a: &[i64], st: &[i64]| {
            let (s, e, a, st) = (i64s(s), i64s(e), i64s(a), i64s(st));
            run1(&Op::Slice, &[Some(&x), Some(&s), Some(&e), Some(&a), Some(&st)], DType::F32, &[2, 4])
        };
        assert!(run_with(&[0], &[2], &[0], &[0]).is_err());
        assert!(run_with(&[0], &[2], &[2], &[1]).is_err());
        assert!(run_with(&[0, 0], &[2, 2], &[0, -2], &[1, 1]).is_err());
        assert!(run_with(&[0], &[2, 3], &[0], &[1]).is_err());
        assert!(run_with(&[0], &[3], &[0], &[1]).is_err());
        assert!(run_with(&[0], &[2], &[0], &[1]).is_ok());
        let f = Tensor::scalar(0f32).reshaped(&[1]).unwrap();
        assert!(run1(&Op::Slice, &[Some(&x), Some(&f), Some(&f)], DType::F32, &[0, 4]).is_err());
    }
}
