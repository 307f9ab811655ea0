//! Ops over more than two operands: Min/Max/Sum/Mean (n-way broadcasting), Clip
//! (with optional scalar bounds) and Where.

use super::binary::{dispatch_num, zip_assign};
use super::checked::{expect_dtype, expect_shape, slice, slice_mut};
use super::num::Num;
use crate::ops::broadcast::{broadcast_shape, for_each_chunk, Broadcast};
use crate::{CpuError, Result};
use half::{bf16, f16};
use smallvec::SmallVec;
use smelt_ir::{DType, Element, TensorView, TensorViewMut, VariadicOp};

fn variadic_name(op: VariadicOp) -> &'static str {
    match op {
        VariadicOp::Min => "Min",
        VariadicOp::Max => "Max",
        VariadicOp::Sum => "Sum",
        VariadicOp::Mean => "Mean",
    }
}

pub(super) fn variadic(op: VariadicOp, inputs: &[TensorView], out: &mut TensorViewMut) -> Result<()> {
    let name = variadic_name(op);
    if inputs.is_empty() {
        return Err(CpuError::invalid(name, "needs at least one input"));
    }
    let shapes = input_shapes(inputs);
    let shape = broadcast_shape(&shapes)
        .ok_or_else(|| CpuError::invalid(name, format!("input shapes {shapes:?} do not broadcast")))?;
    expect_shape(name, "output", out.shape, &shape)?;
    for (i, t) in inputs.iter().enumerate() {
        expect_dtype(name, format_args!("input {i}"), t.dtype, out.dtype)?;
    }
    match out.dtype {
        // Sum and Mean of f16/bf16 accumulate in f32 and round once at the end.
        DType::F16 if matches!(op, VariadicOp::Sum | VariadicOp::Mean) => half_sum::<f16>(op, inputs, out),
        DType::BF16 if matches!(op, VariadicOp::Sum | VariadicOp::Mean) => half_sum::<bf16>(op, inputs, out),
        dtype => dispatch_num!(dtype, name, T => {
            let dst = slice_mut::<T>(name, "output", out)?;
            fold_inputs::<T, T>(name, inputs, dst, |_, y| y, |acc, y| combine(op, acc, y))?;
            if op == VariadicOp::Mean {
                let n = T::from_f64_trunc(inputs.len() as f64);
                for_each_chunk(dst, |_, c| c.iter_mut().for_each(|v| *v = v.div(n)));
            }
            Ok(())
        }),
    }
}

/// The shapes of `inputs`, inline for up to four of them.
fn input_shapes<'a>(inputs: &[TensorView<'a>]) -> SmallVec<[&'a [usize]; 4]> {
    inputs.iter().map(|t| t.shape).collect()
}

/// One step of a variadic op. Min and Max let NaN win, as onnxruntime does.
#[inline(always)]
fn combine<T: Num>(op: VariadicOp, acc: T, y: T) -> T {
    match op {
        VariadicOp::Max => {
            if y > acc || y.is_nan() {
                y
            } else {
                acc
            }
        }
        VariadicOp::Min => {
            if y < acc || y.is_nan() {
                y
            } else {
                acc
            }
        }
        VariadicOp::Sum | VariadicOp::Mean => acc.add(y),
    }
}

/// `dst = first(input 0)`, then `dst = step(dst, input k)` for each further input,
/// every input broadcast to `dst`'s shape.
fn fold_inputs<T: Element, O: Copy + Send + Default>(
    name: &'static str,
    inputs: &[TensorView],
    dst: &mut [O],
    first: impl Fn(O, T) -> O + Sync,
    step: impl Fn(O, T) -> O + Sync,
) -> Result<()> {
    let out_shape = broadcast_shape(&input_shapes(inputs)).unwrap_or_default();
    for (i, t) in inputs.iter().enumerate() {
        let plan = Broadcast::new(&out_shape, &[t.shape]).map_err(|m| CpuError::invalid(name, m))?;
        let src = slice::<T>(name, format_args!("input {i}"), t)?;
        if i == 0 {
            zip_assign(&plan, dst, src, &first);
        } else {
            zip_assign(&plan, dst, src, &step);
        }
    }
    Ok(())
}

fn half_sum<T: Num>(op: VariadicOp, inputs: &[TensorView], out: &mut TensorViewMut) -> Result<()> {
    let name = variadic_name(op);
    let mut acc = vec![0f32; out.len()];
    fold_inputs::<T, f32>(name, inputs, &mut acc, |_, y| y.to_f32(), |a, y| a + y.to_f32())?;
    let scale = if op == VariadicOp::Mean { 1.0 / inputs.len() as f32 } else { 1.0 };
    let dst = slice_mut::<T>(name, "output", out)?;
    for (d, &a) in dst.iter_mut().zip(&acc) {
        *d = T::from_f32(if scale == 1.0 { a } else { a * scale });
    }
    Ok(())
}

