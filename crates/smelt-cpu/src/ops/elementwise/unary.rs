//! Unary ops: floats through [`crate::ops::activation`], plus the integer and bool
//! forms ONNX defines (Abs/Neg/Sign/Relu on integers, BitwiseNot, Not, IsNaN/IsInf).

use super::checked::{expect_dtype, expect_shape, slice, slice_mut};
use crate::ops::activation::{map_slice_f32, map_slice_f64};
use crate::ops::broadcast::for_each_chunk;
use crate::{CpuError, Result};
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use smelt_ir::{DType, Element, TensorView, TensorViewMut, UnaryOp};

pub(super) fn eval(op: &UnaryOp, x: TensorView, out: &mut TensorViewMut) -> Result<()> {
    let name = op.name();
    expect_shape(name, "output", out.shape, x.shape)?;
    match op {
        UnaryOp::IsNaN | UnaryOp::IsInf { .. } => {
            expect_dtype(name, "output", out.dtype, DType::Bool)?;
            return float_predicate(op, x, out);
        }
        _ => expect_dtype(name, "output", out.dtype, x.dtype)?,
    }
    match x.dtype {
        DType::F32 => {
            let (src, dst) = (slice::<f32>(name, "input", &x)?, slice_mut::<f32>(name, "output", out)?);
            for_each_chunk(dst, |start, d| map_slice_f32(op, &src[start..start + d.len()], d));
            Ok(())
        }
        DType::F64 => {
            let (src, dst) = (slice::<f64>(name, "input", &x)?, slice_mut::<f64>(name, "output", out)?);
            for_each_chunk(dst, |start, d| map_slice_f64(op, &src[start..start + d.len()], d));
            Ok(())
        }
        DType::F16 if op_on_floats(op) => half_via_f32::<f16>(op, x, out),
        DType::BF16 if op_on_floats(op) => half_via_f32::<bf16>(op, x, out),
        DType::Bool if *op == UnaryOp::Not => {
            let (src, dst) = (slice::<u8>(name, "input", &x)?, slice_mut::<u8>(name, "output", out)?);
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = (s == 0) as u8;
            }
            Ok(())
        }
        DType::I8 => int_op::<i8>(op, x, out),
        DType::I16 => int_op::<i16>(op, x, out),
        DType::I32 => int_op::<i32>(op, x, out),
        DType::I64 => int_op::<i64>(op, x, out),
        DType::U8 => int_op::<u8>(op, x, out),
        DType::U16 => int_op::<u16>(op, x, out),
        DType::U32 => int_op::<u32>(op, x, out),
        DType::U64 => int_op::<u64>(op, x, out),
        dtype => Err(CpuError::UnsupportedDType { op: name, dtype }),
    }
}

/// Whether `op` maps floats to floats (everything but the integer and bool ops).
fn op_on_floats(op: &UnaryOp) -> bool {
    !matches!(op, UnaryOp::Not | UnaryOp::BitwiseNot | UnaryOp::IsNaN | UnaryOp::IsInf { .. })
}

/// Elements converted through a small f32 buffer, computed in f32, rounded back.
fn half_via_f32<T>(op: &UnaryOp, x: TensorView, out: &mut TensorViewMut) -> Result<()>
where
    T: Element,
    [T]: HalfFloatSliceExt,
{
    let name = op.name();
    let (src, dst) = (slice::<T>(name, "input", &x)?, slice_mut::<T>(name, "output", out)?);
    for_each_chunk(dst, |start, d| {
        let mut buf = [0f32; 256];
        for (s, d) in src[start..start + d.len()].chunks(256).zip(d.chunks_mut(256)) {
            let b = &mut buf[..s.len()];
            s.convert_to_f32_slice(b);
            crate::ops::activation::apply_slice_f32(op, b);
            d.convert_from_f32_slice(b);
        }
    });
    Ok(())
}

