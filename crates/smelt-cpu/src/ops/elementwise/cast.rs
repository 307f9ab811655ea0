//! Cast between every pair of dtypes, as onnxruntime computes it on x86-64.
//!
//! Integers convert by wrapping (`static_cast`); ints to floats round to nearest;
//! floats to narrower floats round to nearest even; floats to integers truncate
//! toward zero with x86's out-of-range behaviour (see [`Num::from_f64_trunc`]);
//! anything to bool is `x != 0` (so NaN is true), and bool is 0 or 1.

use super::checked::{expect_shape, slice, slice_mut};
use super::num::Num;
use crate::ops::broadcast::for_each_chunk;
use crate::Result;
use half::{bf16, f16};
use smelt_ir::{dispatch_dtype, DType, TensorView, TensorViewMut};

/// A value in the widest form of its kind, the pivot of every conversion.
#[derive(Clone, Copy)]
enum Wide {
    Signed(i64),
    Unsigned(u64),
    Float(f64),
}

trait CastElem: Num {
    fn widen(self) -> Wide;
    fn narrow(w: Wide) -> Self;
}

macro_rules! cast_int {
    ($($t:ty => $variant:ident as $wide:ty),*) => {$(
        impl CastElem for $t {
            #[inline(always)]
            fn widen(self) -> Wide {
                Wide::$variant(self as $wide)
            }
            #[inline(always)]
            fn narrow(w: Wide) -> $t {
                match w {
                    Wide::Signed(v) => v as $t,
                    Wide::Unsigned(v) => v as $t,
                    Wide::Float(v) => <$t as Num>::from_f64_trunc(v),
                }
            }
        }
    )*};
}
cast_int!(
    i8 => Signed as i64, i16 => Signed as i64, i32 => Signed as i64, i64 => Signed as i64,
    u8 => Unsigned as u64, u16 => Unsigned as u64, u32 => Unsigned as u64, u64 => Unsigned as u64
);

macro_rules! cast_float {
    ($($t:ty: $from_f64:expr, $to_f64:expr),*) => {$(
        impl CastElem for $t {
            #[inline(always)]
            fn widen(self) -> Wide {
                let to: fn($t) -> f64 = $to_f64;
                Wide::Float(to(self))
            }
            #[inline(always)]
            fn narrow(w: Wide) -> $t {
                let from: fn(f64) -> $t = $from_f64;
                match w {
                    // A single rounding from the integer straight to the target where
                    // Rust has the conversion; i64 -> f16/bf16 may round twice, which
                    // only matters past 2^53.
                    Wide::Signed(v) => <$t as FromInt>::from_i64(v),
                    Wide::Unsigned(v) => <$t as FromInt>::from_u64(v),
                    // f64 -> f32 -> f16 would round twice; from f64 directly does not,
                    // and f32/f16 sources widen to f64 exactly.
                    Wide::Float(v) => from(v),
                }
            }
        }
    )*};
}

/// Integer-to-float conversions with a single rounding where possible.
trait FromInt {
    fn from_i64(v: i64) -> Self;
    fn from_u64(v: u64) -> Self;
}
impl FromInt for f32 {
    fn from_i64(v: i64) -> f32 {
        v as f32
    }
    fn from_u64(v: u64) -> f32 {
        v as f32
    }
}
impl FromInt for f64 {
    fn from_i64(v: i64) -> f64 {
        v as f64
    }
    fn from_u64(v: u64) -> f64 {
        v as f64
    }
}
impl FromInt for f16 {
    fn from_i64(v: i64) -> f16 {
        f16::from_f64(v as f64)
    }
    fn from_u64(v: u64) -> f16 {
        f16::from_f64(v as f64)
    }
}
impl FromInt for bf16 {
    fn from_i64(v: i64) -> bf16 {
        bf16::from_f64(v as f64)
    }
    fn from_u64(v: u64) -> bf16 {
        bf16::from_f64(v as f64)
    }
}

cast_float!(
    f32: |v| v as f32, |x| x as f64,
    f64: |v| v, |x| x,
    f16: f16::from_f64, f16::to_f64,
    bf16: bf16::from_f64, bf16::to_f64
);

/// Casts `x` to `out`'s dtype; the shapes must be equal.
pub fn cast(x: TensorView, out: &mut TensorViewMut) -> Result<()> {
    const OP: &str = "Cast";
    expect_shape(OP, "output", out.shape, x.shape)?;
    if x.dtype == out.dtype {
        if out.data.len() != x.data.len() {
            return Err(crate::CpuError::invalid(OP, "output buffer size differs from the input's"));
        }
        out.data.copy_from_slice(x.data);
        return Ok(());
    }
    if out.dtype == DType::Bool {
        return dispatch_dtype!(x.dtype, S => {
            let src = slice::<S>(OP, "input", &x)?;
            let dst = slice_mut::<u8>(OP, "output", out)?;
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = !s.is_zero() as u8;
            }
            Ok(())
        });
    }
    // Bool reads as u8 0/1, which is also its value in every other type.
    dispatch_dtype!(x.dtype, S => dispatch_dtype!(out.dtype, D => convert::<S, D>(&x, out)))
}

