//! Binary ops with numpy broadcasting: arithmetic, Pow (whose exponent may have its
//! own dtype), Mod, comparisons, logic, bitwise ops, shifts and PRelu.

use super::checked::{expect_dtype, expect_shape, slice, slice_mut};
use super::num::Num;
use crate::ops::broadcast::{broadcast_shape, for_each_chunk, Broadcast};
use crate::{CpuError, Result};
use half::{bf16, f16};
use smelt_ir::{BinaryOp, DType, Element, TensorView, TensorViewMut};

/// `out[i] = f(a[i'], b[i''])` with `a` and `b` broadcast to `out` by `plan`.
/// Each segment is one tight loop, specialised on which side repeats one element.
pub(crate) fn zip_map<A, B, O>(plan: &Broadcast, a: &[A], b: &[B], out: &mut [O], f: impl Fn(A, B) -> O + Sync)
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send,
{
    let (sa, sb) = (plan.inner_strides()[0], plan.inner_strides()[1]);
    for_each_chunk(out, |start, chunk| {
        plan.for_each_segment(start..start + chunk.len(), |pos, offs, n| {
            let o = &mut chunk[pos - start..pos - start + n];
            crate::ops::wide::run(|| match (sa, sb) {
                (1, 1) => {
                    for ((o, &x), &y) in o.iter_mut().zip(&a[offs[0]..offs[0] + n]).zip(&b[offs[1]..offs[1] + n]) {
                        *o = f(x, y);
                    }
                }
                (1, _) => {
                    let y = b[offs[1]];
                    for (o, &x) in o.iter_mut().zip(&a[offs[0]..offs[0] + n]) {
                        *o = f(x, y);
                    }
                }
                (_, 1) => {
                    let x = a[offs[0]];
                    for (o, &y) in o.iter_mut().zip(&b[offs[1]..offs[1] + n]) {
                        *o = f(x, y);
                    }
                }
                _ => o.fill(f(a[offs[0]], b[offs[1]])),
            })
        });
    });
}

/// `out[i] = f(out[i], b[i'])` with `b` broadcast to `out` by `plan` (one input).
pub(crate) fn zip_assign<B, O>(plan: &Broadcast, out: &mut [O], b: &[B], f: impl Fn(O, B) -> O + Sync)
where
    B: Copy + Sync,
    O: Copy + Send,
{
    let sb = plan.inner_strides()[0];
    for_each_chunk(out, |start, chunk| {
        plan.for_each_segment(start..start + chunk.len(), |pos, offs, n| {
            let o = &mut chunk[pos - start..pos - start + n];
            crate::ops::wide::run(|| {
                if sb == 1 {
                    for (o, &y) in o.iter_mut().zip(&b[offs[0]..offs[0] + n]) {
                        *o = f(*o, y);
                    }
                } else {
                    let y = b[offs[0]];
                    for o in o.iter_mut() {
                        *o = f(*o, y);
                    }
                }
            })
        });
    });
}

/// Runs `$body` with `$T` bound to the element type of a numeric (non-bool) dtype.
macro_rules! dispatch_num {
    ($dtype:expr, $name:expr, $T:ident => $body:expr) => {
        match $dtype {
            smelt_ir::DType::Bool => {
                Err($crate::CpuError::UnsupportedDType { op: $name, dtype: smelt_ir::DType::Bool })
            }
            other => smelt_ir::dispatch_dtype!(other, $T => $body),
        }
    };
}
pub(crate) use dispatch_num;