/// Clip with optional scalar bounds. Applied as `min(max(x, lo), hi)`, so `lo > hi`
/// gives `hi` everywhere (the ONNX rule) and NaN passes through (onnxruntime).
pub(super) fn clip(
    x: TensorView,
    lo: Option<TensorView>,
    hi: Option<TensorView>,
    out: &mut TensorViewMut,
) -> Result<()> {
    const OP: &str = "Clip";
    expect_shape(OP, "output", out.shape, x.shape)?;
    expect_dtype(OP, "output", out.dtype, x.dtype)?;
    dispatch_num!(x.dtype, OP, T => {
        let lo = bound::<T>(lo, "min")?.unwrap_or(T::LOWEST);
        let hi = bound::<T>(hi, "max")?.unwrap_or(T::HIGHEST);
        let src = slice::<T>(OP, "input", &x)?;
        let dst = slice_mut::<T>(OP, "output", out)?;
        for_each_chunk(dst, |start, d| {
            for (d, &v) in d.iter_mut().zip(&src[start..]) {
                let v = if v < lo { lo } else { v };
                *d = if v > hi { hi } else { v };
            }
        });
        Ok(())
    })
}

/// A Clip bound: absent or empty means no bound; otherwise one element of x's dtype.
fn bound<T: Num>(t: Option<TensorView>, what: &str) -> Result<Option<T>> {
    let Some(t) = t else { return Ok(None) };
    if t.is_empty() {
        return Ok(None);
    }
    expect_dtype("Clip", what, t.dtype, T::DTYPE)?;
    match slice::<T>("Clip", what, &t)? {
        [v] => Ok(Some(*v)),
        _ => Err(CpuError::invalid("Clip", format!("{what} must be a scalar, got shape {:?}", t.shape))),
    }
}

/// Where: `out = cond ? x : y`, all three broadcast together. Only element sizes
/// matter, so the copy runs on unsigned integers of the element's width.
pub(super) fn where_(cond: TensorView, x: TensorView, y: TensorView, out: &mut TensorViewMut) -> Result<()> {
    const OP: &str = "Where";
    expect_dtype(OP, "condition", cond.dtype, DType::Bool)?;
    expect_dtype(OP, "input 2", y.dtype, x.dtype)?;
    expect_dtype(OP, "output", out.dtype, x.dtype)?;
    let shape = broadcast_shape(&[cond.shape, x.shape, y.shape]).ok_or_else(|| {
        CpuError::invalid(OP, format!("shapes {:?}, {:?} and {:?} do not broadcast", cond.shape, x.shape, y.shape))
    })?;
    expect_shape(OP, "output", out.shape, &shape)?;
    let plan = Broadcast::new(&shape, &[cond.shape, x.shape, y.shape]).map_err(|m| CpuError::invalid(OP, m))?;
    let c = slice::<u8>(OP, "condition", &cond)?;
    // Reinterpret by width: the slices below are checked by `slice` against a dtype of
    // the same size.
    macro_rules! by_width {
        ($u:ty, $d:expr) => {{
            let xv = TensorView { dtype: $d, ..x };
            let yv = TensorView { dtype: $d, ..y };
            let mut ov = TensorViewMut { dtype: $d, shape: out.shape, data: &mut *out.data };
            let (xs, ys) = (slice::<$u>(OP, "input 1", &xv)?, slice::<$u>(OP, "input 2", &yv)?);
            select(&plan, c, xs, ys, slice_mut::<$u>(OP, "output", &mut ov)?);
            Ok(())
        }};
    }
    match x.dtype.size() {
        1 => by_width!(u8, DType::U8),
        2 => by_width!(u16, DType::U16),
        4 => by_width!(u32, DType::U32),
        _ => by_width!(u64, DType::U64),
    }
}