/// IsNaN / IsInf: a float input, a bool output.
fn float_predicate(op: &UnaryOp, x: TensorView, out: &mut TensorViewMut) -> Result<()> {
    let name = op.name();
    let (pos, neg) = match *op {
        UnaryOp::IsInf { detect_positive, detect_negative } => (detect_positive, detect_negative),
        _ => (false, false),
    };
    let is_nan = matches!(op, UnaryOp::IsNaN);
    let test = move |v: f64| -> u8 {
        let hit = if is_nan { v.is_nan() } else { (pos && v == f64::INFINITY) || (neg && v == f64::NEG_INFINITY) };
        hit as u8
    };
    let dst = slice_mut::<u8>(name, "output", out)?;
    match x.dtype {
        DType::F32 => predicate_loop(slice::<f32>(name, "input", &x)?, dst, test),
        DType::F64 => predicate_loop(slice::<f64>(name, "input", &x)?, dst, test),
        DType::F16 => predicate_loop(slice::<f16>(name, "input", &x)?, dst, test),
        DType::BF16 => predicate_loop(slice::<bf16>(name, "input", &x)?, dst, test),
        dtype => return Err(CpuError::UnsupportedDType { op: name, dtype }),
    }
    Ok(())
}

fn predicate_loop<T: Element>(src: &[T], dst: &mut [u8], test: impl Fn(f64) -> u8) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = test(s.to_f64());
    }
}

/// The integer forms of the unary ops.
trait IntUnary: Element {
    fn abs(self) -> Self;
    fn neg(self) -> Self;
    fn sign(self) -> Self;
    fn relu(self) -> Self;
    fn not(self) -> Self;
}

macro_rules! int_unary_signed {
    ($($t:ty),*) => {$(
        impl IntUnary for $t {
            // Wrapping, as C++ does: Abs(-128i8) and Neg(-128i8) are -128.
            fn abs(self) -> $t { self.wrapping_abs() }
            fn neg(self) -> $t { self.wrapping_neg() }
            fn sign(self) -> $t { self.signum() }
            fn relu(self) -> $t { self.max(0) }
            fn not(self) -> $t { !self }
        }
    )*};
}
macro_rules! int_unary_unsigned {
    ($($t:ty),*) => {$(
        impl IntUnary for $t {
            fn abs(self) -> $t { self }
            fn neg(self) -> $t { self.wrapping_neg() }
            fn sign(self) -> $t { (self > 0) as $t }
            fn relu(self) -> $t { self }
            fn not(self) -> $t { !self }
        }
    )*};
}
int_unary_signed!(i8, i16, i32, i64);
int_unary_unsigned!(u8, u16, u32, u64);

