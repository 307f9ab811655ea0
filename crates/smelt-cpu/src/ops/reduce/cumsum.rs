//! CumSum along an axis given as an input, with `exclusive` and `reverse`.
//! f16/bf16 accumulate in f32; integers wrap.

use super::split_at_axis;
use crate::ops::elementwise::checked::{expect_dtype, expect_shape, int_values, normalize_axis, slice, slice_mut};
use crate::ops::elementwise::num::Num;
use crate::{CpuError, Result};
use half::{bf16, f16};
use smelt_ir::{DType, TensorView, TensorViewMut};

const OP: &str = "CumSum";

pub(super) fn eval(
    exclusive: bool,
    reverse: bool,
    x: TensorView,
    axis: TensorView,
    out: &mut TensorViewMut,
) -> Result<()> {
    expect_shape(OP, "output", out.shape, x.shape)?;
    expect_dtype(OP, "output", out.dtype, x.dtype)?;
    let axis = match int_values(OP, "axis", &axis)?.as_slice() {
        [a] => *a,
        other => return Err(CpuError::invalid(OP, format!("axis must hold one value, got {other:?}"))),
    };
    // A scalar is a one-element vector.
    let shape: Vec<usize> = if x.shape.is_empty() { vec![1] } else { x.shape.to_vec() };
    let axis = normalize_axis(OP, axis, shape.len())?;
    let dims = split_at_axis(&shape, axis);
    let flags = (exclusive, reverse);
    macro_rules! run_as {
        ($T:ty, $A:ty, $load:expr, $store:expr) => {{
            let (src, dst) = (slice::<$T>(OP, "input", &x)?, slice_mut::<$T>(OP, "output", out)?);
            cumulate::<$T, $A>(src, dst, dims, flags, $load, $store);
            Ok(())
        }};
    }
    match x.dtype {
        DType::F32 => run_as!(f32, f32, |v| v, |a| a),
        DType::F64 => run_as!(f64, f64, |v| v, |a| a),
        DType::F16 => run_as!(f16, f32, |v: f16| v.to_f32(), f16::from_f32),
        DType::BF16 => run_as!(bf16, f32, |v: bf16| v.to_f32(), bf16::from_f32),
        DType::I8 => run_as!(i8, i8, |v| v, |a| a),
        DType::I16 => run_as!(i16, i16, |v| v, |a| a),
        DType::I32 => run_as!(i32, i32, |v| v, |a| a),
        DType::I64 => run_as!(i64, i64, |v| v, |a| a),
        DType::U8 => run_as!(u8, u8, |v| v, |a| a),
        DType::U16 => run_as!(u16, u16, |v| v, |a| a),
        DType::U32 => run_as!(u32, u32, |v| v, |a| a),
        DType::U64 => run_as!(u64, u64, |v| v, |a| a),
        DType::Bool => Err(CpuError::UnsupportedDType { op: OP, dtype: DType::Bool }),
    }
}

/// Running sums over `[outer, n, inner]` along `n`, a row of `inner` lanes at a time.
fn cumulate<T: Copy, A: Num>(
    x: &[T],
    y: &mut [T],
    (outer, n, inner): (usize, usize, usize),
    (exclusive, reverse): (bool, bool),
    load: impl Fn(T) -> A,
    store: impl Fn(A) -> T,
) {
    let block = n * inner;
    if block == 0 {
        return;
    }
    let mut acc = vec![A::ZERO; inner];
    for (xb, yb) in x.chunks_exact(block).zip(y.chunks_exact_mut(block)).take(outer) {
        acc.fill(A::ZERO);
        for step in 0..n {
            let r = if reverse { n - 1 - step } else { step };
            let (xr, yr) = (&xb[r * inner..(r + 1) * inner], &mut yb[r * inner..(r + 1) * inner]);
            for ((a, y), &v) in acc.iter_mut().zip(yr.iter_mut()).zip(xr) {
                if exclusive {
                    *y = store(*a);
                    *a = a.add(load(v));
                } else {
                    *a = a.add(load(v));
                    *y = store(*a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ops::elementwise::testing::*;
    use smelt_ir::{DType, Op, Tensor};

    fn cumsum(x: &Tensor, axis: i64, exclusive: bool, reverse: bool) -> Vec<f64> {
        let axis = Tensor::scalar(axis);
        run1(&Op::CumSum { exclusive, reverse }, &[x, &axis], x.dtype(), x.shape()).unwrap().to_f64_vec()
    }

    #[test]
    fn all_flag_combinations() {
        let x = Tensor::from_vec(&[5], vec![1f32, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(cumsum(&x, 0, false, false), vec![1.0, 3.0, 6.0, 10.0, 15.0]);
        assert_eq!(cumsum(&x, 0, true, false), vec![0.0, 1.0, 3.0, 6.0, 10.0]);
        assert_eq!(cumsum(&x, 0, false, true), vec![15.0, 14.0, 12.0, 9.0, 5.0]);
        assert_eq!(cumsum(&x, 0, true, true), vec![14.0, 12.0, 9.0, 5.0, 0.0]);
    }

    #[test]
    fn along_inner_and_outer_axes() {
        let x = Tensor::from_vec(&[2, 3], vec![1i32, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(cumsum(&x, 0, false, false), vec![1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
        assert_eq!(cumsum(&x, -1, false, false), vec![1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
        let axis = Tensor::from_vec(&[1], vec![1i32]).unwrap();
        let y = run1(&Op::CumSum { exclusive: false, reverse: true }, &[&x, &axis], DType::I32, &[2, 3]).unwrap();
        assert_eq!(y.to_i64_vec(), vec![6, 5, 3, 15, 11, 6]);
        let bad = Tensor::scalar(2i64);
        assert!(run1(&Op::CumSum { exclusive: false, reverse: false }, &[&x, &bad], DType::I32, &[2, 3]).is_err());
        let empty = Tensor::from_vec::<f32>(&[0, 3], vec![]).unwrap();
        assert!(cumsum(&empty, 1, false, false).is_empty());
    }
}