fn select<T: Copy + Send + Sync>(plan: &Broadcast, c: &[u8], x: &[T], y: &[T], out: &mut [T]) {
    let s = plan.inner_strides();
    let (sc, sx, sy) = (s[0], s[1], s[2]);
    for_each_chunk(out, |start, chunk| {
        plan.for_each_segment(start..start + chunk.len(), |pos, offs, n| {
            let o = &mut chunk[pos - start..pos - start + n];
            let (oc, ox, oy) = (offs[0], offs[1], offs[2]);
            if n == 0 {
                return;
            }
            let c = &c[oc..oc + (n - 1) * sc + 1];
            // Contiguous runs, with x or y possibly one broadcast value (an attention
            // mask's fill), vectorise; anything else indexes per element.
            crate::ops::wide::run(|| match (sc, sx, sy) {
                (1, 1, 1) => {
                    for (((o, &c), &x), &y) in o.iter_mut().zip(c).zip(&x[ox..ox + n]).zip(&y[oy..oy + n]) {
                        *o = if c != 0 { x } else { y };
                    }
                }
                (1, 1, 0) => {
                    let y = y[oy];
                    for ((o, &c), &x) in o.iter_mut().zip(c).zip(&x[ox..ox + n]) {
                        *o = if c != 0 { x } else { y };
                    }
                }
                (1, 0, 1) => {
                    let x = x[ox];
                    for ((o, &c), &y) in o.iter_mut().zip(c).zip(&y[oy..oy + n]) {
                        *o = if c != 0 { x } else { y };
                    }
                }
                _ => {
                    for (i, o) in o.iter_mut().enumerate() {
                        *o = if c[i * sc] != 0 { x[ox + i * sx] } else { y[oy + i * sy] };
                    }
                }
            })
        });
    });
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use half::f16;
    use smelt_ir::{DType, Op, Tensor, VariadicOp};

    fn variadic(op: VariadicOp, ins: &[&Tensor], dtype: DType, shape: &[usize]) -> Tensor {
        run1(&Op::Variadic(op), ins, dtype, shape).unwrap()
    }

    #[test]
    fn three_way_broadcasting() {
        let a = Tensor::from_vec(&[2, 1], vec![1f32, 10.0]).unwrap();
        let b = Tensor::from_vec(&[3], vec![0.5f32, 20.0, -1.0]).unwrap();
        let c = Tensor::scalar(2f32);
        let sum = variadic(VariadicOp::Sum, &[&a, &b, &c], DType::F32, &[2, 3]);
        assert_eq!(sum.to_f64_vec(), vec![3.5, 23.0, 2.0, 12.5, 32.0, 11.0]);
        let mean = variadic(VariadicOp::Mean, &[&a, &b, &c], DType::F32, &[2, 3]);
        assert_close(&mean.to_f64_vec(), &[3.5 / 3.0, 23.0 / 3.0, 2.0 / 3.0, 12.5 / 3.0, 32.0 / 3.0, 11.0 / 3.0], 1e-6);
        let max = variadic(VariadicOp::Max, &[&a, &b, &c], DType::F32, &[2, 3]);
        assert_eq!(max.to_f64_vec(), vec![2.0, 20.0, 2.0, 10.0, 20.0, 10.0]);
        let min = variadic(VariadicOp::Min, &[&a, &b, &c], DType::F32, &[2, 3]);
        assert_eq!(min.to_f64_vec(), vec![0.5, 1.0, -1.0, 0.5, 2.0, -1.0]);
        let one = variadic(VariadicOp::Sum, &[&b], DType::F32, &[3]);
        assert_eq!(one, b);
    }

    #[test]
    fn min_max_propagate_nan_and_work_on_ints() {
        let a = Tensor::from_vec(&[3], vec![f32::NAN, 1.0, 2.0]).unwrap();
        let b = Tensor::from_vec(&[3], vec![1f32, f32::NAN, 0.0]).unwrap();
        let max = variadic(VariadicOp::Max, &[&a, &b], DType::F32, &[3]).to_f64_vec();
        assert!(max[0].is_nan() && max[1].is_nan() && max[2] == 2.0);
        let min = variadic(VariadicOp::Min, &[&a, &b], DType::F32, &[3]).to_f64_vec();
        assert!(min[0].is_nan() && min[1].is_nan() && min[2] == 0.0);
        let i = Tensor::from_vec(&[2], vec![1u8, 200]).unwrap();
        let j = Tensor::from_vec(&[2], vec![3u8, 2]).unwrap();
        assert_eq!(variadic(VariadicOp::Max, &[&i, &j], DType::U8, &[2]).to_i64_vec(), vec![3, 200]);
        let mean = Tensor::from_vec(&[2], vec![f16::from_f32(1.0), f16::from_f32(2.0)]).unwrap();
        let mean = variadic(VariadicOp::Mean, &[&mean, &mean, &mean], DType::F16, &[2]);
        assert_eq!(mean.to_f64_vec(), vec![1.0, 2.0]);
    }

    #[test]
    fn clip_bounds() {
        let x = Tensor::from_vec(&[4], vec![f32::NAN, -5.0, 5.0, 1.0]).unwrap();
        let (lo, hi) = (Tensor::scalar(0f32), Tensor::scalar(2f32));
        let y = run(&Op::Clip, &[Some(&x), Some(&lo), Some(&hi)], &[(DType::F32, &[4])]).unwrap().remove(0);
        let y = y.to_f64_vec();
        assert!(y[0].is_nan());
        assert_eq!(&y[1..], &[0.0, 2.0, 1.0]);
        // min > max: everything becomes max.
        let y = run(&Op::Clip, &[Some(&x), Some(&hi), Some(&lo)], &[(DType::F32, &[4])]).unwrap().remove(0);
        assert_eq!(&y.to_f64_vec()[1..], &[0.0, 0.0, 0.0]);
        let xi = Tensor::from_vec(&[3], vec![1i32, 20, -5]).unwrap();
        let lo = Tensor::scalar(0i32);
        let y = run(&Op::Clip, &[Some(&xi), Some(&lo), None], &[(DType::I32, &[3])]).unwrap().remove(0);
        assert_eq!(y.to_i64_vec(), vec![1, 20, 0]);
        let y = run(&Op::Clip, &[Some(&xi)], &[(DType::I32, &[3])]).unwrap().remove(0);
        assert_eq!(y, xi);
        let empty = Tensor::from_vec::<i32>(&[0], vec![]).unwrap();
        let hi = Tensor::from_vec(&[1], vec![3i32]).unwrap();
        let y = run(&Op::Clip, &[Some(&xi), Some(&empty), Some(&hi)], &[(DType::I32, &[3])]).unwrap().remove(0);
        assert_eq!(y.to_i64_vec(), vec![1, 3, -5]);
        let wrong = Tensor::from_vec(&[2], vec![1i32, 2]).unwrap();
        assert!(run(&Op::Clip, &[Some(&xi), Some(&wrong)], &[(DType::I32, &[3])]).is_err());
    }

    #[test]
    fn where_broadcasts_any_dtype() {
        let c = Tensor::from_bools(&[2, 1], &[true, false]).unwrap();
        let x = Tensor::from_vec(&[3], vec![1i64, 2, 3]).unwrap();
        let y = Tensor::scalar(-1i64);
        let out = run1(&Op::Where, &[&c, &x, &y], DType::I64, &[2, 3]).unwrap();
        assert_eq!(out.to_i64_vec(), vec![1, 2, 3, -1, -1, -1]);
        let x = Tensor::from_vec(&[2, 2], vec![f16::ONE; 4]).unwrap();
        let y = Tensor::from_vec(&[2, 2], vec![f16::ZERO; 4]).unwrap();
        let c = Tensor::from_bools(&[2, 2], &[true, false, false, true]).unwrap();
        let out = run1(&Op::Where, &[&c, &x, &y], DType::F16, &[2, 2]).unwrap();
        assert_eq!(out.to_f64_vec(), vec![1.0, 0.0, 0.0, 1.0]);
        let b = Tensor::from_bools(&[2, 2], &[true, true, false, false]).unwrap();
        let out = run1(&Op::Where, &[&c, &b, &c], DType::Bool, &[2, 2]).unwrap();
        assert_eq!(out.as_slice::<u8>().unwrap(), &[1, 0, 0, 0]);
        let mut rng = Rng::new(3);
        let x = rng.tensor_f32(&[40_000], -1.0, 1.0);
        let zeros = Tensor::zeros(DType::F32, &[40_000]);
        let mask: Vec<bool> = x.as_slice::<f32>().unwrap().iter().map(|&v| v > 0.0).collect();
        let c = Tensor::from_bools(&[40_000], &mask).unwrap();
        let out = run1(&Op::Where, &[&c, &x, &zeros], DType::F32, &[40_000]).unwrap();
        let want: Vec<f64> = x.to_f64_vec().iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
        assert_eq!(out.to_f64_vec(), want);
    }

    #[test]
    fn where_with_a_broadcast_fill_either_side() {
        // A causal mask over heads with a scalar fill: runs of cond and one input
        // contiguous, the other a single broadcast value.
        let mut rng = Rng::new(4);
        let scores = rng.tensor_f32(&[2, 3, 4, 8], -1.0, 1.0);
        let mask: Vec<bool> = (0..2 * 4 * 8).map(|i| (i * 7) % 3 != 0).collect();
        let c = Tensor::from_bools(&[2, 1, 4, 8], &mask).unwrap();
        let fill = Tensor::scalar(f32::MIN);
        let s = scores.to_f64_vec();
        let at = |i: usize| mask[(i / 96) * 32 + i % 32];
        let out = run1(&Op::Where, &[&c, &scores, &fill], DType::F32, &[2, 3, 4, 8]).unwrap();
        let want: Vec<f64> = (0..s.len()).map(|i| if at(i) { s[i] } else { f32::MIN as f64 }).collect();
        assert_eq!(out.to_f64_vec(), want);
        let out = run1(&Op::Where, &[&c, &fill, &scores], DType::F32, &[2, 3, 4, 8]).unwrap();
        let want: Vec<f64> = (0..s.len()).map(|i| if at(i) { f32::MIN as f64 } else { s[i] }).collect();
        assert_eq!(out.to_f64_vec(), want);
    }
}