fn int_op<T: IntUnary>(op: &UnaryOp, x: TensorView, out: &mut TensorViewMut) -> Result<()> {
    let name = op.name();
    let f: fn(T) -> T = match op {
        UnaryOp::Abs => T::abs,
        UnaryOp::Neg => T::neg,
        UnaryOp::Sign => T::sign,
        UnaryOp::Relu => T::relu,
        UnaryOp::BitwiseNot => T::not,
        _ => return Err(CpuError::UnsupportedDType { op: name, dtype: x.dtype }),
    };
    let (src, dst) = (slice::<T>(name, "input", &x)?, slice_mut::<T>(name, "output", out)?);
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f(s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::ops::activation::apply_f32;
    use half::{bf16, f16};
    use smelt_ir::{DType, Op, Tensor, UnaryOp};

    fn unary(op: UnaryOp, x: &Tensor, dtype: DType) -> Tensor {
        run1(&Op::Unary(op), &[x], dtype, x.shape()).unwrap()
    }

    #[test]
    fn float_ops_match_the_scalar_definition() {
        let mut rng = Rng::new(1);
        // Large enough to take the parallel path.
        let x = rng.tensor_f32(&[3, 50_000], -4.0, 4.0);
        for op in [UnaryOp::Erf, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Gelu { tanh: false }, UnaryOp::Abs] {
            let y = unary(op.clone(), &x, DType::F32);
            let want: Vec<f32> = x.as_slice::<f32>().unwrap().iter().map(|&v| apply_f32(&op, v)).collect();
            if op == (UnaryOp::Gelu { tanh: false }) {
                // The slice form fuses its multiply-adds where the CPU has FMA.
                for (&got, &want) in y.as_slice::<f32>().unwrap().iter().zip(&want) {
                    assert!((got - want).abs() <= 4e-6 * want.abs(), "{op:?}: {got} vs {want}");
                }
            } else {
                assert_eq!(y.as_slice::<f32>().unwrap(), &want[..], "{op:?}");
            }
        }
    }

    #[test]
    fn f64_uses_double_precision() {
        let x = Tensor::from_vec(&[3], vec![0.5f64, -1.25, 3.0]).unwrap();
        let y = unary(UnaryOp::Exp, &x, DType::F64);
        assert_eq!(y.as_slice::<f64>().unwrap(), &[0.5f64.exp(), (-1.25f64).exp(), 3f64.exp()]);
        let y = unary(UnaryOp::Erf, &x, DType::F64);
        assert!((y.as_slice::<f64>().unwrap()[0] - 0.5204998778130465).abs() < 1e-15);
    }

    #[test]
    fn half_types_compute_in_f32() {
        let vals = [0.5f32, -1.25, 3.0, -0.1];
        let x = Tensor::from_vec(&[4], vals.map(f16::from_f32).to_vec()).unwrap();
        let y = unary(UnaryOp::Sigmoid, &x, DType::F16);
        let want: Vec<f16> =
            vals.iter().map(|&v| f16::from_f32(apply_f32(&UnaryOp::Sigmoid, f16::from_f32(v).to_f32()))).collect();
        assert_eq!(y.as_slice::<f16>().unwrap(), &want[..]);
        let x = Tensor::from_vec(&[4], vals.map(bf16::from_f32).to_vec()).unwrap();
        let y = unary(UnaryOp::Neg, &x, DType::BF16);
        assert_eq!(y.to_f64_vec(), vec![-0.5, 1.25, -3.0, bf16::from_f32(0.1).to_f64()]);
    }

    #[test]
    fn integer_and_bool_forms() {
        let x = Tensor::from_vec(&[4], vec![-128i8, -5, 0, 7]).unwrap();
        assert_eq!(unary(UnaryOp::Abs, &x, DType::I8).to_i64_vec(), vec![-128, 5, 0, 7]);
        assert_eq!(unary(UnaryOp::Neg, &x, DType::I8).to_i64_vec(), vec![-128, 5, 0, -7]);
        assert_eq!(unary(UnaryOp::Sign, &x, DType::I8).to_i64_vec(), vec![-1, -1, 0, 1]);
        assert_eq!(unary(UnaryOp::Relu, &x, DType::I8).to_i64_vec(), vec![0, 0, 0, 7]);
        assert_eq!(unary(UnaryOp::BitwiseNot, &x, DType::I8).to_i64_vec(), vec![127, 4, -1, -8]);
        let u = Tensor::from_vec(&[2], vec![0u16, 5]).unwrap();
        assert_eq!(unary(UnaryOp::BitwiseNot, &u, DType::U16).to_i64_vec(), vec![65535, 65530]);
        let b = Tensor::from_bools(&[3], &[true, false, true]).unwrap();
        assert_eq!(unary(UnaryOp::Not, &b, DType::Bool).as_slice::<u8>().unwrap(), &[0, 1, 0]);
        assert!(run1(&Op::Unary(UnaryOp::Exp), &[&x], DType::I8, &[4]).is_err());
    }

    #[test]
    fn predicates_give_bools() {
        let x = Tensor::from_vec(&[4], vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]).unwrap();
        let nan = unary(UnaryOp::IsNaN, &x, DType::Bool);
        assert_eq!(nan.as_slice::<u8>().unwrap(), &[1, 0, 0, 0]);
        let inf = unary(UnaryOp::IsInf { detect_positive: true, detect_negative: true }, &x, DType::Bool);
        assert_eq!(inf.as_slice::<u8>().unwrap(), &[0, 1, 1, 0]);
        let pos = unary(UnaryOp::IsInf { detect_positive: true, detect_negative: false }, &x, DType::Bool);
        assert_eq!(pos.as_slice::<u8>().unwrap(), &[0, 1, 0, 0]);
    }

    #[test]
    fn empty_tensors() {
        let x = Tensor::from_vec::<f32>(&[0, 3], vec![]).unwrap();
        assert_eq!(unary(UnaryOp::Tanh, &x, DType::F32).shape(), &[0, 3]);
    }
}