pub(super) fn eval(op: BinaryOp, a: TensorView, b: TensorView, out: &mut TensorViewMut) -> Result<()> {
    let name = op.name();
    let shape = broadcast_shape(&[a.shape, b.shape])
        .ok_or_else(|| CpuError::invalid(name, format!("shapes {:?} and {:?} do not broadcast", a.shape, b.shape)))?;
    expect_shape(name, "output", out.shape, &shape)?;
    let plan = Broadcast::new(out.shape, &[a.shape, b.shape]).map_err(|m| CpuError::invalid(name, m))?;
    if op != BinaryOp::Pow {
        expect_dtype(name, "input 1", b.dtype, a.dtype)?;
    }
    let out_dtype = if op.is_comparison() { DType::Bool } else { a.dtype };
    expect_dtype(name, "output", out.dtype, out_dtype)?;
    let k = Operands { name, plan: &plan, a, b };
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod { .. } | BinaryOp::PRelu => {
            dispatch_num!(a.dtype, name, T => k.arith::<T>(op, out))
        }
        BinaryOp::Pow => dispatch_num!(a.dtype, name, T => k.pow::<T>(out)),
        BinaryOp::Equal | BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual => {
            // Bool compares as its 0/1 bytes.
            smelt_ir::dispatch_dtype!(a.dtype, T => k.compare::<T>(op, out))
        }
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => {
            if a.dtype != DType::Bool {
                return Err(CpuError::UnsupportedDType { op: name, dtype: a.dtype });
            }
            let f: fn(u8, u8) -> u8 = match op {
                BinaryOp::And => |x: u8, y: u8| ((x != 0) & (y != 0)) as u8,
                BinaryOp::Or => |x: u8, y: u8| ((x != 0) | (y != 0)) as u8,
                _ => |x: u8, y: u8| ((x != 0) ^ (y != 0)) as u8,
            };
            k.map::<u8, u8, u8>(out, f)
        }
        BinaryOp::BitwiseAnd | BinaryOp::BitwiseOr | BinaryOp::BitwiseXor => match a.dtype {
            DType::I8 => k.bitwise::<i8>(op, out),
            DType::I16 => k.bitwise::<i16>(op, out),
            DType::I32 => k.bitwise::<i32>(op, out),
            DType::I64 => k.bitwise::<i64>(op, out),
            DType::U8 => k.bitwise::<u8>(op, out),
            DType::U16 => k.bitwise::<u16>(op, out),
            DType::U32 => k.bitwise::<u32>(op, out),
            DType::U64 => k.bitwise::<u64>(op, out),
            dtype => Err(CpuError::UnsupportedDType { op: name, dtype }),
        },
        BinaryOp::BitShiftLeft | BinaryOp::BitShiftRight => {
            let left = op == BinaryOp::BitShiftLeft;
            match a.dtype {
                DType::U8 => k.map(out, move |x: u8, s: u8| shift(x as u64, s as u64, left, 8) as u8),
                DType::U16 => k.map(out, move |x: u16, s: u16| shift(x as u64, s as u64, left, 16) as u16),
                DType::U32 => k.map(out, move |x: u32, s: u32| shift(x as u64, s as u64, left, 32) as u32),
                DType::U64 => k.map(out, move |x: u64, s: u64| shift(x, s, left, 64)),
                DType::I8 => k.map(out, move |x: i8, s: i8| signed_shift(x as i64, s as i64, left, 8) as i8),
                DType::I16 => k.map(out, move |x: i16, s: i16| signed_shift(x as i64, s as i64, left, 16) as i16),
                DType::I32 => k.map(out, move |x: i32, s: i32| signed_shift(x as i64, s as i64, left, 32) as i32),
                DType::I64 => k.map(out, move |x: i64, s: i64| signed_shift(x, s, left, 64)),
                dtype => Err(CpuError::UnsupportedDType { op: name, dtype }),
            }
        }
    }
}

/// A shift of a `bits`-wide value; shifting by the width or more gives 0 (numpy's
/// answer; C++ leaves it undefined).
#[inline(always)]
fn shift(x: u64, s: u64, left: bool, bits: u64) -> u64 {
    if s >= bits {
        0
    } else if left {
        x << s
    } else {
        x >> s
    }
}