fn convert<S: CastElem, D: CastElem>(x: &TensorView, out: &mut TensorViewMut) -> Result<()> {
    let src = slice::<S>("Cast", "input", x)?;
    let dst = slice_mut::<D>("Cast", "output", out)?;
    for_each_chunk(dst, |start, d| {
        for (d, &s) in d.iter_mut().zip(&src[start..]) {
            *d = D::narrow(s.widen());
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use half::f16;
    use smelt_ir::{DType, Op, Tensor};

    fn cast(x: &Tensor, to: DType) -> Tensor {
        run1(&Op::Cast { to }, &[x], to, x.shape()).unwrap()
    }

    #[test]
    fn floats_to_integers_truncate_like_onnxruntime() {
        let x = Tensor::from_vec(&[6], vec![f32::NAN, -1.5, 300.7, 3e9, 70000.5, -2.7]).unwrap();
        assert_eq!(cast(&x, DType::I8).to_i64_vec(), vec![0, -1, 44, 0, 112, -2]);
        assert_eq!(cast(&x, DType::U8).to_f64_vec(), vec![0.0, 255.0, 44.0, 0.0, 112.0, 254.0]);
        assert_eq!(cast(&x, DType::I32).to_i64_vec(), vec![i32::MIN as i64, -1, 300, i32::MIN as i64, 70000, -2]);
        assert_eq!(cast(&x, DType::I64).to_i64_vec(), vec![i64::MIN, -1, 300, 3_000_000_000, 70000, -2]);
        let x64 = Tensor::from_vec(&[3], vec![f64::NAN, 3e9, -2.5]).unwrap();
        assert_eq!(cast(&x64, DType::I32).to_i64_vec(), vec![i32::MIN as i64, i32::MIN as i64, -2]);
        let h = Tensor::from_vec(&[3], vec![f16::NAN, f16::from_f32(300.0), f16::from_f32(-2.5)]).unwrap();
        assert_eq!(cast(&h, DType::U8).to_i64_vec(), vec![0, 44, 254]);
    }

    #[test]
    fn to_and_from_bool() {
        let x = Tensor::from_vec(&[4], vec![f32::NAN, 0.0, -0.0, 0.1]).unwrap();
        assert_eq!(cast(&x, DType::Bool).as_slice::<u8>().unwrap(), &[1, 0, 0, 1]);
        let i = Tensor::from_vec(&[3], vec![0i64, -3, 256]).unwrap();
        assert_eq!(cast(&i, DType::Bool).as_slice::<u8>().unwrap(), &[0, 1, 1]);
        let b = Tensor::from_bools(&[2], &[true, false]).unwrap();
        assert_eq!(cast(&b, DType::F32).to_f64_vec(), vec![1.0, 0.0]);
        assert_eq!(cast(&b, DType::I64).to_i64_vec(), vec![1, 0]);
        assert_eq!(cast(&b, DType::F16).as_slice::<f16>().unwrap(), &[f16::ONE, f16::ZERO]);
    }

    #[test]
    fn integer_wrapping_and_float_rounding() {
        let i = Tensor::from_vec(&[3], vec![-1i64, 300, 1 << 40]).unwrap();
        assert_eq!(cast(&i, DType::U8).to_i64_vec(), vec![255, 44, 0]);
        assert_eq!(cast(&i, DType::U64).as_slice::<u64>().unwrap(), &[u64::MAX, 300, 1 << 40]);
        let i8s = Tensor::from_vec(&[2], vec![-1i8, 5]).unwrap();
        assert_eq!(cast(&i8s, DType::U32).as_slice::<u32>().unwrap(), &[u32::MAX, 5]);
        // Ties round to even in f16: 2049 lies halfway between 2048 and 2050.
        let f = Tensor::from_vec(&[3], vec![2049f32, 2051.0, 65520.0]).unwrap();
        assert_eq!(cast(&f, DType::F16).to_f64_vec(), vec![2048.0, 2052.0, f64::INFINITY]);
        // bf16 keeps 8 significant bits: 1 + 3/512 is past the midpoint 1 + 1/256.
        let d = Tensor::from_vec(&[2], vec![1.0f64 + 3.0 / 512.0, 1.0 + 1.0 / 256.0]).unwrap();
        assert_eq!(cast(&d, DType::BF16).to_f64_vec(), vec![1.0 + 1.0 / 128.0, 1.0]);
        let d = Tensor::from_vec(&[1], vec![1.0f64 + 1e-12]).unwrap();
        assert_eq!(cast(&d, DType::F32).to_f64_vec(), vec![1.0]);
        let big = Tensor::from_vec(&[1], vec![u64::MAX]).unwrap();
        assert_eq!(cast(&big, DType::F32).to_f64_vec(), vec![u64::MAX as f32 as f64]);
        let i = Tensor::from_vec(&[2], vec![16_777_217i32, -7]).unwrap();
        assert_eq!(cast(&i, DType::F32).to_f64_vec(), vec![16_777_216.0, -7.0]);
    }

    #[test]
    fn cast_like_takes_the_target_dtype() {
        let x = Tensor::from_vec(&[2], vec![1.7f32, -2.2]).unwrap();
        let target = Tensor::from_vec(&[1], vec![0i32]).unwrap();
        let y = run1(&Op::CastLike, &[&x, &target], DType::I32, &[2]).unwrap();
        assert_eq!(y.to_i64_vec(), vec![1, -2]);
        assert!(run1(&Op::CastLike, &[&x, &target], DType::I64, &[2]).is_err());
    }

    #[test]
    fn every_pair_round_trips_small_integers() {
        let all = DType::ALL;
        for &from in &all {
            for &to in &all {
                let vals: Vec<f64> =
                    if from == DType::Bool || to == DType::Bool { vec![0.0, 1.0] } else { vec![0.0, 1.0, 2.0, 100.0] };
                let src = smelt_ir::dispatch_dtype!(from, T => {
                    Tensor::from_vec(&[vals.len()], vals.iter().map(|&v| <T as smelt_ir::Element>::from_f64(v)).collect::<Vec<T>>()).unwrap()
                });
                let src = if from == DType::Bool {
                    Tensor::from_bytes(DType::Bool, src.shape(), src.bytes()).unwrap()
                } else {
                    src
                };
                assert_eq!(cast(&src, to).to_f64_vec(), vals, "{from} -> {to}");
            }
        }
    }
}