/// A shift of a signed `bits`-wide value (BitShift on signed types, opset 28). Left
/// shifts wrap; right shifts are arithmetic. A negative amount counts as a huge
/// one: shifting out everything gives 0, or -1 for a negative value shifted right.
#[inline(always)]
fn signed_shift(x: i64, s: i64, left: bool, bits: i64) -> i64 {
    match (left, (0..bits).contains(&s)) {
        // The low `bits` bits of the 64-bit shift are the narrow type's wrapped result.
        (true, true) => ((x as u64) << s) as i64,
        (true, false) => 0,
        (false, true) => x >> s,
        (false, false) => x >> 63,
    }
}

/// The operands of one binary op, shared by the typed kernels below.
struct Operands<'a> {
    name: &'static str,
    plan: &'a Broadcast,
    a: TensorView<'a>,
    b: TensorView<'a>,
}

impl Operands<'_> {
    fn map<A: Element, B: Element, O: Element>(
        &self,
        out: &mut TensorViewMut,
        f: impl Fn(A, B) -> O + Sync,
    ) -> Result<()> {
        let a = slice::<A>(self.name, "input 0", &self.a)?;
        let b = slice::<B>(self.name, "input 1", &self.b)?;
        let o = slice_mut::<O>(self.name, "output", out)?;
        zip_map(self.plan, a, b, o, f);
        Ok(())
    }

    fn arith<T: Num>(&self, op: BinaryOp, out: &mut TensorViewMut) -> Result<()> {
        if !T::IS_FLOAT && matches!(op, BinaryOp::Div | BinaryOp::Mod { .. }) && !self.plan.is_empty() {
            let b = slice::<T>(self.name, "input 1", &self.b)?;
            if b.iter().any(|v| v.is_zero()) {
                return Err(CpuError::invalid(self.name, "integer division by zero"));
            }
        }
        match op {
            BinaryOp::Add => self.map(out, T::add),
            BinaryOp::Sub => self.map(out, T::sub),
            BinaryOp::Mul => self.map(out, T::mul),
            BinaryOp::Div => self.map(out, T::div),
            BinaryOp::Mod { fmod } => self.map(out, move |x: T, y: T| x.rem(y, fmod)),
            _ => self.map(out, |x: T, slope: T| if x < T::ZERO { slope.mul(x) } else { x }),
        }
    }

    /// Pow: the base's dtype is the output's; the exponent may be any numeric dtype.
    /// Integer exponents are read as i64 and float ones as f64, except the common
    /// f32^f32, which stays in f32.
    fn pow<T: Num>(&self, out: &mut TensorViewMut) -> Result<()> {
        let name = self.name;
        if T::DTYPE == DType::F32 && self.b.dtype == DType::F32 {
            let e = slice::<f32>(name, "exponent", &self.b)?;
            if e.len() == 1 && e[0] == 2.0 {
                // x * x is exactly powf(x, 2) and vectorises.
                return self.map(out, |x: f32, _: f32| x * x);
            }
            return self.map(out, |x: f32, y: f32| x.powf(y));
        }
        match self.b.dtype {
            DType::Bool => Err(CpuError::UnsupportedDType { op: name, dtype: DType::Bool }),
            DType::F32 => self.map(out, |x: T, y: f32| x.powf(y as f64)),
            DType::F64 => self.map(out, |x: T, y: f64| x.powf(y)),
            DType::F16 => self.map(out, |x: T, y: f16| x.powf(y.to_f64())),
            DType::BF16 => self.map(out, |x: T, y: bf16| x.powf(y.to_f64())),
            DType::I8 => self.map(out, |x: T, y: i8| x.powi(y as i64)),
            DType::I16 => self.map(out, |x: T, y: i16| x.powi(y as i64)),
            DType::I32 => self.map(out, |x: T, y: i32| x.powi(y as i64)),
            DType::I64 => self.map(out, |x: T, y: i64| x.powi(y)),
            DType::U8 => self.map(out, |x: T, y: u8| x.powi(y as i64)),
            DType::U16 => self.map(out, |x: T, y: u16| x.powi(y as i64)),
            DType::U32 => self.map(out, |x: T, y: u32| x.powi(y as i64)),
            DType::U64 => self.map(out, |x: T, y: u64| x.powi(y.min(i64::MAX as u64) as i64)),
        }
    }

    fn compare<T: Element>(&self, op: BinaryOp, out: &mut TensorViewMut) -> Result<()> {
        match op {
            BinaryOp::Equal => self.map(out, |x: T, y: T| (x == y) as u8),
            BinaryOp::Less => self.map(out, |x: T, y: T| (x < y) as u8),
            BinaryOp::LessOrEqual => self.map(out, |x: T, y: T| (x <= y) as u8),
            BinaryOp::Greater => self.map(out, |x: T, y: T| (x > y) as u8),
            _ => self.map(out, |x: T, y: T| (x >= y) as u8),
        }
    }

    fn bitwise<T>(&self, op: BinaryOp, out: &mut TensorViewMut) -> Result<()>
    where
        T: Element + std::ops::BitAnd<Output = T> + std::ops::BitOr<Output = T> + std::ops::BitXor<Output = T>,
    {
        match op {
            BinaryOp::BitwiseAnd => self.map(out, |x: T, y: T| x & y),
            BinaryOp::BitwiseOr => self.map(out, |x: T, y: T| x | y),
            _ => self.map(out, |x: T, y: T| x ^ y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use half::f16;
    use smelt_ir::{BinaryOp, DType, Element, Op, Tensor};

    fn binary(op: BinaryOp, a: &Tensor, b: &Tensor, dtype: DType, shape: &[usize]) -> Tensor {
        run1(&Op::Binary(op), &[a, b], dtype, shape).unwrap()
    }

    /// Numpy broadcasting computed one index at a time.
    fn naive<T: Element, O>(a: &Tensor, b: &Tensor, out: &[usize], f: impl Fn(T, T) -> O) -> Vec<O> {
        let (av, bv) = (a.as_slice::<T>().unwrap(), b.as_slice::<T>().unwrap());
        let n: usize = out.iter().product();
        let offset = |shape: &[usize], idx: &[usize]| {
            let pad = idx.len() - shape.len();
            shape.iter().enumerate().fold(0, |acc, (d, &s)| acc * s + if s == 1 { 0 } else { idx[pad + d] })
        };
        (0..n)
            .map(|flat| {
                let mut idx = vec![0; out.len()];
                let mut r = flat;
                for d in (0..out.len()).rev() {
                    idx[d] = r % out[d];
                    r /= out[d];
                }
                f(av[offset(a.shape(), &idx)], bv[offset(b.shape(), &idx)])
            })
            .collect()
    }

    #[test]
    fn broadcasting_patterns_match_naive() {
        let mut rng = Rng::new(7);
        let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
            (vec![2, 1, 4], vec![3, 1]),
            (vec![2, 3, 4], vec![2, 3, 4]),
            (vec![2, 3, 4], vec![]),
            (vec![], vec![2, 3]),
            (vec![5, 7], vec![7]),
            (vec![2, 3, 4, 5], vec![3, 1, 1]),
            (vec![1, 3, 1], vec![2, 1, 4]),
            (vec![0, 3], vec![3]),
            (vec![1], vec![0]),
            // Big enough for the parallel path, with a bias along the last axis.
            (vec![300, 257], vec![257]),
            (vec![64, 1024], vec![64, 1024]),
        ];
        for (sa, sb) in cases {
            let a = rng.tensor_f32(&sa, -3.0, 3.0);
            let b = rng.tensor_f32(&sb, 0.5, 3.0);
            let out = crate::ops::broadcast::broadcast_shape(&[&sa, &sb]).unwrap();
            for (op, f) in [
                (BinaryOp::Add, (|x, y| x + y) as fn(f32, f32) -> f32),
                (BinaryOp::Sub, |x, y| x - y),
                (BinaryOp::Mul, |x, y| x * y),
                (BinaryOp::Div, |x, y| x / y),
                (BinaryOp::PRelu, |x, y| if x < 0.0 { x * y } else { x }),
            ] {
                let got = binary(op, &a, &b, DType::F32, &out);
                assert_eq!(got.as_slice::<f32>().unwrap(), &naive(&a, &b, &out, f)[..], "{op:?} {sa:?} {sb:?}");
            }
            let got = binary(BinaryOp::Less, &a, &b, DType::Bool, &out);
            assert_eq!(got.as_slice::<u8>().unwrap(), &naive(&a, &b, &out, |x: f32, y| (x < y) as u8)[..]);
        }
    }

    #[test]
    fn shape_and_dtype_errors() {
        let a = Tensor::from_vec(&[2], vec![1f32, 2.0]).unwrap();
        let b = Tensor::from_vec(&[3], vec![1f32, 2.0, 3.0]).unwrap();
        assert!(run1(&Op::Binary(BinaryOp::Add), &[&a, &b], DType::F32, &[3]).is_err());
        assert!(run1(&Op::Binary(BinaryOp::Add), &[&a, &a], DType::F32, &[1, 2]).is_err());
        let i = Tensor::from_vec(&[2], vec![1i32, 2]).unwrap();
        assert!(run1(&Op::Binary(BinaryOp::Add), &[&a, &i], DType::F32, &[2]).is_err());
        assert!(run1(&Op::Binary(BinaryOp::Equal), &[&a, &a], DType::F32, &[2]).is_err());
    }

    #[test]
    fn integer_arithmetic() {
        let a = Tensor::from_vec(&[4], vec![7i32, -7, 7, -7]).unwrap();
        let b = Tensor::from_vec(&[4], vec![2i32, 2, -2, -2]).unwrap();
        assert_eq!(binary(BinaryOp::Div, &a, &b, DType::I32, &[4]).to_i64_vec(), vec![3, -3, -3, 3]);
        assert_eq!(binary(BinaryOp::Mod { fmod: false }, &a, &b, DType::I32, &[4]).to_i64_vec(), vec![1, 1, -1, -1]);
        assert_eq!(binary(BinaryOp::Mod { fmod: true }, &a, &b, DType::I32, &[4]).to_i64_vec(), vec![1, -1, 1, -1]);
        let big = Tensor::from_vec(&[1], vec![i32::MAX]).unwrap();
        let one = Tensor::from_vec(&[1], vec![1i32]).unwrap();
        assert_eq!(binary(BinaryOp::Add, &big, &one, DType::I32, &[1]).to_i64_vec(), vec![i32::MIN as i64]);
        let zero = Tensor::from_vec(&[1], vec![0i32]).unwrap();
        assert!(run1(&Op::Binary(BinaryOp::Div), &[&a, &zero], DType::I32, &[4]).is_err());
        assert!(run1(&Op::Binary(BinaryOp::Mod { fmod: false }), &[&a, &zero], DType::I32, &[4]).is_err());
        let u = Tensor::from_vec(&[2], vec![250u8, 3]).unwrap();
        let v = Tensor::from_vec(&[2], vec![10u8, 5]).unwrap();
        assert_eq!(binary(BinaryOp::Add, &u, &v, DType::U8, &[2]).to_i64_vec(), vec![4, 8]);
        assert_eq!(binary(BinaryOp::Sub, &v, &u, DType::U8, &[2]).to_i64_vec(), vec![16, 2]);
    }

    #[test]
    fn float_mod_and_half_arithmetic() {
        let a = Tensor::from_vec(&[4], vec![5.5f32, -5.5, 5.5, -5.5]).unwrap();
        let b = Tensor::from_vec(&[4], vec![3f32, 3.0, -3.0, -3.0]).unwrap();
        assert_eq!(
            binary(BinaryOp::Mod { fmod: true }, &a, &b, DType::F32, &[4]).to_f64_vec(),
            vec![2.5, -2.5, 2.5, -2.5]
        );
        assert_eq!(
            binary(BinaryOp::Mod { fmod: false }, &a, &b, DType::F32, &[4]).to_f64_vec(),
            vec![2.5, 0.5, -0.5, -2.5]
        );
        let h = |v: &[f32]| Tensor::from_vec(&[v.len()], v.iter().map(|&x| f16::from_f32(x)).collect()).unwrap();
        let got = binary(BinaryOp::Add, &h(&[1.0, 0.1]), &h(&[2.0, 0.2]), DType::F16, &[2]);
        assert_eq!(
            got.as_slice::<f16>().unwrap(),
            &[f16::from_f32(3.0), f16::from_f32(f16::from_f32(0.1).to_f32() + f16::from_f32(0.2).to_f32())]
        );
    }

    #[test]
    fn pow_with_mixed_dtypes() {
        let fb = Tensor::from_vec(&[4], vec![2f32, -2.0, 4.0, 3.0]).unwrap();
        let ie = Tensor::from_vec(&[4], vec![-1i64, 3, 0, 2]).unwrap();
        assert_eq!(binary(BinaryOp::Pow, &fb, &ie, DType::F32, &[4]).to_f64_vec(), vec![0.5, -8.0, 1.0, 9.0]);
        let ib = Tensor::from_vec(&[4], vec![2i64, -2, 4, 3]).unwrap();
        let fe = Tensor::from_vec(&[4], vec![0.5f32, 0.5, 0.5, 2.9]).unwrap();
        assert_eq!(binary(BinaryOp::Pow, &ib, &fe, DType::I64, &[4]).to_i64_vec(), vec![1, i64::MIN, 2, 24]);
        let ib = Tensor::from_vec(&[6], vec![2i32, -2, 1, -1, 0, 3]).unwrap();
        let ie = Tensor::from_vec(&[6], vec![-1i32, -1, -3, -3, 2, 3]).unwrap();
        assert_eq!(binary(BinaryOp::Pow, &ib, &ie, DType::I32, &[6]).to_i64_vec(), vec![0, 0, 1, -1, 0, 27]);
        let two = Tensor::scalar(2f32);
        let x = Tensor::from_vec(&[3], vec![1.5f32, -3.0, 0.1]).unwrap();
        assert_eq!(
            binary(BinaryOp::Pow, &x, &two, DType::F32, &[3]).to_f64_vec(),
            [2.25f32, 9.0, 0.1 * 0.1].map(|v| v as f64)
        );
        let e = Tensor::from_vec(&[3], vec![0.5f32, 3.0, -1.0]).unwrap();
        let want: Vec<f64> =
            [1.5f32.powf(0.5), (-3f32).powf(3.0), 0.1f32.powf(-1.0)].iter().map(|&v| v as f64).collect();
        assert_eq!(binary(BinaryOp::Pow, &x, &e, DType::F32, &[3]).to_f64_vec(), want);
        let bool_e = Tensor::from_bools(&[3], &[true, false, true]).unwrap();
        assert!(run1(&Op::Binary(BinaryOp::Pow), &[&x, &bool_e], DType::F32, &[3]).is_err());
    }

    #[test]
    fn comparisons_logic_bitwise_shifts() {
        let a = Tensor::from_vec(&[3], vec![1i64, 5, -2]).unwrap();
        let b = Tensor::scalar(1i64);
        assert_eq!(binary(BinaryOp::Equal, &a, &b, DType::Bool, &[3]).as_slice::<u8>().unwrap(), &[1, 0, 0]);
        assert_eq!(binary(BinaryOp::GreaterOrEqual, &a, &b, DType::Bool, &[3]).as_slice::<u8>().unwrap(), &[1, 1, 0]);
        assert_eq!(binary(BinaryOp::LessOrEqual, &a, &b, DType::Bool, &[3]).as_slice::<u8>().unwrap(), &[1, 0, 1]);
        let nan = Tensor::from_vec(&[2], vec![f32::NAN, 1.0]).unwrap();
        assert_eq!(binary(BinaryOp::Equal, &nan, &nan, DType::Bool, &[2]).as_slice::<u8>().unwrap(), &[0, 1]);
        let p = Tensor::from_bools(&[4], &[true, true, false, false]).unwrap();
        let q = Tensor::from_bools(&[4], &[true, false, true, false]).unwrap();
        assert_eq!(binary(BinaryOp::And, &p, &q, DType::Bool, &[4]).as_slice::<u8>().unwrap(), &[1, 0, 0, 0]);
        assert_eq!(binary(BinaryOp::Or, &p, &q, DType::Bool, &[4]).as_slice::<u8>().unwrap(), &[1, 1, 1, 0]);
        assert_eq!(binary(BinaryOp::Xor, &p, &q, DType::Bool, &[4]).as_slice::<u8>().unwrap(), &[0, 1, 1, 0]);
        assert_eq!(binary(BinaryOp::Equal, &p, &q, DType::Bool, &[4]).as_slice::<u8>().unwrap(), &[1, 0, 0, 1]);
        let x = Tensor::from_vec(&[3], vec![0b1100i32, -1, 7]).unwrap();
        let y = Tensor::from_vec(&[3], vec![0b1010i32, 5, 0]).unwrap();
        assert_eq!(binary(BinaryOp::BitwiseAnd, &x, &y, DType::I32, &[3]).to_i64_vec(), vec![0b1000, 5, 0]);
        assert_eq!(binary(BinaryOp::BitwiseOr, &x, &y, DType::I32, &[3]).to_i64_vec(), vec![0b1110, -1, 7]);
        assert_eq!(binary(BinaryOp::BitwiseXor, &x, &y, DType::I32, &[3]).to_i64_vec(), vec![0b0110, -6, 7]);
        let s = Tensor::from_vec(&[4], vec![1u8, 16, 255, 1]).unwrap();
        let n = Tensor::from_vec(&[4], vec![3u8, 2, 8, 7]).unwrap();
        assert_eq!(binary(BinaryOp::BitShiftLeft, &s, &n, DType::U8, &[4]).to_i64_vec(), vec![8, 64, 0, 128]);
        assert_eq!(binary(BinaryOp::BitShiftRight, &s, &n, DType::U8, &[4]).to_i64_vec(), vec![0, 4, 0, 0]);
        // Signed shifts: wrapping left, arithmetic right, out-of-range amounts shift everything out.
        let x = Tensor::from_vec(&[6], vec![64i8, 1, -64, -8, 4, -1]).unwrap();
        let n = Tensor::from_vec(&[6], vec![1i8, 7, 1, -1, 8, 100]).unwrap();
        assert_eq!(
            binary(BinaryOp::BitShiftLeft, &x, &n, DType::I8, &[6]).to_i64_vec(),
            vec![-128, -128, -128, 0, 0, 0]
        );
        assert_eq!(binary(BinaryOp::BitShiftRight, &x, &n, DType::I8, &[6]).to_i64_vec(), vec![32, 0, -32, -1, 0, -1]);
        let x = Tensor::from_vec(&[3], vec![-8i32, 4, -1]).unwrap();
        let n = Tensor::from_vec(&[3], vec![1i32, -32, 32]).unwrap();
        assert_eq!(binary(BinaryOp::BitShiftRight, &x, &n, DType::I32, &[3]).to_i64_vec(), vec![-4, 0, -1]);
        let f = Tensor::from_vec(&[1], vec![1f32]).unwrap();
        assert!(run1(&Op::Binary(BinaryOp::BitShiftLeft), &[&f, &f], DType::F32, &[1]).is_err());
        assert!(run1(&Op::Binary(BinaryOp::And), &[&x, &y], DType::Bool, &[3]).is_err());
    }
}
